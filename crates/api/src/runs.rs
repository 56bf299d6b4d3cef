//! Training runs as the app shows them: a list with each run's outcome and cost, a run's
//! metrics for its charts, and starting a run from a few choices with progress as events.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::error::{ApiError, ErrorCode, Result};
use crate::jobs::JobHolder;
use crate::train::{
    self, EvalMetrics, Method, ProgressSink, RunConfig, RunStatus, RunSummary, StepMetrics,
};
use crate::workspace::Workspace;

/// One run in the list.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct RunListItem {
    pub id: String,
    pub method: Method,
    pub model: String,
    pub status: RunStatus,
    /// While running: the process that trains it.
    pub holder: Option<JobHolder>,
    /// When failed: what stopped it.
    pub error: Option<ApiError>,
    /// Whether it can be resumed: stopped before its last step, with a checkpoint.
    pub can_resume: bool,
    #[ts(type = "number")]
    pub steps: u64,
    #[ts(type = "number")]
    pub total_steps: u64,
    pub final_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_perplexity: Option<f64>,
    #[ts(type = "number")]
    pub tokens_seen: u64,
    #[ts(type = "number | null")]
    pub peak_rss_bytes: Option<u64>,
    pub wall_time_s: Option<f64>,
    /// Where it trained: "cpu" or "cuda:N"; null while unknown.
    pub device: Option<String>,
    /// On a GPU: its peak memory, mean utilisation and energy over the run.
    pub gpu: Option<tunelab_hardware::GpuCost>,
    /// The CPU packages' energy over the run (RAPL), where the machine lets Tunelab read it.
    pub cpu_energy: Option<tunelab_hardware::CpuEnergy>,
    /// Seconds since 1970 when the run started; null while unknown.
    #[ts(type = "number | null")]
    pub started_at: Option<u64>,
    /// Whether the run left a result to chat with.
    pub has_artifact: bool,
    /// The forms its result can be exported in (empty without a result).
    pub export_formats: Vec<crate::export::ExportFormat>,
}

impl RunListItem {
    fn new(id: String, config: &RunConfig, summary: Option<&RunSummary>, dir: &Path) -> Self {
        let state = train::state(dir, summary);
        RunListItem {
            id,
            method: config.method,
            model: if config.from_scratch() {
                format!("new {} model", config.pretrain.preset.as_str())
            } else {
                config.model.clone()
            },
            status: state.status,
            holder: state.holder,
            error: state.error,
            can_resume: state.can_resume,
            steps: summary.map(|s| s.steps).unwrap_or(0),
            total_steps: summary.map(|s| s.total_steps).unwrap_or(0),
            final_loss: summary.and_then(|s| s.final_loss),
            val_loss: summary.and_then(|s| s.val_loss),
            val_perplexity: summary.and_then(|s| s.val_perplexity),
            tokens_seen: summary.map(|s| s.tokens_seen).unwrap_or(0),
            peak_rss_bytes: summary.and_then(|s| s.peak_rss_bytes),
            wall_time_s: summary.map(|s| s.wall_time_s),
            device: summary.map(|s| s.device.clone()),
            gpu: summary.and_then(|s| s.gpu.clone()),
            cpu_energy: summary.and_then(|s| s.cpu_energy.clone()),
            started_at: summary.map(|s| s.started_at),
            has_artifact: dir.join("artifact").is_dir(),
            export_formats: match dir.join("artifact").is_dir() {
                true => crate::export::formats_for(Some(config.method.recipe().artifact())),
                false => Vec::new(),
            },
        }
    }
}

/// The workspace's runs, newest first.
pub fn list(ws: &Workspace) -> Result<Vec<RunListItem>> {
    if !ws.runs_dir().is_dir() {
        return Ok(Vec::new());
    }
    Ok(train::list(ws)?
        .into_iter()
        .map(|(id, config, summary)| {
            let dir = ws.runs_dir().join(&id);
            RunListItem::new(id, &config, summary.as_ref(), &dir)
        })
        .collect())
}

