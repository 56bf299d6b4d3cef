//! Knowledge bases: ingest speed on the sample documents and query latency at several table
//! sizes.

use serde::Serialize;
use ts_rs::TS;

use super::tempfile_dir;
use crate::error::{ApiError, ErrorCode, Result};
use crate::workspace::Workspace;

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
        let files = tunelab_knowledge::collect_files(&[sample_docs.to_path_buf()])?.files;
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
                        ErrorCode::Internal,
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
