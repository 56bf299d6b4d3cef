//! Memory plans set against the memory the device has free: a training run's (whether it fits,
//! and which changes would make it fit or run faster while still fitting), and chat's (a
//! model's weights and its KV cache at the context a conversation asks for).

use serde::Serialize;
use ts_rs::TS;
use tunelab_engine::{inspect, ModelFormat};
use tunelab_train::plan::{estimate, MemoryEstimate, PlanInput};
use tunelab_train::recipe::StoredBase;

use crate::error::{ApiError, ErrorCode, Result};
use crate::models;
use crate::train::{Method, RunConfig};
use crate::workspace::Workspace;

/// Share of the free memory a run may plan to use; the rest stays for the system and the
/// estimate's error.
const USABLE_SHARE: f64 = 0.9;

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct TrainPlan {
    pub model: String,
    pub method: Method,
    /// Where the run would train: "cpu" or "cuda:0".
    pub device: String,
    pub batch_size: u32,
    pub seq_len: u32,
    pub activation_checkpointing: bool,
    #[ts(type = "number")]
    pub trainable_parameters: u64,
    pub estimate: MemoryEstimate,
    /// Memory free on the device now; null when it cannot be read.
    #[ts(type = "number | null")]
    pub available_bytes: Option<u64>,
    /// Whether the estimate stays within 90% of the free memory (true when that is unknown).
    pub fits: bool,
    /// Changes that would make the run fit, or make it faster while still fitting; each says
    /// what it would need.
    pub advice: Vec<String>,
}

/// What the plan depends on, from a run's configuration.
#[derive(Debug, Clone, PartialEq)]
struct Knobs {
    method: Method,
    batch_size: usize,
    seq_len: usize,
    checkpointing: bool,
}

/// Plans the run `config` describes, without loading the model's weights. A setting out of
/// range is refused first, as a run would refuse it.
pub fn train(ws: &Workspace, config: &RunConfig) -> Result<TrainPlan> {
    config.validate()?;
    // The model's shape: from its files, or for a new model from the pretraining settings.
    let (model_config, quantized_file, stored_bytes) = if config.from_scratch() {
        let c = config
            .pretrain
            .model_config(config.pretrain.vocab_size(), &[0])?;
        (c, false, 0)
    } else {
        let (_, path) = models::resolve(ws, &config.model)?;
        let summary = inspect(&path)?;
        let quantized = summary.format == ModelFormat::Gguf
            && summary
                .quantization
                .as_deref()
                .is_some_and(|q| q.starts_with('Q'));
        (summary.config, quantized, summary.size_bytes)
    };
    let stored = StoredBase {
        quantized_file,
        bytes: stored_bytes,
    };
    let trainable = config
        .method
        .recipe()
        .plan_terms(&model_config, config, stored)?
        .trainable_parameters;
    let device = config.device.open()?;
    let on_gpu = tunelab_engine::cuda_index(&device).is_some();
    let estimate_for = |k: &Knobs| -> MemoryEstimate {
        let recipe = k.method.recipe();
        // What the trainer holds the base and computes in on this device.
        let element_bytes = recipe.precision(&device).dense_dtype().size_in_bytes() as u64;
        let terms = recipe
            .plan_terms(&model_config, config, stored)
            .expect("the terms were computed once already, for the run's own method");
        estimate(&PlanInput {
            config: &model_config,
            base: terms.base,
            trainable_parameters: terms.trainable_parameters,
            trainable_are_weights: terms.trainable_are_weights,
            frozen_blocks: terms.frozen_blocks,
            batch_size: k.batch_size,
            seq_len: k.seq_len + terms.extra_positions,
            activation_checkpointing: k.checkpointing,
            element_bytes,
            on_gpu,
        })
    };
    let knobs = Knobs {
        method: config.method,
        batch_size: config.train.batch_size,
        seq_len: config.seq_len,
        checkpointing: config.train.activation_checkpointing,
    };
    let planned = estimate_for(&knobs);
    let (device, available) = free_memory(&device);
    let budget = available.map(|a| (a as f64 * USABLE_SHARE) as u64);
    let fits_in = |e: &MemoryEstimate| budget.is_none_or(|b| e.total_bytes <= b);
    let fits = fits_in(&planned);

    let mut advice = Vec::new();
    let mut suggest = |k: Knobs, what: String| {
        let e = estimate_for(&k);
        if fits_in(&e) {
            advice.push(format!("{what}: about {}", gib(e.total_bytes)));
        }
    };
    if fits {
        if knobs.checkpointing {
            suggest(
                Knobs {
                    checkpointing: false,
                    ..knobs.clone()
                },
                "turn activation checkpointing off to train about a quarter faster".into(),
            );
        }
    } else {
        if !knobs.checkpointing {
            suggest(
                Knobs {
                    checkpointing: true,
                    ..knobs.clone()
                },
                "turn activation checkpointing on".into(),
            );
        }
        if let Some((leaner, why)) = knobs.method.recipe().leaner() {
            suggest(
                Knobs {
                    method: leaner,
                    checkpointing: true,
                    ..knobs.clone()
                },
                format!("use {} ({why}) with checkpointing", leaner.label()),
            );
        }
        let mut batch = knobs.batch_size;
        while batch > 1 {
            batch /= 2;
            let k = Knobs {
                batch_size: batch,
                checkpointing: true,
                ..knobs.clone()
            };
            if fits_in(&estimate_for(&k)) {
                suggest(
                    k,
                    format!(
                        "lower the batch size to {batch} (raise grad_accum to {} to keep the same effective batch) with checkpointing",
                        config.train.grad_accum * knobs.batch_size / batch
                    ),
                );
                break;
            }
        }
        let mut seq = knobs.seq_len;
        while seq > 64 {
            seq /= 2;
            let k = Knobs {
                seq_len: seq,
                checkpointing: true,
                ..knobs.clone()
            };
            if fits_in(&estimate_for(&k)) {
                suggest(
                    k,
                    format!("shorten the sequence length to {seq} tokens with checkpointing"),
                );
                break;
            }
        }
        if advice.is_empty() {
            advice.push(
                "no smaller setting fits: free memory, or choose a smaller model".to_string(),
            );
        }
    }
    Ok(TrainPlan {
        model: config.model.clone(),
        method: config.method,
        device,
        batch_size: knobs.batch_size as u32,
        seq_len: knobs.seq_len as u32,
        activation_checkpointing: knobs.checkpointing,
        trainable_parameters: trainable,
        estimate: planned,
        available_bytes: available,
        fits,
        advice,
    })
}

