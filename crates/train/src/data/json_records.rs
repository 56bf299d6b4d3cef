//! Splitting a JSON dataset into records, each with the line it starts on: one value per line
//! (JSONL), or the elements of one top-level array, located through the byte offsets of
//! serde_json's `RawValue`s.

use std::path::Path;

use serde_json::value::RawValue;
use serde_json::Value;

use super::issue::{Issue, IssueKind};

/// A parsed record and the 1-based line it starts on.
pub(crate) struct JsonRecord {
    pub line: usize,
    pub value: Value,
}

/// Records of a JSON dataset; records that are not valid JSON become issues.
pub(crate) struct JsonRecords {
    /// Every record seen, valid or not.
    pub rows_total: usize,
    pub records: Vec<JsonRecord>,
}

/// serde_json's message without its trailing " at line L column C".
fn bare_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_string()
}

pub(crate) fn split(file: &Path, text: &str, issues: &mut Vec<Issue>) -> JsonRecords {
    if text.trim_start().starts_with('[') {
        return split_array(file, text, issues);
    }
    let mut line_issues = Vec::new();
    let lines = split_lines(file, text, &mut line_issues);
    // A single pretty-printed object fails line by line but parses as a whole: take it as one
    // record rather than reporting each of its lines.
    let first_line_failed = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| serde_json::from_str::<Value>(l).is_err());
    if first_line_failed {
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            let start = text.len() - text.trim_start().len();
            let line = text[..start].matches('\n').count() + 1;
            return JsonRecords {
                rows_total: 1,
                records: vec![JsonRecord { line, value }],
            };
        }
    }
    issues.extend(line_issues);
    lines
}

/// JSONL: every non-blank line is one record.
fn split_lines(file: &Path, text: &str, issues: &mut Vec<Issue>) -> JsonRecords {
    let mut out = JsonRecords {
        rows_total: 0,
        records: Vec::new(),
    };
    for (index, line_text) in text.lines().enumerate() {
        if line_text.trim().is_empty() {
            continue;
        }
        out.rows_total += 1;
        match parse_line(file, index + 1, line_text) {
            Ok(record) => out.records.push(record),
            Err(issue) => issues.push(issue),
        }
    }
    out
}

/// One JSONL line (not blank) as a record, or the issue saying why it is not JSON.
pub(crate) fn parse_line(
    file: &Path,
    line: usize,
    line_text: &str,
) -> std::result::Result<JsonRecord, Issue> {
    serde_json::from_str::<Value>(line_text)
        .map(|value| JsonRecord { line, value })
        .map_err(|err| {
            Issue::new(
                file,
                line,
                None,
                IssueKind::BadSyntax,
                format!(
                    "not valid JSON at column {}: {}",
                    err.column(),
                    bare_message(&err)
                ),
            )
        })
}

/// A top-level JSON array: every element is one record, reported at the line it starts on.
fn split_array(file: &Path, text: &str, issues: &mut Vec<Issue>) -> JsonRecords {
    let elements: Vec<&RawValue> = match serde_json::from_str(text) {
        Ok(elements) => elements,
        Err(err) => {
            issues.push(Issue::new(
                file,
                err.line(),
                None,
                IssueKind::BadSyntax,
                format!(
                    "not valid JSON at column {}: {} (no record of a broken JSON array can be \
                     used; JSONL keeps the other records usable)",
                    err.column(),
                    bare_message(&err)
                ),
            ));
            return JsonRecords {
                rows_total: 0,
                records: Vec::new(),
            };
        }
    };
    let mut records = Vec::with_capacity(elements.len());
    let (mut counted_to, mut line) = (0usize, 1usize);
    for raw in &elements {
        // A RawValue borrows its text from `text`, so its address gives its byte offset.
        let offset = raw.get().as_ptr() as usize - text.as_ptr() as usize;
        line += text.as_bytes()[counted_to..offset]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        counted_to = offset;
        let value = serde_json::from_str(raw.get()).expect("a RawValue holds valid JSON");
        records.push(JsonRecord { line, value });
    }
    if records.is_empty() {
        issues.push(Issue::new(
            file,
            1,
            None,
            IssueKind::Empty,
            "the JSON array holds no records",
        ));
    }
    JsonRecords {
        rows_total: records.len(),
        records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(text: &str) -> (Vec<usize>, Vec<Issue>) {
        let mut issues = Vec::new();
        let records = split(Path::new("d.json"), text, &mut issues);
        (records.records.iter().map(|r| r.line).collect(), issues)
    }

    #[test]
    fn array_elements_are_located_at_their_first_line() {
        let text =
            "[\n  {\"a\": 1},\n\n  {\n    \"a\": \"x\\ny\"\n  },\n  {\"a\": [\n1]}, {\"a\": 3}\n]";
        let (lines, issues) = lines_of(text);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(lines, vec![2, 4, 7, 8]);
    }

    #[test]
    fn jsonl_skips_blank_lines_and_reports_each_bad_line() {
        let (lines, issues) = lines_of("{\"a\": 1}\n\n{\"a\": \n{\"a\": 2}\nnope\n");
        assert_eq!(lines, vec![1, 4]);
        let bad: Vec<u32> = issues.iter().map(|i| i.line).collect();
        assert_eq!(bad, vec![3, 5], "{issues:?}");
        assert!(issues[0].message.starts_with("not valid JSON at column"));
    }

    #[test]
    fn one_pretty_printed_object_is_one_record() {
        let (lines, issues) =
            lines_of("\n{\n  \"messages\": [\n    {\"role\": \"user\"}\n  ]\n}\n");
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(lines, vec![2]);
    }

    #[test]
    fn a_broken_array_is_one_issue_at_serdes_line() {
        let (lines, issues) = lines_of("[\n{\"a\": 1},\n{\"a\" 2}\n]");
        assert!(lines.is_empty());
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].line, 3);
    }
}
