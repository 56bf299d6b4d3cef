//! Knowledge bases on disk: one embedded LanceDB database (a folder in the workspace) with one
//! table per knowledge base. Each row is a chunk with its vector, its text, where it came from
//! and the hash of the file it came from. The embedder's name and dimension and the chunking
//! settings are kept in the table's schema metadata, so the table describes itself.
//!
//! Writes are ordered so a crash never loses data: a changed file's new chunks are written before
//! its old ones are deleted, and a file that fails to read changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arrow_array::{
    Array, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use lancedb::index::scalar::{FtsIndexBuilder, FullTextSearchQuery};
use lancedb::index::vector::IvfPqIndexBuilder;
use lancedb::index::Index;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::table::OptimizeAction;
use lancedb::{DistanceType, Table};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::chunk::{chunk_document, Chunk, ChunkOptions};
use crate::document::{collect_files, read_document, Document, Location};
use crate::embed::Embedder;
use crate::error::{KnowledgeError, Result};

/// Above this many chunks a table gets an approximate (IVF-PQ) vector index; below it an exact
/// scan is fast enough and always right.
pub const ANN_THRESHOLD: usize = 20_000;

/// Chunks embedded per call (progress is reported after each).
const EMBED_GROUP: usize = 256;
/// Chunks written per LanceDB append.
const WRITE_GROUP: usize = 4096;

const META_EMBEDDER: &str = "tunelab.embedder";
const META_DIMENSION: &str = "tunelab.dimension";
const META_CHUNK_SIZE: &str = "tunelab.chunk_size";
const META_CHUNK_OVERLAP: &str = "tunelab.chunk_overlap";
const META_CREATED: &str = "tunelab.created_unix";

/// What a knowledge base was built with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct KnowledgeBaseInfo {
    pub name: String,
    pub embedder: String,
    pub dimension: usize,
    pub chunking: ChunkOptions,
    #[ts(type = "number")]
    pub created_unix: i64,
    pub chunks: usize,
    pub documents: usize,
    /// Whether an approximate vector index has been built (large tables only).
    pub vector_index: bool,
}

/// One source file in a knowledge base.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct SourceInfo {
    pub source: String,
    pub title: String,
    pub format: String,
    pub hash: String,
    pub chunks: usize,
    pub tokens: usize,
    #[ts(type = "number")]
    pub added_unix: i64,
}

/// How search ranks chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, TS)]
#[serde(rename_all = "lowercase")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum SearchMode {
    /// Nearest vectors by cosine similarity.
    Vector,
    /// BM25 over the words (stemmed, stop words removed).
    Text,
    /// Both lists fused by reciprocal rank.
    #[default]
    Hybrid,
}

impl std::str::FromStr for SearchMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "vector" => Ok(Self::Vector),
            "text" => Ok(Self::Text),
            "hybrid" => Ok(Self::Hybrid),
            other => Err(format!("unknown search mode `{other}` (vector, text or hybrid)")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct SearchOptions {
    pub mode: SearchMode,
    pub k: usize,
    /// Only chunks from this file, or from files under this folder.
    pub source: Option<String>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            mode: SearchMode::Hybrid,
            k: 5,
            source: None,
        }
    }
}

/// One search result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct Hit {
    pub source: String,
    pub title: String,
    pub location: Location,
    /// `location` as a short label ("page 3", "Returns › Damaged items, line 12").
    pub label: String,
    pub text: String,
    /// The mode's own score: cosine similarity (vector), BM25 (text) or fused rank score
    /// (hybrid). Higher is better.
    pub score: f32,
    /// Cosine similarity of the chunk to the query, whatever the mode: how relevant it is.
    pub similarity: f32,
    pub chunk_id: String,
}

/// Where an add is.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(tag = "stage", rename_all = "snake_case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum AddProgress {
    /// Reading and chunking files: `done` of `total` files.
    Reading { done: usize, total: usize, file: String },
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

