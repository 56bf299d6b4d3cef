//! Soft prompts: trained virtual tokens change how the model answers while every weight stays
//! bit-identical, and they round-trip through PEFT's prompt-tuning format.

use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;

use tunelab_engine::{SamplingParams, Transformer};
use tunelab_train::data::TokenizedExample;
use tunelab_train::methods::soft_prompt::{self, SoftPromptConfig};
use tunelab_train::trainer::{self, EvalMetrics, ProgressSink, RunDir, StepMetrics, TrainSettings};

use crate::f32_model;

struct Losses(Vec<f64>);

impl ProgressSink for Losses {
    fn step(&mut self, m: &StepMetrics) {
        self.0.push(m.loss);
    }
    fn eval(&mut self, _: &EvalMetrics) {}
}

/// Questions answered in one recognisable style: every reply opens with "Arr, matey!".
fn pirate_examples() -> Vec<TokenizedExample> {
    let m = f32_model();
    let pairs = [
        (
            "What is the weather like?",
            "Arr, matey! The skies be grey and the wind be strong.",
        ),
        (
            "How do I boil an egg?",
            "Arr, matey! Drop it in boilin' water for nine minutes.",
        ),
        (
            "Recommend a book.",
            "Arr, matey! Treasure Island be the finest tale afloat.",
        ),
        (
            "What time is it?",
            "Arr, matey! 'Tis time to hoist the sails.",
        ),
    ];
    crate::chat_examples(m, &pairs)
}

fn answer(model: &Transformer, question: &str) -> String {
    let m = f32_model();
    let prompt = m
        .render_chat(&[tunelab_engine::Message::new("user", question)])
        .unwrap();
    let ids = m.tokenizer.encode(&prompt, false).unwrap();
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: 12,
        ..Default::default()
    };
    tunelab_engine::generate(model, &m.tokenizer, &ids, &m.eos_ids, &params, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap()
    .text
}

fn dense(model: &Transformer) -> Vec<tunelab_engine::Tensor> {
    let mut out = Vec::new();
    for layer in &model.layers {
        for (_, linear) in layer.linears() {
            if let tunelab_engine::layers::Weight::Dense(w) = &linear.weight {
                out.push(w.clone());
            }
        }
    }
    if let tunelab_engine::layers::Weight::Dense(w) = &model.embed_tokens.weight {
        out.push(w.clone());
    }
    out
}

#[test]
fn a_soft_prompt_learns_a_style_while_every_weight_stays_bit_identical() {
    let base = f32_model();
    let question = "Where should I travel this summer?";
    let before = answer(&base.transformer, question);
    assert!(
        !before.contains("Arr"),
        "the base model is no pirate: {before}"
    );

    let mut model = base.transformer.clone();
    let config = SoftPromptConfig {
        num_virtual_tokens: 8,
        init_text: Some("Answer every question.".into()),
    };
    let params = soft_prompt::attach(&mut model, &base.tokenizer, &config, 3).unwrap();
    assert_eq!(params.len(), 1);
    assert_eq!(params[0].1.dims(), &[8, model.config.hidden_size]);

    let data = pirate_examples();
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    let settings = TrainSettings {
        max_steps: 30,
        lr: 3e-2,
        warmup_steps: 2,
        batch_size: 4,
        eval_every: 0,
        save_every: 0,
        ..Default::default()
    };
    let mut losses = Losses(Vec::new());
    trainer::train(
        &model,
        &params,
        &data,
        &data[..1],
        &settings,
        &run,
        2,
        &mut losses,
        &AtomicBool::new(false),
    )
    .unwrap();
    let (first, last) = (losses.0[0], *losses.0.last().unwrap());
    assert!(last < first * 0.5, "loss falls: {:?}", losses.0);

    let after = answer(&model, question);
    assert!(
        after.starts_with("Arr"),
        "a question it never saw is answered in the trained style: {after}"
    );
    for (i, (a, b)) in dense(&base.transformer)
        .iter()
        .zip(dense(&model))
        .enumerate()
    {
        let same = a.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(same, "base weight {i} is bit-identical after training");
    }

    // PEFT prompt-tuning format: the config fields, and the same answers after reloading.
    let out = tempfile::tempdir().unwrap();
    soft_prompt::save_peft(out.path(), &params[0].1, &config, &model.config, "base").unwrap();
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["peft_type"], "PROMPT_TUNING");
    assert_eq!(saved["task_type"], "CAUSAL_LM");
    assert_eq!(saved["num_virtual_tokens"], 8);
    assert_eq!(saved["token_dim"], model.config.hidden_size);
    assert_eq!(saved["prompt_tuning_init"], "TEXT");
    let tensors = candle_core::safetensors::load(
        out.path().join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        tensors.keys().collect::<Vec<_>>(),
        vec!["prompt_embeddings"]
    );

    let mut reloaded = base.transformer.clone();
    let loaded = soft_prompt::load_peft(out.path(), &mut reloaded).unwrap();
    assert_eq!(loaded.num_virtual_tokens, 8);
    assert_eq!(answer(&reloaded, question), after);
    let ids = [504u32, 3575, 282, 4649, 314];
    let diff = tunelab_engine::layers::max_abs_diff(
        &model.logits(&ids).unwrap(),
        &reloaded.logits(&ids).unwrap(),
    )
    .unwrap();
    assert_eq!(diff, 0.0, "reloaded virtual tokens give identical logits");
}

#[test]
fn a_soft_prompt_for_another_model_is_refused_by_name() {
    let out = tempfile::tempdir().unwrap();
    let wrong = candle_core::Var::from_tensor(
        &candle_core::Tensor::zeros((4, 32), candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap(),
    )
    .unwrap();
    let mut config = f32_model().transformer.config.clone();
    config.hidden_size = 32;
    soft_prompt::save_peft(
        out.path(),
        &wrong,
        &SoftPromptConfig::default(),
        &config,
        "x",
    )
    .unwrap();
    let mut model = f32_model().transformer.clone();
    let err = soft_prompt::load_peft(out.path(), &mut model)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("adapter_model.safetensors") && err.contains("32 dimensions"),
        "{err}"
    );
}
