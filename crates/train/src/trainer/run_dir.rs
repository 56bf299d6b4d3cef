//! A run folder: everything one training run leaves behind, readable by people and tools.
//!
//! ```text
//! runs/<id>/
//!   config.json            the resolved configuration (every default filled in)
//!   metrics.jsonl          one JSON object per optimiser step and per validation pass
//!   checkpoints/step-N/    params.safetensors, optimizer.safetensors, state.json
//!   artifact/              the result in its exchange format (e.g. a PEFT adapter)
//!   summary.json           outcome and cost: wall time, peak memory, tokens seen, device
//! ```
//! The trainer writes `metrics.jsonl` and `checkpoints/`; whoever starts the run writes the
//! configuration, the artifact and the summary through `write_json` and `artifact_dir`. Files
//! are written to a temporary name and renamed, and a checkpoint folder appears only once
//! complete, so a run killed at any moment leaves its last good checkpoint readable.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::trainer::TrainError;

pub struct RunDir {
    root: PathBuf,
}

/// Where a checkpoint stands in the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimiser steps completed.
    pub step: u64,
    pub tokens_seen: u64,
    pub elapsed_seconds: f64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Io(path.to_path_buf(), e)
}

/// Writes `bytes` to `path` (creating its folder) through a temporary file beside it, synced,
/// and a rename: readers never see a half-written file, and a crash leaves the old version in
/// place. Every file Tunelab writes whole goes through here.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // The process id keeps two writers of one file (each refused later by its lock, or the
    // app and the command line saving settings) from sharing a temporary file.
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    candle_core::safetensors::save(tensors, &tmp)?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

impl RunDir {
    /// Creates the folder (and its parents) if needed.
    pub fn create(root: &Path) -> Result<Self, TrainError> {
        std::fs::create_dir_all(root.join("checkpoints")).map_err(io(root))?;
        Ok(RunDir {
            root: root.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn artifact_dir(&self) -> PathBuf {
        self.root.join("artifact")
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), TrainError> {
        let text = serde_json::to_string_pretty(value).expect("run files serialize");
        write_atomic(&self.root.join(name), format!("{text}\n").as_bytes())
    }

    /// Appends one line to metrics.jsonl.
    pub fn append_metrics<T: Serialize>(&self, record: &T) -> Result<(), TrainError> {
        let path = self.root.join("metrics.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let line = serde_json::to_string(record).expect("metrics serialize");
        writeln!(f, "{line}").map_err(io(&path))
    }

    /// Saves trainable parameters and optimiser state as `checkpoints/step-N`, atomically.
    pub fn save_checkpoint(
        &self,
        state: &CheckpointState,
        params: &[(String, Var)],
        optimizer: &HashMap<String, Tensor>,
    ) -> Result<PathBuf, TrainError> {
        let final_dir = self
            .root
            .join("checkpoints")
            .join(format!("step-{}", state.step));
        let tmp = self
            .root
            .join("checkpoints")
            .join(format!(".step-{}.partial", state.step));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let tensors: HashMap<String, Tensor> = params
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        save_tensors(&tmp.join("params.safetensors"), &tensors)?;
        save_tensors(&tmp.join("optimizer.safetensors"), optimizer)?;
        write_atomic(
            &tmp.join("state.json"),
            serde_json::to_string_pretty(state)
                .expect("state serializes")
                .as_bytes(),
        )?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
        Ok(final_dir)
    }

    /// The complete checkpoint with the highest step, if any.
    pub fn latest_checkpoint(&self) -> Option<(PathBuf, CheckpointState)> {
        let dir = self.root.join("checkpoints");
        std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-"))
            })
            .filter_map(|p| {
                let text = std::fs::read_to_string(p.join("state.json")).ok()?;
                let state: CheckpointState = serde_json::from_str(&text).ok()?;
                Some((p, state))
            })
            .max_by_key(|(_, s)| s.step)
    }
}

/// Loads a checkpoint into the trainable variables; returns the optimiser state to restore.
pub fn load_checkpoint(
    dir: &Path,
    params: &[(String, Var)],
) -> Result<HashMap<String, Tensor>, TrainError> {
    let device = params
        .first()
        .map(|(_, v)| v.device().clone())
        .unwrap_or(candle_core::Device::Cpu);
    let saved = candle_core::safetensors::load(dir.join("params.safetensors"), &device)?;
    for (name, var) in params {
        let t = saved.get(name).ok_or_else(|| {
            TrainError::Checkpoint(format!("{}: no parameter `{name}`", dir.display()))
        })?;
        var.set(t)?;
    }
    Ok(candle_core::safetensors::load(
        dir.join("optimizer.safetensors"),
        &device,
    )?)
}
