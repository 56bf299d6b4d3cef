//! Each method's part of a comparison: prepare it (template, knowledge base or training run),
//! evaluate it on the task and on the forgetting probe, and gather what it cost.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use super::{CompareEvent, DataPoint, MethodCost, MethodId, MethodResult, Stage, Task};
use crate::error::{ApiError, ErrorCode, Result};
use crate::eval::{
    self, Caches, EvalEvent, EvalRequest, EvalSummary, Footprint, Metric, MetricScore,
};
use crate::knowledge::{self, CreateKnowledgeBase};
use crate::prompts::{self, TemplateRef};
use crate::train::{self, Method, RunConfig, RunStatus, RunSummary};
use crate::workspace::{json_bytes, read_json, write_atomic, Workspace};

/// The general questions every method is also asked, to see what it forgot.
const PROBE: &str = include_str!("probe.jsonl");

pub(super) struct Context<'a> {
    pub ws: &'a Workspace,
    pub caches: &'a Caches<'a>,
    pub task: &'a Task,
    pub dir: &'a Path,
    pub device: tunelab_engine::DeviceChoice,
    pub cancel: &'a AtomicBool,
}

type OnEvent<'e> = &'e mut (dyn FnMut(CompareEvent) + Send);

/// What a method needs before it can answer, and what getting it cost.
#[derive(Default)]
struct Prepared {
    run: Option<String>,
    kb: Option<String>,
    template: Option<TemplateRef>,
    cost: MethodCost,
}

/// The probe's questions, written into the comparison's folder for the evaluations to read.
pub(super) fn write_probe(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("probe.jsonl");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(PROBE) {
        write_atomic(&path, PROBE.as_bytes())?;
    }
    Ok(path)
}

/// The base model alone on the probe.
pub(super) fn base_probe(cx: &Context, probe: &Path) -> Result<MetricScore> {
    let summary = evaluate(cx, probe, &Prepared::default(), true, &mut |_, _| {})?;
    probe_score(&summary)
}

/// Prepares, evaluates and costs one method; a failure is recorded in its result, so that the
/// other methods still run.
pub(super) fn method(
    cx: &Context,
    method: MethodId,
    probe: &Path,
    base_probe: Option<&MetricScore>,
    on_event: OnEvent,
) -> MethodResult {
    let mut result = MethodResult {
        method,
        name: method.name().into(),
        what: method.what().into(),
        good_for: method.good_for().into(),
        status: RunStatus::Running,
        error: None,
        run: None,
        kb: None,
        template: None,
        eval: None,
        scores: Vec::new(),
        probe_eval: None,
        probe: None,
        probe_change: None,
        cost: MethodCost::default(),
        data_curve: Vec::new(),
    };
    match prepare_and_evaluate(cx, method, probe, base_probe, &mut result, on_event) {
        Ok(status) => result.status = status,
        Err(error) => {
            result.status = RunStatus::Failed;
            result.error = Some(error);
        }
    }
    result
}

fn prepare_and_evaluate(
    cx: &Context,
    method: MethodId,
    probe: &Path,
    base_probe: Option<&MetricScore>,
    result: &mut MethodResult,
    on_event: OnEvent,
) -> Result<RunStatus> {
    let prepared = match prepare(cx, method, on_event) {
        // Indexing stopped part-way leaves the knowledge base as it was: a cancel, not a failure.
        Err(e)
            if e.code == ErrorCode::Cancelled
                && cx.cancel.load(std::sync::atomic::Ordering::Relaxed) =>
        {
            return Ok(RunStatus::Cancelled)
        }
        prepared => prepared?,
    };
    result.run = prepared.run.clone();
    result.kb = prepared.kb.clone();
    result.template = prepared
        .template
        .as_ref()
        .map(|t| format!("{}@{}", t.name, t.version.unwrap_or(1)));
    result.cost = prepared.cost.clone();
    if cx.cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(RunStatus::Cancelled);
    }
    on_event(CompareEvent::stage(method, Stage::Evaluating));
    let task_eval = evaluate(cx, &cx.task.eval, &prepared, false, &mut |done, total| {
        on_event(CompareEvent::Progress {
            method,
            done,
            total,
        })
    })?;
    result.eval = Some(task_eval.id.clone());
    result.scores = task_eval.scores.clone();
    result.cost.eval = Some(task_eval.cost.clone());
    if task_eval.status != RunStatus::Completed {
        return Ok(task_eval.status);
    }
    on_event(CompareEvent::stage(method, Stage::Probing));
    let probed = evaluate(cx, probe, &prepared, true, &mut |done, total| {
        on_event(CompareEvent::Progress {
            method,
            done,
            total,
        })
    })?;
    result.probe_eval = Some(probed.id.clone());
    if probed.status != RunStatus::Completed {
        return Ok(probed.status);
    }
    let score = probe_score(&probed)?;
    result.probe_change = base_probe.map(|base| score.estimate.value - base.estimate.value);
    result.probe = Some(score);
    Ok(RunStatus::Completed)
}

