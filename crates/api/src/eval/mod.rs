//! Evaluations: any configuration (a model, a trained run, a knowledge base, a prompt
//! template, or several of these together) answers every question of an evaluation file, and
//! the answers are scored (see [`metrics`]).
//!
//! An evaluation is a job with its own folder, `evals/<id>/`:
//! - `config.json`: the resolved configuration, the data file's SHA-256 included;
//! - `rows.jsonl`: one scored answer per line, appended as each is done;
//! - `summary.json`: the scores with their 95% intervals and what the evaluation cost;
//! - `.lock`: held while it runs.
//!
//! The id is made from the configuration, so the same evaluation run again (or under the same
//! given name) is returned as it is when it had finished, and carries on from the rows it has
//! when it was cut off.

mod ab;
mod config;
pub mod data;
mod diff;
mod folder;
mod footprint;
pub mod metrics;
mod score;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::chat::{ChatRequest, GenerationParams, StopReason};
use crate::error::{ApiError, ErrorCode, Result};
use crate::jobs::{JobKind, JobLock};
use crate::knowledge::{self, Grounding, SearchOptions, SearchRequest};
use crate::prompts::TemplateRef;
use crate::train::{now, RunStatus};
use crate::workspace::{json_bytes, read_json, write_atomic, Workspace};
pub use ab::{template_ab, AbEvent, AbSide, TemplateAbRequest};
use config::{checked_id, new_id, read_rows, resolve};
pub use data::EvalRow;
pub use diff::{diff, EvalDiff, MetricDiff, RowDiff};
use folder::{append_result, dir_name, read_results, write_results};
pub use folder::{list, show, EvalDetail, EvalListItem};
pub use footprint::Footprint;
pub use metrics::{Estimate, Metric};
use score::{aggregate, cost, judge, score};

/// What to evaluate, on which file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct EvalRequest {
    /// The evaluation file (JSON lines; see `data`).
    #[ts(type = "string")]
    pub data: PathBuf,
    /// The registered model that answers; the run's base model, or the default model, when
    /// absent.
    #[ts(optional)]
    pub model: Option<String>,
    /// A trained run (id or folder) whose result answers: adapter, soft prompt or model.
    #[ts(optional)]
    pub run: Option<String>,
    /// Answer from this knowledge base.
    #[ts(optional)]
    pub kb: Option<String>,
    /// Frame each question with this saved prompt template.
    #[ts(optional)]
    pub template: Option<TemplateRef>,
    /// The metrics to compute; every one the rows and the configuration allow when empty
    /// (the judge only when `judge` names a model).
    pub metrics: Vec<Metric>,
    /// The registered chat model that grades answers for the `judge` metric.
    #[ts(optional)]
    pub judge: Option<String>,
    /// Longest answer, in tokens.
    pub max_tokens: u32,
    /// Seeds decoding (greedy unless `temperature` is above 0) and the intervals' resampling.
    #[ts(type = "number")]
    pub seed: u64,
    /// 0 decodes greedily.
    pub temperature: f32,
    /// Only the first rows of the file.
    #[ts(optional)]
    pub limit: Option<u32>,
    /// The evaluation's id (its folder under `evals/`); made from the data and configuration
    /// when absent.
    #[ts(optional)]
    pub name: Option<String>,
    #[ts(optional, type = "string")]
    pub device: Option<tunelab_engine::DeviceChoice>,
}

impl Default for EvalRequest {
    fn default() -> Self {
        EvalRequest {
            data: PathBuf::new(),
            model: None,
            run: None,
            kb: None,
            template: None,
            metrics: Vec::new(),
            judge: None,
            max_tokens: 128,
            seed: 0,
            temperature: 0.0,
            limit: None,
            name: None,
            device: None,
        }
    }
}

/// config.json: the request with everything resolved, so that two evaluations with equal
/// configs scored the same thing the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct EvalConfig {
    #[ts(type = "string")]
    pub data: PathBuf,
    /// SHA-256 of the evaluation file, hex.
    pub data_sha256: String,
    pub rows: u32,
    pub model: String,
    pub run: Option<String>,
    pub kb: Option<String>,
    pub template: Option<TemplateRef>,
    pub metrics: Vec<Metric>,
    pub judge: Option<String>,
    pub max_tokens: u32,
    #[ts(type = "number")]
    pub seed: u64,
    pub temperature: f32,
    pub device: String,
}

