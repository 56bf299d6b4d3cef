//! LoRA: low-rank adapters on the frozen model's linear layers, saved and loaded in the PEFT
//! format (adapter_config.json + adapter_model.safetensors with PEFT key names) and mergeable
//! into the base weights.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};
use tunelab_engine::layers::{Linear, LoraAdapter, Weight};
use tunelab_engine::Transformer;

use crate::plan::{lora_parameters, nf4_bytes, BaseWeights};
use crate::recipe::{
    limits, require, ArtifactKind, Method, PlanTerms, RunConfig, StoredBase, TrainingMethod,
};
use crate::trainer::TrainError;

/// The linear layers of a Llama block, by their Hugging Face (and PEFT) names.
pub const ALL_LINEAR: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f32,
    /// Module names from `ALL_LINEAR`, or `["all-linear"]`.
    pub targets: Vec<String>,
    /// Scale by alpha/√rank instead of alpha/rank (rank-stabilised LoRA).
    pub rslora: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 16,
            alpha: 32.0,
            dropout: 0.05,
            targets: vec!["all-linear".into()],
            rslora: false,
        }
    }
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// The target module names, with "all-linear" expanded; unknown names are an error.
    pub fn target_modules(&self) -> Result<Vec<&'static str>, TrainError> {
        let mut out = Vec::new();
        for t in &self.targets {
            if t == "all-linear" {
                return Ok(ALL_LINEAR.to_vec());
            }
            match ALL_LINEAR
                .iter()
                .find(|m| **m == t.as_str() || m.trim_end_matches("_proj") == t.as_str())
            {
                Some(m) => out.push(*m),
                None => {
                    return Err(TrainError::Config(format!(
                        "unknown LoRA target `{t}`; choose from {} or all-linear",
                        ALL_LINEAR.join(", ")
                    )))
                }
            }
        }
        if out.is_empty() {
            return Err(TrainError::Config(
                "LoRA needs at least one target module".into(),
            ));
        }
        Ok(out)
    }
}

/// LoRA's recipe; `quantized` is QLoRA, the same adapters over a base kept in 4 bits.
pub struct Lora {
    pub quantized: bool,
}

impl TrainingMethod for Lora {
    /// Adapters take large steps.
    fn default_lr(&self) -> f64 {
        2e-4
    }

    fn precision(&self, device: &tunelab_engine::Device) -> tunelab_engine::Precision {
        match self.quantized {
            true => tunelab_engine::Precision::Nf4,
            false => tunelab_engine::Precision::half_for(device),
        }
    }

    fn check(&self, config: &RunConfig) -> Result<(), TrainError> {
        let l = &config.lora;
        let (lo, hi) = limits::RANK;
        require((lo..=hi).contains(&l.rank), || {
            format!(
                "LoRA rank (`lora.rank`) {} is out of range: use {lo} to {hi} (16 is the default)",
                l.rank
            )
        })?;
        require(l.alpha > 0.0 && l.alpha <= limits::ALPHA_MAX, || {
            format!(
                "LoRA alpha (`lora.alpha`) {} is out of range: use a positive number up to {}, usually twice the rank",
                l.alpha,
                limits::ALPHA_MAX
            )
        })?;
        require((0.0..1.0).contains(&l.dropout), || {
            format!(
                "LoRA dropout (`lora.dropout`) {} is out of range: use 0 up to (not including) 1",
                l.dropout
            )
        })?;
        l.target_modules().map(|_| ())
    }

    fn plan_terms(
        &self,
        model: &tunelab_engine::ModelConfig,
        config: &RunConfig,
        stored: StoredBase,
    ) -> Result<PlanTerms, TrainError> {
        let targets = config.lora.target_modules()?;
        let base = match (self.quantized, stored.quantized_file) {
            (false, _) => BaseWeights::Dense,
            // Over a GGUF's own blocks, the output head stays quantized too.
            (true, true) => BaseWeights::Stored {
                bytes: stored.bytes,
                quantized_head: true,
            },
            (true, false) => BaseWeights::Stored {
                bytes: nf4_bytes(model),
                quantized_head: false,
            },
        };
        Ok(PlanTerms {
            trainable_parameters: lora_parameters(model, config.lora.rank, &targets),
            extra_positions: 0,
            trainable_are_weights: false,
            frozen_blocks: false,
            base,
        })
    }

    fn attach(
        &self,
        model: &mut tunelab_engine::LoadedModel,
        config: &RunConfig,
    ) -> Result<Vec<(String, Var)>, TrainError> {
        attach(&mut model.transformer, &config.lora, config.train.seed)
    }

    fn save(
        &self,
        dir: &Path,
        _model: &tunelab_engine::LoadedModel,
        params: &[(String, Var)],
        config: &RunConfig,
    ) -> Result<(), TrainError> {
        save_peft(dir, params, &config.lora, &config.model)
    }

    fn artifact(&self) -> ArtifactKind {
        ArtifactKind::LoraAdapter
    }

