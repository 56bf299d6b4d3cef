//! The shared training loop on the real default model: the loss falls, a resumed run repeats
//! the uninterrupted run's losses, cancel leaves a checkpoint, and the run folder holds what it
//! promises.

use std::sync::atomic::AtomicBool;

use tunelab_train::data::TokenizedExample;
use tunelab_train::methods::lora::{self, LoraConfig};
use tunelab_train::trainer::{self, EvalMetrics, ProgressSink, RunDir, StepMetrics, TrainSettings};

use crate::native_model;

/// Records losses; sets `cancel` once step `cancel_at` is done, as a user pressing Stop would.
struct Log<'a> {
    losses: Vec<f64>,
    evals: Vec<f64>,
    cancel_at: Option<u64>,
    cancel: &'a AtomicBool,
}

impl ProgressSink for Log<'_> {
    fn step(&mut self, m: &StepMetrics) {
        self.losses.push(m.loss);
        if Some(m.step) == self.cancel_at {
            self.cancel
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    fn eval(&mut self, m: &EvalMetrics) {
        self.evals.push(m.val_loss);
    }
}

/// Question/answer pairs in the chat template, loss on the answers only.
fn examples() -> Vec<TokenizedExample> {
    let m = native_model();
    let pairs = [
        (
            "Order: two pizzas to Oak Street",
            "{\"intent\":\"order\",\"items\":[\"pizza\",\"pizza\"]}",
        ),
        (
            "Cancel my order please",
            "{\"intent\":\"cancel\",\"items\":[]}",
        ),
        (
            "One salad for Dana",
            "{\"intent\":\"order\",\"items\":[\"salad\"]}",
        ),
        (
            "My soup was cold",
            "{\"intent\":\"complaint\",\"items\":[\"soup\"]}",
        ),
    ];
    crate::chat_examples(m, &pairs)
}

fn run(
    dir: &std::path::Path,
    settings: &TrainSettings,
    cancel_at: Option<u64>,
) -> (Vec<f64>, Vec<f64>, trainer::TrainOutcome) {
    run_with_dropout(dir, settings, cancel_at, 0.0)
}

fn run_with_dropout(
    dir: &std::path::Path,
    settings: &TrainSettings,
    cancel_at: Option<u64>,
    dropout: f32,
) -> (Vec<f64>, Vec<f64>, trainer::TrainOutcome) {
    let mut t = native_model().transformer.clone();
    let config = LoraConfig {
        rank: 8,
        alpha: 16.0,
        dropout,
        targets: vec!["q_proj".into(), "v_proj".into()],
        rslora: false,
    };
    let params = lora::attach(&mut t, &config, 5).unwrap();
    let data = examples();
    let run = RunDir::create(dir).unwrap();
    let cancel = AtomicBool::new(cancel_at == Some(0));
    let mut log = Log {
        losses: Vec::new(),
        evals: Vec::new(),
        cancel_at,
        cancel: &cancel,
    };
    let outcome = trainer::train(
        &t,
        &params,
        &data,
        &data[..2],
        settings,
        &run,
        2,
        &mut log,
        &cancel,
    )
    .unwrap();
    (log.losses, log.evals, outcome)
}

fn settings(max_steps: u64) -> TrainSettings {
    TrainSettings {
        max_steps,
        lr: 3e-3,
        warmup_steps: 1,
        batch_size: 2,
        eval_every: 0,
        save_every: 3,
        ..Default::default()
    }
}

#[test]
fn loss_falls_and_the_run_folder_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let (losses, evals, outcome) = run(dir.path(), &settings(10), None);
    assert_eq!(outcome.steps, 10);
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < first * 0.6, "training loss falls: {losses:?}");
    assert_eq!(evals.len(), 1, "validation runs at the end");
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.lines().count(),
        11,
        "10 step records and 1 validation record"
    );
    let step: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    for field in [
        "step",
        "loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "tokens_seen",
        "rss_bytes",
    ] {
        assert!(step.get(field).is_some(), "metrics carry `{field}`: {step}");
    }
    // Saved at steps 3, 6, 9 and 10; the policy keeps the newest two (validation ran only at
    // the end, so the best by validation loss is one of them).
    let kept: Vec<String> = std::fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    for step in [9, 10] {
        for file in ["params.safetensors", "optimizer.safetensors", "state.json"] {
            let path = dir.path().join(format!("checkpoints/step-{step}/{file}"));
            assert!(path.is_file(), "{} is kept", path.display());
        }
    }
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("checkpoints/step-10/state.json")).unwrap(),
    )
    .unwrap();
    let listed = state["files"]["params.safetensors"].as_u64().unwrap();
    let size = std::fs::metadata(dir.path().join("checkpoints/step-10/params.safetensors"))
        .unwrap()
        .len();
    assert_eq!(listed, size, "state.json records each file's size: {state}");
    assert!(state["val_loss"].as_f64().is_some(), "{state}");
}

