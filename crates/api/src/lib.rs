//! tunelab-api holds the use cases that the desktop app and the `tunelab` CLI share: the
//! workspace on disk, the model registry and hub downloads, chat, benchmarks and the health
//! report. Each use case is one function; the front ends only unpack arguments, call it and
//! show the result or the error.

pub mod bench;
pub mod chat;
pub mod compare;
mod context;
pub mod data;
pub mod defaults;
mod download;
pub mod error;
pub mod eval;
pub mod export;
pub mod hub;
pub mod jobs;
pub mod knowledge;
pub mod models;
pub mod plan;
pub mod prompts;
pub mod runs;
pub mod settings;
mod slot;
pub mod train;
pub mod workspace;

use serde::Serialize;
use ts_rs::TS;

pub use context::Context;
pub use error::{ApiError, ErrorCode, Result};
pub use tunelab_engine::DeviceChoice;
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
    /// Whether this build can use NVIDIA GPUs (built with the `cuda` feature). Text that
    /// depends on the GPU says which case applies.
    pub cuda_build: bool,
}

pub fn app_info(ws: &Workspace) -> AppInfo {
    AppInfo {
        version: VERSION.to_string(),
        workspace_dir: ws.root().display().to_string(),
        models_dir: ws.models_dir().display().to_string(),
        default_model: DEFAULT_MODEL.to_string(),
        cuda_build: cfg!(feature = "cuda"),
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
    /// The vector code the CPU kernels run here, e.g. "matrix products AVX-512; 4- and 8-bit
    /// dot products AVX-512; fused kernels AVX2 + FMA".
    pub cpu_kernels: String,
    /// Whether this build can use NVIDIA GPUs (built with the `cuda` feature).
    pub cuda_build: bool,
    /// Where training and chat run when a command chooses no device (the workspace's
    /// setting), and why not on a GPU.
    pub training_device: TrainingDevice,
}

/// The device the workspace's setting opens, and when a GPU is there but unused, why and what
/// fixes it.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct TrainingDevice {
    /// "cuda:0" or "cpu".
    pub device: String,
    /// How the frozen weights are held there: "bf16", "f16" or "f32".
    pub precision: String,
    /// Why a GPU that is present cannot be used; null when it is used or there is none.
    pub problem: Option<String>,
    /// The one command that fixes `problem`.
    pub fix: Option<String>,
}

pub fn doctor(ws: &Workspace) -> Result<DoctorReport> {
    let hardware = tunelab_hardware::probe();
    let choice = settings::load(ws)?.device;
    Ok(DoctorReport {
        app: app_info(ws),
        training_device: training_device(&hardware, choice),
        hardware,
        models: models::list(ws)?,
        cpu_threads: cpu_threads(),
        cpu_kernels: tunelab_engine::cpu_kernels(),
        cuda_build: cfg!(feature = "cuda"),
    })
}

/// What `choice` opens on this machine, from what NVML sees and what this build can do (the
/// CPU when it cannot be opened, with why).
pub fn training_device(hardware: &HardwareReport, choice: DeviceChoice) -> TrainingDevice {
    let device = choice.open().unwrap_or(tunelab_engine::Device::Cpu);
    let precision = match tunelab_engine::Precision::half_for(&device).dense_dtype() {
        tunelab_engine::DType::BF16 => "bf16",
        tunelab_engine::DType::F16 => "f16",
        _ => "f32",
    };
    let (problem, fix) = if device.is_cuda() || hardware.gpus.is_empty() {
        (None, None)
    } else if !cfg!(feature = "cuda") {
        (
            Some("this build of Tunelab has no CUDA, so the GPU stays unused".to_string()),
            Some("scripts/setup.sh && scripts/run-app.sh (setup builds with CUDA when it finds the NVIDIA driver)".to_string()),
        )
    } else if choice == DeviceChoice::Cpu {
        (
            Some("the workspace's device setting is cpu, so the GPU stays unused".to_string()),
            Some("tunelab settings --device auto (or Run on: Auto on Home)".to_string()),
        )
    } else {
        let asked = match choice {
            DeviceChoice::Cuda(n) => DeviceChoice::Cuda(n),
            _ => DeviceChoice::Cuda(0),
        };
        let why = match asked.open() {
            Err(e) => e.to_string(),
            Ok(_) => "CUDA could not be initialised".to_string(),
        };
        let cuda = hardware.cuda_version.as_deref().unwrap_or("unknown");
        (
            Some(format!("{why} (the driver supports CUDA {cuda})")),
            Some("scripts/setup.sh (it matches the CUDA toolkit to the driver; update the driver if it is older than CUDA 11.4)".to_string()),
        )
    };
    TrainingDevice {
        device: tunelab_engine::device_label(&device),
        precision: precision.to_string(),
        problem,
        fix,
    }
}

/// The number of CPU threads tensor work uses (what `configure_process` set).
pub(crate) fn cpu_threads() -> u32 {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Prepares the process for tensor work: the number of CPU threads (default: every logical
/// CPU) and how the allocator reuses memory. Call once at program start, before any other
/// thread starts.
pub fn configure_process(threads: Option<usize>) {
    tunelab_engine::configure_threads(threads);
    allocator::configure();
}

/// Hands memory that tensors freed back to the system: call when a long job (a training run,
/// a benchmark) ends, since [`configure_process`] tells the allocator to keep freed memory
/// for reuse while the job runs.
pub fn release_freed_memory() {
    allocator::release();
}

/// glibc's allocator, set up for tensor work (Linux with glibc; elsewhere the system
/// allocator keeps its defaults).
///
/// By default glibc maps every large buffer fresh from the kernel and unmaps it on free, so
/// the kernel zeroes new pages for it on every training step; and each thread gets its own
/// arena, where memory one thread freed sits unused while another thread asks for more.
/// Measured on training steps (batch 4 × 256, 2 threads): with every buffer served from the
/// heap, no trimming while a job runs and one arena, LoRA and QLoRA ran as fast as with
/// mimalloc (which the binaries used before) and full fine-tuning within 10%, and peak memory
/// fell by 12% (LoRA) to 21% (QLoRA): mimalloc kept about 70 MB more, and 40 MB more again
/// through transparent huge pages. Settings given in `GLIBC_TUNABLES` still win.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod allocator {
    pub fn configure() {
        if std::env::var_os("GLIBC_TUNABLES").is_some() {
            return;
        }
        // SAFETY: mallopt sets allocator parameters; called at start, before other threads.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }

    pub fn release() {
        // SAFETY: malloc_trim only returns free pages to the kernel.
        unsafe { libc::malloc_trim(0) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod allocator {
    pub fn configure() {}
    pub fn release() {}
}
