//! The memory plan of a training run, set against the memory the device has free: whether it
//! fits, and which changes would make it fit (or run faster while still fitting).

use serde::Serialize;
use ts_rs::TS;
use tunelab_engine::{inspect, ModelFormat};
use tunelab_train::plan::{estimate, MemoryEstimate, PlanInput};
use tunelab_train::recipe::StoredBase;

use crate::error::{ApiError, Result};
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
        "wont_fit",
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
