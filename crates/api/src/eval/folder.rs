//! An evaluation's folder: its JSON files and answered rows, and the listing of every folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use ts_rs::TS;

use super::{EvalConfig, EvalRowResult, EvalSummary};
use crate::error::{ApiError, ErrorCode, Result};
use crate::train::RunStatus;
use crate::workspace::{read_json, write_atomic, Workspace};

/// The rows answered so far. A last line cut short by a crash is left out (and is answered
/// again).
pub(super) fn read_results(dir: &Path) -> Result<Vec<EvalRowResult>> {
    let path = dir.join("rows.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ApiError::io(&path, e)),
    };
    Ok(text
        .lines()
        .map_while(|line| serde_json::from_str(line).ok())
        .collect())
}

pub(super) fn write_results(dir: &Path, results: &[EvalRowResult]) -> Result<()> {
    let mut bytes = Vec::new();
    for r in results {
        serde_json::to_writer(&mut bytes, r)
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        bytes.push(b'\n');
    }
    Ok(write_atomic(&dir.join("rows.jsonl"), &bytes)?)
}

/// Appends one answered row, flushed to disk before the next is started.
pub(super) fn append_result(dir: &Path, result: &EvalRowResult) -> Result<()> {
    let path = dir.join("rows.jsonl");
    let mut line = serde_json::to_vec(result)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| ApiError::io(&path, e))?;
    file.write_all(&line)
        .and_then(|_| file.sync_data())
        .map_err(|e| ApiError::io(&path, e))
}

pub(super) fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// An evaluation of the workspace, as lists show it.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct EvalListItem {
    pub id: String,
    pub status: RunStatus,
    pub config: EvalConfig,
    /// Null while it has not ended (running or cut off).
    pub summary: Option<EvalSummary>,
    /// Rows answered so far.
    pub answered: u32,
}

/// Every evaluation of the workspace, newest first.
pub fn list(ws: &Workspace) -> Result<Vec<EvalListItem>> {
    let mut items = Vec::new();
    let entries = match std::fs::read_dir(ws.evals_dir()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(items),
        Err(e) => return Err(ApiError::io(&ws.evals_dir(), e)),
    };
    for entry in entries.flatten() {
        if let Ok(item) = item(&entry.path()) {
            items.push(item);
        }
    }
    items.sort_by(|a, b| b.started_at().cmp(&a.started_at()).then(a.id.cmp(&b.id)));
    Ok(items)
}

impl EvalListItem {
    fn started_at(&self) -> u64 {
        self.summary.as_ref().map_or(u64::MAX, |s| s.started_at)
    }
}

fn item(dir: &Path) -> Result<EvalListItem> {
    let config = read_json::<EvalConfig>(&dir.join("config.json"))?.ok_or_else(|| {
        ApiError::not_found(format!(
            "{} is not an evaluation folder (no config.json)",
            dir.display()
        ))
    })?;
    let summary = read_json::<EvalSummary>(&dir.join("summary.json"))?;
    let running = crate::jobs::holder(&crate::jobs::eval_lock_path(dir)).is_some();
    let status = match (&summary, running) {
        (_, true) => RunStatus::Running,
        (Some(s), false) => s.status,
        (None, false) => RunStatus::Interrupted,
    };
    Ok(EvalListItem {
        id: dir_name(dir),
        status,
        config,
        answered: read_results(dir)?.len() as u32,
        summary: match running {
            true => None,
            false => summary,
        },
    })
}

/// One evaluation with its rows.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct EvalDetail {
    #[serde(flatten)]
    pub item: EvalListItem,
    pub rows: Vec<EvalRowResult>,
}

/// The evaluation `id` (or the folder at that path) with every answered row.
pub fn show(ws: &Workspace, id: &str) -> Result<EvalDetail> {
    let dir = [ws.evals_dir().join(id), PathBuf::from(id)]
        .into_iter()
        .find(|d| d.join("config.json").is_file())
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no evaluation `{id}`; `tunelab eval list` lists them"
            ))
        })?;
    let mut rows = read_results(&dir)?;
    rows.sort_by_key(|r| r.index);
    Ok(EvalDetail {
        item: item(&dir)?,
        rows,
    })
}
