//! Long work that writes to the workspace (a training run, a knowledge base ingest, the default
//! models' download) holds a lock on what it writes, so that a second writer, in this process or
//! any other, is refused with the name of the first.
//!
//! A lock is a file beside (or inside) what it guards, locked with `flock`. The holder writes
//! who it is into the file; the kernel drops the lock when the holder's process ends, however it
//! ends. A record left in a lock that nobody holds is therefore the mark of a process that was
//! killed: the next writer takes the lock over and says so. [`list`] finds every held lock of a
//! workspace, which is how `tunelab jobs` sees the work of other processes.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::error::{ApiError, ErrorCode, Result};
use crate::workspace::Workspace;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "kebab-case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum JobKind {
    /// Training or resuming a run; the target is the run's id.
    Train,
    /// Adding to or removing from a knowledge base; the target is its name.
    Knowledge,
    /// Downloading the default models.
    Download,
    /// Evaluating a configuration; the target is the evaluation's id.
    Eval,
    /// Comparing the methods on a task; the target is the task's name.
    Compare,
    /// Exporting a model or run to another tool's format; the target is the run or model.
    Export,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Train => "training",
            JobKind::Knowledge => "knowledge base",
            JobKind::Download => "download",
            JobKind::Eval => "evaluation",
            JobKind::Compare => "comparison",
            JobKind::Export => "export",
        }
    }
}

/// Who holds a lock: written into the lock file by its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct JobHolder {
    pub kind: JobKind,
    /// The run id, the knowledge base's name, or the models being downloaded.
    pub target: String,
    pub pid: u32,
    /// The program holding it: `tunelab` (the CLI) or the desktop app.
    pub program: String,
    /// Seconds since 1970 when it took the lock.
    #[ts(type = "number")]
    pub started_at: u64,
}

impl JobHolder {
    fn describe(&self) -> String {
        let ago = crate::train::now().saturating_sub(self.started_at);
        format!(
            "{} (pid {}), {} for {}",
            self.program,
            self.pid,
            self.kind.as_str(),
            human_duration(ago)
        )
    }
}

pub fn human_duration(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min", seconds / 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

/// An exclusive lock on what a job writes; released (and its record cleared) when dropped.
#[derive(Debug)]
pub struct JobLock {
    file: File,
    path: PathBuf,
    taken_over: Option<JobHolder>,
}

/// How long a writer waits for a lock that is only being looked at by [`holder`].
const PROBE_GRACE: Duration = Duration::from_millis(300);

impl JobLock {
    /// Takes the lock at `path` for a job of `kind` on `target`. Refused with code `busy`,
    /// naming the holder, while another job (of any process) holds it.
    pub fn acquire(path: &Path, kind: JobKind, target: &str) -> Result<JobLock> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ApiError::io(parent, e))?;
        }
        // Never truncated on open: the holder's record must survive a refused attempt.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| ApiError::io(path, e))?;
        // `holder` takes the lock for an instant to look: wait that out before calling it busy.
        let deadline = std::time::Instant::now() + PROBE_GRACE;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(TryLockError::WouldBlock) => {
                    let who = read_record(&mut file)
                        .map(|h| h.describe())
                        .unwrap_or_else(|| "another job".into());
                    return Err(ApiError::new(
                        ErrorCode::Busy,
                        format!(
                            "{target} is in use by {who}; wait for it to finish or stop it there (`tunelab jobs` lists what runs)"
                        ),
                    ));
                }
                Err(TryLockError::Error(e)) => return Err(ApiError::io(path, e)),
            }
        }
        // A record in a lock nobody held: its process ended without clearing it.
        let taken_over = read_record(&mut file);
        let holder = JobHolder {
            kind,
            target: target.to_string(),
            pid: std::process::id(),
            program: program_name(),
            started_at: crate::train::now(),
        };
        let text = serde_json::to_string(&holder).expect("holder serializes");
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|_| file.flush())
            .map_err(|e| ApiError::io(path, e))?;
        Ok(JobLock {
            file,
            path: path.to_path_buf(),
            taken_over,
        })
    }

    /// The job that held this lock before and was stopped hard (killed, or its machine lost
    /// power) without letting go; `None` when the lock was free and clean.
    pub fn taken_over(&self) -> Option<&JobHolder> {
        self.taken_over.as_ref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        // Cleared while still held, so nobody reads a half-cleared record; the kernel releases
        // the lock when the file closes.
        let _ = self.file.set_len(0);
    }
}

fn read_record(file: &mut File) -> Option<JobHolder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tunelab".into())
}

