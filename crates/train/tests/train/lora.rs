//! LoRA adapters: PEFT key names and config fields, save/load round trip, merging.

use candle_core::{Device, Tensor};
use tunelab_engine::{LoadedModel, Precision};
use tunelab_train::methods::lora::{self, LoraConfig};

fn model(precision: Precision) -> &'static LoadedModel {
    match precision {
        Precision::F32 => crate::f32_model(),
        // On the default GGUF, NF4 keeps the file's own 4-bit blocks: the native model.
        Precision::Native | Precision::Nf4 => crate::native_model(),
        other => panic!("these tests load the default model in f32 or natively, not {other:?}"),
    }
}

fn logits(t: &tunelab_engine::Transformer) -> Tensor {
    t.logits(&[504, 3575, 282, 4649, 314]).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    tunelab_engine::layers::max_abs_diff(a, b).unwrap()
}

/// Gives every B a small random value, standing in for trained adapters.
fn pretend_trained(vars: &[(String, candle_core::Var)]) {
    for (name, var) in vars {
        if name.ends_with("lora_B.weight") {
            var.set(
                &(Tensor::randn(0f32, 1.0, var.shape(), &Device::Cpu).unwrap() * 0.01).unwrap(),
            )
            .unwrap();
        }
    }
}

#[test]
fn adapters_use_peft_key_names_shapes_and_config_fields() {
    let mut t = model(Precision::F32).transformer.clone();
    let config = LoraConfig {
        rank: 8,
        alpha: 16.0,
        targets: vec!["q".into(), "v_proj".into()],
        ..Default::default()
    };
    let vars = lora::attach(&mut t, &config, 1).unwrap();
    assert_eq!(
        vars.len(),
        30 * 2 * 2,
        "A and B for q_proj and v_proj in 30 layers"
    );
    let get = |k: &str| {
        vars.iter()
            .find(|(n, _)| n == k)
            .unwrap_or_else(|| panic!("no key {k}"))
            .1
            .clone()
    };
    assert_eq!(
        get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").dims(),
        &[8, 576]
    );
    assert_eq!(
        get("base_model.model.model.layers.29.self_attn.v_proj.lora_B.weight").dims(),
        &[192, 8]
    );
    assert!(
        max_diff(&logits(&t), &logits(&model(Precision::F32).transformer)) < 1e-5,
        "fresh adapters (B = 0) change nothing"
    );

    let json = lora::peft_config(&config, "HuggingFaceTB/SmolLM2-135M-Instruct").unwrap();
    assert_eq!(json["peft_type"], "LORA");
    assert_eq!(json["task_type"], "CAUSAL_LM");
    assert_eq!(json["r"], 8);
    assert_eq!(json["lora_alpha"], 16.0);
    assert_eq!(
        json["target_modules"],
        serde_json::json!(["q_proj", "v_proj"])
    );
    assert!(lora::attach(
        &mut t,
        &LoraConfig {
            targets: vec!["attention".into()],
            ..Default::default()
        },
        1
    )
    .is_err());
}

#[test]
fn saved_adapters_load_back_to_the_same_logits_and_merge_into_the_weights() {
    let base = &model(Precision::F32).transformer;
    let mut tuned = base.clone();
    let config = LoraConfig::default();
    let vars = lora::attach(&mut tuned, &config, 7).unwrap();
    pretend_trained(&vars);
    let want = logits(&tuned);
    assert!(
        max_diff(&want, &logits(base)) > 1e-3,
        "the adapters change the output"
    );

    let dir = tempfile::tempdir().unwrap();
    lora::save_peft(dir.path(), &vars, &config, "smollm2-135m-instruct").unwrap();
    let mut reloaded = base.clone();
    let (read_config, read_vars) = lora::load_peft(dir.path(), &mut reloaded).unwrap();
    assert_eq!(read_config.rank, 16);
    assert_eq!(read_vars.len(), vars.len());
    assert!(
        max_diff(&logits(&reloaded), &want) < 1e-5,
        "reloaded adapters give identical logits"
    );

    let mut merged = reloaded.clone();
    lora::merge(&mut merged).unwrap();
    assert!(
        merged
            .layers
            .iter()
            .all(|l| l.self_attn.q_proj.adapter.is_none()),
        "no adapter remains"
    );
    let diff = max_diff(&logits(&merged), &want);
    assert!(
        diff < 1e-3,
        "merged weights give the adapter's logits (max difference {diff})"
    );
}

#[test]
fn qlora_starts_close_to_lora() {
    // Same adapters on the 4-bit base (QLoRA) and on its f32 dequantization (LoRA).
    let mut q = model(Precision::Native).transformer.clone();
    let mut f = model(Precision::F32).transformer.clone();
    let config = LoraConfig::default();
    let qv = lora::attach(&mut q, &config, 3).unwrap();
    let fv = lora::attach(&mut f, &config, 3).unwrap();
    for ((_, a), (_, b)) in qv.iter().zip(&fv) {
        let v = (Tensor::randn(0f32, 1.0, a.shape(), &Device::Cpu).unwrap() * 0.01).unwrap();
        a.set(&v).unwrap();
        b.set(&v).unwrap();
    }
    let (lq, lf) = (logits(&q), logits(&f));
    let rel = max_diff(&lq, &lf)
        / lf.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
    assert!(
        rel < 1e-2,
        "QLoRA's step-0 logits are within 1% of LoRA's (got {rel:.2e})"
    );
}