fn prepare(cx: &Context, method: MethodId, on_event: OnEvent) -> Result<Prepared> {
    let stage = match method {
        MethodId::Prompt => Stage::Preparing,
        MethodId::Rag => Stage::Indexing,
        _ => Stage::Training,
    };
    on_event(CompareEvent::stage(method, stage));
    match method {
        MethodId::Prompt => prepare_template(cx),
        MethodId::Rag => prepare_knowledge(cx),
        _ => prepare_run(cx, method, on_event),
    }
}

/// Prompt engineering: the task's template, saved as a new version only when it changed.
fn prepare_template(cx: &Context) -> Result<Prepared> {
    let name = format!("compare-{}", cx.task.name);
    let latest = prompts::load(cx.ws, &name, None).ok();
    let saved = match latest {
        Some(saved) if saved.template == cx.task.template => saved,
        _ => prompts::save(
            cx.ws,
            &name,
            "from the comparison's task file",
            &cx.task.template,
        )?,
    };
    Ok(Prepared {
        template: Some(TemplateRef {
            name,
            version: Some(saved.version),
        }),
        cost: MethodCost {
            footprint: Footprint::of_template(&saved.template),
            ..MethodCost::default()
        },
        ..Prepared::default()
    })
}

/// What indexing the documents cost, kept for a rerun that finds nothing new to index.
#[derive(Serialize, Deserialize)]
struct IndexCost {
    seconds: f64,
    peak_rss_bytes: Option<u64>,
    energy_j: Option<f64>,
}

/// RAG: the task's documents in a knowledge base of its own (unchanged files are skipped).
fn prepare_knowledge(cx: &Context) -> Result<Prepared> {
    let name = format!("compare-{}", cx.task.name);
    let cache = cx.caches.knowledge;
    let exists = knowledge::list(cx.ws, cache)?
        .iter()
        .any(|kb| kb.name == name);
    if !exists {
        knowledge::create(
            cx.ws,
            cache,
            &CreateKnowledgeBase {
                name: name.clone(),
                embedder: None,
                chunking: None,
            },
        )?;
    }
    let cost_file = cx.dir.join("rag.json");
    tunelab_hardware::reset_peak_rss();
    let energy = tunelab_hardware::CpuEnergyRecorder::start(std::time::Duration::from_secs(1));
    let added = knowledge::add(
        cx.ws,
        cache,
        &name,
        std::slice::from_ref(&cx.task.documents),
        cx.cancel,
        &mut |_| {},
    )?;
    if let Some(failed) = added.failed.first() {
        return Err(ApiError::invalid(format!(
            "the documents could not all be indexed: {}: {}",
            failed.path, failed.error
        )));
    }
    let measured = IndexCost {
        seconds: added.seconds,
        peak_rss_bytes: tunelab_hardware::peak_rss_bytes(),
        energy_j: energy.and_then(|r| r.finish()).map(|e| e.joules),
    };
    let indexed_now = !(added.added.is_empty() && added.replaced.is_empty());
    let cost = match read_json::<IndexCost>(&cost_file)? {
        Some(earlier) if !indexed_now => earlier,
        _ => {
            write_atomic(&cost_file, &json_bytes(&measured)?)?;
            measured
        }
    };
    let footprint = Footprint::of_knowledge(&*cache.store(cx.ws)?, &name)?;
    Ok(Prepared {
        kb: Some(name),
        cost: MethodCost {
            prepare_s: cost.seconds,
            prepare_peak_rss_bytes: cost.peak_rss_bytes,
            prepare_energy_j: cost.energy_j,
            energy_source: cost.energy_j.map(|_| "cpu (RAPL)".to_string()),
            footprint,
            ..MethodCost::default()
        },
        ..Prepared::default()
    })
}