/// One point of a run's curves: a training step, or a validation.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct MetricPoint {
    #[ts(type = "number")]
    pub step: u64,
    pub loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub lr: Option<f64>,
    pub tokens_per_s: Option<f64>,
}

/// The points of `metrics.jsonl` in the run `id`; lines that do not parse are skipped (a line
/// cut short by a crash must not hide the rest).
pub fn metrics(ws: &Workspace, id: &str) -> Result<Vec<MetricPoint>> {
    let path = ws.runs_dir().join(id).join("metrics.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if ws.runs_dir().join(id).is_dir() {
                return Ok(Vec::new());
            }
            return Err(ApiError::not_found(format!("no run named `{id}`")));
        }
        Err(e) => return Err(ApiError::io(&path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| {
            let step = v.get("step")?.as_u64()?;
            let number = |key: &str| v.get(key).and_then(|x| x.as_f64());
            Some(MetricPoint {
                step,
                loss: number("loss"),
                val_loss: number("val_loss"),
                lr: number("lr"),
                tokens_per_s: number("tokens_per_s"),
            })
        })
        .collect())
}

/// What the app's training screen asks for; everything else takes the method's defaults.
#[derive(Debug, Clone, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct TrainRequest {
    pub method: Method,
    pub model: String,
    /// The dataset file.
    pub data: String,
    /// Optimizer steps; 0 trains one epoch.
    pub max_steps: u32,
    pub batch_size: u32,
    pub seq_len: u32,
    /// The method's default when null.
    pub lr: Option<f64>,
    /// LoRA and QLoRA: the adapters' rank (16 when absent).
    #[serde(default)]
    #[ts(optional)]
    pub rank: Option<u32>,
    /// LoRA and QLoRA: the update's scale (32 when absent).
    #[serde(default)]
    #[ts(optional)]
    pub alpha: Option<f64>,
    /// Soft prompt: how many virtual tokens (20 when absent).
    #[serde(default)]
    #[ts(optional)]
    pub virtual_tokens: Option<u32>,
    /// Pretraining: the new model's size, "1m", "10m", "30m" or "120m" (10m when absent).
    #[serde(default)]
    #[ts(optional)]
    pub preset: Option<String>,
}

impl TrainRequest {
    /// The run's full configuration: the method's defaults with this request's choices, on the
    /// workspace's device, checked by [`RunConfig::validate`] as every run is.
    pub fn to_config(&self, ws: &Workspace) -> Result<RunConfig> {
        let mut config = RunConfig {
            model: self.model.clone(),
            data: std::path::PathBuf::from(self.data.trim()),
            seq_len: self.seq_len as usize,
            device: crate::settings::load(ws)?.device,
            ..RunConfig::for_method(self.method)
        };
        let t = &mut config.train;
        t.max_steps = self.max_steps as u64;
        t.batch_size = self.batch_size as usize;
        t.warmup_steps = t.warmup_steps.min(self.max_steps as u64 / 10);
        t.lr = self.lr.unwrap_or(t.lr);
        config.lora.rank = self.rank.map_or(config.lora.rank, |r| r as usize);
        config.lora.alpha = self.alpha.unwrap_or(config.lora.alpha);
        let sp = &mut config.soft_prompt;
        sp.num_virtual_tokens = self
            .virtual_tokens
            .map_or(sp.num_virtual_tokens, |n| n as usize);
        if let Some(preset) = self.preset.as_deref().filter(|p| !p.is_empty()) {
            config.pretrain.preset = train::Preset::parse(preset)?;
        }
        config.validate()?;
        Ok(config)
    }
}

