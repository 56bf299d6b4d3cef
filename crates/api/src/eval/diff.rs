//! Two evaluations of the same file side by side: each metric on both over the rows both
//! answered, the difference with a paired 95% interval, and the rows whose answers differ.

use std::collections::BTreeMap;

use serde::Serialize;
use ts_rs::TS;

use super::metrics::{self, Estimate, Metric};
use super::{show, EvalListItem, EvalRowResult};
use crate::error::{ApiError, Result};
use crate::workspace::Workspace;

/// One metric on both evaluations.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct MetricDiff {
    pub metric: Metric,
    pub label: String,
    pub higher_is_better: bool,
    pub a: Estimate,
    pub b: Estimate,
    /// B minus A, resampling the rows in pairs: an interval that leaves out 0 is a difference
    /// these rows support; one that holds 0 is not.
    pub difference: Estimate,
}

/// A row the two answered differently.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct RowDiff {
    pub index: u32,
    pub line: u32,
    pub question: String,
    pub reference: Option<String>,
    pub a_answer: String,
    pub b_answer: String,
    pub a_scores: BTreeMap<Metric, f64>,
    pub b_scores: BTreeMap<Metric, f64>,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct EvalDiff {
    pub a: EvalListItem,
    pub b: EvalListItem,
    /// Rows both answered: what every figure below is over.
    pub paired_rows: u32,
    /// The metrics both were scored on, in A's order.
    pub metrics: Vec<MetricDiff>,
    /// The rows answered differently, the largest change of a score first.
    pub rows: Vec<RowDiff>,
}

/// A metric of one side over the rows `sample` picks: the mean score, or for perplexity the
/// token-weighted one.
fn statistic(metric: Metric, rows: &[&EvalRowResult], sample: &[usize]) -> f64 {
    match metric {
        Metric::Perplexity => metrics::perplexity(sample.iter().map(|&i| {
            let row = rows[i];
            (
                row.reference_nll.unwrap_or(0.0),
                row.reference_tokens.unwrap_or(0),
            )
        })),
        _ => metrics::mean(sample.iter().map(|&i| rows[i].scores[&metric])),
    }
}

fn scored(metric: Metric, row: &EvalRowResult) -> bool {
    match metric {
        Metric::Perplexity => row.reference_nll.is_some() && row.reference_tokens.is_some(),
        _ => row.scores.contains_key(&metric),
    }
}

/// Evaluations `a` and `b` (ids or folders) compared. They must have scored the same file.
pub fn diff(ws: &Workspace, a: &str, b: &str) -> Result<EvalDiff> {
    let (a, b) = (show(ws, a)?, show(ws, b)?);
    let (config_a, config_b) = (&a.item.config, &b.item.config);
    if config_a.data_sha256 != config_b.data_sha256 {
        return Err(ApiError::invalid(format!(
            "`{}` and `{}` scored different evaluation files ({} and {}): only evaluations of \
             the same file can be set side by side",
            a.item.id,
            b.item.id,
            config_a.data.display(),
            config_b.data.display()
        )));
    }
    let by_index: BTreeMap<u32, &EvalRowResult> = b.rows.iter().map(|r| (r.index, r)).collect();
    let pairs: Vec<(&EvalRowResult, &EvalRowResult)> = a
        .rows
        .iter()
        .filter_map(|r| Some((r, *by_index.get(&r.index)?)))
        .collect();
    let seed = config_a.seed;
    let mut diffs = Vec::new();
    for &metric in config_a
        .metrics
        .iter()
        .filter(|m| config_b.metrics.contains(m))
    {
        let both: Vec<_> = pairs
            .iter()
            .filter(|(x, y)| scored(metric, x) && scored(metric, y))
            .collect();
        let side_a: Vec<&EvalRowResult> = both.iter().map(|(x, _)| *x).collect();
        let side_b: Vec<&EvalRowResult> = both.iter().map(|(_, y)| *y).collect();
        let n = both.len();
        let estimate = |stat: &dyn Fn(&[usize]) -> f64| metrics::bootstrap(n, seed, stat);
        let (Some(on_a), Some(on_b), Some(difference)) = (
            estimate(&|s| statistic(metric, &side_a, s)),
            estimate(&|s| statistic(metric, &side_b, s)),
            estimate(&|s| statistic(metric, &side_b, s) - statistic(metric, &side_a, s)),
        ) else {
            continue;
        };
        diffs.push(MetricDiff {
            metric,
            label: match (metric, &config_a.judge) {
                (Metric::Judge, Some(judge)) => format!("judge ({judge})"),
                _ => metric.as_str().to_string(),
            },
            higher_is_better: metric.higher_is_better(),
            a: on_a,
            b: on_b,
            difference,
        });
    }
    let change = |x: &EvalRowResult, y: &EvalRowResult| {
        x.scores
            .iter()
            .filter_map(|(m, v)| Some((y.scores.get(m)? - v).abs()))
            .fold(0.0, f64::max)
    };
    let mut rows: Vec<(f64, RowDiff)> = pairs
        .iter()
        .filter(|(x, y)| x.answer != y.answer)
        .map(|(x, y)| {
            let row = RowDiff {
                index: x.index,
                line: x.line,
                question: x.question.clone(),
                reference: x.reference.clone(),
                a_answer: x.answer.clone(),
                b_answer: y.answer.clone(),
                a_scores: x.scores.clone(),
                b_scores: y.scores.clone(),
            };
            (change(x, y), row)
        })
        .collect();
    rows.sort_by(|(cx, x), (cy, y)| cy.total_cmp(cx).then(x.index.cmp(&y.index)));
    Ok(EvalDiff {
        paired_rows: pairs.len() as u32,
        metrics: diffs,
        rows: rows.into_iter().map(|(_, row)| row).collect(),
        a: a.item,
        b: b.item,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(index: u32, score: f64, nll: f64) -> EvalRowResult {
        EvalRowResult {
            index,
            line: index + 1,
            question: format!("q{index}"),
            reference: Some("r".into()),
            answer: format!("a{score}"),
            scores: BTreeMap::from([(Metric::TokenF1, score)]),
            reference_nll: Some(nll),
            reference_tokens: Some(2),
            retrieved: Vec::new(),
            grounded: None,
            prompt_tokens: 1,
            extra_context_tokens: 0,
            generated_tokens: 1,
            latency_s: 0.1,
            stop_reason: crate::chat::StopReason::Eos,
            judge_reply: None,
        }
    }

    #[test]
    fn a_side_mean_and_perplexity_match_the_evaluations_own() {
        let rows = [row(0, 0.5, 2.0), row(1, 1.0, 4.0)];
        let refs: Vec<&EvalRowResult> = rows.iter().collect();
        assert_eq!(statistic(Metric::TokenF1, &refs, &[0, 1]), 0.75);
        assert!((statistic(Metric::Perplexity, &refs, &[0, 1]) - 1.5f64.exp()).abs() < 1e-12);
        let own = metrics::perplexity_estimate(&[(2.0, 2), (4.0, 2)], 0).unwrap();
        assert!((own.value - 1.5f64.exp()).abs() < 1e-12);
    }
}
