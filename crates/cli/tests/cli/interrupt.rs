//! Ctrl+C (SIGINT) stops long commands the way the app's Stop button does, and a second one
//! quits at once.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::{add_default_gguf, default_minilm, json, tunelab, wait_for};

fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A folder of `n` notes, each long enough for a few chunks.
fn notes(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let text: String = (0..40)
            .map(|j| format!("Note {i} line {j}: the boat key hangs on hook {}.\n", i * j))
            .collect();
        std::fs::write(dir.join(format!("note-{i:03}.txt")), text).unwrap();
    }
}

#[test]
fn ctrl_c_undoes_a_knowledge_base_add_and_the_next_add_does_it_all() {
    let home = tempfile::tempdir().unwrap();
    let h = Some(home.path());
    let minilm = default_minilm();
    json(&tunelab(
        h,
        &["models", "add", minilm.to_str().unwrap(), "--json"],
    ));
    json(&tunelab(h, &["kb", "create", "notes", "--json"]));
    let docs = home.path().join("docs");
    notes(&docs, 300);
    let add = [
        "--home",
        home.path().to_str().unwrap(),
        "kb",
        "add",
        "notes",
        docs.to_str().unwrap(),
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args(add)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the add to hold the knowledge base", || {
        let jobs = json(&tunelab(h, &["jobs", "--json"]));
        jobs.as_array()
            .unwrap()
            .iter()
            .any(|j| j["kind"] == "knowledge")
    });
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stopping cleanly") && stderr.contains("was stopped"),
        "{stderr}"
    );
    let shown = json(&tunelab(h, &["kb", "show", "notes", "--json"]));
    assert_eq!(
        shown["info"]["chunks"], 0,
        "the stopped add was undone: {shown}"
    );
    assert!(json(&tunelab(h, &["jobs", "--json"]))
        .as_array()
        .unwrap()
        .is_empty());

    let again = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args(add)
        .arg("--json")
        .output()
        .unwrap();
    let report = json(&again);
    assert_eq!(report["added"].as_array().unwrap().len(), 300);
}

#[test]
fn ctrl_c_stops_training_at_a_checkpoint_and_the_same_command_finishes_it() {
    let home = tempfile::tempdir().unwrap();
    add_default_gguf(home.path(), "smol");
    let data =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/lora-json-extract/train.jsonl");
    let run = home.path().join("runs/stopped");
    let args = [
        "--home",
        home.path().to_str().unwrap(),
        "train",
        "lora",
        "--model",
        "smol",
        "--data",
        data.to_str().unwrap(),
        "--max-steps",
        "40",
        "--batch-size",
        "2",
        "--seq-len",
        "128",
        "--device",
        "cpu",
        "--out",
        run.to_str().unwrap(),
        "--json",
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the first step", || {
        std::fs::read_to_string(run.join("metrics.jsonl")).is_ok_and(|m| !m.is_empty())
    });
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let summary = json(&out);
    assert_eq!(summary["status"], "cancelled", "{summary}");
    let steps = summary["steps"].as_u64().unwrap();
    assert!((1..40).contains(&steps), "{summary}");
    assert!(run
        .join(format!("checkpoints/step-{steps}/state.json"))
        .is_file());

    let finished = json(
        &Command::new(env!("CARGO_BIN_EXE_tunelab"))
            .args(args)
            .output()
            .unwrap(),
    );
    assert_eq!(finished["status"], "completed", "{finished}");
    assert_eq!(finished["steps"], 40);
}
