//! `tunelab jobs`: the long work going on in the workspace, in this process or any other.

use tunelab_api::jobs;
use tunelab_api::{Result, Workspace};

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    json: bool,
}

pub fn run(ws: &Workspace, args: Args) -> Result<()> {
    let held = jobs::list(ws);
    if args.json {
        return print_json(&held);
    }
    if held.is_empty() {
        println!("Nothing is running in {}.", ws.root().display());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for job in &held {
        println!(
            "{:<15} {:<48} {} pid {:<8} for {}",
            job.kind.as_str(),
            job.target,
            job.program,
            job.pid,
            jobs::human_duration(now.saturating_sub(job.started_at))
        );
    }
    Ok(())
}
