//! A training run through the api: the run folder it leaves and chatting with its adapter.

use std::sync::atomic::AtomicBool;

use tunelab_api::chat::{self, ChatMessage, ChatRequest, ChatRole, GenerationParams, ModelCache};
use tunelab_api::train::{self, EvalMetrics, Method, ProgressSink, RunConfig, StepMetrics};

use crate::workspace_with_default_model;

struct Count(u64);

impl ProgressSink for Count {
    fn step(&mut self, _: &StepMetrics) {
        self.0 += 1;
    }
    fn eval(&mut self, _: &EvalMetrics) {}
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

    let cache = ModelCache::default();
    let request = ChatRequest {
        model: tunelab_api::DEFAULT_MODEL.into(),
        adapter: Some("first".into()),
        messages: vec![ChatMessage {
            role: ChatRole::User,
            content: "One pizza please".into(),
        }],
        params: GenerationParams {
            temperature: 0.0,
            max_tokens: 8,
            ..Default::default()
        },
    };
    let answer = chat::chat(&ws, &cache, &request, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert!(
        answer.generated_tokens > 0,
        "the model answers with the adapter attached"
    );

    // The same folder with another configuration is refused rather than mixed up.
    config.train.lr *= 2.0;
    let err = train::run(&ws, &config, &run_dir, &mut count, &AtomicBool::new(false)).unwrap_err();
    assert_eq!(err.code, "invalid_input");
    assert!(train::resolve_adapter(&ws, "no-such-run").is_err());
}

#[test]
fn the_training_benchmark_measures_tokens_per_second_and_memory() {
    let (_dir, ws) = workspace_with_default_model();
    let bench = tunelab_api::bench::train(&ws, tunelab_api::DEFAULT_MODEL, Method::Qlora, 1, 16, 1)
        .unwrap();
    assert_eq!((bench.batch_size, bench.seq_len, bench.steps), (1, 16, 1));
    assert!(bench.tokens_per_s > 0.0 && bench.peak_rss_bytes.unwrap_or(0) > 0);
    assert_eq!(
        bench.trainable_parameters, 4_884_480,
        "rank 16 on all 7 linear layers of 30 blocks"
    );
    assert!(
        tunelab_api::bench::train(&ws, tunelab_api::DEFAULT_MODEL, Method::Lora, 0, 16, 1).is_err()
    );
}
