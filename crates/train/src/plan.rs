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
//!   block's saved tensors (fewer when every block layer is frozen, as for a soft prompt: the
//!   engine's frozen chains keep only what the gradients read);
//! - working memory, the larger of the loss pass (the output head's logits for one chunk of
//!   rows, and a slice of a quantized head decoded for it) and the backward pass (one block
//!   recomputed with its gradients, or the gradients flowing through the saved blocks);
//! - the process itself: code, tokenizer, allocator slack.
//!
//! On the CPU the coefficients were fitted to peak RSS measured with `tunelab bench train`
//! (SmolLM2-135M and the 10M pretraining preset, every method with checkpointing on and off,
//! batch × tokens of 4 × 256, 2 × 128, 1 × 512 and 8 × 64); the CLI test holds every method
//! within 10% of a measured run with checkpointing on and off.
//!
//! On a GPU the same terms are counted at the sizes the GPU holds them in: frozen dense weights
//! and activations in 16 bits where the run computes in them, trained parameters and AdamW
//! state still in f32 (a fully trained weight also gets a 16-bit copy for each product), the
//! loss in larger f32 chunks, attention's scores (the GPU path keeps them), and CUDA's own
//! context. Those terms follow from the sizes of what the trainer allocates; they are not
//! fitted to measured GPU peaks.

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
/// A fully trained weight, on top of the weight itself (counted with the base): its gradient
/// and two AdamW moments (12 bytes), and about half a copy more at the peak (measured on the
/// CPU: 1.4–2.9 bytes; the checkpoint writer copies one tensor out at a time, and backward's
/// last gradients arrive while the rest are held).
const BYTES_PER_TRAINED_WEIGHT: u64 = 14;
/// Copies of a loss chunk (engine `head_loss`) alive together on the CPU at the step's peak
/// (measured: the logits are turned into their gradient in place).
const HEAD_CHUNK_COPIES: u64 = 1;
/// One checkpointed block recomputed in backward, with its gradients and allocator slack, in
/// units of the block's forward activations: measured on the CPU (1.7–2.1), derived for the
/// GPU.
const RECOMPUTE_FACTOR_CPU: f64 = 1.9;
const RECOMPUTE_FACTOR_GPU: f64 = 1.1;
/// Without checkpointing: what a block keeps for backward, in units of
/// [`block_activation_bytes`]. On the CPU the fused kernels keep about one copy of each
/// tensor counted there (measured: 0.98–1.03); the GPU path keeps views and copies besides.
const SAVED_FACTOR_CPU: f64 = 1.0;
const SAVED_FACTOR_GPU: f64 = 1.25;
/// The backward pass's transient gradients without checkpointing, in block activations
/// (CPU: measured 2.5–3.1).
const BACKWARD_FACTOR_CPU: f64 = 2.8;
/// Without checkpointing, blocks of frozen chains: what one keeps, in units of
/// [`frozen_block_activation_bytes`].
const FROZEN_SAVED_FACTOR: f64 = 1.0;
const BACKWARD_FACTOR_GPU: f64 = 9.0;

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
    /// Every block layer is frozen (a soft prompt): on the CPU each block keeps only what its
    /// gradients read (see [`frozen_block_activation_bytes`]).
    pub frozen_blocks: bool,
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
/// `element_bytes` per activation. With `attention_scores` the `(heads, t, t)` scores and
/// probabilities count too: the GPU path keeps them; the CPU's attention op recomputes them
/// in backward.
pub fn block_activation_bytes(
    c: &ModelConfig,
    batch: usize,
    seq_len: usize,
    element_bytes: u64,
    attention_scores: bool,
) -> u64 {
    let n = (batch * seq_len) as u64;
    let (h, q, kv, i) = widths(c);
    // Norms, residuals and projections; queries and keys rotated, the queries scaled; the
    // MLP's gate, up and gated product.
    let per_token = 6 * h + 4 * q + 3 * kv + 3 * i;
    let attention = match attention_scores {
        true => 2 * batch as u64 * c.num_attention_heads as u64 * (seq_len as u64).pow(2),
        false => 0,
    };
    (n * per_token + attention) * element_bytes
}

