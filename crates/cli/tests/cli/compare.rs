//! `tunelab compare`: a one-method comparison with its exports, the list and the report, and
//! a task file with a mistake.

use std::path::PathBuf;

use crate::{add_default_gguf, json, tunelab};

fn demo(file: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/compare-demo")
        .join(file)
        .display()
        .to_string()
}

#[test]
fn compare_runs_a_method_exports_the_report_and_names_a_bad_field() {
    let home = tempfile::tempdir().unwrap();
    add_default_gguf(home.path(), "smollm2-135m-instruct");
    let task = home.path().join("task.toml");
    let body = format!(
        "name = \"cli\"\ntrain = \"{}\"\neval = \"{}\"\ndocuments = \"{}\"\n\
         [template]\nsystem = \"Answer briefly.\"\nuser = \"{{{{input}}}}\"\n\
         [budget]\neval_limit = 2\nprobe_limit = 1\nmax_tokens = 6\n",
        demo("train.jsonl"),
        demo("eval.jsonl"),
        demo("../kb-brightloom/docs"),
    );
    std::fs::write(&task, &body).unwrap();
    let (html, csv) = (home.path().join("r.html"), home.path().join("r.csv"));
    let task_arg = task.to_str().unwrap();
    let report = json(&tunelab(
        Some(home.path()),
        &[
            "compare",
            task_arg,
            "--methods",
            "prompt",
            "--json",
            "--html",
            html.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
        ],
    ));
    assert_eq!(report["status"], "completed", "{report}");
    assert_eq!(report["methods"][0]["method"], "prompt");
    assert_eq!(report["methods"][0]["template"], "compare-cli@1");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Prompt engineering") && page.contains("token-f1"));
    let table = std::fs::read_to_string(&csv).unwrap();
    assert!(table.starts_with("method,status,"), "{table}");
    assert!(table
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("prompt,completed,"));

    let out = tunelab(Some(home.path()), &["compare", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("cli") && listed.contains("1/1 methods"),
        "{listed}"
    );
    let out = tunelab(Some(home.path()), &["compare", "show", "cli"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("Prompt engineering — completed"), "{shown}");
    assert!(shown.contains("per question:"), "{shown}");

    std::fs::write(&task, body.replace("eval = ", "evaluation = ")).unwrap();
    let out = tunelab(Some(home.path()), &["compare", task_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.starts_with("error: ")
            && stderr.contains("task.toml")
            && stderr.contains("evaluation"),
        "{stderr}"
    );
}
