//! Writing a model as GGUF, the file llama.cpp, Ollama and LM Studio load: llama.cpp's tensor
//! names and query/key row order, the configuration as `{arch}.*` metadata, the tokenizer and
//! the chat template. Tensors are made and written one at a time, so a merged model never
//! exists in memory at once.

use std::io::Write;
use std::path::Path;

pub use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::config::{Architecture, ModelConfig};
use crate::error::{EngineError, Result};
use crate::model::Transformer;

/// Byte alignment of tensor data (GGUF's default, `general.alignment`).
const ALIGNMENT: u64 = 32;

/// How an exported GGUF stores its weight matrices (norms and biases are always f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GgufQuant {
    #[serde(rename = "f32")]
    F32,
    #[serde(rename = "f16")]
    F16,
    #[serde(rename = "q8_0")]
    Q8_0,
    #[serde(rename = "q4_0")]
    Q4_0,
    #[serde(rename = "q4_1")]
    Q4_1,
    /// llama.cpp's Q4_K_M mix: Q4_K, with Q6_K for the output head, the value projections and
    /// the down projections (llama.cpp gives Q6_K to some of those layers; this gives it to
    /// all); rows whose length is not a multiple of 256 fall back to Q5_0 (Q4_K's place) and
    /// Q8_0 (Q6_K's), as llama.cpp does.
    #[serde(rename = "q4_k_m")]
    Q4KM,
}

impl GgufQuant {
    pub const ALL: [GgufQuant; 6] = [
        GgufQuant::F32,
        GgufQuant::F16,
        GgufQuant::Q8_0,
        GgufQuant::Q4_0,
        GgufQuant::Q4_1,
        GgufQuant::Q4KM,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GgufQuant::F32 => "f32",
            GgufQuant::F16 => "f16",
            GgufQuant::Q8_0 => "q8_0",
            GgufQuant::Q4_0 => "q4_0",
            GgufQuant::Q4_1 => "q4_1",
            GgufQuant::Q4KM => "q4_k_m",
        }
    }

    /// What the recipe is, for a person choosing one.
    pub fn describe(self) -> &'static str {
        match self {
            GgufQuant::F32 => "32-bit: exact, the largest file",
            GgufQuant::F16 => "16-bit: as good as exact, half of f32",
            GgufQuant::Q8_0 => "8-bit blocks: close to 16-bit quality at about half its size",
            GgufQuant::Q4_0 => "4-bit blocks: a quarter of 16-bit, loses some quality",
            GgufQuant::Q4_1 => "4-bit blocks with an offset: a little larger and better than q4_0",
            GgufQuant::Q4KM => "llama.cpp's Q4_K_M mix: 4-bit, 6-bit where it matters most",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|q| q.as_str().eq_ignore_ascii_case(text))
    }

    /// llama.cpp's `general.file_type` for this recipe.
    fn file_type(self) -> u32 {
        match self {
            GgufQuant::F32 => 0,
            GgufQuant::F16 => 1,
            GgufQuant::Q4_0 => 2,
            GgufQuant::Q4_1 => 3,
            GgufQuant::Q8_0 => 7,
            GgufQuant::Q4KM => 15,
        }
    }

    /// The block type of the weight matrix `gguf_name` with rows of `cols` values. The output
    /// head (`output.weight`, or the token embeddings when they are tied to it) keeps more bits
    /// in every quantized recipe, as llama.cpp does: Q6_K, or Q8_0 where rows do not fill
    /// 256-value super-blocks.
    fn dtype_for(self, gguf_name: &str, cols: usize, is_output: bool) -> GgmlDType {
        let k_fits = cols.is_multiple_of(256);
        let wanted = match self {
            GgufQuant::F32 => GgmlDType::F32,
            GgufQuant::F16 => GgmlDType::F16,
            GgufQuant::Q8_0 => GgmlDType::Q8_0,
            _ if is_output => match k_fits {
                true => GgmlDType::Q6K,
                false => GgmlDType::Q8_0,
            },
            GgufQuant::Q4_0 => GgmlDType::Q4_0,
            GgufQuant::Q4_1 => GgmlDType::Q4_1,
            GgufQuant::Q4KM => {
                let more_bits =
                    gguf_name.ends_with("attn_v.weight") || gguf_name.ends_with("ffn_down.weight");
                match (more_bits, k_fits) {
                    (true, true) => GgmlDType::Q6K,
                    (true, false) => GgmlDType::Q8_0,
                    (false, true) => GgmlDType::Q4K,
                    (false, false) => GgmlDType::Q5_0,
                }
            }
        };
        if cols.is_multiple_of(wanted.block_size()) {
            wanted
        } else {
            GgmlDType::F16
        }
    }
}

