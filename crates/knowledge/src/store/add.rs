//! Adding to a knowledge base: files are read and chunked, chunks embedded in groups and
//! appended, replaced files' old chunks deleted after their new ones are in, and the indexes
//! brought up to date.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{
    Array, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema};
use lancedb::index::scalar::FtsIndexBuilder;
use lancedb::index::vector::IvfPqIndexBuilder;
use lancedb::index::Index;
use lancedb::table::OptimizeAction;
use lancedb::{DistanceType, Table};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::{now_unix, schema, sql_string, EmbeddedChunk, KnowledgeStore};
use crate::chunk::{chunk_document, Chunk, ChunkOptions};
use crate::document::{collect_files, read_document, Collected, Document};
use crate::embed::Embedder;
use crate::error::{KnowledgeError, Result};

/// Chunks embedded per call (progress is reported after each).
const EMBED_GROUP: usize = 256;
/// Chunks written per LanceDB append, at least: a write holds whole files, so a file with
/// more chunks is written in one larger append.
pub(super) const WRITE_GROUP: usize = 4096;
/// Text of chunks kept from the first reading of the files, in bytes; files beyond it are
/// read again when their turn to be embedded comes.
pub const KEEP_READ_BYTES: usize = 64 << 20;

/// Where an add is.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(tag = "stage", rename_all = "snake_case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum AddProgress {
    /// Reading and chunking files: `done` of `total` files.
    Reading {
        done: usize,
        total: usize,
        file: String,
    },
    /// Embedding chunks: `done` of `total`.
    Embedding { done: usize, total: usize },
    /// Writing and updating the indexes.
    Indexing,
}

/// What an add did, file by file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct AddReport {
    /// New files.
    pub added: Vec<String>,
    /// Files whose content changed: their old chunks were replaced.
    pub replaced: Vec<String>,
    /// Files already in the knowledge base with the same content: skipped.
    pub unchanged: Vec<String>,
    /// Files that could not be read, with the reason; nothing of theirs changed.
    pub failed: Vec<FailedFile>,
    pub chunks_added: usize,
    pub chunks_removed: usize,
    /// Wall time of the whole add.
    pub seconds: f64,
    /// Of which embedding chunks.
    pub embed_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct FailedFile {
    pub path: String,
    pub error: String,
}

/// A chunk with everything its row needs.
struct PendingChunk {
    source: String,
    title: String,
    format: &'static str,
    hash: String,
    chunk: Chunk,
}

/// A new or changed file of an add: its chunks, when they were kept from the first reading.
struct PlannedFile {
    path: PathBuf,
    hash: String,
    count: usize,
    chunks: Option<Vec<PendingChunk>>,
}

/// `doc`'s chunks with what their rows need.
fn pending_chunks(
    doc: &Document,
    options: &ChunkOptions,
    embedder: &Embedder,
) -> Vec<PendingChunk> {
    let source = doc.source.to_string_lossy().to_string();
    chunk_document(doc, options, &|text: &str| embedder.count_tokens(text))
        .into_iter()
        .map(|chunk| PendingChunk {
            source: source.clone(),
            title: doc.title.clone(),
            format: doc.format,
            hash: doc.hash.clone(),
            chunk,
        })
        .collect()
}

impl PendingChunk {
    /// The text the embedder sees: the document title and heading path give a chunk its context.
    fn embed_text(&self) -> String {
        match &self.chunk.location.section {
            Some(section) => format!("{} › {}\n{}", self.title, section, self.chunk.text),
            None => format!("{}\n{}", self.title, self.chunk.text),
        }
    }
}

impl KnowledgeStore {
    /// Adds files and folders. Unchanged files are skipped, changed files replace their chunks,
    /// unreadable files are reported and change nothing.
    pub fn add(
        &self,
        name: &str,
        embedder: &Embedder,
        paths: &[PathBuf],
        progress: &mut dyn FnMut(AddProgress),
    ) -> Result<AddReport> {
        self.add_cancellable(name, embedder, paths, &AtomicBool::new(false), progress)
    }

