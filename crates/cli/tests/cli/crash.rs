//! The crash campaign: training and knowledge-base adds killed with SIGKILL at random moments,
//! then run again, must end exactly where an uninterrupted run ends. CI runs one trial of each;
//! `TUNELAB_CRASH_TRIALS=N` runs N (docs/workspace.md, "Crash safety").

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::jobs::wait_for;
use crate::{add_default_gguf, default_minilm, json, tunelab};

fn trials() -> u64 {
    std::env::var("TUNELAB_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// A delay between 0 and `max_ms`, different in each trial; the seed is printed so a failing
/// trial can be told apart.
fn random_delay(trial: u64, max_ms: u64) -> Duration {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        ^ trial.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let ms = (seed ^ (seed >> 17)).wrapping_mul(0xBF58_476D_1CE4_E5B9) % max_ms.max(1);
    eprintln!("trial {trial}: kill after {ms} ms");
    Duration::from_millis(ms)
}

fn train_args<'a>(home: &'a str, data: &'a str, config: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "--home",
        home,
        "train",
        "lora",
        "--model",
        "smol",
        "--data",
        data,
        "--config",
        config,
        "--max-steps",
        "10",
        "--batch-size",
        "2",
        "--seq-len",
        "192",
        "--device",
        "cpu",
        "--out",
        out,
        "--json",
    ]
}

#[test]
fn training_killed_anywhere_resumes_to_the_uninterrupted_adapter() {
    let home = tempfile::tempdir().unwrap();
    add_default_gguf(home.path(), "smol");
    let data =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/lora-json-extract/train.jsonl");
    // Dropout on, a checkpoint every other step, and every checkpoint kept.
    let config = home.path().join("run.toml");
    std::fs::write(
        &config,
        "[train]\nsave_every = 2\nkeep_checkpoints = 0\n[lora]\ndropout = 0.1\n",
    )
    .unwrap();
    let h = home.path().to_str().unwrap();
    let (data, config) = (data.to_str().unwrap(), config.to_str().unwrap());
    let adapter =
        |run: &Path| std::fs::read(run.join("artifact/adapter_model.safetensors")).unwrap();

    let straight = home.path().join("runs/straight");
    let done = json(
        &Command::new(env!("CARGO_BIN_EXE_tunelab"))
            .args(train_args(h, data, config, straight.to_str().unwrap()))
            .output()
            .unwrap(),
    );
    assert_eq!(done["status"], "completed");
    let expected = adapter(&straight);
    let training_ms = (done["wall_time_s"].as_f64().unwrap() * 1000.0) as u64;

    for trial in 0..trials() {
        let run = home.path().join(format!("runs/killed-{trial}"));
        let args = train_args(h, data, config, run.to_str().unwrap());
        let mut child = Command::new(env!("CARGO_BIN_EXE_tunelab"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("the first training step", || {
            std::fs::read_to_string(run.join("metrics.jsonl")).is_ok_and(|m| !m.is_empty())
        });
        std::thread::sleep(random_delay(trial, training_ms));
        if child.try_wait().unwrap().is_some() {
            eprintln!("trial {trial}: the run finished before the kill");
        } else {
            child.kill().unwrap();
            child.wait().unwrap();
            let resumed = json(
                &Command::new(env!("CARGO_BIN_EXE_tunelab"))
                    .args(&args)
                    .output()
                    .unwrap(),
            );
            assert_eq!(resumed["status"], "completed", "{resumed}");
        }
        assert!(
            adapter(&run) == expected,
            "trial {trial}: the resumed adapter is byte for byte the uninterrupted one"
        );
        let steps: Vec<u64> = std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["kind"] == "train")
            .map(|v| v["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, (1..=10).collect::<Vec<u64>>(), "trial {trial}");
    }
}

/// Chunks per document of the knowledge base `kb`, by file name.
fn chunks_by_file(home: &Path, kb: &str) -> BTreeMap<String, u64> {
    let shown = json(&tunelab(Some(home), &["kb", "show", kb, "--json"]));
    shown["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let source = s["source"].as_str().unwrap();
            let file = Path::new(source).file_name().unwrap().to_string_lossy();
            (file.into_owned(), s["chunks"].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn an_add_killed_anywhere_ends_chunk_for_chunk_as_a_clean_one() {
    let home = tempfile::tempdir().unwrap();
    let h = Some(home.path());
    let minilm = default_minilm();
    json(&tunelab(
        h,
        &["models", "add", minilm.to_str().unwrap(), "--json"],
    ));
    let docs = home.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for i in 0..150 {
        let text: String = (0..30 + i % 20)
            .map(|j| {
                format!(
                    "Record {i}.{j}: crate {} went to shelf {}.\n",
                    i * 7 + j,
                    j % 9
                )
            })
            .collect();
        std::fs::write(docs.join(format!("record-{i:03}.md")), text).unwrap();
    }
    let docs_arg = docs.to_str().unwrap();
    json(&tunelab(h, &["kb", "create", "clean", "--json"]));
    let started = Instant::now();
    json(&tunelab(h, &["kb", "add", "clean", docs_arg, "--json"]));
    let clean_ms = started.elapsed().as_millis() as u64;
    let expected = chunks_by_file(home.path(), "clean");
    assert_eq!(expected.len(), 150);

    for trial in 0..trials() {
        let kb = format!("killed-{trial}");
        json(&tunelab(h, &["kb", "create", &kb, "--json"]));
        let mut child = Command::new(env!("CARGO_BIN_EXE_tunelab"))
            .args([
                "--home",
                home.path().to_str().unwrap(),
                "kb",
                "add",
                &kb,
                docs_arg,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(random_delay(trial, clean_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever landed is whole.
        for (file, chunks) in chunks_by_file(home.path(), &kb) {
            assert_eq!(Some(&chunks), expected.get(&file), "trial {trial}: {file}");
        }
        let again = json(&tunelab(h, &["kb", "add", &kb, docs_arg, "--json"]));
        assert!(again["failed"].as_array().unwrap().is_empty(), "{again}");
        assert_eq!(chunks_by_file(home.path(), &kb), expected, "trial {trial}");
        let hits = json(&tunelab(
            h,
            &[
                "kb",
                "search",
                &kb,
                "crate 77 shelf",
                "--mode",
                "hybrid",
                "--json",
            ],
        ));
        assert!(
            !hits.as_array().unwrap().is_empty(),
            "trial {trial}: {hits}"
        );
        let last = json(&tunelab(h, &["kb", "add", &kb, docs_arg, "--json"]));
        assert_eq!(
            last["chunks_added"], 0,
            "trial {trial}: a second add adds nothing"
        );
    }
}
