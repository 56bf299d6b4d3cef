//! The host CPU and RAM, read through sysinfo.

use sysinfo::{CpuRefreshKind, System};

use crate::{CpuInfo, MemoryInfo};

/// A sysinfo `System`, or nothing where sysinfo does not support the platform.
pub(crate) struct Host {
    system: Option<System>,
}

impl Host {
    pub(crate) fn open() -> Host {
        Host {
            system: System::new().ok(),
        }
    }

    pub(crate) fn is_readable(&self) -> bool {
        self.system.is_some()
    }

    /// Reads CPU times (and, the first time, the CPU list). Returns whether anything was read.
    pub(crate) fn refresh_cpu(&mut self) -> bool {
        match &mut self.system {
            Some(system) => {
                system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
                true
            }
            None => false,
        }
    }

    pub(crate) fn refresh_memory(&mut self) {
        if let Some(system) = &mut self.system {
            system.refresh_memory();
        }
    }

    /// Average usage over all cores between the last two CPU readings, within 0..=100.
    pub(crate) fn cpu_usage(&self) -> Option<f32> {
        let system = self.system.as_ref()?;
        if system.cpus().is_empty() {
            return None;
        }
        let usage = system.global_cpu_usage();
        usage.is_finite().then(|| usage.clamp(0.0, 100.0))
    }

    pub(crate) fn cpu_info(&self, utilization_percent: Option<f32>) -> CpuInfo {
        let cpus = self.system.as_ref().map(|s| s.cpus()).unwrap_or_default();
        let model = cpus
            .iter()
            .map(|cpu| cpu.brand().trim())
            .find(|brand| !brand.is_empty())
            .or_else(|| {
                cpus.iter()
                    .map(|cpu| cpu.vendor_id().trim())
                    .find(|vendor| !vendor.is_empty())
            })
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Unknown {} CPU", std::env::consts::ARCH));
        let logical_cores = match u32::try_from(cpus.len()) {
            Ok(n) if n > 0 => n,
            _ => std::thread::available_parallelism()
                .ok()
                .and_then(|n| u32::try_from(n.get()).ok())
                .unwrap_or(1),
        };
        let physical_cores = System::physical_core_count()
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0);
        CpuInfo {
            model,
            physical_cores,
            logical_cores,
            utilization_percent,
            instruction_sets: crate::instruction_sets(),
        }
    }

    pub(crate) fn memory_info(&self) -> MemoryInfo {
        let Some(system) = &self.system else {
            return MemoryInfo {
                total_bytes: 0,
                available_bytes: 0,
                used_bytes: 0,
            };
        };
        let total_bytes = system.total_memory();
        // Some platforms report no "available" figure; free memory is the next best thing.
        let available_bytes = match system.available_memory() {
            0 => system.free_memory(),
            n => n,
        }
        .min(total_bytes);
        MemoryInfo {
            total_bytes,
            available_bytes,
            used_bytes: system.used_memory().min(total_bytes),
        }
    }
}
