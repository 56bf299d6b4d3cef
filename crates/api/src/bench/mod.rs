//! Benchmarks a user can run on their own machine: prompt processing (prefill) and token
//! generation (decode) speed, measured the way llama.cpp's llama-bench reports them; sentence
//! embedding; training (`train`); knowledge-base ingest and search (`knowledge`).

mod knowledge;
mod train;

pub use knowledge::{knowledge, KnowledgeBench, SearchLatency};
pub use train::{train, TrainBench, TrainBenchRequest};

use std::ops::ControlFlow;

use serde::Serialize;
use ts_rs::TS;
use tunelab_engine::SamplingParams;

use crate::chat::ModelCache;
use crate::error::{ApiError, ErrorCode, Result};
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
            ErrorCode::Internal,
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
    device: Option<tunelab_engine::DeviceChoice>,
) -> Result<DecodeBench> {
    if prompt_tokens == 0 || gen_tokens < 2 || runs == 0 {
        return Err(ApiError::invalid(
            "the benchmark needs at least 1 prompt token, 2 generated tokens and 1 run",
        ));
    }
    let model = cache.get_with_adapter(ws, model_name, None, device)?;
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
        threads: crate::cpu_threads(),
        prompt_tokens: prompt_tokens as u32,
        generated_tokens: gen_tokens as u32,
        runs: runs as u32,
        prefill_tokens_per_s: best_prefill,
        decode_tokens_per_s: best_decode,
        peak_rss_bytes: tunelab_hardware::peak_rss_bytes(),
    })
}

/// A fresh folder under the system's temporary folder for this process.
pub(super) fn tempfile_dir(prefix: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| ApiError::io(&dir, e))?;
    Ok(dir)
}

/// Sentence-embedding speed: how many sentences per second the embedder turns into vectors,
/// tokenization included.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct EmbedBench {
    pub model: String,
    /// Where it embedded: "cpu" or "cuda:N".
    pub device: String,
    pub threads: u32,
    pub sentences: u32,
    /// Tokens per sentence, [CLS] and [SEP] included.
    pub tokens_per_sentence: u32,
    pub batch_size: u32,
    pub runs: u32,
    /// Best of the runs.
    pub sentences_per_s: f64,
    #[ts(type = "number | null")]
    pub peak_rss_bytes: Option<u64>,
}

/// Distinct sentences of exactly `tokens` embedder tokens ([CLS] and [SEP] included).
fn sentences(embedder: &tunelab_knowledge::Embedder, n: usize, tokens: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "battery", "warranty", "delivery", "customer", "frame", "motor", "refund", "policy",
        "weekday", "charger", "display", "firmware", "service", "dealer", "invoice", "travel",
        "hotel", "password", "laptop", "holiday", "parental", "cargo", "folding", "range",
    ];
    (0..n)
        .map(|i| {
            let mut words = Vec::new();
            let mut j = i;
            let mut text = String::new();
            while embedder.count_tokens(&text) + 2 < tokens {
                words.push(WORDS[j % WORDS.len()]);
                j = (j * 7 + 3) % 1_000_003;
                text = words.join(" ");
            }
            while embedder.count_tokens(&text) + 2 > tokens {
                words.pop();
                text = words.join(" ");
            }
            text
        })
        .collect()
}

pub fn embed(
    ws: &Workspace,
    model: &str,
    count: usize,
    tokens: usize,
    runs: usize,
    device: Option<tunelab_engine::DeviceChoice>,
) -> Result<EmbedBench> {
    if count == 0 || runs == 0 || tokens < 3 {
        return Err(ApiError::invalid(
            "the benchmark needs at least 1 sentence of 3 tokens and 1 run",
        ));
    }
    let cache = crate::knowledge::KnowledgeCache::on(device);
    let embedder = cache.embedder(ws, model)?;
    let texts = sentences(&embedder, count, tokens);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    embedder.embed(&refs[..refs.len().min(32)])?;
    let mut best = 0f64;
    for _ in 0..runs {
        let started = std::time::Instant::now();
        embedder.embed(&refs)?;
        best = best.max(count as f64 / started.elapsed().as_secs_f64());
    }
    Ok(EmbedBench {
        model: model.to_string(),
        device: embedder.device_label(),
        threads: crate::cpu_threads(),
        sentences: count as u32,
        tokens_per_sentence: tokens as u32,
        batch_size: tunelab_engine::bert::BATCH as u32,
        runs: runs as u32,
        sentences_per_s: best,
        peak_rss_bytes: tunelab_hardware::peak_rss_bytes(),
    })
}