    /// [`add`](Self::add), stopped when `cancel` is set: between files while reading, between
    /// groups while embedding, after each write. A stopped add, or one that fails part-way,
    /// leaves the knowledge base as it was before it (its table restored to the version the
    /// add started from) and returns [`KnowledgeError::Cancelled`] or the error.
    ///
    /// Each write holds whole files only, so a process killed between two writes leaves every
    /// file with all of its chunks or none: the next add finds the rest new, and one killed
    /// before the indexes were brought up to date has them repaired by the next add. Files are
    /// read twice when their chunks do not fit [`KEEP_READ_BYTES`], so memory stays bounded
    /// whatever the size of the corpus.
    pub fn add_cancellable(
        &self,
        name: &str,
        embedder: &Embedder,
        paths: &[PathBuf],
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(AddProgress),
    ) -> Result<AddReport> {
        let stopped = || cancel.load(Ordering::Relaxed);
        let started = Instant::now();
        let info = self.settings(name)?;
        self.check_embedder(name, &info, embedder)?;
        let table = self.table(name)?;
        let Collected { files, unreadable } = collect_files(paths)?;
        let mut report = AddReport::default();
        report
            .failed
            .extend(unreadable.into_iter().map(|(path, reason)| FailedFile {
                error: format!("{}: {reason}; skipped", path.display()),
                path: path.to_string_lossy().to_string(),
            }));
        // source -> the hashes of its versions in the table
        let known: HashMap<String, Vec<String>> = self
            .runtime
            .block_on(self.versions_of(&table, name))?
            .into_iter()
            .map(|(source, v)| (source, v.hashes))
            .collect();

        // First pass: which files are new or changed, and how many chunks each makes.
        let mut planned: Vec<PlannedFile> = Vec::new();
        let mut kept_bytes = 0usize;
        let mut replaced_sources: Vec<(String, String)> = Vec::new();
        let chunks_of = |doc: &Document| pending_chunks(doc, &info.chunking, embedder);
        for (i, file) in files.iter().enumerate() {
            if stopped() {
                return Err(KnowledgeError::Cancelled(name.to_string()));
            }
            progress(AddProgress::Reading {
                done: i,
                total: files.len(),
                file: file.to_string_lossy().to_string(),
            });
            let source = file.to_string_lossy().to_string();
            let doc: Document = match read_document(file) {
                Ok(doc) => doc,
                Err(e) => {
                    report.failed.push(FailedFile {
                        path: source,
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            match known.get(&source) {
                Some(hashes) if hashes.contains(&doc.hash) => {
                    // Unchanged. Chunks of another version that an interrupted add left behind
                    // go now.
                    if hashes.len() > 1 {
                        replaced_sources.push((source.clone(), doc.hash.clone()));
                    }
                    report.unchanged.push(source);
                    continue;
                }
                Some(_) => {
                    replaced_sources.push((source.clone(), doc.hash.clone()));
                    report.replaced.push(source.clone());
                }
                None => report.added.push(source.clone()),
            }
            let chunks = chunks_of(&doc);
            let bytes: usize = chunks.iter().map(|c| c.chunk.text.len()).sum();
            let keep = kept_bytes + bytes <= KEEP_READ_BYTES;
            kept_bytes += if keep { bytes } else { 0 };
            planned.push(PlannedFile {
                path: file.clone(),
                hash: doc.hash,
                count: chunks.len(),
                chunks: keep.then_some(chunks),
            });
        }
        progress(AddProgress::Reading {
            done: files.len(),
            total: files.len(),
            file: String::new(),
        });

        // Second pass: whole files gathered into groups of at least WRITE_GROUP chunks, each
        // group embedded and written in one commit.
        let added_unix = now_unix();
        let total: usize = planned.iter().map(|p| p.count).sum();
        let before = self
            .runtime
            .block_on(table.version())
            .map_err(|e| self.store_error(name, e))?;
        let mut written = false;
        let (mut embedded, mut written_chunks) = (0usize, 0usize);
        let mut embedding = std::time::Duration::ZERO;
        let mut dropped: Vec<(String, String)> = Vec::new();
        let written_all = (|| -> Result<()> {
            let mut group: Vec<PendingChunk> = Vec::new();
            let last = planned.len();
            for (k, plan) in planned.iter_mut().enumerate() {
                let chunks = match plan.chunks.take() {
                    Some(chunks) => chunks,
                    None => {
                        let source = plan.path.to_string_lossy().to_string();
                        match read_document(&plan.path) {
                            Ok(doc) if doc.hash == plan.hash => chunks_of(&doc),
                            // Edited, removed or unreadable since the first reading: what was
                            // counted is not what is there, so the file is left as it was.
                            Ok(_) => {
                                let why = "it changed while being added; add it again";
                                dropped.push((source, format!("{}: {why}", plan.path.display())));
                                embedded += plan.count;
                                Vec::new()
                            }
                            Err(e) => {
                                dropped.push((source, e.to_string()));
                                embedded += plan.count;
                                Vec::new()
                            }
                        }
                    }
                };
                group.extend(chunks);
                if group.len() < self.write_group && k + 1 < last {
                    continue;
                }
                if group.is_empty() {
                    continue;
                }
                let mut vectors = Vec::with_capacity(group.len());
                for part in group.chunks(EMBED_GROUP) {
                    if stopped() {
                        return Err(KnowledgeError::Cancelled(name.to_string()));
                    }
                    let texts: Vec<String> = part.iter().map(|p| p.embed_text()).collect();
                    let refs: Vec<&str> = texts.iter().map(|t| t.as_str()).collect();
                    let started = Instant::now();
                    vectors.extend(embedder.embed(&refs)?);
                    embedding += started.elapsed();
                    embedded += part.len();
                    progress(AddProgress::Embedding {
                        done: embedded.min(total),
                        total,
                    });
                }
                let batch = self.rows(&group, &vectors, info.dimension, added_unix)?;
                written = true;
                self.runtime
                    .block_on(table.add(batch).execute())
                    .map_err(|e| self.store_error(name, e))?;
                written_chunks += group.len();
                group.clear();
                if stopped() {
                    return Err(KnowledgeError::Cancelled(name.to_string()));
                }
            }
            Ok(())
        })();
        if let Err(err) = written_all {
            if written {
                self.restore_version(&table, name, before)?;
            }
            return Err(err);
        }
        for (source, error) in dropped {
            report.added.retain(|s| *s != source);
            report.replaced.retain(|s| *s != source);
            replaced_sources.retain(|(s, _)| *s != source);
            report.failed.push(FailedFile {
                path: source,
                error,
            });
        }
        report.embed_seconds = embedding.as_secs_f64();
        report.chunks_added = written_chunks;

        // The new chunks are in; now the replaced files' old chunks go.
        progress(AddProgress::Indexing);
        for (source, hash) in &replaced_sources {
            let predicate = format!(
                "source = {} AND doc_hash <> {}",
                sql_string(source),
                sql_string(hash)
            );
            let before = self
                .runtime
                .block_on(table.count_rows(Some(predicate.clone())))
                .map_err(|e| self.store_error(name, e))?;
            self.runtime
                .block_on(table.delete(predicate.as_str()))
                .map_err(|e| self.store_error(name, e))?;
            report.chunks_removed += before;
        }
        if report.chunks_added > 0
            || !replaced_sources.is_empty()
            || self.text_index_is_behind(&table, name)?
        {
            self.update_indexes(&table, name, info.dimension)?;
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Whether the table has rows the full-text index does not cover (or no such index at
    /// all): what a process killed between writing and indexing leaves.
    fn text_index_is_behind(&self, table: &Table, name: &str) -> Result<bool> {
        self.runtime.block_on(async {
            let err = |e: lancedb::Error| self.store_error(name, e);
            if table.count_rows(None).await.map_err(err)? == 0 {
                return Ok(false);
            }
            let indices = table.list_indices().await.map_err(err)?;
            let Some(text) = indices
                .iter()
                .find(|i| i.columns.iter().any(|c| c == "search_text"))
            else {
                return Ok(true);
            };
            let stats = table.index_stats(&text.name).await.map_err(err)?;
            Ok(stats.is_none_or(|s| s.num_unindexed_rows > 0))
        })
    }

    /// Puts the table back to `version`: what an add wrote after it is no longer seen.
    fn restore_version(&self, table: &Table, name: &str, version: u64) -> Result<()> {
        self.runtime
            .block_on(async {
                table.checkout(version).await?;
                table.restore().await
            })
            .map_err(|e| self.store_error(name, format!("undoing a stopped add: {e}")))
    }

    fn rows(
        &self,
        group: &[PendingChunk],
        vectors: &[Vec<f32>],
        dimension: usize,
        added_unix: i64,
    ) -> Result<RecordBatch> {
        let n = group.len();
        let strings = |f: &dyn Fn(&PendingChunk) -> String| -> Arc<dyn Array> {
            Arc::new(StringArray::from(group.iter().map(f).collect::<Vec<_>>()))
        };
        let location =
            |p: &PendingChunk| serde_json::to_string(&p.chunk.location).unwrap_or_default();
        let mut flat = Vec::with_capacity(n * dimension);
        for v in vectors {
            flat.extend_from_slice(v);
        }
        let values = Arc::new(Float32Array::from(flat));
        let vector = FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, true)),
            dimension as i32,
            values,
            None,
        )
        .map_err(|e| self.store_error("*", e))?;
        let schema = {
            let s = schema("", dimension, &ChunkOptions::default(), 0);
            Arc::new(Schema::new(s.fields().clone()))
        };
        RecordBatch::try_new(
            schema,
            vec![
                strings(&|p| {
                    let path = crate::document::content_hash(p.source.as_bytes());
                    format!("{}-{}-{}", &path[..12], &p.hash[..12], p.chunk.ordinal)
                }),
                strings(&|p| p.source.clone()),
                strings(&|p| p.title.clone()),
                strings(&|p| p.format.to_string()),
                strings(&|p| p.hash.clone()),
                Arc::new(UInt32Array::from(
                    group
                        .iter()
                        .map(|p| p.chunk.ordinal as u32)
                        .collect::<Vec<_>>(),
                )),
                strings(&location),
                strings(&|p| p.chunk.text.clone()),
                strings(&|p| match &p.chunk.location.section {
                    Some(section) => format!("{} {}\n{}", p.title, section, p.chunk.text),
                    None => format!("{}\n{}", p.title, p.chunk.text),
                }),
                Arc::new(UInt32Array::from(
                    group
                        .iter()
                        .map(|p| p.chunk.tokens as u32)
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(vec![added_unix; n])),
                Arc::new(vector),
            ],
        )
        .map_err(|e| self.store_error("*", e))
    }

    /// Builds the full-text index the first time, the vector index once the table is large,
    /// and folds new rows into existing indexes.
    pub(super) fn update_indexes(&self, table: &Table, name: &str, dimension: usize) -> Result<()> {
        self.runtime.block_on(async {
            let err = |e: lancedb::Error| self.store_error(name, e);
            let rows = table.count_rows(None).await.map_err(err)?;
            let indices = table.list_indices().await.map_err(err)?;
            let has = |col: &str| indices.iter().any(|i| i.columns.iter().any(|c| c == col));
            let mut created = false;
            if rows > 0 && !has("search_text") {
                table
                    .create_index(&["search_text"], Index::FTS(FtsIndexBuilder::default()))
                    .execute()
                    .await
                    .map_err(err)?;
                created = true;
            }
            if rows >= self.ann_threshold && !has("vector") {
                // About sqrt(rows) partitions; sub-vectors of 8 dimensions.
                let partitions = ((rows as f64).sqrt() as u32).clamp(16, 1024);
                let dim = dimension as u32;
                let sub_vectors = if dim.is_multiple_of(8) {
                    dim / 8
                } else {
                    dim / 4
                };
                table
                    .create_index(
                        &["vector"],
                        Index::IvfPq(
                            IvfPqIndexBuilder::default()
                                .distance_type(DistanceType::Cosine)
                                .num_partitions(partitions)
                                .num_sub_vectors(sub_vectors),
                        ),
                    )
                    .execute()
                    .await
                    .map_err(err)?;
                created = true;
            }
            if !created {
                table
                    .optimize(OptimizeAction::Index(Default::default()))
                    .await
                    .map_err(err)?;
            }
            Ok(())
        })
    }

    /// Appends chunks that already have vectors of the knowledge base's dimension. Each
    /// source's chunks are numbered in the order given. Returns the number of rows written.
    pub fn add_embedded(&self, name: &str, chunks: Vec<EmbeddedChunk>) -> Result<usize> {
        let info = self.settings(name)?;
        let table = self.table(name)?;
        if let Some(bad) = chunks.iter().position(|c| c.vector.len() != info.dimension) {
            return Err(KnowledgeError::Setting {
                field: "vector",
                message: format!(
                    "chunk {bad} has {} dimensions; knowledge base `{name}` holds {}",
                    chunks[bad].vector.len(),
                    info.dimension
                ),
            });
        }
        let added_unix = now_unix();
        let mut ordinals: HashMap<String, usize> = HashMap::new();
        let total = chunks.len();
        let mut pending = Vec::with_capacity(WRITE_GROUP);
        let mut vectors = Vec::with_capacity(WRITE_GROUP);
        for (i, c) in chunks.into_iter().enumerate() {
            let ordinal = ordinals.entry(c.source.clone()).or_insert(0);
            let tokens = c.text.split_whitespace().count();
            pending.push(PendingChunk {
                hash: crate::document::content_hash(c.source.as_bytes()),
                source: c.source,
                title: c.title,
                format: "imported",
                chunk: Chunk {
                    text: c.text,
                    location: c.location,
                    ordinal: *ordinal,
                    tokens,
                },
            });
            *ordinal += 1;
            vectors.push(c.vector);
            if pending.len() == WRITE_GROUP || i + 1 == total {
                let batch = self.rows(&pending, &vectors, info.dimension, added_unix)?;
                self.runtime
                    .block_on(table.add(batch).execute())
                    .map_err(|e| self.store_error(name, e))?;
                pending.clear();
                vectors.clear();
            }
        }
        if total > 0 {
            self.update_indexes(&table, name, info.dimension)?;
        }
        Ok(total)
    }
}
