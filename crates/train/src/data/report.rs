//! The dataset check: what a file holds, every problem in it, and (with a model) how long its
//! examples are in tokens.

use std::path::Path;

use serde::Serialize;
use ts_rs::TS;
use tunelab_engine::LoadedModel;

use super::format::DatasetFormat;
use super::issue::{Issue, Result};
use super::render::{tokenize_dataset, RenderOptions, TokenizedSet, TrainOn};
use super::{read_dataset, Dataset, ExampleContent, ReadOptions};

/// Turns per role in the usable conversations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct RoleCounts {
    pub system: u32,
    pub user: u32,
    pub assistant: u32,
}

/// Token lengths of the usable examples (before truncation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct TokenStats {
    pub max_len: u32,
    pub min: u32,
    pub median: u32,
    pub max: u32,
    /// Usable conversations longer than `max_len`, whose end is cut off in training.
    pub truncated: u32,
    /// Tokens the loss covers, after truncation.
    #[ts(type = "number")]
    pub trainable_tokens: u64,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct DataReport {
    pub file: String,
    /// None only when the file is empty and its extension does not tell.
    pub format: Option<DatasetFormat>,
    pub rows_total: u32,
    pub rows_usable: u32,
    /// Every problem, in file order.
    pub issues: Vec<Issue>,
    pub roles: RoleCounts,
    /// Present when the check was given a model.
    pub tokens: Option<TokenStats>,
}

fn median(sorted: &[u32]) -> u32 {
    match sorted.len() {
        0 => 0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

impl DataReport {
    /// The report for a dataset as read and, when a model was given, as tokenized with
    /// `max_len`.
    pub fn new(dataset: &Dataset, tokenized: Option<(&TokenizedSet, usize)>) -> Self {
        let mut issues = dataset.issues.clone();
        let usable: Vec<usize> = match tokenized {
            Some((set, _)) => {
                issues.extend(set.issues.iter().cloned());
                set.sources.clone()
            }
            None => (0..dataset.examples.len()).collect(),
        };
        issues.sort_by_key(|i| i.line);
        let mut roles = RoleCounts::default();
        for &index in &usable {
            if let ExampleContent::Chat(messages) = &dataset.examples[index].content {
                for message in messages {
                    match message.role.as_str() {
                        "system" => roles.system += 1,
                        "user" => roles.user += 1,
                        _ => roles.assistant += 1,
                    }
                }
            }
        }
        let tokens = tokenized.map(|(set, max_len)| {
            let mut lengths: Vec<u32> = set.examples.iter().map(|e| e.full_len as u32).collect();
            lengths.sort_unstable();
            TokenStats {
                max_len: max_len as u32,
                min: lengths.first().copied().unwrap_or(0),
                median: median(&lengths),
                max: lengths.last().copied().unwrap_or(0),
                truncated: set.truncated as u32,
                trainable_tokens: set
                    .examples
                    .iter()
                    .map(|e| e.trainable_tokens() as u64)
                    .sum(),
            }
        });
        DataReport {
            file: dataset.file.display().to_string(),
            format: dataset.format,
            rows_total: dataset.rows_total as u32,
            rows_usable: usable.len() as u32,
            issues,
            roles,
            tokens,
        }
    }
}

/// Reads and checks a dataset; with a model, also renders and tokenizes every conversation
/// the way training will (loss on the replies, cut at `max_len` tokens).
pub fn check_dataset(
    path: &Path,
    options: &ReadOptions,
    model: Option<&LoadedModel>,
    max_len: usize,
) -> Result<DataReport> {
    let dataset = read_dataset(path, options)?;
    Ok(report_dataset(&dataset, model, max_len))
}

/// [`check_dataset`] for a dataset already read.
pub fn report_dataset(
    dataset: &Dataset,
    model: Option<&LoadedModel>,
    max_len: usize,
) -> DataReport {
    let render = RenderOptions {
        train_on: TrainOn::AssistantReplies,
        max_len,
    };
    let tokenized = model.map(|model| tokenize_dataset(model, dataset, &render));
    DataReport::new(dataset, tokenized.as_ref().map(|set| (set, max_len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_counts_averages_the_middle_pair() {
        assert_eq!(median(&[]), 0);
        assert_eq!(median(&[3, 5, 9]), 5);
        assert_eq!(median(&[3, 5, 9, 11]), 7);
    }
}
