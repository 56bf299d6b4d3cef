//! Chat, the decode benchmark and the doctor report through the api.

use std::sync::atomic::AtomicBool;

use tunelab_api::chat::{
    self, ChatEvent, ChatMessage, ChatRequest, ChatRole, GenerationParams, ModelCache, StopReason,
};

use crate::workspace_with_default_model;
use tunelab_api::ErrorCode;

fn request(question: &str, params: GenerationParams) -> ChatRequest {
    ChatRequest {
        template: None,
        kb: None,
        device: None,
        model: tunelab_api::DEFAULT_MODEL.into(),
        adapter: None,
        messages: vec![ChatMessage {
            role: ChatRole::User,
            content: question.into(),
        }],
        params,
    }
}

#[test]
fn chat_streams_events_that_add_up_to_the_answer() {
    let (_dir, ws) = workspace_with_default_model();
    let cache = ModelCache::default();
    let mut events = Vec::new();
    let params = GenerationParams {
        temperature: 0.0,
        max_tokens: 40,
        ..Default::default()
    };
    let summary = chat::chat(
        &ws,
        &crate::caches(&cache),
        &request("What is the capital of France?", params),
        &AtomicBool::new(false),
        &mut |e| events.push(e),
    )
    .unwrap();
    assert!(summary.text.contains("Paris"), "{}", summary.text);
    assert_eq!(summary.stop_reason, StopReason::Eos);
    assert!(
        matches!(events.first(), Some(ChatEvent::PrefillDone { prompt_tokens }) if *prompt_tokens == summary.prompt_tokens)
    );
    let streamed: String = events
        .iter()
        .filter_map(|e| {
            if let ChatEvent::Token { text } = e {
                Some(text.as_str())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(streamed, summary.text);
}

#[test]
fn cancel_stops_the_answer_and_bad_requests_are_named() {
    let (_dir, ws) = workspace_with_default_model();
    let cache = ModelCache::default();
    let cancel = AtomicBool::new(true);
    let params = GenerationParams {
        temperature: 0.0,
        max_tokens: 200,
        ..Default::default()
    };
    let summary = chat::chat(
        &ws,
        &crate::caches(&cache),
        &request("Count from one to one hundred.", params.clone()),
        &cancel,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(summary.stop_reason, StopReason::Cancelled);
    assert!(
        summary.generated_tokens < 5,
        "cancelled right after the first piece of text"
    );

    let mut bad = request(
        "hi",
        GenerationParams {
            top_p: Some(2.0),
            ..params.clone()
        },
    );
    let err = chat::chat(
        &ws,
        &crate::caches(&cache),
        &bad,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidInput);
    assert!(err.message.contains("top_p"), "{}", err.message);
    bad.messages.clear();
    assert_eq!(
        chat::chat(
            &ws,
            &crate::caches(&cache),
            &bad,
            &AtomicBool::new(false),
            &mut |_| {}
        )
        .unwrap_err()
        .code,
        ErrorCode::InvalidInput
    );
    let err = chat::chat(
        &ws,
        &crate::caches(&cache),
        &ChatRequest {
            template: None,
            kb: None,
            device: None,
            model: "nope".into(),
            ..request("hi", params)
        },
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

#[test]
fn the_decode_benchmark_counts_exactly_what_it_asked_for() {
    let (_dir, ws) = workspace_with_default_model();
    let cache = ModelCache::default();
    let cpu = Some(tunelab_api::DeviceChoice::Cpu);
    let bench =
        tunelab_api::bench::decode(&ws, &cache, tunelab_api::DEFAULT_MODEL, 40, 6, 1, cpu).unwrap();
    assert_eq!(bench.device, "cpu");
    assert_eq!(
        (bench.prompt_tokens, bench.generated_tokens, bench.runs),
        (40, 6, 1)
    );
    assert!(bench.prefill_tokens_per_s > 0.0 && bench.decode_tokens_per_s > 0.0);
    assert!(bench.peak_rss_bytes.unwrap_or(0) > 0);
}

#[test]
fn doctor_reports_hardware_and_models() {
    let (_dir, ws) = workspace_with_default_model();
    let report = tunelab_api::doctor(&ws).unwrap();
    assert_eq!(report.models.len(), 1);
    assert!(report.hardware.cpu.logical_cores >= 1);
    assert!(report.cpu_threads >= 1);
    assert_eq!(report.app.default_model, "smollm2-135m-instruct");
}

#[test]
fn doctor_says_why_a_present_gpu_is_not_used_and_what_fixes_it() {
    let mut hardware = tunelab_hardware::probe();
    let auto = tunelab_api::DeviceChoice::Auto;
    let none = tunelab_api::training_device(&hardware, auto);
    if hardware.gpus.is_empty() {
        assert_eq!((none.device.as_str(), none.problem), ("cpu", None));
    }
    // A GPU as NVML would list it, on this (CPU-only) build.
    hardware.gpus = vec![tunelab_hardware::GpuInfo {
        index: 0,
        name: "NVIDIA GeForce RTX 4090".into(),
        uuid: None,
        memory_total_bytes: 24 << 30,
        memory_used_bytes: 1 << 30,
        memory_free_bytes: 23 << 30,
        utilization_percent: None,
        temperature_c: None,
        power_draw_watts: None,
        power_limit_watts: None,
        compute_capability: Some("8.9".into()),
    }];
    let t = tunelab_api::training_device(&hardware, auto);
    if !cfg!(feature = "cuda") {
        assert_eq!((t.device.as_str(), t.precision.as_str()), ("cpu", "f32"));
        assert!(t.problem.unwrap().contains("no CUDA"));
        assert!(t.fix.unwrap().starts_with("scripts/setup.sh"));
    } else {
        // A build with CUDA whose setting keeps it on the CPU says so, and how to change it.
        let t = tunelab_api::training_device(&hardware, tunelab_api::DeviceChoice::Cpu);
        assert_eq!(t.device, "cpu");
        assert!(t.problem.unwrap().contains("device setting is cpu"));
        assert!(t.fix.unwrap().starts_with("tunelab settings --device auto"));
    }
}

#[test]
fn two_models_compared_side_by_side_stay_loaded() {
    use std::sync::Arc;
    let (_dir, ws) = workspace_with_default_model();
    let gguf = crate::default_gguf();
    for name in ["second", "third"] {
        tunelab_api::models::add(&ws, &gguf, Some(name)).unwrap();
    }
    let cache = ModelCache::default();
    let get = |name: &str| cache.get(&ws, name).unwrap();
    let first = get(tunelab_api::DEFAULT_MODEL);
    let second = get("second");
    // Turns alternate between the two sides; neither is loaded again.
    for _ in 0..2 {
        assert!(Arc::ptr_eq(&get(tunelab_api::DEFAULT_MODEL), &first));
        assert!(Arc::ptr_eq(&get("second"), &second));
    }
    // A third model takes the place of the one used longest ago.
    get("third");
    assert!(Arc::ptr_eq(&get("second"), &second));
    assert!(!Arc::ptr_eq(&get(tunelab_api::DEFAULT_MODEL), &first));
    // Released models are loaded anew.
    cache.release();
    assert!(!Arc::ptr_eq(&get("second"), &second));
}