/// The refusal a run gets when its plan does not fit.
pub fn refusal(plan: &TrainPlan) -> ApiError {
    let free = plan
        .available_bytes
        .map(gib)
        .unwrap_or_else(|| "unknown".into());
    ApiError::new(
        ErrorCode::WontFit,
        format!(
            "this run needs about {} but {} is free on {} (it may use 90% of that). To fit: {}. \
             `tunelab plan train` shows the whole plan; --force starts it anyway",
            gib(plan.estimate.total_bytes),
            free,
            plan.device,
            plan.advice.join("; or ")
        ),
    )
}

/// The training device's label and its free memory.
fn free_memory(device: &tunelab_engine::Device) -> (String, Option<u64>) {
    let report = tunelab_hardware::probe();
    if let Some(gpu_id) = tunelab_engine::cuda_index(device) {
        let free = report
            .gpus
            .iter()
            .find(|g| g.index as usize == gpu_id)
            .map(|g| g.memory_free_bytes);
        return (tunelab_engine::device_label(device), free);
    }
    let available = report.memory.available_bytes;
    ("cpu".into(), (available > 0).then_some(available))
}

fn gib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// What answering with a model takes on its device: the weights, when not loaded yet, and the
/// KV cache at `context_tokens`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMemory {
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub context_tokens: usize,
}

/// Memory per token of context: keys and values of every layer, in the activations' type (f32
/// on the CPU, 16 bits on a GPU).
fn kv_bytes_per_token(config: &tunelab_engine::ModelConfig, on_gpu: bool) -> u64 {
    let element = if on_gpu { 2 } else { 4 };
    2 * (config.num_hidden_layers * config.num_key_value_heads * config.head_dim) as u64 * element
}

/// What chat needs for the model `summary` describes, on the CPU (weights as stored) or a GPU
/// (16-bit weights), at a context of `context_tokens` (capped at the model's own context).
/// `loaded`: the weights are in memory already and count as used, not needed.
pub fn chat_memory(
    summary: &tunelab_engine::ModelSummary,
    on_gpu: bool,
    context_tokens: usize,
    loaded: bool,
) -> ChatMemory {
    let context_tokens = context_tokens.min(summary.config.max_position_embeddings);
    let weights_bytes = match (loaded, on_gpu) {
        (true, _) => 0,
        (false, true) => summary.config.parameter_count() * 2,
        (false, false) => summary.size_bytes,
    };
    ChatMemory {
        weights_bytes,
        kv_cache_bytes: kv_bytes_per_token(&summary.config, on_gpu) * context_tokens as u64,
        context_tokens,
    }
}

