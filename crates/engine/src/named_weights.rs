//! A model's weights by their Hugging Face names: the list, each one's shape, and each one
//! as a dense f32 tensor with an attached LoRA adapter folded in — what exports write.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::layers::Linear;
use crate::model::Transformer;

/// A weight found by its Hugging Face name.
enum NamedWeight<'a> {
    Vector(&'a Tensor),
    Matrix(&'a crate::layers::Weight),
    /// A linear layer's matrix, with the adapter that may be attached to it.
    Linear(&'a Linear),
}

impl Transformer {
    /// Every weight's Hugging Face name, in the order Hugging Face lists them (the output head
    /// only when it is not tied to the embeddings).
    pub fn weight_names(&self) -> Vec<String> {
        let mut names = vec!["model.embed_tokens.weight".to_string()];
        for (i, layer) in self.layers.iter().enumerate() {
            names.push(format!("model.layers.{i}.input_layernorm.weight"));
            for (path, linear) in layer.linears() {
                names.push(format!("model.layers.{i}.{path}.weight"));
                if linear.bias.is_some() {
                    names.push(format!("model.layers.{i}.{path}.bias"));
                }
            }
            names.push(format!("model.layers.{i}.post_attention_layernorm.weight"));
        }
        names.push("model.norm.weight".to_string());
        if !self.config.tie_word_embeddings {
            names.push("lm_head.weight".to_string());
        }
        names
    }

    /// One weight by its Hugging Face name, as a dense f32 tensor on the CPU, with an attached
    /// LoRA adapter folded in (`W + scale · B A`): what an export writes, one tensor at a time,
    /// so the merged model never exists in memory at once.
    pub fn dense_weight(&self, name: &str) -> Result<Tensor> {
        let cpu = Device::Cpu;
        let f32_cpu = |t: &Tensor| -> Result<Tensor> {
            Ok(t.to_dtype(candle_core::DType::F32)?.to_device(&cpu)?)
        };
        Ok(match self.named_weight(name)? {
            NamedWeight::Vector(t) => f32_cpu(t)?,
            NamedWeight::Matrix(w) => w.to_dense(self.device())?.to_device(&cpu)?,
            NamedWeight::Linear(linear) => {
                let w = linear.weight.to_dense(self.device())?.to_device(&cpu)?;
                match &linear.adapter {
                    None => w,
                    Some(adapter) => {
                        let b = f32_cpu(adapter.b.as_tensor())?;
                        let a = f32_cpu(adapter.a.as_tensor())?;
                        (w + (b.matmul(&a)? * adapter.scale)?)?
                    }
                }
            }
        })
    }

    /// The shape of the weight `name` (Hugging Face name).
    pub fn weight_dims(&self, name: &str) -> Result<Vec<usize>> {
        Ok(match self.named_weight(name)? {
            NamedWeight::Vector(t) => t.dims().to_vec(),
            NamedWeight::Matrix(w) => {
                let (r, c) = w.dims2()?;
                vec![r, c]
            }
            NamedWeight::Linear(l) => {
                let (r, c) = l.weight.dims2()?;
                vec![r, c]
            }
        })
    }

    fn named_weight(&self, name: &str) -> Result<NamedWeight<'_>> {
        let missing = || crate::error::EngineError::Missing {
            path: std::path::PathBuf::new(),
            what: format!("weight {name} in this model"),
        };
        match name {
            "model.embed_tokens.weight" => {
                return Ok(NamedWeight::Matrix(&self.embed_tokens.weight))
            }
            "model.norm.weight" => return Ok(NamedWeight::Vector(&self.norm.weight)),
            "lm_head.weight" => return Ok(NamedWeight::Linear(&self.lm_head)),
            _ => {}
        }
        let rest = name.strip_prefix("model.layers.").ok_or_else(missing)?;
        let (index, part) = rest.split_once('.').ok_or_else(missing)?;
        let layer = index
            .parse::<usize>()
            .ok()
            .and_then(|i| self.layers.get(i))
            .ok_or_else(missing)?;
        match part {
            "input_layernorm.weight" => {
                return Ok(NamedWeight::Vector(&layer.input_layernorm.weight))
            }
            "post_attention_layernorm.weight" => {
                return Ok(NamedWeight::Vector(&layer.post_attention_layernorm.weight))
            }
            _ => {}
        }
        for (path, linear) in layer.linears() {
            match part.strip_prefix(path) {
                Some(".weight") => return Ok(NamedWeight::Linear(linear)),
                Some(".bias") => {
                    return linear
                        .bias
                        .as_ref()
                        .map(NamedWeight::Vector)
                        .ok_or_else(missing)
                }
                _ => {}
            }
        }
        Err(missing())
    }
}
