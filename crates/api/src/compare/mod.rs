//! Comparisons: the six methods run on one task, on this machine, and measured the same way.
//!
//! A task (a TOML file, see [`task`]) names a base model, training examples, an evaluation
//! file, a documents folder and a prompt template. [`run`] then, for each method:
//! 1. prepares it: saves the template (prompt engineering), indexes the documents (RAG), or
//!    trains a run (soft prompt, LoRA or QLoRA, full fine-tuning, pretraining);
//! 2. evaluates it on the task's evaluation file and on a small forgetting probe of general
//!    questions shipped with Tunelab (see [`crate::eval`]);
//! 3. records what it cost.
//!
//! Every part is a job of its own with a folder named from its configuration (a run under
//! `runs/`, an evaluation under `evals/`), so a comparison run again reuses what finished and
//! resumes what was cut off. The comparison's own folder, `compare/<task name>/`, holds:
//! - `task.json`: the task as resolved (absolute paths, the budget);
//! - `report.json`: the report, rewritten after each method;
//! - `probe.jsonl`, `corpus.txt`: the probe questions and the pretraining text it wrote;
//! - `rag.json`: what indexing the documents cost, kept for reruns that index nothing new;
//! - `.lock`: held while it runs.

mod examples;
mod guide;
mod report;
mod steps;
pub mod task;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::error::{ApiError, ErrorCode, Result};
use crate::eval::{Caches, EvalCost, Footprint, MetricScore};
use crate::jobs::{JobKind, JobLock};
use crate::train::{now, RunStatus};
use crate::workspace::{json_bytes, read_json, write_atomic, Workspace};
pub use examples::{examples, ComparedExample, ComparedExamples, MethodAnswer};
pub use guide::MethodId;
pub use report::{data_curve_line, render_csv, render_html};
pub use task::{Budget, Preset, Task};

/// What to compare.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct CompareRequest {
    /// The task file (TOML).
    #[ts(type = "string")]
    pub task: PathBuf,
    #[serde(default)]
    pub preset: Preset,
    /// The methods to run; all six when empty.
    #[serde(default)]
    pub methods: Vec<MethodId>,
    #[serde(default)]
    #[ts(optional, type = "string")]
    pub device: Option<tunelab_engine::DeviceChoice>,
}

/// The comparison's report (report.json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct CompareReport {
    /// The task's name: the comparison's folder under `compare/`.
    pub id: String,
    /// Completed when every method finished; otherwise how the last one ended.
    pub status: RunStatus,
    pub task: Task,
    pub device: String,
    /// The base model on the forgetting probe, with nothing added: what each method's
    /// `probe_change` is measured against.
    pub base_probe: Option<MetricScore>,
    pub methods: Vec<MethodResult>,
    /// For each trained method: after how many answered questions its one-time training has
    /// cost less time than RAG's longer prompts.
    pub break_even: Vec<BreakEven>,
    #[ts(type = "number")]
    pub started_at: u64,
    #[ts(type = "number")]
    pub finished_at: u64,
}

/// One method's row of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct MethodResult {
    pub method: MethodId,
    pub name: String,
    pub what: String,
    pub good_for: String,
    pub status: RunStatus,
    /// Why it stopped, when it failed.
    pub error: Option<ApiError>,
    /// The training run (soft prompt, LoRA, full fine-tuning, pretraining).
    pub run: Option<String>,
    /// The knowledge base (RAG).
    pub kb: Option<String>,
    /// The saved template (prompt engineering), as `name@version`.
    pub template: Option<String>,
    /// The evaluation on the task's questions, and its scores.
    pub eval: Option<String>,
    pub scores: Vec<MetricScore>,
    /// The forgetting probe: its evaluation, score, and change from the bare base model (a
    /// negative change is general knowledge lost).
    pub probe_eval: Option<String>,
    pub probe: Option<MetricScore>,
    pub probe_change: Option<f64>,
    pub cost: MethodCost,
    /// Quality against the amount of data (a trained method, when the budget has
    /// `data_fractions`): the method trained again on shares of its examples with the same
    /// steps, smallest share first, the whole set last.
    #[serde(default)]
    pub data_curve: Vec<DataPoint>,
}

/// A trained method on a share of the training examples, scored on the task's questions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct DataPoint {
    /// The share of the training examples, above 0 up to 1.
    pub fraction: f64,
    /// Examples it trained on (validation ones not counted).
    #[ts(type = "number")]
    pub rows: u64,
    pub status: RunStatus,
    pub error: Option<ApiError>,
    pub run: Option<String>,
    pub eval: Option<String>,
    pub scores: Vec<MetricScore>,
    /// Training time.
    pub prepare_s: f64,
}

