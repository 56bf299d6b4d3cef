//! The Llama-family model configuration, read from a Hugging Face `config.json` or from GGUF
//! metadata, and checked for impossible values before any weight is touched.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// The transformer variants this engine runs. They share one implementation; they differ in
/// defaults (Qwen2 has q/k/v biases) and in how GGUF stores the query and key projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Llama,
    Mistral,
    Qwen2,
}

impl Architecture {
    pub const SUPPORTED: &'static str =
        "llama (Llama 2/3, SmolLM, SmolLM2), mistral, qwen2 (Qwen2, Qwen2.5)";

    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
        }
    }

    /// The Hugging Face class name written into an exported config.json.
    pub fn hf_class(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
        }
    }

    fn from_hf(architectures: &[String], model_type: Option<&str>) -> Option<Self> {
        let names = architectures.iter().map(String::as_str).chain(model_type);
        for name in names {
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("llama") || lower == "smollm" || lower == "smollm2" {
                return Some(Architecture::Llama);
            }
            if lower.starts_with("mistral") {
                return Some(Architecture::Mistral);
            }
            if lower.starts_with("qwen2") && !lower.contains("moe") && !lower.contains("vl") {
                return Some(Architecture::Qwen2);
            }
        }
        None
    }

    pub(crate) fn from_gguf(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Architecture::Llama),
            "mistral" => Some(Architecture::Mistral),
            "qwen2" => Some(Architecture::Qwen2),
            _ => None,
        }
    }
}

/// Llama 3.1-style frequency-dependent RoPE scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Bias on the query, key and value projections (Qwen2).
    pub attention_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

/// config.json as Hugging Face writes it; every field optional so that a missing one is reported
/// by name instead of as a serde error.
#[derive(Debug, Default, Deserialize)]
struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    rope_parameters: Option<serde_json::Value>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    bos_token_id: Option<serde_json::Value>,
    eos_token_id: Option<serde_json::Value>,
}

fn token_ids(value: Option<&serde_json::Value>) -> Vec<u32> {
    match value {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(|v| vec![v as u32]).unwrap_or_default()
        }
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_u64())
            .map(|v| v as u32)
            .collect(),
        _ => Vec::new(),
    }
}

fn llama3_scaling(value: &serde_json::Value) -> Option<Llama3RopeScaling> {
    let kind = value
        .get("rope_type")
        .or_else(|| value.get("type"))?
        .as_str()?;
    if kind != "llama3" {
        return None;
    }
    Some(Llama3RopeScaling {
        factor: value.get("factor")?.as_f64()?,
        low_freq_factor: value.get("low_freq_factor")?.as_f64()?,
        high_freq_factor: value.get("high_freq_factor")?.as_f64()?,
        original_max_position_embeddings: value.get("original_max_position_embeddings")?.as_u64()?
            as usize,
    })
}

