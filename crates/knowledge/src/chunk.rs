//! Splitting documents into chunks the embedder can read whole. Chunks are measured in the
//! embedder's tokens, stay inside one section (so each points at one page, heading or record),
//! break at paragraphs where they can, then at sentences, then between words; neighbouring chunks
//! of a section share `overlap` tokens of whole sentences so an answer that straddles a boundary
//! is still found.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::document::{Document, Location};
use crate::error::{KnowledgeError, Result};

/// Chunking settings, recorded with each knowledge base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ChunkOptions {
    /// The most tokens in one chunk.
    pub size: usize,
    /// Tokens repeated from the end of one chunk at the start of the next.
    pub overlap: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self {
            size: 200,
            overlap: 40,
        }
    }
}

impl ChunkOptions {
    /// Checks the settings against the embedder's limit (its own [CLS] and [SEP] included).
    pub fn validate(&self, max_tokens: usize) -> Result<()> {
        let room = max_tokens.saturating_sub(2);
        if self.size < 16 || self.size > room {
            return Err(KnowledgeError::Setting {
                field: "chunk_size",
                message: format!(
                    "{} tokens; it must be between 16 and {room}, the most this embedder reads at once",
                    self.size
                ),
            });
        }
        if self.overlap * 2 > self.size {
            return Err(KnowledgeError::Setting {
                field: "chunk_overlap",
                message: format!(
                    "{} tokens; it must be at most half the chunk size ({})",
                    self.overlap,
                    self.size / 2
                ),
            });
        }
        Ok(())
    }
}

/// One piece of a document, ready to embed.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub text: String,
    pub location: Location,
    /// Position among the document's chunks, from 0.
    pub ordinal: usize,
    pub tokens: usize,
}

/// A piece of a section that is never split further unless it is too long: a paragraph, a
/// sentence or a run of words, with its byte offset in the section.
struct Unit<'a> {
    text: &'a str,
    offset: usize,
    tokens: usize,
}

/// Splits `doc` into chunks. `count` gives the number of embedder tokens in a text (without
/// special tokens).
pub fn chunk_document(
    doc: &Document,
    options: &ChunkOptions,
    count: &dyn Fn(&str) -> usize,
) -> Vec<Chunk> {
    let mut out = Vec::new();
    for section in &doc.sections {
        let mut units = Vec::new();
        split_units(&section.text, 0, options.size, count, &mut units);
        // Newlines before the current chunk's start, counted once over the section: chunk
        // starts only move forward, so numbering stays linear in the section's length.
        let (mut counted_to, mut lines_before) = (0usize, 0u32);
        let mut start = 0;
        while start < units.len() {
            // Fill the chunk with whole units.
            let mut end = start;
            let mut tokens = 0;
            while end < units.len() && (end == start || tokens + units[end].tokens <= options.size)
            {
                tokens += units[end].tokens;
                end += 1;
            }
            let first = &units[start];
            let last = &units[end - 1];
            let text = section.text[first.offset..last.offset + last.text.len()].trim();
            let mut location = section.location.clone();
            if let Some(line) = location.line {
                lines_before += section.text[counted_to..first.offset].matches('\n').count() as u32;
                counted_to = first.offset;
                location.line = Some(line + lines_before);
            }
            out.push(Chunk {
                text: text.to_string(),
                location,
                ordinal: out.len(),
                tokens,
            });
            if end >= units.len() {
                break;
            }
            // Step back over whole units worth at most `overlap` tokens, always moving forward.
            let mut next = end;
            let mut carried = 0;
            while next > start + 1 && carried + units[next - 1].tokens <= options.overlap {
                carried += units[next - 1].tokens;
                next -= 1;
            }
            start = next;
        }
    }
    out
}

