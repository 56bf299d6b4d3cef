//! JSON records (Alpaca, ShareGPT, OpenAI `messages`) to conversations, checking every field
//! and reporting each problem with its path inside the record (`messages[1].role`).

use std::path::Path;

use serde_json::{Map, Value};
use tunelab_engine::Message;

use super::format::DatasetFormat;
use super::issue::{Issue, IssueKind};

/// Collects the issues of one record.
pub(crate) struct RecordCheck<'a> {
    file: &'a Path,
    line: usize,
    pub issues: Vec<Issue>,
}

/// "a string", "an array", ... for messages about wrong types.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> RecordCheck<'a> {
    pub fn new(file: &'a Path, line: usize) -> Self {
        RecordCheck {
            file,
            line,
            issues: Vec::new(),
        }
    }

    pub fn report(&mut self, field: Option<&str>, kind: IssueKind, message: impl Into<String>) {
        self.issues.push(Issue::new(
            self.file,
            self.line,
            field.map(str::to_string),
            kind,
            message,
        ));
    }

    fn wrong_type(&mut self, field: Option<&str>, expected: &str, found: &Value) {
        let message = format!("expected {expected}, found {}", type_name(found));
        self.report(field, IssueKind::WrongType, message);
    }

    /// A required string field; `None` (with an issue) when missing or not a string.
    fn required_str<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<&'v str> {
        match object.get(key) {
            None => {
                self.report(Some(path), IssueKind::MissingField, "is missing");
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.wrong_type(Some(path), "a string", other);
                None
            }
        }
    }

    /// An optional string field: absent and null both mean "not given".
    fn optional_str<'v>(&mut self, object: &'v Map<String, Value>, key: &str) -> Option<&'v str> {
        match object.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.wrong_type(Some(key), "a string", other);
                None
            }
        }
    }
}

/// The conversation in one JSON record of `format`, or `None` when the record has issues
/// (all of them pushed to `check`).
pub(crate) fn from_record(
    format: DatasetFormat,
    record: &Value,
    check: &mut RecordCheck,
) -> Option<Vec<Message>> {
    let Some(object) = record.as_object() else {
        check.wrong_type(None, "a JSON object (one record)", record);
        return None;
    };
    let messages = match format {
        DatasetFormat::Alpaca => alpaca(object, check),
        DatasetFormat::ShareGpt => turns(object, check, &SHAREGPT),
        DatasetFormat::Messages => turns(object, check, &MESSAGES),
        DatasetFormat::Csv | DatasetFormat::Text => unreachable!("not a JSON format"),
    }?;
    check.issues.is_empty().then_some(messages)
}

fn alpaca(object: &Map<String, Value>, check: &mut RecordCheck) -> Option<Vec<Message>> {
    let instruction = check.required_str(object, "instruction", "instruction");
    let input = check.optional_str(object, "input");
    let output = check.required_str(object, "output", "output");
    let system = check.optional_str(object, "system");
    let (instruction, output) = (instruction?, output?);
    if output.trim().is_empty() {
        check.report(
            Some("output"),
            IssueKind::EmptyReply,
            "the reply is empty: nothing to learn",
        );
    }
    let prompt = match input {
        Some(input) if !input.trim().is_empty() => format!("{instruction}\n\n{input}"),
        _ => instruction.to_string(),
    };
    let mut messages = Vec::with_capacity(3);
    if let Some(system) = system.filter(|s| !s.trim().is_empty()) {
        messages.push(Message::new("system", system));
    }
    messages.push(Message::new("user", prompt));
    messages.push(Message::new("assistant", output));
    Some(messages)
}

/// How a list-of-turns format names its parts and roles.
struct TurnSchema {
    list: &'static str,
    role: &'static str,
    content: &'static str,
    /// (name in the file, engine role)
    roles: &'static [(&'static str, &'static str)],
}

const MESSAGES: TurnSchema = TurnSchema {
    list: "messages",
    role: "role",
    content: "content",
    roles: &[
        ("system", "system"),
        ("user", "user"),
        ("assistant", "assistant"),
    ],
};

const SHAREGPT: TurnSchema = TurnSchema {
    list: "conversations",
    role: "from",
    content: "value",
    roles: &[
        ("human", "user"),
        ("gpt", "assistant"),
        ("system", "system"),
        ("user", "user"),
        ("assistant", "assistant"),
    ],
};