/// The training run a trained method makes: the method's defaults, the task's data (or the
/// share `fraction` of its examples) and the budget's steps.
fn run_config(cx: &Context, method: MethodId, fraction: f64) -> Result<RunConfig> {
    let task = cx.task;
    let budget = &task.budget;
    let (kind, steps) = match method {
        MethodId::SoftPrompt => (Method::SoftPrompt, budget.soft_prompt_steps),
        MethodId::Lora if task.qlora => (Method::Qlora, budget.lora_steps),
        MethodId::Lora => (Method::Lora, budget.lora_steps),
        MethodId::Full => (Method::Full, budget.full_steps),
        MethodId::Pretrain => (Method::Pretrain, budget.pretrain_steps),
        MethodId::Prompt | MethodId::Rag => {
            return Err(ApiError::new(
                ErrorCode::Internal,
                format!("{} does not train", method.as_str()),
            ))
        }
    };
    let mut config = RunConfig::for_method(kind);
    config.model = task.model.clone();
    config.data = task.train.clone();
    config.seq_len = budget.seq_len;
    config.device = cx.device;
    config.train_fraction = fraction;
    config.train.max_steps = steps;
    config.train.batch_size = budget.batch_size;
    config.train.eval_every = 0;
    config.train.save_every = (steps / 4).max(10);
    if kind == Method::Pretrain {
        config.data = write_corpus(cx)?;
        config.pretrain.from_scratch = !task.continued_pretraining;
        config.pretrain.preset = train::Preset::parse(&budget.pretrain_size)?;
        config.pretrain.context_length = budget.seq_len;
        // Text is packed into full blocks; a small corpus keeps most of them for training.
        config.val_fraction = 0.05;
        config.train.lr = 3e-3;
    }
    Ok(config)
}

/// Trains (or resumes, or reuses) the method's run.
fn prepare_run(cx: &Context, method: MethodId, on_event: OnEvent) -> Result<Prepared> {
    let (id, summary) = train_run(cx, method, 1.0, on_event)?;
    Ok(Prepared {
        cost: run_cost(&summary),
        // A run stopped before its last step has no result to answer with yet.
        run: (summary.status == RunStatus::Completed).then_some(id),
        ..Prepared::default()
    })
}

/// Trains (or resumes, or reuses) the method's run on the share `fraction` of the examples:
/// the run's id and summary.
fn train_run(
    cx: &Context,
    method: MethodId,
    fraction: f64,
    on_event: OnEvent,
) -> Result<(String, RunSummary)> {
    let config = run_config(cx, method, fraction)?;
    let id = crate::workspace::folder_safe(&format!(
        "compare-{}-{}-{}",
        cx.task.name,
        method.as_str(),
        crate::workspace::short_digest(&config)
    ));
    let run_dir = cx.ws.runs_dir().join(&id);
    let done = train::show(&run_dir)
        .ok()
        .and_then(|(_, summary)| summary)
        .filter(|s| s.status == RunStatus::Completed);
    let summary = match done {
        Some(summary) => summary,
        None => {
            // The models kept for answering go first: the run's memory check and its peak
            // memory are then its own.
            cx.caches.models.release();
            tunelab_hardware::reset_peak_rss();
            let mut sink = StepSink { method, on_event };
            train::run(cx.ws, &config, &run_dir, &mut sink, cx.cancel)?
        }
    };
    Ok((id, summary))
}

/// The point of `result`'s data curve at the whole training set: its own run and scores.
pub(super) fn whole_set_point(cx: &Context, result: &MethodResult) -> DataPoint {
    let summary = result
        .run
        .as_ref()
        .and_then(|run| train::show(&cx.ws.runs_dir().join(run)).ok())
        .and_then(|(_, summary)| summary);
    DataPoint {
        fraction: 1.0,
        rows: summary.map_or(0, |s| s.train_examples as u64),
        status: result.status,
        error: result.error.clone(),
        run: result.run.clone(),
        eval: result.eval.clone(),
        scores: result.scores.clone(),
        prepare_s: result.cost.prepare_s,
    }
}

/// A trained method again on the share `fraction` of the training examples, with the same
/// steps, answering the task's questions (not the probe); a failure is recorded in the point.
pub(super) fn data_point(
    cx: &Context,
    method: MethodId,
    fraction: f64,
    on_event: OnEvent,
) -> DataPoint {
    let mut point = DataPoint {
        fraction,
        rows: 0,
        status: RunStatus::Running,
        error: None,
        run: None,
        eval: None,
        scores: Vec::new(),
        prepare_s: 0.0,
    };
    match train_and_score(cx, method, &mut point, on_event) {
        Ok(status) => point.status = status,
        Err(error) => {
            point.status = RunStatus::Failed;
            point.error = Some(error);
        }
    }
    point
}

fn train_and_score(
    cx: &Context,
    method: MethodId,
    point: &mut DataPoint,
    on_event: OnEvent,
) -> Result<RunStatus> {
    let share = format!("{:.0}% of the examples", point.fraction * 100.0);
    on_event(CompareEvent::Stage {
        method,
        stage: Stage::Training,
        label: format!("training on {share}"),
    });
    let (id, summary) = train_run(cx, method, point.fraction, on_event)?;
    point.rows = summary.train_examples as u64;
    point.prepare_s = summary.wall_time_s;
    if summary.status != RunStatus::Completed {
        return Ok(summary.status);
    }
    point.run = Some(id);
    on_event(CompareEvent::Stage {
        method,
        stage: Stage::Evaluating,
        label: format!("answering the evaluation, trained on {share}"),
    });
    let prepared = Prepared {
        run: point.run.clone(),
        ..Prepared::default()
    };
    let summary = evaluate(cx, &cx.task.eval, &prepared, false, &mut |done, total| {
        on_event(CompareEvent::Progress {
            method,
            done,
            total,
        })
    })?;
    point.eval = Some(summary.id.clone());
    point.scores = summary.scores;
    Ok(summary.status)
}

