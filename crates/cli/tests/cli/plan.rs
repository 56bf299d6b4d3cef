//! `tunelab plan train` against the peak memory `tunelab bench train` measures, for every
//! training method with activation checkpointing on and off.

use crate::{json, tunelab};

#[test]
fn the_memory_plan_is_within_a_tenth_of_the_measured_peak_for_every_method() {
    // 2 × 256 tokens: a shape the plan's coefficients were not fitted on.
    let shape = ["--batch-size", "2", "--seq-len", "256"];
    let mut report = Vec::new();
    for method in ["lora", "qlora", "soft-prompt", "full", "pretrain"] {
        for checkpointing in [true, false] {
            let off = if checkpointing {
                None
            } else {
                Some("--no-checkpointing")
            };
            let plan_args: Vec<&str> = ["plan", "train", method]
                .into_iter()
                .chain(shape)
                .chain(off)
                .chain(["--json"])
                .collect();
            let plan = json(&tunelab(None, &plan_args));
            assert_eq!(plan["activation_checkpointing"], checkpointing);
            // Each measurement runs in a process of its own, so its peak RSS is the run's alone.
            let bench_args: Vec<&str> = ["bench", "train", "--method", method, "--steps", "1"]
                .into_iter()
                .chain(shape)
                .chain(off)
                .chain(["--device", "cpu", "--json"])
                .collect();
            let bench = json(&tunelab(None, &bench_args));
            assert_eq!(bench["activation_checkpointing"], checkpointing);
            if method != "pretrain" {
                assert_eq!(plan["trainable_parameters"], bench["trainable_parameters"]);
            }
            let planned = plan["estimate"]["total_bytes"].as_f64().unwrap();
            let measured = bench["peak_rss_bytes"].as_f64().unwrap();
            let error = (planned - measured) / measured;
            report.push(format!(
                "{method}, checkpointing {}: planned {:.0} MiB, measured {:.0} MiB ({:+.1}%)",
                if checkpointing { "on" } else { "off" },
                planned / 1048576.0,
                measured / 1048576.0,
                error * 100.0
            ));
            assert!(error.abs() <= 0.10, "{}", report.join("\n"));
        }
    }
    eprintln!("{}", report.join("\n"));
}
