//! `tunelab train lora|qlora` and `tunelab runs list|show`.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use tunelab_api::train::{
    self, ArtifactKind, EvalMetrics, Method, ProgressSink, RunConfig, StepMetrics,
};
use tunelab_api::{ApiError, Result, Workspace};

use crate::output::{bytes, print_json};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Registered model name
    #[arg(long)]
    model: Option<String>,
    /// Dataset file (Alpaca, ShareGPT, messages JSONL, CSV)
    #[arg(long)]
    data: Option<PathBuf>,
    /// A TOML file with any of the run's settings (flags override it)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run folder (default: a new folder under the workspace's runs/); an existing run resumes
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    max_steps: Option<u64>,
    #[arg(long)]
    epochs: Option<f64>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    seq_len: Option<usize>,
    #[arg(long)]
    rank: Option<usize>,
    #[arg(long)]
    alpha: Option<f64>,
    /// Soft prompt: number of virtual tokens (default 20)
    #[arg(long)]
    virtual_tokens: Option<usize>,
    /// Soft prompt: start from this text's token embeddings instead of random vocabulary rows
    #[arg(long)]
    init_text: Option<String>,
    /// Pretraining: model size preset, 1m, 10m, 30m or 120m (default 10m)
    #[arg(long)]
    preset: Option<String>,
    /// Pretraining: vocabulary of the new tokenizer (default: the preset's)
    #[arg(long)]
    vocab_size: Option<usize>,
    /// Pretraining: continue pretraining --model on the text instead of starting from scratch
    #[arg(long)]
    continued: bool,
    /// Keep every block's activations for backward: faster, far more memory
    #[arg(long)]
    no_checkpointing: bool,
    /// Where to train: auto (the first GPU of a build with CUDA, else the CPU), cpu, cuda or
    /// cuda:N; the --config file's or the workspace's setting (`tunelab settings`) when absent
    #[arg(long)]
    device: Option<tunelab_api::DeviceChoice>,
    /// Start even when the memory plan says the run will not fit
    #[arg(long)]
    force: bool,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
pub enum TrainCommand {
    /// LoRA adapters over the base model in 32-bit floats
    Lora(TrainArgs),
    /// LoRA adapters over the base model kept in 4-bit blocks (less memory)
    Qlora(TrainArgs),
    /// A soft prompt: trained virtual token embeddings, every model weight frozen
    SoftPrompt(TrainArgs),
    /// Full fine-tuning: every weight trained; the result is a Hugging Face model folder
    Full(TrainArgs),
    /// Pretraining on plain text: a new tokenizer and model from scratch (--preset), or
    /// continued pretraining of --model (--continued)
    Pretrain(TrainArgs),
}

impl TrainCommand {
    fn split(self) -> (Method, TrainArgs) {
        match self {
            TrainCommand::Lora(a) => (Method::Lora, a),
            TrainCommand::Qlora(a) => (Method::Qlora, a),
            TrainCommand::SoftPrompt(a) => (Method::SoftPrompt, a),
            TrainCommand::Full(a) => (Method::Full, a),
            TrainCommand::Pretrain(a) => (Method::Pretrain, a),
        }
    }
}

#[derive(clap::Subcommand)]
pub enum PlanCommand {
    /// The peak memory a training run would need, set against the free memory, with what to
    /// change when it does not fit. Takes the same options as `tunelab train`.
    #[command(subcommand)]
    Train(TrainCommand),
}

#[derive(clap::Subcommand)]
pub enum RunsCommand {
    /// Training runs in the workspace, newest first
    List {
        #[arg(long)]
        json: bool,
    },
    /// One run's configuration and results
    Show {
        /// Run id (from `tunelab runs list`) or run folder
        run: String,
        #[arg(long)]
        json: bool,
    },
}

