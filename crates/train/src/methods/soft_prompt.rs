//! Soft prompts (prompt tuning): a few virtual token embeddings placed before every input and
//! trained while every weight of the model stays frozen. Saved in PEFT's prompt-tuning format
//! (`peft_type: PROMPT_TUNING`, the embeddings under `prompt_embeddings`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};
use tunelab_engine::{TextTokenizer, Transformer};

use crate::plan::BaseWeights;
use crate::recipe::{
    limits, require, ArtifactKind, PlanTerms, RunConfig, StoredBase, TrainingMethod,
};
use crate::trainer::TrainError;

/// The key PEFT stores the virtual token embeddings under.
pub const EMBEDDINGS_KEY: &str = "prompt_embeddings";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SoftPromptConfig {
    /// Virtual tokens placed before every input.
    pub num_virtual_tokens: usize,
    /// Start from the embeddings of this text's tokens (repeated to fill the virtual tokens);
    /// without it, from the embeddings of random vocabulary entries.
    pub init_text: Option<String>,
}

impl Default for SoftPromptConfig {
    fn default() -> Self {
        SoftPromptConfig {
            num_virtual_tokens: 20,
            init_text: None,
        }
    }
}

/// The soft prompt's recipe.
pub struct SoftPrompt;

impl TrainingMethod for SoftPrompt {
    /// A few embeddings, trained alone, take the largest steps.
    fn default_lr(&self) -> f64 {
        3e-2
    }

    fn check(&self, config: &RunConfig) -> Result<(), TrainError> {
        let s = &config.soft_prompt;
        let (lo, hi) = limits::VIRTUAL_TOKENS;
        require((lo..=hi).contains(&s.num_virtual_tokens), || {
            format!(
                "virtual tokens (`soft_prompt.num_virtual_tokens`) {} is out of range: use {lo} to {hi} (20 is the default)",
                s.num_virtual_tokens
            )
        })?;
        require(
            s.init_text.as_deref().is_none_or(|t| !t.trim().is_empty()),
            || {
                "start text (`soft_prompt.init_text`) is empty: give some text, or leave it out to start from random vocabulary rows".into()
            },
        )
    }

    fn plan_terms(
        &self,
        model: &tunelab_engine::ModelConfig,
        config: &RunConfig,
        _stored: StoredBase,
    ) -> Result<PlanTerms, TrainError> {
        let n = config.soft_prompt.num_virtual_tokens;
        Ok(PlanTerms {
            trainable_parameters: (n * model.hidden_size) as u64,
            // The virtual tokens run through every layer with the real ones.
            extra_positions: n,
            trainable_are_weights: false,
            frozen_blocks: true,
            base: BaseWeights::Dense,
        })
    }

    fn attach(
        &self,
        model: &mut tunelab_engine::LoadedModel,
        config: &RunConfig,
    ) -> Result<Vec<(String, Var)>, TrainError> {
        attach(
            &mut model.transformer,
            &model.tokenizer,
            &config.soft_prompt,
            config.train.seed,
        )
    }

    fn save(
        &self,
        dir: &Path,
        model: &tunelab_engine::LoadedModel,
        params: &[(String, Var)],
        config: &RunConfig,
    ) -> Result<(), TrainError> {
        let (_, embeddings) = params
            .first()
            .ok_or_else(|| TrainError::Config("the soft prompt has no parameters".into()))?;
        save_peft(
            dir,
            embeddings,
            &config.soft_prompt,
            &model.transformer.config,
            &config.model,
        )
    }

    fn artifact(&self) -> ArtifactKind {
        ArtifactKind::SoftPrompt
    }
}

/// Creates the virtual token embeddings, puts them before every input of `model` and returns
/// them as the one trainable variable.
pub fn attach(
    model: &mut Transformer,
    tokenizer: &TextTokenizer,
    config: &SoftPromptConfig,
    seed: u64,
) -> Result<Vec<(String, Var)>, TrainError> {
    let n = config.num_virtual_tokens;
    if n == 0 {
        return Err(TrainError::Config(
            "soft_prompt.num_virtual_tokens must be at least 1".into(),
        ));
    }
    let vocab = model.config.vocab_size as u64;
    let ids: Vec<u32> = match config.init_text.as_deref().map(str::trim) {
        Some(text) if !text.is_empty() => {
            let tokens = tokenizer.encode(text, false)?;
            if tokens.is_empty() {
                return Err(TrainError::Config(
                    "soft_prompt.init_text has no tokens".into(),
                ));
            }
            tokens.iter().copied().cycle().take(n).collect()
        }
        _ => random_ids(n, vocab, seed),
    };
    attach_ids(model, &ids)
}

