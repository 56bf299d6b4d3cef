//! `train_run`: a run from its configuration to its artifact, as the app and the CLI start it
//! (the api adds only the workspace around it: lock, plan check, summary).

use std::path::Path;
use std::sync::atomic::AtomicBool;

use tunelab_engine::Device;
use tunelab_train::trainer::{EvalMetrics, ProgressSink, RunDir, StepMetrics, TrainError};
use tunelab_train::{train_run, Method, RunConfig, TrainedRun};

use crate::models_dir;

struct Steps(u64);

impl ProgressSink for Steps {
    fn step(&mut self, _: &StepMetrics) {
        self.0 += 1;
    }
    fn eval(&mut self, _: &EvalMetrics) {}
}

/// `train_run` from the default GGUF on the CPU, cancelled from the start when `cancel`.
fn train_default(
    config: &RunConfig,
    run: &RunDir,
    sink: &mut dyn ProgressSink,
    cancel: bool,
) -> Result<TrainedRun, TrainError> {
    let gguf = models_dir().join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    train_run(
        config,
        Some(&gguf),
        run,
        &Device::Cpu,
        sink,
        &AtomicBool::new(cancel),
    )
}

/// Twelve question/answer rows in the Alpaca format, one of them without its answer.
fn write_rows(dir: &Path) -> std::path::PathBuf {
    let mut text = String::new();
    for i in 0..12 {
        let output = if i == 5 {
            String::new()
        } else {
            format!("Order {i} is on its way.")
        };
        text.push_str(&format!(
            "{{\"instruction\": \"Where is order {i}?\", \"output\": \"{output}\"}}\n"
        ));
    }
    let path = dir.join("orders.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_soft_prompt_run_goes_from_its_config_to_a_saved_peft_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RunConfig {
        method: Method::SoftPrompt,
        data: write_rows(dir.path()),
        seq_len: 64,
        val_fraction: 0.25,
        ..Default::default()
    };
    config.train.max_steps = 2;
    config.train.batch_size = 2;
    config.soft_prompt.num_virtual_tokens = 4;
    let run = RunDir::create(&dir.path().join("run")).unwrap();
    let mut steps = Steps(0);
    let trained = train_default(&config, &run, &mut steps, false).unwrap();

    assert_eq!((trained.outcome.steps, steps.0), (2, 2));
    assert!(!trained.outcome.cancelled && trained.outcome.tokens_seen > 0);
    // The row without an answer is left out; the other eleven split 8 + 3 (a quarter validates).
    assert_eq!(trained.train_examples + trained.val_examples, 11);
    assert!(
        trained.val_examples >= 2,
        "{} validate",
        trained.val_examples
    );
    // 4 virtual tokens of the model's 576-wide embeddings are all that trains.
    assert_eq!(trained.trainable_parameters, 4 * 576);
    assert_eq!(trained.artifact, run.artifact_dir());
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        assert!(
            trained.artifact.join(file).is_file(),
            "artifact/{file} saved"
        );
    }
    assert!(
        !run.path().join(".artifact.partial").exists(),
        "the staging folder became the artifact"
    );
}

#[test]
fn a_run_cancelled_before_its_first_step_saves_no_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RunConfig {
        method: Method::SoftPrompt,
        data: write_rows(dir.path()),
        seq_len: 64,
        ..Default::default()
    };
    config.train.max_steps = 5;
    config.soft_prompt.num_virtual_tokens = 2;
    let run = RunDir::create(&dir.path().join("run")).unwrap();
    let trained = train_default(&config, &run, &mut Steps(0), true).unwrap();
    assert!(trained.outcome.cancelled);
    assert!(
        !trained.artifact.exists(),
        "a cancelled run leaves no artifact"
    );
}

#[test]
fn a_dataset_without_a_usable_example_is_refused_naming_the_file_and_the_first_problem() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("empty-answers.jsonl");
    std::fs::write(&data, "{\"instruction\": \"Hi\", \"output\": \"\"}\n").unwrap();
    let config = RunConfig {
        method: Method::SoftPrompt,
        data: data.clone(),
        seq_len: 64,
        ..Default::default()
    };
    let run = RunDir::create(&dir.path().join("run")).unwrap();
    let err = train_default(&config, &run, &mut Steps(0), false).unwrap_err();
    let TrainError::Config(message) = &err else {
        panic!("a configuration error, not {err:?}");
    };
    assert!(
        message.contains(&data.display().to_string()) && message.contains("no usable examples: "),
        "{message}"
    );
}
