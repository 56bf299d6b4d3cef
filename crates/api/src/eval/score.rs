//! Scoring: each answered row on the configuration's metrics, the judge's grades, and the
//! metrics and cost over all rows.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::folder::write_results;
use super::{
    metrics, Caches, EvalConfig, EvalCost, EvalEvent, EvalRow, EvalRowResult, Metric, MetricScore,
};
use crate::chat::{ChatMessage, ChatRequest, ChatRole, StopReason};
use crate::error::{ApiError, Result};
use crate::knowledge;
use crate::workspace::Workspace;

/// The row's scores on every metric of the configuration that applies to it.
pub(super) fn score(
    config: &EvalConfig,
    row: &EvalRow,
    result: &EvalRowResult,
) -> Result<BTreeMap<Metric, f64>> {
    let answer = result.answer.as_str();
    let mut scores = BTreeMap::new();
    for &metric in &config.metrics {
        let value = match (metric, &row.reference) {
            (Metric::ExactMatch, Some(r)) => Some(metrics::exact_match(answer, r)),
            (Metric::TokenF1, Some(r)) => Some(metrics::token_f1(answer, r)),
            (Metric::RougeL, Some(r)) => Some(metrics::rouge_l(answer, r)),
            (Metric::ContainsAll, _) if !row.must_contain.is_empty() => {
                Some(metrics::contains_all(answer, &row.must_contain))
            }
            (Metric::Regex, _) => match &row.regex {
                Some(pattern) => {
                    let re = regex::Regex::new(pattern).map_err(|e| {
                        ApiError::invalid(format!("line {}: field `regex`: {e}", row.line))
                    })?;
                    Some(f64::from(u8::from(re.is_match(answer))))
                }
                None => None,
            },
            (Metric::Json, _) if row.json => Some(metrics::json_valid(answer)),
            (Metric::HitAt3 | Metric::Mrr, _) if !row.sources.is_empty() => {
                let rank = row
                    .sources
                    .iter()
                    .map(|s| metrics::reciprocal_rank(&result.retrieved, s))
                    .fold(0.0, f64::max);
                Some(match metric {
                    Metric::HitAt3 => {
                        f64::from(u8::from(rank >= 1.0 / knowledge::ANSWER_HITS as f64))
                    }
                    _ => rank,
                })
            }
            // Aggregated from the likelihoods; the judge's grade comes later.
            _ => None,
        };
        if let Some(value) = value {
            scores.insert(metric, value);
        }
    }
    Ok(scores)
}

/// How the judge is asked: a short rubric, one digit back.
const JUDGE_RUBRIC: &str = "You grade answers against a reference answer. Reply with one digit: \
5 = says what the reference says, correct and complete; 4 = correct but missing a detail; \
3 = partly correct; 2 = mostly wrong; 1 = wrong or unrelated.";

/// Has the judge grade every answered row with a reference that it has not graded yet.
/// Returns false when cancelled (the grades so far are kept).
pub(super) fn judge(
    ws: &Workspace,
    caches: &Caches,
    config: &EvalConfig,
    results: &mut [EvalRowResult],
    dir: &Path,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(EvalEvent),
) -> Result<bool> {
    let Some(judge) = &config.judge else {
        return Ok(true);
    };
    let todo: Vec<usize> = (0..results.len())
        .filter(|&i| results[i].reference.is_some() && results[i].judge_reply.is_none())
        .collect();
    let mut finished = true;
    for (n, &i) in todo.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            finished = false;
            break;
        }
        let r = &results[i];
        let request = ChatRequest {
            model: judge.clone(),
            adapter: None,
            kb: None,
            template: None,
            messages: vec![
                ChatMessage {
                    role: ChatRole::System,
                    content: JUDGE_RUBRIC.into(),
                },
                ChatMessage {
                    role: ChatRole::User,
                    content: format!(
                        "Question: {}\nReference answer: {}\nAnswer to grade: {}\nGrade (1-5):",
                        r.question,
                        r.reference.as_deref().unwrap_or_default(),
                        r.answer
                    ),
                },
            ],
            params: super::decoding(0.0, config.seed, 8),
            device: config.device.parse().ok(),
        };
        let reply = crate::chat::chat(ws, caches, &request, cancel, &mut |_| {})?;
        if reply.stop_reason == StopReason::Cancelled {
            finished = false;
            break;
        }
        let row = &mut results[i];
        if let Some(grade) = metrics::judge_grade(&reply.text) {
            row.scores.insert(Metric::Judge, grade);
        }
        row.judge_reply = Some(reply.text.trim().to_string());
        on_event(EvalEvent::Judged {
            done: n as u32 + 1,
            total: todo.len() as u32,
        });
    }
    write_results(dir, results)?;
    Ok(finished)
}

/// Every metric's value over the rows, with its interval.
pub(super) fn aggregate(config: &EvalConfig, results: &[EvalRowResult]) -> Vec<MetricScore> {
    config
        .metrics
        .iter()
        .filter_map(|&metric| {
            let estimate = match metric {
                Metric::Perplexity => {
                    let rows: Vec<(f64, u32)> = results
                        .iter()
                        .filter_map(|r| Some((r.reference_nll?, r.reference_tokens?)))
                        .collect();
                    metrics::perplexity_estimate(&rows, config.seed)
                }
                _ => {
                    let scores: Vec<f64> = results
                        .iter()
                        .filter_map(|r| r.scores.get(&metric).copied())
                        .collect();
                    metrics::mean_estimate(&scores, config.seed)
                }
            }?;
            Some(MetricScore {
                metric,
                label: match (metric, &config.judge) {
                    (Metric::Judge, Some(judge)) => format!("judge ({judge})"),
                    _ => metric.as_str().to_string(),
                },
                higher_is_better: metric.higher_is_better(),
                estimate,
            })
        })
        .collect()
}

pub(super) fn cost(
    results: &[EvalRowResult],
    setup_s: f64,
    wall_time_s: f64,
    device: String,
    gpu: Option<tunelab_hardware::GpuCost>,
    cpu_energy: Option<tunelab_hardware::CpuEnergy>,
    footprint: super::Footprint,
) -> EvalCost {
    let n = results.len().max(1) as f64;
    let mut latencies: Vec<f64> = results.iter().map(|r| r.latency_s).collect();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| match latencies.len() {
        0 => 0.0,
        len => latencies[((len - 1) as f64 * q).round() as usize],
    };
    EvalCost {
        setup_s,
        wall_time_s,
        latency_p50_s: quantile(0.5),
        latency_p95_s: quantile(0.95),
        prompt_tokens_mean: results
            .iter()
            .map(|r| f64::from(r.prompt_tokens))
            .sum::<f64>()
            / n,
        extra_context_tokens_mean: results
            .iter()
            .map(|r| f64::from(r.extra_context_tokens))
            .sum::<f64>()
            / n,
        generated_tokens: results.iter().map(|r| u64::from(r.generated_tokens)).sum(),
        peak_rss_bytes: tunelab_hardware::peak_rss_bytes(),
        cpu_energy,
        gpu,
        device,
        footprint,
    }
}
