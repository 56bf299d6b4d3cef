//! Knowledge bases on disk: one embedded LanceDB database (a folder in the workspace) with one
//! table per knowledge base. Each row is a chunk with its vector, its text, where it came from
//! and the hash of the file it came from. The embedder's name and dimension and the chunking
//! settings are kept in the table's schema metadata, so the table describes itself.
//!
//! Writes are ordered so a crash never loses data: a changed file's new chunks are written before
//! its old ones are deleted, and a file that fails to read changes nothing.

mod add;
mod search;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow_array::{Array, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::Table;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

pub use add::{AddProgress, AddReport, FailedFile};
pub use search::{Hit, SearchMode, SearchOptions};

use crate::chunk::ChunkOptions;
use crate::document::Location;
use crate::embed::Embedder;
use crate::error::{KnowledgeError, Result};

/// Above this many chunks a table gets an approximate (IVF-PQ) vector index; below it an exact
/// scan is fast enough and always right.
pub const ANN_THRESHOLD: usize = 20_000;

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

/// A source's newest version, and the hashes of every version with chunks in the table.
struct Versions {
    current: SourceInfo,
    hashes: Vec<String>,
}

/// The knowledge bases in one LanceDB folder.
pub struct KnowledgeStore {
    root: PathBuf,
    runtime: tokio::runtime::Runtime,
    db: lancedb::Connection,
    ann_threshold: usize,
    /// Chunks per write of an add, at least (whole files each).
    write_group: usize,
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
            write_group: add::WRITE_GROUP,
            tables: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Writes an add's chunks in groups of at least `chunks` (whole files each) instead of
    /// 4096: smaller groups commit more often.
    pub fn with_write_group(mut self, chunks: usize) -> Self {
        self.write_group = chunks.max(1);
        self
    }

    /// Builds the approximate vector index from `rows` chunks instead of `ANN_THRESHOLD`.
    pub fn with_ann_threshold(mut self, rows: usize) -> Self {
        self.ann_threshold = rows;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder LanceDB keeps the knowledge base `name` in.
    pub fn table_dir(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.lance"))
    }

    fn store_error(&self, name: &str, e: impl std::fmt::Display) -> KnowledgeError {
        KnowledgeError::Store {
            path: self.table_dir(name),
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
        let path = self.table_dir(name);
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
            let vector_index = indices
                .iter()
                .any(|i| i.columns.iter().any(|c| c == "vector"));
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
    pub fn check_embedder(
        &self,
        name: &str,
        settings: &Settings,
        embedder: &Embedder,
    ) -> Result<()> {
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
        Ok(self
            .versions_of(table, name)
            .await?
            .into_iter()
            .map(|(_, v)| v.current)
            .collect())
    }

    /// Every source with the version of it that counts (the newest) and all versions whose
    /// chunks are in the table: more than one after a crash between writing a changed file's
    /// new chunks and deleting its old ones.
    async fn versions_of(&self, table: &Table, name: &str) -> Result<Vec<(String, Versions)>> {
        let batches: Vec<RecordBatch> = table
            .query()
            .select(Select::Columns(
                [
                    "source",
                    "title",
                    "format",
                    "doc_hash",
                    "tokens",
                    "added_unix",
                ]
                .map(String::from)
                .to_vec(),
            ))
            .execute()
            .await
            .map_err(|e| self.store_error(name, e))?
            .try_collect()
            .await
            .map_err(|e| self.store_error(name, e))?;
        // source -> hash -> that version's totals
        let mut by_source: BTreeMap<String, BTreeMap<String, SourceInfo>> = BTreeMap::new();
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
                    .or_default()
                    .entry(hash.value(i).to_string())
                    .or_insert_with(|| SourceInfo {
                        source: source.value(i).to_string(),
                        title: title.value(i).to_string(),
                        format: format.value(i).to_string(),
                        hash: hash.value(i).to_string(),
                        chunks: 0,
                        tokens: 0,
                        added_unix: added.value(i),
                    });
                entry.added_unix = entry.added_unix.max(added.value(i));
                entry.chunks += 1;
                entry.tokens += tokens.value(i) as usize;
            }
        }
        Ok(by_source
            .into_iter()
            .filter_map(|(source, versions)| {
                let hashes: Vec<String> = versions.keys().cloned().collect();
                let current = versions
                    .into_values()
                    .max_by_key(|v| (v.added_unix, v.chunks))?;
                Some((source, Versions { current, hashes }))
            })
            .collect())
    }

    /// The files in a knowledge base.
    pub fn sources(&self, name: &str) -> Result<Vec<SourceInfo>> {
        let table = self.table(name)?;
        self.runtime.block_on(self.sources_of(&table, name))
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
                message: format!(
                    "`{source}` is not in knowledge base `{name}` (see `tunelab kb show {name}`)"
                ),
            });
        }
        self.runtime
            .block_on(table.delete(predicate.as_str()))
            .map_err(|e| self.store_error(name, e))?;
        let dimension = self.settings(name)?.dimension;
        self.update_indexes(&table, name, dimension)?;
        Ok(n)
    }
}