/// Paragraphs; a paragraph longer than `size` becomes sentences; a sentence longer than
/// `size` becomes runs of words.
fn split_units<'a>(
    text: &'a str,
    base: usize,
    size: usize,
    count: &dyn Fn(&str) -> usize,
    out: &mut Vec<Unit<'a>>,
) {
    for (offset, paragraph) in pieces(text, Boundary::Paragraph) {
        let tokens = count(paragraph);
        if tokens <= size {
            out.push(Unit {
                text: paragraph,
                offset: base + offset,
                tokens,
            });
            continue;
        }
        // Paragraph too long: sentences, which are small enough to overlap by.
        for (s_offset, sentence) in pieces(paragraph, Boundary::Sentence) {
            let tokens = count(sentence);
            if tokens <= size {
                out.push(Unit {
                    text: sentence,
                    offset: base + offset + s_offset,
                    tokens,
                });
                continue;
            }
            words(sentence, base + offset + s_offset, size / 4, count, out);
        }
    }
}

/// Runs of words of about `target` tokens each (a sentence with no full stops, a table row).
fn words<'a>(
    text: &'a str,
    base: usize,
    target: usize,
    count: &dyn Fn(&str) -> usize,
    out: &mut Vec<Unit<'a>>,
) {
    let mut start: Option<usize> = None;
    let mut tokens = 0;
    let mut last_end = 0;
    for (offset, word) in pieces(text, Boundary::Word) {
        let t = count(word);
        if let Some(s) = start {
            if tokens + t > target {
                out.push(Unit {
                    text: &text[s..last_end],
                    offset: base + s,
                    tokens,
                });
                start = None;
                tokens = 0;
            }
        }
        if start.is_none() {
            start = Some(offset);
        }
        tokens += t;
        last_end = offset + word.len();
    }
    if let Some(s) = start {
        out.push(Unit {
            text: &text[s..last_end],
            offset: base + s,
            tokens,
        });
    }
}

#[derive(Clone, Copy)]
enum Boundary {
    Paragraph,
    Sentence,
    Word,
}