/// What a method cost: once to prepare, then per question.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct MethodCost {
    /// Training, indexing or saving the template.
    pub prepare_s: f64,
    /// Peak resident memory while preparing (training or indexing).
    #[ts(type = "number | null")]
    pub prepare_peak_rss_bytes: Option<u64>,
    /// Peak GPU memory while preparing, on a GPU.
    #[ts(type = "number | null")]
    pub prepare_gpu_peak_bytes: Option<u64>,
    /// Energy while preparing: the GPU's counter on a GPU, else the CPU packages' (RAPL, which
    /// counts everything running on them).
    pub prepare_energy_j: Option<f64>,
    pub energy_source: Option<String>,
    /// What the method adds to the base model: trainable parameters, bytes on disk (adapter,
    /// model, soft prompt, template or index) and the data behind it (examples trained on or
    /// documents indexed, tokens trained on).
    #[serde(flatten)]
    pub footprint: Footprint,
    /// Answering the evaluation: latency, extra prompt tokens, memory, energy.
    pub eval: Option<EvalCost>,
}

/// When a trained method's one-time cost is paid back by its shorter prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct BreakEven {
    pub method: MethodId,
    /// Seconds RAG spends on each question beyond what this method spends.
    pub saved_per_query_s: f64,
    /// Questions after which the training time is paid back; null when RAG is not slower
    /// per question (it never is paid back in time).
    #[ts(type = "number | null")]
    pub queries: Option<u64>,
}

/// What a comparison reports while it runs.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum CompareEvent {
    /// The task is read and its comparison locked: its id and the methods it will run.
    Started { id: String, methods: Vec<MethodId> },
    /// A method moves to a stage; `label` says it in words ("answering the evaluation").
    Stage {
        method: MethodId,
        stage: Stage,
        label: String,
    },
    /// Progress within the stage: training steps or answered questions.
    Progress {
        method: MethodId,
        #[ts(type = "number")]
        done: u64,
        #[ts(type = "number")]
        total: u64,
    },
    /// A method is done (or failed, or was cancelled); its row of the report.
    Finished { result: Box<MethodResult> },
    /// A point of a trained method's data curve is done (or failed, or was cancelled).
    DataPoint {
        method: MethodId,
        point: Box<DataPoint>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "kebab-case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum Stage {
    Preparing,
    Training,
    Indexing,
    Evaluating,
    Probing,
}

impl CompareEvent {
    fn stage(method: MethodId, stage: Stage) -> Self {
        CompareEvent::Stage {
            method,
            stage,
            label: stage.as_str().to_string(),
        }
    }
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Preparing => "saving the template",
            Stage::Training => "training",
            Stage::Indexing => "indexing the documents",
            Stage::Evaluating => "answering the evaluation",
            Stage::Probing => "answering the forgetting probe",
        }
    }
}

/// Runs the comparison `request` names, reporting to `on_event`; `cancel` stops it at the next
/// step or token, keeping everything finished for the next attempt. One comparison of a task
/// runs at a time.
pub fn run(
    ws: &Workspace,
    caches: &Caches,
    request: &CompareRequest,
    cancel: &AtomicBool,
    on_event: &mut (dyn FnMut(CompareEvent) + Send),
) -> Result<CompareReport> {
    let task = task::read(&request.task, request.preset)?;
    let dir = ws.comparisons_dir().join(&task.name);
    let _lock = JobLock::acquire(
        &crate::jobs::compare_lock_path(&dir),
        JobKind::Compare,
        &task.name,
    )?;
    write_atomic(&dir.join("task.json"), &json_bytes(&task)?)?;
    let device = crate::settings::device(ws, request.device)?;
    let methods: Vec<MethodId> = match request.methods.is_empty() {
        true => MethodId::ALL.to_vec(),
        false => MethodId::ALL
            .into_iter()
            .filter(|m| request.methods.contains(m))
            .collect(),
    };
    let mut report = CompareReport {
        id: task.name.clone(),
        status: RunStatus::Running,
        task: task.clone(),
        // The device `auto` resolves to, refused here when it cannot be opened.
        device: tunelab_engine::device_label(&device.open()?),
        base_probe: None,
        methods: Vec::new(),
        break_even: Vec::new(),
        started_at: now(),
        finished_at: 0,
    };
    let context = steps::Context {
        ws,
        caches,
        task: &task,
        dir: &dir,
        device,
        cancel,
    };
    on_event(CompareEvent::Started {
        id: task.name.clone(),
        methods: methods.clone(),
    });
    let probe = steps::write_probe(&dir)?;
    report.base_probe = Some(steps::base_probe(&context, &probe)?);
    for method in methods {
        if cancel.load(Ordering::Relaxed) {
            report.status = RunStatus::Cancelled;
            break;
        }
        let result = steps::method(
            &context,
            method,
            &probe,
            report.base_probe.as_ref(),
            on_event,
        );
        let status = result.status;
        report.methods.push(result.clone());
        report.break_even = report::break_even(&report.methods);
        write_atomic(&dir.join("report.json"), &json_bytes(&report)?)?;
        on_event(CompareEvent::Finished {
            result: Box::new(result),
        });
        if status == RunStatus::Cancelled {
            report.status = RunStatus::Cancelled;
            break;
        }
    }
    if report.status == RunStatus::Running {
        report.status = data_curves(&context, &mut report, on_event)?;
    }
    if report.status == RunStatus::Running {
        let completed = |status: RunStatus| status == RunStatus::Completed;
        report.status = match report
            .methods
            .iter()
            .all(|m| completed(m.status) && m.data_curve.iter().all(|p| completed(p.status)))
        {
            true => RunStatus::Completed,
            false => RunStatus::Failed,
        };
    }
    report.finished_at = now();
    write_atomic(&dir.join("report.json"), &json_bytes(&report)?)?;
    Ok(report)
}