fn resolve_config(
    ws: &Workspace,
    method: Method,
    args: &TrainArgs,
    need_data: bool,
) -> Result<RunConfig> {
    // The device: --device, else the --config file's, else the workspace's setting.
    let mut device_in_file = false;
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ApiError::io(path, e))?;
            let mut config = toml::from_str::<RunConfig>(&text)
                .map_err(|e| ApiError::invalid(format!("{}: {e}", path.display())))?;
            // A learning rate the file leaves out is the method's own default.
            let table: toml::Table = text
                .parse()
                .map_err(|e| ApiError::invalid(format!("{}: {e}", path.display())))?;
            let lr_given = table.get("train").and_then(|t| t.get("lr")).is_some();
            if !lr_given {
                config.train.lr = method.default_lr();
            }
            device_in_file = table.contains_key("device");
            config
        }
        None => RunConfig::for_method(method),
    };
    config.method = method;
    if let Some(m) = &args.model {
        config.model = m.clone();
    }
    if let Some(d) = &args.data {
        config.data = d.clone();
    }
    if config.data.as_os_str().is_empty() {
        if need_data {
            return Err(ApiError::invalid(
                "no dataset: pass --data FILE (or `data` in the --config file)",
            ));
        }
    } else {
        config.data =
            std::fs::canonicalize(&config.data).map_err(|e| ApiError::io(&config.data, e))?;
    }
    let t = &mut config.train;
    t.max_steps = args.max_steps.unwrap_or(t.max_steps);
    t.epochs = args.epochs.unwrap_or(t.epochs);
    t.lr = args.lr.unwrap_or(t.lr);
    t.batch_size = args.batch_size.unwrap_or(t.batch_size);
    config.seq_len = args.seq_len.unwrap_or(config.seq_len);
    config.lora.rank = args.rank.unwrap_or(config.lora.rank);
    config.lora.alpha = args.alpha.unwrap_or(config.lora.alpha);
    if args.no_checkpointing {
        config.train.activation_checkpointing = false;
    }
    config.device = match args.device {
        Some(device) => device,
        None if device_in_file => config.device,
        None => tunelab_api::settings::load(ws)?.device,
    };
    let pt = &mut config.pretrain;
    if let Some(preset) = &args.preset {
        pt.preset = train::Preset::parse(preset)?;
    }
    pt.vocab_size = args.vocab_size.or(pt.vocab_size);
    if args.continued {
        pt.from_scratch = false;
    }
    let sp = &mut config.soft_prompt;
    sp.num_virtual_tokens = args.virtual_tokens.unwrap_or(sp.num_virtual_tokens);
    if args.init_text.is_some() {
        sp.init_text = args.init_text.clone();
    }
    Ok(config)
}

pub fn run_plan(ws: &Workspace, cmd: PlanCommand) -> Result<()> {
    let PlanCommand::Train(cmd) = cmd;
    let (method, args) = cmd.split();
    let config = resolve_config(ws, method, &args, false)?;
    let plan = tunelab_api::plan::train(ws, &config)?;
    if args.json {
        return print_json(&plan);
    }
    let e = &plan.estimate;
    println!(
        "{} on {}, batch {} x {} tokens, activation checkpointing {}, on {}",
        plan.method.as_str(),
        plan.model,
        plan.batch_size,
        plan.seq_len,
        if plan.activation_checkpointing {
            "on"
        } else {
            "off"
        },
        plan.device
    );
    for (part, value) in [
        ("weights", e.weights_bytes),
        ("trainable + optimizer", e.trainable_bytes),
        ("kept activations", e.activations_bytes),
        ("working memory", e.working_bytes),
        ("runtime", e.runtime_bytes),
    ] {
        println!("  {part:<22}{:>10}", bytes(value));
    }
    println!("  {:<22}{:>10}", "peak (estimate)", bytes(e.total_bytes));
    match plan.available_bytes {
        Some(free) => println!(
            "  {:<22}{:>10}  -> {}",
            "free now",
            bytes(free),
            if plan.fits { "fits" } else { "does not fit" }
        ),
        None => println!("  free memory unknown"),
    }
    for line in &plan.advice {
        println!("  - {line}");
    }
    Ok(())
}

