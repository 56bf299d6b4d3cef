//! A training run through the api: the run folder it leaves and chatting with its adapter.

use std::sync::atomic::AtomicBool;

use tunelab_api::bench::TrainBenchRequest;
use tunelab_api::chat::{self, ChatMessage, ChatRequest, ChatRole, GenerationParams, ModelCache};
use tunelab_api::train::{
    self, EvalMetrics, Method, ProgressSink, RunConfig, RunStatus, StepMetrics,
};

use crate::workspace_with_default_model;
use tunelab_api::ErrorCode;

struct Count(u64);

impl ProgressSink for Count {
    fn step(&mut self, _: &StepMetrics) {
        self.0 += 1;
    }
    fn eval(&mut self, _: &EvalMetrics) {}
}

/// Runs `config` to the end in the run folder `name`.
fn run_named(
    ws: &tunelab_api::Workspace,
    config: &RunConfig,
    name: &str,
) -> (std::path::PathBuf, train::RunSummary) {
    let run_dir = ws.runs_dir().join(name);
    let summary = train::run(ws, config, &run_dir, &mut Count(0), &AtomicBool::new(false)).unwrap();
    (run_dir, summary)
}

/// Greedy answer of the default model with the run `adapter`'s result to one user message.
fn ask_run(
    ws: &tunelab_api::Workspace,
    adapter: &str,
    content: &str,
    max_tokens: u32,
) -> chat::ChatSummary {
    let request = ChatRequest {
        template: None,
        kb: None,
        device: None,
        model: tunelab_api::DEFAULT_MODEL.into(),
        adapter: Some(adapter.into()),
        messages: vec![ChatMessage {
            role: ChatRole::User,
            content: content.into(),
        }],
        params: GenerationParams {
            temperature: 0.0,
            max_tokens,
            ..Default::default()
        },
    };
    let cache = ModelCache::default();
    chat::chat(
        ws,
        &crate::caches(&cache),
        &request,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap()
}

fn sample_data() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/lora-json-extract/train.jsonl")
}

#[test]
fn a_qlora_run_leaves_a_self_describing_folder_and_an_adapter_chat_can_use() {
    let (_dir, ws) = workspace_with_default_model();
    let mut config = RunConfig {
        method: Method::Qlora,
        data: sample_data(),
        seq_len: 256,
        ..Default::default()
    };
    config.train.max_steps = 2;
    config.train.batch_size = 1;
    config.lora.rank = 4;
    let run_dir = ws.runs_dir().join("first");
    let mut count = Count(0);
    let summary = train::run(&ws, &config, &run_dir, &mut count, &AtomicBool::new(false)).unwrap();
    assert_eq!(
        (summary.status.as_str(), summary.steps, count.0),
        ("completed", 2, 2)
    );
    assert!(
        summary.tokens_seen > 0
            && summary.wall_time_s > 0.0
            && summary.peak_rss_bytes.unwrap_or(0) > 0
    );
    assert!(
        summary.train_examples >= 140 && summary.val_examples >= 14,
        "a tenth of the 160 rows validates"
    );
    for file in [
        "config.json",
        "metrics.jsonl",
        "summary.json",
        "artifact/adapter_config.json",
        "artifact/adapter_model.safetensors",
        "checkpoints/step-2/state.json",
    ] {
        assert!(run_dir.join(file).is_file(), "the run folder has {file}");
    }
    let (saved, _) = train::show(&run_dir).unwrap();
    assert_eq!(
        saved, config,
        "config.json holds the resolved configuration"
    );
    assert_eq!(train::list(&ws).unwrap().len(), 1);

    let answer = ask_run(&ws, "first", "One pizza please", 8);
    assert!(
        answer.generated_tokens > 0,
        "the model answers with the adapter attached"
    );

    // The same folder with another configuration is refused rather than mixed up.
    config.train.lr *= 2.0;
    let err = train::run(&ws, &config, &run_dir, &mut count, &AtomicBool::new(false)).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidInput);
    assert!(train::resolve_artifact(&ws, "no-such-run").is_err());
}

