//! Training data: reading datasets in the common formats ([`read_dataset`]), checking them
//! ([`check_dataset`] and its [`DataReport`]), turning conversations into token ids with the
//! loss on the assistant's replies only ([`tokenize_dataset`]), packing plain text into
//! fixed-length blocks ([`pack`]) and splitting off a validation set ([`split_train_validation`]).

mod conversation;
mod csv_rows;
pub mod format;
pub mod issue;
mod json_records;
pub mod pack;
pub mod render;
pub mod report;
mod source;
pub mod split;
mod text_docs;

use std::path::{Path, PathBuf};

use tunelab_engine::Message;

use source::Probe;

pub use format::DatasetFormat;
pub use issue::{DataError, Issue, IssueKind, Result};
pub use pack::pack;
pub use render::{
    chat_pieces, eos_id, tokenize_chat, tokenize_dataset, tokenize_example, tokenize_text,
    RenderOptions, TextPiece, TokenizedExample, TokenizedSet, TrainOn, IGNORE_INDEX,
};
pub use report::{check_dataset, report_dataset, DataReport, RoleCounts, TokenStats};
pub use split::{split_train_validation, take_share, TrainValidationSplit};
pub use text_docs::TextDocuments;

/// How to read a dataset file. The default detects everything.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Forces a format instead of detecting it from the extension and the first record.
    pub format: Option<DatasetFormat>,
    /// CSV: the prompt column (default: `prompt`, else `instruction`).
    pub prompt_column: Option<String>,
    /// CSV: the response column (default: `response`, else `output`).
    pub response_column: Option<String>,
    /// Plain text: paragraphs (default) or the whole file as one document.
    pub text_documents: TextDocuments,
}

/// What one record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExampleContent {
    /// A conversation ending with an assistant turn; roles are "system", "user", "assistant".
    Chat(Vec<Message>),
    /// A document for plain language modelling.
    Text(String),
}

/// One usable record and the 1-based line of the file it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub line: usize,
    pub content: ExampleContent,
}

/// A dataset file as read: its usable records and the issues of the others.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub file: PathBuf,
    /// None only when the file is empty and its extension does not tell.
    pub format: Option<DatasetFormat>,
    /// Records seen, usable or not.
    pub rows_total: usize,
    pub examples: Vec<Example>,
    /// Every problem found, in file order; records with a problem are not in `examples`.
    pub issues: Vec<Issue>,
}

/// Reads and checks a dataset file. Problems with records become [`Issue`]s; only an
/// unreadable file or an undetectable format is an error. JSONL, CSV and paragraph text are
/// read a record at a time, so memory holds the records, not the file as well.
pub fn read_dataset(path: &Path, options: &ReadOptions) -> Result<Dataset> {
    let mut dataset = Dataset {
        file: path.to_path_buf(),
        format: options
            .format
            .or_else(|| format::format_from_extension(path)),
        rows_total: 0,
        examples: Vec::new(),
        issues: Vec::new(),
    };
    let first = match source::probe(path)? {
        Probe::Text { first } => first,
        Probe::Blank => {
            let issue = Issue::new(path, 1, None, IssueKind::Empty, "the file is empty");
            dataset.issues.push(issue);
            return Ok(dataset);
        }
        Probe::NotUtf8 { line } => {
            let message = "the file is not UTF-8 text; save it as UTF-8";
            let issue = Issue::new(path, line, None, IssueKind::BadSyntax, message);
            dataset.issues.push(issue);
            return Ok(dataset);
        }
    };
    match dataset.format {
        Some(DatasetFormat::Csv) => {
            let tsv = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
            let rows = csv_rows::read(
                path,
                source::reader(path)?,
                if tsv { b'\t' } else { b',' },
                options.prompt_column.as_deref(),
                options.response_column.as_deref(),
                &mut dataset.issues,
            );
            dataset.rows_total = rows.rows_total;
            dataset.examples = rows.examples;
        }
        Some(DatasetFormat::Text) => {
            dataset.examples = match options.text_documents {
                TextDocuments::WholeFile => text_docs::whole_file(&source::read_whole(path)?),
                TextDocuments::Paragraphs => text_docs::paragraphs(source::lines(path)?)?,
            };
            dataset.rows_total = dataset.examples.len();
        }
        Some(_) | None => read_json(path, first, options.format, &mut dataset)?,
    }
    if dataset.rows_total == 0 && dataset.issues.is_empty() {
        dataset.issues.push(Issue::new(
            path,
            1,
            None,
            IssueKind::Empty,
            "the file holds no records",
        ));
    }
    dataset.issues.sort_by_key(|i| i.line);
    Ok(dataset)
}

