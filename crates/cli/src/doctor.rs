//! `tunelab doctor`

use tunelab_api::{Result, Workspace};

use crate::output::{bytes, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub fn run(ws: &Workspace, args: Args) -> Result<()> {
    let report = tunelab_api::doctor(ws)?;
    if args.json {
        return print_json(&report);
    }
    println!("Tunelab {}", report.app.version);
    println!("Workspace: {}", report.app.workspace_dir);
    for line in report.hardware.summary_lines() {
        println!("{line}");
    }
    println!(
        "Tensor threads: {}{}",
        report.cpu_threads,
        if report.cuda_build {
            " (CUDA build)"
        } else {
            ""
        }
    );
    let sets = &report.hardware.cpu.instruction_sets;
    println!("CPU kernels: {}", report.cpu_kernels);
    if !sets.required.is_empty() {
        println!(
            "  Built for: {} ({})",
            sets.required.join(", "),
            if sets.checked_at_start {
                "this CPU has them all, checked at start"
            } else {
                "not checked at start"
            }
        );
    }
    let t = &report.training_device;
    println!("Training and chat run on: {} ({})", t.device, t.precision);
    if let (Some(problem), Some(fix)) = (&t.problem, &t.fix) {
        println!("  The GPU is not used: {problem}.\n  Fix: {fix}");
    }
    println!("Models ({}):", report.models.len());
    if report.models.is_empty() {
        println!("  none yet: `tunelab models defaults` downloads the default models; `tunelab models add PATH` adds your own");
    }
    for m in &report.models {
        match &m.problem {
            Some(problem) => println!("  {:<28} PROBLEM: {problem}", m.name),
            None => println!(
                "  {:<28} {:<9} {:<6} {}",
                m.name,
                format!("{:?}", m.role).to_lowercase(),
                m.quantization.as_deref().unwrap_or("-"),
                bytes(m.size_bytes)
            ),
        }
    }
    Ok(())
}