/// Non-empty pieces of `text` with their byte offsets, trimmed of surrounding whitespace.
fn pieces(text: &str, boundary: Boundary) -> Vec<(usize, &str)> {
    let mut cuts = vec![0];
    let bytes = text.as_bytes();
    match boundary {
        Boundary::Paragraph => {
            let mut i = 0;
            while let Some(p) = text[i..].find("\n\n") {
                cuts.push(i + p + 2);
                i += p + 2;
            }
        }
        Boundary::Sentence => {
            for (i, c) in text.char_indices() {
                let end = i + c.len_utf8();
                let next_is_space = bytes.get(end).is_none_or(|b| b.is_ascii_whitespace());
                if (matches!(c, '.' | '!' | '?' | '。' | '！' | '？') && next_is_space) || c == '\n'
                {
                    cuts.push(end);
                }
            }
        }
        Boundary::Word => {
            for (i, c) in text.char_indices() {
                if c.is_whitespace() {
                    cuts.push(i + c.len_utf8());
                }
            }
        }
    }
    cuts.push(text.len());
    cuts.dedup();
    let mut out = Vec::new();
    for pair in cuts.windows(2) {
        let raw = &text[pair[0]..pair[1]];
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        let lead = raw.len() - raw.trim_start().len();
        out.push((pair[0] + lead, trimmed));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Section;

    fn words_count(text: &str) -> usize {
        text.split_whitespace().count()
    }

    fn doc(sections: Vec<Section>) -> Document {
        Document {
            source: "/kb/a.md".into(),
            title: "A".into(),
            hash: "h".into(),
            format: "markdown",
            sections,
        }
    }

    #[test]
    fn short_paragraphs_pack_into_one_chunk_per_section() {
        let d = doc(vec![
            Section {
                location: Location {
                    section: Some("One".into()),
                    line: Some(3),
                    ..Default::default()
                },
                text: "First para.\n\nSecond para.".into(),
            },
            Section {
                location: Location {
                    section: Some("Two".into()),
                    line: Some(9),
                    ..Default::default()
                },
                text: "Third.".into(),
            },
        ]);
        let chunks = chunk_document(
            &d,
            &ChunkOptions {
                size: 50,
                overlap: 10,
            },
            &words_count,
        );
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].text, "First para.\n\nSecond para.");
        assert_eq!(chunks[0].location.section.as_deref(), Some("One"));
        assert_eq!(chunks[1].location.line, Some(9));
        assert_eq!(chunks[1].ordinal, 1);
    }

    #[test]
    fn long_text_is_cut_at_sentences_with_overlap_and_never_over_size() {
        let sentence = |i: usize| format!("Sentence number {i} has exactly seven words.");
        let text: Vec<String> = (0..30).map(sentence).collect();
        let d = doc(vec![Section {
            location: Location {
                line: Some(1),
                ..Default::default()
            },
            text: text.join(" "),
        }]);
        let options = ChunkOptions {
            size: 40,
            overlap: 14,
        };
        let chunks = chunk_document(&d, &options, &words_count);
        assert!(chunks.len() > 5);
        for c in &chunks {
            assert!(c.tokens <= 40, "{} tokens", c.tokens);
            assert!(c.text.ends_with('.'), "ends at a sentence: {:?}", c.text);
        }
        // Each chunk starts with the last two sentences of the one before.
        for pair in chunks.windows(2) {
            let tail: Vec<&str> = pair[0].text.rsplitn(3, ". ").collect();
            assert!(
                pair[1].text.starts_with(tail[1].trim_end_matches('.')),
                "{pair:?}"
            );
        }
        // Every sentence lands in some chunk.
        for i in 0..30 {
            assert!(chunks.iter().any(|c| c.text.contains(&sentence(i))));
        }
    }

    #[test]
    fn a_run_without_full_stops_is_cut_between_words() {
        let text = (0..500)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let d = doc(vec![Section {
            location: Location::default(),
            text,
        }]);
        let chunks = chunk_document(
            &d,
            &ChunkOptions {
                size: 100,
                overlap: 20,
            },
            &words_count,
        );
        assert!(chunks.iter().all(|c| c.tokens <= 100));
        assert!(chunks.last().unwrap().text.ends_with("w499"));
    }

    #[test]
    fn lines_point_at_the_chunk_start() {
        let d = doc(vec![Section {
            location: Location {
                line: Some(10),
                ..Default::default()
            },
            text: "a b c d\n\ne f g h\n\ni j k l".into(),
        }]);
        let chunks = chunk_document(
            &d,
            &ChunkOptions {
                size: 4,
                overlap: 0,
            },
            &words_count,
        );
        let lines: Vec<u32> = chunks.iter().map(|c| c.location.line.unwrap()).collect();
        assert_eq!(lines, vec![10, 12, 14]);
    }

    #[test]
    fn overlapping_chunks_of_a_long_text_each_name_their_own_first_line() {
        // Paragraph k ("pk x y z") sits on line 1 + 2k; chunks of 8 words carry 4 back.
        let text: Vec<String> = (0..3000).map(|k| format!("p{k} x y z")).collect();
        let d = doc(vec![Section {
            location: Location {
                line: Some(1),
                ..Default::default()
            },
            text: text.join("\n\n"),
        }]);
        let options = ChunkOptions {
            size: 8,
            overlap: 4,
        };
        let chunks = chunk_document(&d, &options, &words_count);
        assert!(chunks.len() > 2000, "{} chunks", chunks.len());
        for c in &chunks {
            let first: u32 = c.text[1..c.text.find(' ').unwrap()].parse().unwrap();
            assert_eq!(c.location.line, Some(1 + 2 * first), "{:?}", c.text);
        }
    }

    #[test]
    fn settings_outside_the_embedder_limit_are_refused_by_name() {
        let err = ChunkOptions {
            size: 400,
            overlap: 40,
        }
        .validate(256)
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("chunk_size") && err.contains("254"), "{err}");
        let err = ChunkOptions {
            size: 100,
            overlap: 80,
        }
        .validate(256)
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("chunk_overlap"), "{err}");
    }
}
