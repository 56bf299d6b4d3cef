//! The start-up check of the CPU's instruction sets: a CPU without what the build was compiled
//! for gets a sentence and exit code 78, not an illegal instruction.
#![cfg(all(target_arch = "x86_64", unix))]

use std::process::Command;

use crate::json;

#[test]
fn a_cpu_without_the_instruction_sets_the_build_needs_is_refused_with_a_sentence() {
    let home = tempfile::tempdir().unwrap();
    let doctor = json(
        &Command::new(env!("CARGO_BIN_EXE_tunelab"))
            .args(["--home", home.path().to_str().unwrap(), "doctor", "--json"])
            .output()
            .unwrap(),
    );
    let sets = &doctor["hardware"]["cpu"]["instruction_sets"];
    assert_eq!(sets["checked_at_start"], true, "{sets}");
    let required: Vec<&str> = sets["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    // .cargo/config.toml builds for x86-64-v3.
    assert!(
        required.contains(&"avx2") && required.contains(&"fma"),
        "{sets}"
    );
    assert!(!doctor["cpu_kernels"].as_str().unwrap().is_empty());

    let out = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .env("TUNELAB_ASSUME_CPU_LACKS", "fma,avx2")
        .args(["--home", home.path().to_str().unwrap(), "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("tunelab: this build of Tunelab needs an x86-64-v3 CPU"),
        "{stderr}"
    );
    assert!(stderr.contains("this CPU lacks: avx2 fma."), "{stderr}");
    assert!(stderr.contains("target-cpu=native"), "{stderr}");

    // A set the build does not require is no reason to refuse.
    let out = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .env("TUNELAB_ASSUME_CPU_LACKS", "avx512f")
        .args(["--home", home.path().to_str().unwrap(), "doctor"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("CPU kernels: matrix products"), "{stdout}");
    // It holds Tunelab's own block kernels to AVX2, to measure that path on an AVX-512 CPU.
    assert!(
        stdout.contains("4- and 8-bit dot products AVX2 + FMA"),
        "{stdout}"
    );
}
