//! Evaluation files: JSON lines, one question each, read whole before anything runs so that a
//! bad line is reported (file, line, field) before a model is loaded.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::chat::{ChatMessage, ChatRole};
use crate::error::{ApiError, Result};

/// One line of an evaluation file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// The line in the file (from 1).
    pub line: usize,
    /// The conversation the configuration answers; it ends with a user message.
    pub messages: Vec<ChatMessage>,
    /// The answer expected, when the line gives one.
    pub reference: Option<String>,
    pub must_contain: Vec<String>,
    pub regex: Option<String>,
    pub json: bool,
    /// Documents a knowledge base should retrieve for this question.
    pub sources: Vec<String>,
}

impl EvalRow {
    /// The question: the last user message.
    pub fn question(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == ChatRole::User)
            .map_or("", |m| m.content.as_str())
    }
}

/// A line as written; `question`/`answer` are accepted for `prompt`/`reference`, and
/// `source` may be one name or a list (`sources` too).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(alias = "question")]
    prompt: Option<String>,
    #[serde(alias = "answer")]
    reference: Option<String>,
    messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    must_contain: Vec<String>,
    regex: Option<String>,
    #[serde(default)]
    json: bool,
    #[serde(alias = "sources")]
    source: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Reads every row of `path`; the first bad line is the error, with its number and field.
pub fn read(path: &Path) -> Result<Vec<EvalRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| ApiError::io(path, e))?;
    let mut rows = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let at = |field: &str, why: String| {
            let field = match field {
                "" => String::new(),
                f => format!(" field `{f}`:"),
            };
            ApiError::invalid(format!("{}:{line}:{field} {why}", path.display()))
        };
        let parsed: Line = serde_json::from_str(raw).map_err(|e| at("", e.to_string()))?;
        rows.push(row(parsed, line, &at)?);
    }
    if rows.is_empty() {
        return Err(ApiError::invalid(format!(
            "{}: no rows; each line is {{\"prompt\": …, \"reference\": …}} or {{\"messages\": […]}}",
            path.display()
        )));
    }
    Ok(rows)
}

fn row(line: Line, number: usize, at: &dyn Fn(&str, String) -> ApiError) -> Result<EvalRow> {
    let user = |content: String| ChatMessage {
        role: ChatRole::User,
        content,
    };
    let (messages, reference) = match (line.prompt, line.messages) {
        (Some(_), Some(_)) => {
            return Err(at(
                "messages",
                "give either `prompt` or `messages`, not both".into(),
            ))
        }
        (None, None) => {
            return Err(at(
                "prompt",
                "missing: each line needs `prompt` (or `question`) or `messages`".into(),
            ))
        }
        (Some(prompt), None) if prompt.trim().is_empty() => {
            return Err(at("prompt", "is empty".into()))
        }
        (Some(prompt), None) => (vec![user(prompt)], line.reference),
        (None, Some(mut messages)) => {
            if line.reference.is_some() {
                return Err(at(
                    "reference",
                    "with `messages`, the reference is the last assistant message".into(),
                ));
            }
            let reference = match messages.last().map(|m| m.role) {
                Some(ChatRole::Assistant) => messages.pop().map(|m| m.content),
                _ => None,
            };
            if messages.last().map(|m| m.role) != Some(ChatRole::User) {
                return Err(at(
                    "messages",
                    "the conversation must end with a user message (then, optionally, the assistant's reference answer)".into(),
                ));
            }
            (messages, reference)
        }
    };
    if let Some(pattern) = &line.regex {
        regex::Regex::new(pattern).map_err(|e| at("regex", e.to_string()))?;
    }
    let sources = match line.source {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(s)) => s,
    };
    let row = EvalRow {
        line: number,
        messages,
        reference,
        must_contain: line.must_contain,
        regex: line.regex,
        json: line.json,
        sources,
    };
    if row.reference.is_none()
        && row.must_contain.is_empty()
        && row.regex.is_none()
        && !row.json
        && row.sources.is_empty()
    {
        return Err(at(
            "reference",
            "missing: nothing to score this line by (give a reference, must_contain, regex, json or source)".into(),
        ));
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<EvalRow>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eval.jsonl");
        std::fs::write(&path, text).unwrap();
        read(&path).map_err(|e| {
            ApiError::invalid(e.message.replace(&*path.to_string_lossy(), "eval.jsonl"))
        })
    }

    #[test]
    fn both_line_forms_and_the_question_set_form_read() {
        let rows = parse(concat!(
            r#"{"prompt": "Capital of France?", "reference": "Paris", "must_contain": ["Paris"]}"#,
            "\n\n",
            r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "regex": "^\\d+$"}"#,
            "\n",
            r#"{"question": "Return window?", "sources": ["returns.md"], "answer": "30 days"}"#,
            "\n",
            r#"{"prompt": "Give JSON", "json": true, "source": "faq.json"}"#,
        ))
        .unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            (rows[0].line, rows[0].question()),
            (1, "Capital of France?")
        );
        assert_eq!(rows[0].reference.as_deref(), Some("Paris"));
        assert_eq!(rows[1].line, 3);
        assert_eq!(rows[1].messages.len(), 2);
        assert_eq!(rows[1].reference.as_deref(), Some("4"));
        assert_eq!(rows[2].sources, ["returns.md"]);
        assert_eq!(rows[2].reference.as_deref(), Some("30 days"));
        assert!(rows[3].json && rows[3].reference.is_none());
        assert_eq!(rows[3].sources, ["faq.json"]);
    }

    #[test]
    fn a_bad_line_is_named_with_its_field() {
        let cases = [
            (
                r#"{"reference": "x"}"#,
                "eval.jsonl:1: field `prompt`: missing",
            ),
            (
                r#"{"prompt": "q"}"#,
                "eval.jsonl:1: field `reference`: missing",
            ),
            (
                r#"{"prompt": "q", "regex": "(", "reference": "x"}"#,
                "eval.jsonl:1: field `regex`:",
            ),
            (
                r#"{"messages": [{"role": "assistant", "content": "hi"}]}"#,
                "eval.jsonl:1: field `messages`: the conversation must end with a user message",
            ),
            (
                r#"{"messages": [{"role": "robot", "content": "hi"}]}"#,
                "eval.jsonl:1: unknown variant `robot`",
            ),
            (
                r#"{"prompt": "q", "refrence": "x"}"#,
                "eval.jsonl:1: unknown field `refrence`",
            ),
            ("", "eval.jsonl: no rows"),
        ];
        for (text, expected) in cases {
            let err = parse(&format!("\n{text}")).map(|_| ()).unwrap_err();
            let expected = expected.replacen(":1:", ":2:", 1);
            assert!(
                err.message.starts_with(&expected),
                "{text}: {}",
                err.message
            );
        }
    }
}
