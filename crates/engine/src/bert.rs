//! Sentence embeddings from BERT-family encoders (all-MiniLM-L6-v2 and other Hugging Face
//! sentence-transformers folders): the encoder, the pooling the folder asks for, and L2
//! normalisation. Inference only; texts are sorted by length and batched so padding stays small.

use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::ops::softmax_last_dim;
use serde::Deserialize;

use crate::bert_cpu::{cpu_attention, gelu_erf, sum_lanes};
use crate::error::{EngineError, Result};

/// How token vectors become one sentence vector (sentence-transformers' `1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The average of the token vectors, padding excluded.
    Mean,
    /// The first token's vector ([CLS]).
    Cls,
}

#[derive(Debug, Deserialize)]
struct BertConfig {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    max_position_embeddings: usize,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    model_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-12
}

#[derive(Debug, Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

#[derive(Debug, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

struct Linear {
    weight_t: Tensor,
    bias: Tensor,
    /// The same weights in 8-bit blocks (CPU only), for single queries: one short text is
    /// bound by reading the weights, and these are a quarter of the bytes.
    q8: Option<QMatMul>,
}

impl Linear {
    fn new(weight: &Tensor, bias: Tensor) -> Result<Self> {
        let q8 = if weight.device().is_cpu() && weight.dim(1)? % 32 == 0 {
            Some(QMatMul::from_qtensor(QTensor::quantize(
                weight,
                GgmlDType::Q8_0,
            )?)?)
        } else {
            None
        };
        Ok(Self {
            weight_t: weight.t()?.contiguous()?,
            bias,
            q8,
        })
    }

    fn forward(&self, x: &Tensor, precision: Precision) -> candle_core::Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let x = x.reshape((b * t, d))?;
        let y = match (&self.q8, precision) {
            (Some(q8), Precision::Query) => q8.forward(&x)?,
            _ => x.matmul(&self.weight_t)?,
        };
        let y = y.broadcast_add(&self.bias)?;
        y.reshape((b, t, ()))
    }
}

/// Which weights a forward pass reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precision {
    /// f32 throughout: documents, and anything batched.
    Full,
    /// 8-bit linear layers: one short query, where reading the weights is the cost.
    Query,
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

impl LayerNorm {
    /// LayerNorm(x + residual): on the CPU in one pass per row whose sums run in eight lanes
    /// (candle's adds the rows up one element at a time, after a pass of its own for the
    /// addition); elsewhere, or for anything but contiguous f32, through candle's ops.
    fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        use rayon::prelude::*;
        let fused = x.device().is_cpu()
            && x.dtype() == DType::F32
            && residual.dtype() == DType::F32
            && x.shape() == residual.shape()
            && x.is_contiguous()
            && residual.is_contiguous();
        if !fused {
            return Ok(self.forward(&(x + residual)?)?);
        }
        let dim = self.weight.dim(0)?;
        let (weight, bias) = (self.weight.to_vec1::<f32>()?, self.bias.to_vec1::<f32>()?);
        let (a, b) = (
            x.flatten_all()?.to_vec1::<f32>()?,
            residual.flatten_all()?.to_vec1::<f32>()?,
        );
        let mut out = vec![0f32; a.len()];
        out.par_chunks_mut(dim)
            .zip(a.par_chunks(dim).zip(b.par_chunks(dim)))
            .for_each(|(out, (a, b))| {
                for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
                    *o = a + b;
                }
                let mean = sum_lanes(out, |v| v) / dim as f32;
                let var = sum_lanes(out, |v| (v - mean) * (v - mean)) / dim as f32;
                let scale = 1.0 / (var + self.eps).sqrt();
                for ((o, w), c) in out.iter_mut().zip(&weight).zip(&bias) {
                    *o = (*o - mean) * scale * w + c;
                }
            });
        Ok(Tensor::from_vec(out, x.shape().clone(), x.device())?)
    }
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// A loaded sentence encoder.
pub struct SentenceEncoder {
    folder: PathBuf,
    tokenizer: tokenizers::Tokenizer,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
    max_tokens: usize,
    pooling: Pooling,
    device: Device,
    /// Whether attention, GELU and the linear layers go through plain tensor ops that every
    /// device runs: always off the CPU; on the CPU only when asked (see [`Self::portable`]).
    portable: bool,
}

