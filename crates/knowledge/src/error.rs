//! Errors of the knowledge crate. Each names the file, knowledge base or field it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file's bytes are not what its extension promises (corrupt, truncated, encrypted).
    #[error("{path} is not a readable {format} file: {message}")]
    Document {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    /// A limit that protects the machine (a zip bomb, a gigantic file) was hit.
    #[error("{path} was refused: {message}")]
    Refused { path: PathBuf, message: String },
    #[error("{path}: files ending in `.{extension}` are not supported (supported: {supported})")]
    Unsupported {
        path: PathBuf,
        extension: String,
        supported: &'static str,
    },
    #[error("knowledge base `{0}` does not exist (see `tunelab kb list`)")]
    NotFound(String),
    #[error("knowledge base `{0}` already exists")]
    Exists(String),
    #[error("`{name}` is not a valid knowledge base name: {message}")]
    InvalidName { name: String, message: String },
    /// The embedder asked for is not the one the knowledge base was built with.
    #[error(
        "knowledge base `{kb}` was built with {recorded} ({recorded_dim} dimensions), not {requested} ({requested_dim}); \
         search it with the same embedder, or create a new knowledge base for the other one"
    )]
    EmbedderMismatch {
        kb: String,
        recorded: String,
        recorded_dim: usize,
        requested: String,
        requested_dim: usize,
    },
    #[error("invalid setting `{field}`: {message}")]
    Setting {
        field: &'static str,
        message: String,
    },
    #[error("knowledge store {path}: {message}")]
    Store { path: PathBuf, message: String },
    /// An add stopped on request; the knowledge base is as it was before it.
    #[error("adding to knowledge base `{0}` was stopped; it holds what it held before")]
    Cancelled(String),
    #[error(transparent)]
    Engine(#[from] tunelab_engine::EngineError),
}

pub type Result<T, E = KnowledgeError> = std::result::Result<T, E>;

impl KnowledgeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        KnowledgeError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn document(
        path: impl Into<PathBuf>,
        format: &'static str,
        message: impl Into<String>,
    ) -> Self {
        KnowledgeError::Document {
            path: path.into(),
            format,
            message: message.into(),
        }
    }

    pub(crate) fn refused(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        KnowledgeError::Refused {
            path: path.into(),
            message: message.into(),
        }
    }
}