/// GGML's id of a block type in a GGUF tensor description.
fn ggml_type_id(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

/// The GGUF `general.architecture` of a model: llama.cpp writes Mistral as `llama`.
pub fn gguf_architecture(architecture: Architecture) -> &'static str {
    match architecture {
        Architecture::Llama | Architecture::Mistral => "llama",
        Architecture::Qwen2 => "qwen2",
    }
}

/// Rows per head group that llama.cpp interleaves in a query or key projection (Llama-style
/// rotary embeddings), or `None` for tensors stored in Hugging Face order. The loader undoes
/// what the writer does, with this one rule.
pub(crate) fn interleaved_heads(config: &ModelConfig, hf_name: &str) -> Option<usize> {
    if config.architecture == Architecture::Qwen2 {
        None
    } else if hf_name.ends_with("q_proj.weight") {
        Some(config.num_attention_heads)
    } else if hf_name.ends_with("k_proj.weight") {
        Some(config.num_key_value_heads)
    } else {
        None
    }
}

/// Hugging Face row order to llama.cpp's: within each head of `d` rows, row `i·d/2 + j` moves
/// to `2j + i` (the inverse of the loader's unpermute).
fn interleave_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let d = rows / heads;
    Ok(w.reshape((heads, 2, d / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

/// `{arch}.*` and `general.*` metadata for `config`.
pub fn config_metadata(config: &ModelConfig, name: &str, quant: GgufQuant) -> Vec<(String, Value)> {
    let arch = gguf_architecture(config.architecture);
    let key = |k: &str| format!("{arch}.{k}");
    let u32v = |v: usize| Value::U32(v as u32);
    vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String(name.into())),
        ("general.file_type".into(), Value::U32(quant.file_type())),
        ("general.quantization_version".into(), Value::U32(2)),
        ("general.alignment".into(), Value::U32(ALIGNMENT as u32)),
        (key("context_length"), u32v(config.max_position_embeddings)),
        (key("embedding_length"), u32v(config.hidden_size)),
        (key("block_count"), u32v(config.num_hidden_layers)),
        (key("feed_forward_length"), u32v(config.intermediate_size)),
        (
            key("attention.head_count"),
            u32v(config.num_attention_heads),
        ),
        (
            key("attention.head_count_kv"),
            u32v(config.num_key_value_heads),
        ),
        (key("attention.key_length"), u32v(config.head_dim)),
        (key("attention.value_length"), u32v(config.head_dim)),
        (
            key("attention.layer_norm_rms_epsilon"),
            Value::F32(config.rms_norm_eps as f32),
        ),
        (key("rope.freq_base"), Value::F32(config.rope_theta as f32)),
        (key("rope.dimension_count"), u32v(config.head_dim)),
        (key("vocab_size"), u32v(config.vocab_size)),
    ]
}

/// One tensor of the file: its GGUF name and the Hugging Face weight it comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WrittenTensor {
    pub name: String,
    /// The Hugging Face weight it holds; empty for `rope_freqs.weight`.
    pub source: String,
    /// `(rows, cols)` of a matrix, `(len)` of a vector.
    pub shape: Vec<usize>,
    /// Block type: "Q4_1", "F32", ...
    pub dtype: String,
}

struct Planned {
    info: WrittenTensor,
    dtype: GgmlDType,
    offset: u64,
    bytes: u64,
    heads: Option<usize>,
    /// `rope_freqs.weight`: the values themselves.
    values: Option<Vec<f32>>,
}