/// One answered row (a line of rows.jsonl).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct EvalRowResult {
    /// Position in the evaluation (from 0).
    pub index: u32,
    /// Line in the evaluation file.
    pub line: u32,
    pub question: String,
    pub reference: Option<String>,
    pub answer: String,
    pub scores: BTreeMap<Metric, f64>,
    /// Summed negative log-likelihood of the reference and its token count (perplexity).
    pub reference_nll: Option<f64>,
    pub reference_tokens: Option<u32>,
    /// With a knowledge base: the sources of the passages found for the question, best first.
    pub retrieved: Vec<String>,
    /// Whether the knowledge base found anything relevant (null without one).
    pub grounded: Option<bool>,
    pub prompt_tokens: u32,
    /// Prompt tokens the configuration adds to the bare question: retrieved passages, template
    /// text and examples.
    pub extra_context_tokens: u32,
    pub generated_tokens: u32,
    pub latency_s: f64,
    pub stop_reason: StopReason,
    /// The judge's reply, when the judge graded this row.
    pub judge_reply: Option<String>,
}

/// A metric over the whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct MetricScore {
    pub metric: Metric,
    /// "judge (MODEL)" for the judge, so that it is never mistaken for a measurement.
    pub label: String,
    pub higher_is_better: bool,
    pub estimate: Estimate,
}

/// What answering the evaluation cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct EvalCost {
    /// Loading the model, its adapter and the embedder.
    pub setup_s: f64,
    pub wall_time_s: f64,
    pub latency_p50_s: f64,
    pub latency_p95_s: f64,
    pub prompt_tokens_mean: f64,
    /// Tokens per question the configuration adds to the bare question.
    pub extra_context_tokens_mean: f64,
    #[ts(type = "number")]
    pub generated_tokens: u64,
    /// The process's peak resident memory (in the app, its peak so far).
    #[ts(type = "number | null")]
    pub peak_rss_bytes: Option<u64>,
    pub cpu_energy: Option<tunelab_hardware::CpuEnergy>,
    pub gpu: Option<tunelab_hardware::GpuCost>,
    pub device: String,
    /// What the configuration adds to its base model: trainable parameters, bytes on disk and
    /// the data behind them.
    #[serde(default)]
    pub footprint: Footprint,
}

/// summary.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct EvalSummary {
    pub id: String,
    pub status: RunStatus,
    pub config: EvalConfig,
    /// Rows answered (all of them when completed).
    pub answered: u32,
    pub scores: Vec<MetricScore>,
    pub cost: EvalCost,
    #[ts(type = "number")]
    pub started_at: u64,
    #[ts(type = "number")]
    pub finished_at: u64,
    /// Why it stopped, when it failed.
    pub error: Option<ApiError>,
}

/// What an evaluation reports while it runs.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum EvalEvent {
    /// The same evaluation had finished before: its summary is returned as it was.
    Reused { id: String },
    /// Rows to answer, and how many an earlier attempt already answered.
    Started { id: String, total: u32, done: u32 },
    /// One more row answered and scored.
    Row {
        done: u32,
        total: u32,
        row: Box<EvalRowResult>,
    },
    /// The judge graded one more row.
    Judged { done: u32, total: u32 },
}

/// An evaluation loads its models through the app's own caches, so a model chat already holds
/// is not loaded twice.
pub use crate::chat::Caches;

/// Evaluates `request`, reporting each answered row to `on_event`; `cancel` stops it between
/// two tokens, keeping the rows answered so far for the next attempt.
pub fn run(
    ws: &Workspace,
    caches: &Caches,
    request: &EvalRequest,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(EvalEvent),
) -> Result<EvalSummary> {
    let rows = read_rows(request)?;
    let config = resolve(ws, request, &rows)?;
    let id = match &request.name {
        Some(name) => checked_id(name)?,
        None => new_id(&config),
    };
    let dir = ws.evals_dir().join(&id);
    let _lock = JobLock::acquire(&crate::jobs::eval_lock_path(&dir), JobKind::Eval, &id)?;
    if let Some(previous) = read_json::<EvalConfig>(&dir.join("config.json"))? {
        if previous != config {
            return Err(ApiError::new(
                ErrorCode::Exists,
                format!(
                    "evaluation `{id}` was made with other settings or data ({}); give another name",
                    dir.join("config.json").display()
                ),
            ));
        }
        if let Some(summary) = read_json::<EvalSummary>(&dir.join("summary.json"))? {
            if summary.status == RunStatus::Completed {
                on_event(EvalEvent::Reused { id });
                return Ok(summary);
            }
        }
    }
    write_atomic(&dir.join("config.json"), &json_bytes(&config)?)?;
    let started_at = now();
    let result = evaluate(ws, caches, &config, &rows, &dir, cancel, on_event);
    crate::release_freed_memory();
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => EvalSummary {
            id: id.clone(),
            status: RunStatus::Failed,
            answered: read_results(&dir)?.len() as u32,
            scores: Vec::new(),
            cost: EvalCost::empty(&config.device),
            config: config.clone(),
            started_at,
            finished_at: now(),
            error: Some(error),
        },
    };
    write_atomic(&dir.join("summary.json"), &json_bytes(&summary)?)?;
    match &summary.error {
        Some(error) => Err(error.clone()),
        None => Ok(summary),
    }
}

