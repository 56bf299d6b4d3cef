//! One error shape for every front end: a stable `code` the UI can branch on and a message that
//! says what went wrong and what to do.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// What kind of failure an [`ApiError`] is: the one list of codes the back end raises and the
/// window branches on (as snake_case strings: `"not_found"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum ErrorCode {
    /// A request, setting or file the user gave is wrong; the message names the field or line.
    InvalidInput,
    NotFound,
    /// Something of that name is there already.
    Exists,
    /// Another job (in this process or another) holds what this one would write.
    Busy,
    Cancelled,
    /// Reading or writing a file failed.
    Io,
    /// A fault of Tunelab's own, not of the input.
    Internal,
    /// A model's files cannot be read, or its architecture is not supported.
    BadModel,
    /// A document cannot be read into a knowledge base.
    BadDocument,
    /// A download did not arrive whole or does not match its checksum.
    BadDownload,
    /// A prompt template does not render.
    BadPrompt,
    /// Training produced a loss or gradient that is not a finite number.
    Diverged,
    /// A knowledge base is searched with another embedding model than it was built with.
    EmbedderMismatch,
    /// An export does not give back the source's outputs when read again.
    ExportCheckFailed,
    /// The Hugging Face hub refused access (gated or private repository).
    Forbidden,
    HubError,
    /// The network is not reachable.
    Offline,
    /// The knowledge base's store failed.
    Store,
    /// The memory plan says the job does not fit.
    WontFit,
    /// Raised by the window itself: it is open without the app's back end.
    NoBackend,
    /// Raised by the window itself: chat has no model to answer with.
    NoModel,
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    pub fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        Self::new(ErrorCode::Io, format!("{}: {err}", path.display()))
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
            E::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorCode::NotFound
            }
            E::Io { .. } => ErrorCode::Io,
            E::Format { .. }
            | E::Config { .. }
            | E::Missing { .. }
            | E::UnsupportedArchitecture { .. } => ErrorCode::BadModel,
            E::Tokenizer(_) | E::Template(_) => ErrorCode::BadModel,
            E::InvalidRequest(_) => ErrorCode::InvalidInput,
            E::Tensor(_) => ErrorCode::Internal,
            E::Cancelled => ErrorCode::Cancelled,
        };
        ApiError::new(code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_travel_as_their_snake_case_names() {
        for (code, name) in [
            (ErrorCode::InvalidInput, "invalid_input"),
            (ErrorCode::WontFit, "wont_fit"),
            (ErrorCode::ExportCheckFailed, "export_check_failed"),
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        let error = ApiError::not_found("no model `x`");
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            serde_json::json!({"code": "not_found", "message": "no model `x`"})
        );
    }
}