pub fn run_train(ws: &Workspace, cmd: TrainCommand) -> Result<()> {
    let (method, args) = cmd.split();
    let config = resolve_config(ws, method, &args, true)?;
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| ws.runs_dir().join(train::new_run_id(&config)));
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut sink = BarSink { bar: bar.clone() };
    let options = train::RunOptions { force: args.force };
    let summary = train::run_with(
        ws,
        &config,
        &dir,
        &mut sink,
        &crate::interrupt::flag(),
        options,
    );
    bar.finish_and_clear();
    let summary = summary?;
    if args.json {
        return print_json(&summary);
    }
    println!(
        "Run {} {} after {} steps in {:.0} s",
        summary.id,
        summary.status.as_str(),
        summary.steps,
        summary.wall_time_s
    );
    if let Some(previous) = &summary.took_over_from {
        println!(
            "  continued from the last checkpoint of {} (pid {}), which was stopped without finishing",
            previous.program, previous.pid
        );
    }
    println!(
        "  loss {}  validation loss {}  validation perplexity {}",
        fmt_opt(summary.final_loss),
        fmt_opt(summary.val_loss),
        fmt_opt(summary.val_perplexity)
    );
    println!(
        "  {} tokens seen, {} trainable parameters, peak memory {}",
        summary.tokens_seen,
        summary.trainable_parameters,
        summary
            .peak_rss_bytes
            .map(bytes)
            .unwrap_or_else(|| "-".into())
    );
    let kind = summary.method.recipe().artifact();
    println!("  {}: {}", kind.describe(), summary.artifact.display());
    match kind {
        ArtifactKind::Model => {
            println!("  chat with it:   tunelab chat --adapter {}", summary.id)
        }
        _ => println!(
            "  chat with it:   tunelab chat --model {} --adapter {}",
            summary.model, summary.id
        ),
    }
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into())
}

pub fn run_runs(ws: &Workspace, cmd: RunsCommand) -> Result<()> {
    match cmd {
        RunsCommand::List { json } => {
            if json {
                let rows: Vec<_> = train::list(ws)?
                    .iter()
                    .map(|(id, config, summary)| {
                        let dir = ws.runs_dir().join(id);
                        let mut row = run_json(&dir, config, summary.as_ref());
                        row["id"] = serde_json::json!(id);
                        row
                    })
                    .collect();
                return print_json(&rows);
            }
            let items = tunelab_api::runs::list(ws)?;
            if items.is_empty() {
                println!("No runs yet. Start one with `tunelab train lora --data FILE`.");
            }
            for item in &items {
                let loss = fmt_opt(item.val_loss.or(item.final_loss));
                println!(
                    "{:<48} {:<6} {:<24} {:<11} steps {:>5}  loss {loss}",
                    item.id,
                    item.method.as_str(),
                    item.model,
                    item.status.as_str(),
                    item.steps,
                );
                if let Some(h) = &item.holder {
                    println!("    training in {} (pid {})", h.program, h.pid);
                }
                if let Some(e) = &item.error {
                    println!("    failed: {}", e.message);
                }
            }
            Ok(())
        }
        RunsCommand::Show { run, json } => {
            let dir = if PathBuf::from(&run).is_dir() {
                PathBuf::from(&run)
            } else {
                ws.runs_dir().join(&run)
            };
            let (config, summary) = train::show(&dir)?;
            let state = train::state(&dir, summary.as_ref());
            if json {
                return print_json(&run_json(&dir, &config, summary.as_ref()));
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&config).expect("config serializes")
            );
            if let Some(s) = &summary {
                println!(
                    "{}",
                    serde_json::to_string_pretty(s).expect("summary serializes")
                );
            }
            let status = state.status.as_str();
            match (&state.holder, &state.error) {
                (Some(h), _) => println!("{status}: training in {} (pid {})", h.program, h.pid),
                (_, Some(e)) => println!("{status}: {}", e.message),
                _ => println!("{status}"),
            }
            if state.can_resume {
                println!(
                    "run the same `tunelab train` command with --out {} to resume it",
                    dir.display()
                );
            }
            Ok(())
        }
    }
}

/// A run as `runs list --json` and `runs show --json` print it: where it stands, its
/// configuration and its summary.
fn run_json(
    dir: &Path,
    config: &RunConfig,
    summary: Option<&train::RunSummary>,
) -> serde_json::Value {
    let state = train::state(dir, summary);
    serde_json::json!({
        "status": state.status,
        "can_resume": state.can_resume,
        "holder": state.holder,
        "error": state.error,
        "config": config,
        "summary": summary,
    })
}

/// Shows training progress as a bar with loss, learning rate and speed.
struct BarSink {
    bar: ProgressBar,
}

impl ProgressSink for BarSink {
    fn step(&mut self, m: &StepMetrics) {
        self.bar.set_length(m.total_steps);
        self.bar.set_position(m.step);
        self.bar.set_message(format!(
            "loss {:.4} lr {:.1e} {:.0} tok/s",
            m.loss, m.lr, m.tokens_per_s
        ));
    }

    fn eval(&mut self, m: &EvalMetrics) {
        self.bar.println(format!(
            "step {}: validation loss {:.4}",
            m.step, m.val_loss
        ));
    }
}
