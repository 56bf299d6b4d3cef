//! PDF: the text of each page, one section per page. Scanned pages without a text layer come
//! out empty and are skipped; a file with no text at all is an error, so the user knows to run
//! OCR first rather than finding an empty knowledge base.
//!
//! The parser (lopdf) inflates compressed streams whole and parses nested arrays and
//! dictionaries by recursion, so a hostile file could take all memory or overflow the stack
//! (which no error handling survives). A guard reads the file first: compressed streams may
//! inflate to [`MAX_INFLATED_BYTES`] together, and arrays and dictionaries, in the file and in
//! its compressed object streams, may nest [`MAX_NESTING`] deep.

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
    guard(bytes).map_err(|why| KnowledgeError::refused(path, why))?;
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

/// Inflated bytes a PDF's compressed streams may reach together (text layers of even very
/// long documents are a few MiB).
pub const MAX_INFLATED_BYTES: u64 = 256 << 20;
/// Deepest nesting of arrays and dictionaries (real files stay under ten).
pub const MAX_NESTING: usize = 256;

/// Checks the limits above over the raw file, inflating Flate streams with a cap; the reason
/// when the file breaks one. Streams that do not inflate are left for the parser to judge.
fn guard(bytes: &[u8]) -> std::result::Result<(), String> {
    let mut budget = MAX_INFLATED_BYTES;
    let mut outside_from = 0;
    let mut at = 0;
    while let Some(found) = find(bytes, b"stream", at) {
        at = found + b"stream".len();
        if bytes[..found].ends_with(b"end") {
            continue;
        }
        let mut start = at;
        if bytes.get(start) == Some(&b'\r') {
            start += 1;
        }
        if bytes.get(start) == Some(&b'\n') {
            start += 1;
        }
        let end = find(bytes, b"endstream", start).unwrap_or(bytes.len());
        // The object's dictionary: from its `obj` keyword to `stream`.
        let head = &bytes[outside_from..found];
        check_nesting(head, "the file")?;
        let dict = match rfind(head, b"obj") {
            Some(i) => &head[i..],
            None => head,
        };
        if find(dict, b"/FlateDecode", 0).is_some() {
            let inflated = inflate_capped(&bytes[start..end], budget)?;
            budget -= inflated.len() as u64;
            if find(dict, b"/ObjStm", 0).is_some() {
                check_nesting(&inflated, "a compressed object stream")?;
            }
        }
        outside_from = (end + b"endstream".len()).min(bytes.len());
        at = outside_from;
    }
    check_nesting(&bytes[outside_from..], "the file")
}

/// `data` inflated (zlib), refused past `budget` bytes; empty when it does not inflate.
fn inflate_capped(data: &[u8], budget: u64) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut reader = flate2::read::ZlibDecoder::new(data).take(budget + 1);
    if reader.read_to_end(&mut out).is_err() {
        return Ok(Vec::new());
    }
    if out.len() as u64 > budget {
        return Err(format!(
            "its compressed streams inflate past {} MiB together; refused as a possible zip bomb",
            MAX_INFLATED_BYTES >> 20
        ));
    }
    Ok(out)
}

/// Refuses arrays and dictionaries nested deeper than [`MAX_NESTING`] in `data`, skipping
/// strings and comments.
fn check_nesting(data: &[u8], what: &str) -> std::result::Result<(), String> {
    let (mut depth, mut i) = (0usize, 0usize);
    while i < data.len() {
        match data[i] {
            b'[' => depth += 1,
            b']' => depth = depth.saturating_sub(1),
            b'<' if data.get(i + 1) == Some(&b'<') => {
                depth += 1;
                i += 1;
            }
            b'>' if data.get(i + 1) == Some(&b'>') => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'%' => {
                while i < data.len() && data[i] != b'\n' && data[i] != b'\r' {
                    i += 1;
                }
            }
            b'(' => {
                // A literal string: balanced parentheses, backslash escapes.
                let mut open = 0usize;
                while i < data.len() {
                    match data[i] {
                        b'\\' => i += 1,
                        b'(' => open += 1,
                        b')' => {
                            open -= 1;
                            if open == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        if depth > MAX_NESTING {
            return Err(format!(
                "{what} nests arrays or dictionaries more than {MAX_NESTING} deep; refused as hostile"
            ));
        }
        i += 1;
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_in_the_file_or_an_object_stream_is_refused() {
        let deep = |n: usize| format!("{}0{}", "[".repeat(n), "]".repeat(n));
        let file = format!("%PDF-1.7\n1 0 obj\n{}\nendobj\n", deep(100_000));
        let err = guard(file.as_bytes()).unwrap_err();
        assert!(err.contains("the file nests"), "{err}");

        // The same inside a compressed object stream.
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, deep(10_000).as_bytes()).unwrap();
        let packed = z.finish().unwrap();
        let mut file =
            b"%PDF-1.7\n2 0 obj\n<< /Type /ObjStm /Filter /FlateDecode >>\nstream\n".to_vec();
        file.extend_from_slice(&packed);
        file.extend_from_slice(b"\nendstream\nendobj\n");
        let err = guard(&file).unwrap_err();
        assert!(err.contains("a compressed object stream nests"), "{err}");

        // Ordinary nesting, brackets inside strings and comments, and stream bytes pass.
        let fine = b"%PDF-1.7\n1 0 obj\n<< /Kids [ 2 0 R ] /T ([[[[ \\( ) >> % [[[[\nendobj\n3 0 obj\n<< /Length 4 >>\nstream\n[[[[\nendstream\nendobj\n";
        guard(fine).unwrap();
    }

    #[test]
    fn streams_that_inflate_past_the_budget_are_refused() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, &vec![0u8; 4 << 20]).unwrap();
        let packed = z.finish().unwrap();
        assert!(packed.len() < 64 << 10, "{} bytes", packed.len());
        let err = inflate_capped(&packed, 1 << 20).unwrap_err();
        assert!(err.contains("zip bomb"), "{err}");
        assert_eq!(inflate_capped(&packed, 8 << 20).unwrap().len(), 4 << 20);
        assert!(inflate_capped(b"not zlib", 1 << 20).unwrap().is_empty());
    }
}
