//! Memory plan: what a training run will hold at its peak, from the model's config and the
//! run's settings alone, before anything is loaded or allocated.
//!
//! The terms follow what the trainer actually keeps (see `trainer::run` and the engine's
//! training path):
//! - the base weights at the precision they are held in (f32 for LoRA, the file's 4-bit blocks
//!   for QLoRA);
//! - per trainable parameter: the value, its gradient, the accumulated gradient and AdamW's
//!   two moments, all f32;
//! - activations kept for backward: with checkpointing, each block's output; without, every
//!   block's saved tensors;
//! - working memory, the larger of the loss pass (the output head's logits for one chunk of
//!   rows, and a slice of a quantized head decoded for it) and the backward pass (one block
//!   recomputed with its gradients, or the gradients flowing through the saved blocks);
//! - the process itself: code, tokenizer, allocator slack.
//!
//! The activation coefficients were fitted to peak RSS measured on the CPU with
//! `tunelab bench train` (SmolLM2-135M, batch 1–4 × 64–256 tokens); a test holds the estimate
//! within 25% of a measured run.
//!
//! On a GPU the same terms are counted at the sizes the GPU holds them in: frozen dense weights
//! and activations in 16 bits where the run computes in them, trained parameters and AdamW
//! state still in f32 (a fully trained weight also gets a 16-bit copy for each product), the
//! loss in larger f32 chunks, and CUDA's own context. Those terms follow from the sizes of what
//! the trainer allocates; they are not fitted to measured GPU peaks.

use serde::Serialize;
use ts_rs::TS;
use tunelab_engine::ModelConfig;

/// Bytes per element of trainable parameters, their optimizer state and the loss's logits.
const F32: u64 = 4;
/// Code, tokenizer, allocator and bookkeeping of a training process.
const RUNTIME_BYTES: u64 = 64 << 20;
/// On a GPU: the CUDA context, cuBLAS's workspaces and the loaded kernel modules.
const GPU_RUNTIME_BYTES: u64 = 512 << 20;
/// Copies of a GPU loss chunk alive together: the 16-bit logits, their f32 widening, the
/// probabilities and their gradient.
const GPU_HEAD_CHUNK_COPIES: u64 = 3;
/// Value, gradient, accumulated gradient and two AdamW moments per trainable parameter.
const BYTES_PER_TRAINABLE: u64 = 5 * F32;
/// Copies of a loss chunk (engine `head_loss`) alive together on the CPU: logits, row values,
/// their gradient.
const HEAD_CHUNK_COPIES: u64 = 2;
/// One checkpointed block recomputed in backward, with its gradients and allocator slack, in
/// units of the block's forward activations. (On the CPU the attention op keeps no scores, so
/// at long sequences this overestimates there.)
const RECOMPUTE_FACTOR: f64 = 1.1;
/// Saved activations per block without checkpointing, in units of the estimate below (views,
/// custom-op copies and allocator slack make them slightly larger).
const SAVED_FACTOR: f64 = 1.25;
/// The backward pass's transient gradients without checkpointing, in block activations.
const BACKWARD_FACTOR: f64 = 9.0;

/// How the frozen base is held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BaseWeights {
    /// Every weight dense, in the run's [`PlanInput::element_bytes`] (f32 on the CPU, 16 bits
    /// on a GPU), for LoRA, a soft prompt, full fine-tuning and pretraining.
    Dense,
    /// The weights as stored, `bytes` in all (QLoRA on a GGUF's blocks or NF4).
    Stored { bytes: u64, quantized_head: bool },
}

/// What the plan is computed from.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub config: &'a ModelConfig,
    pub base: BaseWeights,
    pub trainable_parameters: u64,
    /// The trainable parameters are the weights themselves (full fine-tuning): their values
    /// are counted with the weights already.
    pub trainable_are_weights: bool,
    pub batch_size: usize,
    pub seq_len: usize,
    pub activation_checkpointing: bool,
    /// Bytes of one activation element and of one dense frozen weight: 4 in f32, 2 in bf16/f16.
    pub element_bytes: u64,
    /// The run trains on a GPU: the plan is of the GPU's memory.
    pub on_gpu: bool,
}

/// The estimated peak, by part, in bytes.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct MemoryEstimate {
    #[ts(type = "number")]
    pub weights_bytes: u64,
    /// Trainable values, gradients and optimizer state.
    #[ts(type = "number")]
    pub trainable_bytes: u64,
    /// Activations kept from the forward pass for backward.
    #[ts(type = "number")]
    pub activations_bytes: u64,
    /// The larger of two passes' working memory: the output head's loss chunk (with a quantized
    /// head decoded for it) and the backward pass's gradients (with the block recomputed).
    #[ts(type = "number")]
    pub working_bytes: u64,
    #[ts(type = "number")]
    pub runtime_bytes: u64,
    #[ts(type = "number")]
    pub total_bytes: u64,
}