impl EvalCost {
    fn empty(device: &str) -> Self {
        EvalCost {
            setup_s: 0.0,
            wall_time_s: 0.0,
            latency_p50_s: 0.0,
            latency_p95_s: 0.0,
            prompt_tokens_mean: 0.0,
            extra_context_tokens_mean: 0.0,
            generated_tokens: 0,
            peak_rss_bytes: None,
            cpu_energy: None,
            gpu: None,
            device: device.to_string(),
            footprint: Footprint::default(),
        }
    }
}

fn evaluate(
    ws: &Workspace,
    caches: &Caches,
    config: &EvalConfig,
    rows: &[EvalRow],
    dir: &Path,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(EvalEvent),
) -> Result<EvalSummary> {
    let started_at = now();
    let clock = Instant::now();
    let mut results = read_results(dir)?;
    results.retain(|r| (r.index as usize) < rows.len());
    // Rewritten whole, so that a torn last line does not sit before the next append.
    write_results(dir, &results)?;
    let total = rows.len() as u32;
    on_event(EvalEvent::Started {
        id: dir_name(dir),
        total,
        done: results.len() as u32,
    });
    let device: tunelab_engine::DeviceChoice = config.device.parse()?;
    let base = ChatRequest {
        model: config.model.clone(),
        adapter: config.run.clone(),
        kb: config.kb.clone(),
        template: config.template.clone(),
        messages: Vec::new(),
        params: decoding(config.temperature, config.seed, config.max_tokens),
        device: Some(device),
    };
    // Loading, timed on its own: what a first question waits for.
    let setup = Instant::now();
    let model = crate::chat::model_for(ws, caches.models, &base)?;
    if let Some(kb) = &config.kb {
        let info = caches.knowledge.store(ws)?.settings(kb)?;
        caches.knowledge.embedder(ws, &info.embedder)?;
    }
    let setup_s = setup.elapsed().as_secs_f64();
    let footprint = footprint::of_config(ws, caches, config)?;
    let device_label = tunelab_engine::device_label(model.transformer.device());
    // On a GPU, what answering costs it: read twice a second.
    let gpu_recorder = tunelab_engine::cuda_index(model.transformer.device()).and_then(|i| {
        tunelab_hardware::GpuRecorder::start(i as u32, std::time::Duration::from_millis(500))
    });
    drop(model);
    let cpu_energy = tunelab_hardware::CpuEnergyRecorder::start(std::time::Duration::from_secs(1));
    let mut cancelled = false;
    for (index, row) in rows.iter().enumerate() {
        if results.iter().any(|r| r.index as usize == index) {
            continue;
        }
        if cancel.load(Ordering::Relaxed) {
            cancelled = true;
            break;
        }
        let Some(result) = answer(ws, caches, config, &base, index, row, cancel)? else {
            cancelled = true;
            break;
        };
        append_result(dir, &result)?;
        results.push(result);
        on_event(EvalEvent::Row {
            done: results.len() as u32,
            total,
            row: Box::new(results.last().cloned().expect("just pushed")),
        });
    }
    results.sort_by_key(|r| r.index);
    if !cancelled && config.metrics.contains(&Metric::Judge) {
        cancelled = !judge(ws, caches, config, &mut results, dir, cancel, on_event)?;
    }
    let answer_time = clock.elapsed().as_secs_f64();
    let cost = cost(
        &results,
        setup_s,
        answer_time,
        device_label,
        gpu_recorder.and_then(|r| r.finish()),
        cpu_energy.and_then(|r| r.finish()),
        footprint,
    );
    Ok(EvalSummary {
        id: dir_name(dir),
        status: match cancelled {
            true => RunStatus::Cancelled,
            false => RunStatus::Completed,
        },
        config: config.clone(),
        answered: results.len() as u32,
        scores: aggregate(config, &results),
        cost,
        started_at,
        finished_at: now(),
        error: None,
    })
}

