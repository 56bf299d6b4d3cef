//! Dataset formats and how one is told from a file's extension and its first record.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum DatasetFormat {
    /// `{"instruction", "input"?, "output", "system"?}` records, as a JSON array or JSONL.
    Alpaca,
    /// `{"conversations": [{"from": "human"|"gpt"|..., "value"}]}`, as a JSON array or JSONL.
    #[serde(rename = "sharegpt")]
    ShareGpt,
    /// OpenAI-style `{"messages": [{"role", "content"}]}`, as JSONL (or a JSON array).
    Messages,
    /// A header row naming a prompt and a response column.
    Csv,
    /// Plain text for pretraining: paragraphs separated by blank lines, or the whole file.
    Text,
}

impl DatasetFormat {
    pub const ALL: [DatasetFormat; 5] = [
        DatasetFormat::Alpaca,
        DatasetFormat::ShareGpt,
        DatasetFormat::Messages,
        DatasetFormat::Csv,
        DatasetFormat::Text,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DatasetFormat::Alpaca => "alpaca",
            DatasetFormat::ShareGpt => "sharegpt",
            DatasetFormat::Messages => "messages",
            DatasetFormat::Csv => "csv",
            DatasetFormat::Text => "text",
        }
    }

    /// Whether records are JSON values (a JSON array, or one value per line).
    pub fn is_json(self) -> bool {
        matches!(
            self,
            DatasetFormat::Alpaca | DatasetFormat::ShareGpt | DatasetFormat::Messages
        )
    }
}

impl std::fmt::Display for DatasetFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DatasetFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "alpaca" => Ok(DatasetFormat::Alpaca),
            "sharegpt" | "share-gpt" => Ok(DatasetFormat::ShareGpt),
            "messages" | "openai" => Ok(DatasetFormat::Messages),
            "csv" => Ok(DatasetFormat::Csv),
            "text" | "txt" => Ok(DatasetFormat::Text),
            _ => {
                let known: Vec<&str> = DatasetFormat::ALL.iter().map(|f| f.as_str()).collect();
                Err(format!(
                    "unknown dataset format `{s}` (known: {})",
                    known.join(", ")
                ))
            }
        }
    }
}

/// The format a file's extension settles on its own: CSV and plain text. JSON files need a
/// look at their first record ([`format_of_record`]).
pub fn format_from_extension(path: &Path) -> Option<DatasetFormat> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "csv" | "tsv" => Some(DatasetFormat::Csv),
        "txt" | "text" | "md" => Some(DatasetFormat::Text),
        _ => None,
    }
}

/// The JSON format a record's fields point to: `messages`, `conversations`, or Alpaca's
/// `instruction`/`output`.
pub fn format_of_record(record: &Value) -> Option<DatasetFormat> {
    let object = record.as_object()?;
    if object.contains_key("messages") {
        Some(DatasetFormat::Messages)
    } else if object.contains_key("conversations") {
        Some(DatasetFormat::ShareGpt)
    } else if object.contains_key("instruction") || object.contains_key("output") {
        Some(DatasetFormat::Alpaca)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_and_serde() {
        for format in DatasetFormat::ALL {
            assert_eq!(format.as_str().parse::<DatasetFormat>(), Ok(format));
            let json = serde_json::to_string(&format).unwrap();
            assert_eq!(json, format!("\"{}\"", format.as_str()));
        }
        let err = "parquet".parse::<DatasetFormat>().unwrap_err();
        assert!(
            err.contains("alpaca, sharegpt, messages, csv, text"),
            "{err}"
        );
    }

    #[test]
    fn records_name_their_format_by_their_fields() {
        let cases = [
            (r#"{"messages": []}"#, Some(DatasetFormat::Messages)),
            (r#"{"conversations": []}"#, Some(DatasetFormat::ShareGpt)),
            (
                r#"{"instruction": "a", "output": "b"}"#,
                Some(DatasetFormat::Alpaca),
            ),
            (r#"{"question": "a"}"#, None),
            (r#"[1, 2]"#, None),
        ];
        for (json, expected) in cases {
            let value: Value = serde_json::from_str(json).unwrap();
            assert_eq!(format_of_record(&value), expected, "{json}");
        }
        assert_eq!(
            format_from_extension(Path::new("a/b.CSV")),
            Some(DatasetFormat::Csv)
        );
        assert_eq!(format_from_extension(Path::new("b.jsonl")), None);
    }
}
