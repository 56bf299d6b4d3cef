//! Training runs: from a dataset file and a registered model to a tuned result in its own run
//! folder. One function starts (or resumes) a run; others list and show runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use ts_rs::TS;
pub use tunelab_train::methods::pretrain::Preset;
pub use tunelab_train::recipe::{Artifact, ArtifactKind, Method, RunConfig, TrainDefaults};
use tunelab_train::trainer::{RunDir, TrainError};

pub use tunelab_train::methods::lora::LoraConfig as LoraSettings;
pub use tunelab_train::trainer::{EvalMetrics, ProgressSink, StepMetrics, TrainSettings};

use crate::error::{ApiError, ErrorCode, Result};
use crate::jobs::{self, JobKind, JobLock};
use crate::models;
use crate::workspace::Workspace;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "kebab-case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum RunStatus {
    /// A process holds the run folder's lock and is training.
    Running,
    /// Every step done; the result is in `artifact/`.
    Completed,
    /// Stopped on request, with a checkpoint.
    Cancelled,
    /// Stopped by an error, recorded in `error.json`.
    Failed,
    /// Cut off without a word (killed, closed, power lost): nobody holds it and it has no
    /// summary.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// error.json: why a run stopped with an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunFailure {
    pub error: ApiError,
    pub failed_at: u64,
}

/// What a run folder says about its run, read the same way by every front end.
#[derive(Debug, Clone)]
pub struct RunState {
    pub status: RunStatus,
    /// Who trains it now, when running.
    pub holder: Option<crate::jobs::JobHolder>,
    /// The error that stopped it, when failed.
    pub error: Option<ApiError>,
    /// Whether `resume` can continue it: stopped before the end, with a checkpoint to start from.
    pub can_resume: bool,
}

