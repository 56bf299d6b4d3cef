//! The Compare screen end to end: a tiny comparison of all six methods run from the screen, its
//! tables, chart and answers, and an answer asked again in chat.

use std::time::Duration;

use crate::harness::{screenshot, start};

#[test]
fn a_comparison_run_from_the_compare_screen_shows_its_tables_chart_and_answers_and_asks_in_chat() {
    let home = tempfile::tempdir().unwrap();
    let (_driver, app) = start(home.path());
    let long = Duration::from_secs(60);
    let shots = std::env::var("TUNELAB_E2E_SCREENSHOTS").ok();
    // The demo task with every budget cut to a few steps and questions.
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets");
    let task = home.path().join("task.toml");
    let original = std::fs::read_to_string(demo.join("compare-demo/task.toml")).unwrap();
    let absolute = original
        .replace(
            "train = \"train.jsonl\"",
            &format!(
                "train = \"{}\"",
                demo.join("compare-demo/train.jsonl").display()
            ),
        )
        .replace(
            "eval = \"eval.jsonl\"",
            &format!(
                "eval = \"{}\"",
                demo.join("compare-demo/eval.jsonl").display()
            ),
        )
        .replace(
            "documents = \"../kb-brightloom/docs\"",
            &format!(
                "documents = \"{}\"",
                demo.join("kb-brightloom/docs").display()
            ),
        );
    let budget = "\n[budget]\nsoft_prompt_steps = 2\nlora_steps = 2\nfull_steps = 1\n\
                  pretrain_steps = 2\nbatch_size = 2\nseq_len = 64\neval_limit = 3\n\
                  probe_limit = 2\nmax_tokens = 8\ndata_fractions = [0.5]\n";
    std::fs::write(&task, absolute + budget).unwrap();

    let compare = app.find("nav button[data-screen='compare']", long);
    app.click(&compare);
    app.wait_text("main", long, |t| t.contains("No comparisons yet"));
    let path = app.find("form[aria-label='Run a comparison'] input", long);
    app.type_text(&path, task.to_str().unwrap());
    let run = app.find(
        "form[aria-label='Run a comparison'] button[type='submit']",
        long,
    );
    app.click(&run);
    // Progress while it runs, then the six methods with measured columns.
    app.wait_text(
        "form[aria-label='Run a comparison'] [role='status']",
        long,
        |t| !t.is_empty(),
    );
    let table = app.wait_text(
        "table[aria-label='Quality']",
        Duration::from_secs(300),
        |t| t.contains("Pretraining") && t.contains("Full fine-tuning"),
    );
    for method in [
        "Prompt engineering",
        "Retrieval (RAG)",
        "Soft prompt",
        "LoRA / QLoRA",
    ] {
        assert!(table.contains(method), "{method} in {table}");
    }
    app.wait_text("section[aria-label='Comparison report'] .meta", long, |t| {
        t.contains("completed")
    });
    let rag = app
        .text_content("table[aria-label='Cost'] tr[data-method='rag']")
        .unwrap_or_default();
    assert!(rag.contains("tok") && rag.contains("documents"), "{rag}");
    app.wait_text("figure[aria-label='Quality against cost'] svg", long, |t| {
        t.contains("LoRA / QLoRA")
    });
    // Each question answered by every method, side by side.
    let grid = app.wait_text("table[aria-label='Answers']", long, |t| {
        t.contains("How long is the frame warranty?")
    });
    assert!(
        grid.contains("expected: Brightloom Support: 7 years. Ride on!"),
        "{grid}"
    );
    // The jobs panel lets go of the comparison once it has finished.
    app.wait_content("section[aria-label='Jobs']", long, |t| {
        !t.contains("brightloom-support")
    });
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("compare.png"));
    }
    // The trained methods' learning curves, read from their runs.
    let curves = "figure[aria-label='Learning curves']";
    app.find(&format!("{curves} svg g.curve-lora.line path"), long);
    let drawn = app
        .attribute(&format!("{curves} svg"), "aria-label")
        .unwrap_or_default();
    assert_eq!(drawn, "Training loss of 4 trained methods");
    if let Some(dir) = &shots {
        app.scroll_to(curves);
        screenshot(&std::path::Path::new(dir).join("compare-curves.png"));
    }
    // Each trained method again on half its examples: quality against training data.
    let data = "figure[aria-label='Quality against training data']";
    app.find(&format!("{data} svg g.data-lora.line path"), long);
    let drawn = app
        .attribute(&format!("{data} svg"), "aria-label")
        .unwrap_or_default();
    assert!(
        drawn.ends_with("against training examples: 4 trained methods"),
        "{drawn}"
    );
    if let Some(dir) = &shots {
        app.scroll_to(data);
        screenshot(&std::path::Path::new(dir).join("compare-data.png"));
    }
    // A question asked again in chat, the way RAG answered it: from its knowledge base.
    let ask = app.find(
        "table[aria-label='Answers'] tbody tr:first-child button[aria-label='Ask in chat with Retrieval (RAG)']",
        long,
    );
    app.click(&ask);
    app.wait_text(
        "select[aria-label='Answer from knowledge base'] option:checked",
        long,
        |t| t.contains("compare-brightloom-support"),
    );
    app.wait_text(
        ".turn.assistant ol[aria-label='Sources']",
        Duration::from_secs(120),
        |t| !t.is_empty(),
    );
    let report = tunelab_api::compare::show(
        &tunelab_api::Workspace::open(Some(home.path().to_path_buf())).unwrap(),
        "brightloom-support",
    )
    .unwrap();
    assert_eq!(report.methods.len(), 6);
    app.close();
}
