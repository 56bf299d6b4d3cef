//! tunelab-engine runs Llama-family language models on the CPU (or CUDA with the `cuda`
//! feature): it reads GGUF files and Hugging Face folders, rebuilds tokenizers and chat
//! templates from them, computes logits with one transformer implementation whose weights are
//! addressed by Hugging Face names, and generates text with streaming and sampling controls.

mod attention_op;
mod backward_kernels;
pub mod bert;
mod bert_cpu;
pub mod block;
pub mod checkpoint;
pub mod config;
mod cpu_gemm;
mod decode_attention;
pub mod device;
pub mod error;
mod fast_exp;
mod frozen_chain;
pub mod generate;
pub mod gguf;
pub mod gguf_write;
pub mod grad_ops;
pub mod half_matmul;
pub mod head_loss;
pub mod hf_write;
pub mod layers;
pub mod loader;
mod lora_op;
pub mod model;
mod named_weights;
pub mod nf4;
pub mod portable;
pub mod qmatmul;
pub mod template;
pub mod tokenizer;
pub mod weights;

pub use candle_core::{DType, Device, Tensor, Var};
pub use config::{Architecture, ModelConfig};
pub use device::{cuda_index, device_label, DeviceChoice};
pub use error::{EngineError, Result};
pub use generate::{generate, Generation, SamplingParams, StopReason};
pub use loader::{inspect, load, verify, LoadedModel, ModelFormat, ModelSummary};
pub use model::{Cache, Transformer};
pub use template::{ChatTemplate, Message};
pub use tokenizer::TextTokenizer;
pub use weights::Precision;

/// Runs `f` on a thread of the compute pool (rayon's) and waits for it.
///
/// Matrix products and most tensor ops run on that pool. Called from any other thread, each
/// op hands its work to the pool's threads and sleeps; between ops those threads spin a while
/// looking for more, on the same cores the calling thread needs for the next op. With the
/// caller one of the pool's own threads there are only as many busy threads as cores: a
/// training step ran 5–8% faster on 2 cores.
pub fn on_compute_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::scope(|_| f())
}

impl LoadedModel {
    /// Renders `messages` through the model's chat template, ready for the assistant's turn.
    pub fn render_chat(&self, messages: &[Message]) -> Result<String> {
        self.template.render(
            messages,
            true,
            self.tokenizer.bos_token(),
            self.tokenizer.eos_token(),
        )
    }

    /// Answers a conversation, streaming text through `on_text`.
    pub fn chat(
        &self,
        messages: &[Message],
        params: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> std::ops::ControlFlow<()>,
    ) -> Result<Generation> {
        let prompt = self.render_chat(messages)?;
        let ids = self.tokenizer.encode(&prompt, false)?;
        generate(
            &self.transformer,
            &self.tokenizer,
            &ids,
            &self.eos_ids,
            params,
            on_text,
        )
    }
}

/// The vector code the CPU kernels run on this machine: gemm's matrix products and Tunelab's
/// 4- and 8-bit dot products pick AVX-512 at run time where the CPU has it, the fused kernels
/// run AVX2 + FMA (the build targets x86-64-v3).
pub fn cpu_kernels() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        // Set by scripts/build-without-avx512-gemm.sh, whose build leaves gemm's AVX-512 kernels
        // out to measure the AVX2 path on an AVX-512 machine.
        let gemm_has_avx512 = option_env!("TUNELAB_GEMM_WITHOUT_AVX512").is_none();
        let matmul = if gemm_has_avx512 && std::arch::is_x86_feature_detected!("avx512f") {
            "AVX-512"
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            "AVX2 + FMA"
        } else {
            "SSE"
        };
        let fused = if cfg!(target_feature = "avx2") {
            "AVX2 + FMA"
        } else {
            "baseline x86-64"
        };
        let blocks = qmatmul::BlockKernel::detect().name();
        format!(
            "matrix products {matmul}; 4- and 8-bit dot products {blocks}; fused kernels {fused}"
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        format!("{} vector kernels", std::env::consts::ARCH)
    }
}

/// Uses every logical CPU for tensor work unless `RAYON_NUM_THREADS` says otherwise (candle
/// counts physical cores by default, which leaves half of a hyper-threaded laptop idle), and
/// shortens the spinning of candle's idle threads. Call it once at program start, before any
/// model is loaded.
pub fn configure_threads(threads: Option<usize>) {
    let n = threads
        .or_else(|| {
            std::env::var("RAYON_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
    // Setting the variable before the first tensor operation is how candle and rayon read it.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    // candle's pool for element-wise ops spins 25,000 times before it sleeps after each op,
    // on the cores the matrix products that follow need: 500 made LoRA steps about 4% faster
    // on 2 cores. A value already set is kept.
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "500");
    }
}
