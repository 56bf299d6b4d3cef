//! `tunelab kb`: knowledge bases for retrieval-augmented answers.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use tunelab_api::knowledge::{
    self, CreateKnowledgeBase, KnowledgeCache, SearchRequest, DEFAULT_EMBEDDER,
};
use tunelab_api::{ApiError, ErrorCode, Result, Workspace};
use tunelab_knowledge::{AddProgress, ChunkOptions, KnowledgeBaseInfo, SearchMode, SearchOptions};

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// Where the embedding model runs: auto (the first GPU of a build with CUDA, else the CPU),
    /// cpu, cuda or cuda:N; the workspace's setting (`tunelab settings`) when absent
    #[arg(long, global = true)]
    device: Option<tunelab_api::DeviceChoice>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create an empty knowledge base
    Create {
        name: String,
        /// Sentence-embedding model (a registered model with the embedding role)
        #[arg(long, default_value = DEFAULT_EMBEDDER)]
        embedder: String,
        /// Most tokens in one chunk (the embedder's tokens)
        #[arg(long, default_value_t = ChunkOptions::default().size)]
        chunk_size: usize,
        /// Tokens shared by neighbouring chunks
        #[arg(long, default_value_t = ChunkOptions::default().overlap)]
        chunk_overlap: usize,
        #[arg(long)]
        json: bool,
    },
    /// Add files and folders (.md .txt .html .pdf .docx .csv .json .jsonl; folders recursively)
    Add {
        name: String,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Knowledge bases in the workspace
    List {
        #[arg(long)]
        json: bool,
    },
    /// One knowledge base: settings and files
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a knowledge base, or with --source only one file's chunks
    Remove {
        name: String,
        /// The file to remove, as `kb show` lists it
        #[arg(long)]
        source: Option<String>,
    },
    /// Search a knowledge base
    Search {
        name: String,
        query: String,
        /// vector, text or hybrid
        #[arg(long, default_value = "hybrid")]
        mode: SearchMode,
        /// How many chunks to return
        #[arg(long, default_value_t = 5)]
        k: usize,
        /// Only this file, or files under this folder
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn print_info(info: &KnowledgeBaseInfo) {
    println!("{}", info.name);
    println!(
        "  embedder       {} ({} dimensions)",
        info.embedder, info.dimension
    );
    println!(
        "  chunking       {} tokens, {} overlap",
        info.chunking.size, info.chunking.overlap
    );
    println!("  documents      {}", info.documents);
    println!(
        "  chunks         {}{}",
        info.chunks,
        if info.vector_index {
            " (approximate vector index)"
        } else {
            ""
        }
    );
}

pub fn run(ws: &Workspace, args: Args) -> Result<()> {
    let cache = KnowledgeCache::on(args.device);
    match args.command {
        Command::Create {
            name,
            embedder,
            chunk_size,
            chunk_overlap,
            json,
        } => {
            let info = knowledge::create(
                ws,
                &cache,
                &CreateKnowledgeBase {
                    name,
                    embedder: Some(embedder),
                    chunking: Some(ChunkOptions {
                        size: chunk_size,
                        overlap: chunk_overlap,
                    }),
                },
            )?;
            if json {
                return print_json(&info);
            }
            println!("Created knowledge base `{}`.", info.name);
            print_info(&info);
            println!("Add documents with: tunelab kb add {} PATH…", info.name);
            Ok(())
        }
        Command::Add { name, paths, json } => {
            let bar = ProgressBar::new(0);
            if json {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            bar.set_style(
                ProgressStyle::with_template("{msg:24} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            let stop = crate::interrupt::flag();
            let report = knowledge::add(ws, &cache, &name, &paths, &stop, &mut |p| match p {
                AddProgress::Reading { done, total, .. } => {
                    bar.set_message("reading files");
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                }
                AddProgress::Embedding { done, total } => {
                    if bar.message() != "embedding chunks" {
                        bar.set_message("embedding chunks");
                        bar.reset();
                    }
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                }
                AddProgress::Indexing => bar.set_message("updating indexes"),
            })?;
            bar.finish_and_clear();
            if json {
                print_json(&report)?;
            } else {
                let rate = if report.embed_seconds > 0.0 {
                    report.chunks_added as f64 / report.embed_seconds
                } else {
                    0.0
                };
                println!(
                    "{} added, {} replaced, {} unchanged, {} failed: {} chunks in {:.1} s ({:.0} chunks/s embedded)",
                    report.added.len(),
                    report.replaced.len(),
                    report.unchanged.len(),
                    report.failed.len(),
                    report.chunks_added,
                    report.seconds,
                    rate
                );
                for f in &report.failed {
                    eprintln!("  not added: {}", f.error);
                }
            }
            if report.failed.is_empty() {
                Ok(())
            } else {
                Err(ApiError::new(
                    ErrorCode::BadDocument,
                    format!(
                        "{} file(s) could not be added; the others were added and nothing else changed",
                        report.failed.len()
                    ),
                ))
            }
        }
        Command::List { json } => {
            let all = knowledge::list(ws, &cache)?;
            if json {
                return print_json(&all);
            }
            if all.is_empty() {
                println!("No knowledge bases yet. Create one with: tunelab kb create NAME");
                return Ok(());
            }
            println!(
                "{:<24} {:>9} {:>8}  EMBEDDER",
                "NAME", "DOCUMENTS", "CHUNKS"
            );
            for kb in all {
                println!(
                    "{:<24} {:>9} {:>8}  {}",
                    kb.name, kb.documents, kb.chunks, kb.embedder
                );
            }
            Ok(())
        }
        Command::Show { name, json } => {
            let detail = knowledge::show(ws, &cache, &name)?;
            if json {
                return print_json(&detail);
            }
            print_info(&detail.info);
            if !detail.sources.is_empty() {
                println!();
                println!("{:>6} {:>7}  {:<9} SOURCE", "CHUNKS", "TOKENS", "FORMAT");
                for s in &detail.sources {
                    println!(
                        "{:>6} {:>7}  {:<9} {}",
                        s.chunks, s.tokens, s.format, s.source
                    );
                }
            }
            Ok(())
        }
        Command::Remove { name, source } => {
            match source {
                Some(source) => {
                    let n = knowledge::remove_source(ws, &cache, &name, &source)?;
                    println!("Removed {n} chunks of {source} from `{name}`.");
                }
                None => {
                    knowledge::remove(ws, &cache, &name)?;
                    println!("Deleted knowledge base `{name}`.");
                }
            }
            Ok(())
        }
        Command::Search {
            name,
            query,
            mode,
            k,
            source,
            json,
        } => {
            let hits = knowledge::search(
                ws,
                &cache,
                &SearchRequest {
                    kb: name,
                    query,
                    options: SearchOptions { mode, k, source },
                },
            )?;
            if json {
                return print_json(&hits);
            }
            if hits.is_empty() {
                println!("No matches.");
            }
            for (i, h) in hits.iter().enumerate() {
                println!(
                    "{}. {} — {}  (score {:.3}, similarity {:.2})",
                    i + 1,
                    h.title,
                    if h.label.is_empty() {
                        &h.source
                    } else {
                        &h.label
                    },
                    h.score,
                    h.similarity
                );
                println!("   {}", h.source);
                let preview: String = h.text.chars().take(240).collect();
                println!("   {}", preview.replace('\n', " "));
                println!();
            }
            Ok(())
        }
    }
}