/// The knowledge bases in one LanceDB folder.
pub struct KnowledgeStore {
    root: PathBuf,
    runtime: tokio::runtime::Runtime,
    db: lancedb::Connection,
    ann_threshold: usize,
    /// Open tables by name. Handles see this process's writes at once and other processes'
    /// within a second (the connection's read consistency interval).
    tables: std::sync::Mutex<HashMap<String, Table>>,
}

/// What a knowledge base was built with, from its table's schema metadata alone (no scan).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub embedder: String,
    pub dimension: usize,
    pub chunking: ChunkOptions,
    pub created_unix: i64,
}

/// A chunk whose vector was computed elsewhere (an import, a benchmark's synthetic corpus).
#[derive(Debug, Clone)]
pub struct EmbeddedChunk {
    pub source: String,
    pub title: String,
    pub location: Location,
    pub text: String,
    pub vector: Vec<f32>,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Knowledge base names become table (folder) names: letters, digits, `-` and `_`.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |message: &str| KnowledgeError::InvalidName {
        name: name.to_string(),
        message: message.to_string(),
    };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("use 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad("use only letters, digits, `-` and `_`"));
    }
    if name.starts_with('-') || name.starts_with('_') {
        return Err(bad("start with a letter or digit"));
    }
    Ok(())
}

/// A string literal for a LanceDB filter.
fn sql_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn schema(embedder: &str, dimension: usize, chunking: &ChunkOptions, created: i64) -> SchemaRef {
    let metadata = HashMap::from([
        (META_EMBEDDER.to_string(), embedder.to_string()),
        (META_DIMENSION.to_string(), dimension.to_string()),
        (META_CHUNK_SIZE.to_string(), chunking.size.to_string()),
        (META_CHUNK_OVERLAP.to_string(), chunking.overlap.to_string()),
        (META_CREATED.to_string(), created.to_string()),
    ]);
    Arc::new(Schema::new_with_metadata(
        vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("title", DataType::Utf8, false),
            Field::new("format", DataType::Utf8, false),
            Field::new("doc_hash", DataType::Utf8, false),
            Field::new("ordinal", DataType::UInt32, false),
            Field::new("location", DataType::Utf8, false),
            Field::new("text", DataType::Utf8, false),
            Field::new("search_text", DataType::Utf8, false),
            Field::new("tokens", DataType::UInt32, false),
            Field::new("added_unix", DataType::Int64, false),
            Field::new(
                "vector",
                DataType::FixedSizeList(
                    Arc::new(Field::new("item", DataType::Float32, true)),
                    dimension as i32,
                ),
                false,
            ),
        ],
        metadata,
    ))
}

/// A chunk with everything its row needs.
struct PendingChunk {
    source: String,
    title: String,
    format: &'static str,
    hash: String,
    chunk: Chunk,
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

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| KnowledgeError::Store {
            path: PathBuf::new(),
            message: format!("column `{name}` is missing or has the wrong type"),
        })
}

