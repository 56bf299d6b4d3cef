//! Benchmarks a user can run on their own machine: prompt processing (prefill) and token
//! generation (decode) speed, measured the way llama.cpp's llama-bench reports them.

use std::ops::ControlFlow;

use serde::Serialize;
use ts_rs::TS;
use tunelab_engine::SamplingParams;

use crate::chat::ModelCache;
use crate::error::{ApiError, Result};
use crate::workspace::Workspace;

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct DecodeBench {
    pub model: String,
    pub device: String,
    pub threads: u32,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub runs: u32,
    /// Best of the runs, tokens per second.
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    #[ts(type = "number | null")]
    pub peak_rss_bytes: Option<u64>,
}

/// A prompt of exactly `n` tokens made from ordinary prose.
fn prompt_ids(model: &tunelab_engine::LoadedModel, n: usize) -> Result<Vec<u32>> {
    const TEXT: &str = "Home computers with a graphics card can adapt a language model to their owner's \
        writing, documents and tasks. The work starts with measuring: how much memory the model needs, \
        how fast it reads a prompt and how fast it writes an answer. ";
    let unit = model.tokenizer.encode(TEXT, false)?;
    if unit.is_empty() {
        return Err(ApiError::new(
            "internal",
            "the tokenizer produced no tokens for the benchmark text",
        ));
    }
    Ok(unit.iter().copied().cycle().take(n).collect())
}

pub fn decode(
    ws: &Workspace,
    cache: &ModelCache,
    model_name: &str,
    prompt_tokens: usize,
    gen_tokens: usize,
    runs: usize,
) -> Result<DecodeBench> {
    if prompt_tokens == 0 || gen_tokens < 2 || runs == 0 {
        return Err(ApiError::invalid(
            "the benchmark needs at least 1 prompt token, 2 generated tokens and 1 run",
        ));
    }
    let model = cache.get(ws, model_name)?;
    let limit = model.transformer.config.max_position_embeddings;
    if prompt_tokens + gen_tokens > limit {
        return Err(ApiError::invalid(format!(
            "{prompt_tokens} + {gen_tokens} tokens exceed the model's context of {limit}"
        )));
    }
    let ids = prompt_ids(&model, prompt_tokens)?;
    // Greedy, no end-of-sequence: every run generates exactly `gen_tokens` tokens.
    let params = SamplingParams {
        temperature: 0.0,
        repetition_penalty: 1.0,
        max_tokens: gen_tokens,
        ..Default::default()
    };
    let (mut best_prefill, mut best_decode) = (0f64, 0f64);
    for _ in 0..runs {
        let out = tunelab_engine::generate(
            &model.transformer,
            &model.tokenizer,
            &ids,
            &[],
            &params,
            &mut |_| ControlFlow::Continue(()),
        )?;
        best_prefill = best_prefill.max(out.prefill_tokens_per_second());
        best_decode = best_decode.max(out.decode_tokens_per_second());
    }
    Ok(DecodeBench {
        model: model_name.to_string(),
        device: format!("{:?}", model.transformer.device()).to_lowercase(),
        threads: std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
        prompt_tokens: prompt_tokens as u32,
        generated_tokens: gen_tokens as u32,
        runs: runs as u32,
        prefill_tokens_per_s: best_prefill,
        decode_tokens_per_s: best_decode,
        peak_rss_bytes: tunelab_hardware::peak_rss_bytes(),
    })
}

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
        }
    }
}

/// A training-speed benchmark on fixed batches of `batch × seq_len` tokens (every token
/// trained), LoRA rank 16 on all linear layers, as PyTorch + PEFT is measured for comparison.
pub fn train(ws: &Workspace, request: &TrainBenchRequest) -> Result<TrainBench> {
    let TrainBenchRequest {
        model: ref model_name,
        method,
        batch_size: batch,
        seq_len,
        steps,
        activation_checkpointing,
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
    let config = crate::train::RunConfig {
        method,
        ..Default::default()
    };
    let device = tunelab_engine::default_device();
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
        let model = tunelab_engine::load(&path, method.precision(), &device)?;
        (model, model_name.to_string())
    };
    let params = crate::train::attach_trainable(&mut model, &config)?;
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
    let measured = &rates.0[1..];
    Ok(TrainBench {
        model: model_name,
        method: method.as_str().to_string(),
        batch_size: batch as u32,
        seq_len: seq_len as u32,
        steps: measured.len() as u32,
        tokens_per_s: measured.iter().sum::<f64>() / measured.len().max(1) as f64,
        peak_rss_bytes: tunelab_hardware::peak_rss_bytes(),
        trainable_parameters: params.iter().map(|(_, v)| v.elem_count() as u64).sum(),
        activation_checkpointing,
    })
}

/// A fresh folder under the system's temporary folder for this process.
fn tempfile_dir(prefix: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| ApiError::io(&dir, e))?;
    Ok(dir)
}