/// Refuses a chat that `available` bytes (the device's free memory; `None`: unknown, which is
/// let through) cannot hold, saying what would fit: a shorter context, or a 4-bit copy of the
/// model.
pub fn check_chat(
    model: &str,
    summary: &tunelab_engine::ModelSummary,
    on_gpu: bool,
    need: &ChatMemory,
    available: Option<u64>,
) -> Result<()> {
    let Some(available) = available else {
        return Ok(());
    };
    let budget = (available as f64 * USABLE_SHARE) as u64;
    let total = need.weights_bytes + need.kv_cache_bytes;
    if total <= budget {
        return Ok(());
    }
    let per_token = kv_bytes_per_token(&summary.config, on_gpu).max(1);
    let mut advice = Vec::new();
    if need.weights_bytes < budget {
        let tokens = (budget - need.weights_bytes) / per_token;
        if tokens >= 256 {
            advice.push(format!(
                "a context of up to {tokens} tokens fits (fewer answer tokens, or a shorter conversation)"
            ));
        }
    }
    let four_bit = summary.config.parameter_count() * 9 / 16;
    let quantized = summary
        .quantization
        .as_deref()
        .is_some_and(|q| q.starts_with('Q') || q.starts_with("IQ"));
    if !quantized && !on_gpu && four_bit + need.kv_cache_bytes <= budget {
        advice.push(format!(
            "a 4-bit GGUF copy (`tunelab export {model} --format gguf --quant q4_k_m`) needs about {}",
            gib(four_bit + need.kv_cache_bytes)
        ));
    }
    if advice.is_empty() {
        advice.push("free memory, or choose a smaller model".into());
    }
    let weights = match need.weights_bytes {
        0 => "the loaded weights".to_string(),
        w => format!("weights {}", gib(w)),
    };
    Err(ApiError::new(
        ErrorCode::WontFit,
        format!(
            "answering with {model} needs about {} ({weights}, KV cache {} for {} tokens of context) but {} is free (chat may use 90% of it). To fit: {}",
            gib(total),
            gib(need.kv_cache_bytes),
            need.context_tokens,
            gib(available),
            advice.join("; or ")
        ),
    ))
}

/// The free memory of `device` for chat's check.
pub(crate) fn chat_free_memory(device: &tunelab_engine::Device) -> Option<u64> {
    free_memory(device).1
}

#[cfg(test)]
mod chat_tests {
    use super::*;

    fn summary(quantization: &str, size_bytes: u64) -> tunelab_engine::ModelSummary {
        // An 8B Llama.
        let config = tunelab_engine::ModelConfig {
            architecture: tunelab_engine::Architecture::Llama,
            vocab_size: 128_256,
            hidden_size: 4096,
            intermediate_size: 14_336,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: 8,
            head_dim: 128,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: None,
            max_position_embeddings: 32768,
            tie_word_embeddings: false,
            attention_bias: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        };
        tunelab_engine::ModelSummary {
            format: tunelab_engine::ModelFormat::Hf,
            path: "/models/big".into(),
            config,
            quantization: Some(quantization.into()),
            size_bytes,
            has_chat_template: true,
        }
    }

    #[test]
    fn the_kv_cache_counts_every_layers_keys_and_values_at_the_asked_context() {
        let s = summary("BF16", 16 << 30);
        let need = chat_memory(&s, false, 1000, false);
        assert_eq!(need.weights_bytes, 16 << 30, "as stored on the CPU");
        assert_eq!(need.kv_cache_bytes, 2 * 32 * 8 * 128 * 4 * 1000);
        let loaded = chat_memory(&s, false, 100_000, true);
        assert_eq!(loaded.weights_bytes, 0);
        assert_eq!(
            loaded.context_tokens, 32768,
            "capped at the model's context"
        );
    }

    #[test]
    fn a_chat_that_does_not_fit_is_refused_with_what_would() {
        let s = summary("BF16", 16 << 30);
        let need = chat_memory(&s, false, 32768, false);
        // 16 GiB of weights and 8 GiB of cache (f32 on the CPU) against 20 GiB free.
        let err = check_chat("big", &s, false, &need, Some(20 << 30)).unwrap_err();
        assert_eq!(err.code, ErrorCode::WontFit);
        assert!(
            err.message.contains("KV cache 8.0 GiB for 32768 tokens"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("a context of up to"),
            "{}",
            err.message
        );
        assert!(err.message.contains("4-bit GGUF"), "{}", err.message);
        assert!(check_chat("big", &s, false, &need, Some(40 << 30)).is_ok());
        assert!(
            check_chat("big", &s, false, &need, None).is_ok(),
            "unknown memory is let through"
        );
        let small = chat_memory(&s, false, 2048, false);
        assert!(check_chat("big", &s, false, &small, Some(20 << 30)).is_ok());
    }
}
