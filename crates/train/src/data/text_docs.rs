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

/// The whole file as one document, starting at its first line that is not blank.
pub(crate) fn whole_file(text: &str) -> Vec<Example> {
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

/// One document per run of non-blank lines, from numbered lines read one at a time.
pub(crate) fn paragraphs<E>(
    lines: impl IntoIterator<Item = Result<(usize, String), E>>,
) -> Result<Vec<Example>, E> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    // A paragraph grew by doubling: it is kept at its own size.
    let finish = |(line, mut text): (usize, String)| {
        text.shrink_to_fit();
        Example {
            line,
            content: ExampleContent::Text(text),
        }
    };
    for line in lines {
        let (number, line) = line?;
        if line.trim().is_empty() {
            out.extend(current.take().map(finish));
            continue;
        }
        match &mut current {
            Some((_, text)) => {
                text.push('\n');
                text.push_str(&line);
            }
            None => current = Some((number, line)),
        }
    }
    out.extend(current.map(finish));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(text: &str, how: TextDocuments) -> Vec<(usize, String)> {
        let examples = match how {
            TextDocuments::WholeFile => whole_file(text),
            TextDocuments::Paragraphs => {
                let lines = text.lines().enumerate();
                paragraphs(lines.map(|(i, l)| Ok::<_, ()>((i + 1, l.to_string())))).unwrap()
            }
        };
        examples
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
