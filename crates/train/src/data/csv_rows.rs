//! CSV (and TSV) datasets: a header row, then one prompt/response pair per row. Columns are
//! chosen by name; by default `prompt` (or `instruction`) and `response` (or `output`), and an
//! optional `system` column. Quoted cells may span lines; rows are located at their first line.

use std::path::Path;

use tunelab_engine::Message;

use super::issue::{Issue, IssueKind};
use super::{Example, ExampleContent};

pub(crate) const DEFAULT_PROMPT_COLUMNS: [&str; 2] = ["prompt", "instruction"];
pub(crate) const DEFAULT_RESPONSE_COLUMNS: [&str; 2] = ["response", "output"];

pub(crate) struct CsvRows {
    pub rows_total: usize,
    pub examples: Vec<Example>,
}

/// The index of the column called `chosen`, or else of the first of `defaults` present.
fn find_column(
    headers: &csv::StringRecord,
    chosen: Option<&str>,
    defaults: &[&str],
) -> Result<usize, String> {
    let names: Vec<&str> = match chosen {
        Some(name) => vec![name],
        None => defaults.to_vec(),
    };
    let position = names.iter().find_map(|name| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    });
    position.ok_or_else(|| {
        let wanted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        let header: Vec<&str> = headers.iter().collect();
        format!(
            "no column named {} (the header has: {})",
            wanted.join(" or "),
            header.join(", ")
        )
    })
}

pub(crate) fn read(
    file: &Path,
    input: impl std::io::Read,
    delimiter: u8,
    prompt_column: Option<&str>,
    response_column: Option<&str>,
    issues: &mut Vec<Issue>,
) -> CsvRows {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(input);
    let mut out = CsvRows {
        rows_total: 0,
        examples: Vec::new(),
    };
    let headers = match reader.headers() {
        Ok(headers) => headers.clone(),
        Err(err) => {
            let line = err.position().map(|p| p.line() as usize).unwrap_or(1);
            issues.push(Issue::new(
                file,
                line,
                None,
                IssueKind::BadSyntax,
                format!("the header row is not valid CSV: {err}"),
            ));
            return out;
        }
    };
    let header_line = headers.position().map(|p| p.line() as usize).unwrap_or(1);
    let prompt = find_column(&headers, prompt_column, &DEFAULT_PROMPT_COLUMNS);
    let response = find_column(&headers, response_column, &DEFAULT_RESPONSE_COLUMNS);
    let system = find_column(&headers, Some("system"), &[]).ok();
    let prompt_name = prompt_column.unwrap_or(DEFAULT_PROMPT_COLUMNS[0]);
    let response_name = response_column.unwrap_or(DEFAULT_RESPONSE_COLUMNS[0]);
    for (column, name) in [(&prompt, prompt_name), (&response, response_name)] {
        if let Err(message) = column {
            issues.push(Issue::new(
                file,
                header_line,
                Some(name.to_string()),
                IssueKind::MissingField,
                message.clone(),
            ));
        }
    }
    let columns = prompt.ok().zip(response.ok());
    for row in reader.records() {
        out.rows_total += 1;
        let row = match row {
            Ok(row) => row,
            Err(err) => {
                let line = err.position().map(|p| p.line() as usize).unwrap_or(0);
                issues.push(Issue::new(
                    file,
                    line,
                    None,
                    IssueKind::BadSyntax,
                    format!("not valid CSV: {err}"),
                ));
                continue;
            }
        };
        let Some((prompt, response)) = columns else {
            continue;
        };
        let line = row.position().map(|p| p.line() as usize).unwrap_or(0);
        let name_of = |index: usize| headers.get(index).unwrap_or("").trim().to_string();
        let mut problem = false;
        let mut cell = |index: usize| {
            let value = row.get(index);
            if value.is_none() {
                issues.push(Issue::new(
                    file,
                    line,
                    Some(name_of(index)),
                    IssueKind::MissingField,
                    "the row has no cell in this column",
                ));
                problem = true;
            }
            value.unwrap_or("")
        };
        let (prompt_text, response_text) = (cell(prompt), cell(response));
        if problem {
            continue;
        }
        if response_text.trim().is_empty() {
            issues.push(Issue::new(
                file,
                line,
                Some(name_of(response)),
                IssueKind::EmptyReply,
                "the reply is empty: nothing to learn",
            ));
            continue;
        }
        let mut messages = Vec::with_capacity(3);
        if let Some(system) = system
            .and_then(|i| row.get(i))
            .filter(|s| !s.trim().is_empty())
        {
            messages.push(Message::new("system", system));
        }
        messages.push(Message::new("user", prompt_text));
        messages.push(Message::new("assistant", response_text));
        out.examples.push(Example {
            line,
            content: ExampleContent::Chat(messages),
        });
    }
    out
}
