//! Where weights come from: a GGUF file or Hugging Face safetensors shards. Both are addressed
//! by Hugging Face tensor names (`model.layers.3.self_attn.q_proj.weight`), so everything above
//! this module (adapters, exports, PEFT keys) speaks one naming scheme.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::layers::Weight;

/// How weight matrices are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// As stored: GGUF quantized blocks stay quantized, and 16-bit safetensors matrices stay in
    /// their 16 bits (what chatting on the CPU holds: about two bytes per parameter), with
    /// activations in f32. Norms and biases are f32.
    #[default]
    Native,
    /// Everything dequantized to f32: the reference path, and what training starts from.
    F32,
    /// For QLoRA: GGUF quantized blocks stay as they are; 16/32-bit matrices of the
    /// transformer blocks become NF4 as each is read (the embeddings and the output head stay
    /// in f32), so the full-precision model never exists in memory at once.
    Nf4,
    /// Dense matrices in bf16 (GGUF blocks decoded to it); norms and biases stay f32. What a
    /// GPU trains and answers in: half the memory of f32, at its matrix units' full speed.
    Bf16,
    /// As [`Bf16`](Self::Bf16), in f16: for GPUs without bf16 (before compute capability 8.0).
    F16,
}

impl Precision {
    /// The dtype dense matrices are held in.
    pub fn dense_dtype(self) -> DType {
        match self {
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
            Precision::Native | Precision::F32 | Precision::Nf4 => DType::F32,
        }
    }

    /// The 16-bit precision `device` computes best in: bf16 where the GPU has it, f16 on older
    /// GPUs, and f32 (nothing to gain) on the CPU.
    pub fn half_for(device: &Device) -> Precision {
        match device {
            Device::Cuda(_) if device.supports_bf16() => Precision::Bf16,
            Device::Cuda(_) => Precision::F16,
            _ => Precision::F32,
        }
    }
}

/// Draws `n` values from N(0, std²), the same for the same seed on every machine: chunks of
/// 64k values, each from its own xorshift stream, in parallel.
pub fn normal_values(n: usize, std: f32, seed: u64) -> Vec<f32> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    let mut out = vec![0f32; n];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| {
            let mut state = (seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .wrapping_mul(0xD1B5_4A32_D192_ED03)
                | 1;
            let mut uniform = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
            };
            for pair in chunk.chunks_mut(2) {
                let (u1, u2) = (uniform(), uniform());
                let r = (-2.0 * u1.ln()).sqrt() * std as f64;
                let angle = 2.0 * std::f64::consts::PI * u2;
                pair[0] = (r * angle.cos()) as f32;
                if let Some(second) = pair.get_mut(1) {
                    *second = (r * angle.sin()) as f32;
                }
            }
        });
    out
}

/// Takes the pages of a mapped file range that a tensor was just copied out of back out of
/// this process's resident memory. Without this a model read from safetensors peaks at its
/// file size twice over: the copies plus every mapped page they were read from. The mapping
/// stays valid (read-only and private: a later read faults the file's pages back in). Pages
/// shared with a neighbouring tensor are kept.
fn release_mapped(bytes: &[u8]) {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => return,
        };
        let start = bytes.as_ptr() as usize;
        let (begin, end) = (
            start.next_multiple_of(page),
            (start + bytes.len()) / page * page,
        );
        if end > begin {
            // SAFETY: [begin, end) is whole pages inside `bytes`, which lies in a read-only
            // private file mapping; MADV_DONTNEED only drops their resident copies. The result
            // is ignored: at worst the pages stay resident.
            unsafe { libc::madvise(begin as *mut libc::c_void, end - begin, libc::MADV_DONTNEED) };
        }
    }
    #[cfg(not(unix))]
    let _ = bytes;
}

/// A block matrix in NF4 when `precision` asks for it and its rows fit NF4's blocks; any
/// other matrix dense, in `precision`'s dtype.
fn nf4_or_dense(name: &str, w: Tensor, precision: Precision) -> Result<Weight> {
    let (_, cols) = w.dims2()?;
    if precision == Precision::Nf4 && name.contains(".layers.") && cols % crate::nf4::BLOCK == 0 {
        return Ok(Weight::Nf4(std::sync::Arc::new(
            crate::nf4::Nf4Tensor::quantize(&w)?,
        )));
    }
    Ok(Weight::Dense(w.to_dtype(precision.dense_dtype())?))
}

pub enum WeightSource {
    /// A new model's weights: matrices drawn from N(0, 0.02²) by `seed` (the same on every
    /// device), norms at one, no biases. With [`Precision::Native`], the blocks' matrices are
    /// quantized to GGUF's Q4_1 on their device, as a downloaded 4-bit model would be.
    Initial {
        seed: u64,
    },
    Gguf(GgufFile),
    Safetensors {
        files: Vec<PathBuf>,
        tensors: MmapedSafetensors,
        index: HashMap<String, usize>,
    },
}

