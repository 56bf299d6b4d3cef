//! `tunelab data check`: every problem in a dataset file, located as `FILE:LINE`, then what the
//! usable rows hold.

use std::path::PathBuf;

use tunelab_api::chat::ModelCache;
use tunelab_api::data::{self, DataReport, DatasetFormat, ReadOptions, TextDocuments};
use tunelab_api::{ApiError, Result, Workspace};

use crate::output::print_json;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check a dataset: report every problem with its line, then statistics (exit code 1 when
    /// no row is usable)
    Check(CheckArgs),
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The dataset: .jsonl/.json (OpenAI messages, ShareGPT, Alpaca), .csv, .tsv or .txt
    file: PathBuf,
    /// Format instead of detecting it: alpaca, sharegpt, messages, csv, text
    #[arg(long, value_parser = parse_format)]
    format: Option<DatasetFormat>,
    /// Also tokenize every example with this registered model's chat template
    #[arg(long)]
    model: Option<String>,
    /// With --model: the most tokens one training example may have
    #[arg(long, default_value_t = 1024)]
    max_len: usize,
    /// CSV: the prompt column (default: prompt, else instruction)
    #[arg(long)]
    prompt_column: Option<String>,
    /// CSV: the response column (default: response, else output)
    #[arg(long)]
    response_column: Option<String>,
    /// Plain text: the whole file is one document (default: one per paragraph)
    #[arg(long)]
    whole_file: bool,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

fn parse_format(text: &str) -> std::result::Result<DatasetFormat, String> {
    text.parse()
}

pub fn run(ws: &Workspace, cmd: Command) -> Result<()> {
    match cmd {
        Command::Check(args) => check(ws, args),
    }
}

fn check(ws: &Workspace, args: CheckArgs) -> Result<()> {
    let options = ReadOptions {
        format: args.format,
        prompt_column: args.prompt_column,
        response_column: args.response_column,
        text_documents: if args.whole_file {
            TextDocuments::WholeFile
        } else {
            TextDocuments::Paragraphs
        },
    };
    let cache = ModelCache::default();
    let report = data::check_with_options(
        ws,
        &cache,
        &args.file,
        &options,
        args.model.as_deref(),
        args.max_len,
    )?;
    if args.json {
        print_json(&report)?;
    } else {
        print_report(&report, args.model.as_deref());
    }
    if report.rows_usable == 0 {
        return Err(ApiError::invalid(format!(
            "{}: no usable rows; fix the problems above",
            report.file
        )));
    }
    Ok(())
}

fn print_report(report: &DataReport, model: Option<&str>) {
    for issue in &report.issues {
        println!("{issue}");
    }
    if !report.issues.is_empty() {
        println!();
    }
    let format = report.format.map(|f| f.as_str()).unwrap_or("unknown");
    println!("{} ({format})", report.file);
    println!(
        "  rows: {} usable of {}",
        report.rows_usable, report.rows_total
    );
    let skipped = report.rows_total.saturating_sub(report.rows_usable);
    if skipped > 0 && report.rows_usable > 0 {
        println!(
            "  warning: {skipped} of {} rows skipped in training (see the problems above)",
            report.rows_total
        );
    }
    let roles = &report.roles;
    if roles.user + roles.assistant > 0 {
        println!(
            "  turns: {} system, {} user, {} assistant",
            roles.system, roles.user, roles.assistant
        );
    }
    if let (Some(tokens), Some(model)) = (&report.tokens, model) {
        println!(
            "  tokens with {model}: min {}, median {}, max {} (max length {})",
            tokens.min, tokens.median, tokens.max, tokens.max_len
        );
        println!(
            "  {} rows cut at the max length; {} tokens trained on",
            tokens.truncated, tokens.trainable_tokens
        );
    }
}