/// Reads where the run in `dir` stands: a held lock means running, whatever the files say.
pub fn state(dir: &Path, summary: Option<&RunSummary>) -> RunState {
    let holder = crate::jobs::holder(&crate::jobs::run_lock_path(dir));
    let error = std::fs::read_to_string(dir.join("error.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<RunFailure>(&t).ok())
        .map(|f| f.error);
    let status = if holder.is_some() {
        RunStatus::Running
    } else if error.is_some() {
        RunStatus::Failed
    } else {
        summary.map_or(RunStatus::Interrupted, |s| s.status)
    };
    let has_checkpoint = std::fs::read_dir(dir.join("checkpoints"))
        .map(|mut entries| entries.any(|e| e.is_ok()))
        .unwrap_or(false);
    RunState {
        status,
        can_resume: has_checkpoint
            && matches!(
                status,
                RunStatus::Cancelled | RunStatus::Failed | RunStatus::Interrupted
            ),
        holder,
        error: if status == RunStatus::Failed {
            error
        } else {
            None
        },
    }
}

/// summary.json: how the run ended and what it cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    pub method: Method,
    pub model: String,
    pub status: RunStatus,
    pub steps: u64,
    pub total_steps: u64,
    pub final_loss: Option<f64>,
    pub val_loss: Option<f64>,
    /// e^(validation loss): how many tokens the model is choosing among, on average.
    pub val_perplexity: Option<f64>,
    pub tokens_seen: u64,
    pub train_examples: usize,
    pub val_examples: usize,
    pub truncated_examples: usize,
    pub trainable_parameters: u64,
    pub wall_time_s: f64,
    pub peak_rss_bytes: Option<u64>,
    pub device: String,
    /// On a GPU: its peak memory, mean utilisation and energy over the run.
    #[serde(default)]
    pub gpu: Option<tunelab_hardware::GpuCost>,
    /// The CPU packages' energy over the run (RAPL, all processes on them); null where the
    /// machine does not let Tunelab read it.
    #[serde(default)]
    pub cpu_energy: Option<tunelab_hardware::CpuEnergy>,
    pub started_at: u64,
    pub finished_at: u64,
    /// Folder with the result in its exchange format (a PEFT adapter).
    pub artifact: PathBuf,
    /// The process this run was taken over from, when one trained it before and was stopped
    /// hard (killed) without letting go of the folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_over_from: Option<crate::jobs::JobHolder>,
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl From<TrainError> for ApiError {
    fn from(err: TrainError) -> Self {
        let code = match err {
            TrainError::Config(_) => ErrorCode::InvalidInput,
            TrainError::NonFinite { .. } => ErrorCode::Diverged,
            TrainError::Io(..) => ErrorCode::Io,
            TrainError::Data(data) => return data.into(),
            _ => ErrorCode::Internal,
        };
        ApiError::new(code, err.to_string())
    }
}

/// A new run folder name: method, model and the start time.
pub fn new_run_id(config: &RunConfig) -> String {
    if config.from_scratch() {
        return format!("pretrain-{}-{}", config.pretrain.preset.as_str(), now());
    }
    format!("{}-{}-{}", config.method.as_str(), config.model, now())
}

/// How a run starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Start even when the memory plan says the run will not fit.
    pub force: bool,
}

/// Trains as `config` says in `run_dir` (created if needed). A folder that already holds
/// checkpoints of the same configuration resumes from the latest one. A run whose memory plan
/// does not fit the device is refused before anything is loaded.
pub fn run(
    ws: &Workspace,
    config: &RunConfig,
    run_dir: &Path,
    sink: &mut dyn ProgressSink,
    cancel: &AtomicBool,
) -> Result<RunSummary> {
    run_with(ws, config, run_dir, sink, cancel, RunOptions::default())
}

/// [`run`] with options.
pub fn run_with(
    ws: &Workspace,
    config: &RunConfig,
    run_dir: &Path,
    sink: &mut dyn ProgressSink,
    cancel: &AtomicBool,
    options: RunOptions,
) -> Result<RunSummary> {
    let summary = run_job(ws, config, run_dir, sink, cancel, options);
    // The model, the optimizer and the batches are gone: their memory goes back to the system.
    crate::release_freed_memory();
    summary
}

fn run_job(
    ws: &Workspace,
    config: &RunConfig,
    run_dir: &Path,
    sink: &mut dyn ProgressSink,
    cancel: &AtomicBool,
    options: RunOptions,
) -> Result<RunSummary> {
    let started_at = now();
    if config.data.as_os_str().is_empty() {
        return Err(ApiError::invalid(
            "no dataset (`data`): choose the file to train on",
        ));
    }
    // The plan checks every setting first (`RunConfig::validate`).
    let plan = crate::plan::train(ws, config)?;
    if !plan.fits && !options.force {
        return Err(crate::plan::refusal(&plan));
    }
    let run = RunDir::create(run_dir)?;
    let id = run
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // One writer per run folder, whichever process: refused here before anything is written.
    let lock = JobLock::acquire(&jobs::run_lock_path(run.path()), JobKind::Train, &id)?;
    let (_, summary) = show(run.path()).unwrap_or((config.clone(), None));
    if let Some(done) = summary.filter(|s| s.status == RunStatus::Completed) {
        return Err(ApiError::invalid(format!(
            "{} already holds a completed run ({} steps); it is left as it is: choose a new output folder to train again",
            run.path().display(),
            done.steps
        )));
    }
    let saved = run.path().join("config.json");
    if saved.is_file() {
        let previous: RunConfig = serde_json::from_str(
            &std::fs::read_to_string(&saved).map_err(|e| ApiError::io(&saved, e))?,
        )
        .map_err(|e| ApiError::invalid(format!("{}: {e}", saved.display())))?;
        if &previous != config {
            return Err(ApiError::invalid(format!(
                "{} already holds a run with another configuration; choose a new output folder or resume it as it was",
                run.path().display()
            )));
        }
    }
    run.write_json("config.json", config)?;
    let error_file = run.path().join("error.json");
    if error_file.exists() {
        std::fs::remove_file(&error_file).map_err(|e| ApiError::io(&error_file, e))?;
    }
    let result = train_in(
        ws,
        config,
        &run,
        sink,
        cancel,
        lock.taken_over().cloned(),
        started_at,
    );
    if let Err(error) = &result {
        // Kept so that the runs list says why, until the run is started again.
        let failure = RunFailure {
            error: error.clone(),
            failed_at: now(),
        };
        let _ = run.write_json("error.json", &failure);
    }
    drop(lock);
    result
}

/// The part of a run that happens under its lock, once its configuration is saved.
fn train_in(
    ws: &Workspace,
    config: &RunConfig,
    run: &RunDir,
    sink: &mut dyn ProgressSink,
    cancel: &AtomicBool,
    took_over_from: Option<crate::jobs::JobHolder>,
    started_at: u64,
) -> Result<RunSummary> {
    let device = config.device.open()?;
    let base = if config.from_scratch() {
        None
    } else {
        Some(models::resolve(ws, &config.model)?.1)
    };
    let trained = tunelab_train::train_run(config, base.as_deref(), run, &device, sink, cancel)?;
    let outcome = &trained.outcome;
    let summary = RunSummary {
        id: run
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        method: config.method,
        model: config.model.clone(),
        status: if outcome.cancelled {
            RunStatus::Cancelled
        } else {
            RunStatus::Completed
        },
        steps: outcome.steps,
        total_steps: trained.total_steps,
        final_loss: outcome.final_loss,
        val_loss: outcome.val_loss,
        val_perplexity: outcome.val_loss.map(f64::exp),
        tokens_seen: outcome.tokens_seen,
        train_examples: trained.train_examples,
        val_examples: trained.val_examples,
        truncated_examples: trained.truncated_examples,
        trainable_parameters: trained.trainable_parameters,
        wall_time_s: outcome.elapsed_s,
        peak_rss_bytes: tunelab_hardware::peak_rss_bytes(),
        device: tunelab_engine::device_label(&device),
        gpu: trained.gpu,
        cpu_energy: trained.cpu_energy,
        started_at,
        finished_at: now(),
        artifact: trained.artifact,
        took_over_from,
    };
    run.write_json("summary.json", &summary)?;
    Ok(summary)
}

/// Runs in the workspace, newest first, with their summaries where they have one.
pub fn list(ws: &Workspace) -> Result<Vec<(String, RunConfig, Option<RunSummary>)>> {
    let dir = ws.runs_dir();
    let mut out = Vec::new();
    for path in std::fs::read_dir(&dir)
        .map_err(|e| ApiError::io(&dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
    {
        if let Ok((config, summary)) = show(&path) {
            let id = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((id, config, summary));
        }
    }
    out.sort_by_key(|(_, _, s)| std::cmp::Reverse(s.as_ref().map(|s| s.started_at).unwrap_or(0)));
    Ok(out)
}

/// A run folder's configuration and summary.
pub fn show(run_dir: &Path) -> Result<(RunConfig, Option<RunSummary>)> {
    let read = |name: &str| -> Result<Option<String>> {
        let path = run_dir.join(name);
        if !path.is_file() {
            return Ok(None);
        }
        std::fs::read_to_string(&path)
            .map(Some)
            .map_err(|e| ApiError::io(&path, e))
    };
    let config = read("config.json")?.ok_or_else(|| {
        ApiError::not_found(format!(
            "{} is not a run folder (no config.json)",
            run_dir.display()
        ))
    })?;
    let config = serde_json::from_str(&config).map_err(|e| {
        ApiError::invalid(format!("{}: {e}", run_dir.join("config.json").display()))
    })?;
    let summary = read("summary.json")?.and_then(|s| serde_json::from_str(&s).ok());
    Ok((config, summary))
}

/// A run id in the workspace, or a path to a run folder, a PEFT adapter folder or a model
/// folder: the trained result it holds, decided once (by [`Artifact::find`]) for whoever loads it.
pub fn resolve_artifact(ws: &Workspace, run_or_dir: &str) -> Result<Artifact> {
    for dir in [PathBuf::from(run_or_dir), ws.runs_dir().join(run_or_dir)] {
        if let Some(artifact) = Artifact::find(&dir)? {
            return Ok(artifact);
        }
    }
    Err(ApiError::not_found(format!("no trained result at `{run_or_dir}`: give a run id from `tunelab runs list`, a run folder, a PEFT adapter folder or a model folder")))
}
