//! The Knowledge screen end to end: documents dropped into a new knowledge base, searched, and
//! cited in a chat answer.

use std::time::Duration;

use crate::harness::{screenshot, start};

#[test]
fn documents_added_on_the_knowledge_screen_are_searched_and_cited_in_chat() {
    let home = tempfile::tempdir().unwrap();
    let (_driver, app) = start(home.path());
    let long = Duration::from_secs(60);
    let shots = std::env::var("TUNELAB_E2E_SCREENSHOTS").ok();

    let knowledge = app.find("nav button[data-screen='knowledge']", long);
    app.click(&knowledge);
    app.wait_text("main", long, |t| t.contains("No knowledge bases yet"));
    let create = app.find(".empty button.primary", long);
    app.click(&create);
    let name = app.find(
        "form[aria-label='New knowledge base'] input[aria-label='Name']",
        long,
    );
    app.type_text(&name, "brightloom");
    app.wait_text("select[aria-label='Embedder']", long, |t| {
        t.contains("all-minilm-l6-v2")
    });
    let submit = app.find(
        "form[aria-label='New knowledge base'] button[type='submit']",
        long,
    );
    app.click(&submit);
    app.wait_text("section.detail h2", long, |t| t.contains("brightloom"));

    // Paths pasted into the drop zone are added with a progress bar and a report.
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/kb-brightloom/docs");
    let paths = app.find("textarea[aria-label='Paths to add']", long);
    app.type_text(&paths, docs.to_str().unwrap());
    let add = app.find(".dropzone button", long);
    app.click(&add);
    let report = app.wait_text("[aria-label='Last add']", Duration::from_secs(180), |t| {
        t.contains("added")
    });
    assert!(report.contains("11 added"), "{report}");
    let table = app.wait_text("table[aria-label='Documents']", long, |t| {
        t.contains("Travel and Expenses Policy")
    });
    assert!(
        table.contains("pdf") && table.contains("docx") && table.contains("html"),
        "{table}"
    );

    let query = app.find("input[aria-label='Search query']", long);
    app.type_text(&query, "How many holiday days do employees get?\u{E007}");
    let hits = app.wait_text("ol[aria-label='Search results']", long, |t| !t.is_empty());
    let first = app
        .text_content("ol[aria-label='Search results'] li:first-child")
        .unwrap_or_default();
    assert!(
        first.contains("Brightloom Employee Handbook") && first.contains("28 days"),
        "the handbook's holiday section comes first: {hits}"
    );
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("knowledge.png"));
    }

    // "Ask in chat" opens the chat answering from the knowledge base, with its sources.
    let ask = app.find("section.detail .detail-head button.primary", long);
    app.click(&ask);
    app.wait_text(
        "select[aria-label='Answer from knowledge base'] option:checked",
        long,
        |t| t.contains("brightloom"),
    );
    let input = app.find("textarea[aria-label='Message']", long);
    app.type_text(&input, "How long is the frame warranty?\u{E007}");
    let sources = app.wait_text(
        ".turn.assistant ol[aria-label='Sources']",
        Duration::from_secs(120),
        |t| !t.is_empty(),
    );
    assert!(
        sources.contains("[1]") && sources.contains("Warranty and care"),
        "the answer cites the warranty page: {sources}"
    );
    app.wait_text(".turn.assistant .meta", long, |t| t.contains("tok/s"));
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("chat-with-kb.png"));
    }
    app.close();
}