#[test]
fn a_soft_prompt_run_saves_peft_prompt_tuning_and_chat_answers_through_it() {
    let (_dir, ws) = workspace_with_default_model();
    let mut config = RunConfig {
        data: sample_data(),
        seq_len: 256,
        ..RunConfig::for_method(Method::SoftPrompt)
    };
    config.train.max_steps = 2;
    config.train.batch_size = 1;
    config.soft_prompt.num_virtual_tokens = 6;
    let (run_dir, summary) = run_named(&ws, &config, "soft");
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(summary.trainable_parameters, 6 * 576);
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("artifact/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["peft_type"], "PROMPT_TUNING");
    assert_eq!(saved["num_virtual_tokens"], 6);
    let (shown, _) = train::show(&run_dir).unwrap();
    assert_eq!(shown.method, Method::SoftPrompt);

    let answer = ask_run(&ws, "soft", "One pizza please", 6);
    assert!(
        answer.generated_tokens > 0,
        "chat answers with the soft prompt"
    );
}

#[test]
fn a_full_fine_tuning_run_leaves_a_model_folder_that_chat_answers_with() {
    let (_dir, ws) = workspace_with_default_model();
    let mut config = RunConfig {
        data: sample_data(),
        seq_len: 128,
        ..RunConfig::for_method(Method::Full)
    };
    config.train.max_steps = 1;
    config.train.batch_size = 1;
    let (run_dir, summary) = run_named(&ws, &config, "full");
    assert_eq!(summary.status, RunStatus::Completed);
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(
            run_dir.join("artifact").join(file).is_file(),
            "artifact/{file}"
        );
    }
    let answer = ask_run(&ws, "full", "What is the capital of France?", 8);
    assert!(
        answer.text.contains("Paris"),
        "one small step keeps the model's knowledge: {}",
        answer.text
    );
}

fn corpus() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/pretrain-corpus/corpus.txt")
}

#[test]
fn a_1m_model_pretrained_briefly_ends_far_below_chance_and_reloads() {
    let (_dir, ws) = workspace_with_default_model();
    let mut config = RunConfig {
        data: corpus(),
        seq_len: 128,
        ..RunConfig::for_method(Method::Pretrain)
    };
    config.pretrain.preset = train::Preset::M1;
    config.train.max_steps = 120;
    config.train.batch_size = 8;
    config.train.lr = 3e-3;
    config.train.eval_every = 0;
    let (run_dir, summary) = run_named(&ws, &config, "pretrain");
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(summary.tokens_seen, 120 * 8 * 128);
    let model = tunelab_engine::load(
        &run_dir.join("artifact"),
        tunelab_engine::Precision::F32,
        &tunelab_engine::Device::Cpu,
    )
    .unwrap();
    let vocab = model.summary.config.vocab_size as f64;
    assert!(vocab <= 2048.0);
    let chance = vocab.ln();
    let val = summary.val_loss.unwrap();
    assert!(
        val < 0.4 * chance,
        "validation loss {val:.3} is far below ln(vocabulary) = {chance:.3}"
    );
    assert!((summary.val_perplexity.unwrap() - val.exp()).abs() < 1e-6);
    // The new tokenizer, as the engine loads it, round-trips text it never saw.
    for text in ["Brackenford sold 3 maps.", "日本語 🦀 Ελληνικά \t tabs\n"] {
        let ids = model.tokenizer.encode(text, false).unwrap();
        assert_eq!(model.tokenizer.decode(&ids, false).unwrap(), text);
    }
    for file in ["base/tokenizer.json", "base/config.json"] {
        assert!(run_dir.join(file).is_file(), "the run keeps {file}");
    }
}

#[test]
fn continued_pretraining_packs_plain_text_for_an_existing_model() {
    let (dir, ws) = workspace_with_default_model();
    let text = dir.path().join("notes.txt");
    let paragraph = "Tunelab trains models on the machine they run on. ".repeat(12);
    std::fs::write(
        &text,
        format!("{paragraph}\n\n{paragraph}\n\n{paragraph}\n"),
    )
    .unwrap();
    let mut config = RunConfig {
        data: text,
        seq_len: 64,
        val_fraction: 0.0,
        ..RunConfig::for_method(Method::Pretrain)
    };
    config.pretrain.from_scratch = false;
    config.train.max_steps = 1;
    config.train.batch_size = 2;
    let (run_dir, summary) = run_named(&ws, &config, "continued");
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(
        summary.tokens_seen,
        2 * 64,
        "every block is a full 64 tokens"
    );
    assert!(run_dir.join("artifact/model.safetensors").is_file());
}

