//! The Tunelab desktop shell: thin Tauri commands over tunelab-api. Token streams travel over
//! Tauri channels; errors cross as `{code, message}`.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tunelab_api::chat::ModelCache;
use tunelab_api::knowledge::KnowledgeCache;
use tunelab_api::Workspace;

/// Registers the commands of command_list.rs (functions of [`commands`]) with Tauri.
macro_rules! tunelab_commands {
    ($($name:ident),* $(,)?) => {
        tauri::generate_handler![$(commands::$name),*]
    };
}

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
        .invoke_handler(include!("command_list.rs"))
        .run(tauri::generate_context!());
    if let Err(err) = result {
        eprintln!("error: the window could not be opened: {err}");
        std::process::exit(1);
    }
}
