//! Previewing a dataset for the training screen: the check's report and the first examples as
//! the model will see them.

use tunelab_api::chat::ModelCache;

use crate::workspace_with_default_model;

#[test]
fn a_preview_renders_the_first_examples_through_the_chat_template_and_locates_problems() {
    let (dir, ws) = workspace_with_default_model();
    let cache = ModelCache::default();
    let sample = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/lora-json-extract/train.jsonl");
    let preview =
        tunelab_api::data::preview(&ws, &cache, &sample, tunelab_api::DEFAULT_MODEL, 512).unwrap();
    assert_eq!(preview.report.rows_usable, 160);
    assert!(preview.report.issues.is_empty());
    assert_eq!(preview.samples.len(), 3);
    for sample in &preview.samples {
        assert!(
            sample.contains("<|im_start|>user") && sample.contains("<|im_start|>assistant"),
            "rendered with the model's own template: {sample}"
        );
    }

    let broken = dir.path().join("broken.jsonl");
    std::fs::write(
        &broken,
        concat!(
            r#"{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]}"#,
            "\n",
            r#"{"messages":[{"role":"wizard","content":"Hi"},{"role":"assistant","content":"Hello"}]}"#,
            "\n"
        ),
    )
    .unwrap();
    let preview =
        tunelab_api::data::preview(&ws, &cache, &broken, tunelab_api::DEFAULT_MODEL, 512).unwrap();
    assert_eq!(
        (preview.report.rows_usable, preview.report.rows_total),
        (1, 2)
    );
    let issue = &preview.report.issues[0];
    assert_eq!(issue.line, 2);
    assert_eq!(issue.field.as_deref(), Some("messages[0].role"));
    assert_eq!(preview.samples.len(), 1, "only usable rows are previewed");
}