    fn leaner(&self) -> Option<(Method, &'static str)> {
        (!self.quantized).then_some((Method::Qlora, "the base stays in 4 bits"))
    }
}

/// Every (PEFT module path, linear layer) pair of the model, e.g.
/// `base_model.model.model.layers.0.self_attn.q_proj`.
fn linear_layers(model: &mut Transformer) -> Vec<(String, &'static str, &mut Linear)> {
    let mut out = Vec::new();
    for (i, layer) in model.layers.iter_mut().enumerate() {
        for (path, linear) in layer.linears_mut() {
            let name = path.rsplit('.').next().unwrap_or(path);
            out.push((
                format!("base_model.model.model.layers.{i}.{path}"),
                name,
                linear,
            ));
        }
    }
    out
}

/// Attaches fresh adapters (A uniform in ±1/√in as PEFT initialises it, B zero, so the model's
/// output is unchanged) and returns the trainable variables under their PEFT key names.
pub fn attach(
    model: &mut Transformer,
    config: &LoraConfig,
    seed: u64,
) -> Result<Vec<(String, Var)>, TrainError> {
    let targets = config.target_modules()?;
    if config.rank == 0 {
        return Err(TrainError::Config("LoRA rank must be at least 1".into()));
    }
    let device = model.device().clone();
    let mut rng = seed.max(1);
    let mut vars = Vec::new();
    for (path, name, linear) in linear_layers(model) {
        if !targets.contains(&name) {
            continue;
        }
        let (out, inp) = linear.weight.dims2()?;
        let bound = 1.0 / (inp as f64).sqrt();
        let values: Vec<f32> = (0..config.rank * inp)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                ((rng >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * bound as f32
            })
            .collect();
        let a = Var::from_tensor(&Tensor::from_vec(values, (config.rank, inp), &device)?)?;
        let b = Var::zeros((out, config.rank), DType::F32, &device)?;
        vars.push((format!("{path}.lora_A.weight"), a.clone()));
        vars.push((format!("{path}.lora_B.weight"), b.clone()));
        linear.adapter = Some(LoraAdapter {
            a,
            b,
            scale: config.scale(),
            dropout: config.dropout,
        });
    }
    Ok(vars)
}

