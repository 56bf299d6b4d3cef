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

pub mod data;
pub mod metrics;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::chat::{ChatMessage, ChatRequest, ChatRole, GenerationParams, ModelCache, StopReason};
use crate::error::{ApiError, Result};
use crate::jobs::{JobKind, JobLock};
use crate::knowledge::{self, Grounding, KnowledgeCache, SearchOptions, SearchRequest};
use crate::prompts::TemplateRef;
use crate::train::{now, RunStatus};
use crate::workspace::{write_atomic, Workspace};
pub use data::EvalRow;
pub use metrics::{Estimate, Metric};

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

/// The caches an evaluation loads its models through (the app's own, so a model chat already
/// holds is not loaded twice).
pub struct Caches<'a> {
    pub models: &'a ModelCache,
    pub knowledge: &'a KnowledgeCache,
}

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
                "exists",
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

fn read_rows(request: &EvalRequest) -> Result<Vec<EvalRow>> {
    let mut rows = data::read(&request.data)?;
    if let Some(limit) = request.limit {
        rows.truncate(limit.max(1) as usize);
    }
    Ok(rows)
}

/// The request with its model, metrics and data pinned down, and checked against each other.
fn resolve(ws: &Workspace, request: &EvalRequest, rows: &[EvalRow]) -> Result<EvalConfig> {
    let data = std::path::absolute(&request.data).map_err(|e| ApiError::io(&request.data, e))?;
    let bytes = std::fs::read(&data).map_err(|e| ApiError::io(&data, e))?;
    let data_sha256 = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    // A run answers with its own base model unless told otherwise.
    let run = match &request.run {
        Some(run) => {
            let adapter = crate::train::resolve_adapter(ws, run)?;
            let run_dir = [adapter.parent(), Some(adapter.as_path())]
                .into_iter()
                .flatten()
                .find(|d| d.join("config.json").is_file() && d.join("summary.json").is_file());
            Some((run.clone(), run_dir.map(Path::to_path_buf)))
        }
        None => None,
    };
    let run_model = run
        .as_ref()
        .and_then(|(_, dir)| dir.as_ref())
        .and_then(|dir| crate::train::show(dir).ok())
        .map(|(config, _)| config.model);
    let model = request
        .model
        .clone()
        .or(run_model)
        .unwrap_or_else(|| crate::DEFAULT_MODEL.to_string());
    crate::models::resolve(ws, &model)?;
    if let Some(judge) = &request.judge {
        crate::models::resolve(ws, judge)?;
    }
    let metrics = choose_metrics(request, rows)?;
    let device = crate::settings::device(ws, request.device)?;
    Ok(EvalConfig {
        data,
        data_sha256,
        rows: rows.len() as u32,
        model,
        run: run.map(|(run, _)| run),
        kb: request.kb.clone(),
        template: request.template.clone(),
        metrics,
        judge: request.judge.clone(),
        max_tokens: request.max_tokens.max(1),
        seed: request.seed,
        temperature: request.temperature.max(0.0),
        device: device.to_string(),
    })
}

/// The metrics asked for, or every one that applies; a metric asked for that cannot apply is
/// an error naming what it needs.
fn choose_metrics(request: &EvalRequest, rows: &[EvalRow]) -> Result<Vec<Metric>> {
    let has = |f: &dyn Fn(&EvalRow) -> bool| rows.iter().any(f);
    let needs = |metric: Metric| -> Option<&'static str> {
        match metric {
            Metric::ExactMatch | Metric::TokenF1 | Metric::RougeL | Metric::Perplexity
                if !has(&|r| r.reference.is_some()) =>
            {
                Some("rows with a reference answer")
            }
            Metric::ContainsAll if !has(&|r| !r.must_contain.is_empty()) => {
                Some("rows with `must_contain`")
            }
            Metric::Regex if !has(&|r| r.regex.is_some()) => Some("rows with `regex`"),
            Metric::Json if !has(&|r| r.json) => Some("rows with `\"json\": true`"),
            Metric::HitAt3 | Metric::Mrr if request.kb.is_none() => Some("a knowledge base (--kb)"),
            Metric::HitAt3 | Metric::Mrr if !has(&|r| !r.sources.is_empty()) => {
                Some("rows with `source`")
            }
            Metric::Judge if request.judge.is_none() => Some("a judge model (--judge)"),
            Metric::Judge if !has(&|r| r.reference.is_some()) => {
                Some("rows with a reference answer")
            }
            _ => None,
        }
    };
    if request.metrics.is_empty() {
        return Ok(Metric::ALL
            .into_iter()
            .filter(|m| needs(*m).is_none())
            .collect());
    }
    let mut chosen = request.metrics.clone();
    chosen.sort();
    chosen.dedup();
    for m in &chosen {
        if let Some(what) = needs(*m) {
            return Err(ApiError::invalid(format!(
                "metric `{}` needs {what}",
                m.as_str()
            )));
        }
    }
    Ok(chosen)
}

