//! Opening a model from disk: a GGUF file, or a Hugging Face folder (config.json, safetensors
//! shards, tokenizer.json, tokenizer_config.json, generation_config.json).

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::model::Transformer;
use crate::template::{ChatTemplate, FALLBACK_TEMPLATE};
use crate::tokenizer::TextTokenizer;
use crate::weights::{Precision, WeightSource};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    Gguf,
    Hf,
}

/// What a model is, read from its files without loading the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSummary {
    pub format: ModelFormat,
    pub path: PathBuf,
    pub config: ModelConfig,
    /// Weight storage: "Q4_1", "F16", "BF16", ...
    pub quantization: Option<String>,
    pub size_bytes: u64,
    pub has_chat_template: bool,
}

pub struct LoadedModel {
    pub summary: ModelSummary,
    pub transformer: Transformer,
    pub tokenizer: TextTokenizer,
    pub template: ChatTemplate,
    /// Token ids that end an answer (EOS, end-of-turn).
    pub eos_ids: Vec<u32>,
}

pub fn detect_format(path: &Path) -> Result<ModelFormat> {
    if path.is_dir() {
        if path.join("config.json").is_file() {
            return Ok(ModelFormat::Hf);
        }
        return Err(EngineError::Missing {
            path: path.to_path_buf(),
            what: "config.json (a Hugging Face model folder needs one)".into(),
        });
    }
    if !path.exists() {
        return Err(EngineError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        ));
    }
    let mut magic = [0u8; 4];
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    if f.read_exact(&mut magic).is_ok() && &magic == b"GGUF" {
        return Ok(ModelFormat::Gguf);
    }
    Err(EngineError::format(path, "GGUF", "the file does not start with the GGUF magic bytes; pass a .gguf file or a Hugging Face model folder"))
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        EngineError::format(
            path,
            "JSON",
            format!("line {} column {}: {e}", e.line(), e.column()),
        )
    })
}

/// The chat template in tokenizer_config.json: a string, or a list of named templates.
fn hf_chat_template(tokenizer_config: Option<&serde_json::Value>, folder: &Path) -> Option<String> {
    if let Ok(text) = std::fs::read_to_string(folder.join("chat_template.jinja")) {
        return Some(text);
    }
    match tokenizer_config?.get("chat_template")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => items
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .or(items.first())
            .and_then(|t| t.get("template"))
            .and_then(|t| t.as_str())
            .map(String::from),
        _ => None,
    }
}

