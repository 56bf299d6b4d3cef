//! The same weights written as a Hugging Face folder and as a llama.cpp-style GGUF (query and
//! key rows interleaved, llama.cpp tensor names) load into the same model.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use tunelab_engine::{Device, Precision, Tensor};

use crate::{reference_model, smollm_gguf};

const VOCAB: usize = 49152;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const LAYERS: usize = 2;

/// Model widths: small for the exact round trip, 256 wide so K-quant blocks (256 values) fit.
#[derive(Clone, Copy)]
struct Dims {
    hidden: usize,
    inter: usize,
}

const TINY: Dims = Dims {
    hidden: 16,
    inter: 32,
};
const WIDE: Dims = Dims {
    hidden: 256,
    inter: 512,
};

impl Dims {
    fn head_dim(self) -> usize {
        self.hidden / HEADS
    }
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    // A small deterministic generator keeps the test independent of any RNG crate's stream.
    let n: usize = shape.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.4
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

fn hf_weights(d: Dims, bias: bool) -> Vec<(String, Tensor)> {
    let (hidden, inter, head_dim) = (d.hidden, d.inter, d.head_dim());
    let mut w = vec![
        (
            "model.embed_tokens.weight".to_string(),
            random(&[VOCAB, hidden], 1),
        ),
        (
            "model.norm.weight".into(),
            (random(&[hidden], 2) + 1.0).unwrap(),
        ),
    ];
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        let s = 100 * (i as u64 + 1);
        w.push((
            format!("{p}.input_layernorm.weight"),
            (random(&[hidden], s) + 1.0).unwrap(),
        ));
        w.push((
            format!("{p}.post_attention_layernorm.weight"),
            (random(&[hidden], s + 1) + 1.0).unwrap(),
        ));
        w.push((
            format!("{p}.self_attn.q_proj.weight"),
            random(&[HEADS * head_dim, hidden], s + 2),
        ));
        w.push((
            format!("{p}.self_attn.k_proj.weight"),
            random(&[KV_HEADS * head_dim, hidden], s + 3),
        ));
        w.push((
            format!("{p}.self_attn.v_proj.weight"),
            random(&[KV_HEADS * head_dim, hidden], s + 4),
        ));
        w.push((
            format!("{p}.self_attn.o_proj.weight"),
            random(&[hidden, HEADS * head_dim], s + 5),
        ));
        w.push((
            format!("{p}.mlp.gate_proj.weight"),
            random(&[inter, hidden], s + 6),
        ));
        w.push((
            format!("{p}.mlp.up_proj.weight"),
            random(&[inter, hidden], s + 7),
        ));
        w.push((
            format!("{p}.mlp.down_proj.weight"),
            random(&[hidden, inter], s + 8),
        ));
        if bias {
            w.push((
                format!("{p}.self_attn.q_proj.bias"),
                random(&[HEADS * head_dim], s + 9),
            ));
            w.push((
                format!("{p}.self_attn.k_proj.bias"),
                random(&[KV_HEADS * head_dim], s + 10),
            ));
            w.push((
                format!("{p}.self_attn.v_proj.bias"),
                random(&[KV_HEADS * head_dim], s + 11),
            ));
        }
    }
    w
}

pub(crate) fn write_hf(dir: &Path, arch: &str, bias: bool) {
    write_hf_dims(dir, arch, bias, TINY);
}