/// Who holds the lock at `path` now, if anyone (this process included).
pub fn holder(path: &Path) -> Option<JobHolder> {
    let mut file = OpenOptions::new().read(true).write(true).open(path).ok()?;
    match file.try_lock() {
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => Some(read_record(&mut file).unwrap_or(JobHolder {
            kind: JobKind::Train,
            target: path.display().to_string(),
            pid: 0,
            program: "unknown".into(),
            started_at: 0,
        })),
        Err(TryLockError::Error(_)) => None,
    }
}

/// The lock of the run folder `dir`.
pub fn run_lock_path(dir: &Path) -> PathBuf {
    dir.join(".lock")
}

/// The lock of an export writing the folder `out` (exports may go anywhere, so their locks
/// live together in the workspace, named after the folder).
pub fn export_lock_path(ws: &Workspace, out: &Path) -> PathBuf {
    ws.exports_dir()
        .join(".locks")
        .join(format!("{}.lock", crate::workspace::short_digest(&out)))
}

/// The lock of the knowledge base `name`.
pub fn knowledge_lock_path(ws: &Workspace, name: &str) -> PathBuf {
    ws.knowledge_dir().join(format!("{name}.lock"))
}

/// The lock of a hub download into the staging folder of the model `name`: one writer per
/// staging folder, whichever process.
pub fn pull_lock_path(ws: &Workspace, name: &str) -> PathBuf {
    ws.models_dir().join(format!(".pull-{name}.lock"))
}

/// The lock of the evaluation folder `dir`.
pub fn eval_lock_path(dir: &Path) -> PathBuf {
    dir.join(".lock")
}

/// The lock of the comparison folder `dir`.
pub fn compare_lock_path(dir: &Path) -> PathBuf {
    dir.join(".lock")
}

/// Every job holding a lock in the workspace, from any process: runs, evaluations,
/// comparisons, knowledge bases, exports, hub downloads and the default models' download.
pub fn list(ws: &Workspace) -> Vec<JobHolder> {
    let mut locks = Vec::new();
    let children = |dir: PathBuf| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
    };
    locks.extend(children(ws.runs_dir()).map(|run| run_lock_path(&run)));
    locks.extend(children(ws.evals_dir()).map(|eval| eval_lock_path(&eval)));
    locks.extend(children(ws.comparisons_dir()).map(|c| compare_lock_path(&c)));
    locks.extend(
        children(ws.knowledge_dir()).filter(|p| p.extension().is_some_and(|e| e == "lock")),
    );
    locks.extend(
        children(ws.exports_dir().join(".locks"))
            .filter(|p| p.extension().is_some_and(|e| e == "lock")),
    );
    locks.extend(children(ws.models_dir()).filter(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.starts_with(".pull-") && name.ends_with(".lock")
    }));
    locks.push(crate::defaults::lock_path(ws));
    let mut jobs: Vec<JobHolder> = locks.iter().filter_map(|p| holder(p)).collect();
    jobs.sort_by_key(|j| j.started_at);
    jobs
}

/// A job of the workspace as a front end lists it.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ListedJob {
    #[serde(flatten)]
    pub holder: JobHolder,
    /// Run by this process, so it can be cancelled from here; the others are stopped where
    /// they run.
    pub here: bool,
}

/// Every job of the workspace, from any process, marking this process's own.
pub fn list_here(ws: &Workspace) -> Vec<ListedJob> {
    let me = std::process::id();
    list(ws)
        .into_iter()
        .map(|holder| ListedJob {
            here: holder.pid == me,
            holder,
        })
        .collect()
}

/// The jobs this process runs, each with its own cancel token, found by kind and target (a run
/// id, a knowledge base): cancelling one leaves every other running.
#[derive(Debug, Default)]
pub struct JobTable {
    tokens: std::sync::Mutex<Vec<(JobKind, String, std::sync::Arc<AtomicBool>)>>,
}

impl JobTable {
    /// Lists `token` as the cancel token of the job `kind` on `target` until the returned guard
    /// is dropped.
    pub fn register(
        self: &std::sync::Arc<Self>,
        kind: JobKind,
        target: &str,
        token: std::sync::Arc<AtomicBool>,
    ) -> JobEntry {
        self.entries()
            .push((kind, target.to_string(), token.clone()));
        JobEntry {
            table: self.clone(),
            token,
        }
    }

