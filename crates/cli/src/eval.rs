//! `tunelab eval`: score a configuration (model, trained run, knowledge base, prompt template)
//! on an evaluation file; `tunelab eval list` and `tunelab eval show ID` read the results.

use std::path::PathBuf;

use tunelab_api::chat::ModelCache;
use tunelab_api::eval::{self, Caches, EvalEvent, EvalRequest, EvalSummary, Metric};
use tunelab_api::knowledge::KnowledgeCache;
use tunelab_api::prompts::TemplateRef;
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
    /// The workspace's evaluations, newest first
    List {
        #[arg(long)]
        json: bool,
    },
    /// Two evaluations of the same file side by side: each metric on both, B minus A with a
    /// paired 95% interval, and the rows they answered differently (an A/B test of two
    /// template versions is `tunelab eval --template NAME@1`, then `@2`, then this)
    Diff {
        /// The first evaluation (A): an id or folder
        a: String,
        /// The second evaluation (B)
        b: String,
        /// How many differing rows to print (all with --json)
        #[arg(long, default_value_t = 10)]
        rows: usize,
        #[arg(long)]
        json: bool,
    },
    /// One evaluation's scores, cost and answers
    Show {
        /// An evaluation id (see `tunelab eval list`) or folder
        id: String,
        /// Print every answered row
        #[arg(long)]
        rows: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The evaluation file: JSON lines of {"prompt", "reference"} or {"messages"}, with
    /// optional must_contain, regex, json and source
    #[arg(long, value_name = "EVAL.jsonl")]
    data: Option<PathBuf>,
    /// The registered model that answers (default: the run's base model, else the default
    /// model)
    #[arg(long)]
    model: Option<String>,
    /// A trained run (id or folder) whose adapter, soft prompt or model answers
    #[arg(long)]
    run: Option<String>,
    /// Answer from this knowledge base (adds hit-at-3 and mrr for rows with a source)
    #[arg(long)]
    kb: Option<String>,
    /// Frame each question with a saved prompt template: NAME or NAME@VERSION
    #[arg(long, value_parser = crate::chat::parse_template)]
    template: Option<TemplateRef>,
    /// Metrics to compute, comma-separated (default: every one the rows allow): exact-match,
    /// contains-all, token-f1, rouge-l, regex, json, perplexity, hit-at-3, mrr, judge
    #[arg(long, value_delimiter = ',')]
    metrics: Vec<Metric>,
    /// A registered chat model that grades each answer against its reference (the judge
    /// metric, reported as the judge's opinion)
    #[arg(long)]
    judge: Option<String>,
    /// Longest answer in tokens
    #[arg(long, default_value_t = EvalRequest::default().max_tokens)]
    max_tokens: u32,
    /// 0 decodes greedily
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only the first N rows
    #[arg(long)]
    limit: Option<u32>,
    /// The evaluation's id (default: made from the data and the configuration, so the same
    /// command reuses or resumes it)
    #[arg(long)]
    name: Option<String>,
    /// Where to answer: auto, cpu, cuda or cuda:N (default: the workspace's setting)
    #[arg(long)]
    device: Option<tunelab_api::DeviceChoice>,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(ws: &Workspace, args: Args) -> Result<()> {
    match args.command {
        Some(Command::List { json }) => list(ws, json),
        Some(Command::Show { id, rows, json }) => show(ws, &id, rows, json),
        Some(Command::Diff { a, b, rows, json }) => diff(ws, &a, &b, rows, json),
        None => evaluate(ws, args.run),
    }
}

fn evaluate(ws: &Workspace, args: RunArgs) -> Result<()> {
    let data = args.data.ok_or_else(|| {
        ApiError::invalid(
            "give the evaluation file with --data EVAL.jsonl (or `tunelab eval list`)",
        )
    })?;
    let request = EvalRequest {
        data,
        model: args.model,
        run: args.run,
        kb: args.kb,
        template: args.template,
        metrics: args.metrics,
        judge: args.judge,
        max_tokens: args.max_tokens,
        seed: args.seed,
        temperature: args.temperature,
        limit: args.limit,
        name: args.name,
        device: args.device,
    };
    let (models, knowledge) = (ModelCache::default(), KnowledgeCache::on(args.device));
    let caches = Caches {
        models: &models,
        knowledge: &knowledge,
    };
    let cancel = crate::interrupt::flag();
    let summary = eval::run(ws, &caches, &request, &cancel, &mut |event| match event {
        EvalEvent::Reused { id } => {
            eprintln!(
                "{id} was evaluated before with the same settings and data: its results follow"
            )
        }
        EvalEvent::Started { id, total, done } => match done {
            0 => eprintln!("evaluating {total} rows as {id}"),
            done => eprintln!("resuming {id}: {done} of {total} rows answered before"),
        },
        EvalEvent::Row { done, total, row } => {
            let scores: Vec<String> = row
                .scores
                .iter()
                .map(|(m, v)| format!("{} {v:.2}", m.as_str()))
                .collect();
            eprintln!(
                "  {done}/{total}  line {}  {:.1} s  {}",
                row.line,
                row.latency_s,
                scores.join("  ")
            );
        }
        EvalEvent::Judged { done, total } => eprintln!("  judged {done}/{total}"),
    })?;
    match args.json {
        true => print_json(&summary),
        false => {
            print_summary(ws, &summary);
            Ok(())
        }
    }
}

/// What an evaluation scored: the model and what was around it.
fn configuration(c: &eval::EvalConfig) -> String {
    let mut what = vec![format!("model {}", c.model)];
    what.extend(c.run.as_ref().map(|r| format!("run {r}")));
    what.extend(c.kb.as_ref().map(|k| format!("knowledge base {k}")));
    what.extend(c.template.as_ref().map(|t| match t.version {
        Some(v) => format!("template {}@{v}", t.name),
        None => format!("template {}", t.name),
    }));
    what.join(", ")
}

fn print_summary(ws: &Workspace, s: &EvalSummary) {
    let c = &s.config;
    println!(
        "{}: {}, {} of {} rows, {}",
        s.id,
        s.status.as_str(),
        s.answered,
        c.rows,
        configuration(c)
    );
    println!();
    println!(
        "  {:<22} {:>8}   {:<19} {:>5}",
        "metric", "value", "95% interval", "rows"
    );
    for score in &s.scores {
        let e = &score.estimate;
        println!(
            "  {:<22} {:>8.3}   {:>8.3} – {:<8.3} {:>5}{}",
            score.label,
            e.value,
            e.low,
            e.high,
            e.rows,
            if score.higher_is_better {
                ""
            } else {
                "  (lower is better)"
            }
        );
    }
    let cost = &s.cost;
    println!();
    println!(
        "  {:.1} s in all on {} ({:.1} s loading); per question {:.2} s (p50), {:.2} s (p95)",
        cost.wall_time_s, cost.device, cost.setup_s, cost.latency_p50_s, cost.latency_p95_s
    );
    println!(
        "  {:.0} prompt tokens per question, {:.0} of them added by the configuration; {} tokens generated",
        cost.prompt_tokens_mean, cost.extra_context_tokens_mean, cost.generated_tokens
    );
    println!("  {}", footprint(&cost.footprint));
    if let Some(rss) = cost.peak_rss_bytes {
        println!("  peak memory {}", bytes(rss));
    }
    if let Some(energy) = &cost.cpu_energy {
        println!("  CPU energy {:.0} J (RAPL)", energy.joules);
    }
    if let Some(gpu) = &cost.gpu {
        let energy = gpu
            .energy_joules
            .map(|j| format!(", {j:.0} J"))
            .unwrap_or_default();
        println!(
            "  GPU {}: peak memory {}{energy}",
            gpu.gpu,
            bytes(gpu.peak_memory_bytes)
        );
    }
    println!(
        "  answers: {}",
        ws.evals_dir().join(&s.id).join("rows.jsonl").display()
    );
}

fn list(ws: &Workspace, json: bool) -> Result<()> {
    let items = eval::list(ws)?;
    if json {
        return print_json(&items);
    }
    if items.is_empty() {
        println!("No evaluations yet: `tunelab eval --data EVAL.jsonl` makes one.");
    }
    for item in &items {
        let first = item
            .summary
            .as_ref()
            .and_then(|s| s.scores.first())
            .map(|m| format!("{} {:.3}", m.label, m.estimate.value))
            .unwrap_or_default();
        println!(
            "{:<56} {:<11} {:>4}/{:<4} {}",
            item.id,
            item.status.as_str(),
            item.answered,
            item.config.rows,
            first
        );
    }
    Ok(())
}

fn show(ws: &Workspace, id: &str, rows: bool, json: bool) -> Result<()> {
    let detail = eval::show(ws, id)?;
    if json {
        return print_json(&detail);
    }
    match &detail.item.summary {
        Some(summary) => print_summary(ws, summary),
        None => println!(
            "{}: {}, {} of {} rows answered",
            detail.item.id,
            detail.item.status.as_str(),
            detail.item.answered,
            detail.item.config.rows
        ),
    }
    if rows {
        for row in &detail.rows {
            println!();
            println!("line {}: {}", row.line, row.question);
            if let Some(reference) = &row.reference {
                println!("  expected: {reference}");
            }
            println!("  answer:   {}", row.answer);
            let scores: Vec<String> = row
                .scores
                .iter()
                .map(|(m, v)| format!("{} {v:.2}", m.as_str()))
                .collect();
            println!("  scores:   {}", scores.join(", "));
        }
    }
    Ok(())
}

fn diff(ws: &Workspace, a: &str, b: &str, shown: usize, json: bool) -> Result<()> {
    let d = eval::diff(ws, a, b)?;
    if json {
        return print_json(&d);
    }
    println!("A  {}: {}", d.a.id, configuration(&d.a.config));
    println!("B  {}: {}", d.b.id, configuration(&d.b.config));
    println!("over the {} rows both answered", d.paired_rows);
    println!();
    println!(
        "  {:<22} {:>8} {:>8}   {:>8}  {:<19}",
        "metric", "A", "B", "B - A", "95% interval"
    );
    for m in &d.metrics {
        let (diff, holds_zero) = (
            &m.difference,
            m.difference.low <= 0.0 && 0.0 <= m.difference.high,
        );
        println!(
            "  {:<22} {:>8.3} {:>8.3}   {:>+8.3}  {:+.3} – {:+.3}{}",
            m.label,
            m.a.value,
            m.b.value,
            diff.value,
            diff.low,
            diff.high,
            match (holds_zero, m.higher_is_better) {
                (true, _) => "  (no clear difference)",
                (false, true) if diff.value > 0.0 => "  (B better)",
                (false, false) if diff.value < 0.0 => "  (B better)",
                (false, _) => "  (A better)",
            }
        );
    }
    println!();
    println!(
        "{} rows answered differently{}",
        d.rows.len(),
        if d.rows.len() > shown {
            format!(", the {shown} that changed most:")
        } else {
            ":".to_string()
        }
    );
    let scores = |s: &std::collections::BTreeMap<Metric, f64>| {
        s.iter()
            .map(|(m, v)| format!("{} {v:.2}", m.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for row in d.rows.iter().take(shown) {
        println!();
        println!("line {}: {}", row.line, row.question);
        if let Some(reference) = &row.reference {
            println!("  expected: {reference}");
        }
        println!("  A: {}  [{}]", row.a_answer, scores(&row.a_scores));
        println!("  B: {}  [{}]", row.b_answer, scores(&row.b_scores));
    }
    Ok(())
}