/// Forward activations one transformer block keeps for backward, in bytes, at
/// `element_bytes` per activation.
pub fn block_activation_bytes(
    c: &ModelConfig,
    batch: usize,
    seq_len: usize,
    element_bytes: u64,
) -> u64 {
    let n = (batch * seq_len) as u64;
    let h = c.hidden_size as u64;
    let q = (c.num_attention_heads * c.head_dim) as u64;
    let kv = (c.num_key_value_heads * c.head_dim) as u64;
    let i = c.intermediate_size as u64;
    // Norms, residuals and projections; queries and keys rotated, the queries scaled; the
    // attention scores and probabilities; the MLP's gate, up and gated product.
    let per_token = 6 * h + 4 * q + 3 * kv + 3 * i;
    let attention = 2 * batch as u64 * c.num_attention_heads as u64 * (seq_len as u64).pow(2);
    (n * per_token + attention) * element_bytes
}

pub fn estimate(input: &PlanInput) -> MemoryEstimate {
    let c = input.config;
    let (batch, seq) = (input.batch_size.max(1), input.seq_len.max(1));
    let tokens = (batch * seq) as u64;
    let element = input.element_bytes.clamp(1, F32);
    let block = block_activation_bytes(c, batch, seq, element) as f64;
    let layers = c.num_hidden_layers as u64;
    let kept_per_block = if input.activation_checkpointing {
        // Each block's output, the next one's input, kept between the checkpointed blocks.
        (tokens * c.hidden_size as u64 * element) as f64
    } else {
        SAVED_FACTOR * block
    };
    let mut activations = (kept_per_block * (layers + 1) as f64) as u64;
    let mut backward = if input.activation_checkpointing {
        RECOMPUTE_FACTOR * block
    } else {
        BACKWARD_FACTOR * block
    } as u64;
    if input.trainable_are_weights && element < F32 {
        // Trained weights stay f32; each product uses a 16-bit copy, which backward keeps:
        // every block's without checkpointing, the recomputed block's with it.
        let copies = c.parameter_count() * element;
        match input.activation_checkpointing {
            true => backward += copies / layers.max(1),
            false => activations += copies,
        }
    }
    let vocab = c.vocab_size as u64;
    let (chunk_elements, chunk_copies) = match input.on_gpu {
        true => (
            tunelab_engine::head_loss::DEVICE_CHUNK_ELEMENTS as u64,
            GPU_HEAD_CHUNK_COPIES,
        ),
        false => (
            tunelab_engine::head_loss::CHUNK_ELEMENTS as u64,
            HEAD_CHUNK_COPIES,
        ),
    };
    let chunk_rows = (chunk_elements / vocab.max(1)).clamp(1, tokens);
    let (weights, quantized_head) = match input.base {
        // Trained weights are held in f32 whatever the activations are.
        BaseWeights::Dense if input.trainable_are_weights => (c.parameter_count() * F32, false),
        BaseWeights::Dense => (c.parameter_count() * element, false),
        BaseWeights::Stored {
            bytes,
            quantized_head,
        } => (bytes, quantized_head),
    };
    let mut loss = chunk_copies * chunk_rows * vocab * F32;
    if quantized_head {
        // The head is decoded a slice of the vocabulary at a time.
        let decoded = tunelab_engine::head_loss::DECODED_HEAD_ELEMENTS as u64;
        loss += decoded.min(vocab * c.hidden_size as u64) * F32;
    }
    // The loss and the backward pass come one after the other: the peak is the larger.
    let working = backward.max(loss);
    let per_parameter = if input.trainable_are_weights {
        BYTES_PER_TRAINABLE - F32
    } else {
        BYTES_PER_TRAINABLE
    };
    let trainable = input.trainable_parameters * per_parameter;
    let runtime = match input.on_gpu {
        true => GPU_RUNTIME_BYTES,
        false => RUNTIME_BYTES,
    };
    MemoryEstimate {
        weights_bytes: weights,
        trainable_bytes: trainable,
        activations_bytes: activations,
        working_bytes: working,
        runtime_bytes: runtime,
        total_bytes: weights + trainable + activations + working + runtime,
    }
}

