//! One error shape for every front end: a stable `code` the UI can branch on and a message that
//! says what went wrong and what to do.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ApiError {
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("not_found", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("invalid_input", message)
    }

    pub fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        Self::new("io", format!("{}: {err}", path.display()))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<tunelab_engine::EngineError> for ApiError {
    fn from(err: tunelab_engine::EngineError) -> Self {
        use tunelab_engine::EngineError as E;
        let code = match &err {
            E::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => "not_found",
            E::Io { .. } => "io",
            E::Format { .. }
            | E::Config { .. }
            | E::Missing { .. }
            | E::UnsupportedArchitecture { .. } => "bad_model",
            E::Tokenizer(_) | E::Template(_) => "bad_model",
            E::InvalidRequest(_) => "invalid_input",
            E::Tensor(_) => "internal",
            E::Cancelled => "cancelled",
        };
        ApiError::new(code, err.to_string())
    }
}
