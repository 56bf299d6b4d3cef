//! Every format parses, and the format is told from the extension and the first record.

use tunelab_train::data::{
    read_dataset, DataError, DatasetFormat, ExampleContent, ReadOptions, TextDocuments,
};

use crate::{chats, pair, read, write};

#[test]
fn alpaca_parses_as_a_json_array_and_as_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let array = r#"[
  {"instruction": "Add the numbers", "input": "2 and 3", "output": "5"},
  {"instruction": "Greet", "output": "Hello!", "system": "You are polite."}
]"#;
    let expected = vec![
        vec![
            pair("user", "Add the numbers\n\n2 and 3"),
            pair("assistant", "5"),
        ],
        vec![
            pair("system", "You are polite."),
            pair("user", "Greet"),
            pair("assistant", "Hello!"),
        ],
    ];
    let data = read(dir.path(), "alpaca.json", array);
    assert_eq!(data.format, Some(DatasetFormat::Alpaca));
    assert_eq!(chats(&data), expected);
    assert_eq!(
        data.examples.iter().map(|e| e.line).collect::<Vec<_>>(),
        vec![2, 3]
    );

    let jsonl = "{\"instruction\": \"Add the numbers\", \"input\": \"2 and 3\", \"output\": \"5\"}\n\
                 {\"instruction\": \"Greet\", \"input\": null, \"output\": \"Hello!\", \"system\": \"You are polite.\"}\n";
    let data = read(dir.path(), "alpaca.jsonl", jsonl);
    assert_eq!(chats(&data), expected, "JSONL gives the same conversations");
    assert!(data.issues.is_empty(), "{:?}", data.issues);
}

#[test]
fn sharegpt_parses_as_a_json_array_and_as_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let record = r#"{"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}, {"from": "user", "value": "Bye"}, {"from": "assistant", "value": "Bye!"}]}"#;
    let expected = vec![vec![
        pair("system", "Be brief."),
        pair("user", "Hi"),
        pair("assistant", "Hello"),
        pair("user", "Bye"),
        pair("assistant", "Bye!"),
    ]];
    for (name, text) in [
        ("s.json", format!("[{record}]")),
        ("s.jsonl", format!("{record}\n")),
    ] {
        let data = read(dir.path(), name, &text);
        assert_eq!(data.format, Some(DatasetFormat::ShareGpt), "{name}");
        assert_eq!(chats(&data), expected, "{name}");
    }
}

#[test]
fn openai_messages_jsonl_parses() {
    let dir = tempfile::tempdir().unwrap();
    let text = "{\"messages\": [{\"role\": \"user\", \"content\": \"2+2?\"}, {\"role\": \"assistant\", \"content\": \"4\"}]}\n\n\
                {\"messages\": [{\"role\": \"system\", \"content\": \"Terse.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hi.\"}]}\n";
    let data = read(dir.path(), "chat.jsonl", text);
    assert_eq!(data.format, Some(DatasetFormat::Messages));
    assert_eq!(data.rows_total, 2, "the blank line is not a row");
    assert_eq!(data.examples[1].line, 3);
    assert_eq!(
        chats(&data)[1],
        vec![
            pair("system", "Terse."),
            pair("user", "Hi"),
            pair("assistant", "Hi.")
        ]
    );
}

#[test]
fn csv_takes_default_or_chosen_columns_and_multiline_cells() {
    let dir = tempfile::tempdir().unwrap();
    let data = read(
        dir.path(),
        "pairs.csv",
        "id,prompt,response\n1,Hi,Hello\n2,\"Two\nlines\",\"Yes, two\"\n3,Bye,Bye!\n",
    );
    assert_eq!(data.format, Some(DatasetFormat::Csv));
    assert_eq!(
        chats(&data),
        vec![
            vec![pair("user", "Hi"), pair("assistant", "Hello")],
            vec![pair("user", "Two\nlines"), pair("assistant", "Yes, two")],
            vec![pair("user", "Bye"), pair("assistant", "Bye!")],
        ]
    );
    assert_eq!(
        data.examples.iter().map(|e| e.line).collect::<Vec<_>>(),
        vec![2, 3, 5],
        "a row starts on the line its first cell is on"
    );

    let data = read(
        dir.path(),
        "alpaca.csv",
        "instruction,output,system\nQ,A,Be kind\n",
    );
    assert_eq!(
        chats(&data),
        vec![vec![
            pair("system", "Be kind"),
            pair("user", "Q"),
            pair("assistant", "A")
        ]],
        "instruction/output are accepted, and a system column is used"
    );

    let path = write(
        dir.path(),
        "custom.tsv",
        "question\tanswer\nWhy?\tBecause.\n",
    );
    let options = ReadOptions {
        prompt_column: Some("question".into()),
        response_column: Some("answer".into()),
        ..ReadOptions::default()
    };
    let data = read_dataset(&path, &options).unwrap();
    assert_eq!(
        chats(&data),
        vec![vec![pair("user", "Why?"), pair("assistant", "Because.")]]
    );
}