/// Texts per forward pass. Larger batches reuse the weights better; 32 keeps the attention
/// scores small even for 256-token chunks.
pub const BATCH: usize = 32;

impl SentenceEncoder {
    /// Loads a sentence-transformers folder (config.json, model.safetensors, tokenizer.json and,
    /// when present, 1_Pooling/config.json and sentence_bert_config.json).
    pub fn load(folder: &Path, device: &Device) -> Result<Self> {
        let config_path = folder.join("config.json");
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| EngineError::io(&config_path, e))?;
        let config: BertConfig = serde_json::from_str(&text)
            .map_err(|e| EngineError::format(&config_path, "config.json", e.to_string()))?;
        if let Some(kind) = &config.model_type {
            if kind != "bert" {
                return Err(EngineError::UnsupportedArchitecture {
                    path: config_path,
                    architecture: kind.clone(),
                    supported: "bert (sentence-transformers encoders)",
                });
            }
        }
        if let Some(act) = &config.hidden_act {
            if act != "gelu" {
                return Err(EngineError::config(
                    &config_path,
                    "hidden_act",
                    format!("is `{act}`; only `gelu` encoders are supported"),
                ));
            }
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(EngineError::config(
                &config_path,
                "num_attention_heads",
                "must divide hidden_size",
            ));
        }

        let pooling = read_pooling(folder)?;
        let max_tokens = read_max_tokens(folder)?
            .unwrap_or(256)
            .min(config.max_position_embeddings);

