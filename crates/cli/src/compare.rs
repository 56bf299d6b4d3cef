//! `tunelab compare TASK.toml`: the six methods on one task, measured; `compare list` and
//! `compare show ID` read the reports.

use std::path::{Path, PathBuf};

use tunelab_api::chat::ModelCache;
use tunelab_api::compare::{self, CompareEvent, CompareReport, CompareRequest, MethodId, Preset};
use tunelab_api::eval::Caches;
use tunelab_api::knowledge::KnowledgeCache;
use tunelab_api::{ApiError, Result, Workspace};

use crate::output::{bytes, footprint, print_json};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand)]
enum Command {
    /// The workspace's comparisons, newest first
    List {
        #[arg(long)]
        json: bool,
    },
    /// One comparison's report
    Show {
        /// The task's name (see `tunelab compare list`) or the comparison's folder
        id: String,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(clap::Args)]
struct Output {
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// Also write the report as a web page that stands alone
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Also write one line per method as CSV
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The task file (TOML): base model, training set, evaluation set, documents, template;
    /// see docs/compare.md
    #[arg(value_name = "TASK.toml")]
    task: Option<PathBuf>,
    /// quick (minutes on a CPU) or thorough (several times the steps)
    #[arg(long, default_value = "quick")]
    preset: Preset,
    /// Only these methods, comma-separated: prompt, rag, soft-prompt, lora, full, pretrain
    #[arg(long, value_delimiter = ',')]
    methods: Vec<MethodId>,
    /// Where to train and answer: auto, cpu, cuda or cuda:N (default: the workspace's setting)
    #[arg(long)]
    device: Option<tunelab_api::DeviceChoice>,
    #[command(flatten)]
    output: Output,
}

pub fn run(ws: &Workspace, args: Args) -> Result<()> {
    match args.command {
        Some(Command::List { json }) => list(ws, json),
        Some(Command::Show { id, output }) => emit(&compare::show(ws, &id)?, &output),
        None => start(ws, args.run),
    }
}

fn start(ws: &Workspace, args: RunArgs) -> Result<()> {
    let task = args.task.ok_or_else(|| {
        ApiError::invalid("give the task file: `tunelab compare TASK.toml` (or `compare list`)")
    })?;
    let request = CompareRequest {
        task,
        preset: args.preset,
        methods: args.methods,
        device: args.device,
    };
    let (models, knowledge) = (ModelCache::default(), KnowledgeCache::on(args.device));
    let caches = Caches {
        models: &models,
        knowledge: &knowledge,
    };
    let cancel = crate::interrupt::flag();
    let mut last_progress = std::time::Instant::now();
    let report = compare::run(ws, &caches, &request, &cancel, &mut |event| match event {
        CompareEvent::Started { id, methods } => {
            let names: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
            eprintln!("comparing {} on {id}", names.join(", "));
        }
        CompareEvent::Stage { method, label, .. } => {
            eprintln!("{}: {label}", method.name());
        }
        CompareEvent::Progress { done, total, .. } => {
            // A line every few seconds is enough to see it move.
            if done == total || last_progress.elapsed().as_secs() >= 5 {
                last_progress = std::time::Instant::now();
                eprintln!("  {done}/{total}");
            }
        }
        CompareEvent::Finished { result } => match &result.error {
            Some(error) => eprintln!("{}: failed: {}", result.name, error.message),
            None => eprintln!("{}: {}", result.name, result.status.as_str()),
        },
        CompareEvent::DataPoint { method, point } => {
            let share = point.fraction * 100.0;
            match &point.error {
                Some(error) => eprintln!(
                    "{} on {share:.0}%: failed: {}",
                    method.name(),
                    error.message
                ),
                None => eprintln!(
                    "{} on {share:.0}%: {}",
                    method.name(),
                    point.status.as_str()
                ),
            }
        }
    })?;
    emit(&report, &args.output)
}

fn emit(report: &CompareReport, output: &Output) -> Result<()> {
    write_export(output.html.as_deref(), &compare::render_html(report))?;
    write_export(output.csv.as_deref(), &compare::render_csv(report))?;
    match output.json {
        true => print_json(report),
        false => {
            print_report(report);
            Ok(())
        }
    }
}

fn write_export(path: Option<&Path>, text: &str) -> Result<()> {
    if let Some(path) = path {
        tunelab_api::workspace::write_atomic(path, text.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn print_report(report: &CompareReport) {
    println!(
        "{}: {} ({} preset, base {} on {})",
        report.id,
        report.status.as_str(),
        report.task.preset.as_str(),
        report.task.model,
        report.device
    );
    if let Some(base) = &report.base_probe {
        println!(
            "the base model alone answers {:.0}% of the forgetting probe",
            base.estimate.value * 100.0
        );
    }
    for r in &report.methods {
        println!();
        println!("{} — {}", r.name, r.status.as_str());
        println!("  {}", r.what);
        println!("  good for: {}", r.good_for);
        if let Some(error) = &r.error {
            println!("  failed: {}", error.message);
        }
        for s in &r.scores {
            println!(
                "  {:<22} {:>7.3}  [{:.3} – {:.3}]{}",
                s.label,
                s.estimate.value,
                s.estimate.low,
                s.estimate.high,
                if s.higher_is_better {
                    ""
                } else {
                    "  (lower is better)"
                }
            );
        }
        if let (Some(probe), change) = (&r.probe, r.probe_change) {
            println!(
                "  {:<22} {:>7.3}{}",
                "forgetting probe",
                probe.estimate.value,
                change
                    .map(|c| format!("  ({c:+.3} against the base model)"))
                    .unwrap_or_default()
            );
        }
        let c = &r.cost;
        let mut prepare = vec![format!("{:.1} s", c.prepare_s)];
        prepare.extend(
            c.prepare_peak_rss_bytes
                .map(|b| format!("peak {}", bytes(b))),
        );
        prepare.extend(
            c.prepare_gpu_peak_bytes
                .map(|b| format!("GPU peak {}", bytes(b))),
        );
        prepare.extend(
            c.prepare_energy_j
                .map(|j| format!("{j:.0} J ({})", c.energy_source.as_deref().unwrap_or(""))),
        );
        println!("  prepare: {}", prepare.join(", "));
        println!("  {}", footprint(&c.footprint));
        if let Some(e) = &c.eval {
            println!(
                "  per question: {:.2} s (p50), {:.2} s (p95), {:.0} extra prompt tokens",
                e.latency_p50_s, e.latency_p95_s, e.extra_context_tokens_mean
            );
        }
        if let Some(line) = compare::data_curve_line(r) {
            println!("  by data: {line}");
        }
    }
    if !report.break_even.is_empty() {
        println!();
        for b in &report.break_even {
            match b.queries {
                Some(q) => println!(
                    "{} pays its training back after {q} questions against RAG ({:.2} s faster each)",
                    b.method.name(),
                    b.saved_per_query_s
                ),
                None => println!(
                    "{} answers no faster than RAG: its training is not paid back in time",
                    b.method.name()
                ),
            }
        }
    }
}

fn list(ws: &Workspace, json: bool) -> Result<()> {
    let reports = compare::list(ws)?;
    if json {
        return print_json(&reports);
    }
    if reports.is_empty() {
        println!(
            "No comparisons yet: `tunelab compare datasets/compare-demo/task.toml` makes one."
        );
    }
    for r in &reports {
        let done = r
            .methods
            .iter()
            .filter(|m| m.status == tunelab_api::train::RunStatus::Completed)
            .count();
        println!(
            "{:<32} {:<10} {:<9} {done}/{} methods",
            r.id,
            r.status.as_str(),
            r.task.preset.as_str(),
            r.methods.len()
        );
    }
    Ok(())
}
