//! Human-readable lines for `tunelab doctor`.

use crate::{CpuInfo, GpuInfo, HardwareReport, MemoryInfo};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

impl HardwareReport {
    /// One line per GPU (or the note explaining why there is none), then the driver, CPU and
    /// RAM, e.g. `GPU 0: NVIDIA GeForce RTX 4090, 24.0 GiB (20.1 GiB free), 35 °C, 60/450 W,
    /// compute capability 8.9`.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.gpus.iter().map(gpu_line).collect();
        if let Some(note) = &self.gpu_note {
            lines.push(note.clone());
        }
        if let Some(driver) = driver_line(self) {
            lines.push(driver);
        }
        lines.push(cpu_line(&self.cpu));
        lines.push(memory_line(&self.memory));
        lines
    }
}

fn gpu_line(gpu: &GpuInfo) -> String {
    let mut parts = vec![format!(
        "{} ({} free)",
        gib(gpu.memory_total_bytes),
        gib(gpu.memory_free_bytes)
    )];
    if let Some(busy) = gpu.utilization_percent {
        parts.push(format!("{busy}% busy"));
    }
    if let Some(temperature) = gpu.temperature_c {
        parts.push(format!("{temperature} °C"));
    }
    match (gpu.power_draw_watts, gpu.power_limit_watts) {
        (Some(draw), Some(limit)) => parts.push(format!("{draw:.0}/{limit:.0} W")),
        (Some(draw), None) => parts.push(format!("{draw:.0} W")),
        (None, Some(limit)) => parts.push(format!("{limit:.0} W limit")),
        (None, None) => {}
    }
    if let Some(cap) = &gpu.compute_capability {
        parts.push(format!("compute capability {cap}"));
    }
    format!("GPU {}: {}, {}", gpu.index, gpu.name, parts.join(", "))
}

fn driver_line(report: &HardwareReport) -> Option<String> {
    match (&report.driver_version, &report.cuda_version) {
        (Some(driver), Some(cuda)) => Some(format!("NVIDIA driver {driver}, CUDA {cuda}")),
        (Some(driver), None) => Some(format!("NVIDIA driver {driver}")),
        (None, Some(cuda)) => Some(format!("CUDA {cuda}")),
        (None, None) => None,
    }
}

fn cpu_line(cpu: &CpuInfo) -> String {
    let logical = cpu.logical_cores;
    let cores = match cpu.physical_cores {
        Some(physical) if physical != logical => {
            format!(
                "{} {}, {logical} threads",
                physical,
                plural(physical, "core", "cores")
            )
        }
        _ => format!("{logical} {}", plural(logical, "core", "cores")),
    };
    match cpu.utilization_percent {
        Some(busy) => format!("CPU: {}, {cores}, {busy:.0}% busy", cpu.model),
        None => format!("CPU: {}, {cores}", cpu.model),
    }
}

fn memory_line(memory: &MemoryInfo) -> String {
    format!(
        "RAM: {} total, {} available",
        gib(memory.total_bytes),
        gib(memory.available_bytes)
    )
}

fn gib(bytes: u64) -> String {
    // u64 to f64 loses precision only far beyond any real memory size.
    format!("{:.1} GiB", bytes as f64 / GIB)
}

fn plural<'a>(n: u32, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(gpus: Vec<GpuInfo>, note: Option<&str>) -> HardwareReport {
        HardwareReport {
            gpus,
            gpu_note: note.map(str::to_owned),
            driver_version: None,
            cuda_version: None,
            cpu: CpuInfo {
                model: "AMD EPYC".into(),
                physical_cores: None,
                logical_cores: 2,
                utilization_percent: None,
                instruction_sets: crate::InstructionSets {
                    present: vec!["avx2".into(), "fma".into()],
                    required: vec!["avx2".into(), "fma".into()],
                    checked_at_start: true,
                },
            },
            memory: MemoryInfo {
                total_bytes: 25_125_558_272,
                available_bytes: 23_729_094_246,
                used_bytes: 1_396_464_026,
            },
        }
    }

    fn rtx_4090() -> GpuInfo {
        GpuInfo {
            index: 0,
            name: "NVIDIA GeForce RTX 4090".into(),
            uuid: Some("GPU-1234".into()),
            memory_total_bytes: 24 * 1024 * 1024 * 1024,
            memory_used_bytes: 3 * 1024 * 1024 * 1024,
            memory_free_bytes: 21_582_313_882,
            utilization_percent: None,
            temperature_c: Some(35),
            power_draw_watts: Some(60.2),
            power_limit_watts: Some(450.0),
            compute_capability: Some("8.9".into()),
        }
    }

    #[test]
    fn gpu_line_reads_like_the_doctor_output() {
        let mut full = report(vec![rtx_4090()], None);
        full.driver_version = Some("550.54.14".into());
        full.cuda_version = Some("12.4".into());
        assert_eq!(
            full.summary_lines(),
            vec![
                "GPU 0: NVIDIA GeForce RTX 4090, 24.0 GiB (20.1 GiB free), 35 °C, 60/450 W, compute capability 8.9",
                "NVIDIA driver 550.54.14, CUDA 12.4",
                "CPU: AMD EPYC, 2 cores",
                "RAM: 23.4 GiB total, 22.1 GiB available",
            ]
        );
    }

    #[test]
    fn without_a_gpu_the_note_takes_its_place() {
        let note =
            "No NVIDIA driver found (NVML could not be loaded); training and chat run on the CPU.";
        let lines = report(Vec::new(), Some(note)).summary_lines();
        assert_eq!(lines.len(), 3, "note, CPU and RAM: {lines:?}");
        assert_eq!(lines[0], note);
    }

    #[test]
    fn cpu_line_shows_threads_and_load_when_known() {
        let mut cpu = report(Vec::new(), None).cpu;
        cpu.model = "AMD Ryzen 9 7950X 16-Core Processor".into();
        cpu.physical_cores = Some(16);
        cpu.logical_cores = 32;
        cpu.utilization_percent = Some(12.4);
        assert_eq!(
            cpu_line(&cpu),
            "CPU: AMD Ryzen 9 7950X 16-Core Processor, 16 cores, 32 threads, 12% busy"
        );
        cpu.physical_cores = Some(1);
        cpu.logical_cores = 1;
        cpu.utilization_percent = None;
        assert_eq!(
            cpu_line(&cpu),
            "CPU: AMD Ryzen 9 7950X 16-Core Processor, 1 core"
        );
    }

    #[test]
    fn missing_gpu_readings_are_left_out() {
        let mut gpu = rtx_4090();
        gpu.temperature_c = None;
        gpu.power_draw_watts = None;
        gpu.utilization_percent = Some(97);
        gpu.compute_capability = None;
        assert_eq!(
            gpu_line(&gpu),
            "GPU 0: NVIDIA GeForce RTX 4090, 24.0 GiB (20.1 GiB free), 97% busy, 450 W limit"
        );
    }
}
