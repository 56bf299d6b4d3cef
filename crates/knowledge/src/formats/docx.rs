//! Word documents (.docx): the paragraphs of word/document.xml, split into sections at
//! paragraphs styled as headings. The archive is checked before anything is inflated: too many
//! entries, a part that would expand past a limit, or an impossible compression ratio is refused
//! as a possible zip bomb.

use std::io::Read;
use std::path::Path;

use quick_xml::events::Event;

use crate::document::{Location, Parsed, Section};
use crate::error::{KnowledgeError, Result};
use crate::formats::{heading_path, push_heading};

/// A Word file has a few dozen parts; thousands mean something else is going on.
const MAX_ENTRIES: usize = 10_000;
/// The largest word/document.xml accepted, inflated.
const MAX_PART_BYTES: u64 = 64 * 1024 * 1024;
/// Text XML compresses around 5–20×; deflate's limit is about 1000×. Far past text's range is a bomb.
const MAX_RATIO: u64 = 200;

pub fn read(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| {
        KnowledgeError::document(path, "docx", format!("it is not a Word (zip) archive: {e}"))
    })?;
    if archive.len() > MAX_ENTRIES {
        return Err(KnowledgeError::refused(
            path,
            format!(
                "the archive has {} entries (a Word file has far fewer; limit {MAX_ENTRIES})",
                archive.len()
            ),
        ));
    }
    let document = read_part(path, &mut archive, "word/document.xml")?.ok_or_else(|| {
        KnowledgeError::document(
            path,
            "docx",
            "word/document.xml is missing from the archive",
        )
    })?;
    let core_title = read_part(path, &mut archive, "docProps/core.xml")
        .ok()
        .flatten()
        .and_then(|xml| core_title(&xml));
    let (style_title, sections) = paragraphs(&document)
        .map_err(|e| KnowledgeError::document(path, "docx", format!("word/document.xml: {e}")))?;
    Ok(Parsed {
        title: core_title.or(style_title),
        sections,
    })
}

/// Inflates one part with the bomb checks, or `None` when the archive has no such part.
fn read_part(
    path: &Path,
    archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
) -> Result<Option<String>> {
    let mut file = match archive.by_name(name) {
        Ok(file) => file,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => {
            return Err(KnowledgeError::document(
                path,
                "docx",
                format!("{name}: {e}"),
            ));
        }
    };
    let declared = file.size();
    let compressed = file.compressed_size().max(1);
    if declared > MAX_PART_BYTES || declared / compressed > MAX_RATIO {
        return Err(KnowledgeError::refused(
            path,
            format!(
                "{name} would inflate from {} KiB to {} MiB ({}:1); refused as a possible zip bomb",
                compressed / 1024,
                declared >> 20,
                declared / compressed
            ),
        ));
    }
    // The declared size can lie: never read more than the limit, whatever the header says.
    let limit = MAX_PART_BYTES.min(compressed.saturating_mul(MAX_RATIO));
    let mut out = Vec::with_capacity(declared.min(limit) as usize);
    (&mut file)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| KnowledgeError::document(path, "docx", format!("{name}: {e}")))?;
    if out.len() as u64 > limit {
        return Err(KnowledgeError::refused(
            path,
            format!(
                "{name} inflates past {} MiB from {} KiB although its header says {} KiB; refused as a zip bomb",
                limit >> 20,
                compressed / 1024,
                declared / 1024
            ),
        ));
    }
    String::from_utf8(out)
        .map(Some)
        .map_err(|_| KnowledgeError::document(path, "docx", format!("{name} is not UTF-8 XML")))
}

fn core_title(xml: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut in_title = false;
    let mut title = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) if e.local_name().as_ref() == "title" => in_title = true,
            Event::End(e) if e.local_name().as_ref() == "title" => break,
            Event::Text(t) if in_title => title.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_title => title.push_str(&resolve(&r)),
            Event::Eof => break,
            _ => {}
        }
    }
    let title = title.trim().to_string();
    (!title.is_empty()).then_some(title)
}

fn resolve(r: &quick_xml::events::BytesRef<'_>) -> String {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return c.to_string();
    }
    let name = r.xml10_content();
    quick_xml::escape::resolve_predefined_entity(&name)
        .unwrap_or("")
        .to_string()
}

