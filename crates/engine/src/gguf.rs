//! GGUF files: metadata (model configuration, tokenizer, chat template) and tensors, read from a
//! memory map with every offset checked against the file's length.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{ggml_file, GgmlDType, QTensor};
use candle_core::Device;

use crate::config::{Architecture, ModelConfig};
use crate::error::{EngineError, Result};

pub struct GgufFile {
    path: PathBuf,
    content: Content,
    mmap: memmap2::Mmap,
}

/// A metadata value widened to the few shapes the engine needs.
fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::U8(v) => Some(*v as u64),
        Value::U16(v) => Some(*v as u64),
        Value::U32(v) => Some(*v as u64),
        Value::U64(v) => Some(*v),
        Value::I8(v) => u64::try_from(*v).ok(),
        Value::I16(v) => u64::try_from(*v).ok(),
        Value::I32(v) => u64::try_from(*v).ok(),
        Value::I64(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::F32(v) => Some(*v as f64),
        Value::F64(v) => Some(*v),
        other => as_u64(other).map(|v| v as f64),
    }
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
        // SAFETY: the map is read-only; a model file changed underneath a running app is outside
        // what any loader can defend against, and every read below is bounds-checked.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| EngineError::io(path, e))?;
        let mut cursor = std::io::Cursor::new(&mmap[..]);
        // The parser panics on some impossible headers (an alignment of 0 divides by zero): a
        // panic is a malformed file like any other, refused here rather than taking the caller
        // (and, in the app, its model cache) down with it.
        let read =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Content::read(&mut cursor)));
        let content = match read {
            Ok(content) => content.map_err(|e| EngineError::format(path, "GGUF", e.to_string()))?,
            Err(_) => {
                return Err(EngineError::format(
                    path,
                    "GGUF",
                    "its header is impossible (the parser gave up on it, e.g. an alignment of 0)",
                ))
            }
        };
        Ok(GgufFile {
            path: path.to_path_buf(),
            content,
            mmap,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.content.metadata.get(key) {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.content.metadata.get(key).and_then(as_u64)
    }

    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.content.metadata.get(key).and_then(as_f64)
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.content.metadata.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    pub fn get_string_array(&self, key: &str) -> Option<Vec<&str>> {
        match self.content.metadata.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    pub fn get_numeric_array(&self, key: &str) -> Option<Vec<f64>> {
        match self.content.metadata.get(key) {
            Some(Value::Array(items)) => items.iter().map(as_f64).collect(),
            _ => None,
        }
    }

    pub fn architecture_name(&self) -> Result<&str> {
        self.get_str("general.architecture")
            .ok_or_else(|| EngineError::Missing {
                path: self.path.clone(),
                what: "metadata key general.architecture".into(),
            })
    }

    pub fn architecture(&self) -> Result<Architecture> {
        let name = self.architecture_name()?;
        Architecture::from_gguf(name).ok_or_else(|| EngineError::UnsupportedArchitecture {
            path: self.path.clone(),
            architecture: name.to_string(),
            supported: Architecture::SUPPORTED,
        })
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    pub fn tensor_names(&self) -> impl Iterator<Item = &String> {
        self.content.tensor_infos.keys()
    }

    /// The model configuration from `{arch}.*` metadata.
    pub fn config(&self) -> Result<ModelConfig> {
        let architecture = self.architecture()?;
        let arch = self.architecture_name()?.to_string();
        let key = |k: &str| format!("{arch}.{k}");
        let need = |k: &str| {
            self.get_u64(&key(k))
                .map(|v| v as usize)
                .ok_or_else(|| EngineError::Missing {
                    path: self.path.clone(),
                    what: format!("metadata key {}", key(k)),
                })
        };
        let hidden_size = need("embedding_length")?;
        let num_attention_heads = need("attention.head_count")?;
        let head_dim = self
            .get_u64(&key("attention.key_length"))
            .or_else(|| self.get_u64(&key("rope.dimension_count")))
            .map(|v| v as usize)
            .unwrap_or(hidden_size.checked_div(num_attention_heads).unwrap_or(0));
        let vocab_size = match self.get_u64(&key("vocab_size")) {
            Some(v) => v as usize,
            None => self
                .get_string_array("tokenizer.ggml.tokens")
                .map(|t| t.len())
                .unwrap_or(0),
        };
        let eos = self
            .get_u64("tokenizer.ggml.eos_token_id")
            .map(|v| v as u32);
        let eot = self
            .get_u64("tokenizer.ggml.eot_token_id")
            .map(|v| v as u32);
        let mut eos_token_ids: Vec<u32> = eos.into_iter().collect();
        if let Some(eot) = eot.filter(|e| !eos_token_ids.contains(e)) {
            eos_token_ids.push(eot);
        }
        let config = ModelConfig {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size: need("feed_forward_length")?,
            num_hidden_layers: need("block_count")?,
            num_attention_heads,
            num_key_value_heads: self
                .get_u64(&key("attention.head_count_kv"))
                .map(|v| v as usize)
                .unwrap_or(num_attention_heads),
            head_dim,
            rms_norm_eps: self
                .get_f64(&key("attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-5),
            rope_theta: self.get_f64(&key("rope.freq_base")).unwrap_or(10_000.0),
            rope_scaling: None,
            max_position_embeddings: self
                .get_u64(&key("context_length"))
                .map(|v| v as usize)
                .unwrap_or(2048),
            tie_word_embeddings: !self.has_tensor("output.weight"),
            attention_bias: self.has_tensor("blk.0.attn_q.bias"),
            bos_token_id: self
                .get_u64("tokenizer.ggml.bos_token_id")
                .map(|v| v as u32),
            eos_token_ids,
        };
        config.validate(&self.path)?;
        Ok(config)
    }

    /// The bytes of one tensor, checked against the file's length.
    fn raw(&self, name: &str) -> Result<(GgmlDType, Vec<usize>, &[u8])> {
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| EngineError::Missing {
                path: self.path.clone(),
                what: format!("tensor {name}"),
            })?;
        let dims = info.shape.dims().to_vec();
        let elems: usize = dims.iter().product();
        let block = info.ggml_dtype.block_size();
        if !elems.is_multiple_of(block) {
            return Err(EngineError::format(
                &self.path,
                "GGUF",
                format!(
                    "tensor {name} has {elems} elements, not a multiple of its block size {block}"
                ),
            ));
        }
        let size = elems / block * info.ggml_dtype.type_size();
        let start = self
            .content
            .tensor_data_offset
            .checked_add(info.offset)
            .map(|v| v as usize);
        let end = start.and_then(|s| s.checked_add(size));
        match (start, end) {
            (Some(start), Some(end)) if end <= self.mmap.len() => Ok((info.ggml_dtype, dims, &self.mmap[start..end])),
            _ => Err(EngineError::format(
                &self.path,
                "GGUF",
                format!(
                    "tensor {name} needs {size} bytes at offset {}, but the file has only {} bytes (truncated download?)",
                    self.content.tensor_data_offset + info.offset,
                    self.mmap.len()
                ),
            )),
        }
    }

    /// Loads a tensor in its stored precision. `unpermute_heads` undoes the row interleaving that
    /// llama.cpp's converter applies to Llama query/key projections, giving back the Hugging Face
    /// layout (and so the PEFT key layout) that the rest of the engine uses.
    pub fn qtensor(
        &self,
        name: &str,
        unpermute_heads: Option<usize>,
        device: &Device,
    ) -> Result<QTensor> {
        let (dtype, dims, bytes) = self.raw(name)?;
        let tensor = match unpermute_heads {
            Some(heads) if !dims.is_empty() => {
                let rows = dims[0];
                let row_bytes = bytes.len() / rows.max(1);
                let fixed = unpermute_rows(bytes, rows, row_bytes, heads).ok_or_else(|| {
                    EngineError::format(
                        &self.path,
                        "GGUF",
                        format!("tensor {name}: {rows} rows do not split into {heads} heads"),
                    )
                })?;
                ggml_file::qtensor_from_ggml(dtype, &fixed, dims, device)
            }
            _ => ggml_file::qtensor_from_ggml(dtype, bytes, dims, device),
        };
        tensor.map_err(|e| EngineError::format(&self.path, "GGUF", format!("tensor {name}: {e}")))
    }

    /// The quantization of the file's weight matrices, e.g. "Q4_1".
    pub fn dominant_dtype(&self) -> Option<String> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for info in self.content.tensor_infos.values() {
            if info.shape.rank() == 2 {
                *counts.entry(format!("{:?}", info.ggml_dtype)).or_default() +=
                    info.shape.elem_count();
            }
        }
        counts.into_iter().max_by_key(|(_, n)| *n).map(|(d, _)| d)
    }
}

/// Row `h*d + i*d/2 + j` of the result is row `h*d + 2*j + i` of the input (d = rows per head).
fn unpermute_rows(bytes: &[u8], rows: usize, row_bytes: usize, heads: usize) -> Option<Vec<u8>> {
    if heads == 0
        || !rows.is_multiple_of(heads)
        || !(rows / heads).is_multiple_of(2)
        || row_bytes * rows != bytes.len()
    {
        return None;
    }
    let d = rows / heads;
    let mut out = vec![0u8; bytes.len()];
    for h in 0..heads {
        for i in 0..2 {
            for j in 0..d / 2 {
                let dst = h * d + i * d / 2 + j;
                let src = h * d + 2 * j + i;
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&bytes[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::unpermute_rows;

    #[test]
    fn unpermute_inverts_the_llama_cpp_interleaving() {
        // One head of 4 rows, 1 byte each: llama.cpp stores HF rows [0, 1, 2, 3] as [0, 2, 1, 3].
        let stored = [0u8, 2, 1, 3];
        assert_eq!(unpermute_rows(&stored, 4, 1, 1).unwrap(), vec![0, 1, 2, 3]);
        // Two heads keep their rows to themselves.
        let stored = [0u8, 2, 1, 3, 4, 6, 5, 7];
        assert_eq!(
            unpermute_rows(&stored, 8, 1, 2).unwrap(),
            vec![0, 1, 2, 3, 4, 5, 6, 7]
        );
        assert!(
            unpermute_rows(&stored, 8, 1, 3).is_none(),
            "8 rows cannot form 3 heads"
        );
    }
}