fn run_cost(summary: &RunSummary) -> MethodCost {
    let gpu_energy = summary.gpu.as_ref().and_then(|g| g.energy_joules);
    let cpu_energy = summary.cpu_energy.as_ref().map(|e| e.joules);
    MethodCost {
        prepare_s: summary.wall_time_s,
        prepare_peak_rss_bytes: summary.peak_rss_bytes,
        prepare_gpu_peak_bytes: summary.gpu.as_ref().map(|g| g.peak_memory_bytes),
        prepare_energy_j: gpu_energy.or(cpu_energy),
        energy_source: match (gpu_energy, cpu_energy) {
            (Some(_), _) => Some("gpu (NVML)".into()),
            (None, Some(_)) => Some("cpu (RAPL)".into()),
            (None, None) => None,
        },
        footprint: Footprint::of_run(summary),
        eval: None,
    }
}

/// Reports training steps as progress.
struct StepSink<'e> {
    method: MethodId,
    on_event: OnEvent<'e>,
}

impl train::ProgressSink for StepSink<'_> {
    fn step(&mut self, metrics: &train::StepMetrics) {
        (self.on_event)(CompareEvent::Progress {
            method: self.method,
            done: metrics.step,
            total: metrics.total_steps,
        });
    }
    fn eval(&mut self, _metrics: &train::EvalMetrics) {}
}

/// Pretraining's text: every document's text, then the training examples' messages, one
/// paragraph each (corpus.txt in the comparison's folder).
fn write_corpus(cx: &Context) -> Result<PathBuf> {
    let mut paragraphs = Vec::new();
    let tunelab_knowledge::Collected { files, unreadable } =
        tunelab_knowledge::collect_files(std::slice::from_ref(&cx.task.documents))?;
    if let Some((path, reason)) = unreadable.first() {
        return Err(ApiError::io(
            path,
            std::io::Error::other(format!("{reason}; the corpus needs every document")),
        ));
    }
    for file in files {
        let document = tunelab_knowledge::read_document(&file)?;
        paragraphs.extend(document.sections.into_iter().map(|s| s.text));
    }
    let dataset = tunelab_train::read_dataset(&cx.task.train, &Default::default())?;
    for example in dataset.examples {
        match example.content {
            tunelab_train::ExampleContent::Chat(messages) => {
                paragraphs.extend(messages.into_iter().map(|m| m.content))
            }
            tunelab_train::ExampleContent::Text(text) => paragraphs.push(text),
        }
    }
    let text: Vec<String> = paragraphs
        .iter()
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect();
    let path = cx.dir.join("corpus.txt");
    let body = text.join("\n\n") + "\n";
    if std::fs::read_to_string(&path).ok().as_deref() != Some(body.as_str()) {
        write_atomic(&path, body.as_bytes())?;
    }
    Ok(path)
}

/// Evaluates what `prepared` gives the base model on `data`: the task's questions with every
/// metric that applies, or the probe on contains-all alone.
fn evaluate(
    cx: &Context,
    data: &Path,
    prepared: &Prepared,
    probe: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<EvalSummary> {
    let budget = &cx.task.budget;
    let request = EvalRequest {
        data: data.to_path_buf(),
        model: Some(cx.task.model.clone()),
        run: prepared.run.clone(),
        kb: prepared.kb.clone(),
        template: prepared.template.clone(),
        metrics: match probe {
            true => vec![Metric::ContainsAll],
            false => Vec::new(),
        },
        max_tokens: budget.max_tokens,
        limit: match probe {
            true => budget.probe_limit,
            false => budget.eval_limit,
        },
        device: Some(cx.device),
        ..EvalRequest::default()
    };
    tunelab_hardware::reset_peak_rss();
    eval::run(cx.ws, cx.caches, &request, cx.cancel, &mut |event| {
        if let EvalEvent::Row { done, total, .. } = event {
            progress(u64::from(done), u64::from(total));
        }
    })
}

fn probe_score(summary: &EvalSummary) -> Result<MetricScore> {
    summary
        .scores
        .iter()
        .find(|s| s.metric == Metric::ContainsAll)
        .cloned()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the probe has no contains-all score"))
}
