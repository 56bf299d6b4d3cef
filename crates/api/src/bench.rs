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
