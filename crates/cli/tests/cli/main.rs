//! The `tunelab` binary as a user runs it.

mod compare;
mod cpu;
mod crash;
mod export;
mod interrupt;
mod jobs;
mod knowledge;
mod plan;
mod train;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn default_gguf() -> PathBuf {
    let models = match std::env::var("TUNELAB_HOME") {
        Ok(home) => PathBuf::from(home).join("models"),
        Err(_) => std::env::var("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".local/share"))
            .join("tunelab/models"),
    };
    models.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn tunelab(home: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tunelab"));
    if let Some(home) = home {
        cmd.arg("--home").arg(home);
    }
    cmd.args(args).output().expect("tunelab runs")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "tunelab failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The default embedding model's folder in the model cache setup fills.
fn default_minilm() -> PathBuf {
    default_gguf()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("all-minilm-l6-v2")
}

/// Registers the default GGUF in the workspace `home` as `name`; returns the entry.
fn add_default_gguf(home: &Path, name: &str) -> serde_json::Value {
    let gguf = default_gguf();
    json(&tunelab(
        Some(home),
        &[
            "models",
            "add",
            gguf.to_str().unwrap(),
            "--name",
            name,
            "--json",
        ],
    ))
}

#[test]
fn after_setup_the_default_model_answers_to_its_name_with_paris() {
    // The workspace setup filled (TUNELAB_HOME or the platform data folder).
    let list = json(&tunelab(None, &["models", "list", "--json"]));
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "smollm2-135m-instruct" && m["role"] == "chat"),
        "setup registers the default chat model: {list}"
    );
    let out = json(&tunelab(
        None,
        &[
            "chat",
            "--model",
            "smollm2-135m-instruct",
            "--prompt",
            "What is the capital of France?",
            "--temperature",
            "0",
            "--json",
        ],
    ));
    assert!(out["text"].as_str().unwrap().contains("Paris"), "{out}");
    assert!(out["generated_tokens"].as_u64().unwrap() > 0);
    assert!(out["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(out["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(out["stop_reason"], "eos");
}

#[test]
fn doctor_and_models_work_on_a_fresh_workspace() {
    let home = tempfile::tempdir().unwrap();
    let doctor = json(&tunelab(Some(home.path()), &["doctor", "--json"]));
    assert_eq!(doctor["models"].as_array().unwrap().len(), 0);
    assert!(doctor["hardware"]["cpu"]["logical_cores"].as_u64().unwrap() >= 1);
    let text = tunelab(Some(home.path()), &["doctor"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("CPU:") && text.contains("RAM:"), "{text}");

    let added = add_default_gguf(home.path(), "smol");
    assert_eq!(added["name"], "smol");
    assert_eq!(added["quantization"], "Q4_1");
    let list = json(&tunelab(Some(home.path()), &["models", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
}

/// `tunelab doctor | head -1`: a reader that leaves early ends the program quietly, as with
/// any Unix tool, instead of a panic and its backtrace on the terminal.
#[cfg(unix)]
#[test]
fn a_reader_that_closes_the_pipe_early_ends_the_program_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .arg("--home")
        .arg(home.path())
        .args(["doctor", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the program has looked at the hardware, let alone printed.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
}

#[test]
fn errors_are_one_clear_line_and_a_failure_exit_code() {
    let home = tempfile::tempdir().unwrap();
    let out = tunelab(
        Some(home.path()),
        &["chat", "--model", "nope", "--prompt", "hi"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: no model named `nope`"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let bad = home.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00 truncated").unwrap();
    let out = tunelab(Some(home.path()), &["models", "add", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("bad.gguf") && stderr.contains("not a valid GGUF"),
        "{stderr}"
    );
}

#[test]
fn the_device_setting_is_kept_and_commands_follow_it_or_their_own_device() {
    let home = tempfile::tempdir().unwrap();
    let h = Some(home.path());
    assert_eq!(json(&tunelab(h, &["settings", "--json"]))["device"], "auto");
    let set = json(&tunelab(h, &["settings", "--device", "cpu", "--json"]));
    assert_eq!(set["device"], "cpu");
    let text = tunelab(h, &["settings"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("device  cpu"));

    add_default_gguf(home.path(), "smol");
    let ask = |extra: &[&str]| {
        let mut args = vec![
            "chat",
            "--model",
            "smol",
            "--prompt",
            "Hi",
            "--max-tokens",
            "3",
            "--json",
        ];
        args.extend_from_slice(extra);
        tunelab(h, &args)
    };
    assert_eq!(json(&ask(&[]))["device"], "cpu");
    assert_eq!(json(&ask(&["--device", "auto"]))["device"], "cpu");

    if !cfg!(feature = "cuda") {
        // Refused when chosen, naming the setup step, and the setting stays as it was.
        let out = tunelab(h, &["settings", "--device", "cuda"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("scripts/setup.sh"),
            "{stderr}"
        );
        assert_eq!(json(&tunelab(h, &["settings", "--json"]))["device"], "cpu");
        let out = ask(&["--device", "cuda:1"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("scripts/setup.sh"),
            "{stderr}"
        );
    }

    // A settings file that does not parse is named, with what is wrong in it.
    std::fs::write(home.path().join("settings.json"), "{\n  \"device\": 3\n}").unwrap();
    let out = ask(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("settings.json")
            && stderr.contains("expected a string"),
        "{stderr}"
    );

    // The embedding benchmark says where it ran (the setup's workspace, its own --device).
    let embed = json(&tunelab(
        None,
        &[
            "bench",
            "embed",
            "--sentences",
            "4",
            "--runs",
            "1",
            "--device",
            "cpu",
            "--json",
        ],
    ));
    assert_eq!(embed["device"], "cpu");
}

#[test]
fn interactive_chat_streams_answers_and_keeps_the_conversation() {
    let home = tempfile::tempdir().unwrap();
    add_default_gguf(home.path(), "smollm2-135m-instruct");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .arg("--home")
        .arg(home.path())
        .args(["chat", "--temperature", "0", "--max-tokens", "30"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of France?\n/reset\n/exit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("Paris"), "{stdout}");
    assert!(
        stderr.contains("conversation cleared") && stderr.contains("tok/s"),
        "{stderr}"
    );
}

#[test]
fn data_check_reports_json_and_locates_problems_by_file_and_line() {
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/lora-json-extract/train.jsonl");
    // The workspace setup filled, where the default model is registered.
    let report = json(&tunelab(
        None,
        &[
            "data",
            "check",
            sample.to_str().unwrap(),
            "--model",
            "smollm2-135m-instruct",
            "--json",
        ],
    ));
    assert_eq!(report["format"], "messages");
    assert_eq!(report["issues"].as_array().unwrap().len(), 0, "{report}");
    assert!(report["rows_usable"].as_u64().unwrap() >= 120, "{report}");
    assert!(report["tokens"]["median"].as_u64().unwrap() > 0, "{report}");

    let home = tempfile::tempdir().unwrap();
    let bad = home.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"messages\": [{\"role\": \"bot\", \"content\": \"hi\"}]}\n{\"messages\": [\n",
    )
    .unwrap();
    let out = tunelab(Some(home.path()), &["data", "check", bad.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no usable rows: {stdout}{stderr}"
    );
    let path = bad.display();
    assert!(
        stdout.contains(&format!(
            "{path}:1: field `messages[0].role`: unknown role `bot`"
        )) && stdout.contains(&format!("{path}:2: not valid JSON")),
        "{stdout}"
    );
    assert!(stderr.contains("no usable rows"), "{stderr}");

    // One good row among bad ones: the issues are warnings and the check passes.
    let mixed = home.path().join("mixed.jsonl");
    let good = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}";
    std::fs::write(&mixed, format!("{good}\n{{\"messages\": 3}}\n")).unwrap();
    let out = tunelab(
        Some(home.path()),
        &["data", "check", mixed.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("warning: 1 of 2 rows skipped"), "{stdout}");
}

#[test]
fn a_run_that_cannot_fit_is_refused_before_it_writes_anything() {
    let data =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/lora-json-extract/train.jsonl");
    let out_dir = tempfile::tempdir().unwrap();
    let run = out_dir.path().join("run");
    let huge = [
        "--data",
        data.to_str().unwrap(),
        "--batch-size",
        "4096",
        "--seq-len",
        "8192",
        "--no-checkpointing",
    ];
    let plan = json(&tunelab(
        None,
        &[&["plan", "train", "lora"][..], &huge, &["--json"]].concat(),
    ));
    assert_eq!(plan["fits"], false, "{plan}");
    assert!(!plan["advice"].as_array().unwrap().is_empty());

    let out = tunelab(
        None,
        &[
            &["train", "lora"][..],
            &huge,
            &["--out", run.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("this run needs about") && stderr.contains("To fit"),
        "the refusal says what it needs and what to change: {stderr}"
    );
    assert!(!run.exists(), "nothing is written for a refused run");
}

#[test]
fn eval_scores_a_file_lists_it_and_names_a_bad_line() {
    let home = tempfile::tempdir().unwrap();
    add_default_gguf(home.path(), "smollm2-135m-instruct");
    let data = home.path().join("questions.jsonl");
    std::fs::write(
        &data,
        concat!(
            r#"{"prompt": "What is the capital of France? Answer with one word.", "reference": "Paris"}"#,
            "\n",
            r#"{"prompt": "Name a colour of the sky.", "must_contain": ["blue"]}"#,
            "\n"
        ),
    )
    .unwrap();
    let data_arg = data.to_str().unwrap();
    let summary = json(&tunelab(
        Some(home.path()),
        &["eval", "--data", data_arg, "--max-tokens", "16", "--json"],
    ));
    assert_eq!(summary["status"], "completed", "{summary}");
    assert_eq!(summary["answered"], 2);
    let metrics: Vec<&str> = summary["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"].as_str().unwrap())
        .collect();
    assert_eq!(
        metrics,
        [
            "exact-match",
            "contains-all",
            "token-f1",
            "rouge-l",
            "perplexity"
        ]
    );
    let id = summary["id"].as_str().unwrap();

    // The human report: each metric with its interval, and what answering cost.
    let out = tunelab(Some(home.path()), &["eval", "show", id, "--rows"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "95% interval",
        "token-f1",
        "per question",
        "line 2: Name a colour",
        "expected: Paris",
    ] {
        assert!(text.contains(needle), "`{needle}` in:\n{text}");
    }
    let list = json(&tunelab(Some(home.path()), &["eval", "list", "--json"]));
    assert_eq!(list[0]["id"], id);

    std::fs::write(
        &data,
        "{\"prompt\": \"q\"}\n{\"prompt\": \"q\", \"reference\": 3}\n",
    )
    .unwrap();
    let out = tunelab(Some(home.path()), &["eval", "--data", data_arg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{data_arg}:1: field `reference`: missing")),
        "{err}"
    );
}
