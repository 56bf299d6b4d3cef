//! The engine's error type: every variant names the file (or field) it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but its bytes are not what its format promises (truncated, corrupt, wrong magic).
    #[error("{path} is not a valid {format} file: {message}")]
    Format {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    /// A configuration value is missing or impossible.
    #[error("{path}: field `{field}` {message}")]
    Config {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("{path}: architecture `{architecture}` is not supported (supported: {supported})")]
    UnsupportedArchitecture {
        path: PathBuf,
        architecture: String,
        supported: &'static str,
    },
    #[error("{path}: {what} is missing")]
    Missing { path: PathBuf, what: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Long work (an export) stopped on request.
    #[error("stopped on request")]
    Cancelled,
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(
        path: impl Into<PathBuf>,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        EngineError::Config {
            path: path.into(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn format(
        path: impl Into<PathBuf>,
        format: &'static str,
        message: impl Into<String>,
    ) -> Self {
        EngineError::Format {
            path: path.into(),
            format,
            message: message.into(),
        }
    }
}
