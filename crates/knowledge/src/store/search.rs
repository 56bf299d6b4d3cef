//! Searching a knowledge base: vector (cosine), full text (BM25) or both fused by reciprocal
//! rank. The full-text half runs on the store's runtime while the query is embedded.

use std::collections::HashMap;

use arrow_array::{Array, FixedSizeListArray, Float32Array, RecordBatch, StringArray, UInt64Array};
use futures::TryStreamExt;
use lancedb::index::scalar::FullTextSearchQuery;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::{DistanceType, Table};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::{column, sql_string, KnowledgeStore};
use crate::document::Location;
use crate::embed::Embedder;
use crate::error::Result;

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
        self.finish_search(&table, name, &vector, options, text)
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
        self.finish_search(table, name, vector, options, text)
    }

    /// Starts the full-text half of a search on the store's runtime (nothing for vector mode).
    fn spawn_text_search(
        &self,
        table: &Table,
        query: &str,
        options: &SearchOptions,
    ) -> Option<tokio::task::JoinHandle<std::result::Result<Vec<Ranked>, String>>> {
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
            let mut q = table
                .query()
                .full_text_search(fts)
                .select(Select::Columns(Vec::new()))
                .with_row_id()
                .limit(depth);
            if let Some(f) = &filter {
                q = q.only_if(f);
            }
            // The full-text index exists from the first add on; only an empty table has none.
            match q.execute().await {
                Ok(stream) => {
                    let batches: Vec<RecordBatch> =
                        stream.try_collect().await.map_err(|e| e.to_string())?;
                    ranked_from(&batches, "_score").map_err(|e| e.to_string())
                }
                Err(e) => match table.count_rows(None).await {
                    Ok(0) => Ok(Vec::new()),
                    _ => Err(e.to_string()),
                },
            }
        }))
    }

    /// Runs the vector half, waits for the text half, ranks, and reads the chunks that made
    /// the cut.
    ///
    /// Both halves return row ids and scores only: reading a chunk's columns is what a query
    /// spends most of its time on (about 0.2 ms a row at 100k chunks), so only the chunks
    /// returned are read, once.
    fn finish_search(
        &self,
        table: &Table,
        name: &str,
        vector: &[f32],
        options: &SearchOptions,
        text: Option<tokio::task::JoinHandle<std::result::Result<Vec<Ranked>, String>>>,
    ) -> Result<Vec<Hit>> {
        let k = options.k.max(1);
        let err = |e: lancedb::Error| self.store_error(name, e);
        let by_vector: Vec<Ranked> = if options.mode == SearchMode::Text {
            Vec::new()
        } else {
            self.runtime.block_on(async {
                let mut q = table
                    .query()
                    .nearest_to(vector)
                    .map_err(err)?
                    .distance_type(DistanceType::Cosine)
                    .select(Select::Columns(Vec::new()))
                    .with_row_id()
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
                ranked_from(&batches, "_distance")
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
        // The rows to read, best first. Scores: cosine similarity (with an IVF-PQ index an
        // approximation, replaced by the exact one below), BM25, or fused rank.
        let (mut chosen, tie_break) = match options.mode {
            SearchMode::Vector => (by_vector, false),
            SearchMode::Text => (by_text, false),
            SearchMode::Hybrid => (fuse(&by_vector, &by_text), true),
        };
        // Fused scores tie often (rank r in one list only, on either side): every chunk tied
        // with the k-th is read so that the exact similarity can break the tie.
        let keep = match chosen.get(k - 1) {
            Some(last) if tie_break => chosen.iter().take_while(|r| r.score >= last.score).count(),
            _ => k,
        };
        chosen.truncate(keep);
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<u64> = chosen.iter().map(|r| r.row).collect();
        let rows = self.runtime.block_on(read_rows(table, &ids)).map_err(err)?;
        let mut read = read_hits(std::slice::from_ref(&rows), vector)?;
        // A row removed between the two reads (a file replaced meanwhile) is left out.
        let mut hits: Vec<Hit> = chosen
            .iter()
            .filter_map(|r| {
                read.remove(&r.row).map(|mut hit| {
                    hit.score = match options.mode {
                        SearchMode::Vector => hit.similarity,
                        _ => r.score,
                    };
                    hit
                })
            })
            .collect();
        if tie_break {
            hits.sort_by(|a, b| {
                b.score
                    .total_cmp(&a.score)
                    .then(b.similarity.total_cmp(&a.similarity))
            });
        }
        hits.truncate(k);
        Ok(hits)
    }
}

/// The hit columns of the rows `ids`, with `_rowid`, straight from the dataset: a take
/// through a query plan costs about a millisecond more.
///
/// Row ids here are row addresses, which stay valid while the table is only appended to,
/// deleted from and re-indexed, as the store does; compacting the table would move rows, so a
/// store that starts compacting must enable stable row ids first.
async fn read_rows(table: &Table, ids: &[u64]) -> lancedb::Result<RecordBatch> {
    let dataset = match table.dataset() {
        Some(d) => d.get().await?,
        None => {
            return Err(lancedb::Error::NotSupported {
                message: "knowledge bases are local tables".into(),
            })
        }
    };
    let mut columns = hit_columns();
    columns.push("_rowid".into());
    let projection = dataset.schema().project_preserve_system_columns(&columns)?;
    Ok(dataset
        .take_rows(
            ids,
            lance::dataset::ProjectionRequest::from_schema(projection),
        )
        .await?)
}

/// A row a search half found, with that half's score (higher is better).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ranked {
    row: u64,
    score: f32,
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

/// The columns a hit is made of. The vector comes along so that the similarity reported (and
/// the relevance floor of answers) is exact, not the index's approximation.
fn hit_columns() -> Vec<String> {
    ["id", "source", "title", "location", "text", "vector"]
        .map(String::from)
        .to_vec()
}

/// Reciprocal-rank fusion: each list gives a row 1 / (60 + rank); sums decide the order.
fn fuse(vector: &[Ranked], text: &[Ranked]) -> Vec<Ranked> {
    const K: f32 = 60.0;
    let mut fused: Vec<Ranked> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    for list in [vector, text] {
        for (rank, hit) in list.iter().enumerate() {
            let add = 1.0 / (K + rank as f32 + 1.0);
            match index.get(&hit.row) {
                Some(&i) => fused[i].score += add,
                None => {
                    index.insert(hit.row, fused.len());
                    fused.push(Ranked {
                        row: hit.row,
                        score: add,
                    });
                }
            }
        }
    }
    // Stable: among equal sums the vector side's order comes first.
    fused.sort_by(|a, b| b.score.total_cmp(&a.score));
    fused
}

/// Row ids and scores of one search half (`_distance` becomes a similarity).
fn ranked_from(batches: &[RecordBatch], score_column: &str) -> Result<Vec<Ranked>> {
    let mut out = Vec::new();
    for batch in batches {
        let rows = column::<UInt64Array>(batch, "_rowid")?;
        let scores = column::<Float32Array>(batch, score_column)?;
        for i in 0..batch.num_rows() {
            let raw = scores.value(i);
            out.push(Ranked {
                row: rows.value(i),
                // Cosine distance is 1 - similarity.
                score: if score_column == "_distance" {
                    1.0 - raw
                } else {
                    raw
                },
            });
        }
    }
    Ok(out)
}

/// The hits in `batches` by row id, with their exact similarity to `query`.
fn read_hits(batches: &[RecordBatch], query: &[f32]) -> Result<HashMap<u64, Hit>> {
    let mut out = HashMap::new();
    for batch in batches {
        let rows = column::<UInt64Array>(batch, "_rowid")?;
        let id = column::<StringArray>(batch, "id")?;
        let source = column::<StringArray>(batch, "source")?;
        let title = column::<StringArray>(batch, "title")?;
        let location = column::<StringArray>(batch, "location")?;
        let text = column::<StringArray>(batch, "text")?;
        let vectors = column::<FixedSizeListArray>(batch, "vector")?;
        for i in 0..batch.num_rows() {
            // Vectors are unit length, so a dot product is the cosine similarity.
            let v = vectors.value(i);
            let similarity = v
                .as_any()
                .downcast_ref::<Float32Array>()
                .map(|a| a.values().iter().zip(query).map(|(a, b)| a * b).sum())
                .unwrap_or(0.0);
            let loc: Location = serde_json::from_str(location.value(i)).unwrap_or_default();
            out.insert(
                rows.value(i),
                Hit {
                    source: source.value(i).to_string(),
                    title: title.value(i).to_string(),
                    label: loc.label(),
                    location: loc,
                    text: text.value(i).to_string(),
                    score: 0.0,
                    similarity,
                    chunk_id: id.value(i).to_string(),
                },
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(rows: &[u64]) -> Vec<Ranked> {
        rows.iter().map(|&row| Ranked { row, score: 0.0 }).collect()
    }

    #[test]
    fn fusion_adds_both_ranks_and_keeps_ties_in_vector_order() {
        // Row 7 is second on both sides; rows 1 and 9 are first on one side each.
        let fused = fuse(&ranked(&[1, 7, 3]), &ranked(&[9, 7, 4]));
        let rows: Vec<u64> = fused.iter().map(|r| r.row).collect();
        assert_eq!(rows, vec![7, 1, 9, 3, 4]);
        assert!((fused[0].score - 2.0 / 62.0).abs() < 1e-7);
        assert_eq!(fused[1].score, fused[2].score);
        assert!((fused[1].score - 1.0 / 61.0).abs() < 1e-7);
    }

    #[test]
    fn fusion_of_one_empty_side_keeps_the_other_order() {
        let fused = fuse(&[], &ranked(&[5, 2, 8]));
        assert_eq!(
            fused.iter().map(|r| r.row).collect::<Vec<_>>(),
            vec![5, 2, 8]
        );
    }
}