fn read_json(
    path: &Path,
    first: char,
    forced: Option<DatasetFormat>,
    dataset: &mut Dataset,
) -> Result<()> {
    if forced.is_none() && !matches!(first, '[' | '{') {
        return Err(DataError::UnknownFormat {
            path: path.to_path_buf(),
            message: "cannot tell the format: the file is neither JSON nor JSONL, and its \
                      extension is not .csv, .tsv or .txt (choose one with --format)"
                .into(),
        });
    }
    let mut records = Records {
        path,
        format: forced,
        waiting: Vec::new(),
    };
    let streamed = first != '[' && stream_jsonl(path, &mut records, dataset)?;
    if !streamed {
        let text = source::read_whole(path)?;
        let split = json_records::split(path, &text, &mut dataset.issues);
        dataset.rows_total = split.rows_total;
        for record in split.records {
            records.add(record, dataset);
        }
    }
    records.finish(dataset)
}

/// Reads JSONL a line at a time into `records`. Returns false, having taken nothing, when
/// the first record is not one line of JSON (a pretty-printed object, or a broken file: the
/// whole text tells which).
fn stream_jsonl(path: &Path, records: &mut Records, dataset: &mut Dataset) -> Result<bool> {
    for line in source::lines(path)? {
        let (number, text) = line?;
        if text.trim().is_empty() {
            continue;
        }
        match json_records::parse_line(path, number, &text) {
            Ok(record) => {
                dataset.rows_total += 1;
                records.add(record, dataset);
            }
            Err(_) if dataset.rows_total == 0 => return Ok(false),
            Err(issue) => {
                dataset.rows_total += 1;
                dataset.issues.push(issue);
            }
        }
    }
    Ok(true)
}

/// JSON records turned into examples as they are read. Until a record tells the format, the
/// records wait.
struct Records<'a> {
    path: &'a Path,
    format: Option<DatasetFormat>,
    waiting: Vec<json_records::JsonRecord>,
}

impl Records<'_> {
    fn add(&mut self, record: json_records::JsonRecord, dataset: &mut Dataset) {
        let format = match self.format {
            Some(format) => format,
            None => match format::format_of_record(&record.value) {
                Some(format) => {
                    self.format = Some(format);
                    for waiting in std::mem::take(&mut self.waiting) {
                        self.convert(format, waiting, dataset);
                    }
                    format
                }
                None => {
                    self.waiting.push(record);
                    return;
                }
            },
        };
        self.convert(format, record, dataset);
    }

    fn convert(
        &self,
        format: DatasetFormat,
        record: json_records::JsonRecord,
        dataset: &mut Dataset,
    ) {
        let mut check = conversation::RecordCheck::new(self.path, record.line);
        match conversation::from_record(format, &record.value, &mut check) {
            Some(messages) => dataset.examples.push(Example {
                line: record.line,
                content: ExampleContent::Chat(messages),
            }),
            None => dataset.issues.append(&mut check.issues),
        }
    }

    fn finish(self, dataset: &mut Dataset) -> Result<()> {
        match (self.format, self.waiting.first()) {
            (Some(format), _) => dataset.format = Some(format),
            (None, None) => {}
            (None, Some(record)) => {
                return Err(DataError::UnknownFormat {
                    path: self.path.to_path_buf(),
                    message: format!(
                        "cannot tell the format from the record at line {}: expected a \
                         `messages` (OpenAI), `conversations` (ShareGPT) or `instruction` and \
                         `output` (Alpaca) field (or choose one with --format)",
                        record.line
                    ),
                })
            }
        }
        Ok(())
    }
}
