//! The training path of the transformer: differentiable kernels, LoRA adapter slots, frozen
//! base weights (f32 or GGUF blocks) that pass gradients on without keeping any.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Optimizer;
use tunelab_engine::layers::LoraAdapter;
use tunelab_engine::Transformer;

use crate::{native_model, reference_model};

fn ids_tensor(ids: &[u32]) -> Tensor {
    Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
}

/// Next-token cross-entropy of `ids` under `model` (training kernels).
fn loss(model: &Transformer, ids: &[u32]) -> Tensor {
    let logits = model
        .forward_train(&ids_tensor(&ids[..ids.len() - 1]))
        .unwrap()
        .squeeze(0)
        .unwrap();
    let targets = Tensor::new(&ids[1..], &Device::Cpu).unwrap();
    candle_nn::loss::cross_entropy(&logits, &targets).unwrap()
}

/// Fixed pseudo-random values in [-scale, scale): the tests must not depend on the luck
/// of an unseeded generator.
fn fixed_noise(shape: (usize, usize), seed: u64, scale: f32) -> Tensor {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Puts a rank-4 adapter (A fixed noise, B zero, so the output is unchanged at first) on the
/// query and value projections of every layer; returns the trainable variables.
fn add_lora(model: &mut Transformer) -> Vec<Var> {
    let mut vars = Vec::new();
    for (i, layer) in model.layers.iter_mut().enumerate() {
        for (j, proj) in [&mut layer.self_attn.q_proj, &mut layer.self_attn.v_proj]
            .into_iter()
            .enumerate()
        {
            let (out, inp) = proj.weight.dims2().unwrap();
            let a = Var::from_tensor(&fixed_noise((4, inp), (2 * i + j) as u64 + 1, 0.03)).unwrap();
            let b = Var::zeros((out, 4), DType::F32, &Device::Cpu).unwrap();
            vars.push(a.clone());
            vars.push(b.clone());
            proj.adapter = Some(LoraAdapter {
                a,
                b,
                scale: 2.0,
                dropout: 0.0,
            });
        }
    }
    vars
}

#[test]
fn training_kernels_give_the_inference_logits() {
    let model = &reference_model().transformer;
    let ids = reference_model()
        .tokenizer
        .encode("The capital of France is Paris.", false)
        .unwrap();
    let a = model.forward(&ids_tensor(&ids), None).unwrap();
    let b = model.forward_train(&ids_tensor(&ids)).unwrap();
    let diff = tunelab_engine::layers::max_abs_diff(&a, &b).unwrap();
    assert!(
        diff < 1e-3,
        "training and inference kernels agree (max difference {diff})"
    );
}

#[test]
fn gradients_reach_adapters_and_never_frozen_weights() {
    let mut model = reference_model().transformer.clone();
    let vars = add_lora(&mut model);
    let ids = reference_model()
        .tokenizer
        .encode("Tunelab trains adapters at home.", false)
        .unwrap();
    let grads = loss(&model, &ids).backward().unwrap();
    for (i, var) in vars.iter().enumerate() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("adapter variable {i} has a gradient"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        if i % 2 == 1 {
            assert!(
                norm > 0.0,
                "B of adapter {} gets a non-zero gradient",
                i / 2
            );
        }
    }
    let layer = &model.layers[0];
    if let tunelab_engine::layers::Weight::Dense(w) = &layer.self_attn.q_proj.weight {
        assert!(
            grads.get(w).is_none(),
            "the frozen base weight keeps no gradient"
        );
    }
    assert!(
        grads.get(&layer.input_layernorm.weight).is_none(),
        "norm weights are frozen too"
    );
}

#[test]
fn lora_on_a_quantized_base_learns_a_sentence() {
    // QLoRA's situation: the base stays in its GGUF blocks; a few AdamW steps on the
    // adapters alone must lower the loss on a sentence the model does not know.
    let mut model = native_model().transformer.clone();
    let vars = add_lora(&mut model);
    let ids = native_model()
        .tokenizer
        .encode(
            "Zorblat the purple toaster sings at dawn in Quibbleton.",
            false,
        )
        .unwrap();
    let first = loss(&model, &ids).to_scalar::<f32>().unwrap();
    let params = candle_nn::ParamsAdamW {
        lr: 5e-3,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut opt = candle_nn::AdamW::new(vars, params).unwrap();
    let mut last = first;
    for _ in 0..10 {
        let l = loss(&model, &ids);
        last = l.to_scalar::<f32>().unwrap();
        opt.backward_step(&l).unwrap();
    }
    let after = loss(&model, &ids).to_scalar::<f32>().unwrap();
    assert!(
        after < first * 0.8,
        "loss falls from {first:.3} (last step {last:.3}) to {after:.3}"
    );
}

#[test]
fn checkpointed_blocks_give_the_same_loss_and_gradients() {
    let mut model = native_model().transformer.clone();
    let vars = add_lora(&mut model);
    for (i, v) in vars.iter().skip(1).step_by(2).enumerate() {
        v.set(&fixed_noise(v.dims2().unwrap(), 100 + i as u64, 0.02))
            .unwrap();
    }
    let ids = native_model()
        .tokenizer
        .encode("Checkpointing trades compute for memory.", false)
        .unwrap();
    let targets = Tensor::new(&ids[1..], &Device::Cpu).unwrap();
    let input = ids_tensor(&ids[..ids.len() - 1]);

    let plain = loss(&model, &ids);
    let plain_grads = plain.backward().unwrap();

    let side = std::sync::Arc::new(tunelab_engine::checkpoint::SideGrads::default());
    let logits = model
        .forward_train_checkpointed(&input, &side)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let checked = candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
    let _ = checked.backward().unwrap();
    let (a, b) = (
        plain.to_scalar::<f32>().unwrap(),
        checked.to_scalar::<f32>().unwrap(),
    );
    assert!((a - b).abs() < 1e-4, "same loss: {a} vs {b}");
    for (i, var) in vars.iter().enumerate() {
        let want = plain_grads.get(var.as_tensor()).expect("plain gradient");
        let got = side
            .take(var.as_tensor())
            .unwrap_or_else(|| panic!("variable {i} got its gradient through the side store"));
        let diff = tunelab_engine::layers::max_abs_diff(want, &got).unwrap();
        let scale = want
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .max(1e-6);
        assert!(
            diff <= 1e-3 * scale,
            "variable {i}: gradients differ by {diff} (scale {scale})"
        );
    }
}

#[test]
fn an_nf4_base_keeps_the_answers_and_trains_adapters() {
    // QLoRA over a 16/32-bit base: the blocks' matrices in NF4, decoded a layer at a time.
    let mut model = reference_model().transformer.clone();
    let f32_bytes = model.weight_bytes();
    assert_eq!(model.quantize_nf4().unwrap(), 30 * 7);
    assert!(
        model.weight_bytes() < f32_bytes / 2,
        "NF4 blocks hold {} bytes against {f32_bytes}",
        model.weight_bytes()
    );
    let tokenizer = &reference_model().tokenizer;
    let ids = tokenizer
        .encode(
            "The capital of France is Paris, and the capital of Italy is Rome.",
            false,
        )
        .unwrap();
    // The next-token loss on ordinary text stays close to the full-precision model's.
    let full = loss(&reference_model().transformer, &ids)
        .to_scalar::<f32>()
        .unwrap();
    let quantized = loss(&model, &ids).to_scalar::<f32>().unwrap();
    assert!(
        quantized < full * 1.15,
        "NF4 loss {quantized:.3} against {full:.3} in f32"
    );

    let vars = add_lora(&mut model);
    let sentence = tokenizer
        .encode(
            "Zorblat the purple toaster sings at dawn in Quibbleton.",
            false,
        )
        .unwrap();
    let first = loss(&model, &sentence).to_scalar::<f32>().unwrap();
    let params = candle_nn::ParamsAdamW {
        lr: 5e-3,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut opt = candle_nn::AdamW::new(vars, params).unwrap();
    for _ in 0..10 {
        opt.backward_step(&loss(&model, &sentence)).unwrap();
    }
    let after = loss(&model, &sentence).to_scalar::<f32>().unwrap();
    assert!(
        after < first * 0.8,
        "loss falls from {first:.3} to {after:.3}"
    );
}

#[test]
fn a_frozen_dense_layer_gives_candles_product_and_input_gradient() {
    // (out 6, in 5) weight on (2, 3, 5) activations.
    let w = fixed_noise((6, 5), 11, 0.5);
    let x = Var::from_tensor(&fixed_noise((6, 5), 12, 1.0).reshape((2, 3, 5)).unwrap()).unwrap();
    let up = fixed_noise((6, 6), 13, 1.0).reshape((2, 3, 6)).unwrap();
    let ours = tunelab_engine::portable::frozen_dense_matmul(&w, x.as_tensor()).unwrap();
    let theirs = x
        .as_tensor()
        .reshape((6, 5))
        .unwrap()
        .matmul(&w.t().unwrap())
        .unwrap()
        .reshape((2, 3, 6))
        .unwrap();
    let max_diff = |a: &Tensor, b: &Tensor| -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    assert_eq!(ours.dims(), &[2, 3, 6]);
    assert!(max_diff(&ours, &theirs) < 1e-6);
    let grad_of = |y: &Tensor| {
        let grads = (y * &up).unwrap().sum_all().unwrap().backward().unwrap();
        grads.get(x.as_tensor()).unwrap().clone()
    };
    let (g_ours, g_theirs) = (grad_of(&ours), grad_of(&theirs));
    assert!(
        max_diff(&g_ours, &g_theirs) < 1e-5,
        "{g_ours} vs {g_theirs}"
    );
    // The gradient by hand: d/dx of sum(up · xWᵀ) is up·W.
    assert!(
        max_diff(
            &g_ours,
            &up.reshape((6, 6))
                .unwrap()
                .matmul(&w)
                .unwrap()
                .reshape((2, 3, 5))
                .unwrap()
        ) < 1e-5
    );
}
