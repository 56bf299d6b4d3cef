//! `tunelab settings`: shows the workspace's settings, or changes them.

use tunelab_api::settings;
use tunelab_api::{DeviceChoice, Result, Workspace};

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// Where models train, answer and embed unless a command says: auto (the first GPU of a
    /// build with CUDA, else the CPU), cpu, cuda or cuda:N
    #[arg(long)]
    device: Option<DeviceChoice>,
    #[arg(long)]
    json: bool,
}

pub fn run(ws: &Workspace, args: Args) -> Result<()> {
    let mut current = settings::load(ws)?;
    if let Some(device) = args.device {
        current.device = device;
        settings::save(ws, &current)?;
    }
    if args.json {
        return print_json(&current);
    }
    println!("device  {}", current.device);
    Ok(())
}