fn write_hf_dims(dir: &Path, arch: &str, bias: bool, d: Dims) {
    let config = serde_json::json!({
        "architectures": [arch], "vocab_size": VOCAB, "hidden_size": d.hidden, "intermediate_size": d.inter,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 128, "tie_word_embeddings": true,
        "eos_token_id": 2
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let tensors: HashMap<String, Tensor> = hf_weights(d, bias).into_iter().collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    reference_model()
        .tokenizer
        .save(&dir.join("tokenizer.json"))
        .unwrap();
}

/// Turns the folder's model into one with its own output projection (`lm_head.weight`).
pub(crate) fn untie(dir: &Path) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["tie_word_embeddings"] = serde_json::json!(false);
    std::fs::write(&path, config.to_string()).unwrap();
    let mut tensors: HashMap<String, Tensor> = hf_weights(TINY, false).into_iter().collect();
    tensors.insert("lm_head.weight".into(), random(&[VOCAB, TINY.hidden], 77));
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
}

/// llama.cpp's converter: rows of each head reordered from "two halves" to "interleaved pairs".
fn permute(w: &Tensor, heads: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    w.reshape((heads, 2, rows / heads / 2, cols))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((rows, cols))
        .unwrap()
}

/// Writes the model as llama.cpp would, matrices stored as `matrix_type` (norms stay f32).
fn write_gguf(path: &Path, d: Dims, matrix_type: GgmlDType) {
    let source = tunelab_engine::gguf::GgufFile::open(&smollm_gguf()).unwrap();
    let mut metadata: Vec<(String, Value)> = source
        .metadata()
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in [
        ("general.architecture", Value::String("llama".into())),
        ("llama.embedding_length", Value::U32(d.hidden as u32)),
        ("llama.feed_forward_length", Value::U32(d.inter as u32)),
        ("llama.block_count", Value::U32(LAYERS as u32)),
        ("llama.attention.head_count", Value::U32(HEADS as u32)),
        ("llama.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.context_length", Value::U32(128)),
    ] {
        metadata.push((k.to_string(), v));
    }
    let rename = |hf: &str| -> String {
        let hf = hf.replace("model.layers.", "blk.");
        hf.replace("model.embed_tokens", "token_embd")
            .replace("model.norm", "output_norm")
            .replace(".input_layernorm", ".attn_norm")
            .replace(".post_attention_layernorm", ".ffn_norm")
            .replace(".self_attn.q_proj", ".attn_q")
            .replace(".self_attn.k_proj", ".attn_k")
            .replace(".self_attn.v_proj", ".attn_v")
            .replace(".self_attn.o_proj", ".attn_output")
            .replace(".mlp.gate_proj", ".ffn_gate")
            .replace(".mlp.up_proj", ".ffn_up")
            .replace(".mlp.down_proj", ".ffn_down")
    };
    let tensors: Vec<(String, QTensor)> = hf_weights(d, false)
        .into_iter()
        .map(|(name, t)| {
            let t = if name.ends_with("q_proj.weight") {
                permute(&t, HEADS)
            } else if name.ends_with("k_proj.weight") {
                permute(&t, KV_HEADS)
            } else {
                t
            };
            let dtype = if t.rank() == 2 {
                matrix_type
            } else {
                GgmlDType::F32
            };
            (rename(&name), QTensor::quantize(&t, dtype).unwrap())
        })
        .collect();
    let meta_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &meta_refs, &tensor_refs).unwrap();
}

#[test]
fn hf_folder_and_llama_cpp_gguf_of_the_same_weights_give_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    write_hf(dir.path(), "LlamaForCausalLM", false);
    let gguf_path = dir.path().join("tiny.gguf");
    write_gguf(&gguf_path, TINY, GgmlDType::F32);
    let hf = tunelab_engine::load(dir.path(), Precision::F32, &Device::Cpu).unwrap();
    let gguf = tunelab_engine::load(&gguf_path, Precision::Native, &Device::Cpu).unwrap();
    assert_eq!(
        hf.summary.config.num_key_value_heads,
        gguf.summary.config.num_key_value_heads
    );
    let ids = hf
        .tokenizer
        .encode("Round trips keep every weight in its place.", false)
        .unwrap();
    assert_eq!(
        ids,
        gguf.tokenizer
            .encode("Round trips keep every weight in its place.", false)
            .unwrap()
    );
    let a = hf.transformer.logits(&ids).unwrap();
    let b = gguf.transformer.logits(&ids).unwrap();
    let diff = tunelab_engine::layers::max_abs_diff(&a, &b).unwrap();
    assert!(diff < 1e-4, "HF and GGUF logits differ by {diff}: the query/key un-permutation or the name mapping is wrong");
}