#[test]
fn plain_text_is_paragraphs_or_one_document() {
    let dir = tempfile::tempdir().unwrap();
    let text = "First paragraph,\nstill first.\n\n\nSecond.\n";
    let data = read(dir.path(), "corpus.txt", text);
    assert_eq!(data.format, Some(DatasetFormat::Text));
    let docs: Vec<(usize, ExampleContent)> = data
        .examples
        .into_iter()
        .map(|e| (e.line, e.content))
        .collect();
    assert_eq!(
        docs,
        vec![
            (
                1,
                ExampleContent::Text("First paragraph,\nstill first.".into())
            ),
            (5, ExampleContent::Text("Second.".into())),
        ]
    );
    let options = ReadOptions {
        text_documents: TextDocuments::WholeFile,
        ..ReadOptions::default()
    };
    let data = read_dataset(&dir.path().join("corpus.txt"), &options).unwrap();
    assert_eq!(data.examples.len(), 1);
}

#[test]
fn the_format_comes_from_the_extension_the_first_record_or_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    // A .txt file holding JSONL is text unless the caller says otherwise.
    let jsonl = "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n";
    let path = write(dir.path(), "notes.txt", jsonl);
    let as_text = read_dataset(&path, &ReadOptions::default()).unwrap();
    assert_eq!(as_text.format, Some(DatasetFormat::Text));
    let forced = ReadOptions {
        format: Some(DatasetFormat::Messages),
        ..ReadOptions::default()
    };
    let as_chat = read_dataset(&path, &forced).unwrap();
    assert_eq!(as_chat.format, Some(DatasetFormat::Messages));
    assert_eq!(
        chats(&as_chat),
        vec![vec![pair("user", "a"), pair("assistant", "b")]]
    );

    // An unknown extension is fine when the first record's fields tell.
    let data = read(dir.path(), "data.dat", "[{\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}, {\"from\": \"gpt\", \"value\": \"b\"}]}]");
    assert_eq!(data.format, Some(DatasetFormat::ShareGpt));

    for (name, text) in [
        ("mystery.json", "{\"question\": \"a\", \"answer\": \"b\"}\n"),
        ("mystery.bin", "hello world\n"),
    ] {
        let err =
            read_dataset(&write(dir.path(), name, text), &ReadOptions::default()).unwrap_err();
        assert!(
            matches!(&err, DataError::UnknownFormat { message, .. } if message.contains("--format")),
            "{name}: an undetectable format is an error that says how to choose one: {err}"
        );
    }
}

#[test]
fn records_before_the_one_that_tells_the_format_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = "{\"id\": 1}\n\
                 \n\
                 not json\n\
                 {\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n\
                 {\"messages\": [{\"role\": \"user\", \"content\": \"c\"}, {\"role\": \"assistant\", \"content\": \"d\"}]}\r\n";
    let data = read(dir.path(), "late.jsonl", jsonl);
    assert_eq!(data.format, Some(DatasetFormat::Messages));
    assert_eq!(data.rows_total, 4, "blank lines are not records");
    assert_eq!(
        chats(&data),
        vec![
            vec![pair("user", "a"), pair("assistant", "b")],
            vec![pair("user", "c"), pair("assistant", "d")]
        ]
    );
    assert_eq!(
        data.examples.iter().map(|e| e.line).collect::<Vec<_>>(),
        vec![4, 5]
    );
    let lines: Vec<usize> = data.issues.iter().map(|i| i.line as usize).collect();
    assert_eq!(lines, vec![1, 3], "{:?}", data.issues);
}
