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

/// A fresh folder under the system's temporary folder for this process.
fn tempfile_dir(prefix: &str) -> Result<std::path::PathBuf> {
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

/// Query latency of one knowledge base size.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct SearchLatency {
    pub chunks: u32,
    pub vector_index: bool,
    pub queries: u32,
    /// Milliseconds, the query's embedding included.
    pub vector_p50_ms: f64,
    pub vector_p95_ms: f64,
    pub hybrid_p50_ms: f64,
    pub hybrid_p95_ms: f64,
    /// Full text alone (BM25, no embedding), median.
    pub text_p50_ms: f64,
    /// Of which embedding the query, median.
    pub embed_p50_ms: f64,
    /// Seconds to write the chunks and build the indexes.
    pub build_seconds: f64,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct KnowledgeBench {
    pub embedder: String,
    /// Where it embedded: "cpu" or "cuda:N" (the workspace's device setting).
    pub device: String,
    pub threads: u32,
    /// Documents and chunks ingested from the sample knowledge base (copied `copies` times).
    pub documents: u32,
    pub chunks: u32,
    /// Whole ingest (read, chunk, embed, write, index), chunks per second.
    pub ingest_chunks_per_s: f64,
    /// Embedding alone, chunks per second.
    pub embeddings_per_s: f64,
    pub search: Vec<SearchLatency>,
    #[ts(type = "number | null")]
    pub peak_rss_bytes: Option<u64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Ingests `sample_docs` (`copies` times, each copy a distinct file) into a scratch knowledge
/// base, then times vector and hybrid queries against synthetic tables of each size in `sizes`.
/// Synthetic chunks have random unit vectors and text drawn from the sample's vocabulary: the
/// timing depends on the table's size and indexes, not on what the chunks say.
pub fn knowledge(
    ws: &Workspace,
    embedder_name: &str,
    sample_docs: &std::path::Path,
    questions_file: &std::path::Path,
    copies: usize,
    sizes: &[usize],
) -> Result<KnowledgeBench> {
    let questions = read_questions(questions_file)?;
    let questions = questions.as_slice();
    use tunelab_knowledge::{
        ChunkOptions, EmbeddedChunk, KnowledgeStore, Location, SearchMode, SearchOptions,
    };
    let cache = crate::knowledge::KnowledgeCache::default();
    let embedder = cache.embedder(ws, embedder_name)?;
    let scratch = tempfile_dir("tunelab-bench-kb")?;
    let result = (|| {
        // Ingest copies of the sample, made inside the scratch folder only.
        let docs = scratch.join("docs");
        let sample_docs =
            &std::path::absolute(sample_docs).map_err(|e| ApiError::io(sample_docs, e))?;
        let files = tunelab_knowledge::collect_files(&[sample_docs.to_path_buf()])?;
        if files.is_empty() {
            return Err(ApiError::invalid(format!(
                "{} has no documents to ingest",
                sample_docs.display()
            )));
        }
        for copy in 0..copies.max(1) {
            for file in &files {
                let rel = file.strip_prefix(sample_docs).map_err(|_| {
                    ApiError::new(
                        "internal",
                        format!("{} is not under {}", file.display(), sample_docs.display()),
                    )
                })?;
                let target = docs.join(format!("copy{copy}")).join(rel);
                debug_assert!(target.starts_with(&scratch));
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| ApiError::io(parent, e))?;
                }
                std::fs::copy(file, &target).map_err(|e| ApiError::io(&target, e))?;
            }
        }
        let store = KnowledgeStore::open(&scratch.join("knowledge"))?;
        store.create(
            "ingest",
            embedder.name(),
            embedder.dimension(),
            ChunkOptions::default(),
        )?;
        let report = store.add(
            "ingest",
            &embedder,
            std::slice::from_ref(&docs),
            &mut |_| {},
        )?;
        let ingest_chunks_per_s = report.chunks_added as f64 / report.seconds;
        let embeddings_per_s = report.chunks_added as f64 / report.embed_seconds;

        // Vocabulary for synthetic chunk text.
        let mut vocabulary: Vec<String> = Vec::new();
        for file in &files {
            if let Ok(doc) = tunelab_knowledge::read_document(file) {
                for s in doc.sections {
                    vocabulary.extend(
                        s.text
                            .split_whitespace()
                            .map(|w| {
                                w.trim_matches(|c: char| !c.is_alphanumeric())
                                    .to_lowercase()
                            })
                            .filter(|w| w.len() > 2),
                    );
                }
            }
        }
        vocabulary.sort();
        vocabulary.dedup();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let dim = embedder.dimension();
        let mut search = Vec::new();
        for (t, &size) in sizes.iter().enumerate() {
            let name = format!("synthetic{t}");
            store.create(&name, embedder.name(), dim, ChunkOptions::default())?;
            let chunks: Vec<EmbeddedChunk> = (0..size)
                .map(|i| {
                    let words: Vec<&str> = (0..60)
                        .map(|_| vocabulary[(next() % vocabulary.len() as u64) as usize].as_str())
                        .collect();
                    let v: Vec<f32> = (0..dim)
                        .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
                        .collect();
                    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    EmbeddedChunk {
                        source: format!("/synthetic/doc{}.txt", i / 20),
                        title: format!("Synthetic document {}", i / 20),
                        location: Location {
                            record: Some((i % 20) as u32 + 1),
                            ..Default::default()
                        },
                        text: words.join(" "),
                        vector: v.into_iter().map(|x| x / n).collect(),
                    }
                })
                .collect();
            let started = std::time::Instant::now();
            store.add_embedded(&name, chunks)?;
            let build_seconds = started.elapsed().as_secs_f64();
            let info = store.info(&name)?;
            let mut embed_ms = Vec::new();
            let mut vector_ms = Vec::new();
            let mut hybrid_ms = Vec::new();
            let mut text_ms = Vec::new();
            let rounds = (100 / questions.len().max(1)).max(1);
            for _ in 0..rounds {
                for q in questions {
                    for (mode, out) in [
                        (SearchMode::Vector, &mut vector_ms),
                        (SearchMode::Hybrid, &mut hybrid_ms),
                        (SearchMode::Text, &mut text_ms),
                    ] {
                        let options = SearchOptions {
                            mode,
                            k: 5,
                            source: None,
                        };
                        // As a user's query runs: embedding included.
                        let started = std::time::Instant::now();
                        store.search(&name, &embedder, q, &options)?;
                        out.push(started.elapsed().as_secs_f64() * 1e3);
                        let started = std::time::Instant::now();
                        embedder.embed_query(q)?;
                        embed_ms.push(started.elapsed().as_secs_f64() * 1e3);
                    }
                }
            }
            for v in [&mut embed_ms, &mut vector_ms, &mut hybrid_ms, &mut text_ms] {
                v.sort_by(|a, b| a.total_cmp(b));
            }
            search.push(SearchLatency {
                chunks: info.chunks as u32,
                vector_index: info.vector_index,
                queries: vector_ms.len() as u32,
                vector_p50_ms: percentile(&vector_ms, 0.5),
                vector_p95_ms: percentile(&vector_ms, 0.95),
                hybrid_p50_ms: percentile(&hybrid_ms, 0.5),
                hybrid_p95_ms: percentile(&hybrid_ms, 0.95),
                text_p50_ms: percentile(&text_ms, 0.5),
                embed_p50_ms: percentile(&embed_ms, 0.5),
                build_seconds,
            });
            store.remove(&name)?;
        }
        Ok(KnowledgeBench {
            embedder: embedder.name().to_string(),
            device: embedder.device_label(),
            threads: crate::cpu_threads(),
            documents: (report.added.len()) as u32,
            chunks: report.chunks_added as u32,
            ingest_chunks_per_s,
            embeddings_per_s,
            search,
            peak_rss_bytes: tunelab_hardware::peak_rss_bytes(),
        })
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// The `question` field of every line of a JSON-lines file (the sample's questions.jsonl).
fn read_questions(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| ApiError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{} line {}", path.display(), i + 1);
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| ApiError::invalid(format!("{}: {e}", at())))?;
        let question = value["question"]
            .as_str()
            .ok_or_else(|| ApiError::invalid(format!("{}: field `question` is missing", at())))?;
        out.push(question.to_string());
    }
    Ok(out)
}
