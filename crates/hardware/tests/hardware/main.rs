//! Checks tunelab-hardware against the machine the tests run on. On a machine without an NVIDIA
//! driver (most CI runners) the GPU list must be empty and the note must say the CPU is used;
//! on a machine with one, each GPU must carry sane readings.

use tunelab_hardware::{current_rss_bytes, peak_rss_bytes, probe, HardwareReport, Telemetry};

#[test]
fn probe_sees_at_least_one_cpu_core_and_names_the_cpu() {
    let report = probe();
    assert!(
        report.cpu.logical_cores >= 1,
        "every machine that runs this test has at least one core: {:?}",
        report.cpu
    );
    if let Some(physical) = report.cpu.physical_cores {
        assert!(
            physical >= 1 && physical <= report.cpu.logical_cores,
            "physical cores cannot exceed hardware threads: {:?}",
            report.cpu
        );
    }
    assert!(
        !report.cpu.model.trim().is_empty(),
        "the CPU model should always be named (brand, vendor or a fallback)"
    );
}

#[test]
fn probe_reads_ram_sizes_that_fit_together() {
    let memory = probe().memory;
    assert!(
        memory.available_bytes > 0,
        "a running machine has some free RAM: {memory:?}"
    );
    assert!(
        memory.total_bytes > memory.available_bytes,
        "the OS and this test use some RAM, so total must exceed available: {memory:?}"
    );
    assert!(
        memory.used_bytes <= memory.total_bytes,
        "used RAM cannot exceed total RAM: {memory:?}"
    );
}

#[test]
fn gpus_are_either_absent_with_a_note_or_readable() {
    let report = probe();
    if report.gpus.is_empty() {
        let note = report.gpu_note.as_deref().unwrap_or_default();
        assert!(
            note.contains("CPU"),
            "with no GPU the note must tell the user that the CPU is used, got {:?}",
            report.gpu_note
        );
    }
    for gpu in &report.gpus {
        assert!(
            !gpu.name.is_empty(),
            "every GPU needs a display name: {gpu:?}"
        );
        assert!(
            gpu.memory_used_bytes <= gpu.memory_total_bytes
                && gpu.memory_free_bytes <= gpu.memory_total_bytes,
            "used and free GPU memory must each fit in the total: {gpu:?}"
        );
        if let Some(busy) = gpu.utilization_percent {
            assert!(busy <= 100, "GPU utilization is a percentage: {gpu:?}");
        }
    }
}

#[test]
fn summary_lines_cover_gpu_cpu_and_ram() {
    let report = probe();
    let lines = report.summary_lines();
    assert!(
        !lines.is_empty(),
        "`tunelab doctor` needs something to print"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("CPU: ")),
        "the summary should describe the CPU: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("RAM: ")),
        "the summary should describe the RAM: {lines:?}"
    );
    if report.gpus.is_empty() {
        let note = report.gpu_note.clone().unwrap_or_default();
        assert!(
            lines.contains(&note),
            "with no GPU the note should be printed: {lines:?}"
        );
    } else {
        assert!(
            lines.iter().any(|l| l.starts_with("GPU 0: ")),
            "each GPU should get a line: {lines:?}"
        );
    }
}

#[test]
fn telemetry_reports_cpu_utilization_from_the_second_sample_on() {
    let mut telemetry = Telemetry::new();
    let _first = telemetry.sample();
    for round in 2..=3 {
        let report = telemetry.sample();
        let busy = report.cpu.utilization_percent;
        assert!(
            matches!(busy, Some(p) if (0.0..=100.0).contains(&p)),
            "sample {round} should carry a CPU utilization between 0 and 100, got {busy:?}"
        );
    }
}

#[test]
fn rss_is_known_on_linux_and_peak_is_at_least_current() {
    if !cfg!(target_os = "linux") {
        assert_eq!(
            current_rss_bytes(),
            None,
            "RSS is only read from /proc on Linux"
        );
        return;
    }
    // Touch some memory first so both readings are clearly non-zero.
    let ballast = vec![1u8; 8 * 1024 * 1024];
    let current = current_rss_bytes().expect("/proc/self/status should have VmRSS on Linux");
    let peak = peak_rss_bytes().expect("/proc/self/status should have VmHWM on Linux");
    assert!(current > 0, "a running process holds some memory");
    assert!(
        peak >= current,
        "the high-water mark ({peak}) cannot be below the current RSS ({current})"
    );
    assert!(
        ballast.iter().all(|&b| b == 1),
        "keep the ballast alive until after reading"
    );
}

#[test]
fn report_serializes_with_the_documented_field_names() {
    let report: HardwareReport = probe();
    let json = serde_json::to_value(&report).expect("a HardwareReport always serializes");
    for key in [
        "gpus",
        "gpu_note",
        "driver_version",
        "cuda_version",
        "cpu",
        "memory",
    ] {
        assert!(
            json.get(key).is_some(),
            "the UI reads `{key}` from the report: {json}"
        );
    }
    for key in [
        "model",
        "physical_cores",
        "logical_cores",
        "utilization_percent",
    ] {
        assert!(
            json["cpu"].get(key).is_some(),
            "the UI reads `cpu.{key}`: {json}"
        );
    }
    for key in ["total_bytes", "available_bytes", "used_bytes"] {
        assert!(
            json["memory"][key].is_u64(),
            "`memory.{key}` should be a plain number: {json}"
        );
    }
    if let Some(gpu) = json["gpus"].as_array().and_then(|gpus| gpus.first()) {
        for key in [
            "index",
            "name",
            "uuid",
            "memory_total_bytes",
            "memory_used_bytes",
            "memory_free_bytes",
            "utilization_percent",
            "temperature_c",
            "power_draw_watts",
            "power_limit_watts",
            "compute_capability",
        ] {
            assert!(
                gpu.get(key).is_some(),
                "the UI reads `gpus[].{key}`: {json}"
            );
        }
    }
}
