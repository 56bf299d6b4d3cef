//! PDF: the text of each page, one section per page. Scanned pages without a text layer come
//! out empty and are skipped; a file with no text at all is an error, so the user knows to run
//! OCR first rather than finding an empty knowledge base.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use crate::document::{Location, Parsed, Section};
use crate::error::{KnowledgeError, Result};

pub fn read(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    if !bytes.starts_with(b"%PDF-") {
        return Err(KnowledgeError::document(
            path,
            "pdf",
            "it does not start with the `%PDF-` header",
        ));
    }
    // The parser must never take the whole ingest down: a panic on a malformed file becomes
    // an error about that file.
    let parsed = catch_unwind(AssertUnwindSafe(|| extract(bytes))).map_err(|_| {
        KnowledgeError::document(path, "pdf", "the file is damaged (the PDF parser gave up)")
    })?;
    let (title, pages) = parsed.map_err(|e| KnowledgeError::document(path, "pdf", e))?;
    let sections: Vec<Section> = pages
        .into_iter()
        .map(|(page, text)| Section {
            location: Location {
                page: Some(page),
                ..Default::default()
            },
            text: tidy_page(&text),
        })
        .filter(|s| !s.text.is_empty())
        .collect();
    if sections.is_empty() {
        return Err(KnowledgeError::document(
            path,
            "pdf",
            "no page has a text layer (is it a scan? run OCR on it first)",
        ));
    }
    Ok(Parsed { title, sections })
}

type Pages = Vec<(u32, String)>;

fn extract(bytes: &[u8]) -> std::result::Result<(Option<String>, Pages), String> {
    let doc = lopdf::Document::load_mem(bytes).map_err(|e| e.to_string())?;
    if doc.is_encrypted() {
        return Err("it is encrypted; save an unprotected copy first".into());
    }
    let title = doc
        .trailer
        .get(b"Info")
        .ok()
        .and_then(|info| doc.dereference(info).ok())
        .and_then(|(_, info)| info.as_dict().ok())
        .and_then(|info| info.get(b"Title").ok())
        .and_then(|t| lopdf::decode_text_string(t).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err("it has no pages".into());
    }
    let mut out = Vec::with_capacity(pages.len());
    for &number in pages.keys() {
        let text = doc
            .extract_text(&[number])
            .map_err(|e| format!("page {number}: {e}"))?;
        out.push((number, text));
    }
    Ok((title, out))
}

/// Joins the extractor's line fragments back into paragraphs: single line breaks inside a
/// paragraph become spaces, blank lines stay paragraph breaks.
fn tidy_page(text: &str) -> String {
    let mut paragraphs: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&line);
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    paragraphs.join("\n\n")
}