/// PEFT's adapter_config.json for these adapters.
pub fn peft_config(config: &LoraConfig, base_model: &str) -> Result<serde_json::Value, TrainError> {
    Ok(serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": config.target_modules()?,
        "use_rslora": config.rslora,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null
    }))
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir` (which must exist).
pub fn save_peft(
    dir: &Path,
    vars: &[(String, Var)],
    config: &LoraConfig,
    base_model: &str,
) -> Result<(), TrainError> {
    let tensors: HashMap<String, Tensor> = vars
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors"))?;
    let json =
        serde_json::to_string_pretty(&peft_config(config, base_model)?).expect("config serializes");
    std::fs::write(dir.join("adapter_config.json"), json + "\n")
        .map_err(|e| TrainError::Io(dir.join("adapter_config.json"), e))?;
    Ok(())
}

/// PEFT settings that make an adapter compute something other than `W x + scale · B A x`, with
/// the value each has when it does not: an adapter that sets one is refused by name rather than
/// loaded into different outputs.
fn not_plain_lora() -> [(&'static str, serde_json::Value); 10] {
    use serde_json::json;
    [
        ("use_dora", json!(false)),
        ("bias", json!("none")),
        ("lora_bias", json!(false)),
        ("fan_in_fan_out", json!(false)),
        ("modules_to_save", json!(null)),
        ("layer_replication", json!(null)),
        ("use_qalora", json!(false)),
        ("target_parameters", json!(null)),
        ("trainable_token_indices", json!(null)),
        ("alora_invocation_tokens", json!(null)),
    ]
}

/// The value `pattern` (PEFT's `rank_pattern` or `alpha_pattern`) gives module `path`: PEFT
/// matches a key against the end of the module's name at a dot, e.g. `q_proj` or
/// `layers.0.self_attn.q_proj`. Keys written as regular expressions are refused by name.
fn pattern_value(
    pattern: &serde_json::Map<String, serde_json::Value>,
    field: &str,
    path: &str,
    config_path: &Path,
) -> Result<Option<f64>, TrainError> {
    for (key, value) in pattern {
        if key.chars().any(|c| "^$*+?()[]{}|\\".contains(c)) {
            return Err(TrainError::Config(format!(
                "{}: `{field}` key `{key}` is a regular expression; Tunelab reads module names \
                 (like `q_proj` or `layers.0.self_attn.q_proj`)",
                config_path.display()
            )));
        }
        if path == key || path.ends_with(&format!(".{key}")) {
            return value.as_f64().map(Some).ok_or_else(|| {
                TrainError::Config(format!(
                    "{}: `{field}.{key}` is not a number",
                    config_path.display()
                ))
            });
        }
    }
    Ok(None)
}

/// Reads a PEFT LoRA adapter folder and attaches it to `model`. Layers without tensors (PEFT's
/// `layers_to_transform`) stay as they are; a tensor that matches no layer, a rank that differs
/// from the declared one, or a PEFT variant this does not compute (DoRA, biases, ...) is an
/// error naming the file and the field.
pub fn load_peft(
    dir: &Path,
    model: &mut Transformer,
) -> Result<(LoraConfig, Vec<(String, Var)>), TrainError> {
    let config_path = dir.join("adapter_config.json");
    let raw = crate::methods::read_adapter_config(dir)?;
    let field = |name: &str| {
        raw.get(name).ok_or_else(|| {
            TrainError::Config(format!(
                "{}: field `{name}` is missing",
                config_path.display()
            ))
        })
    };
    if field("peft_type")?.as_str() != Some("LORA") {
        return Err(TrainError::Config(format!(
            "{}: peft_type is not LORA",
            config_path.display()
        )));
    }
    for (name, plain) in not_plain_lora() {
        match raw.get(name) {
            None => {}
            // Null: the setting left unset, as some writers leave what they do not use.
            Some(v) if *v == plain || v.is_null() => {}
            Some(v) => {
                return Err(TrainError::Config(format!(
                    "{}: `{name}` is {v}; Tunelab loads plain LoRA adapters ({name} {plain})",
                    config_path.display()
                )))
            }
        }
    }
    let targets = match field("target_modules")? {
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        serde_json::Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    };
    let empty = serde_json::Map::new();
    let pattern = |name: &str| raw.get(name).and_then(|v| v.as_object()).unwrap_or(&empty);
    let (rank_pattern, alpha_pattern) = (pattern("rank_pattern"), pattern("alpha_pattern"));
    let config = LoraConfig {
        rank: field("r")?.as_u64().unwrap_or(0) as usize,
        alpha: field("lora_alpha")?.as_f64().unwrap_or(0.0),
        dropout: raw
            .get("lora_dropout")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0) as f32,
        targets,
        rslora: raw
            .get("use_rslora")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    };
    let weights_path = dir.join("adapter_model.safetensors");
    let device = model.device().clone();
    let mut tensors = candle_core::safetensors::load(&weights_path, &device)
        .map_err(|e| TrainError::Config(format!("{}: {e}", weights_path.display())))?;
    let mut vars = Vec::new();
    for (path, _, linear) in linear_layers(model) {
        let (ka, kb) = (
            format!("{path}.lora_A.weight"),
            format!("{path}.lora_B.weight"),
        );
        let (Some(a), Some(b)) = (tensors.remove(&ka), tensors.remove(&kb)) else {
            continue;
        };
        let module = path.trim_start_matches("base_model.model.");
        let rank = pattern_value(rank_pattern, "rank_pattern", module, &config_path)?
            .map_or(config.rank, |r| r as usize);
        let alpha = pattern_value(alpha_pattern, "alpha_pattern", module, &config_path)?
            .unwrap_or(config.alpha);
        let (out, inp) = linear.weight.dims2()?;
        if a.dims() != [rank, inp] || b.dims() != [out, rank] {
            return Err(TrainError::Config(format!(
                "{}: `{ka}` is {:?} and `{kb}` {:?}, but rank {rank} on this layer needs \
                 [{rank}, {inp}] and [{out}, {rank}]",
                weights_path.display(),
                a.dims(),
                b.dims()
            )));
        }
        let a = Var::from_tensor(&a.to_dtype(DType::F32)?)?;
        let b = Var::from_tensor(&b.to_dtype(DType::F32)?)?;
        vars.push((ka, a.clone()));
        vars.push((kb, b.clone()));
        let layer = LoraConfig {
            rank,
            alpha,
            ..config.clone()
        };
        linear.adapter = Some(LoraAdapter {
            a,
            b,
            scale: layer.scale(),
            dropout: 0.0,
        });
    }
    if let Some(extra) = tensors.keys().next() {
        return Err(TrainError::Config(format!(
            "{}: tensor `{extra}` matches no layer of this model",
            weights_path.display()
        )));
    }
    if vars.is_empty() {
        return Err(TrainError::Config(format!(
            "{}: no LoRA tensors for this model",
            weights_path.display()
        )));
    }
    Ok((config, vars))
}

/// Folds every adapter into its layer: `W ← W + scale · B A`, leaving a plain f32 model.
pub fn merge(model: &mut Transformer) -> Result<(), TrainError> {
    let device = model.device().clone();
    for (_, _, linear) in linear_layers(model) {
        let Some(adapter) = linear.adapter.take() else {
            continue;
        };
        let w = linear.weight.to_dense(&device)?;
        let delta = (adapter.b.as_tensor().matmul(adapter.a.as_tensor())? * adapter.scale)?;
        linear.weight = Weight::Dense((w + delta)?);
    }
    Ok(())
}
