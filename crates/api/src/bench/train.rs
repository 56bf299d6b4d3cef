//! Training speed and peak memory on fixed batches of random tokens.

use serde::Serialize;
use ts_rs::TS;

use super::tempfile_dir;
use crate::error::{ApiError, Result};
use crate::workspace::Workspace;

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct TrainBench {
    pub model: String,
    pub method: String,
    pub batch_size: u32,
    pub seq_len: u32,
    /// Measured steps (after one warm-up step).
    pub steps: u32,
    /// Trained tokens per second over the measured steps.
    pub tokens_per_s: f64,
    #[ts(type = "number | null")]
    pub peak_rss_bytes: Option<u64>,
    #[ts(type = "number")]
    pub trainable_parameters: u64,
    /// Whether blocks were recomputed in backward instead of keeping their activations.
    pub activation_checkpointing: bool,
}

/// What to measure in [`train`].
#[derive(Debug, Clone)]
pub struct TrainBenchRequest {
    pub model: String,
    pub method: crate::train::Method,
    pub batch_size: usize,
    pub seq_len: usize,
    /// Measured steps, after one warm-up step.
    pub steps: usize,
    pub activation_checkpointing: bool,
    pub device: tunelab_engine::DeviceChoice,
}

impl Default for TrainBenchRequest {
    fn default() -> Self {
        TrainBenchRequest {
            model: crate::DEFAULT_MODEL.to_string(),
            method: crate::train::Method::Lora,
            batch_size: 4,
            seq_len: 256,
            steps: 3,
            activation_checkpointing: true,
            device: tunelab_engine::DeviceChoice::Auto,
        }
    }
}

/// A training-speed benchmark on fixed batches of `batch × seq_len` tokens (every token
/// trained), LoRA rank 16 on all linear layers without dropout, as PyTorch + PEFT is measured
/// for comparison.
pub fn train(ws: &Workspace, request: &TrainBenchRequest) -> Result<TrainBench> {
    let TrainBenchRequest {
        model: ref model_name,
        method,
        batch_size: batch,
        seq_len,
        steps,
        activation_checkpointing,
        device,
    } = *request;
    use tunelab_train::data::TokenizedExample;
    use tunelab_train::trainer::{EvalMetrics, ProgressSink, RunDir, StepMetrics, TrainSettings};

    struct Rates(Vec<f64>);
    impl ProgressSink for Rates {
        fn step(&mut self, m: &StepMetrics) {
            self.0.push(m.tokens_per_s);
        }
        fn eval(&mut self, _: &EvalMetrics) {}
    }

    if batch == 0 || seq_len < 2 || steps == 0 {
        return Err(ApiError::invalid(
            "the training benchmark needs batch ≥ 1, seq_len ≥ 2 and steps ≥ 1",
        ));
    }
    let mut config = crate::train::RunConfig {
        method,
        ..Default::default()
    };
    // Equal settings with the PyTorch + PEFT reference, which trains LoRA without dropout: the
    // mask drawn for every adapter's input took 6% of a step (perf).
    config.lora.dropout = 0.0;
    let device = device.open()?;
    let (mut model, model_name) = if config.from_scratch() {
        // A new model of the default preset (10M parameters); its tokenizer only has to exist.
        let dir = tempfile_dir("tunelab-bench-model")?;
        let text = "Benchmarks train on random tokens; this text only seeds a tokenizer.";
        let tokenizer = tunelab_train::methods::pretrain::train_tokenizer([text].into_iter(), 300)?;
        let preset = config.pretrain.preset;
        let c = config
            .pretrain
            .model_config(preset.default_vocab_size(), &[0])?;
        let model =
            tunelab_train::methods::pretrain::create_model(&dir, &c, &tokenizer, 1, &device);
        let _ = std::fs::remove_dir_all(&dir);
        (model?, format!("new {} model", preset.as_str()))
    } else {
        let (_, path) = crate::models::resolve(ws, model_name)?;
        let model = tunelab_engine::load(&path, method.precision(&device), &device)?;
        (model, model_name.to_string())
    };
    let params = config.method.recipe().attach(&mut model, &config)?;
    let vocab = model.transformer.config.vocab_size as u64;
    let mut state = 0x853C_49E6_748F_EA9Bu64;
    let examples: Vec<TokenizedExample> = (0..batch)
        .map(|i| {
            let ids: Vec<u32> = (0..seq_len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33) % vocab) as u32
                })
                .collect();
            let labels = ids.iter().map(|t| *t as i64).collect();
            TokenizedExample {
                line: i + 1,
                full_len: seq_len,
                full_len_estimated: false,
                ids,
                labels,
            }
        })
        .collect();
    let dir = tempfile_dir("tunelab-bench-train")?;
    let run = RunDir::create(&dir)?;
    let settings = TrainSettings {
        max_steps: steps as u64 + 1,
        batch_size: batch,
        eval_every: 0,
        save_every: 0,
        warmup_steps: 0,
        activation_checkpointing,
        ..Default::default()
    };
    let mut rates = Rates(Vec::new());
    let outcome = tunelab_train::trainer::train(
        &model.transformer,
        &params,
        &examples,
        &[],
        &settings,
        &run,
        0,
        &mut rates,
        &std::sync::atomic::AtomicBool::new(false),
    );
    let _ = std::fs::remove_dir_all(&dir);
    outcome?;
    let peak_rss_bytes = tunelab_hardware::peak_rss_bytes();
    let trainable_parameters = params.iter().map(|(_, v)| v.elem_count() as u64).sum();
    drop((model, params));
    crate::release_freed_memory();
    let measured = &rates.0[1..];
    Ok(TrainBench {
        model: model_name,
        method: method.as_str().to_string(),
        batch_size: batch as u32,
        seq_len: seq_len as u32,
        steps: measured.len() as u32,
        tokens_per_s: measured.iter().sum::<f64>() / measured.len().max(1) as f64,
        peak_rss_bytes,
        trainable_parameters,
        activation_checkpointing,
    })
}
