//! Markdown and plain text. Markdown is split at ATX headings (`#` … `######`, outside code
//! fences); each section records its heading path and the line its text starts on.

use std::path::Path;

use crate::document::{utf8, Location, Parsed, Section};
use crate::error::Result;
use crate::formats::{heading_path, push_heading};

pub fn plain(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let text = utf8(path, "text", bytes)?;
    Ok(Parsed {
        title: None,
        sections: vec![Section {
            location: Location {
                line: Some(1),
                ..Default::default()
            },
            text: text.replace("\r\n", "\n"),
        }],
    })
}

pub fn markdown(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let text = utf8(path, "markdown", bytes)?.replace("\r\n", "\n");
    let mut title = None;
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut sections = Vec::new();
    let mut current = String::new();
    let mut start_line = 1u32;
    let mut in_fence = false;
    let mut lines = text.lines().enumerate().peekable();

    // YAML front matter: a `title:` in it names the document; the block itself is not text.
    if text.starts_with("---\n") {
        let mut end = None;
        for (i, line) in text.lines().enumerate().skip(1) {
            if line.trim() == "---" {
                end = Some(i);
                break;
            }
            if let Some(t) = line.strip_prefix("title:") {
                title = Some(t.trim().trim_matches('"').trim_matches('\'').to_string());
            }
        }
        if let Some(end) = end {
            for _ in 0..=end {
                lines.next();
            }
            start_line = end as u32 + 2;
        }
    }

    let flush = |sections: &mut Vec<Section>,
                 current: &mut String,
                 headings: &[(usize, String)],
                 line: u32| {
        if !current.trim().is_empty() {
            // The section starts at its first non-blank line.
            let skipped = current.lines().take_while(|l| l.trim().is_empty()).count() as u32;
            sections.push(Section {
                location: Location {
                    section: heading_path(headings),
                    line: Some(line + skipped),
                    ..Default::default()
                },
                text: current.trim().to_string(),
            });
        }
        current.clear();
    };

    for (i, line) in lines {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        }
        if !in_fence {
            if let Some(level) = atx_level(trimmed) {
                flush(&mut sections, &mut current, &headings, start_line);
                let heading = trimmed[level..]
                    .trim()
                    .trim_end_matches('#')
                    .trim()
                    .to_string();
                if level == 1 && title.is_none() {
                    title = Some(heading.clone());
                }
                push_heading(&mut headings, level, heading);
                start_line = i as u32 + 2;
                continue;
            }
        }
        current.push_str(line);
        current.push('\n');
    }
    flush(&mut sections, &mut current, &headings, start_line);
    Ok(Parsed { title, sections })
}

fn atx_level(line: &str) -> Option<usize> {
    let level = line.bytes().take_while(|&b| b == b'#').count();
    if (1..=6).contains(&level) && (line.len() == level || line.as_bytes()[level] == b' ') {
        Some(level)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_sections_carry_heading_paths_and_lines() {
        let md = "---\ntitle: Handbook\n---\nIntro line.\n\n# Returns\n\nThirty days.\n\n## Damaged items\n```\n# not a heading\n```\nPhoto needed.\n# Shipping\nWeekdays.\n";
        let parsed = markdown(Path::new("h.md"), md.as_bytes()).unwrap();
        assert_eq!(parsed.title.as_deref(), Some("Handbook"));
        let got: Vec<(Option<&str>, Option<u32>, &str)> = parsed
            .sections
            .iter()
            .map(|s| {
                (
                    s.location.section.as_deref(),
                    s.location.line,
                    s.text.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (None, Some(4), "Intro line."),
                (Some("Returns"), Some(8), "Thirty days."),
                (
                    Some("Returns › Damaged items"),
                    Some(11),
                    "```\n# not a heading\n```\nPhoto needed."
                ),
                (Some("Shipping"), Some(16), "Weekdays."),
            ]
        );
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let err = plain(Path::new("notes.txt"), b"ok\nstill ok\n\xff\xfe bad\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("notes.txt") && err.contains("line 3"), "{err}");
    }
}