    /// Asks the job `kind` on `target` to stop; false when this process runs no such job.
    pub fn cancel(&self, kind: JobKind, target: &str) -> bool {
        let entries = self.entries();
        let found = entries.iter().filter(|(k, t, _)| *k == kind && t == target);
        let mut any = false;
        for (_, _, token) in found {
            token.store(true, Ordering::Relaxed);
            any = true;
        }
        any
    }

    /// Whether this process runs the job `kind` on `target`.
    pub fn contains(&self, kind: JobKind, target: &str) -> bool {
        self.entries()
            .iter()
            .any(|(k, t, _)| *k == kind && t == target)
    }

    fn entries(
        &self,
    ) -> std::sync::MutexGuard<'_, Vec<(JobKind, String, std::sync::Arc<AtomicBool>)>> {
        // The list stays consistent even if a holder panicked: take it as it is.
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A job's place in its [`JobTable`]; dropping it takes the job off the table.
#[derive(Debug)]
pub struct JobEntry {
    table: std::sync::Arc<JobTable>,
    token: std::sync::Arc<AtomicBool>,
}

impl Drop for JobEntry {
    fn drop(&mut self) {
        self.table
            .entries()
            .retain(|(_, _, t)| !std::sync::Arc::ptr_eq(t, &self.token));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_by_name_and_the_lock_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/.lock");
        let first = JobLock::acquire(&path, JobKind::Train, "run a").unwrap();
        assert!(first.taken_over().is_none());
        let held = holder(&path).expect("held");
        assert_eq!(held.pid, std::process::id());
        assert_eq!(held.target, "run a");
        let err = JobLock::acquire(&path, JobKind::Train, "run a").unwrap_err();
        assert_eq!(err.code, ErrorCode::Busy);
        assert!(
            err.message.contains(&format!("pid {}", std::process::id())),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("run a is in use by"),
            "{}",
            err.message
        );
        // The refused attempt left the holder's record alone.
        assert_eq!(holder(&path).unwrap().target, "run a");
        drop(first);
        assert!(holder(&path).is_none());
        let again = JobLock::acquire(&path, JobKind::Train, "run a").unwrap();
        assert!(
            again.taken_over().is_none(),
            "a clean release leaves no record"
        );
    }

    #[test]
    fn a_record_left_by_a_dead_holder_is_taken_over_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kb.lock");
        let dead = JobHolder {
            kind: JobKind::Knowledge,
            target: "kb".into(),
            pid: 999_999,
            program: "tunelab".into(),
            started_at: 1,
        };
        std::fs::write(&path, serde_json::to_string(&dead).unwrap()).unwrap();
        assert!(holder(&path).is_none(), "nobody holds it");
        let lock = JobLock::acquire(&path, JobKind::Knowledge, "kb").unwrap();
        assert_eq!(lock.taken_over(), Some(&dead));
        assert_eq!(holder(&path).unwrap().pid, std::process::id());
    }

    #[test]
    fn the_workspace_lists_held_locks_only() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(Some(dir.path().to_path_buf())).unwrap();
        let run = ws.runs_dir().join("lora-x-1");
        let _held = JobLock::acquire(&run_lock_path(&run), JobKind::Train, "lora-x-1").unwrap();
        drop(
            JobLock::acquire(
                &knowledge_lock_path(&ws, "docs"),
                JobKind::Knowledge,
                "docs",
            )
            .unwrap(),
        );
        let jobs = list(&ws);
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].kind, JobKind::Train);
        assert_eq!(jobs[0].target, "lora-x-1");
    }

    #[test]
    fn cancelling_one_job_leaves_the_others_running() {
        let table = std::sync::Arc::new(JobTable::default());
        let a = std::sync::Arc::new(AtomicBool::new(false));
        let b = std::sync::Arc::new(AtomicBool::new(false));
        let entry_a = table.register(JobKind::Train, "run-a", a.clone());
        let _entry_b = table.register(JobKind::Train, "run-b", b.clone());
        assert!(table.cancel(JobKind::Train, "run-a"));
        assert!(a.load(Ordering::Relaxed));
        assert!(!b.load(Ordering::Relaxed), "the other job keeps going");
        assert!(
            !table.cancel(JobKind::Knowledge, "run-b"),
            "kinds are told apart"
        );
        drop(entry_a);
        assert!(!table.contains(JobKind::Train, "run-a"));
        assert!(table.contains(JobKind::Train, "run-b"));
        assert!(
            !table.cancel(JobKind::Train, "run-a"),
            "a finished job is gone"
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(5), "5 s");
        assert_eq!(human_duration(125), "2 min");
        assert_eq!(human_duration(3 * 3600 + 60 * 7), "3 h 7 min");
    }
}
