//! The command line and the app start a run through one check (`RunConfig::validate`): a bad
//! setting gets the same words from both, before anything is written.

use std::sync::atomic::AtomicBool;

use tunelab_api::runs::{self, TrainRequest};

use crate::tunelab;
use tunelab_api::ErrorCode;

#[test]
fn the_app_and_the_command_line_refuse_a_bad_setting_with_the_same_words() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("train.jsonl");
    std::fs::write(
        &data,
        r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}"#,
    )
    .unwrap();
    let ws = tunelab_api::Workspace::open(Some(home.path().to_path_buf())).unwrap();
    let request = |method: &str, change: serde_json::Value| -> TrainRequest {
        let mut fields = serde_json::json!({
            "method": method, "model": "smollm2-135m-instruct", "data": data,
            "max_steps": 2, "batch_size": 1, "seq_len": 64, "lr": null,
        });
        for (key, value) in change.as_object().unwrap() {
            fields[key] = value.clone();
        }
        serde_json::from_value(fields).unwrap()
    };
    // (the setting, the command line's flags, the app's request)
    let cases = [
        (
            "`train.lr`",
            vec!["lora", "--lr", "5"],
            request("lora", serde_json::json!({"lr": 5.0})),
        ),
        (
            "`lora.rank`",
            vec!["qlora", "--rank", "0"],
            request("qlora", serde_json::json!({"rank": 0})),
        ),
        (
            "`lora.alpha`",
            vec!["lora", "--alpha=-1"],
            request("lora", serde_json::json!({"alpha": -1.0})),
        ),
        (
            "`soft_prompt.num_virtual_tokens`",
            vec!["soft-prompt", "--virtual-tokens", "0"],
            request("soft-prompt", serde_json::json!({"virtual_tokens": 0})),
        ),
        (
            "`seq_len`",
            vec!["full", "--seq-len", "4"],
            request("full", serde_json::json!({"seq_len": 4})),
        ),
        (
            "`train.batch_size`",
            vec!["lora", "--batch-size", "0"],
            request("lora", serde_json::json!({"batch_size": 0})),
        ),
    ];
    for (field, flags, app_request) in cases {
        let app = runs::start(&ws, &app_request, &AtomicBool::new(false), &mut |_| {}).unwrap_err();
        assert_eq!(app.code, ErrorCode::InvalidInput);
        assert!(app.message.contains(field), "{field}: {}", app.message);

        let out_dir = home.path().join("run");
        let args: Vec<&str> = ["train"]
            .into_iter()
            .chain(flags.iter().copied())
            .chain(["--data", data.to_str().unwrap(), "--max-steps", "2"])
            .chain(["--out", out_dir.to_str().unwrap()])
            .collect();
        let out = tunelab(Some(home.path()), &args);
        assert_eq!(out.status.code(), Some(1), "{field}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.trim_end(),
            format!("error: {}", app.message),
            "{field}"
        );
        assert!(
            !out_dir.exists(),
            "{field}: nothing is written for a refused run"
        );
    }
    assert!(
        runs::list(&ws).unwrap().is_empty(),
        "the app's refusals left no run either"
    );
}