/// The safetensors files of a folder: the shards named by model.safetensors.index.json, or every
/// `*.safetensors` file.
fn safetensors_files(folder: &Path) -> Result<Vec<PathBuf>> {
    let index = folder.join("model.safetensors.index.json");
    if let Some(json) = read_json(&index)? {
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| EngineError::config(&index, "weight_map", "is missing"))?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(|v| v.as_str())
            .map(|f| folder.join(f))
            .collect();
        files.sort();
        files.dedup();
        for f in &files {
            if !f.is_file() {
                return Err(EngineError::Missing {
                    path: f.clone(),
                    what: "a weight shard listed in model.safetensors.index.json".into(),
                });
            }
        }
        return Ok(files);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(|e| EngineError::io(folder, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(EngineError::Missing {
            path: folder.to_path_buf(),
            what: "model weights (*.safetensors)".into(),
        });
    }
    Ok(files)
}

fn dir_size(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Reads a model's description without loading its weights.
pub fn inspect(path: &Path) -> Result<ModelSummary> {
    match detect_format(path)? {
        ModelFormat::Gguf => {
            let gguf = GgufFile::open(path)?;
            Ok(ModelSummary {
                format: ModelFormat::Gguf,
                path: path.to_path_buf(),
                config: gguf.config()?,
                quantization: gguf.dominant_dtype(),
                size_bytes: path.metadata().map(|m| m.len()).unwrap_or(0),
                has_chat_template: gguf.get_str("tokenizer.chat_template").is_some(),
            })
        }
        ModelFormat::Hf => {
            let config = ModelConfig::from_hf_file(&path.join("config.json"))?;
            let raw = read_json(&path.join("config.json"))?;
            let dtype = raw
                .as_ref()
                .and_then(|r| r.get("torch_dtype").or_else(|| r.get("dtype")))
                .and_then(|d| d.as_str())
                .map(|d| {
                    d.to_uppercase()
                        .replace("FLOAT", "F")
                        .replace("BFLOAT", "BF")
                });
            let tokenizer_config = read_json(&path.join("tokenizer_config.json"))?;
            Ok(ModelSummary {
                format: ModelFormat::Hf,
                path: path.to_path_buf(),
                config,
                quantization: dtype,
                size_bytes: dir_size(&safetensors_files(path)?),
                has_chat_template: hf_chat_template(tokenizer_config.as_ref(), path).is_some(),
            })
        }
    }
}

/// Reads what [`load`] needs, short of the weights' values, so that a model registered after
/// this check loads: the tokenizer and the chat template parse, and for a Hugging Face folder
/// every safetensors header parses with each tensor inside its file, and the tensors the
/// configuration calls for are there with the shapes it implies. Errors name the file and the
/// fault.
pub fn verify(path: &Path) -> Result<ModelSummary> {
    let summary = inspect(path)?;
    match summary.format {
        ModelFormat::Gguf => {
            let gguf = GgufFile::open(path)?;
            TextTokenizer::from_gguf(&gguf)?;
            if let Some(template) = gguf.get_str("tokenizer.chat_template") {
                ChatTemplate::new(template)?;
            }
        }
        ModelFormat::Hf => {
            let tokenizer_config = read_json(&path.join("tokenizer_config.json"))?;
            TextTokenizer::from_hf_files(&path.join("tokenizer.json"), tokenizer_config.as_ref())?;
            if let Some(template) = hf_chat_template(tokenizer_config.as_ref(), path) {
                ChatTemplate::new(template)?;
            }
            let mut shapes = std::collections::HashMap::new();
            for file in safetensors_files(path)? {
                for (name, shape) in crate::weights::safetensors_header(&file)? {
                    shapes.insert(name, (shape, file.clone()));
                }
            }
            for (name, expected) in expected_shapes(&summary.config) {
                let Some((shape, file)) = shapes.get(&name) else {
                    return Err(EngineError::Missing {
                        path: path.to_path_buf(),
                        what: format!("tensor `{name}` in the safetensors files"),
                    });
                };
                if *shape != expected {
                    let message = format!(
                        "tensor `{name}` has shape {shape:?}; config.json implies {expected:?}"
                    );
                    return Err(EngineError::format(file, "safetensors", message));
                }
            }
        }
    }
    Ok(summary)
}

/// The tensors a Llama-family model of `config` has, with their shapes (Hugging Face names).
fn expected_shapes(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (hidden, inter, vocab) = (
        config.hidden_size,
        config.intermediate_size,
        config.vocab_size,
    );
    let q = config.num_attention_heads * config.head_dim;
    let kv = config.num_key_value_heads * config.head_dim;
    let mut out = vec![
        ("model.embed_tokens.weight".to_string(), vec![vocab, hidden]),
        ("model.norm.weight".to_string(), vec![hidden]),
    ];
    if !config.tie_word_embeddings {
        out.push(("lm_head.weight".into(), vec![vocab, hidden]));
    }
    for i in 0..config.num_hidden_layers {
        let layer = |part: &str, shape: Vec<usize>| (format!("model.layers.{i}.{part}"), shape);
        out.extend([
            layer("input_layernorm.weight", vec![hidden]),
            layer("post_attention_layernorm.weight", vec![hidden]),
            layer("self_attn.q_proj.weight", vec![q, hidden]),
            layer("self_attn.k_proj.weight", vec![kv, hidden]),
            layer("self_attn.v_proj.weight", vec![kv, hidden]),
            layer("self_attn.o_proj.weight", vec![hidden, q]),
            layer("mlp.gate_proj.weight", vec![inter, hidden]),
            layer("mlp.up_proj.weight", vec![inter, hidden]),
            layer("mlp.down_proj.weight", vec![hidden, inter]),
        ]);
    }
    out
}

/// Loads weights, tokenizer and chat template.
pub fn load(path: &Path, precision: Precision, device: &Device) -> Result<LoadedModel> {
    let summary = inspect(path)?;
    match summary.format {
        ModelFormat::Gguf => {
            let gguf = GgufFile::open(path)?;
            let tokenizer = TextTokenizer::from_gguf(&gguf)?;
            let template = ChatTemplate::new(
                gguf.get_str("tokenizer.chat_template")
                    .unwrap_or(FALLBACK_TEMPLATE),
            )?;
            let source = WeightSource::Gguf(gguf);
            let transformer = Transformer::load(&summary.config, &source, precision, device)?;
            let eos_ids = stop_ids(&summary.config, &tokenizer);
            Ok(LoadedModel {
                summary,
                transformer,
                tokenizer,
                template,
                eos_ids,
            })
        }
        ModelFormat::Hf => {
            let tokenizer_config = read_json(&path.join("tokenizer_config.json"))?;
            let tokenizer = TextTokenizer::from_hf_files(
                &path.join("tokenizer.json"),
                tokenizer_config.as_ref(),
            )?;
            let template = ChatTemplate::new(
                hf_chat_template(tokenizer_config.as_ref(), path)
                    .unwrap_or_else(|| FALLBACK_TEMPLATE.to_string()),
            )?;
            let mut config = summary.config.clone();
            if let Some(gen) = read_json(&path.join("generation_config.json"))? {
                let extra: Vec<u32> = match gen.get("eos_token_id") {
                    Some(serde_json::Value::Number(n)) => {
                        n.as_u64().map(|v| vec![v as u32]).unwrap_or_default()
                    }
                    Some(serde_json::Value::Array(a)) => a
                        .iter()
                        .filter_map(|v| v.as_u64())
                        .map(|v| v as u32)
                        .collect(),
                    _ => Vec::new(),
                };
                for id in extra {
                    if !config.eos_token_ids.contains(&id) {
                        config.eos_token_ids.push(id);
                    }
                }
            }
            let source = WeightSource::open_safetensors(safetensors_files(path)?)?;
            let transformer = Transformer::load(&config, &source, precision, device)?;
            let eos_ids = stop_ids(&config, &tokenizer);
            Ok(LoadedModel {
                summary: ModelSummary { config, ..summary },
                transformer,
                tokenizer,
                template,
                eos_ids,
            })
        }
    }
}

/// EOS ids from the configuration, plus the tokenizer's EOS and the common end-of-turn markers,
/// so an exported or foreign model never talks past its turn.
fn stop_ids(config: &ModelConfig, tokenizer: &TextTokenizer) -> Vec<u32> {
    let mut ids = config.eos_token_ids.clone();
    let named = tokenizer.eos_token().into_iter().chain([
        "<|im_end|>",
        "<|eot_id|>",
        "<|end_of_text|>",
        "<|endoftext|>",
        "</s>",
    ]);
    for name in named {
        if let Some(id) = tokenizer.token_to_id(name) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}
