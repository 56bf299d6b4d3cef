//! Ctrl+C (SIGINT) stops long commands the way the app's Stop button does, and a second one
//! quits at once.

use std::path::Path;
use std::process::{Child, Command};

use crate::jobs::{notes_kb, spawn, wait_for, wait_for_job};
use crate::{add_default_gguf, json, tunelab};

fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn ctrl_c_undoes_a_knowledge_base_add_and_the_next_add_does_it_all() {
    let home = tempfile::tempdir().unwrap();
    let h = Some(home.path());
    let docs = notes_kb(home.path(), 300);
    let add = [
        "--home",
        home.path().to_str().unwrap(),
        "kb",
        "add",
        "notes",
        docs.to_str().unwrap(),
    ];
    let child = spawn(&add);
    wait_for_job(home.path(), "knowledge");
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
    let child = spawn(&args);
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
