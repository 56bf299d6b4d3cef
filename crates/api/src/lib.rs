//! tunelab-api holds the use cases that the desktop app and the `tunelab` CLI share: the
//! workspace on disk, the model registry and hub downloads, chat, benchmarks and the health
//! report. Each use case is one function; the front ends only unpack arguments, call it and
//! show the result or the error.

pub mod bench;
pub mod chat;
pub mod data;
pub mod error;
pub mod hub;
pub mod knowledge;
pub mod models;
pub mod plan;
pub mod prompts;
pub mod runs;
pub mod train;
pub mod workspace;

use serde::Serialize;
use ts_rs::TS;

pub use error::{ApiError, Result};
pub use tunelab_hardware::{HardwareReport, Telemetry};
pub use workspace::{Workspace, DEFAULT_MODEL};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct AppInfo {
    pub version: String,
    pub workspace_dir: String,
    pub models_dir: String,
    pub default_model: String,
}

pub fn app_info(ws: &Workspace) -> AppInfo {
    AppInfo {
        version: VERSION.to_string(),
        workspace_dir: ws.root().display().to_string(),
        models_dir: ws.models_dir().display().to_string(),
        default_model: DEFAULT_MODEL.to_string(),
    }
}

/// Everything `tunelab doctor` reports.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct DoctorReport {
    pub app: AppInfo,
    pub hardware: HardwareReport,
    pub models: Vec<models::ModelEntry>,
    /// Threads used for tensor work on the CPU.
    pub cpu_threads: u32,
    /// Whether this build can use NVIDIA GPUs (built with the `cuda` feature).
    pub cuda_build: bool,
}

pub fn doctor(ws: &Workspace) -> Result<DoctorReport> {
    Ok(DoctorReport {
        app: app_info(ws),
        hardware: tunelab_hardware::probe(),
        models: models::list(ws)?,
        cpu_threads: cpu_threads(),
        cuda_build: cfg!(feature = "cuda"),
    })
}

/// The number of CPU threads tensor work uses (what `configure_process` set).
pub(crate) fn cpu_threads() -> u32 {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Prepares the process for tensor work: the number of CPU threads (default: every logical
/// CPU) and how the allocator hands memory back. Call once at program start, before any other
/// thread starts.
pub fn configure_process(threads: Option<usize>) {
    tunelab_engine::configure_threads(threads);
    keep_freed_memory();
}

/// mimalloc (the binaries' allocator) returns freed memory to the kernel 10 ms after its last
/// use; a training step frees and reallocates the same large buffers every few milliseconds,
/// and each time the kernel zeroes fresh pages again (6% of a LoRA step). Kept for 30 s
/// instead, LoRA steps ran about 10% faster with the same peak memory (as fast as never
/// returning it), and an idle app still gives its memory back. `MIMALLOC_PURGE_DELAY` in the
/// environment still wins.
fn keep_freed_memory() {
    /// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (libmimalloc-sys exports no
    /// constant for it).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 30_000) };
    }
}
