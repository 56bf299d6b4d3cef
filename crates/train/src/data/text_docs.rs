//! Plain text for pretraining: the whole file as one document, or one document per paragraph
//! (paragraphs are separated by blank lines).

use serde::{Deserialize, Serialize};

use super::{Example, ExampleContent};

/// How a plain-text file is cut into documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextDocuments {
    /// Every run of non-blank lines is one document.
    #[default]
    Paragraphs,
    /// The whole file is one document.
    WholeFile,
}

pub(crate) fn read(text: &str, documents: TextDocuments) -> Vec<Example> {
    match documents {
        TextDocuments::WholeFile => {
            let skipped = text.len() - text.trim_start().len();
            let line = text[..skipped].matches('\n').count() + 1;
            let body = text.trim();
            if body.is_empty() {
                return Vec::new();
            }
            vec![Example {
                line,
                content: ExampleContent::Text(body.to_string()),
            }]
        }
        TextDocuments::Paragraphs => {
            let mut out = Vec::new();
            let mut current: Option<(usize, Vec<&str>)> = None;
            for (index, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    if let Some((start, lines)) = current.take() {
                        out.push(Example {
                            line: start,
                            content: ExampleContent::Text(lines.join("\n")),
                        });
                    }
                } else {
                    current
                        .get_or_insert_with(|| (index + 1, Vec::new()))
                        .1
                        .push(line);
                }
            }
            if let Some((start, lines)) = current {
                out.push(Example {
                    line: start,
                    content: ExampleContent::Text(lines.join("\n")),
                });
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(text: &str, how: TextDocuments) -> Vec<(usize, String)> {
        read(text, how)
            .into_iter()
            .map(|e| match e.content {
                ExampleContent::Text(t) => (e.line, t),
                ExampleContent::Chat(_) => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn paragraphs_start_at_their_first_line() {
        let text = "\nOne line.\nStill one.\n\n  \n\nTwo.\n";
        assert_eq!(
            docs(text, TextDocuments::Paragraphs),
            vec![
                (2, "One line.\nStill one.".to_string()),
                (7, "Two.".to_string())
            ]
        );
        assert_eq!(
            docs(text, TextDocuments::WholeFile),
            vec![(2, "One line.\nStill one.\n\n  \n\nTwo.".to_string())]
        );
    }
}
