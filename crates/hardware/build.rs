//! On x86-64 Unix, links `csrc/cpu_check.c`: a check that runs before `main` and refuses, with a
//! sentence instead of an illegal instruction, a CPU that lacks an instruction set this build
//! was compiled for (`.cargo/config.toml` builds for x86-64-v3).

fn main() {
    println!("cargo:rerun-if-changed=csrc/cpu_check.c");
    println!("cargo:rerun-if-env-changed=CARGO_CFG_TARGET_FEATURE");
    // The check is written for GCC and Clang on Unix (cpuid.h, constructors, write(2)).
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86_64")
        || std::env::var("CARGO_CFG_TARGET_FAMILY").as_deref() != Ok("unix")
    {
        return;
    }
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let enabled: Vec<&str> = features.split(',').collect();
    let mut build = cc::Build::new();
    build.file("csrc/cpu_check.c");
    // The check itself must run on any x86-64 CPU: the C compiler's default target, with no
    // -march from the environment.
    build.flag_if_supported("-march=x86-64");
    for (feature, define) in [
        ("avx", "NEED_AVX"),
        ("avx2", "NEED_AVX2"),
        ("fma", "NEED_FMA"),
        ("f16c", "NEED_F16C"),
        ("bmi1", "NEED_BMI1"),
        ("bmi2", "NEED_BMI2"),
        ("lzcnt", "NEED_LZCNT"),
        ("movbe", "NEED_MOVBE"),
    ] {
        if enabled.contains(&feature) {
            build.define(define, None);
        }
    }
    build.compile("tunelab_cpu_check");
}
