//! The sample LoRA set in datasets/ is clean, and its answers follow its schema.

use std::path::PathBuf;

use tunelab_train::data::{
    check_dataset, read_dataset, DatasetFormat, ExampleContent, ReadOptions,
};

use crate::native_model;

fn sample_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/lora-json-extract/train.jsonl")
}

#[test]
fn the_sample_dataset_passes_the_check_with_the_default_model() {
    let report = check_dataset(
        &sample_path(),
        &ReadOptions::default(),
        Some(native_model()),
        1024,
    )
    .unwrap();
    assert!(report.issues.is_empty(), "{:#?}", report.issues);
    assert_eq!(report.format, Some(DatasetFormat::Messages));
    assert!(report.rows_usable >= 120, "{} rows", report.rows_usable);
    assert_eq!(report.rows_usable, report.rows_total);
    assert_eq!(
        report.roles.assistant, report.rows_usable,
        "one reply per conversation"
    );
    let tokens = report.tokens.unwrap();
    assert_eq!(tokens.truncated, 0);
    assert!(tokens.max < 1024 && tokens.min > 0, "{tokens:?}");
}

#[test]
fn every_sample_answer_is_one_line_of_json_with_the_fixed_keys() {
    let data = read_dataset(&sample_path(), &ReadOptions::default()).unwrap();
    let keys = ["intent", "items", "name", "address", "time"];
    for example in &data.examples {
        let ExampleContent::Chat(messages) = &example.content else {
            panic!("a conversation")
        };
        let answer = &messages.last().unwrap().content;
        assert!(!answer.contains('\n'), "line {}: one line", example.line);
        // serde_json keeps key order only with preserve_order, so read the order from the text.
        let value: serde_json::Value = serde_json::from_str(answer)
            .unwrap_or_else(|e| panic!("line {}: the answer is JSON: {e}", example.line));
        assert_eq!(
            value.as_object().unwrap().len(),
            keys.len(),
            "line {}",
            example.line
        );
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| answer.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "line {}: keys in the fixed order",
            example.line
        );
        let intent = value["intent"].as_str().unwrap();
        assert!(
            ["order", "cancel", "complaint", "question"].contains(&intent),
            "line {}",
            example.line
        );
        for item in value["items"].as_array().unwrap() {
            assert!(
                item["item"].is_string() && item["qty"].is_u64(),
                "line {}",
                example.line
            );
        }
    }
}
