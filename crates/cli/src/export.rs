//! `tunelab export`: a model or a run's result as a PEFT adapter, a merged Hugging Face folder
//! or a GGUF file (with an Ollama Modelfile), checked against the model before it is kept;
//! `tunelab export --check DIR` checks an export again.

use std::path::PathBuf;

use tunelab_api::export::{
    self, ExportCheck, ExportEvent, ExportFormat, ExportRequest, ExportStage,
};
use tunelab_api::{ApiError, ErrorCode, Result, Workspace};

use crate::output::{bytes, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// A run id (see `tunelab runs list`) or a registered model's name
    #[arg(required_unless_present = "check")]
    source: Option<String>,
    /// peft (a LoRA, QLoRA or soft-prompt run's adapter), merged (a LoRA run folded into
    /// its base, as a Hugging Face folder) or gguf (llama.cpp, Ollama, LM Studio)
    #[arg(long, value_parser = parse_format, default_value = "gguf")]
    format: ExportFormat,
    /// GGUF weights: f32, f16, q8_0 (default), q4_0, q4_1 or q4_k_m
    #[arg(long)]
    quant: Option<String>,
    /// Write an Ollama Modelfile next to the GGUF file
    #[arg(long)]
    ollama: bool,
    /// The folder to create (default: exports/<source>-<format>[-<quant>] in the workspace)
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Check an export folder again instead of writing one
    #[arg(long, value_name = "DIR", conflicts_with = "source")]
    check: Option<PathBuf>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

fn parse_format(text: &str) -> std::result::Result<ExportFormat, String> {
    match text {
        "peft" => Ok(ExportFormat::Peft),
        "merged" => Ok(ExportFormat::Merged),
        "gguf" => Ok(ExportFormat::Gguf),
        other => Err(format!("`{other}` is not a format: peft, merged or gguf")),
    }
}

pub fn run(ws: &Workspace, args: Args) -> Result<()> {
    if let Some(dir) = args.check {
        let check = export::verify(ws, &dir)?;
        return match args.json {
            true => print_json(&check),
            false => {
                print_check(&check);
                match check.passed {
                    true => Ok(()),
                    false => Err(ApiError::new(
                        ErrorCode::ExportCheckFailed,
                        format!("{} no longer matches the model it came from", dir.display()),
                    )),
                }
            }
        };
    }
    let request = ExportRequest {
        source: args.source.expect("clap requires a source without --check"),
        format: args.format,
        quant: args.quant,
        ollama: args.ollama,
        out: args.out,
    };
    let cancel = crate::interrupt::flag();
    let mut last_percent = None;
    let report = export::run(ws, &request, &cancel, &mut |event| match event {
        ExportEvent::Stage { stage } => eprintln!(
            "{}",
            match stage {
                ExportStage::Loading => "loading the model",
                ExportStage::Writing => "writing",
                ExportStage::Checking => "checking the export against the model",
            }
        ),
        ExportEvent::Written { done, total } => {
            let percent = done * 100 / total.max(1);
            if last_percent != Some(percent / 10) {
                last_percent = Some(percent / 10);
                eprintln!("  {done}/{total} tensors");
            }
        }
        // Listed with the report (a failed check names itself in the error).
        ExportEvent::Checked { .. } => {}
    })?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "exported {} as {}{} to {} in {:.1} s",
        report.source.run.as_deref().unwrap_or(&report.source.model),
        report.format.as_str(),
        report
            .quant
            .as_ref()
            .map(|q| format!(" ({q})"))
            .unwrap_or_default(),
        report.folder,
        report.wall_time_s
    );
    for file in &report.files {
        println!("  {:<40} {:>10}", file.name, bytes(file.bytes));
    }
    println!();
    print_check(&report.check);
    if let Some(command) = &report.ollama_create {
        println!();
        println!("for Ollama: {command}");
    }
    Ok(())
}

fn print_check(check: &ExportCheck) {
    println!(
        "check: {} (weights within {:.1e}, logits within {:.3} standard deviations, top token agrees at {:.1}%, {} of {} greedy tokens match)",
        if check.passed { "passed" } else { "FAILED" },
        check.max_weight_error,
        check.max_logit_error,
        check.top1_agreement * 100.0,
        check.greedy_matched,
        check.greedy_compared
    );
    for item in &check.items {
        println!(
            "  {} {:<16} {}",
            if item.passed { "ok  " } else { "FAIL" },
            item.check.as_str(),
            item.detail
        );
    }
}