/// An id given by the user: one folder name.
fn checked_id(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 120
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    match ok {
        true => Ok(name.to_string()),
        false => Err(ApiError::invalid(format!(
            "evaluation name `{name}`: use letters, digits, '-', '_', '.' or '@', not starting with '.'"
        ))),
    }
}

/// The data file's stem, what answers, and a digest of the whole configuration: the same
/// command gives the same id, so running it again reuses or resumes its evaluation.
fn new_id(config: &EvalConfig) -> String {
    use sha2::Digest;
    let stem = config
        .data
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "eval".into());
    let who = config
        .run
        .as_deref()
        .and_then(|r| Path::new(r).file_name())
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|| config.model.clone());
    let digest = sha2::Sha256::digest(serde_json::to_vec(config).unwrap_or_default());
    let digest: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{stem}-{who}-{digest}")
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                true => c,
                false => '-',
            },
        )
        .collect()
}

fn json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| ApiError::new("internal", e.to_string()))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ApiError::invalid(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApiError::io(path, e)),
    }
}

/// The rows answered so far. A last line cut short by a crash is left out (and is answered
/// again).
fn read_results(dir: &Path) -> Result<Vec<EvalRowResult>> {
    let path = dir.join("rows.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ApiError::io(&path, e)),
    };
    Ok(text
        .lines()
        .map_while(|line| serde_json::from_str(line).ok())
        .collect())
}

fn write_results(dir: &Path, results: &[EvalRowResult]) -> Result<()> {
    let mut bytes = Vec::new();
    for r in results {
        serde_json::to_writer(&mut bytes, r)
            .map_err(|e| ApiError::new("internal", e.to_string()))?;
        bytes.push(b'\n');
    }
    write_atomic(&dir.join("rows.jsonl"), &bytes)
}

/// Appends one answered row, flushed to disk before the next is started.
fn append_result(dir: &Path, result: &EvalRowResult) -> Result<()> {
    let path = dir.join("rows.jsonl");
    let mut line =
        serde_json::to_vec(result).map_err(|e| ApiError::new("internal", e.to_string()))?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| ApiError::io(&path, e))?;
    file.write_all(&line)
        .and_then(|_| file.sync_data())
        .map_err(|e| ApiError::io(&path, e))
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
        params: GenerationParams {
            temperature: config.temperature,
            top_k: None,
            top_p: None,
            repetition_penalty: 1.0,
            seed: Some(config.seed),
            max_tokens: config.max_tokens,
            stop: Vec::new(),
        },
        device: Some(device),
    };
    // Loading, timed on its own: what a first question waits for.
    let setup = Instant::now();
    let adapter = config
        .run
        .as_deref()
        .map(|r| crate::train::resolve_adapter(ws, r))
        .transpose()?;
    let model =
        caches
            .models
            .get_with_adapter(ws, &config.model, adapter.as_deref(), Some(device))?;
    if let Some(kb) = &config.kb {
        let info = caches.knowledge.store(ws)?.settings(kb)?;
        caches.knowledge.embedder(ws, &info.embedder)?;
    }
    let setup_s = setup.elapsed().as_secs_f64();
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

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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
    let (grounded, summary) = match &config.kb {
        None => (None, None),
        Some(kb) => match knowledge::ground(ws, caches.models, caches.knowledge, &request, kb)? {
            Grounding::NotCovered(summary) => (None, Some(summary)),
            Grounding::Grounded { request, .. } => (Some(request), None),
        },
    };
    let asked = grounded.as_ref().unwrap_or(&request);
    let summary = match summary {
        Some(summary) => summary,
        None => crate::chat::chat(ws, caches.models, asked, cancel, &mut |_| {})?,
    };
    if summary.stop_reason == StopReason::Cancelled {
        return Ok(None);
    }
    let latency_s = started.elapsed().as_secs_f64();
    let (model, prompt_ids) = crate::chat::prepare(ws, caches.models, asked)?;
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