/// Writes `model` (an attached LoRA adapter folded in) to `path` as GGUF with `metadata`
/// (configuration, tokenizer, chat template), matrices stored as `quant` says. Calls
/// `progress(done, total)` after each tensor; it returns false to stop. Returns what it wrote.
pub fn write_gguf(
    path: &Path,
    model: &Transformer,
    metadata: &[(String, Value)],
    quant: GgufQuant,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<WrittenTensor>> {
    let config = &model.config;
    let mut planned = Vec::new();
    let mut offset = 0u64;
    let mut add = |mut p: Planned, offset: &mut u64| {
        p.offset = *offset;
        *offset += p.bytes.div_ceil(ALIGNMENT) * ALIGNMENT;
        planned.push(p);
    };
    for hf in model.weight_names() {
        let name = crate::weights::gguf_name(&hf).ok_or_else(|| EngineError::Missing {
            path: path.to_path_buf(),
            what: format!("a GGUF name for {hf}"),
        })?;
        let shape = model.weight_dims(&hf)?;
        let is_output =
            name == "output.weight" || (config.tie_word_embeddings && name == "token_embd.weight");
        let dtype = match shape.as_slice() {
            [_, cols] => quant.dtype_for(&name, *cols, is_output),
            _ => GgmlDType::F32,
        };
        let elems: usize = shape.iter().product();
        let bytes = (elems / dtype.block_size() * dtype.type_size()) as u64;
        let p = Planned {
            heads: interleaved_heads(config, &hf),
            info: WrittenTensor {
                name,
                source: hf,
                shape,
                dtype: format!("{dtype:?}"),
            },
            dtype,
            offset: 0,
            bytes,
            values: None,
        };
        add(p, &mut offset);
    }
    if let Some(factors) = rope_factors(model) {
        let p = Planned {
            info: WrittenTensor {
                name: "rope_freqs.weight".into(),
                source: String::new(),
                shape: vec![factors.len()],
                dtype: "F32".into(),
            },
            dtype: GgmlDType::F32,
            offset: 0,
            bytes: factors.len() as u64 * 4,
            heads: None,
            values: Some(factors),
        };
        add(p, &mut offset);
    }

    let file = std::fs::File::create(path).map_err(|e| EngineError::io(path, e))?;
    let mut out = CountingWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        written: 0,
        path,
    };
    out.bytes(b"GGUF")?;
    out.u32(3)?;
    out.u64(planned.len() as u64)?;
    out.u64(metadata.len() as u64)?;
    for (key, value) in metadata {
        out.string(key)?;
        out.u32(value_type(value))?;
        out.value(value)?;
    }
    for p in &planned {
        out.string(&p.info.name)?;
        out.u32(p.info.shape.len() as u32)?;
        // GGUF lists dimensions innermost first: (rows, cols) is written cols, rows.
        for d in p.info.shape.iter().rev() {
            out.u64(*d as u64)?;
        }
        out.u32(ggml_type_id(p.dtype))?;
        out.u64(p.offset)?;
    }
    out.pad()?;
    let data_start = out.written;
    let total = planned.len();
    for (done, p) in planned.iter().enumerate() {
        let bytes = match &p.values {
            Some(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            None => {
                let mut w = model.dense_weight(&p.info.source)?;
                if let Some(heads) = p.heads {
                    w = interleave_rows(&w, heads)?;
                }
                encode(&w, p.dtype)?
            }
        };
        if bytes.len() as u64 != p.bytes || out.written - data_start != p.offset {
            return Err(EngineError::format(
                path,
                "GGUF",
                format!(
                    "tensor {} came out as {} bytes at offset {}, planned {} at {}",
                    p.info.name,
                    bytes.len(),
                    out.written - data_start,
                    p.bytes,
                    p.offset
                ),
            ));
        }
        out.bytes(&bytes)?;
        out.pad()?;
        if !progress(done + 1, total) {
            return Err(EngineError::Cancelled);
        }
    }
    let file = out
        .inner
        .into_inner()
        .map_err(|e| EngineError::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| EngineError::io(path, e))?;
    Ok(planned.into_iter().map(|p| p.info).collect())
}

/// The bytes of `w` in block type `dtype`.
fn encode(w: &Tensor, dtype: GgmlDType) -> Result<Vec<u8>> {
    let w = w.to_dtype(candle_core::DType::F32)?.contiguous()?;
    Ok(match dtype {
        GgmlDType::F32 => w
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .flat_map(f32::to_le_bytes)
            .collect(),
        GgmlDType::F16 => w
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        _ => QTensor::quantize(&w, dtype)?.data()?.into_owned(),
    })
}

/// GGUF's per-frequency RoPE divisors when the model's frequencies differ from plain RoPE
/// (Llama 3.1-style scaling), as llama.cpp reads them from `rope_freqs.weight`.
fn rope_factors(model: &Transformer) -> Option<Vec<f32>> {
    let plain = ModelConfig {
        rope_scaling: None,
        ..model.config.clone()
    }
    .inverse_frequencies(None);
    let actual = model.inverse_frequencies();
    let factors: Vec<f32> = plain.iter().zip(actual).map(|(p, a)| p / a).collect();
    factors
        .iter()
        .any(|f| (f - 1.0).abs() > 1e-6)
        .then_some(factors)
}

fn value_type(value: &Value) -> u32 {
    match value {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

/// A buffered file writer that counts what it wrote (for alignment) and names the file in its
/// errors.
struct CountingWriter<'a> {
    inner: std::io::BufWriter<std::fs::File>,
    written: u64,
    path: &'a Path,
}

impl CountingWriter<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<()> {
        self.inner
            .write_all(b)
            .map_err(|e| EngineError::io(self.path, e))?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn u32(&mut self, v: u32) -> Result<()> {
        self.bytes(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> Result<()> {
        self.bytes(&v.to_le_bytes())
    }

    fn string(&mut self, s: &str) -> Result<()> {
        self.u64(s.len() as u64)?;
        self.bytes(s.as_bytes())
    }

    fn pad(&mut self) -> Result<()> {
        let rest = self.written.next_multiple_of(ALIGNMENT) - self.written;
        self.bytes(&vec![0u8; rest as usize])
    }

    fn value(&mut self, value: &Value) -> Result<()> {
        match value {
            Value::U8(v) => self.bytes(&v.to_le_bytes()),
            Value::I8(v) => self.bytes(&v.to_le_bytes()),
            Value::U16(v) => self.bytes(&v.to_le_bytes()),
            Value::I16(v) => self.bytes(&v.to_le_bytes()),
            Value::U32(v) => self.u32(*v),
            Value::I32(v) => self.bytes(&v.to_le_bytes()),
            Value::F32(v) => self.bytes(&v.to_le_bytes()),
            Value::Bool(v) => self.bytes(&[*v as u8]),
            Value::String(s) => self.string(s),
            Value::U64(v) => self.u64(*v),
            Value::I64(v) => self.bytes(&v.to_le_bytes()),
            Value::F64(v) => self.bytes(&v.to_le_bytes()),
            Value::Array(items) => {
                // An empty array still names an element type; GGUF readers take any.
                let item_type = items.first().map(value_type).unwrap_or(4);
                if items.iter().any(|v| value_type(v) != item_type) {
                    return Err(EngineError::format(
                        self.path,
                        "GGUF",
                        "a metadata array mixes value types",
                    ));
                }
                self.u32(item_type)?;
                self.u64(items.len() as u64)?;
                items.iter().try_for_each(|v| self.value(v))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaving_is_what_the_loader_undoes() {
        // Two heads of four rows, one value per row: HF rows 0..8.
        let w = Tensor::arange(0f32, 8.0, &candle_core::Device::Cpu)
            .unwrap()
            .reshape((8, 1))
            .unwrap();
        let stored = interleave_rows(&w, 2).unwrap();
        let rows: Vec<f32> = stored.flatten_all().unwrap().to_vec1().unwrap();
        // llama.cpp stores HF rows [0, 1, 2, 3] of a head as [0, 2, 1, 3].
        assert_eq!(rows, vec![0., 2., 1., 3., 4., 6., 5., 7.]);
    }

    #[test]
    fn q4_k_m_falls_back_where_rows_do_not_fill_super_blocks() {
        let q = GgufQuant::Q4KM;
        assert_eq!(
            q.dtype_for("blk.0.attn_q.weight", 4096, false),
            GgmlDType::Q4K
        );
        assert_eq!(
            q.dtype_for("blk.0.ffn_down.weight", 4096, false),
            GgmlDType::Q6K
        );
        assert_eq!(q.dtype_for("output.weight", 4096, true), GgmlDType::Q6K);
        // SmolLM2-135M's rows of 576 values: llama.cpp's fallbacks.
        assert_eq!(
            q.dtype_for("blk.0.attn_q.weight", 576, false),
            GgmlDType::Q5_0
        );
        assert_eq!(
            q.dtype_for("blk.0.attn_v.weight", 576, false),
            GgmlDType::Q8_0
        );
        // Tied embeddings are the output head: more bits in every quantized recipe.
        assert_eq!(
            GgufQuant::Q4_1.dtype_for("token_embd.weight", 576, true),
            GgmlDType::Q8_0
        );
        assert_eq!(
            GgufQuant::Q4_1.dtype_for("token_embd.weight", 4096, false),
            GgmlDType::Q4_1
        );
        assert_eq!(
            GgufQuant::F16.dtype_for("token_embd.weight", 576, true),
            GgmlDType::F16
        );
        // A row no block fits stays 16-bit.
        assert_eq!(
            GgufQuant::Q8_0.dtype_for("blk.0.attn_q.weight", 40, false),
            GgmlDType::F16
        );
        for q in GgufQuant::ALL {
            assert_eq!(GgufQuant::parse(q.as_str()), Some(q));
        }
    }
}
