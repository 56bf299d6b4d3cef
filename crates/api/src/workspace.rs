//! The user's workspace: one folder holding models, runs, knowledge bases, templates and
//! evaluations. `TUNELAB_HOME` overrides the platform data folder.

use std::path::{Path, PathBuf};

use crate::error::{ApiError, Result};

#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

/// The name the default chat model has right after setup.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

impl Workspace {
    /// Opens (creating if needed) the workspace at `root`, or at `TUNELAB_HOME`, or at the
    /// platform data folder (`~/.local/share/tunelab` on Linux).
    pub fn open(root: Option<PathBuf>) -> Result<Self> {
        let root = match root.or_else(|| std::env::var_os("TUNELAB_HOME").map(PathBuf::from)) {
            Some(root) => root,
            None => directories::ProjectDirs::from("dev", "tunelab", "tunelab")
                .map(|d| d.data_dir().to_path_buf())
                .ok_or_else(|| {
                    ApiError::new(
                        "io",
                        "no home folder found; set TUNELAB_HOME to a folder Tunelab may use",
                    )
                })?,
        };
        let ws = Workspace { root };
        for dir in [ws.models_dir(), ws.runs_dir()] {
            std::fs::create_dir_all(&dir).map_err(|e| ApiError::io(&dir, e))?;
        }
        Ok(ws)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// Evaluations, one folder each (see `eval`).
    pub fn evals_dir(&self) -> PathBuf {
        self.root.join("evals")
    }

    /// The LanceDB database holding every knowledge base, one table each.
    pub fn knowledge_dir(&self) -> PathBuf {
        self.root.join("knowledge")
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers never see a
/// half-written file and a crash leaves the old version in place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ApiError::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut file = std::fs::File::create(&tmp).map_err(|e| ApiError::io(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| ApiError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ApiError::io(path, e))
}