#[test]
fn the_training_benchmark_measures_tokens_per_second_and_memory() {
    let (_dir, ws) = workspace_with_default_model();
    let bench = tunelab_api::bench::train(
        &ws,
        &TrainBenchRequest {
            method: Method::Qlora,
            batch_size: 1,
            seq_len: 16,
            steps: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((bench.batch_size, bench.seq_len, bench.steps), (1, 16, 1));
    assert!(bench.tokens_per_s > 0.0 && bench.peak_rss_bytes.unwrap_or(0) > 0);
    assert_eq!(
        bench.trainable_parameters, 4_884_480,
        "rank 16 on all 7 linear layers of 30 blocks"
    );
    assert!(tunelab_api::bench::train(
        &ws,
        &TrainBenchRequest {
            batch_size: 0,
            ..Default::default()
        }
    )
    .is_err());
}

/// Share of `prompts` whose greedy answer is one JSON object with the sample set's keys.
fn json_answers(
    ws: &tunelab_api::Workspace,
    adapter: Option<&str>,
    system: &str,
    prompts: &[&str],
) -> usize {
    let cache = ModelCache::default();
    prompts
        .iter()
        .filter(|p| {
            let request = ChatRequest {
                template: None,
                kb: None,
                device: None,
                model: tunelab_api::DEFAULT_MODEL.into(),
                adapter: adapter.map(String::from),
                messages: vec![
                    ChatMessage {
                        role: ChatRole::System,
                        content: system.into(),
                    },
                    ChatMessage {
                        role: ChatRole::User,
                        content: (**p).into(),
                    },
                ],
                params: GenerationParams {
                    temperature: 0.0,
                    max_tokens: 80,
                    ..Default::default()
                },
            };
            let text = chat::chat(
                ws,
                &crate::caches(&cache),
                &request,
                &AtomicBool::new(false),
                &mut |_| {},
            )
            .unwrap()
            .text;
            serde_json::from_str::<serde_json::Value>(text.trim()).is_ok_and(|v| {
                ["intent", "items", "name", "address", "time"]
                    .iter()
                    .all(|k| v.get(k).is_some())
            })
        })
        .count()
}

#[test]
fn lora_on_the_sample_set_moves_answers_to_the_json_format() {
    let (_dir, ws) = workspace_with_default_model();
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(sample_data())
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let system = first["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    // Written for this test, not in the training set.
    let prompts = [
        "Hello, Priya here. Two large veggie pizzas to 3 Birch Lane on Friday at 7pm please.",
        "Please cancel the order I placed for Tuesday, it's Tom.",
        "The garlic bread I got yesterday was burnt.",
        "Do you have gluten free bases?",
    ];
    let before = json_answers(&ws, None, &system, &prompts);
    let mut config = RunConfig {
        method: Method::Qlora,
        data: sample_data(),
        seq_len: 256,
        ..Default::default()
    };
    config.train.max_steps = 24;
    config.train.batch_size = 2;
    config.train.lr = 2e-3;
    config.train.warmup_steps = 2;
    config.train.eval_every = 0;
    let summary = train::run(
        &ws,
        &config,
        &ws.runs_dir().join("json"),
        &mut Count(0),
        &AtomicBool::new(false),
    )
    .unwrap();
    let after = json_answers(&ws, Some("json"), &system, &prompts);
    eprintln!(
        "JSON answers: {before}/4 before, {after}/4 after; validation loss {:?}",
        summary.val_loss
    );
    assert!(
        summary.val_loss.unwrap() < 0.5,
        "validation loss falls to {:?}",
        summary.val_loss
    );
    assert!(
        after >= 3 && after > before,
        "answers in the JSON format: {before}/4 before training, {after}/4 after"
    );
}
