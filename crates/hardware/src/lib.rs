//! Tunelab's view of the machine it runs on: which NVIDIA GPUs are present and how much of
//! their memory is free (through NVML, loaded at run time so machines without a driver still
//! work), what CPU and how much RAM the host has (through sysinfo), and how much memory the
//! Tunelab process itself holds. `probe` takes one snapshot for `tunelab doctor`; `Telemetry`
//! keeps its handles open for repeated sampling while training or chatting. Nothing here panics
//! or fails: whatever cannot be read is reported as missing, and a missing NVIDIA driver is
//! the normal case on most development machines and CI runners.

mod cpu_energy;
mod gpu;
mod host;
mod isa;
mod process;
mod summary;

use std::time::{Duration, Instant};

use serde::Serialize;
use ts_rs::TS;

pub use cpu_energy::{CpuEnergy, CpuEnergyRecorder};
pub use gpu::{GpuCost, GpuMeter, GpuRecorder};
pub use isa::{instruction_sets, InstructionSets};
pub use process::{current_rss_bytes, peak_rss_bytes, reset_peak_rss};

/// One snapshot of the machine: GPUs, CPU and RAM.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct HardwareReport {
    /// NVIDIA GPUs in NVML's order; empty when there is no usable driver or no GPU.
    pub gpus: Vec<GpuInfo>,
    /// A sentence explaining why GPUs are missing or partly unreadable; null when all is well.
    pub gpu_note: Option<String>,
    /// The NVIDIA driver version, e.g. "550.54.14".
    pub driver_version: Option<String>,
    /// The highest CUDA version the driver supports, e.g. "12.4".
    pub cuda_version: Option<String>,
    pub cpu: CpuInfo,
    pub memory: MemoryInfo,
}

/// One NVIDIA GPU. Readings the driver refuses to give are null.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct GpuInfo {
    /// NVML's index of the device, as CUDA numbers it by default.
    pub index: u32,
    pub name: String,
    pub uuid: Option<String>,
    #[ts(type = "number")]
    pub memory_total_bytes: u64,
    #[ts(type = "number")]
    pub memory_used_bytes: u64,
    #[ts(type = "number")]
    pub memory_free_bytes: u64,
    /// Share of the last sample period in which a kernel was running, 0 to 100.
    pub utilization_percent: Option<u32>,
    pub temperature_c: Option<u32>,
    pub power_draw_watts: Option<f64>,
    pub power_limit_watts: Option<f64>,
    /// CUDA compute capability, e.g. "8.9" (Ada), "9.0" (Hopper): which kernels and 16-bit
    /// formats the GPU runs (bf16 from 8.0).
    pub compute_capability: Option<String>,
}

/// The host CPU.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct CpuInfo {
    /// The brand string, e.g. "AMD Ryzen 9 7950X 16-Core Processor".
    pub model: String,
    pub physical_cores: Option<u32>,
    /// Hardware threads the operating system sees; at least 1.
    pub logical_cores: u32,
    /// Average load over all cores since the previous sample, 0 to 100; null until two
    /// readings far enough apart exist.
    pub utilization_percent: Option<f32>,
    /// Its vector instruction sets, what this build requires and the kernels' path.
    pub instruction_sets: InstructionSets,
}

/// The host's RAM.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct MemoryInfo {
    #[ts(type = "number")]
    pub total_bytes: u64,
    /// What new allocations can still get without swapping (includes reclaimable caches).
    #[ts(type = "number")]
    pub available_bytes: u64,
    #[ts(type = "number")]
    pub used_bytes: u64,
}

/// Takes one snapshot of the machine. CPU utilization is usually `None` here, since it needs
/// two readings some time apart; use [`Telemetry`] for that.
pub fn probe() -> HardwareReport {
    Telemetry::new().sample()
}

/// Keeps the sysinfo `System` and the NVML handle open so that repeated samples are cheap and
/// CPU utilization can be computed from the difference between two readings.
pub struct Telemetry {
    host: host::Host,
    gpus: gpu::Gpus,
    /// When CPU times were last read; `None` if the host could not be read at all.
    last_cpu_refresh: Option<Instant>,
    /// Whether a CPU reading newer than the first one exists, so that usage means something.
    cpu_usage_ready: bool,
    samples_taken: u64,
}

impl Telemetry {
    /// Opens sysinfo and NVML and takes the first CPU reading.
    pub fn new() -> Telemetry {
        let mut host = host::Host::open();
        let last_cpu_refresh = host.refresh_cpu().then(Instant::now);
        Telemetry {
            host,
            gpus: gpu::Gpus::open(),
            last_cpu_refresh,
            cpu_usage_ready: false,
            samples_taken: 0,
        }
    }

    /// Reads everything again. CPU utilization is `Some` from the second call on (the first call
    /// has it too when at least 200 ms passed since `new`); to make that so, a second call that
    /// comes sooner than 200 ms after the previous CPU reading waits out the rest.
    pub fn sample(&mut self) -> HardwareReport {
        self.refresh_cpu_usage();
        self.samples_taken = self.samples_taken.saturating_add(1);
        self.host.refresh_memory();
        let utilization = if self.cpu_usage_ready {
            self.host.cpu_usage()
        } else {
            None
        };
        let gpus = self.gpus.read();
        HardwareReport {
            gpus: gpus.gpus,
            gpu_note: gpus.note,
            driver_version: gpus.driver_version,
            cuda_version: gpus.cuda_version,
            cpu: self.host.cpu_info(utilization),
            memory: self.host.memory_info(),
        }
    }

    fn refresh_cpu_usage(&mut self) {
        let Some(last) = self.last_cpu_refresh else {
            return;
        };
        let interval = min_cpu_interval();
        let elapsed = last.elapsed();
        if elapsed < interval {
            if self.samples_taken == 0 {
                // The first sample stays fast (`probe` relies on that) and reports no usage.
                return;
            }
            std::thread::sleep(interval - elapsed);
        }
        if self.host.refresh_cpu() {
            self.last_cpu_refresh = Some(Instant::now());
            self.cpu_usage_ready = true;
        }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("host_readable", &self.host.is_readable())
            .field("nvml_loaded", &self.gpus.is_loaded())
            .field("samples_taken", &self.samples_taken)
            .finish()
    }
}

/// The shortest gap between two CPU readings that gives a meaningful usage figure.
fn min_cpu_interval() -> Duration {
    // sysinfo ignores readings closer together than this; a little slack keeps us above it.
    sysinfo::MINIMUM_CPU_UPDATE_INTERVAL + Duration::from_millis(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn telemetry_can_move_between_threads() {
        // The desktop app keeps one Telemetry in shared state behind a mutex.
        assert_send::<Telemetry>();
    }

    #[test]
    fn first_sample_right_after_new_is_fast() {
        let started = Instant::now();
        let _ = probe();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "probe() must not wait for a CPU usage interval"
        );
    }
}
