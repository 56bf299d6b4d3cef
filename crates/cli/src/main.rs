//! `tunelab`: the command line over tunelab-api. Each subcommand unpacks its arguments, calls
//! one api function and prints the result (or JSON with `--json`).

mod bench;
mod chat;
mod compare;
mod data;
mod doctor;
mod eval;
mod export;
mod interrupt;
mod jobs;
mod kb;
mod models;
mod output;
mod settings;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tunelab_api::{ApiError, Workspace};

#[derive(Parser)]
#[command(
    name = "tunelab",
    version,
    about = "Make a language model your own, measured on your hardware"
)]
struct Cli {
    /// Workspace folder (models, runs, knowledge bases); default: TUNELAB_HOME or the platform data folder
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// CPU threads for tensor work (default: every logical CPU)
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Hardware, model cache and versions
    Doctor(doctor::Args),
    /// List, add, download and remove models
    #[command(subcommand)]
    Models(models::Command),
    /// Chat with a model: one answer with --prompt, otherwise an interactive session
    Chat(chat::Args),
    /// Measure speed on this machine
    #[command(subcommand)]
    Bench(bench::Command),
    /// Check training datasets
    #[command(subcommand)]
    Data(data::Command),
    /// Train a model on a dataset: LoRA or QLoRA adapters, a soft prompt, or every weight
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// Plan a run's memory before starting it
    #[command(subcommand)]
    Plan(train::PlanCommand),
    /// Score a model, a trained run, a knowledge base or a prompt template on an evaluation
    /// file; `eval list` and `eval show ID` read the results
    Eval(eval::Args),
    /// Compare the six methods on one task (TOML): each prepared, evaluated and costed the
    /// same way; `compare list` and `compare show ID` read the reports
    Compare(compare::Args),
    /// Export a model or a run's result as a PEFT adapter, a merged Hugging Face folder or a
    /// GGUF file (with --ollama, a Modelfile), checked against the model before it is kept
    Export(export::Args),
    /// Training runs: list them or show one
    #[command(subcommand)]
    Runs(train::RunsCommand),
    /// What is running in the workspace (training, knowledge base writes, downloads), from
    /// any process
    Jobs(jobs::Args),
    /// Knowledge bases: create, add documents, search; answer from them with `chat --kb`
    Kb(kb::Args),
    /// The workspace's settings: the device models run on unless a command says
    Settings(settings::Args),
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so a reader that closes the pipe early (`tunelab doctor | head`)
    // makes the next print panic with a backtrace. Take the default back, as Unix tools have it:
    // the process ends quietly. Everything a run writes to disk is written atomically and runs
    // resume, so ending between two prints loses nothing.
    #[cfg(unix)]
    // SAFETY: sets the disposition of one signal to its default, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    tunelab_api::configure_process(cli.threads);
    let result = Workspace::open(cli.home).and_then(|ws| match cli.command {
        Command::Doctor(args) => doctor::run(&ws, args),
        Command::Models(cmd) => models::run(&ws, cmd),
        Command::Chat(args) => chat::run(&ws, args),
        Command::Bench(cmd) => bench::run(&ws, cmd),
        Command::Data(cmd) => data::run(&ws, cmd),
        Command::Train(cmd) => train::run_train(&ws, cmd),
        Command::Plan(cmd) => train::run_plan(&ws, cmd),
        Command::Runs(cmd) => train::run_runs(&ws, cmd),
        Command::Eval(args) => eval::run(&ws, args),
        Command::Compare(args) => compare::run(&ws, args),
        Command::Export(args) => export::run(&ws, args),
        Command::Kb(cmd) => kb::run(&ws, cmd),
        Command::Jobs(args) => jobs::run(&ws, args),
        Command::Settings(args) => settings::run(&ws, args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::FAILURE
        }
    }
}

fn report(err: &ApiError) {
    eprintln!("error: {}", err.message);
}