impl ModelConfig {
    /// Reads and validates a Hugging Face `config.json`.
    pub fn from_hf_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        Self::from_hf_json(&text, path)
    }

    pub fn from_hf_json(text: &str, path: &Path) -> Result<Self> {
        let raw: HfConfig = serde_json::from_str(text).map_err(|e| {
            EngineError::format(
                path,
                "JSON",
                format!("line {} column {}: {e}", e.line(), e.column()),
            )
        })?;
        let architecture = Architecture::from_hf(&raw.architectures, raw.model_type.as_deref())
            .ok_or_else(|| EngineError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                architecture: raw
                    .architectures
                    .first()
                    .cloned()
                    .or(raw.model_type.clone())
                    .unwrap_or_else(|| "(none given)".into()),
                supported: Architecture::SUPPORTED,
            })?;
        let need = |v: Option<usize>, field: &str| {
            v.ok_or_else(|| EngineError::config(path, field, "is missing"))
        };
        let hidden_size = need(raw.hidden_size, "hidden_size")?;
        let num_attention_heads = need(raw.num_attention_heads, "num_attention_heads")?;
        let rope_params = raw.rope_parameters.as_ref();
        let rope_theta = raw
            .rope_theta
            .or_else(|| {
                rope_params
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(|v| v.as_f64())
            })
            .unwrap_or(10_000.0);
        let rope_scaling = raw
            .rope_scaling
            .as_ref()
            .or(rope_params)
            .and_then(llama3_scaling);
        let head_dim = match raw.head_dim {
            Some(d) => d,
            None if num_attention_heads > 0 => hidden_size / num_attention_heads,
            None => 0,
        };
        let config = ModelConfig {
            architecture,
            vocab_size: need(raw.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: need(raw.intermediate_size, "intermediate_size")?,
            num_hidden_layers: need(raw.num_hidden_layers, "num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(num_attention_heads),
            head_dim,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(4096),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            attention_bias: raw
                .attention_bias
                .unwrap_or(architecture == Architecture::Qwen2),
            bos_token_id: token_ids(raw.bos_token_id.as_ref()).first().copied(),
            eos_token_ids: token_ids(raw.eos_token_id.as_ref()),
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Rejects values no model can have, naming the field.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(EngineError::config(path, field, "must be greater than 0"));
            }
        }
        const LIMIT: usize = 1 << 24;
        for (field, value) in positive {
            if value > LIMIT && field != "max_position_embeddings" {
                return Err(EngineError::config(
                    path,
                    field,
                    format!("is {value}, larger than any model this engine can hold"),
                ));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(EngineError::config(
                path,
                "num_key_value_heads",
                format!(
                    "is {}, which does not divide num_attention_heads ({})",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(EngineError::config(
                path,
                "head_dim",
                format!(
                    "is {}, but rotary embeddings need an even size",
                    self.head_dim
                ),
            ));
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return Err(EngineError::config(
                path,
                "rms_norm_eps",
                format!("is {}, expected a small positive number", self.rms_norm_eps),
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err(EngineError::config(
                path,
                "rope_theta",
                format!("is {}, expected a number above 1", self.rope_theta),
            ));
        }
        Ok(())
    }

    /// config.json as Hugging Face transformers reads it for this architecture.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let rope_scaling = self.rope_scaling.as_ref().map(|s| {
            serde_json::json!({
                "rope_type": "llama3",
                "factor": s.factor,
                "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_position_embeddings,
            })
        });
        let eos = match self.eos_token_ids.as_slice() {
            [one] => serde_json::json!(one),
            many => serde_json::json!(many),
        };
        serde_json::json!({
            "architectures": [self.architecture.hf_class()],
            "model_type": self.architecture.as_str(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": rope_scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "torch_dtype": "float32",
        })
    }

    /// Parameters of the transformer, counting tied embeddings once.
    pub fn parameter_count(&self) -> u64 {
        let h = self.hidden_size as u64;
        let kv = (self.num_key_value_heads * self.head_dim) as u64;
        let q = (self.num_attention_heads * self.head_dim) as u64;
        let i = self.intermediate_size as u64;
        let bias = if self.attention_bias { q + 2 * kv } else { 0 };
        let per_layer = h * q + 2 * h * kv + q * h + bias + 3 * h * i + 2 * h;
        let embed = self.vocab_size as u64 * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + head + per_layer * self.num_hidden_layers as u64 + h
    }

    /// Inverse rotary frequencies, one per pair of head dimensions, with Llama 3 scaling or
    /// GGUF's per-frequency divisors (`rope_freqs.weight`) applied.
    pub fn inverse_frequencies(&self, freq_factors: Option<&[f32]>) -> Vec<f32> {
        let half = self.head_dim / 2;
        let mut inv: Vec<f64> = (0..half)
            .map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / self.head_dim as f64))
            .collect();
        if let Some(factors) = freq_factors {
            for (f, factor) in inv.iter_mut().zip(factors) {
                *f /= *factor as f64;
            }
        } else if let Some(s) = &self.rope_scaling {
            let old = s.original_max_position_embeddings as f64;
            let low_wavelen = old / s.low_freq_factor;
            let high_wavelen = old / s.high_freq_factor;
            for f in inv.iter_mut() {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= s.factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (old / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    *f = (1.0 - smooth) * *f / s.factor + smooth * *f;
                }
            }
        }
        inv.into_iter().map(|f| f as f32).collect()
    }
}
