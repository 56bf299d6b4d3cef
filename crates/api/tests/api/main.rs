//! Use cases end to end on a temporary workspace, with the real default model registered in
//! place from the model cache that setup fills.

mod ab;
mod chat;
mod compare;
mod data;
mod defaults;
mod eval;
mod export;
mod hub;
mod interop;
mod models;
mod prompts;
mod runs;
mod train;

#[path = "../support/loopback.rs"]
mod loopback;

use std::path::PathBuf;

use tunelab_api::Workspace;

pub fn default_gguf() -> PathBuf {
    let models = match std::env::var("TUNELAB_HOME") {
        Ok(home) => PathBuf::from(home).join("models"),
        Err(_) => std::env::var("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").expect("HOME is set")).join(".local/share")
            })
            .join("tunelab/models"),
    };
    let path = models.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh first",
        path.display()
    );
    path
}

/// The caches a test answers through: its model cache, and a knowledge cache for requests that
/// name no knowledge base.
pub fn caches(models: &tunelab_api::chat::ModelCache) -> tunelab_api::chat::Caches<'_> {
    static KNOWLEDGE: std::sync::LazyLock<tunelab_api::knowledge::KnowledgeCache> =
        std::sync::LazyLock::new(Default::default);
    tunelab_api::chat::Caches {
        models,
        knowledge: &KNOWLEDGE,
    }
}

/// A fresh workspace in a temporary folder (kept alive by the returned guard).
pub fn temp_workspace() -> (tempfile::TempDir, Workspace) {
    tunelab_api::configure_process(None);
    let dir = tempfile::tempdir().expect("temp dir");
    let ws = Workspace::open(Some(dir.path().to_path_buf())).expect("workspace opens");
    (dir, ws)
}

/// A workspace where the default model is registered under its usual name.
pub fn workspace_with_default_model() -> (tempfile::TempDir, Workspace) {
    let (dir, ws) = temp_workspace();
    tunelab_api::models::add(&ws, &default_gguf(), Some(tunelab_api::DEFAULT_MODEL))
        .expect("default model registers");
    (dir, ws)
}
