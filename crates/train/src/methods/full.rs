//! Full fine-tuning: every weight of the model trained (f32), saved as a complete Hugging Face
//! model folder that this engine, transformers and llama.cpp's converter all read.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Tensor, Var};
use tunelab_engine::layers::Weight;
use tunelab_engine::{LoadedModel, Transformer};

use crate::plan::BaseWeights;
use crate::recipe::{ArtifactKind, PlanTerms, RunConfig, StoredBase, TrainingMethod};
use crate::trainer::TrainError;

/// Full fine-tuning's recipe.
pub struct Full;

impl TrainingMethod for Full {
    /// Every weight at once takes small steps.
    fn default_lr(&self) -> f64 {
        2e-5
    }

    fn plan_terms(
        &self,
        model: &tunelab_engine::ModelConfig,
        _config: &RunConfig,
        _stored: StoredBase,
    ) -> Result<PlanTerms, TrainError> {
        Ok(PlanTerms {
            trainable_parameters: model.parameter_count(),
            extra_positions: 0,
            trainable_are_weights: true,
            frozen_blocks: false,
            base: BaseWeights::Dense,
        })
    }

    fn attach(
        &self,
        model: &mut LoadedModel,
        _config: &RunConfig,
    ) -> Result<Vec<(String, Var)>, TrainError> {
        attach(&mut model.transformer)
    }

    fn save(
        &self,
        dir: &Path,
        model: &LoadedModel,
        params: &[(String, Var)],
        _config: &RunConfig,
    ) -> Result<(), TrainError> {
        save_hf(dir, model, params)
    }

    fn artifact(&self) -> ArtifactKind {
        ArtifactKind::Model
    }
}

fn trainable(name: &str, tensor: &Tensor) -> Result<(Var, Tensor), TrainError> {
    let var = Var::from_tensor(&tensor.to_dtype(candle_core::DType::F32)?)?;
    let shared = var.as_tensor().clone();
    if !shared.is_variable() {
        return Err(TrainError::Config(format!(
            "{name} could not be made trainable"
        )));
    }
    Ok((var, shared))
}

fn dense<'a>(name: &str, weight: &'a Weight) -> Result<&'a Tensor, TrainError> {
    match weight {
        Weight::Dense(t) => Ok(t),
        _ => Err(TrainError::Config(format!(
            "{name} is quantized; full fine-tuning trains f32 weights (load the model in f32)"
        ))),
    }
}

/// Makes every weight of `model` a trainable variable and returns them under their Hugging
/// Face names. Tied output and input embeddings stay one variable.
pub fn attach(model: &mut Transformer) -> Result<Vec<(String, Var)>, TrainError> {
    let mut vars = Vec::new();
    let name = "model.embed_tokens.weight";
    let (var, t) = trainable(name, dense(name, &model.embed_tokens.weight)?)?;
    model.embed_tokens.weight = Weight::Dense(t.clone());
    if model.config.tie_word_embeddings {
        model.lm_head.weight = Weight::Dense(t);
    }
    vars.push((name.to_string(), var));
    for (i, layer) in model.layers.iter_mut().enumerate() {
        for (path, linear) in layer.linears_mut() {
            let name = format!("model.layers.{i}.{path}.weight");
            let (var, t) = trainable(&name, dense(&name, &linear.weight)?)?;
            linear.weight = Weight::Dense(t);
            vars.push((name, var));
            if let Some(bias) = &linear.bias {
                let name = format!("model.layers.{i}.{path}.bias");
                let (var, t) = trainable(&name, bias)?;
                linear.bias = Some(t);
                vars.push((name, var));
            }
        }
        for (path, norm) in [
            ("input_layernorm", &mut layer.input_layernorm),
            (
                "post_attention_layernorm",
                &mut layer.post_attention_layernorm,
            ),
        ] {
            let name = format!("model.layers.{i}.{path}.weight");
            let (var, t) = trainable(&name, &norm.weight)?;
            norm.weight = t;
            vars.push((name, var));
        }
    }
    let (var, t) = trainable("model.norm.weight", &model.norm.weight)?;
    model.norm.weight = t;
    vars.push(("model.norm.weight".to_string(), var));
    if !model.config.tie_word_embeddings {
        let name = "lm_head.weight";
        let (var, t) = trainable(name, dense(name, &model.lm_head.weight)?)?;
        model.lm_head.weight = Weight::Dense(t);
        vars.push((name.to_string(), var));
    }
    Ok(vars)
}

/// Writes `model` (with `params`, its trained weights) into `dir` as a Hugging Face folder:
/// config.json, generation_config.json, model.safetensors, tokenizer.json and
/// tokenizer_config.json with the chat template, so the result chats exactly like its base.
pub fn save_hf(
    dir: &Path,
    model: &LoadedModel,
    params: &[(String, Var)],
) -> Result<(), TrainError> {
    tunelab_engine::hf_write::write_hf_metadata(dir, model, candle_core::DType::F32)?;
    let tensors: HashMap<String, Tensor> = params
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
        .collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    Ok(())
}