/// The budget's data curves, after every method has its row: each trained method that
/// completed is trained again on each share of its examples. Returns `Cancelled` when cancelled,
/// else `Running`.
fn data_curves(
    cx: &steps::Context,
    report: &mut CompareReport,
    on_event: &mut (dyn FnMut(CompareEvent) + Send),
) -> Result<RunStatus> {
    let fractions = cx.task.budget.data_fractions.clone();
    if fractions.is_empty() {
        return Ok(RunStatus::Running);
    }
    for index in 0..report.methods.len() {
        let result = &report.methods[index];
        if !result.method.trains() || result.status != RunStatus::Completed {
            continue;
        }
        let method = result.method;
        report.methods[index].data_curve = vec![steps::whole_set_point(cx, result)];
        for &fraction in &fractions {
            if cx.cancel.load(Ordering::Relaxed) {
                return Ok(RunStatus::Cancelled);
            }
            let point = steps::data_point(cx, method, fraction, on_event);
            let status = point.status;
            let curve = &mut report.methods[index].data_curve;
            curve.insert(curve.len() - 1, point.clone());
            write_atomic(&cx.dir.join("report.json"), &json_bytes(&*report)?)?;
            on_event(CompareEvent::DataPoint {
                method,
                point: Box::new(point),
            });
            if status == RunStatus::Cancelled {
                return Ok(RunStatus::Cancelled);
            }
        }
    }
    Ok(RunStatus::Running)
}

/// The report in the comparison folder `dir`. One saved while running whose lock nobody holds
/// was cut off (killed, closed, power lost): it reads as interrupted, and running it again
/// resumes it.
fn read(dir: &Path) -> Result<Option<CompareReport>> {
    let mut report = read_json::<CompareReport>(&dir.join("report.json"))?;
    if let Some(report) = report.as_mut() {
        let held = crate::jobs::holder(&crate::jobs::compare_lock_path(dir)).is_some();
        if report.status == RunStatus::Running && !held {
            report.status = RunStatus::Interrupted;
        }
    }
    Ok(report)
}

/// The workspace's comparisons, newest first.
pub fn list(ws: &Workspace) -> Result<Vec<CompareReport>> {
    let root = ws.comparisons_dir();
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ApiError::io(&root, e)),
    };
    let mut reports = Vec::new();
    for entry in entries.flatten() {
        if let Some(report) = read(&entry.path())? {
            reports.push(report);
        }
    }
    reports.sort_by_key(|r| std::cmp::Reverse(r.started_at));
    Ok(reports)
}

/// Where [`export`] wrote a report.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ExportedReport {
    #[ts(type = "string")]
    pub html: PathBuf,
    #[ts(type = "string")]
    pub csv: PathBuf,
    #[ts(type = "string")]
    pub json: PathBuf,
}

/// Writes the report `id` as a web page and a CSV table beside its report.json.
pub fn export(ws: &Workspace, id: &str) -> Result<ExportedReport> {
    let report = show(ws, id)?;
    let dir = ws.comparisons_dir().join(&report.id);
    let exported = ExportedReport {
        html: dir.join("report.html"),
        csv: dir.join("report.csv"),
        json: dir.join("report.json"),
    };
    write_atomic(&exported.html, render_html(&report).as_bytes())?;
    write_atomic(&exported.csv, render_csv(&report).as_bytes())?;
    Ok(exported)
}

/// One comparison's report, by task name or folder.
pub fn show(ws: &Workspace, id: &str) -> Result<CompareReport> {
    let dir = match Path::new(id).is_dir() {
        true => PathBuf::from(id),
        false => ws.comparisons_dir().join(id),
    };
    let path = dir.join("report.json");
    read(&dir)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no comparison `{id}` ({} does not exist); see `tunelab compare list`",
                path.display()
            ),
        )
    })
}