/// The tensors a safetensors file declares (name and shape), read from its header (8-byte
/// length, then JSON) without reading the data, after checking that the header fits in the file
/// and every tensor's bytes lie inside it and match its dtype and shape.
pub fn safetensors_header(file: &Path) -> Result<Vec<(String, Vec<usize>)>> {
    use std::io::Read;
    let bad = |m: String| EngineError::format(file, "safetensors", m);
    let mut f = std::fs::File::open(file).map_err(|e| EngineError::io(file, e))?;
    let file_len = f.metadata().map_err(|e| EngineError::io(file, e))?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("the file is shorter than its 8-byte header length".into()))?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 || len + 8 > file_len {
        return Err(bad(format!(
            "header length {len} does not fit in a file of {file_len} bytes"
        )));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)
        .map_err(|e| EngineError::io(file, e))?;
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    let data_len = file_len - 8 - len;
    let mut tensors = Vec::new();
    for (name, info) in json {
        if name == "__metadata__" {
            continue;
        }
        let shape: Option<Vec<usize>> = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
        let offsets: Option<Vec<u64>> = info
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|d| d.as_u64()).collect());
        let width = info
            .get("dtype")
            .and_then(|d| d.as_str())
            .and_then(dtype_bits);
        let (Some(shape), Some([start, end]), Some(width)) = (
            shape,
            offsets
                .as_deref()
                .and_then(|o| <[u64; 2]>::try_from(o).ok()),
            width,
        ) else {
            return Err(bad(format!(
                "tensor `{name}` lacks a dtype Tunelab reads, a shape or two data offsets"
            )));
        };
        if start > end || end > data_len {
            return Err(bad(format!(
                "tensor `{name}` lies at bytes {start}..{end}, past the {data_len} bytes of data in the file"
            )));
        }
        let elements: u64 = shape.iter().map(|&d| d as u64).product();
        if (end - start) * 8 != elements * width {
            return Err(bad(format!(
                "tensor `{name}` has {} bytes for a shape of {shape:?}",
                end - start
            )));
        }
        tensors.push((name, shape));
    }
    Ok(tensors)
}

/// Bits per element of a safetensors dtype.
fn dtype_bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 64,
        "F32" | "I32" | "U32" => 32,
        "F16" | "BF16" | "I16" | "U16" => 16,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 8,
        _ => return None,
    })
}

/// The GGUF name of a Hugging Face tensor name.
pub(crate) fn gguf_name(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, name) = rest.split_once('.')?;
    let mapped = match name {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{mapped}"))
}

