//! The path a GPU trains through, run on the CPU and held to the CPU's fused kernels: the loss
//! and every trainable gradient of each method agree, with activation checkpointing on and off.
//! The same code runs on CUDA (`scripts/gpu-check.sh` compares it there against the CPU).

use tunelab_engine::{Device, Tensor, Transformer, Var};
use tunelab_train::methods::{full, lora, soft_prompt};
use tunelab_train::trainer::loss_and_grads;

use crate::{f32_model, native_model};

/// Tolerances, relative to the largest gradient element of each parameter: the two paths sum
/// in different orders (f32), nothing more.
const LOSS_TOLERANCE: f64 = 1e-5;
const GRADIENT_TOLERANCE: f64 = 2e-3;

fn batch() -> (Tensor, Vec<Vec<i64>>) {
    let model = f32_model();
    let rows = [
        "The portable path computes what the fused kernels compute.",
        "Gradients agree, whatever the device they came from!",
    ];
    let encoded: Vec<Vec<u32>> = rows
        .iter()
        .map(|r| model.tokenizer.encode(r, false).unwrap())
        .collect();
    let len = encoded.iter().map(Vec::len).min().unwrap();
    let ids: Vec<u32> = encoded.iter().flat_map(|e| e[..len].to_vec()).collect();
    // The first tokens of each row are not trained on: masking stays part of the comparison.
    let labels = encoded
        .iter()
        .map(|e| {
            e[..len]
                .iter()
                .enumerate()
                .map(|(i, &t)| if i < 3 { -100 } else { t as i64 })
                .collect()
        })
        .collect();
    (
        Tensor::from_vec(ids, (rows.len(), len), &Device::Cpu).unwrap(),
        labels,
    )
}

/// Gives every parameter a small random value, so that no gradient is trivially zero (LoRA's B
/// starts at zero, which leaves A without a gradient).
fn perturb(params: &[(String, Var)]) {
    for (name, var) in params {
        if name.contains("lora_B") {
            let noise =
                (Tensor::randn(0f32, 1.0, var.shape(), &Device::Cpu).unwrap() * 0.02).unwrap();
            var.set(&noise).unwrap();
        }
    }
}

fn compare(method: &str, mut model: Transformer, params: &[(String, Var)]) {
    let (ids, labels) = batch();
    for checkpointing in [false, true] {
        model.portable = false;
        let (fused_loss, fused) =
            loss_and_grads(&model, params, &ids, &labels, checkpointing, 1.0).unwrap();
        model.portable = true;
        let (portable_loss, portable) =
            loss_and_grads(&model, params, &ids, &labels, checkpointing, 1.0).unwrap();
        let label = format!("{method}, checkpointing {checkpointing}");
        assert!(
            (fused_loss - portable_loss).abs() <= LOSS_TOLERANCE * fused_loss.abs().max(1.0),
            "{label}: loss {fused_loss} fused against {portable_loss} portable"
        );
        let mut compared = 0;
        for (((name, _), f), p) in params.iter().zip(&fused).zip(&portable) {
            let (f, p) = match (f, p) {
                (Some(f), Some(p)) => (f, p),
                (None, None) => continue,
                _ => panic!("{label}: {name} has a gradient on one path only"),
            };
            let scale = tunelab_engine::layers::max_abs_diff(f, &f.zeros_like().unwrap())
                .unwrap()
                .max(1e-12) as f64;
            let diff = tunelab_engine::layers::max_abs_diff(f, p).unwrap() as f64;
            assert!(
                diff <= GRADIENT_TOLERANCE * scale,
                "{label}: {name} differs by {diff} (largest element {scale})"
            );
            compared += 1;
        }
        assert!(
            compared == params.len(),
            "{label}: {compared} of {} parameters got gradients",
            params.len()
        );
    }
}

#[test]
fn lora_trains_the_same_through_the_portable_kernels() {
    let mut model = f32_model().transformer.clone();
    let config = lora::LoraConfig {
        rank: 4,
        targets: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
        // The two paths draw dropout masks differently; the kernels are what is compared.
        dropout: 0.0,
        ..Default::default()
    };
    let params = lora::attach(&mut model, &config, 7).unwrap();
    perturb(&params);
    compare("LoRA", model, &params);
}

#[test]
fn qlora_on_quantized_blocks_trains_the_same_through_the_portable_kernels() {
    let mut model = native_model().transformer.clone();
    assert!(
        model.layers[0].self_attn.q_proj.weight.is_quantized(),
        "QLoRA's base stays in GGUF blocks"
    );
    let config = lora::LoraConfig {
        rank: 4,
        targets: vec!["k_proj".into(), "up_proj".into()],
        dropout: 0.0,
        ..Default::default()
    };
    let params = lora::attach(&mut model, &config, 8).unwrap();
    perturb(&params);
    compare("QLoRA", model, &params);
}

#[test]
fn a_soft_prompt_trains_the_same_through_the_portable_kernels() {
    let loaded = f32_model();
    let mut model = loaded.transformer.clone();
    let params = soft_prompt::attach(
        &mut model,
        &loaded.tokenizer,
        &soft_prompt::SoftPromptConfig {
            num_virtual_tokens: 4,
            ..Default::default()
        },
        9,
    )
    .unwrap();
    compare("soft prompt", model, &params);
}

#[test]
fn full_fine_tuning_trains_the_same_through_the_portable_kernels() {
    let mut model = f32_model().transformer.clone();
    // Four blocks keep the test quick; the path is the same for every block.
    model.layers.truncate(4);
    model.config.num_hidden_layers = 4;
    let params = full::attach(&mut model).unwrap();
    compare("full fine-tuning", model, &params);
}
