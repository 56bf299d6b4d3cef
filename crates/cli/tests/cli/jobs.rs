//! Long work as a user starts it from the command line: commands in the background, the job
//! each holds, one writer per run folder and knowledge base, a killed writer taken over.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{add_default_gguf, default_minilm, json, tunelab};

/// `tunelab` started in the background with `args`, its output captured.
pub fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tunelab starts")
}

/// Waits until the workspace `home` lists a job of `kind` (it holds its lock).
pub fn wait_for_job(home: &Path, kind: &str) {
    wait_for(&format!("a {kind} job to hold its lock"), || {
        let jobs = json(&tunelab(Some(home), &["jobs", "--json"]));
        jobs.as_array().unwrap().iter().any(|j| j["kind"] == kind)
    });
}

/// A workspace at `home` with the default embedder registered and a knowledge base `notes`,
/// and `n` text notes to add to it in `home/docs`; returns the notes' folder.
pub fn notes_kb(home: &Path, n: usize) -> PathBuf {
    let h = Some(home);
    let minilm = default_minilm();
    json(&tunelab(
        h,
        &["models", "add", minilm.to_str().unwrap(), "--json"],
    ));
    json(&tunelab(h, &["kb", "create", "notes", "--json"]));
    let docs = home.join("docs");
    write_notes(&docs, n);
    docs
}

/// `n` text notes in `dir`, a few chunks each.
pub fn write_notes(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let text: String = (0..40)
            .map(|j| {
                format!(
                    "Note {i} line {j}: the tool shed key hangs by door {}.\n",
                    i * j
                )
            })
            .collect();
        std::fs::write(dir.join(format!("note-{i:03}.txt")), text).unwrap();
    }
}

/// Polls `check` every 20 ms for up to two minutes.
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_second_trainer_on_one_folder_is_refused_and_a_killed_ones_run_is_taken_over() {
    let home = tempfile::tempdir().unwrap();
    add_default_gguf(home.path(), "smol");
    let data =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/lora-json-extract/train.jsonl");
    let config = home.path().join("run.toml");
    std::fs::write(&config, "[train]\nsave_every = 1\n").unwrap();
    let run = home.path().join("runs/shared");
    let args = [
        "--home",
        home.path().to_str().unwrap(),
        "train",
        "lora",
        "--model",
        "smol",
        "--data",
        data.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--max-steps",
        "6",
        "--batch-size",
        "2",
        "--seq-len",
        "128",
        "--device",
        "cpu",
        "--out",
        run.to_str().unwrap(),
    ];
    let mut first = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id();
    wait_for("the first checkpoint", || {
        run.join("checkpoints/step-1/state.json").is_file()
    });

    let jobs = json(&tunelab(Some(home.path()), &["jobs", "--json"]));
    assert_eq!(jobs[0]["kind"], "train", "{jobs}");
    assert_eq!(jobs[0]["target"], "shared");
    assert_eq!(jobs[0]["pid"], pid);
    let second = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args(args)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("shared is in use by tunelab (pid {pid})")),
        "the refusal names the first trainer: {stderr}"
    );

    // Killed without a chance to let go: the kernel frees the lock, the record stays behind.
    first.kill().unwrap();
    first.wait().unwrap();
    let listed = json(&tunelab(Some(home.path()), &["runs", "list", "--json"]));
    assert_eq!(listed[0]["status"], "interrupted", "{listed}");
    assert_eq!(listed[0]["can_resume"], true);
    assert!(json(&tunelab(Some(home.path()), &["jobs", "--json"]))
        .as_array()
        .unwrap()
        .is_empty());

    let resumed = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let summary = json(&resumed);
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["steps"], 6);
    assert_eq!(summary["took_over_from"]["pid"], pid, "{summary}");
    let steps: Vec<u64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("loss").is_some())
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(
        steps,
        (1..=6).collect::<Vec<u64>>(),
        "steps the killed trainer logged past its checkpoint are logged once"
    );
}

#[test]
fn two_adds_to_one_knowledge_base_at_once_store_each_document_once() {
    let home = tempfile::tempdir().unwrap();
    let h = Some(home.path());
    // Enough text that the first add is still embedding when the second arrives.
    let docs = notes_kb(home.path(), 120);
    let add = [
        "--home",
        home.path().to_str().unwrap(),
        "kb",
        "add",
        "notes",
        docs.to_str().unwrap(),
        "--json",
    ];
    let first = spawn(&add);
    let pid = first.id();
    wait_for_job(home.path(), "knowledge");
    let second = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args(add)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!(
            "knowledge base `notes` is in use by tunelab (pid {pid})"
        )),
        "{stderr}"
    );
    let report = json(&first.wait_with_output().unwrap());
    assert_eq!(report["added"].as_array().unwrap().len(), 120);
    let again = json(&tunelab(h, &add[2..]));
    assert!(again["added"].as_array().unwrap().is_empty(), "{again}");
    let list = json(&tunelab(h, &["kb", "list", "--json"]));
    assert_eq!(list[0]["documents"], 120);
}
