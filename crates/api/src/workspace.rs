//! The user's workspace: one folder holding models, runs, knowledge bases, templates and
//! evaluations. `TUNELAB_HOME` overrides the platform data folder.

use std::path::{Path, PathBuf};

use crate::error::{ApiError, ErrorCode, Result};

#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

/// The name the default chat model has right after setup (a run's model unless told otherwise).
pub use tunelab_train::DEFAULT_MODEL;

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
                        ErrorCode::Io,
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

    /// Comparisons of the methods on one task, one folder each (see `compare`).
    pub fn comparisons_dir(&self) -> PathBuf {
        self.root.join("compare")
    }

    /// Exports of models and runs to other tools' formats, one folder each unless the user
    /// names another place (see `export`); `.locks/` holds the lock of every export in flight.
    pub fn exports_dir(&self) -> PathBuf {
        self.root.join("exports")
    }

    /// The LanceDB database holding every knowledge base, one table each.
    pub fn knowledge_dir(&self) -> PathBuf {
        self.root.join("knowledge")
    }
}

/// The one atomic file write (a temporary file, synced, then renamed), shared with the trainer.
pub use tunelab_train::trainer::write_atomic;

/// `value` as pretty JSON, for a file.
pub(crate) fn json_bytes<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
}

/// A JSON file's value, or None when there is no file; a file that does not parse is an error
/// naming it.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ApiError::invalid(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApiError::io(path, e)),
    }
}

/// Eight hex digits of the SHA-256 of `value`'s JSON: folder names made from a configuration,
/// so the same configuration finds its folder again and another one gets a new folder.
pub(crate) fn short_digest<T: serde::Serialize>(value: &T) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(serde_json::to_vec(value).unwrap_or_default());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// `text` with every character a folder name should not hold turned into '-'.
pub(crate) fn folder_safe(text: &str) -> String {
    text.chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                true => c,
                false => '-',
            },
        )
        .collect()
}
