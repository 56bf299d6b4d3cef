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
    let mut t = native_model().transformer.clone();
    let config = LoraConfig {
        rank: 8,
        alpha: 16.0,
        dropout: 0.0,
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
    assert!(dir
        .path()
        .join("checkpoints/step-10/params.safetensors")
        .is_file());
    assert!(dir
        .path()
        .join("checkpoints/step-3/optimizer.safetensors")
        .is_file());
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
