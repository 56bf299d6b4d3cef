//! Problems found in a dataset. A problem with one record is an [`Issue`] (collected, never
//! fatal, so the user sees every one at once); a problem that stops reading altogether is a
//! [`DataError`].

use std::path::{Path, PathBuf};

use serde::Serialize;
use ts_rs::TS;

/// What kind of problem an issue is, for front ends that group or count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum IssueKind {
    /// The text is not valid JSON (or not valid CSV).
    BadSyntax,
    MissingField,
    WrongType,
    UnknownRole,
    /// An assistant turn with no text: nothing to learn from.
    EmptyReply,
    /// The conversation does not end with an assistant turn.
    NoFinalReply,
    /// Longer than the maximum length once tokenized; the end is cut off in training.
    TooLong,
    /// After truncation no trained token is left (the prompt alone fills the maximum length).
    NothingToTrain,
    /// The model's chat template refused the conversation or renders it inconsistently.
    Template,
    /// The file (or the JSON array) holds no records.
    Empty,
}

/// One problem, located as an editor would show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct Issue {
    pub file: String,
    /// 1-based line where the record (or, for JSON syntax errors, the error) is.
    pub line: u32,
    /// Path of the offending field inside the record, e.g. `messages[1].role`; none when the
    /// problem is the record or the file as a whole.
    pub field: Option<String>,
    pub kind: IssueKind,
    pub message: String,
    /// Whether the record was left out because of this issue. Over-long records are kept
    /// (and truncated); every other problem excludes its record.
    pub excluded: bool,
}

impl Issue {
    /// An issue that excludes its record.
    pub fn new(
        file: &Path,
        line: usize,
        field: Option<String>,
        kind: IssueKind,
        message: impl Into<String>,
    ) -> Self {
        Issue {
            file: file.display().to_string(),
            line: line as u32,
            field,
            kind,
            message: message.into(),
            excluded: true,
        }
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Problems that stop a dataset from being read or tokenized at all.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The format could not be told from the extension and the first record.
    #[error("{path}: {message}")]
    UnknownFormat { path: PathBuf, message: String },
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The model cannot render training examples (its chat template renders a conversation
    /// inconsistently, or it names no end-of-text token).
    #[error("{0}")]
    Model(String),
    #[error(transparent)]
    Engine(#[from] tunelab_engine::EngineError),
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
