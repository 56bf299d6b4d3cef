//! Documents as the knowledge base sees them: where they came from, their title, a content hash,
//! and their text in sections that each know their place in the source (page, heading, line,
//! row). Chunks never cross a section boundary, so every chunk can point back to one place.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ts_rs::TS;

use crate::error::{KnowledgeError, Result};
use crate::formats;

/// Files larger than this are refused before they are read (a knowledge base is for documents,
/// not database dumps; split such files first).
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Where a piece of text sits in its source document. Every field is optional because formats
/// differ: PDFs have pages, Markdown has headings and lines, CSV has rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub page: Option<u32>,
    /// The heading path, outermost first, joined with " › ".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub section: Option<String>,
    /// 1-based line where the text starts (text formats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub line: Option<u32>,
    /// 1-based record number (CSV rows after the header, JSON array items, JSONL lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub record: Option<u32>,
}

impl Location {
    /// A short human label: "page 3", "Returns › Damaged items, line 12", "record 7".
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some(page) = self.page {
            parts.push(format!("page {page}"));
        }
        if let Some(section) = &self.section {
            parts.push(section.clone());
        }
        if let Some(record) = self.record {
            parts.push(format!("record {record}"));
        }
        if let Some(line) = self.line {
            parts.push(format!("line {line}"));
        }
        parts.join(", ")
    }
}

/// A run of text that belongs to one place in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub location: Location,
    pub text: String,
}

/// One source file, read and split into sections.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file, as an absolute path.
    pub source: PathBuf,
    pub title: String,
    /// SHA-256 of the file's bytes, hex: an unchanged file is skipped when added again.
    pub hash: String,
    pub format: &'static str,
    pub sections: Vec<Section>,
}

/// The extensions `read_document` understands, for messages.
pub const SUPPORTED: &str = ".md, .markdown, .txt, .html, .htm, .pdf, .docx, .csv, .json, .jsonl";

fn format_of(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "md" | "markdown" => "markdown",
        "txt" | "text" => "text",
        "html" | "htm" => "html",
        "pdf" => "pdf",
        "docx" => "docx",
        "csv" => "csv",
        "json" => "json",
        "jsonl" | "ndjson" => "jsonl",
        _ => return None,
    })
}

/// True when `path` has an extension the knowledge base can read.
pub fn is_supported(path: &Path) -> bool {
    format_of(path).is_some()
}

/// The SHA-256 of `bytes` as lowercase hex.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The one name a file goes by in a knowledge base: absolute, with `.`, `..` and symbolic
/// links resolved, so `a/../a/x.md` and a link to `x.md` are the document `x.md`.
pub fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| KnowledgeError::io(path, e))
}

/// Reads one file into a document. The extension picks the reader; the error names the file.
pub fn read_document(path: &Path) -> Result<Document> {
    let source = canonical(path)?;
    let format = format_of(&source).ok_or_else(|| KnowledgeError::Unsupported {
        path: source.clone(),
        extension: source
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_string(),
        supported: SUPPORTED,
    })?;
    let meta = std::fs::metadata(&source).map_err(|e| KnowledgeError::io(&source, e))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(KnowledgeError::refused(
            &source,
            format!(
                "it is {} MiB; files over {} MiB are not added (split it first)",
                meta.len() >> 20,
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    let bytes = std::fs::read(&source).map_err(|e| KnowledgeError::io(&source, e))?;
    let hash = content_hash(&bytes);
    let fallback_title = source
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("untitled")
        .to_string();
    let parsed = match format {
        "markdown" => formats::text::markdown(&source, &bytes)?,
        "text" => formats::text::plain(&source, &bytes)?,
        "html" => formats::html::read(&source, &bytes)?,
        "pdf" => formats::pdf::read(&source, &bytes)?,
        "docx" => formats::docx::read(&source, &bytes)?,
        "csv" => formats::records::csv(&source, &bytes)?,
        "json" => formats::records::json(&source, &bytes)?,
        "jsonl" => formats::records::jsonl(&source, &bytes)?,
        _ => unreachable!("format_of only returns the formats above"),
    };
    let sections: Vec<Section> = parsed
        .sections
        .into_iter()
        .filter(|s| !s.text.trim().is_empty())
        .collect();
    Ok(Document {
        source,
        title: parsed
            .title
            .filter(|t| !t.trim().is_empty())
            .unwrap_or(fallback_title),
        hash,
        format,
        sections,
    })
}

/// What a format reader returns.
pub(crate) struct Parsed {
    pub title: Option<String>,
    pub sections: Vec<Section>,
}

/// The files that adding `paths` means: files as given (any extension, so an unsupported one is
/// reported), folders walked recursively for supported files, hidden entries skipped; each by
/// its [`canonical`] name, sorted and without duplicates. Entries of a folder that cannot be
/// read (a dangling link, a folder without permission) come back beside them, each with the
/// reason, so one bad entry does not stop the rest; a path given that does not exist is an
/// error.
pub fn collect_files(paths: &[PathBuf]) -> Result<Collected> {
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| KnowledgeError::io(path, e))?;
        if !meta.is_dir() {
            files.push(canonical(path)?);
            continue;
        }
        for entry in walkdir::WalkDir::new(path)
            .follow_links(true)
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !is_hidden(e.file_name()))
        {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let at = e.path().unwrap_or(path).to_path_buf();
                    let reason = match e.io_error() {
                        Some(io) => io.to_string(),
                        None => "a folder link that loops back on itself".into(),
                    };
                    unreadable.push((at, reason));
                    continue;
                }
            };
            if entry.file_type().is_file() && is_supported(entry.path()) {
                match canonical(entry.path()) {
                    Ok(file) => files.push(file),
                    Err(e) => unreadable.push((entry.path().to_path_buf(), e.to_string())),
                }
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(Collected { files, unreadable })
}

/// What [`collect_files`] found.
#[derive(Debug, Default)]
pub struct Collected {
    /// The files to add, by canonical path, sorted.
    pub files: Vec<PathBuf>,
    /// Entries that could not be read, each with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_str().map(|n| n.starts_with('.')).unwrap_or(false)
}

/// Decodes bytes as UTF-8 (a byte-order mark is dropped), naming the file when it is not.
pub(crate) fn utf8<'a>(path: &Path, format: &'static str, bytes: &'a [u8]) -> Result<&'a str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        KnowledgeError::document(path, format, format!("line {line} is not UTF-8 text"))
    })
}