        let tokenizer_path = folder.join("tokenizer.json");
        if !tokenizer_path.exists() {
            return Err(EngineError::Missing {
                path: folder.to_path_buf(),
                what: "tokenizer.json".into(),
            });
        }
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| EngineError::format(&tokenizer_path, "tokenizer.json", e.to_string()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;

        let weights_path = folder.join("model.safetensors");
        if !weights_path.exists() {
            return Err(EngineError::Missing {
                path: folder.to_path_buf(),
                what: "model.safetensors".into(),
            });
        }
        let tensors = candle_core::safetensors::load(&weights_path, device)
            .map_err(|e| EngineError::format(&weights_path, "safetensors", e.to_string()))?;
        // Some exports keep the `bert.` prefix of a BertForX model.
        let prefix = if tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let get = |name: &str| -> Result<Tensor> {
            let key = format!("{prefix}{name}");
            let t = tensors.get(&key).ok_or_else(|| EngineError::Missing {
                path: weights_path.clone(),
                what: format!("tensor `{key}`"),
            })?;
            Ok(t.to_dtype(DType::F32)?)
        };
        let eps = config.layer_norm_eps as f32;
        let norm = |name: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                weight: get(&format!("{name}.weight"))?,
                bias: get(&format!("{name}.bias"))?,
                eps,
            })
        };
        let linear = |name: &str| -> Result<Linear> {
            Linear::new(
                &get(&format!("{name}.weight"))?,
                get(&format!("{name}.bias"))?,
            )
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            // Query, key and value in one matrix: one matmul instead of three.
            let names = ["query", "key", "value"].map(|n| format!("{p}.attention.self.{n}"));
            let weight = Tensor::cat(
                &[
                    get(&format!("{}.weight", names[0]))?,
                    get(&format!("{}.weight", names[1]))?,
                    get(&format!("{}.weight", names[2]))?,
                ],
                0,
            )?;
            let bias = Tensor::cat(
                &[
                    get(&format!("{}.bias", names[0]))?,
                    get(&format!("{}.bias", names[1]))?,
                    get(&format!("{}.bias", names[2]))?,
                ],
                0,
            )?;
            // The attention scale 1/√head_dim is folded into the query weights once, here.
            let head_dim = config.hidden_size / config.num_attention_heads;
            let scale = 1.0 / (head_dim as f64).sqrt();
            let hidden = config.hidden_size;
            let scale_rows = Tensor::cat(
                &[
                    Tensor::full(scale as f32, hidden, device)?,
                    Tensor::ones(2 * hidden, DType::F32, device)?,
                ],
                0,
            )?;
            let weight = weight.broadcast_mul(&scale_rows.unsqueeze(1)?)?;
            let bias = bias.mul(&scale_rows)?;
            layers.push(Layer {
                qkv: Linear::new(&weight, bias)?,
                attn_out: linear(&format!("{p}.attention.output.dense"))?,
                attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                up: linear(&format!("{p}.intermediate.dense"))?,
                down: linear(&format!("{p}.output.dense"))?,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(Self {
            folder: folder.to_path_buf(),
            tokenizer,
            word: get("embeddings.word_embeddings.weight")?,
            position: get("embeddings.position_embeddings.weight")?,
            token_type: get("embeddings.token_type_embeddings.weight")?,
            embed_norm: norm("embeddings.LayerNorm")?,
            layers,
            heads: config.num_attention_heads,
            hidden: config.hidden_size,
            max_tokens,
            pooling,
            device: device.clone(),
            portable: !device.is_cpu(),
        })
    }

    /// The same encoder computing through the path a GPU takes, on any device: what tests hold
    /// to the CPU's own kernels.
    pub fn portable(mut self) -> Self {
        self.portable = true;
        self
    }

    /// Where it computes.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The length of every embedding.
    pub fn dimension(&self) -> usize {
        self.hidden
    }

    /// Texts longer than this many tokens are cut (the model's own limit).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    pub fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.tokenizer
    }

    /// Token ids the encoder sees for `text`, [CLS] and [SEP] included.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Unit-length embeddings of `texts`, in the order given.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut ids = Vec::with_capacity(texts.len());
        for text in texts {
            ids.push(self.token_ids(text)?);
        }
        // Similar lengths share a batch, so little compute goes to padding.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for group in order.chunks(BATCH) {
            let batch: Vec<&[u32]> = group.iter().map(|&i| ids[i].as_slice()).collect();
            let vectors = self.embed_ids(&batch)?;
            for (&i, v) in group.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// One search query's embedding, with the linear layers in 8-bit blocks on the CPU (full
    /// precision elsewhere). A short text reads every weight for little arithmetic, so a
    /// quarter of the bytes is most of the time saved; the vector stays within cosine 0.999 of
    /// the full-precision one (tests/engine/embeddings.rs checks both against the reference).
    pub fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        let ids = self.token_ids(text)?;
        // An empty text is only the special tokens; pooled over two rows the 8-bit rounding
        // shows (cosine 0.998), and there is nothing to search for anyway.
        let precision = if ids.len() > 2 && !self.portable {
            Precision::Query
        } else {
            Precision::Full
        };
        Ok(self.embed_ids_with(&[ids.as_slice()], precision)?.remove(0))
    }

    /// Embeddings for already tokenized texts, one forward pass.
    pub fn embed_ids(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        self.embed_ids_with(batch, Precision::Full)
    }

    fn embed_ids_with(&self, batch: &[&[u32]], precision: Precision) -> Result<Vec<Vec<f32>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let b = batch.len();
        let t = batch.iter().map(|ids| ids.len()).max().unwrap_or(1).max(1);
        let mut flat = Vec::with_capacity(b * t);
        let mut mask = Vec::with_capacity(b * t);
        for ids in batch {
            flat.extend_from_slice(ids);
            flat.extend(std::iter::repeat_n(0u32, t - ids.len()));
            mask.extend(std::iter::repeat_n(1f32, ids.len()));
            mask.extend(std::iter::repeat_n(0f32, t - ids.len()));
        }
        let ids = Tensor::from_vec(flat, (b, t), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, t), &self.device)?;
        let hidden = self.forward(&ids, &mask, precision)?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.unsqueeze(2)?;
                let sum = hidden.broadcast_mul(&m)?.sum(1)?;
                let count = m.sum(1)?.clamp(1e-9, f32::MAX)?;
                sum.broadcast_div(&count)?
            }
        };
        let norm = pooled
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f32::MAX)?;
        let unit = pooled.broadcast_div(&norm)?;
        Ok(unit.to_vec2::<f32>()?)
    }

    fn forward(&self, ids: &Tensor, mask: &Tensor, precision: Precision) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let words = self
            .word
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, ()))?;
        let positions = self.position.narrow(0, 0, t)?;
        let types = self.token_type.narrow(0, 0, 1)?;
        let x = words.broadcast_add(&positions)?.broadcast_add(&types)?;
        let mut x = self.embed_norm.forward(&x)?;

        let head_dim = self.hidden / self.heads;
        let lengths: Vec<usize> = mask
            .sum(1)?
            .to_vec1::<f32>()?
            .into_iter()
            .map(|n| n.round() as usize)
            .collect();
        // 0 for real tokens, a large negative number for padding: (b, 1, 1, t); only the
        // tensor path (GPUs) needs it.
        let bias = if !self.portable {
            None
        } else {
            Some(((mask.affine(1.0, -1.0)?) * 1e9)?.reshape((b, 1, 1, t))?)
        };
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x, precision)?;
            let ctx = match &bias {
                None => cpu_attention(&qkv, &lengths, self.heads)?,
                Some(bias) => {
                    let split = |i: usize| -> candle_core::Result<Tensor> {
                        qkv.narrow(2, i * self.hidden, self.hidden)?
                            .reshape((b, t, self.heads, head_dim))?
                            .transpose(1, 2)?
                            .contiguous()
                    };
                    let (q, k, v) = (split(0)?, split(1)?, split(2)?);
                    let scores = q.matmul(&k.t()?)?.broadcast_add(bias)?;
                    softmax_last_dim(&scores)?
                        .matmul(&v)?
                        .transpose(1, 2)?
                        .reshape((b, t, self.hidden))?
                }
            };
            let attn = layer.attn_out.forward(&ctx, precision)?;
            x = match self.portable {
                true => layer.attn_norm.forward(&(attn + &x)?)?,
                false => layer.attn_norm.forward_residual(&attn, &x)?,
            };
            let up = layer.up.forward(&x, precision)?;
            let up = match self.portable {
                true => up.gelu_erf()?,
                false => gelu_erf(&up)?,
            };
            let down = layer.down.forward(&up, precision)?;
            x = match self.portable {
                true => layer.out_norm.forward(&(down + &x)?)?,
                false => layer.out_norm.forward_residual(&down, &x)?,
            };
        }
        Ok(x)
    }
}

