//! Models made from initial weights (what pretraining starts from and the GPU benchmarks run),
//! and 16-bit weights: held in 16 bits, answering like f32.

use tunelab_engine::{Architecture, DType, Device, ModelConfig, Precision, Transformer};

fn config() -> ModelConfig {
    ModelConfig {
        architecture: Architecture::Llama,
        vocab_size: 300,
        hidden_size: 64,
        intermediate_size: 160,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 16,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        max_position_embeddings: 128,
        tie_word_embeddings: true,
        attention_bias: false,
        bos_token_id: None,
        eos_token_ids: vec![0],
    }
}

const IDS: [u32; 6] = [5, 17, 230, 9, 42, 299];

#[test]
fn initial_weights_depend_on_the_seed_alone() {
    let a = Transformer::initial(&config(), Precision::F32, &Device::Cpu, 3).unwrap();
    let b = Transformer::initial(&config(), Precision::F32, &Device::Cpu, 3).unwrap();
    let c = Transformer::initial(&config(), Precision::F32, &Device::Cpu, 4).unwrap();
    let (la, lb, lc) = (
        a.logits(&IDS).unwrap(),
        b.logits(&IDS).unwrap(),
        c.logits(&IDS).unwrap(),
    );
    assert_eq!(tunelab_engine::layers::max_abs_diff(&la, &lb).unwrap(), 0.0);
    assert!(tunelab_engine::layers::max_abs_diff(&la, &lc).unwrap() > 1e-4);
    // N(0, 0.02²) matrices, norms at one.
    let values = tunelab_engine::weights::normal_values(100_000, 0.02, 9);
    let mean = values.iter().map(|v| *v as f64).sum::<f64>() / values.len() as f64;
    let std = (values
        .iter()
        .map(|v| (*v as f64 - mean).powi(2))
        .sum::<f64>()
        / values.len() as f64)
        .sqrt();
    assert!(
        mean.abs() < 5e-4 && (std - 0.02).abs() < 5e-4,
        "mean {mean}, std {std}"
    );
}

#[test]
fn a_bf16_model_holds_half_the_bytes_and_answers_like_f32() {
    let full = Transformer::initial(&config(), Precision::F32, &Device::Cpu, 3).unwrap();
    let half = Transformer::initial(&config(), Precision::Bf16, &Device::Cpu, 3).unwrap();
    assert_eq!(half.dtype, DType::BF16);
    let matrices = |t: &Transformer| t.weight_bytes() - (t.layers.len() * 2 + 1) * 64 * 4;
    assert_eq!(
        matrices(&half) * 2,
        matrices(&full),
        "the matrices take 2 bytes a weight"
    );
    let (lf, lh) = (full.logits(&IDS).unwrap(), half.logits(&IDS).unwrap());
    assert_eq!(
        lh.dtype(),
        DType::F32,
        "logits come back in f32 for sampling"
    );
    let scale = tunelab_engine::layers::max_abs_diff(&lf, &lf.zeros_like().unwrap()).unwrap();
    let diff = tunelab_engine::layers::max_abs_diff(&lf, &lh).unwrap();
    assert!(
        diff < 0.03 * scale,
        "bf16 logits differ by {diff} (largest {scale})"
    );
}