impl WeightSource {
    pub fn open_safetensors(files: Vec<PathBuf>) -> Result<Self> {
        // SAFETY: read-only maps of files the user pointed at; shapes and offsets are validated
        // by the safetensors header parser before any tensor is read.
        let tensors = unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| {
            EngineError::format(
                files.first().cloned().unwrap_or_default(),
                "safetensors",
                e.to_string(),
            )
        })?;
        let mut index = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            for (name, _) in safetensors_header(file)? {
                index.insert(name, i);
            }
        }
        Ok(WeightSource::Safetensors {
            files,
            tensors,
            index,
        })
    }

    fn path_of(&self, name: &str) -> PathBuf {
        match self {
            WeightSource::Initial { .. } => PathBuf::new(),
            WeightSource::Gguf(g) => g.path().to_path_buf(),
            WeightSource::Safetensors { files, index, .. } => index
                .get(name)
                .and_then(|i| files.get(*i))
                .or(files.first())
                .cloned()
                .unwrap_or_default(),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        match self {
            WeightSource::Initial { .. } => !name.ends_with(".bias") && name != "lm_head.weight",
            WeightSource::Gguf(g) => gguf_name(name).is_some_and(|n| g.has_tensor(&n)),
            WeightSource::Safetensors { index, .. } => index.contains_key(name),
        }
    }

    fn check_shape(&self, name: &str, got: &[usize], want: &[usize]) -> Result<()> {
        if got != want {
            return Err(EngineError::format(
                self.path_of(name),
                if matches!(self, WeightSource::Gguf(_)) {
                    "GGUF"
                } else {
                    "safetensors"
                },
                format!(
                    "tensor {name} has shape {got:?}, but the model configuration needs {want:?}"
                ),
            ));
        }
        Ok(())
    }

    /// A weight matrix; GGUF query/key projections of Llama models are brought back to the
    /// Hugging Face row order.
    pub fn matrix(
        &self,
        name: &str,
        shape: (usize, usize),
        config: &ModelConfig,
        precision: Precision,
        device: &Device,
    ) -> Result<Weight> {
        match self {
            WeightSource::Initial { seed } => {
                // Each tensor draws from its own stream: the seed and the tensor's name.
                let seed = name
                    .bytes()
                    .fold(*seed, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01B3));
                let values = normal_values(shape.0 * shape.1, 0.02, seed);
                let w = Tensor::from_vec(values, shape, &Device::Cpu)?;
                if precision == Precision::Native && name.contains(".layers.") {
                    return Weight::quantized(candle_core::quantized::QTensor::quantize_onto(
                        &w,
                        GgmlDType::Q4_1,
                        device,
                    )?);
                }
                nf4_or_dense(name, w.to_device(device)?, precision)
            }
            WeightSource::Gguf(g) => {
                let gname = gguf_name(name).ok_or_else(|| EngineError::Missing {
                    path: g.path().into(),
                    what: format!("tensor {name}"),
                })?;
                let heads = crate::gguf_write::interleaved_heads(config, name);
                let q = g.qtensor(&gname, heads, device)?;
                self.check_shape(name, q.shape().dims(), &[shape.0, shape.1])?;
                let dense = matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
                let decoded =
                    matches!(precision, Precision::F32 | Precision::Bf16 | Precision::F16);
                if decoded || dense {
                    nf4_or_dense(name, q.dequantize(device)?, precision)
                } else {
                    Weight::quantized(q)
                }
            }
            WeightSource::Safetensors { .. } => {
                let stored = self.stored_tensor(name, &[shape.0, shape.1], device)?;
                let half = matches!(stored.dtype(), DType::BF16 | DType::F16);
                if precision == Precision::Native && half {
                    return Ok(Weight::Dense(stored));
                }
                nf4_or_dense(name, stored, precision)
            }
        }
    }

    /// A small tensor (norm weight, bias) as f32.
    pub fn vector(&self, name: &str, len: usize, device: &Device) -> Result<Tensor> {
        self.vector_or_tensor(name, &[len], device)
    }

    fn vector_or_tensor(&self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
        Ok(self
            .stored_tensor(name, shape, device)?
            .to_dtype(DType::F32)?)
    }

    /// A tensor of `shape`: safetensors in the dtype the file stores, anything else in f32.
    fn stored_tensor(&self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
        let tensor = match self {
            WeightSource::Initial { .. } => Tensor::ones(shape, DType::F32, device)?,
            WeightSource::Gguf(g) => {
                let gname = gguf_name(name).ok_or_else(|| EngineError::Missing {
                    path: g.path().into(),
                    what: format!("tensor {name}"),
                })?;
                g.qtensor(&gname, None, device)?.dequantize(device)?
            }
            WeightSource::Safetensors {
                tensors,
                index,
                files,
            } => {
                if !index.contains_key(name) {
                    return Err(EngineError::Missing {
                        path: files.first().cloned().unwrap_or_default(),
                        what: format!("tensor {name}"),
                    });
                }
                let fault = |e: candle_core::Error| {
                    EngineError::format(
                        self.path_of(name),
                        "safetensors",
                        format!("tensor {name}: {e}"),
                    )
                };
                let tensor = tensors.load(name, device).map_err(fault)?;
                release_mapped(tensors.get(name).map_err(fault)?.data());
                tensor
            }
        };
        self.check_shape(name, tensor.dims(), shape)?;
        Ok(tensor)
    }

    /// GGUF's per-frequency RoPE divisors (Llama 3.1+), if the file has them.
    pub fn rope_freq_factors(&self, device: &Device) -> Result<Option<Vec<f32>>> {
        match self {
            WeightSource::Gguf(g) if g.has_tensor("rope_freqs.weight") => Ok(Some(
                g.qtensor("rope_freqs.weight", None, device)?
                    .dequantize(device)?
                    .flatten_all()?
                    .to_vec1()?,
            )),
            _ => Ok(None),
        }
    }

    pub fn source_path(&self) -> &Path {
        match self {
            WeightSource::Initial { .. } => Path::new(""),
            WeightSource::Gguf(g) => g.path(),
            WeightSource::Safetensors { files, .. } => {
                files.first().map(PathBuf::as_path).unwrap_or(Path::new(""))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::gguf_name;

    #[test]
    fn hf_names_map_to_gguf_names() {
        assert_eq!(
            gguf_name("model.layers.12.self_attn.k_proj.weight").as_deref(),
            Some("blk.12.attn_k.weight")
        );
        assert_eq!(
            gguf_name("model.layers.0.mlp.down_proj.weight").as_deref(),
            Some("blk.0.ffn_down.weight")
        );
        assert_eq!(
            gguf_name("model.embed_tokens.weight").as_deref(),
            Some("token_embd.weight")
        );
        assert_eq!(gguf_name("model.layers.0.unknown.weight"), None);
    }
}
