//! `tunelab export`: the default model as GGUF with an Ollama Modelfile, registered back with
//! `models add` and answering, `--check` on the folder, and what cannot be exported.

use crate::{add_default_gguf, json, tunelab};

#[test]
fn export_writes_a_checked_gguf_that_models_add_takes_back() {
    let home = tempfile::tempdir().unwrap();
    add_default_gguf(home.path(), "smollm2-135m-instruct");
    let out = home.path().join("exported");
    let report = json(&tunelab(
        Some(home.path()),
        &[
            "export",
            "smollm2-135m-instruct",
            "--quant",
            "q8_0",
            "--ollama",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(report["check"]["passed"], true, "{report}");
    assert_eq!(report["format"], "gguf");
    assert_eq!(report["quant"], "q8_0");
    let gguf = out.join("smollm2-135m-instruct.q8_0.gguf");
    assert!(gguf.is_file() && out.join("Modelfile").is_file() && out.join("export.json").is_file());

    let added = json(&tunelab(
        Some(home.path()),
        &[
            "models",
            "add",
            gguf.to_str().unwrap(),
            "--name",
            "exported",
            "--json",
        ],
    ));
    assert_eq!(added["name"], "exported", "{added}");
    let answer = json(&tunelab(
        Some(home.path()),
        &[
            "chat",
            "--model",
            "exported",
            "--prompt",
            "What is the capital of France?",
            "--temperature",
            "0",
            "--max-tokens",
            "12",
            "--json",
        ],
    ));
    assert!(
        answer["text"].as_str().unwrap().contains("Paris"),
        "{answer}"
    );

    let out_check = tunelab(
        Some(home.path()),
        &["export", "--check", out.to_str().unwrap()],
    );
    let printed = String::from_utf8_lossy(&out_check.stdout);
    assert!(out_check.status.success(), "{printed}");
    assert!(printed.starts_with("check: passed"), "{printed}");
    assert!(printed.contains("Ollama Modelfile"), "{printed}");

    let refused = tunelab(
        Some(home.path()),
        &["export", "smollm2-135m-instruct", "--format", "peft"],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.starts_with("error: a model on its own has no adapter"),
        "{stderr}"
    );
}