impl KnowledgeStore {
    /// Opens (creating when needed) the LanceDB folder at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| KnowledgeError::io(root, e))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("tunelab-lancedb")
            .build()
            .map_err(|e| KnowledgeError::io(root, e))?;
        let uri = root.to_string_lossy().to_string();
        let db = runtime
            .block_on(
                lancedb::connect(&uri)
                    .read_consistency_interval(std::time::Duration::from_secs(1))
                    .execute(),
            )
            .map_err(|e| KnowledgeError::Store {
                path: root.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(Self {
            root: root.to_path_buf(),
            runtime,
            db,
            ann_threshold: ANN_THRESHOLD,
            tables: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Builds the approximate vector index from `rows` chunks instead of `ANN_THRESHOLD`.
    pub fn with_ann_threshold(mut self, rows: usize) -> Self {
        self.ann_threshold = rows;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn store_error(&self, name: &str, e: impl std::fmt::Display) -> KnowledgeError {
        KnowledgeError::Store {
            path: self.root.join(format!("{name}.lance")),
            message: e.to_string(),
        }
    }

    fn names(&self) -> Result<Vec<String>> {
        self.runtime
            .block_on(self.db.table_names().execute())
            .map_err(|e| self.store_error("*", e))
    }

    fn table(&self, name: &str) -> Result<Table> {
        validate_name(name)?;
        let mut tables = self.tables.lock().map_err(|_| KnowledgeError::Store {
            path: self.root.clone(),
            message: "table cache poisoned".into(),
        })?;
        if let Some(table) = tables.get(name) {
            return Ok(table.clone());
        }
        if !self.names()?.iter().any(|n| n == name) {
            return Err(KnowledgeError::NotFound(name.to_string()));
        }
        let table = self
            .runtime
            .block_on(self.db.open_table(name).execute())
            .map_err(|e| self.store_error(name, e))?;
        tables.insert(name.to_string(), table.clone());
        Ok(table)
    }

    fn forget(&self, name: &str) {
        if let Ok(mut tables) = self.tables.lock() {
            tables.remove(name);
        }
    }

    /// Every knowledge base, by name.
    pub fn list(&self) -> Result<Vec<KnowledgeBaseInfo>> {
        let mut out = Vec::new();
        for name in self.names()? {
            if validate_name(&name).is_ok() {
                out.push(self.info(&name)?);
            }
        }
        Ok(out)
    }

    /// Creates an empty knowledge base for `embedder`'s vectors.
    pub fn create(
        &self,
        name: &str,
        embedder: &str,
        dimension: usize,
        chunking: ChunkOptions,
    ) -> Result<KnowledgeBaseInfo> {
        validate_name(name)?;
        if self.names()?.iter().any(|n| n == name) {
            return Err(KnowledgeError::Exists(name.to_string()));
        }
        let schema = schema(embedder, dimension, &chunking, now_unix());
        self.runtime
            .block_on(self.db.create_empty_table(name, schema).execute())
            .map_err(|e| self.store_error(name, e))?;
        self.info(name)
    }

    /// Deletes a knowledge base and its files.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.table(name)?;
        self.forget(name);
        self.runtime
            .block_on(self.db.drop_table(name, &[]))
            .map_err(|e| self.store_error(name, e))
    }

    /// What a knowledge base was built with (schema metadata only: cheap).
    pub fn settings(&self, name: &str) -> Result<Settings> {
        let table = self.table(name)?;
        let schema = self
            .runtime
            .block_on(table.schema())
            .map_err(|e| self.store_error(name, e))?;
        let meta = schema.metadata();
        let path = self.root.join(format!("{name}.lance"));
        let get = |key: &str| -> Result<String> {
            meta.get(key).cloned().ok_or_else(|| KnowledgeError::Store {
                path: path.clone(),
                message: format!(
                    "this table was not made by Tunelab (no `{key}` in its schema metadata)"
                ),
            })
        };
        let number = |key: &str| -> Result<usize> {
            let text = get(key)?;
            text.parse().map_err(|_| KnowledgeError::Store {
                path: path.clone(),
                message: format!("schema metadata `{key}` is `{text}`, not a number"),
            })
        };
        Ok(Settings {
            embedder: get(META_EMBEDDER)?,
            dimension: number(META_DIMENSION)?,
            chunking: ChunkOptions {
                size: number(META_CHUNK_SIZE)?,
                overlap: number(META_CHUNK_OVERLAP)?,
            },
            created_unix: get(META_CREATED)?.parse().unwrap_or(0),
        })
    }

    /// The settings and size of one knowledge base.
    pub fn info(&self, name: &str) -> Result<KnowledgeBaseInfo> {
        let settings = self.settings(name)?;
        let table = self.table(name)?;
        self.runtime.block_on(async {
            let chunks = table
                .count_rows(None)
                .await
                .map_err(|e| self.store_error(name, e))?;
            let indices = table
                .list_indices()
                .await
                .map_err(|e| self.store_error(name, e))?;
            let vector_index = indices.iter().any(|i| i.columns.iter().any(|c| c == "vector"));
            let documents = self.sources_of(&table, name).await?.len();
            Ok(KnowledgeBaseInfo {
                name: name.to_string(),
                embedder: settings.embedder,
                dimension: settings.dimension,
                chunking: settings.chunking,
                created_unix: settings.created_unix,
                chunks,
                documents,
                vector_index,
            })
        })
    }

    /// Refuses an embedder other than the one the knowledge base was built with.
    pub fn check_embedder(&self, name: &str, settings: &Settings, embedder: &Embedder) -> Result<()> {
        let info = settings;
        if info.embedder != embedder.name() || info.dimension != embedder.dimension() {
            return Err(KnowledgeError::EmbedderMismatch {
                kb: name.to_string(),
                recorded: info.embedder.clone(),
                recorded_dim: info.dimension,
                requested: embedder.name().to_string(),
                requested_dim: embedder.dimension(),
            });
        }
        Ok(())
    }

    async fn sources_of(&self, table: &Table, name: &str) -> Result<Vec<SourceInfo>> {
        let batches: Vec<RecordBatch> = table
            .query()
            .select(Select::Columns(
                ["source", "title", "format", "doc_hash", "tokens", "added_unix"]
                    .map(String::from)
                    .to_vec(),
            ))
            .execute()
            .await
            .map_err(|e| self.store_error(name, e))?
            .try_collect()
            .await
            .map_err(|e| self.store_error(name, e))?;
        let mut by_source: BTreeMap<String, SourceInfo> = BTreeMap::new();
        for batch in &batches {
            let source = column::<StringArray>(batch, "source")?;
            let title = column::<StringArray>(batch, "title")?;
            let format = column::<StringArray>(batch, "format")?;
            let hash = column::<StringArray>(batch, "doc_hash")?;
            let tokens = column::<UInt32Array>(batch, "tokens")?;
            let added = column::<Int64Array>(batch, "added_unix")?;
            for i in 0..batch.num_rows() {
                let entry = by_source
                    .entry(source.value(i).to_string())
                    .or_insert_with(|| SourceInfo {
                        source: source.value(i).to_string(),
                        title: title.value(i).to_string(),
                        format: format.value(i).to_string(),
                        hash: hash.value(i).to_string(),
                        chunks: 0,
                        tokens: 0,
                        added_unix: added.value(i),
                    });
                // After a crash between writing a file's new chunks and deleting its old
                // ones, the newest version is the one that counts.
                if added.value(i) > entry.added_unix {
                    entry.hash = hash.value(i).to_string();
                    entry.title = title.value(i).to_string();
                    entry.added_unix = added.value(i);
                }
                entry.chunks += 1;
                entry.tokens += tokens.value(i) as usize;
            }
        }
        Ok(by_source.into_values().collect())
    }

    /// The files in a knowledge base.
    pub fn sources(&self, name: &str) -> Result<Vec<SourceInfo>> {
        let table = self.table(name)?;
        self.runtime.block_on(self.sources_of(&table, name))
    }

    /// Adds files and folders. Unchanged files are skipped, changed files replace their chunks,
    /// unreadable files are reported and change nothing.
    pub fn add(
        &self,
        name: &str,
        embedder: &Embedder,
        paths: &[PathBuf],
        progress: &mut dyn FnMut(AddProgress),
    ) -> Result<AddReport> {
        let started = Instant::now();
        let info = self.settings(name)?;
        self.check_embedder(name, &info, embedder)?;
        let table = self.table(name)?;
        let files = collect_files(paths)?;
        let known: HashMap<String, String> = self
            .runtime
            .block_on(self.sources_of(&table, name))?
            .into_iter()
            .map(|s| (s.source, s.hash))
            .collect();

        let mut report = AddReport::default();
        let mut pending: Vec<PendingChunk> = Vec::new();
        let mut replaced_sources: Vec<(String, String)> = Vec::new();
        let count = |text: &str| embedder.count_tokens(text);
        for (i, file) in files.iter().enumerate() {
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
                Some(hash) if *hash == doc.hash => {
                    report.unchanged.push(source);
                    continue;
                }
                Some(_) => {
                    replaced_sources.push((source.clone(), doc.hash.clone()));
                    report.replaced.push(source.clone());
                }
                None => report.added.push(source.clone()),
            }
            for chunk in chunk_document(&doc, &info.chunking, &count) {
                pending.push(PendingChunk {
                    source: source.clone(),
                    title: doc.title.clone(),
                    format: doc.format,
                    hash: doc.hash.clone(),
                    chunk,
                });
            }
        }
        progress(AddProgress::Reading {
            done: files.len(),
            total: files.len(),
            file: String::new(),
        });

        let added_unix = now_unix();
        let total = pending.len();
        let mut embedding = std::time::Duration::ZERO;
        for (w, group) in pending.chunks(WRITE_GROUP).enumerate() {
            let mut vectors = Vec::with_capacity(group.len());
            for (e, part) in group.chunks(EMBED_GROUP).enumerate() {
                let texts: Vec<String> = part.iter().map(|p| p.embed_text()).collect();
                let refs: Vec<&str> = texts.iter().map(|t| t.as_str()).collect();
                let started = Instant::now();
                vectors.extend(embedder.embed(&refs)?);
                embedding += started.elapsed();
                progress(AddProgress::Embedding {
                    done: (w * WRITE_GROUP + e * EMBED_GROUP + part.len()).min(total),
                    total,
                });
            }
            let batch = self.rows(group, &vectors, info.dimension, added_unix)?;
            self.runtime
                .block_on(table.add(batch).execute())
                .map_err(|e| self.store_error(name, e))?;
        }
        report.embed_seconds = embedding.as_secs_f64();
        report.chunks_added = total;

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
        if total > 0 || !replaced_sources.is_empty() {
            self.update_indexes(&table, name, info.dimension)?;
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
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
        let location = |p: &PendingChunk| serde_json::to_string(&p.chunk.location).unwrap_or_default();
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
                    group.iter().map(|p| p.chunk.ordinal as u32).collect::<Vec<_>>(),
                )),
                strings(&location),
                strings(&|p| p.chunk.text.clone()),
                strings(&|p| match &p.chunk.location.section {
                    Some(section) => format!("{} {}\n{}", p.title, section, p.chunk.text),
                    None => format!("{}\n{}", p.title, p.chunk.text),
                }),
                Arc::new(UInt32Array::from(
                    group.iter().map(|p| p.chunk.tokens as u32).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(vec![added_unix; n])),
                Arc::new(vector),
            ],
        )
        .map_err(|e| self.store_error("*", e))
    }

    /// Builds the full-text index the first time, the vector index once the table is large,
    /// and folds new rows into existing indexes.
    fn update_indexes(&self, table: &Table, name: &str, dimension: usize) -> Result<()> {
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
                let sub_vectors = if dim % 8 == 0 { dim / 8 } else { dim / 4 };
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

    /// Deletes the chunks of one file (by its path as listed in `sources`). Returns how many.
    pub fn remove_source(&self, name: &str, source: &str) -> Result<usize> {
        let table = self.table(name)?;
        let predicate = format!("source = {}", sql_string(source));
        let n = self
            .runtime
            .block_on(table.count_rows(Some(predicate.clone())))
            .map_err(|e| self.store_error(name, e))?;
        if n == 0 {
            return Err(KnowledgeError::Setting {
                field: "source",
                message: format!("`{source}` is not in knowledge base `{name}` (see `tunelab kb show {name}`)"),
            });
        }
        self.runtime
            .block_on(table.delete(predicate.as_str()))
            .map_err(|e| self.store_error(name, e))?;
        let dimension = self.settings(name)?.dimension;
        self.update_indexes(&table, name, dimension)?;
        Ok(n)
    }

    /// Searches a knowledge base. The query is embedded with `embedder`, which must be the
    /// knowledge base's own.
    pub fn search(
        &self,
        name: &str,
        embedder: &Embedder,
        query: &str,
        options: &SearchOptions,
    ) -> Result<Vec<Hit>> {
        let settings = self.settings(name)?;
        self.check_embedder(name, &settings, embedder)?;
        let table = self.table(name)?;
        // The full-text search needs no vector: it runs on the store's threads while this one
        // embeds the query.
        let text = self.spawn_text_search(&table, query, options);
        let vector = embedder.embed(&[query])?.remove(0);
        self.finish_search(&table, name, query, &vector, options, text)
    }

    /// Search with an already embedded query (benchmarks time the two parts separately).
    pub fn search_embedded(
        &self,
        name: &str,
        query: &str,
        vector: &[f32],
        options: &SearchOptions,
    ) -> Result<Vec<Hit>> {
        let table = self.table(name)?;
        self.search_table(&table, name, query, vector, options)
    }

    fn search_table(
        &self,
        table: &Table,
        name: &str,
        query: &str,
        vector: &[f32],
        options: &SearchOptions,
    ) -> Result<Vec<Hit>> {
        let text = self.spawn_text_search(table, query, options);
        self.finish_search(table, name, query, vector, options, text)
    }

    /// Starts the full-text half of a search on the store's runtime (nothing for vector mode).
    fn spawn_text_search(
        &self,
        table: &Table,
        query: &str,
        options: &SearchOptions,
    ) -> Option<tokio::task::JoinHandle<std::result::Result<Vec<RecordBatch>, String>>> {
        if options.mode == SearchMode::Vector || query.trim().is_empty() {
            return None;
        }
        let table = table.clone();
        let query = query.to_string();
        let filter = source_filter(options);
        let depth = search_depth(options);
        Some(self.runtime.spawn(async move {
            let fts = FullTextSearchQuery::new(query)
                .with_column("search_text".to_string())
                .map_err(|e| e.to_string())?;
            // Full-text hits bring their vector so their similarity to the query is known.
            let mut q = table
                .query()
                .full_text_search(fts)
                .select(Select::Columns(hit_columns(true)))
                .limit(depth);
            if let Some(f) = &filter {
                q = q.only_if(f);
            }
            // The full-text index exists from the first add on; only an empty table has none.
            match q.execute().await {
                Ok(stream) => stream.try_collect().await.map_err(|e| e.to_string()),
                Err(e) => match table.count_rows(None).await {
                    Ok(0) => Ok(Vec::new()),
                    _ => Err(e.to_string()),
                },
            }
        }))
    }

    /// Runs the vector half, waits for the text half, and ranks.
    fn finish_search(
        &self,
        table: &Table,
        name: &str,
        query: &str,
        vector: &[f32],
        options: &SearchOptions,
        text: Option<tokio::task::JoinHandle<std::result::Result<Vec<RecordBatch>, String>>>,
    ) -> Result<Vec<Hit>> {
        let _ = query;
        let k = options.k.max(1);
        let err = |e: lancedb::Error| self.store_error(name, e);
        let by_vector: Vec<RecordBatch> = if options.mode == SearchMode::Text {
            Vec::new()
        } else {
            self.runtime.block_on(async {
                let mut q = table
                    .query()
                    .nearest_to(vector)
                    .map_err(err)?
                    .distance_type(DistanceType::Cosine)
                    // The hits' own vectors come along: with an IVF-PQ index the distance is
                    // an approximation, and the similarities reported (and the relevance
                    // floor) should be exact.
                    .select(Select::Columns(hit_columns(true)))
                    .limit(search_depth(options));
                if let Some(f) = source_filter(options) {
                    q = q.only_if(f);
                }
                let batches: Vec<RecordBatch> =
                    q.execute().await.map_err(err)?.try_collect().await.map_err(err)?;
                Ok::<_, KnowledgeError>(batches)
            })?
        };
        let by_text = match text {
            Some(handle) => self
                .runtime
                .block_on(handle)
                .map_err(|e| self.store_error(name, e))?
                .map_err(|e| self.store_error(name, e))?,
            None => Vec::new(),
        };
        let vector_hits = hits_from(&by_vector, vector, "_distance")?;
        let text_hits = hits_from(&by_text, vector, "_score")?;
        let mut hits = match options.mode {
            SearchMode::Vector => vector_hits
                .into_iter()
                .map(|mut h| {
                    h.score = h.similarity;
                    h
                })
                .collect(),
            SearchMode::Text => text_hits,
            SearchMode::Hybrid => fuse(vector_hits, text_hits),
        };
        hits.truncate(k);
        Ok(hits)
    }
}

/// How deep each list goes: hybrid fuses deeper lists than it returns, so a chunk ranked well
/// by one side only still has a chance.
fn search_depth(options: &SearchOptions) -> usize {
    let k = options.k.max(1);
    if options.mode == SearchMode::Hybrid {
        (k * 4).max(20)
    } else {
        k
    }
}

/// The filter for `options.source`: that file, or files under that folder.
fn source_filter(options: &SearchOptions) -> Option<String> {
    options.source.as_ref().map(|s| {
        let s = s.trim_end_matches('/');
        format!(
            "(source = {} OR starts_with(source, {}))",
            sql_string(s),
            sql_string(&format!("{s}/"))
        )
    })
}

fn hit_columns(with_vector: bool) -> Vec<String> {
    let mut c: Vec<String> = ["id", "source", "title", "location", "text"]
        .map(String::from)
        .to_vec();
    if with_vector {
        c.push("vector".into());
    }
    c
}

/// Reciprocal-rank fusion: each list gives a chunk 1 / (60 + rank); sums decide the order.
fn fuse(vector: Vec<Hit>, text: Vec<Hit>) -> Vec<Hit> {
    const K: f32 = 60.0;
    let mut fused: Vec<Hit> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for list in [vector, text] {
        for (rank, mut hit) in list.into_iter().enumerate() {
            let add = 1.0 / (K + rank as f32 + 1.0);
            match index.get(&hit.chunk_id) {
                Some(&i) => fused[i].score += add,
                None => {
                    hit.score = add;
                    index.insert(hit.chunk_id.clone(), fused.len());
                    fused.push(hit);
                }
            }
        }
    }
    fused.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.similarity.total_cmp(&a.similarity))
    });
    fused
}

