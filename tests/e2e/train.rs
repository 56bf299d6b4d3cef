//! The Train screen end to end: a short LoRA run started from the wizard, its live chart, the
//! run left and found again through the jobs list, and the result opened in chat.

use std::time::Duration;

use crate::harness::{screenshot, start};
use crate::webdriver::Session;

/// The wizard's settings step: `steps` steps of one 128-token example each.
fn fill_settings(app: &Session, steps: &str, wait: Duration) {
    for (label, value) in [
        ("Steps", steps),
        ("Batch size", "1"),
        ("Sequence length", "128"),
    ] {
        let input = app.find(&format!("input[aria-label='{label}']"), wait);
        app.clear(&input);
        app.type_text(&input, value);
    }
}

/// Points on the training curve of the loss chart inside `scope` (a CSS prefix, empty for the
/// page): one moveto or lineto in the line's path per point.
fn loss_points(app: &Session, scope: &str) -> usize {
    app.attribute(
        &format!("{scope}figure[aria-label='Loss'] g.train.line path"),
        "d",
    )
    .unwrap_or_default()
    .chars()
    .filter(|c| matches!(c, 'M' | 'L'))
    .count()
}

#[test]
fn a_short_lora_run_from_the_train_screen_moves_its_chart_and_opens_in_chat() {
    let home = tempfile::tempdir().unwrap();
    let (_driver, app) = start(home.path());
    let long = Duration::from_secs(60);
    let shots = std::env::var("TUNELAB_E2E_SCREENSHOTS").ok();

    // The method guide recommends a method for a need.
    let guide = app.find("nav button[data-screen='guide']", long);
    app.click(&guide);
    let advice = app.wait_text("section[aria-label='Advisor']", long, |t| {
        t.contains("Start with")
    });
    assert!(
        advice.contains("LoRA"),
        "a task with many examples: {advice}"
    );
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("guide.png"));
    }

    // Runs starts empty and says what to do.
    let runs = app.find("nav button[data-screen='runs']", long);
    app.click(&runs);
    app.wait_text("main", long, |t| t.contains("No runs yet"));

    let start_run = app.find(".empty button.primary", long);
    app.click(&start_run);
    // The wizard: method and model (LoRA on the default model), then the dataset.
    app.wait_text("section[aria-label='Method and model']", long, |t| {
        t.contains("LoRA")
    });
    let next = app.find("button.next", long);
    app.click(&next);
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("datasets/lora-json-extract/train.jsonl");
    let dataset = app.find("input[aria-label='Dataset file']", long);
    app.type_text(&dataset, data.to_str().unwrap());
    // The dataset as the model sees it.
    let check_data = app.find("button.check-dataset", long);
    app.click(&check_data);
    let report = app.wait_text("section[aria-label='Dataset']", long, |t| {
        t.contains("rows usable")
    });
    assert!(
        report.contains("160 of 160 rows usable")
            && report.contains("0 cut at 256")
            && report.contains("<|im_start|>assistant"),
        "{report}"
    );
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("train-dataset.png"));
    }
    let next = app.find("button.next", long);
    app.click(&next);
    // Settings, each with its default and what it does.
    fill_settings(&app, "3", long);
    let next = app.find("button.next", long);
    app.click(&next);
    // The review checks the memory plan for this machine.
    let plan = app.wait_text("section[aria-label='Memory plan']", long, |t| {
        t.contains("fits")
    });
    assert!(plan.contains("weights"), "the plan shows its parts: {plan}");
    let review = app.wait_text("section[aria-label='Review']", long, |t| {
        t.contains("3 steps")
    });
    assert!(
        review.contains("batch 1") && review.contains("128 tokens"),
        "{review}"
    );
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("train-review.png"));
    }

    let start = app.find("button.start", long);
    app.click(&start);
    // The chart moves: the training curve gains points while the run goes on (one moveto or
    // lineto in the line's path per point).
    let count_points = || loss_points(&app, "");
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let mut counts_while_running = std::collections::BTreeSet::new();
    loop {
        let count = count_points();
        if app
            .text_content("section[aria-label='Training progress'] .done")
            .is_some()
        {
            break;
        }
        counts_while_running.insert(count);
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not finish within four minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        counts_while_running.iter().any(|&c| c > 0 && c < 3),
        "the chart grew while the run went on: {counts_while_running:?}"
    );
    // The last step's event may arrive just after the run's result: wait for it.
    let settle_deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count_points() < 3 && std::time::Instant::now() < settle_deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count_points(), 3, "one point per step reached the chart");
    let done = app.wait_text("section[aria-label='Training progress'] .done", long, |t| {
        t.contains("completed")
    });
    assert!(done.contains("validation loss"), "{done}");
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("train.png"));
    }

    let open = app.find(
        "section[aria-label='Training progress'] button.primary",
        long,
    );
    app.click(&open);
    let chosen = app.wait_text(
        "select[aria-label='Answer with trained run'] option:checked",
        long,
        |t| t.contains("lora-"),
    );
    assert!(
        chosen.contains("smollm2-135m-instruct"),
        "chat answers with the run: {chosen}"
    );
    // The run's base model shows as chosen once the model list has arrived.
    app.wait_text("select option:checked", long, |t| {
        t.contains("smollm2-135m-instruct")
    });
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("chat-with-run.png"));
    }

    let runs = app.find("nav button[data-screen='runs']", long);
    app.click(&runs);
    let table = app.wait_text("table", long, |t| t.contains("completed"));
    assert!(table.contains("lora"), "{table}");
    // The newest run opens with its curves.
    app.find(
        "section[aria-label='Selected run'] figure[aria-label='Loss'] g.train.line path",
        long,
    );
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("runs.png"));
    }
    // The finished run exports as GGUF with an Ollama Modelfile, checked before it is kept.
    let export = app.find("section[aria-label='Export'] .actions button.primary", long);
    app.click(&export);
    let done = app.wait_text("section[aria-label='Export'] [role='status']", long, |t| {
        t.contains("Exported and checked")
    });
    assert!(
        done.contains(".q8_0.gguf") && done.contains("Modelfile") && done.contains("ollama create"),
        "{done}"
    );
    let checks = app.wait_text("ul[aria-label='Export checks']", long, |t| {
        t.contains("end of turn")
    });
    assert!(!checks.contains("failed"), "{checks}");
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("runs-export.png"));
    }

    // A longer run keeps going when its screen is left: the jobs list in the sidebar leads back
    // to its live chart, which still grows, and its Cancel stops it.
    let train = app.find("nav button[data-screen='train']", long);
    app.click(&train);
    let again = app.find("section[aria-label='Training progress'] button.ghost", long);
    app.click(&again);
    let next = app.find("button.next", long);
    app.click(&next);
    let dataset = app.find("input[aria-label='Dataset file']", long);
    app.type_text(&dataset, data.to_str().unwrap());
    let next = app.find("button.next", long);
    app.click(&next);
    fill_settings(&app, "400", long);
    let next = app.find("button.next", long);
    app.click(&next);
    app.wait_text("section[aria-label='Review']", long, |t| {
        t.contains("400 steps")
    });
    let start = app.find("button.start", long);
    app.click(&start);
    app.wait_text(
        "section[aria-label='Training progress'] .stats",
        long,
        |t| t.contains("step "),
    );
    let home = app.find("nav button[data-screen='home']", long);
    app.click(&home);
    let job = app.find("section[aria-label='Jobs'] button.open", long);
    app.click(&job);
    let selected_points = || loss_points(&app, "section[aria-label='Selected run'] ");
    let cancel = app.find("section[aria-label='Selected run'] button.danger", long);
    let seen = selected_points();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while selected_points() <= seen {
        assert!(
            std::time::Instant::now() < deadline,
            "the reattached chart did not grow past {seen} points"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    app.click(&cancel);
    let table = app.wait_text("table", long, |t| t.contains("cancelled"));
    assert!(
        table.contains("completed"),
        "the first run is still listed: {table}"
    );
    app.close();
}
