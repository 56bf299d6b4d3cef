//! The Tunelab desktop shell: thin Tauri commands over tunelab-api. Token streams travel over
//! Tauri channels; errors cross as `{code, message}`.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tunelab_api::chat::ModelCache;
use tunelab_api::knowledge::KnowledgeCache;
use tunelab_api::Workspace;

pub struct AppState {
    pub workspace: Workspace,
    pub models: Arc<ModelCache>,
    pub knowledge: Arc<KnowledgeCache>,
    pub cancel_chat: Arc<AtomicBool>,
    /// The jobs the app runs, each with its own cancel token.
    pub jobs: Arc<tunelab_api::jobs::JobTable>,
    pub telemetry: Arc<Mutex<tunelab_api::Telemetry>>,
}

fn main() {
    tunelab_api::configure_process(None);
    let workspace = match Workspace::open(None) {
        Ok(ws) => ws,
        Err(err) => {
            eprintln!("error: {}", err.message);
            std::process::exit(1);
        }
    };
    let state = AppState {
        workspace,
        models: Arc::new(ModelCache::default()),
        knowledge: Arc::new(KnowledgeCache::default()),
        cancel_chat: Arc::new(AtomicBool::new(false)),
        jobs: Arc::default(),
        telemetry: Arc::new(Mutex::new(tunelab_api::Telemetry::new())),
    };
    let result = tauri::Builder::default()
        .manage(state)
        .invoke_handler(tauri::generate_handler![
            commands::app_info,
            commands::hardware_report,
            commands::list_models,
            commands::add_model,
            commands::remove_model,
            commands::pull_model,
            commands::cancel_pull,
            commands::default_models,
            commands::install_default_models,
            commands::cancel_default_models,
            commands::chat,
            commands::cancel_chat,
            commands::list_runs,
            commands::run_metrics,
            commands::plan_training,
            commands::train,
            commands::resume_training,
            commands::cancel_training,
            commands::list_jobs,
            commands::list_comparisons,
            commands::comparison,
            commands::comparison_examples,
            commands::run_comparison,
            commands::cancel_comparison,
            commands::template_ab_test,
            commands::cancel_template_ab_test,
            commands::export_comparison,
            commands::export_result,
            commands::cancel_export,
            commands::preview_dataset,
            commands::list_knowledge_bases,
            commands::knowledge_base,
            commands::create_knowledge_base,
            commands::add_to_knowledge_base,
            commands::cancel_knowledge_add,
            commands::remove_knowledge_base,
            commands::remove_knowledge_source,
            commands::search_knowledge_base,
            commands::render_prompt,
            commands::list_prompts,
            commands::load_prompt,
            commands::save_prompt,
            commands::remove_prompt,
            commands::settings,
            commands::save_settings,
        ])
        .run(tauri::generate_context!());
    if let Err(err) = result {
        eprintln!("error: the window could not be opened: {err}");
        std::process::exit(1);
    }
}