/// The heading level of a paragraph style: "Heading1" … "Heading9" (and the localised
/// "heading 1" forms some writers emit), or 0 for "Title".
fn style_level(style: &str) -> Option<usize> {
    let lower = style.to_ascii_lowercase().replace(' ', "");
    if lower == "title" {
        return Some(0);
    }
    lower
        .strip_prefix("heading")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| (1..=9).contains(n))
}

type Paragraphs = (Option<String>, Vec<Section>);

fn paragraphs(xml: &str) -> std::result::Result<Paragraphs, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut title = None;
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    let mut body = String::new();
    let mut paragraph = String::new();
    let mut style: Option<usize> = None;
    let mut in_text = false;

    let flush = |sections: &mut Vec<Section>, body: &mut String, headings: &[(usize, String)]| {
        let text = body.trim();
        if !text.is_empty() {
            sections.push(Section {
                location: Location {
                    section: heading_path(headings),
                    ..Default::default()
                },
                text: text.to_string(),
            });
        }
        body.clear();
    };

    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("XML error at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                "p" => {
                    paragraph.clear();
                    style = None;
                }
                "pStyle" => {
                    for attr in e.attributes().flatten() {
                        if attr.key.local_name().as_ref() == "val" {
                            let value = attr.value.to_string();
                            style = style_level(&value);
                        }
                    }
                }
                "t" => in_text = true,
                "tab" => paragraph.push('\t'),
                "br" | "cr" => paragraph.push('\n'),
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_text = false,
                "p" => {
                    let text = paragraph.trim().to_string();
                    match style {
                        Some(level) if !text.is_empty() => {
                            flush(&mut sections, &mut body, &headings);
                            if level <= 1 && title.is_none() {
                                title = Some(text.clone());
                            }
                            if level > 0 {
                                push_heading(&mut headings, level, text);
                            }
                        }
                        _ => {
                            if !text.is_empty() {
                                body.push_str(&text);
                                body.push_str("\n\n");
                            }
                        }
                    }
                    paragraph.clear();
                }
                _ => {}
            },
            Event::Text(t) if in_text => paragraph.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_text => paragraph.push_str(&resolve(&r)),
            Event::Eof => break,
            _ => {}
        }
    }
    flush(&mut sections, &mut body, &headings);
    Ok((title, sections))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn docx(document_xml: &str) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("word/document.xml", opts).unwrap();
        zip.write_all(document_xml.as_bytes()).unwrap();
        zip.finish().unwrap();
        out.into_inner()
    }

    #[test]
    fn headings_split_sections_and_entities_are_decoded() {
        let xml = r#"<w:document xmlns:w="w"><w:body>
            <w:p><w:pPr><w:pStyle w:val="Title"/></w:pPr><w:r><w:t>Travel policy</w:t></w:r></w:p>
            <w:p><w:r><w:t xml:space="preserve">Book trains </w:t></w:r><w:r><w:t>&amp; hotels early.</w:t></w:r></w:p>
            <w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Meals</w:t></w:r></w:p>
            <w:p><w:r><w:t>Up to 40 EUR</w:t><w:tab/><w:t>per day.</w:t></w:r></w:p>
            </w:body></w:document>"#;
        let parsed = read(Path::new("t.docx"), &docx(xml)).unwrap();
        assert_eq!(parsed.title.as_deref(), Some("Travel policy"));
        let got: Vec<(Option<&str>, &str)> = parsed
            .sections
            .iter()
            .map(|s| (s.location.section.as_deref(), s.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (None, "Book trains & hotels early."),
                (Some("Meals"), "Up to 40 EUR\tper day."),
            ]
        );
    }

    #[test]
    fn a_zip_bomb_is_refused_before_it_inflates() {
        // 20 MiB of one repeated byte deflates to about 20 KiB: a ratio no text has.
        let mut out = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        zip.start_file("word/document.xml", opts).unwrap();
        let block = vec![b'a'; 1 << 20];
        for _ in 0..20 {
            zip.write_all(&block).unwrap();
        }
        zip.finish().unwrap();
        let err = read(Path::new("bomb.docx"), &out.into_inner())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("bomb.docx") && err.contains("zip bomb"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_zip_names_itself() {
        let err = read(Path::new("notes.docx"), b"plain text, renamed")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("notes.docx") && err.contains("zip"), "{err}");
    }
}
