//! Every kind of problem is reported, all of them at once, at the line and field where it is.

use tunelab_train::data::{check_dataset, Dataset, IssueKind, ReadOptions};

use crate::{native_model, read, write};

/// (line, field, kind) of every issue.
fn located(data: &Dataset) -> Vec<(u32, Option<&str>, IssueKind)> {
    data.issues
        .iter()
        .map(|i| (i.line, i.field.as_deref(), i.kind))
        .collect()
}

#[test]
fn every_problem_in_a_jsonl_file_is_reported_at_its_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"messages": [{"role": "user", "content": "fine"}, {"role": "assistant", "content": "yes"}]}"#,
        r#"{"messages": [{"role": "user"}, {"role": "assistant", "content": "no content above"}]}"#,
        r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "beep"}]}"#,
        r#"{"messages": [{"role": "user", "content": "broken"},]}"#,
        r#"{"messages": "not a list"}"#,
        r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}"#,
        r#"{"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "last"}]}"#,
        r#"{"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "x"}]}"#,
        r#"["an", "array"]"#,
    ];
    let data = read(dir.path(), "chat.jsonl", &(lines.join("\n") + "\n"));
    assert_eq!(data.rows_total, 9);
    assert_eq!(data.examples.len(), 1, "only line 1 is usable");
    assert_eq!(data.examples[0].line, 1);
    assert_eq!(
        located(&data),
        vec![
            (2, Some("messages[0].content"), IssueKind::MissingField),
            (3, Some("messages[1].role"), IssueKind::UnknownRole),
            (4, None, IssueKind::BadSyntax),
            (5, Some("messages"), IssueKind::WrongType),
            (6, Some("messages[1].content"), IssueKind::EmptyReply),
            (7, Some("messages"), IssueKind::NoFinalReply),
            (8, Some("messages[0].content"), IssueKind::WrongType),
            (9, None, IssueKind::WrongType),
        ]
    );
    let unknown = &data.issues[1];
    assert!(
        unknown.message.contains("`bot`") && unknown.message.contains("system, user, assistant"),
        "the message names the role and the allowed ones: {}",
        unknown.message
    );
    assert!(
        data.issues[2].message.contains("column 53"),
        "serde's column (at the `]` after the trailing comma): {}",
        data.issues[2].message
    );
    assert!(
        data.issues[5].message.contains("`user`"),
        "{}",
        data.issues[5].message
    );
    assert!(
        data.issues[6]
            .message
            .contains("expected a string, found a number"),
        "{}",
        data.issues[6].message
    );
    assert!(data
        .issues
        .iter()
        .all(|i| i.excluded && i.file.ends_with("chat.jsonl")));
    assert_eq!(
        data.issues[1].to_string(),
        format!(
            "{}:3: field `messages[1].role`: unknown role `bot` (allowed: system, user, assistant)",
            dir.path().join("chat.jsonl").display()
        )
    );
}

#[test]
fn a_json_array_element_is_reported_at_the_line_it_starts_on() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[
  {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
  {
    "conversations": [
      {"from": "human", "value": "c"}, {"from": "gpt", "value": "d"}
    ]
  }, {
    "conversations": [
      {"from": "human", "value": "e"},
      {"from": "robot", "value": "f"}
    ]
  }
]"#;
    let data = read(dir.path(), "share.json", text);
    assert_eq!(
        data.examples.iter().map(|e| e.line).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(
        located(&data),
        vec![(7, Some("conversations[1].from"), IssueKind::UnknownRole)],
        "the third element starts at line 7 (after `}}, `), though its bad field is on line 9"
    );
    assert!(data.issues[0]
        .message
        .contains("human, gpt, system, user, assistant"));

    let broken = read(dir.path(), "broken.json", "[\n  {\"instruction\": \"a\", \"output\": \"b\"},\n  {\"instruction\": \"a\" \"output\": \"b\"}\n]");
    assert_eq!(
        located(&broken),
        vec![(3, None, IssueKind::BadSyntax)],
        "serde's line"
    );
    assert!(
        broken.issues[0].message.contains("column 23"),
        "{}",
        broken.issues[0].message
    );
}

#[test]
fn alpaca_fields_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let text = "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"a\"}\n{\"instruction\": \"a\", \"input\": 3, \"output\": \"\"}\n";
    let data = read(dir.path(), "alpaca.jsonl", text);
    assert_eq!(
        located(&data),
        vec![
            (2, Some("output"), IssueKind::MissingField),
            (3, Some("input"), IssueKind::WrongType),
            (3, Some("output"), IssueKind::EmptyReply),
        ]
    );
}

