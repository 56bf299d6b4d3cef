//! A run folder: everything one training run leaves behind, readable by people and tools.
//!
//! ```text
//! runs/<id>/
//!   config.json            the resolved configuration (every default filled in)
//!   metrics.jsonl          one JSON object per optimiser step and per validation pass
//!   checkpoints/step-N/    params.safetensors, optimizer.safetensors, state.json (which
//!                          lists the other two with their sizes)
//!   artifact/              the result in its exchange format (e.g. a PEFT adapter)
//!   summary.json           outcome and cost: wall time, peak memory, tokens seen, device
//! ```
//! The trainer writes `metrics.jsonl` and `checkpoints/`; whoever starts the run writes the
//! configuration, the artifact and the summary through `write_json` and `artifact_dir`. Files
//! are written to a temporary name, synced and renamed (and the folder synced after), and a
//! checkpoint folder appears only once complete, so a run killed at any moment leaves its last
//! good checkpoint readable. A resume takes the newest checkpoint whose files are all there at
//! their recorded sizes and load, and cuts `metrics.jsonl` back to it.

use std::collections::{BTreeMap, HashMap};
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
    /// The validation loss measured at this step, when there was a validation pass: the
    /// retention policy keeps the checkpoint with the lowest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// The checkpoint's other files with their sizes in bytes, so a resume can tell a complete
    /// checkpoint from one cut short (checkpoints from before this list are checked by loading).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, u64>,
}

/// The tensor files of a checkpoint.
const CHECKPOINT_FILES: [&str; 2] = ["params.safetensors", "optimizer.safetensors"];

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
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(dir)
}

/// Makes the renames inside `dir` durable: without it a power cut can undo a rename whose
/// file's bytes were synced. A no-op where folders cannot be opened as files (Windows).
pub fn sync_dir(dir: &Path) -> Result<(), TrainError> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A tensor as a checkpoint file holds it: host f32 values borrowed where they are (AdamW's
/// moments on the CPU), or a tensor, whose bytes are copied out when the file writer reaches
/// it. Made into tensors first, a fully trained model's two moments were a second copy of
/// both (1 GB for SmolLM2-135M), the peak of its whole run.
pub enum Saved<'a> {
    Host {
        values: &'a [f32],
        shape: Vec<usize>,
    },
    Tensor(Tensor),
}

impl Saved<'_> {
    /// The same values as a tensor on `device` (a copy for host values).
    pub fn to_tensor(&self, device: &candle_core::Device) -> candle_core::Result<Tensor> {
        match self {
            Saved::Host { values, shape } => Tensor::from_slice(values, shape.as_slice(), device),
            Saved::Tensor(t) => Ok(t.clone()),
        }
    }
}

impl safetensors::View for Saved<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        match self {
            Saved::Host { .. } => safetensors::Dtype::F32,
            Saved::Tensor(t) => safetensors::View::dtype(t),
        }
    }

    fn shape(&self) -> &[usize] {
        match self {
            Saved::Host { shape, .. } => shape,
            Saved::Tensor(t) => t.dims(),
        }
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            // safetensors stores little-endian values, as x86-64 and ARM64 hold them.
            #[cfg(target_endian = "little")]
            Saved::Host { values, .. } => std::borrow::Cow::Borrowed(bytemuck::cast_slice(values)),
            #[cfg(not(target_endian = "little"))]
            Saved::Host { values, .. } => {
                std::borrow::Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
            }
            Saved::Tensor(t) => safetensors::View::data(t),
        }
    }

    fn data_len(&self) -> usize {
        match self {
            Saved::Host { values, .. } => std::mem::size_of_val(*values),
            Saved::Tensor(t) => safetensors::View::data_len(t),
        }
    }
}

/// Saves `tensors` as safetensors at `path` through a synced temporary file; returns its size.
/// Each tensor's bytes are made (or borrowed) only when the writer reaches it.
fn save_tensors<'a, S: AsRef<str> + Ord + std::fmt::Display>(
    path: &Path,
    tensors: impl IntoIterator<Item = (S, Saved<'a>)>,
) -> Result<u64, TrainError> {
    let tmp = path.with_extension("tmp");
    safetensors::serialize_to_file(tensors, None, &tmp)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", tmp.display())))?;
    let file = std::fs::File::open(&tmp).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    let size = file.metadata().map_err(io(&tmp))?.len();
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(size)
}

