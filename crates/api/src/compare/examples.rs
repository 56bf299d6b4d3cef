//! The per-example view of a comparison: every question with each method's answer and scores,
//! and how much the methods disagree on it.

use std::collections::BTreeMap;

use serde::Serialize;
use ts_rs::TS;

use super::{show, MethodId};
use crate::error::Result;
use crate::eval::{self, Metric};
use crate::workspace::Workspace;

/// One question of the evaluation, answered by every method.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ComparedExample {
    /// Position in the evaluation (from 0) and line in its file.
    pub index: u32,
    pub line: u32,
    pub question: String,
    pub reference: Option<String>,
    pub answers: Vec<MethodAnswer>,
    /// The spread of `metric` across the methods (highest minus lowest): 0 when they all did
    /// equally well.
    pub disagreement: f64,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct MethodAnswer {
    pub method: MethodId,
    pub answer: String,
    pub scores: BTreeMap<Metric, f64>,
}

/// The questions of a comparison, most disputed first.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ComparedExamples {
    /// What `disagreement` is measured on: token F1 when the rows have references, else the
    /// first metric they were scored on.
    pub metric: Option<Metric>,
    pub rows: Vec<ComparedExample>,
}

/// Every question the methods of the comparison `id` answered, with each one's answer.
pub fn examples(ws: &Workspace, id: &str) -> Result<ComparedExamples> {
    let report = show(ws, id)?;
    let mut by_index: BTreeMap<u32, ComparedExample> = BTreeMap::new();
    for result in &report.methods {
        let Some(eval_id) = &result.eval else {
            continue;
        };
        for row in eval::show(ws, eval_id)?.rows {
            let entry = by_index
                .entry(row.index)
                .or_insert_with(|| ComparedExample {
                    index: row.index,
                    line: row.line,
                    question: row.question.clone(),
                    reference: row.reference.clone(),
                    answers: Vec::new(),
                    disagreement: 0.0,
                });
            entry.answers.push(MethodAnswer {
                method: result.method,
                answer: row.answer,
                scores: row.scores,
            });
        }
    }
    let mut rows: Vec<ComparedExample> = by_index.into_values().collect();
    let metric = [Metric::TokenF1]
        .into_iter()
        .chain(
            rows.iter()
                .flat_map(|r| r.answers.iter())
                .flat_map(|a| a.scores.keys().copied()),
        )
        .find(|m| {
            rows.iter()
                .any(|r| r.answers.iter().any(|a| a.scores.contains_key(m)))
        });
    if let Some(metric) = metric {
        for row in &mut rows {
            let values: Vec<f64> = row
                .answers
                .iter()
                .filter_map(|a| a.scores.get(&metric).copied())
                .collect();
            let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let low = values.iter().copied().fold(f64::INFINITY, f64::min);
            row.disagreement = if values.is_empty() { 0.0 } else { high - low };
        }
        rows.sort_by(|a, b| {
            b.disagreement
                .total_cmp(&a.disagreement)
                .then(a.index.cmp(&b.index))
        });
    }
    Ok(ComparedExamples { metric, rows })
}