/// Each training step's record in a run's metrics.jsonl, in order.
fn logged_steps(dir: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "train")
        .map(|r| r["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_run_killed_after_a_damaged_checkpoint_resumes_exactly_with_dropout_on() {
    let settings = TrainSettings {
        keep_checkpoints: 0,
        ..settings(6)
    };
    let straight = tempfile::tempdir().unwrap();
    run_with_dropout(straight.path(), &settings, None, 0.1);

    // Stopped after step 4 (checkpoints at 3 and 4). Then, as a kill in the middle of the next
    // save would leave it: step 4's weights cut short, and a metrics line half written.
    let split = tempfile::tempdir().unwrap();
    let (_, _, stopped) = run_with_dropout(split.path(), &settings, Some(4), 0.1);
    assert_eq!(stopped.steps, 4);
    let damaged = split.path().join("checkpoints/step-4/params.safetensors");
    let bytes = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let mut metrics = std::fs::OpenOptions::new()
        .append(true)
        .open(split.path().join("metrics.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut metrics, b"{\"kind\":\"train\",\"st").unwrap();

    let (_, _, resumed) = run_with_dropout(split.path(), &settings, None, 0.1);
    assert_eq!(
        resumed.resumed_from,
        Some(3),
        "the damaged step-4 checkpoint is passed over for step 3"
    );
    assert_eq!(
        logged_steps(split.path()),
        vec![1, 2, 3, 4, 5, 6],
        "steps after the checkpoint and the cut line are logged once, not twice"
    );
    let weights = |dir: &std::path::Path| {
        std::fs::read(dir.join("checkpoints/step-6/params.safetensors")).unwrap()
    };
    assert!(
        weights(straight.path()) == weights(split.path()),
        "the resumed run's adapter is bit for bit the uninterrupted one's"
    );
}

#[test]
fn a_resumed_run_repeats_the_uninterrupted_losses() {
    let straight = tempfile::tempdir().unwrap();
    let (full, _, _) = run(straight.path(), &settings(6), None);

    // The same run stopped by the user after step 4 (checkpoints every 3 steps, plus one on
    // cancel), then started again: it continues from step 4 with the same optimiser state.
    let split = tempfile::tempdir().unwrap();
    let (first_part, _, stopped) = run(split.path(), &settings(6), Some(4));
    assert!(stopped.cancelled && stopped.steps == 4);
    let (second_part, _, resumed) = run(split.path(), &settings(6), None);
    assert_eq!(
        resumed.resumed_from,
        Some(4),
        "the second call picks up the step-4 checkpoint"
    );
    let joined: Vec<f64> = first_part.iter().chain(&second_part).copied().collect();
    assert_eq!(joined.len(), full.len());
    for (i, (a, b)) in joined.iter().zip(&full).enumerate() {
        assert!(
            (a - b).abs() < 1e-4,
            "step {}: resumed loss {a} vs uninterrupted {b}",
            i + 1
        );
    }
}

#[test]
fn cancel_before_the_first_step_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (losses, _, outcome) = run(dir.path(), &settings(5), Some(0));
    assert!(
        outcome.cancelled && outcome.steps == 0 && losses.is_empty(),
        "cancelled before the first step"
    );
    assert!(
        RunDir::create(dir.path())
            .unwrap()
            .latest_checkpoint()
            .is_none(),
        "nothing to checkpoint before step 1"
    );
}
