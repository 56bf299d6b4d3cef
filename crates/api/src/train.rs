//! Training runs: from a dataset file and a registered model to a tuned result in its own run
//! folder. One function starts (or resumes) a run; others list and show runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use tunelab_train::data::{
    read_dataset, split_train_validation, tokenize_dataset, ReadOptions, RenderOptions,
};
use tunelab_train::methods::pretrain;
pub use tunelab_train::methods::pretrain::Preset;
pub use tunelab_train::recipe::{Artifact, ArtifactKind, Method, RunConfig, TrainDefaults};
use tunelab_train::trainer::{self, RunDir, TrainError};

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
            _ => ErrorCode::Internal,
        };
        ApiError::new(code, err.to_string())
    }
}

/// A new model for pretraining from scratch: a tokenizer trained on the dataset's text and
/// weights drawn at random, kept under `base/` in the run folder so that a resumed run uses the
/// very same tokenizer (the weights come from the checkpoint then).
fn new_model(
    run: &RunDir,
    config: &RunConfig,
    dataset: &tunelab_train::Dataset,
    device: &tunelab_engine::Device,
) -> Result<tunelab_engine::LoadedModel> {
    let base = run.path().join("base");
    let tokenizer_path = base.join("tokenizer.json");
    let tokenizer = if tokenizer_path.is_file() {
        pretrain::load_tokenizer(&tokenizer_path)?
    } else {
        let texts = dataset.examples.iter().filter_map(|e| match &e.content {
            tunelab_train::ExampleContent::Text(t) => Some(t.as_str()),
            _ => None,
        });
        pretrain::train_tokenizer(texts, config.pretrain.vocab_size())?
    };
    let eos: Vec<u32> = [pretrain::END_OF_TEXT, pretrain::TURN_END]
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .collect();
    let model_config = config
        .pretrain
        .model_config(tokenizer.get_vocab_size(true), &eos)?;
    Ok(pretrain::create_model(
        &base,
        &model_config,
        &tokenizer,
        config.train.seed,
        device,
    )?)
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
    let options = ReadOptions {
        format: config.format,
        ..ReadOptions::default()
    };
    let dataset = read_dataset(&config.data, &options)?;
    let mut model = if config.from_scratch() {
        new_model(run, config, &dataset, &device)?
    } else {
        let (_, model_path) = models::resolve(ws, &config.model)?;
        tunelab_engine::load(&model_path, config.method.precision(&device), &device)?
    };
    let tokenized = tokenize_dataset(
        &model,
        &dataset,
        &RenderOptions {
            train_on: config.train_on,
            max_len: config.seq_len,
        },
    );
    if tokenized.examples.is_empty() {
        let first = dataset
            .issues
            .iter()
            .chain(&tokenized.issues)
            .next()
            .map(|i| format!(": {i}"))
            .unwrap_or_default();
        return Err(ApiError::invalid(format!(
            "{} has no usable examples{first}; run `tunelab data check` for the full report",
            config.data.display()
        )));
    }
    // Plain text is packed into full blocks: no compute goes to padding.
    let plain_text = dataset
        .examples
        .iter()
        .all(|e| matches!(e.content, tunelab_train::ExampleContent::Text(_)));
    // Training needs the tokens only: the text goes before it starts.
    drop(dataset);
    let examples = if plain_text {
        tunelab_train::pack(tokenized.examples, config.seq_len)?
    } else {
        tokenized.examples
    };
    if examples.is_empty() {
        return Err(ApiError::invalid(format!(
            "{} holds fewer than {} tokens, one block of the sequence length; add text or lower seq_len",
            config.data.display(),
            config.seq_len
        )));
    }
    let mut split = split_train_validation(examples, config.val_fraction, config.train.seed)?;
    split.train = tunelab_train::take_share(split.train, config.train_fraction, config.train.seed)?;
    let params = config.method.recipe().attach(&mut model, config)?;
    let trainable: u64 = params.iter().map(|(_, v)| v.elem_count() as u64).sum();
    let pad_id = model.eos_ids.first().copied().unwrap_or(0);
    // On a GPU, what the run costs it: read twice a second while it trains.
    let gpu_recorder = tunelab_engine::cuda_index(&device).and_then(|i| {
        tunelab_hardware::GpuRecorder::start(i as u32, std::time::Duration::from_millis(500))
    });
    let cpu_energy = tunelab_hardware::CpuEnergyRecorder::start(std::time::Duration::from_secs(1));
    let mut sink = LiveGpu {
        inner: sink,
        meter: tunelab_engine::cuda_index(&device)
            .and_then(|i| tunelab_hardware::GpuMeter::open(i as u32)),
        last: None,
    };
    let outcome = trainer::train(
        &model.transformer,
        &params,
        &split.train,
        &split.validation,
        &config.train,
        run,
        pad_id,
        &mut sink,
        cancel,
    )?;

    let artifact = run.artifact_dir();
    if !outcome.cancelled {
        let staging = run.path().join(".artifact.partial");
        std::fs::create_dir_all(&staging).map_err(|e| ApiError::io(&staging, e))?;
        config
            .method
            .recipe()
            .save(&staging, &model, &params, config)?;
        if artifact.exists() {
            std::fs::remove_dir_all(&artifact).map_err(|e| ApiError::io(&artifact, e))?;
        }
        std::fs::rename(&staging, &artifact).map_err(|e| ApiError::io(&artifact, e))?;
    }
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
        total_steps: config.train.total_steps(split.train.len()),
        final_loss: outcome.final_loss,
        val_loss: outcome.val_loss,
        val_perplexity: outcome.val_loss.map(f64::exp),
        tokens_seen: outcome.tokens_seen,
        train_examples: split.train.len(),
        val_examples: split.validation.len(),
        truncated_examples: tokenized.truncated,
        trainable_parameters: trainable,
        wall_time_s: outcome.elapsed_s,
        peak_rss_bytes: tunelab_hardware::peak_rss_bytes(),
        device: tunelab_engine::device_label(&device),
        gpu: gpu_recorder.and_then(|r| r.finish()),
        cpu_energy: cpu_energy.and_then(|r| r.finish()),
        started_at,
        finished_at: now(),
        artifact,
        took_over_from,
    };
    run.write_json("summary.json", &summary)?;
    Ok(summary)
}

/// Passes progress on, adding a reading of the GPU after a step at most once a second.
struct LiveGpu<'a> {
    inner: &'a mut dyn ProgressSink,
    meter: Option<tunelab_hardware::GpuMeter>,
    last: Option<std::time::Instant>,
}

impl ProgressSink for LiveGpu<'_> {
    fn step(&mut self, metrics: &StepMetrics) {
        self.inner.step(metrics);
        let due = self.last.is_none_or(|t| t.elapsed().as_secs_f64() >= 1.0);
        if let (true, Some(meter)) = (due, &self.meter) {
            if let Some(reading) = meter.info() {
                self.inner.gpu(&reading);
            }
            self.last = Some(std::time::Instant::now());
        }
    }

    fn eval(&mut self, metrics: &EvalMetrics) {
        self.inner.eval(metrics);
    }
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
