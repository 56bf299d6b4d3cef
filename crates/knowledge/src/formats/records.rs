//! Record formats: every CSV row, JSON array item or JSONL line becomes one section, written as
//! `field: value` lines so the header travels with each value. Nested JSON is flattened with
//! dotted keys.

use std::path::Path;

use serde_json::Value;

use crate::document::{utf8, Location, Parsed, Section};
use crate::error::{KnowledgeError, Result};

fn record(number: u32, text: String) -> Section {
    Section {
        location: Location {
            record: Some(number),
            ..Default::default()
        },
        text,
    }
}

pub fn csv(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let text = utf8(path, "csv", bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| KnowledgeError::document(path, "csv", format!("header row: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut sections = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(i as u64 + 2);
            KnowledgeError::document(path, "csv", format!("line {line}: {e}"))
        })?;
        let lines: Vec<String> = headers
            .iter()
            .zip(row.iter())
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(h, v)| format!("{h}: {}", v.trim()))
            .collect();
        sections.push(record(i as u32 + 1, lines.join("\n")));
    }
    Ok(Parsed {
        title: None,
        sections,
    })
}

pub fn json(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let text = utf8(path, "json", bytes)?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        KnowledgeError::document(
            path,
            "json",
            format!("line {} column {}: {e}", e.line(), e.column()),
        )
    })?;
    let items: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let sections = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| record(i as u32 + 1, render(item)))
        .collect();
    Ok(Parsed {
        title: None,
        sections,
    })
}

pub fn jsonl(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let text = utf8(path, "jsonl", bytes)?;
    let mut sections = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| KnowledgeError::document(path, "jsonl", format!("line {}: {e}", i + 1)))?;
        let mut section = record(i as u32 + 1, render(&value));
        section.location.line = Some(i as u32 + 1);
        section.location.record = None;
        sections.push(section);
    }
    Ok(Parsed {
        title: None,
        sections,
    })
}

/// `key: value` lines for objects (nested keys dotted), the text itself for strings.
fn render(value: &Value) -> String {
    let mut lines = Vec::new();
    flatten("", value, &mut lines);
    lines.join("\n")
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<String>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&key(k), v, out);
            }
        }
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            let joined: Vec<String> = items.iter().map(scalar).collect();
            push(prefix, joined.join(", "), out);
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&key(&(i + 1).to_string()), v, out);
            }
        }
        Value::Null => {}
        other => push(prefix, scalar(other), out),
    }
}

fn push(key: &str, value: String, out: &mut Vec<String>) {
    if value.is_empty() {
        return;
    }
    if key.is_empty() {
        out.push(value);
    } else {
        out.push(format!("{key}: {value}"));
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.trim().to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_carry_their_header() {
        let parsed = csv(
            Path::new("p.csv"),
            b"sku,name,price\nB-1,City bike,899\nB-2,\"Cargo, long\",2499\n",
        )
        .unwrap();
        assert_eq!(parsed.sections.len(), 2);
        assert_eq!(
            parsed.sections[1].text,
            "sku: B-2\nname: Cargo, long\nprice: 2499"
        );
        assert_eq!(parsed.sections[1].location.record, Some(2));
    }

    #[test]
    fn a_ragged_csv_row_names_its_line() {
        let err = csv(Path::new("p.csv"), b"a,b\n1,2\n3\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("p.csv") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn json_items_are_flattened() {
        let parsed = json(
            Path::new("f.json"),
            br#"[{"q":"Battery life?","a":{"text":"About 80 km","source":"manual"},"tags":["battery","range"]}]"#,
        )
        .unwrap();
        assert_eq!(
            parsed.sections[0].text,
            "q: Battery life?\na.text: About 80 km\na.source: manual\ntags: battery, range"
        );
    }

    #[test]
    fn a_bad_jsonl_line_is_named() {
        let err = jsonl(Path::new("t.jsonl"), b"{\"a\":1}\n{oops}\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("t.jsonl") && err.contains("line 2"), "{err}");
    }
}
