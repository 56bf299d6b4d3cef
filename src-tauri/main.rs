//! The Tunelab desktop shell: thin Tauri commands over tunelab-api. Token streams travel over
//! Tauri channels; errors cross as `{code, message}`.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;
mod jobs;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tunelab_api::Workspace;

/// Registers the commands of command_list.rs (functions of [`commands`]) with Tauri.
macro_rules! tunelab_commands {
    ($($name:ident),* $(,)?) => {
        tauri::generate_handler![$(commands::$name),*]
    };
}

pub struct AppState {
    /// The workspace, the loaded models and knowledge stores, and the jobs the app runs.
    pub api: tunelab_api::Context,
    pub cancel_chat: Arc<AtomicBool>,
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
        api: tunelab_api::Context::new(workspace),
        cancel_chat: Arc::new(AtomicBool::new(false)),
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
