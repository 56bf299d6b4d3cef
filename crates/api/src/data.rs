//! Training data: checking a dataset file before training on it. The check reads every record,
//! reports each problem with its file, line and field, and, given a model, tokenizes the
//! conversations through that model's chat template to measure them.

use std::path::Path;

use tunelab_train::data::{check_dataset, DataError};

pub use tunelab_train::data::{
    DataReport, DatasetFormat, Issue, IssueKind, ReadOptions, RoleCounts, TextDocuments, TokenStats,
};

use crate::chat::ModelCache;
use crate::error::{ApiError, ErrorCode, Result};
use crate::workspace::Workspace;

impl From<DataError> for ApiError {
    fn from(err: DataError) -> Self {
        match err {
            DataError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ApiError::not_found(err.to_string())
            }
            DataError::Io { .. } => ApiError::new(ErrorCode::Io, err.to_string()),
            DataError::UnknownFormat { .. } | DataError::InvalidOption(_) => {
                ApiError::invalid(err.to_string())
            }
            DataError::Model(message) => ApiError::new(ErrorCode::BadModel, message),
            DataError::Engine(err) => err.into(),
        }
    }
}

/// Checks `file` in `format` (detected when `None`); with `model`, also measures every
/// conversation in that model's tokens against `max_len`.
pub fn check(
    ws: &Workspace,
    cache: &ModelCache,
    file: &Path,
    format: Option<DatasetFormat>,
    model: Option<&str>,
    max_len: usize,
) -> Result<DataReport> {
    let options = ReadOptions {
        format,
        ..ReadOptions::default()
    };
    check_with_options(ws, cache, file, &options, model, max_len)
}

/// [`check`] with every reading option (CSV column names, how plain text is cut).
pub fn check_with_options(
    ws: &Workspace,
    cache: &ModelCache,
    file: &Path,
    options: &ReadOptions,
    model: Option<&str>,
    max_len: usize,
) -> Result<DataReport> {
    check_max_len(max_len)?;
    let loaded = model.map(|name| cache.get(ws, name)).transpose()?;
    Ok(check_dataset(file, options, loaded.as_deref(), max_len)?)
}

fn check_max_len(max_len: usize) -> Result<()> {
    if max_len == 0 {
        return Err(ApiError::invalid("the max length must be at least 1 token"));
    }
    Ok(())
}

/// What the training screen shows of a dataset before a run: the check's report, and the first
/// examples as the model will see them (conversations through its chat template).
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct DatasetPreview {
    pub report: DataReport,
    /// Up to three examples, rendered; each cut at 2,000 characters.
    pub samples: Vec<String>,
}

/// Checks `file` against `model`'s tokens and renders its first examples through the model's
/// chat template.
pub fn preview(
    ws: &Workspace,
    cache: &ModelCache,
    file: &Path,
    model: &str,
    max_len: usize,
) -> Result<DatasetPreview> {
    check_max_len(max_len)?;
    let loaded = cache.get(ws, model)?;
    let dataset = tunelab_train::read_dataset(file, &ReadOptions::default())?;
    let report = tunelab_train::data::report_dataset(&dataset, Some(&loaded), max_len);
    let mut samples = Vec::new();
    for example in dataset.examples.iter().take(3) {
        let text = match &example.content {
            tunelab_train::ExampleContent::Chat(messages) => loaded.template.render(
                messages,
                false,
                loaded.tokenizer.bos_token(),
                loaded.tokenizer.eos_token(),
            )?,
            tunelab_train::ExampleContent::Text(text) => text.clone(),
        };
        samples.push(text.chars().take(2000).collect());
    }
    Ok(DatasetPreview { report, samples })
}
