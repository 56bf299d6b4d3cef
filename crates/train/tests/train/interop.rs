//! Round trips with Hugging Face PEFT through the fixtures tests/interop/make.sh wrote: adapters
//! PEFT trained load here and give PEFT's logits and greedy tokens; adapters trained here gave
//! the same in PEFT (the script checked that PEFT loaded every tensor unchanged).

use std::path::{Path, PathBuf};

use serde_json::Value;
use tunelab_engine::Transformer;
use tunelab_train::methods::{lora, soft_prompt};

/// The same bound as the parity tests against transformers: both sides compute in f32 from the
/// same dequantized weights, so only the order of sums differs (relative to the logit's size,
/// with a floor of 1 for logits near zero).
const LOGIT_TOLERANCE: f32 = 1e-3;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/fixtures")
}

fn expected() -> Value {
    let path = fixtures().join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("expected.json is JSON")
}

fn id_list(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn greedy(model: &Transformer, ids: &[u32]) -> Vec<u32> {
    let params = tunelab_engine::SamplingParams {
        temperature: 0.0,
        repetition_penalty: 1.0,
        max_tokens: 16,
        ..Default::default()
    };
    let tokenizer = &crate::f32_model().tokenizer;
    tunelab_engine::generate(model, tokenizer, ids, &[], &params, &mut |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap()
    .token_ids
}

/// `model`'s logits and greedy tokens against what PEFT gave with adapter `name`: the top-10 ids
/// at every position, their logits within the tolerance, each row's mean and spread.
fn matches_peft(model: &Transformer, name: &str) {
    let fx = &expected()["adapters"][name];
    assert!(fx.is_object(), "expected.json has no adapter `{name}`");
    let mut worst = 0f32;
    for case in fx["logits"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let ids = id_list(&case["ids"]);
        assert_eq!(
            crate::f32_model().tokenizer.encode(prompt, false).unwrap(),
            ids,
            "token ids of {prompt:?}"
        );
        let rows = model.logits(&ids).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(
            rows.len(),
            ids.len(),
            "one row per input token, none for virtual tokens"
        );
        for pos in case["positions"].as_array().unwrap() {
            let p = pos["position"].as_u64().unwrap() as usize;
            let row = &rows[p];
            let want = id_list(&pos["top10_ids"]);
            let mut order: Vec<u32> = (0..row.len() as u32).collect();
            order.sort_by(|a, b| row[*b as usize].total_cmp(&row[*a as usize]));
            assert_eq!(
                &order[..10],
                &want[..],
                "{name}: top-10 ids at {p} of {prompt:?}"
            );
            for (id, w) in want.iter().zip(pos["top10_logits"].as_array().unwrap()) {
                let w = w.as_f64().unwrap() as f32;
                let got = row[*id as usize];
                let err = (got - w).abs() / w.abs().max(1.0);
                worst = worst.max(err);
                assert!(
                    err <= LOGIT_TOLERANCE,
                    "{name}: logit of {id} at {p} of {prompt:?}: {got} here, {w} in PEFT"
                );
            }
            let n = row.len() as f64;
            let mean = row.iter().map(|v| *v as f64).sum::<f64>() / n;
            let std = (row.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
            for (what, got, want) in [("mean", mean, &pos["mean"]), ("spread", std, &pos["std"])] {
                let want = want.as_f64().unwrap();
                assert!(
                    (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                    "{name}: logit {what} at {p} of {prompt:?}: {got} here, {want} in PEFT"
                );
            }
        }
        assert_eq!(
            greedy(model, &ids),
            id_list(&case["greedy_16"]),
            "{name}: greedy tokens after {prompt:?}"
        );
    }
    eprintln!("{name}: worst relative logit difference from PEFT {worst:.2e}");
}

/// The logits with the adapter differ from the base's: the fixture holds a trained adapter,
/// so matching PEFT is not the base matching itself.
fn differs_from_base(tuned: &Transformer) {
    let ids = [504, 3575, 282, 4649, 314];
    let base = crate::f32_model().transformer.logits(&ids).unwrap();
    let diff = tunelab_engine::layers::max_abs_diff(&tuned.logits(&ids).unwrap(), &base).unwrap();
    assert!(
        diff > 0.05,
        "the adapter barely changes the logits ({diff})"
    );
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_lora_trained_by_peft_loads_with_its_layers_and_scale_and_gives_peft_logits() {
    let dir = fixtures().join("peft-lora");
    let mut model = crate::f32_model().transformer.clone();
    let (config, vars) = lora::load_peft(&dir, &mut model).unwrap();
    // rsLoRA: alpha / √r, not alpha / r.
    assert!(config.rslora);
    assert_eq!((config.rank, config.alpha), (4, 8.0));
    assert!((config.scale() - 4.0).abs() < 1e-12);
    // Key by key: every projection of the three layers PEFT trained, A (r × in), B (out × r).
    let hidden = model.config.hidden_size;
    let kv = model.config.num_key_value_heads * model.config.head_dim;
    let ff = model.config.intermediate_size;
    let mut want = Vec::new();
    for layer in [0, 15, 29] {
        for (module, inp, out) in [
            ("self_attn.q_proj", hidden, hidden),
            ("self_attn.k_proj", hidden, kv),
            ("self_attn.v_proj", hidden, kv),
            ("self_attn.o_proj", hidden, hidden),
            ("mlp.gate_proj", hidden, ff),
            ("mlp.up_proj", hidden, ff),
            ("mlp.down_proj", ff, hidden),
        ] {
            let path = format!("base_model.model.model.layers.{layer}.{module}");
            want.push((format!("{path}.lora_A.weight"), vec![4, inp]));
            want.push((format!("{path}.lora_B.weight"), vec![out, 4]));
        }
    }
    want.sort();
    let mut got: Vec<(String, Vec<usize>)> = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    got.sort();
    assert_eq!(got, want);
    let raw = read_json(&dir.join("adapter_config.json"));
    assert_eq!(raw["layers_to_transform"], serde_json::json!([0, 15, 29]));
    differs_from_base(&model);
    matches_peft(&model, "peft-lora");
}

#[test]
fn a_soft_prompt_trained_by_peft_prompt_tuning_gives_peft_logits() {
    let mut model = crate::f32_model().transformer.clone();
    let config =
        soft_prompt::load_peft(&fixtures().join("peft-prompt-tuning"), &mut model).unwrap();
    assert_eq!(config.num_virtual_tokens, 8);
    assert_eq!(model.virtual_tokens(), 8);
    differs_from_base(&model);
    matches_peft(&model, "peft-prompt-tuning");
}

#[test]
fn a_lora_trained_here_gives_in_peft_the_logits_it_gives_here() {
    let dir = fixtures().join("tunelab-lora/artifact");
    let mut model = crate::f32_model().transformer.clone();
    let (config, vars) = lora::load_peft(&dir, &mut model).unwrap();
    assert_eq!(config.target_modules().unwrap(), ["q_proj", "v_proj"]);
    let layers = model.config.num_hidden_layers;
    assert_eq!(
        vars.len(),
        layers * 2 * 2,
        "A and B of q and v in every layer"
    );
    let fx = &expected()["adapters"]["tunelab-lora"];
    assert_eq!(
        fx["peft_loaded_keys"].as_u64(),
        Some(vars.len() as u64),
        "PEFT loaded every tensor"
    );
    differs_from_base(&model);
    matches_peft(&model, "tunelab-lora");
}

#[test]
fn a_soft_prompt_trained_here_gives_in_peft_the_logits_it_gives_here() {
    let dir = fixtures().join("tunelab-soft-prompt/artifact");
    let mut model = crate::f32_model().transformer.clone();
    soft_prompt::load_peft(&dir, &mut model).unwrap();
    assert_eq!(
        expected()["adapters"]["tunelab-soft-prompt"]["peft_loaded_keys"].as_u64(),
        Some(1),
        "PEFT loaded the prompt embeddings"
    );
    differs_from_base(&model);
    matches_peft(&model, "tunelab-soft-prompt");
}

/// The PEFT LoRA fixture copied with its adapter_config.json changed by `edit`.
fn edited_peft_lora(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> tempfile::TempDir {
    let from = fixtures().join("peft-lora");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        from.join("adapter_model.safetensors"),
        dir.path().join("adapter_model.safetensors"),
    )
    .unwrap();
    let mut config = read_json(&from.join("adapter_config.json"));
    edit(config.as_object_mut().unwrap());
    std::fs::write(
        dir.path().join("adapter_config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    let mut model = crate::f32_model().transformer.clone();
    match lora::load_peft(dir, &mut model) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn peft_variants_that_compute_something_else_are_refused_by_name() {
    for (field, value) in [
        ("use_dora", serde_json::json!(true)),
        ("bias", serde_json::json!("all")),
        ("modules_to_save", serde_json::json!(["lm_head"])),
        ("layer_replication", serde_json::json!([[0, 4], [2, 6]])),
    ] {
        let dir = edited_peft_lora(|c| {
            c.insert(field.into(), value.clone());
        });
        let err = load_error(dir.path());
        assert!(
            err.contains("adapter_config.json") && err.contains(&format!("`{field}` is {value}")),
            "{field}: {err}"
        );
    }
    // A rank the tensors do not have names the tensors, their shapes and the rank.
    let dir = edited_peft_lora(|c| {
        c.insert("rank_pattern".into(), serde_json::json!({"q_proj": 8}));
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("self_attn.q_proj.lora_A.weight` is [4, 576]") && err.contains("rank 8"),
        "{err}"
    );
    let dir = edited_peft_lora(|c| {
        c.insert("alpha_pattern".into(), serde_json::json!({"^q.*": 16}));
    });
    assert!(load_error(dir.path()).contains("regular expression"));
}

#[test]
fn alpha_and_rank_patterns_give_each_module_its_own_scale() {
    let dir = edited_peft_lora(|c| {
        c.insert(
            "alpha_pattern".into(),
            serde_json::json!({"q_proj": 16, "layers.15.mlp.up_proj": 2}),
        );
        c.insert("rank_pattern".into(), serde_json::json!({"k_proj": 4}));
    });
    let mut model = crate::f32_model().transformer.clone();
    lora::load_peft(dir.path(), &mut model).unwrap();
    let scale = |layer: usize, module: &str| {
        let linears = model.layers[layer].linears();
        let (_, linear) = linears.iter().find(|(p, _)| p.ends_with(module)).unwrap();
        linear.adapter.as_ref().map(|a| a.scale)
    };
    // rsLoRA: alpha / √4.
    assert_eq!(scale(0, "q_proj"), Some(8.0));
    assert_eq!(scale(0, "k_proj"), Some(4.0));
    assert_eq!(scale(15, "up_proj"), Some(1.0));
    assert_eq!(scale(29, "up_proj"), Some(4.0));
    assert_eq!(
        scale(1, "q_proj"),
        None,
        "layers_to_transform left layer 1 alone"
    );
}
