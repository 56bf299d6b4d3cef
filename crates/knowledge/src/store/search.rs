//! Searching a knowledge base: vector (cosine), full text (BM25) or both fused by reciprocal
//! rank. The full-text half runs on the store's runtime while the query is embedded.

use std::collections::HashMap;

use arrow_array::{Array, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use futures::TryStreamExt;
use lancedb::index::scalar::FullTextSearchQuery;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::{DistanceType, Table};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::{column, sql_string, KnowledgeStore};
use crate::document::Location;
use crate::embed::Embedder;
use crate::error::{KnowledgeError, Result};

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
            other => Err(format!(
                "unknown search mode `{other}` (vector, text or hybrid)"
            )),
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

impl KnowledgeStore {
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
        let vector = embedder.embed_query(query)?;
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
                match source_filter(options) {
                    Some(f) => q = q.only_if(f),
                    // Unfiltered, a fixed number of IVF partitions is enough and saves the
                    // adaptive probing's extra rounds (a millisecond at 100k chunks). A filter
                    // keeps adaptive probing, which widens until enough rows pass it.
                    None => q = q.nprobes(IVF_PROBES).map_err(err)?,
                }
                let batches: Vec<RecordBatch> = q
                    .execute()
                    .await
                    .map_err(err)?
                    .try_collect()
                    .await
                    .map_err(err)?;
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

/// IVF partitions probed by an unfiltered vector search (of about sqrt(rows) partitions).
const IVF_PROBES: usize = 20;

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
            let score = if score_column == "_distance" {
                1.0 - raw
            } else {
                raw
            };
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