fn hits_from(batches: &[RecordBatch], query: &[f32], score_column: &str) -> Result<Vec<Hit>> {
    let mut out = Vec::new();
    for batch in batches {
        let id = column::<StringArray>(batch, "id")?;
        let source = column::<StringArray>(batch, "source")?;
        let title = column::<StringArray>(batch, "title")?;
        let location = column::<StringArray>(batch, "location")?;
        let text = column::<StringArray>(batch, "text")?;
        let vectors = batch
            .column_by_name("vector")
            .and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>());
        let scores = batch
            .column_by_name(score_column)
            .and_then(|c| c.as_any().downcast_ref::<Float32Array>());
        for i in 0..batch.num_rows() {
            let raw = scores.map(|s| s.value(i)).unwrap_or(0.0);
            // Cosine distance is 1 - similarity; vectors are unit length, so a dot product
            // is the similarity.
            let similarity = match vectors {
                Some(vectors) => {
                    let v = vectors.value(i);
                    v.as_any()
                        .downcast_ref::<Float32Array>()
                        .map(|a| a.values().iter().zip(query).map(|(a, b)| a * b).sum())
                        .unwrap_or(0.0)
                }
                None if score_column == "_distance" => 1.0 - raw,
                None => 0.0,
            };
            let score = if score_column == "_distance" { 1.0 - raw } else { raw };
            let loc: Location = serde_json::from_str(location.value(i)).unwrap_or_default();
            out.push(Hit {
                source: source.value(i).to_string(),
                title: title.value(i).to_string(),
                label: loc.label(),
                location: loc,
                text: text.value(i).to_string(),
                score,
                similarity,
                chunk_id: id.value(i).to_string(),
            });
        }
    }
    Ok(out)
}
