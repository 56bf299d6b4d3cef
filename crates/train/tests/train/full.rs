//! Full fine-tuning: every weight gets its gradient (the same with and without activation
//! checkpointing), training changes the weights, and the saved Hugging Face folder reloads
//! with identical logits and the same chat template.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tunelab_engine::checkpoint::SideGrads;
use tunelab_engine::{Device, Tensor};
use tunelab_train::methods::full;
use tunelab_train::trainer::loss::masked_head_loss;
use tunelab_train::trainer::{self, EvalMetrics, ProgressSink, RunDir, StepMetrics, TrainSettings};

use crate::f32_model;

struct Losses(Vec<f64>);

impl ProgressSink for Losses {
    fn step(&mut self, m: &StepMetrics) {
        self.0.push(m.loss);
    }
    fn eval(&mut self, _: &EvalMetrics) {}
}

fn example(text: &str) -> tunelab_train::data::TokenizedExample {
    let ids = f32_model().tokenizer.encode(text, false).unwrap();
    tunelab_train::data::TokenizedExample {
        line: 1,
        full_len: ids.len(),
        full_len_estimated: false,
        labels: ids.iter().map(|&t| t as i64).collect(),
        ids,
    }
}

#[test]
fn every_weight_gets_the_same_gradient_with_and_without_checkpointing() {
    let mut model = f32_model().transformer.clone();
    let params = full::attach(&mut model).unwrap();
    assert_eq!(
        params
            .iter()
            .map(|(_, v)| v.elem_count() as u64)
            .sum::<u64>(),
        model.config.parameter_count(),
        "every parameter is trainable, the tied head counted once"
    );
    let e = example("Full fine-tuning moves every weight of the model.");
    let ids = Tensor::new(e.ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let labels = vec![e.labels.clone()];
    let grads = |checkpointed: bool| -> Vec<Tensor> {
        let side =
            Arc::new(SideGrads::with_buffers(params.iter().map(|(_, v)| v.as_tensor())).unwrap());
        let hidden = model
            .hidden_train(&ids, checkpointed.then_some(&side))
            .unwrap();
        let (loss, _) = masked_head_loss(&model, &hidden, &labels, true).unwrap();
        let store = loss.backward().unwrap();
        params
            .iter()
            .map(|(name, v)| {
                store
                    .get(v.as_tensor())
                    .cloned()
                    .or_else(|| side.take(v.as_tensor()))
                    .unwrap_or_else(|| panic!("{name} has a gradient"))
            })
            .collect()
    };
    let (plain, checkpointed) = (grads(false), grads(true));
    for ((name, _), (a, b)) in params.iter().zip(plain.iter().zip(&checkpointed)) {
        let scale = tunelab_engine::layers::max_abs(a).unwrap();
        let diff = tunelab_engine::layers::max_abs_diff(a, b).unwrap();
        assert!(
            diff <= 1e-3 * scale.max(1e-6),
            "{name}: checkpointed gradient differs by {diff} (values up to {scale})"
        );
    }
}

#[test]
fn full_fine_tuning_changes_weights_and_the_saved_folder_reloads_identically() {
    let base = f32_model();
    let mut model = crate::load_default(tunelab_engine::Precision::F32);
    let params = full::attach(&mut model.transformer).unwrap();
    let before = params[1].1.as_tensor().copy().unwrap();
    let data = vec![
        example("Tunelab keeps every run in a folder that describes itself."),
        example("A memory plan runs before any weight is loaded."),
    ];
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    let settings = TrainSettings {
        max_steps: 4,
        lr: 1e-4,
        warmup_steps: 0,
        batch_size: 2,
        eval_every: 0,
        save_every: 0,
        ..Default::default()
    };
    let mut losses = Losses(Vec::new());
    trainer::train(
        &model.transformer,
        &params,
        &data,
        &[],
        &settings,
        &run,
        2,
        &mut losses,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(
        losses.0.last().unwrap() < &(losses.0[0] * 0.7),
        "loss falls: {:?}",
        losses.0
    );
    let moved = tunelab_engine::layers::max_abs_diff(&before, params[1].1.as_tensor()).unwrap();
    assert!(moved > 0.0, "{} changed", params[1].0);

    let out = tempfile::tempdir().unwrap();
    full::save_hf(out.path(), &model, &params).unwrap();
    for file in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(out.path().join(file).is_file(), "the folder has {file}");
    }
    let reloaded =
        tunelab_engine::load(out.path(), tunelab_engine::Precision::F32, &Device::Cpu).unwrap();
    assert_eq!(reloaded.summary.config, model.transformer.config);
    assert_eq!(reloaded.eos_ids, base.eos_ids);
    let chat = [tunelab_engine::Message::new("user", "Hello")];
    assert_eq!(
        reloaded.render_chat(&chat).unwrap(),
        base.render_chat(&chat).unwrap(),
        "the chat template travels with the model"
    );
    let ids = [504u32, 3575, 282, 4649, 314];
    let diff = tunelab_engine::layers::max_abs_diff(
        &model.transformer.logits(&ids).unwrap(),
        &reloaded.transformer.logits(&ids).unwrap(),
    )
    .unwrap();
    assert_eq!(
        diff, 0.0,
        "the saved weights give the trained model's logits"
    );
}