/// Trainable parameters of LoRA rank `rank` on the named linear layers of every block.
pub fn lora_parameters(c: &ModelConfig, rank: usize, targets: &[&str]) -> u64 {
    let h = c.hidden_size as u64;
    let q = (c.num_attention_heads * c.head_dim) as u64;
    let kv = (c.num_key_value_heads * c.head_dim) as u64;
    let i = c.intermediate_size as u64;
    let per_layer: u64 = targets
        .iter()
        .map(|t| match *t {
            "q_proj" => h + q,
            "k_proj" | "v_proj" => h + kv,
            "o_proj" => q + h,
            "gate_proj" | "up_proj" | "down_proj" => h + i,
            _ => 0,
        })
        .sum();
    per_layer * rank as u64 * c.num_hidden_layers as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm() -> ModelConfig {
        serde_json::from_value(serde_json::json!({
            "architecture": "llama", "vocab_size": 49152, "hidden_size": 576,
            "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
            "num_key_value_heads": 3, "head_dim": 64, "rms_norm_eps": 1e-5,
            "rope_theta": 100000.0, "rope_scaling": null, "max_position_embeddings": 8192,
            "tie_word_embeddings": true, "attention_bias": false, "bos_token_id": 1,
            "eos_token_ids": [2]
        }))
        .unwrap()
    }

    #[test]
    fn lora_parameter_count_matches_rank_16_on_all_linear_layers() {
        // The count `tunelab bench train` reports for SmolLM2-135M.
        let all = crate::methods::lora::ALL_LINEAR;
        assert_eq!(lora_parameters(&smollm(), 16, &all), 4_884_480);
    }

    #[test]
    fn checkpointing_and_a_quantized_base_each_cut_the_estimate() {
        let c = smollm();
        let input = PlanInput {
            config: &c,
            base: BaseWeights::Dense,
            trainable_parameters: 4_884_480,
            trainable_are_weights: false,
            batch_size: 4,
            seq_len: 256,
            activation_checkpointing: false,
            element_bytes: 4,
            on_gpu: false,
        };
        let full = estimate(&input);
        let checkpointed = estimate(&PlanInput {
            activation_checkpointing: true,
            ..input.clone()
        });
        let quantized = estimate(&PlanInput {
            activation_checkpointing: true,
            base: BaseWeights::Stored {
                bytes: 98_362_432,
                quantized_head: true,
            },
            ..input.clone()
        });
        assert!(checkpointed.activations_bytes * 4 < full.activations_bytes);
        assert!(quantized.total_bytes < checkpointed.total_bytes);
        assert_eq!(
            full.total_bytes,
            full.weights_bytes
                + full.trainable_bytes
                + full.activations_bytes
                + full.working_bytes
                + full.runtime_bytes
        );
        // Twice the tokens, about twice the activations.
        let double = estimate(&PlanInput {
            batch_size: 8,
            ..input
        });
        let ratio = double.activations_bytes as f64 / full.activations_bytes as f64;
        assert!((1.9..=2.1).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn on_a_gpu_frozen_weights_and_activations_count_at_16_bits() {
        let c = smollm();
        let cpu = PlanInput {
            config: &c,
            base: BaseWeights::Dense,
            trainable_parameters: 4_884_480,
            trainable_are_weights: false,
            batch_size: 4,
            seq_len: 256,
            activation_checkpointing: true,
            element_bytes: 4,
            on_gpu: false,
        };
        let gpu = PlanInput {
            element_bytes: 2,
            on_gpu: true,
            ..cpu.clone()
        };
        let (a, b) = (estimate(&cpu), estimate(&gpu));
        assert_eq!(a.weights_bytes, c.parameter_count() * 4);
        assert_eq!(b.weights_bytes, c.parameter_count() * 2);
        assert_eq!(b.activations_bytes * 2, a.activations_bytes);
        // Adapters and AdamW's moments stay f32.
        assert_eq!(b.trainable_bytes, a.trainable_bytes);
        assert_eq!(b.runtime_bytes, GPU_RUNTIME_BYTES);
        // The loss runs in f32 on larger chunks: all 1024 rows at once here.
        assert!(b.working_bytes >= 3 * 1024 * 49152 * 4);

        // Full fine-tuning keeps f32 weights on a GPU too, plus each product's 16-bit copy,
        // all of them kept for backward without checkpointing.
        let params = c.parameter_count();
        let full_cpu = PlanInput {
            trainable_parameters: params,
            trainable_are_weights: true,
            activation_checkpointing: false,
            ..cpu.clone()
        };
        let full_gpu = PlanInput {
            element_bytes: 2,
            on_gpu: true,
            ..full_cpu.clone()
        };
        let (a, b) = (estimate(&full_cpu), estimate(&full_gpu));
        assert_eq!(b.weights_bytes, a.weights_bytes);
        assert_eq!(b.trainable_bytes, a.trainable_bytes);
        let expected = a.activations_bytes / 2 + params * 2;
        assert!(b.activations_bytes.abs_diff(expected) < 64, "{b:?}");
    }
}
