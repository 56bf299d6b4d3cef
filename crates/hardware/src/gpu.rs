//! NVIDIA GPUs, read through NVML. The library is opened at run time, so a machine without the
//! NVIDIA driver simply reports no GPUs and a note saying why.

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::GpuInfo;

const CPU_FALLBACK: &str = "training and chat run on the CPU";

/// The NVML handle, or the sentence explaining why there is none.
pub(crate) struct Gpus {
    nvml: Result<Nvml, String>,
}

/// What one read of NVML found.
pub(crate) struct GpuSnapshot {
    pub(crate) gpus: Vec<GpuInfo>,
    pub(crate) note: Option<String>,
    pub(crate) driver_version: Option<String>,
    pub(crate) cuda_version: Option<String>,
}

impl Gpus {
    pub(crate) fn open() -> Gpus {
        Gpus {
            nvml: Nvml::init().map_err(|e| init_failure_note(&e)),
        }
    }

    pub(crate) fn is_loaded(&self) -> bool {
        self.nvml.is_ok()
    }

    pub(crate) fn read(&self) -> GpuSnapshot {
        let nvml = match &self.nvml {
            Ok(nvml) => nvml,
            Err(note) => {
                return GpuSnapshot {
                    gpus: Vec::new(),
                    note: Some(note.clone()),
                    driver_version: None,
                    cuda_version: None,
                }
            }
        };
        let driver_version = nvml.sys_driver_version().ok();
        let cuda_version = nvml
            .sys_cuda_driver_version()
            .ok()
            .and_then(format_cuda_version);
        let (gpus, note) = read_devices(nvml);
        GpuSnapshot {
            gpus,
            note,
            driver_version,
            cuda_version,
        }
    }
}

/// Reads every device NVML knows about; a device that cannot be opened is left out and named in
/// the note.
fn read_devices(nvml: &Nvml) -> (Vec<GpuInfo>, Option<String>) {
    let count = match nvml.device_count() {
        Ok(count) => count,
        Err(e) => {
            let note = format!("NVML loaded but could not count the GPUs ({e}); {CPU_FALLBACK}.");
            return (Vec::new(), Some(note));
        }
    };
    if count == 0 {
        let note = format!("The NVIDIA driver is installed but reports no GPUs; {CPU_FALLBACK}.");
        return (Vec::new(), Some(note));
    }
    let mut gpus = Vec::new();
    let mut failures = Vec::new();
    for index in 0..count {
        match nvml.device_by_index(index) {
            Ok(device) => gpus.push(read_device(index, &device)),
            Err(e) => failures.push(format!("GPU {index}: {e}")),
        }
    }
    let note = if failures.is_empty() {
        None
    } else if gpus.is_empty() {
        Some(format!(
            "NVML found {count} GPU(s) but could not open any ({}); {CPU_FALLBACK}.",
            failures.join("; ")
        ))
    } else {
        Some(format!(
            "Some GPUs could not be opened and are left out ({}).",
            failures.join("; ")
        ))
    };
    (gpus, note)
}

/// Reads one device; each reading that fails on its own becomes `None` (or 0 for memory).
fn read_device(index: u32, device: &Device<'_>) -> GpuInfo {
    let name = device
        .name()
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("NVIDIA GPU {index}"));
    let (memory_total_bytes, memory_used_bytes, memory_free_bytes) = match device.memory_info() {
        Ok(m) => (m.total, m.used.min(m.total), m.free.min(m.total)),
        Err(_) => (0, 0, 0),
    };
    let power_limit_mw = device
        .enforced_power_limit()
        .or_else(|_| device.power_management_limit())
        .ok();
    GpuInfo {
        index,
        name,
        uuid: device.uuid().ok().filter(|u| !u.is_empty()),
        memory_total_bytes,
        memory_used_bytes,
        memory_free_bytes,
        utilization_percent: device.utilization_rates().ok().map(|u| u.gpu.min(100)),
        temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
        power_draw_watts: device.power_usage().ok().map(milliwatts_to_watts),
        power_limit_watts: power_limit_mw.map(milliwatts_to_watts),
        compute_capability: device
            .cuda_compute_capability()
            .ok()
            .map(|c| format!("{}.{}", c.major, c.minor)),
    }
}