/// `n` vocabulary entries drawn by `seed`: where a soft prompt starts without an init text.
pub fn random_ids(n: usize, vocab: u64, seed: u64) -> Vec<u32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab) as u32
        })
        .collect()
}

/// A soft prompt starting from the embeddings of `ids`, one virtual token each, put before
/// every input of `model`; returns it as the one trainable variable.
pub fn attach_ids(model: &mut Transformer, ids: &[u32]) -> Result<Vec<(String, Var)>, TrainError> {
    let ids = Tensor::new(ids, model.device())?;
    let rows = model
        .embed_tokens
        .forward(&ids)?
        .to_dtype(DType::F32)?
        .detach();
    let var = Var::from_tensor(&rows)?;
    model.soft_prompt = Some(var.as_tensor().clone());
    Ok(vec![(EMBEDDINGS_KEY.to_string(), var)])
}

/// PEFT's adapter_config.json for a soft prompt on `model`.
pub fn peft_config(
    config: &SoftPromptConfig,
    model: &tunelab_engine::ModelConfig,
    base_model: &str,
) -> serde_json::Value {
    let (init, text) = match &config.init_text {
        Some(t) if !t.trim().is_empty() => ("TEXT", Some(t.clone())),
        _ => ("RANDOM", None),
    };
    serde_json::json!({
        "peft_type": "PROMPT_TUNING",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "num_virtual_tokens": config.num_virtual_tokens,
        "token_dim": model.hidden_size,
        "num_transformer_submodules": 1,
        "num_attention_heads": model.num_attention_heads,
        "num_layers": model.num_hidden_layers,
        "prompt_tuning_init": init,
        "prompt_tuning_init_text": text,
        "tokenizer_name_or_path": base_model,
        "inference_mode": true,
        "revision": null
    })
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir` (which must exist).
pub fn save_peft(
    dir: &Path,
    embeddings: &Var,
    config: &SoftPromptConfig,
    model: &tunelab_engine::ModelConfig,
    base_model: &str,
) -> Result<(), TrainError> {
    let tensors: HashMap<String, Tensor> =
        HashMap::from([(EMBEDDINGS_KEY.to_string(), embeddings.as_tensor().clone())]);
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors"))?;
    let json = serde_json::to_string_pretty(&peft_config(config, model, base_model))
        .expect("config serializes");
    std::fs::write(dir.join("adapter_config.json"), json + "\n")
        .map_err(|e| TrainError::Io(dir.join("adapter_config.json"), e))?;
    Ok(())
}

/// Reads a PEFT prompt-tuning folder and puts its virtual tokens before `model`'s inputs.
pub fn load_peft(dir: &Path, model: &mut Transformer) -> Result<SoftPromptConfig, TrainError> {
    let config_path = dir.join("adapter_config.json");
    let raw = crate::methods::read_adapter_config(dir)?;
    if raw.get("peft_type").and_then(|v| v.as_str()) != Some("PROMPT_TUNING") {
        return Err(TrainError::Config(format!(
            "{}: peft_type is not PROMPT_TUNING",
            config_path.display()
        )));
    }
    let weights_path = dir.join("adapter_model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights_path, model.device())
        .map_err(|e| TrainError::Config(format!("{}: {e}", weights_path.display())))?;
    let embeddings = tensors.remove(EMBEDDINGS_KEY).ok_or_else(|| {
        TrainError::Config(format!(
            "{}: no `{EMBEDDINGS_KEY}` tensor",
            weights_path.display()
        ))
    })?;
    let (n, dim) = embeddings.dims2().map_err(|_| {
        TrainError::Config(format!(
            "{}: `{EMBEDDINGS_KEY}` is not a matrix",
            weights_path.display()
        ))
    })?;
    if dim != model.config.hidden_size {
        return Err(TrainError::Config(format!(
            "{}: the virtual tokens have {dim} dimensions but this model's embeddings have {}; \
             the soft prompt was trained for another model",
            weights_path.display(),
            model.config.hidden_size
        )));
    }
    if let Some(declared) = raw.get("num_virtual_tokens").and_then(|v| v.as_u64()) {
        if declared as usize != n {
            return Err(TrainError::Config(format!(
                "{}: num_virtual_tokens is {declared} but the weights hold {n}",
                config_path.display()
            )));
        }
    }
    model.soft_prompt = Some(embeddings.to_dtype(DType::F32)?);
    Ok(SoftPromptConfig {
        num_virtual_tokens: n,
        init_text: raw
            .get("prompt_tuning_init_text")
            .and_then(|v| v.as_str())
            .map(String::from),
    })
}