#[test]
fn empty_files_and_unreadable_text_are_issues() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("empty.jsonl", ""),
        ("blank.txt", "\n  \n"),
        ("none.json", "  []  "),
    ] {
        let data = read(dir.path(), name, text);
        assert_eq!(located(&data), vec![(1, None, IssueKind::Empty)], "{name}");
        assert!(data.examples.is_empty());
    }
    let path = dir.path().join("latin1.jsonl");
    std::fs::write(&path, b"{\"a\": 1}\n{\"a\": \"caf\xe9\"}\n").unwrap();
    let data = tunelab_train::data::read_dataset(&path, &ReadOptions::default()).unwrap();
    assert_eq!(located(&data), vec![(2, None, IssueKind::BadSyntax)]);
    assert!(data.issues[0].message.contains("UTF-8"));
}

#[test]
fn csv_problems_name_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let data = read(
        dir.path(),
        "bad.csv",
        "prompt,response\nHi,Hello\nAlone\nQ,\n",
    );
    assert_eq!(
        located(&data),
        vec![
            (3, Some("response"), IssueKind::MissingField),
            (4, Some("response"), IssueKind::EmptyReply),
        ]
    );
    let data = read(dir.path(), "cols.csv", "question,answer\nHi,Hello\n");
    assert_eq!(
        located(&data),
        vec![
            (1, Some("prompt"), IssueKind::MissingField),
            (1, Some("response"), IssueKind::MissingField),
        ]
    );
    assert!(
        data.issues[0].message.contains("question, answer"),
        "{}",
        data.issues[0].message
    );
    assert_eq!(data.rows_total, 1);
}

#[test]
fn over_long_rows_are_truncated_unless_nothing_would_be_left_to_train() {
    let dir = tempfile::tempdir().unwrap();
    let long = "word ".repeat(120);
    let record = |user: &str, assistant: &str| {
        serde_json::json!({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}).to_string()
    };
    let text = [
        record("Hi", "Hello!"),
        record("Hi", &long),
        record(&long, "ok"),
    ]
    .join("\n");
    let path = write(dir.path(), "long.jsonl", &text);
    let max_len = 64;
    let report = check_dataset(
        &path,
        &ReadOptions::default(),
        Some(native_model()),
        max_len,
    )
    .unwrap();
    assert_eq!((report.rows_total, report.rows_usable), (3, 2));
    let kinds: Vec<(u32, IssueKind, bool)> = report
        .issues
        .iter()
        .map(|i| (i.line, i.kind, i.excluded))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (2, IssueKind::TooLong, false),
            (3, IssueKind::NothingToTrain, true)
        ],
        "a long reply is cut and kept; a prompt that fills the max length leaves nothing to learn"
    );
    assert!(
        report.issues[0]
            .message
            .contains("over the max length of 64"),
        "{}",
        report.issues[0].message
    );
    let tokens = report.tokens.as_ref().expect("a model was given");
    assert_eq!(tokens.truncated, 1);
    assert_eq!(tokens.max_len, 64);
    assert!(tokens.min < 64 && tokens.max > 120, "{tokens:?}");
    assert_eq!(report.roles.user, 2);
    assert_eq!(report.roles.assistant, 2);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["issues"][0]["kind"], "too_long");
    assert_eq!(json["format"], "messages");
}