fn milliwatts_to_watts(milliwatts: u32) -> f64 {
    f64::from(milliwatts) / 1000.0
}

/// NVML encodes CUDA 12.4 as 12040.
fn format_cuda_version(raw: i32) -> Option<String> {
    if raw <= 0 {
        return None;
    }
    let major = nvml_wrapper::cuda_driver_version_major(raw);
    let minor = nvml_wrapper::cuda_driver_version_minor(raw);
    Some(format!("{major}.{minor}"))
}

/// One sentence for the report when NVML cannot start.
fn init_failure_note(error: &NvmlError) -> String {
    match error {
        NvmlError::LibloadingError(_)
        | NvmlError::FailedToLoadSymbol(_)
        | NvmlError::LibraryNotFound => {
            format!("No NVIDIA driver found (NVML could not be loaded); {CPU_FALLBACK}.")
        }
        NvmlError::DriverNotLoaded => {
            format!("The NVIDIA driver is installed but not loaded; {CPU_FALLBACK}.")
        }
        NvmlError::NoPermission => {
            format!("No permission to query the NVIDIA driver through NVML; {CPU_FALLBACK}.")
        }
        other => format!("NVML could not start ({other}); {CPU_FALLBACK}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_versions_read_as_major_dot_minor() {
        assert_eq!(format_cuda_version(12040).as_deref(), Some("12.4"));
        assert_eq!(format_cuda_version(11080).as_deref(), Some("11.8"));
        assert_eq!(format_cuda_version(12000).as_deref(), Some("12.0"));
        assert_eq!(format_cuda_version(0), None, "0 means no CUDA driver");
    }

    #[test]
    fn init_failure_notes_are_one_sentence_that_mentions_the_cpu() {
        for error in [
            NvmlError::LibraryNotFound,
            NvmlError::DriverNotLoaded,
            NvmlError::NoPermission,
            NvmlError::Unknown,
        ] {
            let note = init_failure_note(&error);
            assert!(
                note.contains("CPU"),
                "note for {error:?} should say the CPU is used: {note}"
            );
            assert!(
                note.ends_with('.'),
                "note should be a full sentence: {note}"
            );
        }
    }

    #[test]
    fn power_is_reported_in_watts() {
        assert_eq!(milliwatts_to_watts(450_000), 450.0);
        assert_eq!(milliwatts_to_watts(60_500), 60.5);
    }
}

/// Repeated readings of one GPU while work runs on it: memory in use, the energy counter and
/// utilisation. Opens NVML once; each reading is one driver call.
pub struct GpuMeter {
    nvml: Nvml,
    index: u32,
}

impl GpuMeter {
    /// The meter of GPU `index` (NVML's numbering), or `None` without a driver or that GPU.
    pub fn open(index: u32) -> Option<GpuMeter> {
        let nvml = Nvml::init().ok()?;
        nvml.device_by_index(index).ok()?;
        Some(GpuMeter { nvml, index })
    }

    fn device(&self) -> Option<Device<'_>> {
        self.nvml.device_by_index(self.index).ok()
    }

    /// Bytes of the GPU's memory in use, by every process.
    pub fn memory_used_bytes(&self) -> Option<u64> {
        Some(self.device()?.memory_info().ok()?.used)
    }

    /// Energy the GPU has used since the driver loaded, in joules (Volta and newer).
    pub fn energy_joules(&self) -> Option<f64> {
        Some(self.device()?.total_energy_consumption().ok()? as f64 / 1000.0)
    }

    /// Share of the last sample period in which a kernel ran, 0 to 100.
    pub fn utilization_percent(&self) -> Option<u32> {
        Some(self.device()?.utilization_rates().ok()?.gpu)
    }

    /// Everything the Home card shows of this GPU, read now: memory, utilisation,
    /// temperature and power.
    pub fn info(&self) -> Option<GpuInfo> {
        Some(read_device(self.index, &self.device()?))
    }
}