/// Progress of a run started from the app.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum TrainEvent {
    /// The run folder exists; its id names it in the runs list.
    Started { run_id: String },
    Step {
        #[ts(type = "number")]
        step: u64,
        #[ts(type = "number")]
        total_steps: u64,
        loss: f64,
        lr: f64,
        tokens_per_s: f64,
        elapsed_s: f64,
        #[ts(type = "number | null")]
        rss_bytes: Option<u64>,
    },
    Eval {
        #[ts(type = "number")]
        step: u64,
        val_loss: f64,
    },
    /// The GPU the run trains on, read after a step (at most once a second); none on the CPU.
    Gpu { gpu: tunelab_hardware::GpuInfo },
}

struct EventSink<'a>(&'a mut (dyn FnMut(TrainEvent) + Send));

impl ProgressSink for EventSink<'_> {
    fn step(&mut self, m: &StepMetrics) {
        (self.0)(TrainEvent::Step {
            step: m.step,
            total_steps: m.total_steps,
            loss: m.loss,
            lr: m.lr,
            tokens_per_s: m.tokens_per_s,
            elapsed_s: m.elapsed_s,
            rss_bytes: m.rss_bytes,
        });
    }
    fn gpu(&mut self, reading: &tunelab_hardware::GpuInfo) {
        (self.0)(TrainEvent::Gpu {
            gpu: reading.clone(),
        });
    }
    fn eval(&mut self, m: &EvalMetrics) {
        (self.0)(TrainEvent::Eval {
            step: m.step,
            val_loss: m.val_loss,
        });
    }
}

/// Continues a stopped run (cancelled, or cut off by a crash or a closed window) from its newest
/// checkpoint, with the configuration it was started with. Progress goes to `on_event` as for a
/// new run; a finished run is refused.
pub fn resume(
    ws: &Workspace,
    id: &str,
    cancel: &AtomicBool,
    on_event: &mut (dyn FnMut(TrainEvent) + Send),
) -> Result<RunListItem> {
    if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
        return Err(ApiError::invalid(format!("`{id}` is not a run id")));
    }
    let dir = ws.runs_dir().join(id);
    if !dir.is_dir() {
        return Err(ApiError::not_found(format!("no run named `{id}`")));
    }
    let (config, summary) = train::show(&dir)?;
    let state = train::state(&dir, summary.as_ref());
    if !state.can_resume {
        return Err(match (state.status, state.holder, summary) {
            (RunStatus::Running, Some(holder), _) => ApiError::new(
                ErrorCode::Busy,
                format!(
                    "run `{id}` is still training in {} (pid {}); follow it in the jobs list instead",
                    holder.program, holder.pid
                ),
            ),
            (RunStatus::Completed, _, Some(s)) => ApiError::invalid(format!(
                "run `{id}` already finished all {} steps; start a new run to train further",
                s.total_steps
            )),
            _ => ApiError::invalid(format!(
                "run `{id}` stopped before its first checkpoint; start it again instead"
            )),
        });
    }
    on_event(TrainEvent::Started {
        run_id: id.to_string(),
    });
    let summary = train::run(ws, &config, &dir, &mut EventSink(on_event), cancel)?;
    Ok(RunListItem::new(
        id.to_string(),
        &config,
        Some(&summary),
        &dir,
    ))
}

/// Starts the run `request` describes in a new run folder, sending its progress to `on_event`;
/// `cancel` stops it between steps (with a checkpoint). Returns the finished run's list entry.
pub fn start(
    ws: &Workspace,
    request: &TrainRequest,
    cancel: &AtomicBool,
    on_event: &mut (dyn FnMut(TrainEvent) + Send),
) -> Result<RunListItem> {
    let config = request.to_config(ws)?;
    let id = train::new_run_id(&config);
    let dir = ws.runs_dir().join(&id);
    on_event(TrainEvent::Started { run_id: id.clone() });
    let summary = train::run(ws, &config, &dir, &mut EventSink(on_event), cancel)?;
    Ok(RunListItem::new(id, &config, Some(&summary), &dir))
}
