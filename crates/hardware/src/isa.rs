//! The CPU's vector instruction sets: which it has, and which this build was compiled to
//! require. A program started on a CPU without those is stopped before `main` by
//! `csrc/cpu_check.c`, with a sentence instead of an illegal instruction.

use serde::Serialize;
use ts_rs::TS;

#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct InstructionSets {
    /// The sets the kernels care about that this CPU has, e.g. `["avx2", "fma", "avx512f"]`.
    pub present: Vec<String>,
    /// The sets this build's code was compiled to require; it does not start without them.
    pub required: Vec<String>,
    /// Whether the start-up check ran in this process and passed (false where there is none).
    pub checked_at_start: bool,
}

impl InstructionSets {
    pub fn has(&self, set: &str) -> bool {
        self.present.iter().any(|p| p == set)
    }
}

/// One list of the sets reported (those x86-64-v3 requires, then AVX-512's) makes both
/// questions asked of each: `is_x86_feature_detected!` and `cfg!` take their names as literals.
#[cfg(target_arch = "x86_64")]
macro_rules! reported_sets {
    ($($set:tt),* $(,)?) => {
        const SETS: &[&str] = &[$($set),*];

        /// Whether this CPU has `set`, of those [`SETS`] names.
        fn cpu_has(set: &str) -> bool {
            match set {
                $($set => std::arch::is_x86_feature_detected!($set),)*
                _ => false,
            }
        }

        /// Whether this code was compiled with `set`, of those [`SETS`] names.
        fn compiled_for(set: &str) -> bool {
            match set {
                $($set => cfg!(target_feature = $set),)*
                _ => false,
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
reported_sets!(
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi1",
    "bmi2",
    "lzcnt",
    "movbe",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512vnni",
);

#[cfg(target_arch = "x86_64")]
pub fn instruction_sets() -> InstructionSets {
    let named = |keep: fn(&str) -> bool| -> Vec<String> {
        SETS.iter()
            .filter(|s| keep(s))
            .map(|s| s.to_string())
            .collect()
    };
    InstructionSets {
        present: named(cpu_has),
        required: named(compiled_for),
        checked_at_start: start_check_passed(),
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub fn instruction_sets() -> InstructionSets {
    InstructionSets {
        present: Vec::new(),
        required: Vec::new(),
        checked_at_start: false,
    }
}

/// Whether the start-up check (`csrc/cpu_check.c`) ran in this process and found every
/// required set; false where there is no such check (other architectures, Windows).
fn start_check_passed() -> bool {
    #[cfg(all(target_arch = "x86_64", unix))]
    {
        extern "C" {
            static tunelab_cpu_check_passed: std::ffi::c_int;
        }
        // SAFETY: written once by the constructor before `main`, only read afterwards.
        unsafe { std::ptr::read_volatile(&raw const tunelab_cpu_check_passed) == 1 }
    }
    #[cfg(not(all(target_arch = "x86_64", unix)))]
    {
        false
    }
}

#[cfg(all(test, target_arch = "x86_64", unix))]
mod tests {
    use super::*;

    #[test]
    fn this_process_passed_the_start_up_check_for_what_it_was_built_for() {
        let s = instruction_sets();
        assert!(!s.required.is_empty(), "the build targets x86-64-v3: {s:?}");
        for required in &s.required {
            assert!(s.has(required), "{s:?}");
        }
        assert!(s.checked_at_start, "{s:?}");
    }
}