fn read_pooling(folder: &Path) -> Result<Pooling> {
    let path = folder.join("1_Pooling").join("config.json");
    if !path.exists() {
        return Ok(Pooling::Mean);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
    let config: PoolingConfig = serde_json::from_str(&text)
        .map_err(|e| EngineError::format(&path, "pooling config", e.to_string()))?;
    match (
        config.pooling_mode_mean_tokens,
        config.pooling_mode_cls_token,
    ) {
        (true, false) => Ok(Pooling::Mean),
        (false, true) => Ok(Pooling::Cls),
        _ => Err(EngineError::config(
            &path,
            "pooling_mode_*",
            "only mean pooling or [CLS] pooling (exactly one) is supported",
        )),
    }
}

fn read_max_tokens(folder: &Path) -> Result<Option<usize>> {
    let path = folder.join("sentence_bert_config.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
    let config: SentenceBertConfig = serde_json::from_str(&text)
        .map_err(|e| EngineError::format(&path, "sentence_bert_config.json", e.to_string()))?;
    Ok(config.max_seq_length)
}

/// True when `folder` looks like a BERT sentence encoder rather than a causal language model.
pub fn is_sentence_encoder(folder: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(folder.join("config.json")) else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("model_type")
                .and_then(|m| m.as_str())
                .map(|m| m == "bert")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fused_residual_layer_norm_matches_candles() {
        let dev = candle_core::Device::Cpu;
        // 3 rows of 37: the eight lanes and a tail.
        let x = Tensor::randn(0f32, 2.0, (3, 37), &dev).unwrap();
        let r = Tensor::randn(1f32, 1.0, (3, 37), &dev).unwrap();
        let norm = LayerNorm {
            weight: Tensor::randn(1f32, 0.1, 37, &dev).unwrap(),
            bias: Tensor::randn(0f32, 0.1, 37, &dev).unwrap(),
            eps: 1e-12,
        };
        let fused = norm.forward_residual(&x, &r).unwrap();
        let plain = norm.forward(&(&x + &r).unwrap()).unwrap();
        let diff = crate::layers::max_abs_diff(&fused, &plain).unwrap();
        assert!(diff < 1e-5, "{diff}");
    }
}
