//! tunelab-knowledge turns documents into searchable knowledge bases: it reads Markdown, text,
//! HTML, PDF, Word, CSV and JSON files into sections that remember where they came from, cuts
//! them into token-sized chunks, embeds them with a local sentence encoder, and keeps them in an
//! embedded LanceDB database with vector, full-text and hybrid search. `prompt` turns search hits
//! into a grounded prompt with numbered sources.

pub mod chunk;
pub mod document;
pub mod embed;
pub mod error;
mod formats;
pub mod prompt;
pub mod store;

pub use chunk::{chunk_document, Chunk, ChunkOptions};
pub use document::{collect_files, read_document, Collected, Document, Location, Section};
pub use embed::Embedder;
pub use error::{KnowledgeError, Result};
pub use store::validate_name;
pub use store::{
    AddProgress, AddReport, EmbeddedChunk, FailedFile, Hit, KnowledgeBaseInfo, KnowledgeStore,
    SearchMode, SearchOptions, Settings, SourceInfo,
};