/// What a piece of work cost one GPU, from start to finish: its memory at the highest (every
/// process's, sampled), how busy it was and the energy it used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct GpuCost {
    /// NVML's index of the GPU.
    pub gpu: u32,
    #[ts(type = "number")]
    pub peak_memory_bytes: u64,
    /// Mean of the utilisation readings, 0 to 100.
    pub mean_utilization_percent: Option<f64>,
    /// From the GPU's energy counter (Volta and newer); null where it has none.
    pub energy_joules: Option<f64>,
}

/// One reading of a GPU while work runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Reading {
    pub memory_used_bytes: Option<u64>,
    pub utilization_percent: Option<u32>,
    pub energy_joules: Option<f64>,
}

/// Reads `read` every `every` until `stop` is set, once more after, and sums the readings up.
pub(crate) fn record(
    gpu: u32,
    mut read: impl FnMut() -> Reading,
    stop: &std::sync::atomic::AtomicBool,
    every: std::time::Duration,
) -> GpuCost {
    let first = read();
    let (mut peak, mut busy, mut count) = (0u64, 0u64, 0u64);
    let mut take = |r: Reading| {
        peak = peak.max(r.memory_used_bytes.unwrap_or(0));
        if let Some(u) = r.utilization_percent {
            busy += u as u64;
            count += 1;
        }
        r
    };
    take(first);
    let last = loop {
        let stopping = stop.load(std::sync::atomic::Ordering::Relaxed);
        if !stopping {
            std::thread::sleep(every);
        }
        let reading = take(read());
        if stopping {
            break reading;
        }
    };
    GpuCost {
        gpu,
        peak_memory_bytes: peak,
        mean_utilization_percent: (count > 0).then(|| busy as f64 / count as f64),
        energy_joules: first
            .energy_joules
            .zip(last.energy_joules)
            .map(|(a, b)| (b - a).max(0.0)),
    }
}

/// Records a GPU's cost on a thread of its own while work runs: [`GpuRecorder::finish`] stops it
/// and returns what it saw; dropped without it (the work failed), the thread stops too.
pub struct GpuRecorder {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<GpuCost>>,
}

impl GpuRecorder {
    /// Starts recording GPU `index`, reading it every `every`; `None` without NVML or that GPU.
    pub fn start(index: u32, every: std::time::Duration) -> Option<GpuRecorder> {
        let meter = GpuMeter::open(index)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let read = || Reading {
                memory_used_bytes: meter.memory_used_bytes(),
                utilization_percent: meter.utilization_percent(),
                energy_joules: meter.energy_joules(),
            };
            record(index, read, &flag, every)
        });
        Some(GpuRecorder {
            stop,
            handle: Some(handle),
        })
    }

    pub fn finish(mut self) -> Option<GpuCost> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take()?.join().ok()
    }
}

impl Drop for GpuRecorder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod recorder_tests {
    use super::*;

    #[test]
    fn a_recording_keeps_the_peak_the_mean_use_and_the_energy_between_first_and_last() {
        let readings = [(2u64, 10u32, 100.0), (7, 90, 130.0), (5, 50, 160.0)];
        let mut i = 0;
        let stop = std::sync::atomic::AtomicBool::new(false);
        let cost = record(
            1,
            || {
                let (m, u, e) = readings[i.min(readings.len() - 1)];
                i += 1;
                if i == readings.len() {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Reading {
                    memory_used_bytes: Some(m << 30),
                    utilization_percent: Some(u),
                    energy_joules: Some(e),
                }
            },
            &stop,
            std::time::Duration::from_millis(1),
        );
        assert_eq!(cost.gpu, 1);
        assert_eq!(cost.peak_memory_bytes, 7 << 30);
        // Three readings, then one more once stopped (the last again).
        assert_eq!(
            cost.mean_utilization_percent,
            Some((10.0 + 90.0 + 50.0 + 50.0) / 4.0)
        );
        assert_eq!(cost.energy_joules, Some(60.0));
        let none = record(
            0,
            Reading::default,
            &std::sync::atomic::AtomicBool::new(true),
            std::time::Duration::ZERO,
        );
        assert_eq!(
            (
                none.peak_memory_bytes,
                none.mean_utilization_percent,
                none.energy_joules
            ),
            (0, None, None)
        );
    }
}