/// The row's scores on every metric of the configuration that applies to it.
fn score(
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
fn judge(
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
            params: GenerationParams {
                temperature: 0.0,
                top_k: None,
                top_p: None,
                repetition_penalty: 1.0,
                seed: Some(config.seed),
                max_tokens: 8,
                stop: Vec::new(),
            },
            device: config.device.parse().ok(),
        };
        let reply = crate::chat::chat(ws, caches.models, &request, cancel, &mut |_| {})?;
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
fn aggregate(config: &EvalConfig, results: &[EvalRowResult]) -> Vec<MetricScore> {
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

fn cost(
    results: &[EvalRowResult],
    setup_s: f64,
    wall_time_s: f64,
    device: String,
    gpu: Option<tunelab_hardware::GpuCost>,
    cpu_energy: Option<tunelab_hardware::CpuEnergy>,
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
    }
}

/// An evaluation of the workspace, as lists show it.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct EvalListItem {
    pub id: String,
    pub status: RunStatus,
    pub config: EvalConfig,
    /// Null while it has not ended (running or cut off).
    pub summary: Option<EvalSummary>,
    /// Rows answered so far.
    pub answered: u32,
}

/// Every evaluation of the workspace, newest first.
pub fn list(ws: &Workspace) -> Result<Vec<EvalListItem>> {
    let mut items = Vec::new();
    let entries = match std::fs::read_dir(ws.evals_dir()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(items),
        Err(e) => return Err(ApiError::io(&ws.evals_dir(), e)),
    };
    for entry in entries.flatten() {
        if let Ok(item) = item(&entry.path()) {
            items.push(item);
        }
    }
    items.sort_by(|a, b| b.started_at().cmp(&a.started_at()).then(a.id.cmp(&b.id)));
    Ok(items)
}

impl EvalListItem {
    fn started_at(&self) -> u64 {
        self.summary.as_ref().map_or(u64::MAX, |s| s.started_at)
    }
}

fn item(dir: &Path) -> Result<EvalListItem> {
    let config = read_json::<EvalConfig>(&dir.join("config.json"))?.ok_or_else(|| {
        ApiError::not_found(format!(
            "{} is not an evaluation folder (no config.json)",
            dir.display()
        ))
    })?;
    let summary = read_json::<EvalSummary>(&dir.join("summary.json"))?;
    let running = crate::jobs::holder(&crate::jobs::eval_lock_path(dir)).is_some();
    let status = match (&summary, running) {
        (_, true) => RunStatus::Running,
        (Some(s), false) => s.status,
        (None, false) => RunStatus::Interrupted,
    };
    Ok(EvalListItem {
        id: dir_name(dir),
        status,
        config,
        answered: read_results(dir)?.len() as u32,
        summary: match running {
            true => None,
            false => summary,
        },
    })
}

/// One evaluation with its rows.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct EvalDetail {
    #[serde(flatten)]
    pub item: EvalListItem,
    pub rows: Vec<EvalRowResult>,
}

/// The evaluation `id` (or the folder at that path) with every answered row.
pub fn show(ws: &Workspace, id: &str) -> Result<EvalDetail> {
    let dir = [ws.evals_dir().join(id), PathBuf::from(id)]
        .into_iter()
        .find(|d| d.join("config.json").is_file())
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no evaluation `{id}`; `tunelab eval list` lists them"
            ))
        })?;
    let mut rows = read_results(&dir)?;
    rows.sort_by_key(|r| r.index);
    Ok(EvalDetail {
        item: item(&dir)?,
        rows,
    })
}