/// How an evaluation decodes: no top-k, top-p or repetition penalty, so that a temperature of
/// 0 is plain greedy decoding; seeded.
fn decoding(temperature: f32, seed: u64, max_tokens: u32) -> GenerationParams {
    GenerationParams {
        temperature,
        top_k: None,
        top_p: None,
        repetition_penalty: 1.0,
        seed: Some(seed),
        max_tokens,
        stop: Vec::new(),
    }
}

/// Answers and scores one row; `None` when cancelled midway.
fn answer(
    ws: &Workspace,
    caches: &Caches,
    config: &EvalConfig,
    base: &ChatRequest,
    index: usize,
    row: &EvalRow,
    cancel: &AtomicBool,
) -> Result<Option<EvalRowResult>> {
    let request = ChatRequest {
        messages: row.messages.clone(),
        ..base.clone()
    };
    let wants = |m: Metric| config.metrics.contains(&m);
    let started = Instant::now();
    // The request the model is given: with a knowledge base, the passages go into it.
    let model = crate::chat::model_for(ws, caches.models, &request)?;
    let (grounded, summary) = match &config.kb {
        None => (None, None),
        Some(kb) => match knowledge::ground(ws, caches.knowledge, &model, &request, kb)? {
            Grounding::NotCovered(summary) => (None, Some(summary)),
            Grounding::Grounded { request, .. } => (Some(request), None),
        },
    };
    let asked = grounded.as_ref().unwrap_or(&request);
    // The prompt is made once: answered from, and scored against for perplexity.
    let prompt_ids = crate::chat::prompt_ids(ws, &model, asked)?;
    let summary = match summary {
        Some(summary) => summary,
        None => crate::chat::answer_prepared(&model, &prompt_ids, asked, cancel, &mut |_| {})?,
    };
    if summary.stop_reason == StopReason::Cancelled {
        return Ok(None);
    }
    let latency_s = started.elapsed().as_secs_f64();
    // The bare question through the chat template: what the configuration adds is the rest.
    let bare = crate::chat::engine_messages(&row.messages)
        .and_then(|m| Ok(model.render_chat(&m)?))
        .and_then(|p| Ok(model.tokenizer.encode(&p, false)?.len() as u32))?;
    let grounded_flag = config.kb.as_ref().map(|_| grounded.is_some());
    let extra_context_tokens = match grounded_flag {
        Some(false) => 0,
        _ => (prompt_ids.len() as u32).saturating_sub(bare),
    };
    let (reference_nll, reference_tokens) = match (&row.reference, wants(Metric::Perplexity)) {
        (Some(reference), true) => {
            let ids = model.tokenizer.encode(reference, false)?;
            let fits =
                prompt_ids.len() + ids.len() <= model.transformer.config.max_position_embeddings;
            match (ids.is_empty(), fits) {
                (false, true) => (
                    Some(model.transformer.continuation_nll(&prompt_ids, &ids)?),
                    Some(ids.len() as u32),
                ),
                _ => (None, None),
            }
        }
        _ => (None, None),
    };
    drop(model);
    let retrieved = match (&config.kb, row.sources.is_empty()) {
        (Some(kb), false) if wants(Metric::HitAt3) || wants(Metric::Mrr) => knowledge::search(
            ws,
            caches.knowledge,
            &SearchRequest {
                kb: kb.clone(),
                query: row.question().to_string(),
                options: SearchOptions {
                    k: 10,
                    ..Default::default()
                },
            },
        )?
        .into_iter()
        .map(|hit| hit.source)
        .collect(),
        _ => Vec::new(),
    };
    let mut result = EvalRowResult {
        index: index as u32,
        line: row.line as u32,
        question: row.question().to_string(),
        reference: row.reference.clone(),
        answer: summary.text.trim().to_string(),
        scores: BTreeMap::new(),
        reference_nll,
        reference_tokens,
        retrieved,
        grounded: grounded_flag,
        prompt_tokens: prompt_ids.len() as u32,
        extra_context_tokens,
        generated_tokens: summary.generated_tokens,
        latency_s,
        stop_reason: summary.stop_reason,
        judge_reply: None,
    };
    result.scores = score(config, row, &result)?;
    Ok(Some(result))
}