#[test]
fn qwen2_style_biases_are_loaded_and_used() {
    let dir = tempfile::tempdir().unwrap();
    write_hf(dir.path(), "Qwen2ForCausalLM", true);
    let model = tunelab_engine::load(dir.path(), Precision::F32, &Device::Cpu).unwrap();
    assert!(
        model.summary.config.attention_bias,
        "Qwen2 has q/k/v biases"
    );
    let ids = [10u32, 20, 30];
    let with_bias = model.transformer.logits(&ids).unwrap();
    let mut unbiased = model.transformer.clone();
    for layer in unbiased.layers.iter_mut() {
        layer.self_attn.q_proj.bias = None;
        layer.self_attn.k_proj.bias = None;
        layer.self_attn.v_proj.bias = None;
    }
    let without = unbiased.logits(&ids).unwrap();
    let diff = tunelab_engine::layers::max_abs_diff(&with_bias, &without).unwrap();
    assert!(
        diff > 1e-3,
        "the biases change the output (difference {diff})"
    );
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn every_supported_block_type_loads_and_computes_like_its_dequantized_weights() {
    // Native precision keeps the blocks (Tunelab's kernels for Q4_0/Q4_1/Q8_0, candle's for the
    // K-quants); F32 precision dequantizes the same file. The two must agree: exactly up to
    // 16-bit activation rounding for our kernels, within 8-bit activation rounding for candle's.
    let dir = tempfile::tempdir().unwrap();
    let ids = [15u32, 2000, 7, 31000, 42, 999];
    for (dtype, tolerance) in [
        (GgmlDType::F16, 1e-3),
        (GgmlDType::Q8_0, 2e-3),
        (GgmlDType::Q4_0, 2e-3),
        (GgmlDType::Q4_1, 2e-3),
        (GgmlDType::Q4K, 5e-2),
        (GgmlDType::Q5K, 5e-2),
        (GgmlDType::Q6K, 5e-2),
    ] {
        let path = dir.path().join(format!("wide-{dtype:?}.gguf"));
        write_gguf(&path, WIDE, dtype);
        let native = tunelab_engine::load(&path, Precision::Native, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{dtype:?}: {e}"));
        let reference = tunelab_engine::load(&path, Precision::F32, &Device::Cpu).unwrap();
        let a = native.transformer.logits(&ids).unwrap();
        let b = reference.transformer.logits(&ids).unwrap();
        let err = max_abs(&(&a - &b).unwrap()) / max_abs(&b).max(1e-6);
        eprintln!("{dtype:?}: relative logit difference {err:.2e}");
        assert!(
            err < tolerance,
            "{dtype:?}: native and dequantized logits differ by {err:.2e} relative"
        );
    }
}

#[test]
fn untied_models_use_their_own_output_projection() {
    let dir = tempfile::tempdir().unwrap();
    write_hf(dir.path(), "LlamaForCausalLM", false);
    let tied = tunelab_engine::load(dir.path(), Precision::F32, &Device::Cpu).unwrap();
    untie(dir.path());
    let untied = tunelab_engine::load(dir.path(), Precision::F32, &Device::Cpu).unwrap();
    assert!(!untied.summary.config.tie_word_embeddings);
    let ids = [3u32, 500, 9000];
    let diff = max_abs(
        &(tied.transformer.logits(&ids).unwrap() - untied.transformer.logits(&ids).unwrap())
            .unwrap(),
    );
    assert!(
        diff > 1e-3,
        "lm_head.weight, not the embeddings, produces the logits (difference {diff})"
    );

    // Declared untied but shipped without the projection: refused, naming the tensor.
    let mut tensors: HashMap<String, Tensor> = hf_weights(TINY, false).into_iter().collect();
    tensors.remove("lm_head.weight");
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let err = tunelab_engine::load(dir.path(), Precision::F32, &Device::Cpu)
        .err()
        .expect("missing lm_head is an error")
        .to_string();
    assert!(
        err.contains("lm_head.weight") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn a_16_or_32_bit_folder_loads_for_qlora_with_nf4_blocks() {
    let dir = tempfile::tempdir().unwrap();
    write_hf_dims(dir.path(), "LlamaForCausalLM", false, WIDE);
    let full = tunelab_engine::load(dir.path(), Precision::F32, &Device::Cpu).unwrap();
    let nf4 = tunelab_engine::load(dir.path(), Precision::Nf4, &Device::Cpu).unwrap();
    for layer in &nf4.transformer.layers {
        for (name, linear) in layer.linears() {
            assert!(
                matches!(linear.weight, tunelab_engine::layers::Weight::Nf4(_)),
                "{name} is held in NF4"
            );
        }
    }
    assert!(
        matches!(
            nf4.transformer.embed_tokens.weight,
            tunelab_engine::layers::Weight::Dense(_)
        ),
        "embeddings stay dense"
    );
    // Quantizing while loading equals loading in f32 and quantizing in memory.
    let mut converted = full.transformer.clone();
    assert_eq!(converted.quantize_nf4().unwrap(), LAYERS * 7);
    let ids = full
        .tokenizer
        .encode("Four bits per weight.", false)
        .unwrap();
    let a = converted.logits(&ids).unwrap();
    let b = nf4.transformer.logits(&ids).unwrap();
    let diff = tunelab_engine::layers::max_abs_diff(&a, &b).unwrap();
    assert!(diff < 1e-5, "the two NF4 paths differ by {diff}");
    assert!(nf4.transformer.weight_bytes() < full.transformer.weight_bytes());
}

/// Rewrites the folder's weights in `dtype`, as a 16-bit checkpoint from the hub ships them.
fn store_as(dir: &Path, dtype: candle_core::DType) {
    let tensors: HashMap<String, Tensor> = hf_weights(WIDE, false)
        .into_iter()
        .map(|(name, t)| (name, t.to_dtype(dtype).unwrap()))
        .collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
}

#[test]
fn a_16_bit_folder_answers_in_its_16_bits_on_the_cpu() {
    use candle_core::DType;
    use tunelab_engine::layers::Weight;
    for dtype in [DType::BF16, DType::F16] {
        let dir = tempfile::tempdir().unwrap();
        write_hf_dims(dir.path(), "LlamaForCausalLM", false, WIDE);
        store_as(dir.path(), dtype);
        let native = tunelab_engine::load(dir.path(), Precision::Native, &Device::Cpu).unwrap();
        let wide = tunelab_engine::load(dir.path(), Precision::F32, &Device::Cpu).unwrap();
        let held = |w: &Weight| matches!(w, Weight::Dense(t) if t.dtype() == dtype);
        for layer in &native.transformer.layers {
            for (name, linear) in layer.linears() {
                assert!(held(&linear.weight), "{dtype:?}: {name} stays 16-bit");
            }
        }
        assert!(held(&native.transformer.embed_tokens.weight));
        // Two bytes a weight, plus the f32 norms.
        let (half, full) = (
            native.transformer.weight_bytes() as f64,
            wide.transformer.weight_bytes() as f64,
        );
        assert!(
            (0.5..0.505).contains(&(half / full)),
            "{dtype:?}: {half} bytes in 16 bits against {full} in f32"
        );
        // The widened model computes from the same values: only summation order differs, for
        // one token and a short prompt (row by row) and for a long prompt (in bands).
        let ids = native
            .tokenizer
            .encode(
                &"Sixteen bits a weight, read as they are stored. ".repeat(8),
                false,
            )
            .unwrap();
        assert!(
            ids.len() > 64,
            "a prompt long enough for the banded product"
        );
        for ids in [&ids[..1], &ids[..20], &ids[..]] {
            let a = native.transformer.logits(ids).unwrap();
            let b = wide.transformer.logits(ids).unwrap();
            let err = max_abs(&(&a - &b).unwrap()) / max_abs(&b);
            assert!(
                err < 1e-4,
                "{dtype:?}, {} tokens: 16-bit and widened logits differ by {err:.1e} relative",
                ids.len()
            );
        }
        // And decoding with the KV cache picks the same tokens.
        let params = tunelab_engine::generate::SamplingParams {
            temperature: 0.0,
            max_tokens: 6,
            ..Default::default()
        };
        let run = |m: &tunelab_engine::LoadedModel| {
            tunelab_engine::generate::generate(
                &m.transformer,
                &m.tokenizer,
                &ids,
                &[],
                &params,
                &mut |_| std::ops::ControlFlow::Continue(()),
            )
            .unwrap()
            .token_ids
        };
        assert_eq!(run(&native), run(&wide), "{dtype:?}: greedy continuations");
    }
}