/// Whether the checkpoint in `dir` described by `state` is whole: every tensor file there at
/// the size its manifest records, and each safetensors header readable.
fn checkpoint_is_whole(dir: &Path, state: &CheckpointState) -> bool {
    CHECKPOINT_FILES.iter().all(|name| {
        let path = dir.join(name);
        let size_ok = match (state.files.get(*name), path.metadata()) {
            (Some(&want), Ok(m)) => m.len() == want,
            (None, Ok(_)) => true,
            (_, Err(_)) => false,
        };
        size_ok && tunelab_engine::weights::safetensors_header(&path).is_ok()
    })
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

    /// Appends one line to metrics.jsonl, in one write: a kill leaves at most a line cut short
    /// at the end, which the next resume drops.
    pub fn append_metrics<T: Serialize>(&self, record: &T) -> Result<(), TrainError> {
        let path = self.root.join("metrics.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut line = serde_json::to_string(record).expect("metrics serialize");
        line.push('\n');
        f.write_all(line.as_bytes()).map_err(io(&path))
    }

    /// Cuts metrics.jsonl back to what the run had logged by the end of `step`: records of
    /// later steps (logged after the checkpoint a resume starts from) and a last line cut short
    /// by a kill are dropped, so a resumed run logs each step once.
    pub fn truncate_metrics(&self, step: u64) -> Result<(), TrainError> {
        let path = self.root.join("metrics.jsonl");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let mut kept = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            let record = line
                .strip_suffix('\n')
                .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
            let Some(record) = record else { continue };
            if record.get("step").and_then(|s| s.as_u64()).unwrap_or(0) <= step {
                kept.push_str(line);
            }
        }
        if kept.len() != text.len() {
            write_atomic(&path, kept.as_bytes())?;
        }
        Ok(())
    }

    /// Saves trainable parameters and optimiser state as `checkpoints/step-N`, atomically.
    pub fn save_checkpoint(
        &self,
        state: &CheckpointState,
        params: &[(String, Var)],
        optimizer: Vec<(String, Saved<'_>)>,
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
        let tensors = params
            .iter()
            .map(|(k, v)| (k.as_str(), Saved::Tensor(v.as_tensor().clone())));
        let mut state = state.clone();
        state.files = BTreeMap::from([
            (
                CHECKPOINT_FILES[0].to_string(),
                save_tensors(&tmp.join(CHECKPOINT_FILES[0]), tensors)?,
            ),
            (
                CHECKPOINT_FILES[1].to_string(),
                save_tensors(&tmp.join(CHECKPOINT_FILES[1]), optimizer)?,
            ),
        ]);
        write_atomic(
            &tmp.join("state.json"),
            serde_json::to_string_pretty(&state)
                .expect("state serializes")
                .as_bytes(),
        )?;
        // A checkpoint of the same step (a stop right after a scheduled save) is swapped out by
        // renames: at every moment one whole copy is under a name a resume reads.
        let old = self
            .root
            .join("checkpoints")
            .join(format!(".step-{}.old", state.step));
        if final_dir.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(io(&old))?;
            }
            std::fs::rename(&final_dir, &old).map_err(io(&final_dir))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
        sync_dir(&self.root.join("checkpoints"))?;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        Ok(final_dir)
    }

    /// Every checkpoint whose state.json reads, newest first (whole or not).
    fn checkpoints(&self) -> Vec<(PathBuf, CheckpointState)> {
        let dir = self.root.join("checkpoints");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut found: Vec<(PathBuf, CheckpointState)> = entries
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
            .collect();
        found.sort_by_key(|(_, state)| std::cmp::Reverse(state.step));
        found
    }

    /// The newest whole checkpoint: one cut short (a full disk, a copy interrupted, a file
    /// damaged since) is passed over for the one before it.
    pub fn latest_checkpoint(&self) -> Option<(PathBuf, CheckpointState)> {
        self.checkpoints()
            .into_iter()
            .find(|(dir, state)| checkpoint_is_whole(dir, state))
    }

    /// Applies the retention policy: the newest `keep_last` checkpoints stay, and so does the
    /// one with the lowest validation loss; the rest are deleted (0 keeps every checkpoint).
    pub fn prune_checkpoints(&self, keep_last: u64) -> Result<(), TrainError> {
        if keep_last == 0 {
            return Ok(());
        }
        let all = self.checkpoints();
        let best = all
            .iter()
            .filter_map(|(_, s)| Some((s.step, s.val_loss?)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(step, _)| step);
        for (dir, state) in all.iter().skip(keep_last as usize) {
            if Some(state.step) != best {
                std::fs::remove_dir_all(dir).map_err(io(dir))?;
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint folder holding only its state (what the retention policy reads).
    fn fake_checkpoint(run: &RunDir, step: u64, val_loss: Option<f64>) {
        let state = CheckpointState {
            step,
            tokens_seen: 0,
            elapsed_seconds: 0.0,
            val_loss,
            files: BTreeMap::new(),
        };
        let dir = run.path().join(format!("checkpoints/step-{step}"));
        write_atomic(
            &dir.join("state.json"),
            serde_json::to_string(&state).unwrap().as_bytes(),
        )
        .unwrap();
    }

    fn steps_left(run: &RunDir) -> Vec<u64> {
        run.checkpoints().into_iter().map(|(_, s)| s.step).collect()
    }

    #[test]
    fn retention_keeps_the_newest_and_the_best_by_validation_loss() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path()).unwrap();
        for (step, val) in [
            (10, Some(2.0)),
            (20, Some(1.2)),
            (30, None),
            (40, Some(1.5)),
        ] {
            fake_checkpoint(&run, step, val);
        }
        fake_checkpoint(&run, 50, None);
        run.prune_checkpoints(0).unwrap();
        assert_eq!(steps_left(&run), vec![50, 40, 30, 20, 10], "0 keeps all");
        run.prune_checkpoints(2).unwrap();
        assert_eq!(
            steps_left(&run),
            vec![50, 40, 20],
            "the newest two and the best"
        );
        run.prune_checkpoints(1).unwrap();
        assert_eq!(steps_left(&run), vec![50, 20]);
    }

    #[test]
    fn metrics_are_cut_back_to_a_step_and_a_cut_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path()).unwrap();
        for step in 1..=4u64 {
            run.append_metrics(&serde_json::json!({"kind": "train", "step": step}))
                .unwrap();
        }
        run.append_metrics(&serde_json::json!({"kind": "eval", "step": 2}))
            .unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"kind\":\"tr");
        std::fs::write(&path, text).unwrap();
        run.truncate_metrics(2).unwrap();
        let left = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            left,
            "{\"kind\":\"train\",\"step\":1}\n{\"kind\":\"train\",\"step\":2}\n{\"kind\":\"eval\",\"step\":2}\n"
        );
    }
}