/// What a block keeps for backward on the CPU when all its layers are frozen, in bytes: the
/// engine's frozen chains keep the block's input and the input to its MLP, the rotated queries
/// and keys, the values and attention's output, the gate and up projections, and the two
/// outputs added to the residual stream.
pub fn frozen_block_activation_bytes(
    c: &ModelConfig,
    batch: usize,
    seq_len: usize,
    element_bytes: u64,
) -> u64 {
    let (h, q, kv, i) = widths(c);
    (batch * seq_len) as u64 * (4 * h + 2 * q + 2 * kv + 2 * i) * element_bytes
}

/// A block's widths per token: hidden, all query heads, all key (or value) heads, the MLP.
fn widths(c: &ModelConfig) -> (u64, u64, u64, u64) {
    (
        c.hidden_size as u64,
        (c.num_attention_heads * c.head_dim) as u64,
        (c.num_key_value_heads * c.head_dim) as u64,
        c.intermediate_size as u64,
    )
}

pub fn estimate(input: &PlanInput) -> MemoryEstimate {
    let c = input.config;
    let (batch, seq) = (input.batch_size.max(1), input.seq_len.max(1));
    let tokens = (batch * seq) as u64;
    let element = input.element_bytes.clamp(1, F32);
    let block = block_activation_bytes(c, batch, seq, element, input.on_gpu) as f64;
    let layers = c.num_hidden_layers as u64;
    let (saved_factor, backward_factor, recompute_factor) = match input.on_gpu {
        true => (SAVED_FACTOR_GPU, BACKWARD_FACTOR_GPU, RECOMPUTE_FACTOR_GPU),
        false => (SAVED_FACTOR_CPU, BACKWARD_FACTOR_CPU, RECOMPUTE_FACTOR_CPU),
    };
    let frozen_chains = input.frozen_blocks && !input.on_gpu;
    let kept_per_block = if input.activation_checkpointing {
        // Each block's output, the next one's input, kept between the checkpointed blocks.
        (tokens * c.hidden_size as u64 * element) as f64
    } else if frozen_chains {
        FROZEN_SAVED_FACTOR * frozen_block_activation_bytes(c, batch, seq, element) as f64
    } else {
        saved_factor * block
    };
    let mut activations = (kept_per_block * (layers + 1) as f64) as u64;
    let mut backward = if input.activation_checkpointing {
        recompute_factor * block
    } else {
        backward_factor * block
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
    let mut working = backward.max(loss);
    let trainable = input.trainable_parameters
        * match input.trainable_are_weights {
            true => BYTES_PER_TRAINED_WEIGHT,
            false => BYTES_PER_TRAINABLE,
        };
    if input.trainable_are_weights && !input.activation_checkpointing && !input.on_gpu {
        // Measured on the CPU: the weights' gradients and every block's activations are there
        // together at backward's peak, and its transient gradients fit in the activations it
        // frees as it goes (full fine-tuning and pretraining within 3%).
        working = 0;
    }
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

/// A 16/32-bit base held for QLoRA: the blocks' matrices in NF4 (half a byte per weight and a
/// scale per 64), the embeddings and output head in f32.
pub fn nf4_bytes(c: &ModelConfig) -> u64 {
    let embed = (c.vocab_size * c.hidden_size) as u64;
    let head = if c.tie_word_embeddings { 0 } else { embed };
    let blocks = c.parameter_count() - embed - head;
    blocks / 2 + blocks / tunelab_engine::nf4::BLOCK as u64 * 4 + (embed + head) * 4
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
            frozen_blocks: false,
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
    fn attention_scores_count_where_the_gpu_path_keeps_them_and_not_on_the_cpu() {
        let c = smollm();
        let with = block_activation_bytes(&c, 4, 256, 4, true);
        let without = block_activation_bytes(&c, 4, 256, 4, false);
        // 2 × 4 sequences × 9 heads × 256² scores and probabilities, in f32.
        assert_eq!(with - without, 2 * 4 * 9 * 256 * 256 * 4);
        // Without them a block's activations grow with the tokens alone.
        assert_eq!(block_activation_bytes(&c, 1, 1024, 4, false), without);
    }

    #[test]
    fn a_fully_trained_model_holds_its_gradients_and_moments_with_every_blocks_activations() {
        let c = smollm();
        let full = |checkpointing: bool, batch: usize| {
            estimate(&PlanInput {
                config: &c,
                base: BaseWeights::Dense,
                trainable_parameters: c.parameter_count(),
                trainable_are_weights: true,
                frozen_blocks: false,
                batch_size: batch,
                seq_len: 128,
                activation_checkpointing: checkpointing,
                element_bytes: 4,
                on_gpu: false,
            })
        };
        let (on, off) = (full(true, 4), full(false, 4));
        // Gradient and two moments per weight, and the measured half copy more.
        assert_eq!(
            off.trainable_bytes,
            c.parameter_count() * BYTES_PER_TRAINED_WEIGHT
        );
        // Without checkpointing every block's activations are there at the peak, and backward's
        // transients fit in what it frees.
        assert_eq!(off.working_bytes, 0);
        assert_eq!(
            off.activations_bytes,
            block_activation_bytes(&c, 4, 128, 4, false) * (c.num_hidden_layers as u64 + 1)
        );
        assert!(off.total_bytes > on.total_bytes);
        assert!(full(false, 8).total_bytes > off.total_bytes);
    }

    #[test]
    fn a_frozen_base_keeps_only_what_its_chains_keep_without_checkpointing() {
        let c = smollm();
        let soft_prompt = |frozen_blocks: bool, on_gpu: bool| {
            estimate(&PlanInput {
                config: &c,
                base: BaseWeights::Dense,
                trainable_parameters: 20 * 576,
                trainable_are_weights: false,
                frozen_blocks,
                batch_size: 4,
                seq_len: 276,
                activation_checkpointing: false,
                element_bytes: 4,
                on_gpu,
            })
        };
        let (chains, layers) = (soft_prompt(true, false), soft_prompt(false, false));
        assert_eq!(
            chains.activations_bytes,
            frozen_block_activation_bytes(&c, 4, 276, 4) * (c.num_hidden_layers as u64 + 1)
        );
        // SmolLM2's blocks keep 6,912 values a token through chains against 10,944 op by op.
        assert!(chains.activations_bytes * 10 < layers.activations_bytes * 7);
        // The GPU's path trains op by op: it keeps what it kept.
        let (gpu_chains, gpu_layers) = (soft_prompt(true, true), soft_prompt(false, true));
        assert_eq!(gpu_chains.activations_bytes, gpu_layers.activations_bytes);
    }

    #[test]
    fn on_a_gpu_frozen_weights_and_activations_count_at_16_bits() {
        let c = smollm();
        let cpu = PlanInput {
            config: &c,
            base: BaseWeights::Dense,
            trainable_parameters: 4_884_480,
            trainable_are_weights: false,
            frozen_blocks: false,
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
        let full_f32 = PlanInput {
            trainable_parameters: params,
            trainable_are_weights: true,
            frozen_blocks: false,
            activation_checkpointing: false,
            on_gpu: true,
            ..cpu.clone()
        };
        let full_gpu = PlanInput {
            element_bytes: 2,
            ..full_f32.clone()
        };
        let (a, b) = (estimate(&full_f32), estimate(&full_gpu));
        assert_eq!(b.weights_bytes, a.weights_bytes);
        assert_eq!(b.trainable_bytes, a.trainable_bytes);
        let expected = a.activations_bytes / 2 + params * 2;
        assert!(b.activations_bytes.abs_diff(expected) < 64, "{b:?}");
    }
}