fn turns(
    object: &Map<String, Value>,
    check: &mut RecordCheck,
    schema: &TurnSchema,
) -> Option<Vec<Message>> {
    let list = match object.get(schema.list) {
        None => {
            check.report(Some(schema.list), IssueKind::MissingField, "is missing");
            return None;
        }
        Some(Value::Array(list)) => list,
        Some(other) => {
            check.wrong_type(Some(schema.list), "an array of turns", other);
            return None;
        }
    };
    let mut messages = Vec::with_capacity(list.len());
    for (i, turn) in list.iter().enumerate() {
        let at = format!("{}[{i}]", schema.list);
        let Some(turn) = turn.as_object() else {
            check.wrong_type(Some(&at), "an object", turn);
            continue;
        };
        let role_path = format!("{at}.{}", schema.role);
        let content_path = format!("{at}.{}", schema.content);
        let role = check.required_str(turn, schema.role, &role_path);
        let content = check.required_str(turn, schema.content, &content_path);
        let Some(role) = role else { continue };
        let Some((_, engine_role)) = schema.roles.iter().find(|(name, _)| *name == role) else {
            let allowed: Vec<&str> = schema.roles.iter().map(|(name, _)| *name).collect();
            let message = format!("unknown role `{role}` (allowed: {})", allowed.join(", "));
            check.report(Some(&role_path), IssueKind::UnknownRole, message);
            continue;
        };
        let Some(content) = content else { continue };
        if *engine_role == "assistant" && content.trim().is_empty() {
            check.report(
                Some(&content_path),
                IssueKind::EmptyReply,
                "the assistant turn is empty: nothing to learn",
            );
        }
        messages.push(Message::new(engine_role, content));
    }
    if !check.issues.is_empty() {
        return None;
    }
    match messages.last() {
        None => check.report(Some(schema.list), IssueKind::NoFinalReply, "the conversation has no turns"),
        Some(last) if last.role != "assistant" => check.report(
            Some(schema.list),
            IssueKind::NoFinalReply,
            format!("the conversation ends with a `{}` turn; it must end with an assistant reply to learn from", last.role),
        ),
        Some(_) => {}
    }
    Some(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(
        format: DatasetFormat,
        json: &str,
    ) -> Result<Vec<Message>, Vec<(Option<String>, IssueKind)>> {
        let value: Value = serde_json::from_str(json).unwrap();
        let mut check = RecordCheck::new(Path::new("f.jsonl"), 4);
        match from_record(format, &value, &mut check) {
            Some(messages) => Ok(messages),
            None => Err(check
                .issues
                .into_iter()
                .map(|i| (i.field, i.kind))
                .collect()),
        }
    }

    #[test]
    fn alpaca_joins_instruction_and_input_and_keeps_the_system_prompt() {
        let m = convert(
            DatasetFormat::Alpaca,
            r#"{"instruction": "Sum", "input": "2 3", "output": "5", "system": "Be brief"}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            vec![
                Message::new("system", "Be brief"),
                Message::new("user", "Sum\n\n2 3"),
                Message::new("assistant", "5")
            ]
        );
        let m = convert(
            DatasetFormat::Alpaca,
            r#"{"instruction": "Hi", "input": "", "output": "Hello"}"#,
        )
        .unwrap();
        assert_eq!(m.len(), 2, "an empty input adds nothing to the prompt");
    }

    #[test]
    fn every_problem_of_a_record_is_reported_with_its_path() {
        let issues = convert(
            DatasetFormat::Messages,
            r#"{"messages": [{"role": "user"}, {"role": 3, "content": "x"}, {"role": "bot", "content": "y"}, "z", {"role": "assistant", "content": " "}]}"#,
        )
        .unwrap_err();
        let expected = vec![
            (
                Some("messages[0].content".to_string()),
                IssueKind::MissingField,
            ),
            (Some("messages[1].role".to_string()), IssueKind::WrongType),
            (Some("messages[2].role".to_string()), IssueKind::UnknownRole),
            (Some("messages[3]".to_string()), IssueKind::WrongType),
            (
                Some("messages[4].content".to_string()),
                IssueKind::EmptyReply,
            ),
        ];
        assert_eq!(issues, expected);
    }

    #[test]
    fn sharegpt_maps_its_role_names() {
        let m = convert(DatasetFormat::ShareGpt, r#"{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}"#).unwrap();
        assert_eq!(
            m,
            vec![Message::new("user", "a"), Message::new("assistant", "b")]
        );
        let issues = convert(DatasetFormat::ShareGpt, r#"{"conversations": [{"from": "gpt", "value": "b"}, {"from": "human", "value": "a"}]}"#).unwrap_err();
        assert_eq!(
            issues,
            vec![(Some("conversations".to_string()), IssueKind::NoFinalReply)]
        );
    }
}
