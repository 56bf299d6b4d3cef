//! Building blocks of the transformer: weights that are either dense tensors or quantized
//! blocks, linear layers over them, RMS normalisation and rotary position embeddings.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, Var, D};

use crate::error::Result;

/// A weight matrix `(out_features, in_features)`, dense or in GGUF quantized blocks.
#[derive(Debug, Clone)]
pub enum Weight {
    Dense(Tensor),
    Quantized {
        qtensor: Arc<QTensor>,
        matmul: QMatMul,
    },
    /// 4-bit NormalFloat blocks (QLoRA over a 16/32-bit base).
    Nf4(Arc<crate::nf4::Nf4Tensor>),
}

impl Weight {
    pub fn quantized(qtensor: QTensor) -> Result<Self> {
        let qtensor = Arc::new(qtensor);
        let matmul = QMatMul::from_arc(qtensor.clone())?;
        Ok(Weight::Quantized { qtensor, matmul })
    }

    pub fn dims2(&self) -> Result<(usize, usize)> {
        Ok(match self {
            Weight::Dense(t) => t.dims2()?,
            Weight::Quantized { qtensor, .. } => qtensor.shape().dims2()?,
            Weight::Nf4(q) => q.dims2(),
        })
    }

    /// The weight as a dense f32 tensor (dequantizing quantized blocks).
    pub fn to_dense(&self, device: &Device) -> Result<Tensor> {
        Ok(match self {
            Weight::Dense(t) => t.to_dtype(DType::F32)?,
            Weight::Quantized { qtensor, .. } => qtensor.dequantize(device)?,
            Weight::Nf4(q) => q.dequantize(device)?,
        })
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self, Weight::Quantized { .. } | Weight::Nf4(_))
    }

    /// Bytes this weight occupies in memory.
    pub fn storage_bytes(&self) -> usize {
        match self {
            Weight::Dense(t) => t.elem_count() * t.dtype().size_in_bytes(),
            Weight::Quantized { qtensor, .. } => qtensor.storage_size_in_bytes(),
            Weight::Nf4(q) => q.storage_bytes(),
        }
    }
}

/// Whether a forward pass only answers (fused kernels, KV cache) or also records what backward
/// needs (differentiable kernels, adapter dropout), and through which kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Inference,
    /// Training through the CPU's fused differentiable kernels.
    Training,
    /// Training through kernels that run on any device (see `portable`): what a GPU uses.
    Portable,
}

impl Mode {
    /// Whether the pass records what backward needs.
    pub fn trains(self) -> bool {
        self != Mode::Inference
    }
}

/// A low-rank update added to a frozen layer's output: `y += scale · (x Aᵀ) Bᵀ` (LoRA). `a` is
/// `(rank, in_features)`, `b` is `(out_features, rank)`; both are the trainable variables.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    pub a: Var,
    pub b: Var,
    pub scale: f64,
    /// Dropout on the adapter's input, applied in training only.
    pub dropout: f32,
}

impl LoraAdapter {
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let x = if mode.trains() && self.dropout > 0.0 {
            (x * dropout_mask(x, self.dropout)?)?
        } else {
            x.clone()
        };
        // Inference records no graph: detached views of the variables share their storage.
        let (a, b) = match mode {
            Mode::Training | Mode::Portable => {
                (self.a.as_tensor().clone(), self.b.as_tensor().clone())
            }
            Mode::Inference => (self.a.detach(), self.b.detach()),
        };
        // The adapter stays f32; on 16-bit activations it computes in theirs.
        let (a, b) = (a.to_dtype(x.dtype())?, b.to_dtype(x.dtype())?);
        let inp = a.dim(1)?;
        let rows = x.elem_count() / inp;
        let low = x.reshape((rows, inp))?.matmul(&a.t()?)?;
        let y = (low.matmul(&b.t()?)? * self.scale)?;
        let mut dims = x.dims().to_vec();
        *dims.last_mut().expect("adapter input has a last dimension") = self.b.dim(0)?;
        Ok(y.reshape(dims)?)
    }
}

thread_local! {
    /// Where this thread's dropout masks come from: each mask takes the next seed.
    static DROPOUT_STREAM: std::cell::Cell<u64> = const { std::cell::Cell::new(0x2545_F491_4F6C_DD1D) };
}

/// The seed of the next dropout mask drawn on this thread.
pub fn next_dropout_seed() -> u64 {
    DROPOUT_STREAM.with(|s| {
        let seed = s.get();
        s.set(seed.wrapping_add(0x9E37_79B9_7F4A_7C15));
        seed
    })
}

/// Runs `f` with this thread's dropout masks drawn from `seed`, then puts the stream back:
/// running the same layers twice under the same seed draws the same masks (what activation
/// checkpointing needs when it recomputes a block).
pub fn with_dropout_seed<R>(seed: u64, f: impl FnOnce() -> R) -> R {
    let saved = DROPOUT_STREAM.with(|s| s.replace(seed));
    let out = f();
    DROPOUT_STREAM.with(|s| s.set(saved));
    out
}

/// Keeps each element with probability `1 - p`, scaled by `1 / (1 - p)`, from a cheap xorshift
/// generator seeded by `seed` (the same seed gives the same mask). candle's dropout draws from
/// a cryptographic generator, which took a sixth of a LoRA training step's time; one serial
/// xorshift loop still took 6–7.5%, so each run of [`DROPOUT_CHUNK`] elements draws from a
/// stream of its own, on every core. The mask depends on the seed alone, not on the threads.
pub fn dropout_mask_seeded(x: &Tensor, p: f32, seed: u64) -> Result<Tensor> {
    use rayon::prelude::*;
    let keep = 1.0 / (1.0 - p);
    let threshold = (p as f64 * u32::MAX as f64) as u32;
    let mut mask = vec![0f32; x.elem_count()];
    mask.par_chunks_mut(DROPOUT_CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| {
            let mut state = splitmix64(seed ^ splitmix64(i as u64)) | 1;
            for v in chunk {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *v = if ((state >> 32) as u32) < threshold {
                    0.0
                } else {
                    keep
                };
            }
        });
    Ok(Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?)
}

/// Elements of a dropout mask drawn from one generator stream.
const DROPOUT_CHUNK: usize = 1 << 14;

/// SplitMix64's finalizer: neighbouring inputs give unrelated outputs, so chunk `i`'s stream
/// starts far from chunk `i + 1`'s (and the trainer's step `n` from step `n + 1`'s).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn dropout_mask(x: &Tensor, p: f32) -> Result<Tensor> {
    let seed = next_dropout_seed();
    if x.device().is_cpu() {
        return dropout_mask_seeded(x, p, seed);
    }
    // Off the CPU the mask is drawn there, by the device's generator under this mask's seed:
    // a recomputed block draws the same mask again.
    x.device().set_seed(seed)?;
    let keep = Tensor::rand(0f32, 1f32, x.shape(), x.device())?.ge(p as f64)?;
    Ok((keep.to_dtype(x.dtype())? * (1.0 / (1.0 - p as f64)))?)
}

/// `y = x Wᵀ + b` over the last dimension of `x`, with an optional LoRA adapter. The weight and
/// bias are never trained: gradients flow through them to the input only.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Weight,
    pub bias: Option<Tensor>,
    pub adapter: Option<LoraAdapter>,
}

impl Linear {
    pub fn new(weight: Weight, bias: Option<Tensor>) -> Self {
        Linear {
            weight,
            bias,
            adapter: None,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_mode(x, Mode::Inference)
    }

    /// Whether training passes through this layer without changing it: no adapter, and a
    /// weight and bias that are not variables.
    pub fn is_frozen(&self) -> bool {
        self.adapter.is_none()
            && !matches!(&self.weight, Weight::Dense(w) if w.is_variable())
            && self.bias.as_ref().is_none_or(|b| !b.is_variable())
    }

    pub fn forward_mode(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if let (Mode::Training, Some(adapter)) = (mode, &self.adapter) {
            if x.device().is_cpu() && x.dtype() == DType::F32 {
                return self.forward_fused(x, adapter);
            }
        }
        let y = match &self.weight {
            Weight::Quantized { .. } | Weight::Nf4(_) if mode == Mode::Portable => {
                crate::portable::frozen_matmul(&self.weight, x)?
            }
            Weight::Quantized { qtensor, .. } if mode == Mode::Training => {
                crate::qmatmul::forward_trainable(qtensor, x)?
            }
            // Off the CPU, the layer is decoded for the product: candle's CUDA kernels for 4-bit
            // blocks gave NaN logits on an H200 (the GPU check).
            Weight::Quantized { .. } if !x.device().is_cpu() => {
                crate::portable::frozen_matmul(&self.weight, x)?
            }
            Weight::Quantized { qtensor, matmul } => match crate::qmatmul::forward(qtensor, x)? {
                Some(y) => y,
                None => matmul.forward(&x.contiguous()?)?,
            },
            Weight::Nf4(q) => {
                // Decoded for this product only; the gradient flows to `x` alone.
                let w = q.dequantize(x.device())?;
                let (out, inp) = w.dims2()?;
                let mut dims = x.dims().to_vec();
                *dims
                    .last_mut()
                    .expect("linear input has at least one dimension") = out;
                x.reshape((x.elem_count() / inp, inp))?
                    .matmul(&w.t()?)?
                    .reshape(dims)?
            }
            // A frozen layer in training passes the gradient on to its input only.
            Weight::Dense(w) if mode != Mode::Inference && !w.is_variable() => {
                crate::portable::frozen_dense_matmul(w, x)?
            }
            // A 16-bit model answering on the CPU: read in its 16 bits, never widened whole.
            Weight::Dense(w) if mode == Mode::Inference && crate::half_matmul::applies(w, x) => {
                crate::half_matmul::forward(w, x)?
            }
            Weight::Dense(w) => {
                let dims = x.dims().to_vec();
                let (out, inp) = w.dims2()?;
                let rows = x.elem_count() / inp;
                // A trained weight stays f32; on 16-bit activations it computes in theirs.
                let w = w.to_dtype(x.dtype())?;
                let y = x.reshape((rows, inp))?.matmul(&w.t()?)?;
                let mut out_dims = dims;
                *out_dims
                    .last_mut()
                    .expect("linear input has at least one dimension") = out;
                y.reshape(out_dims)?
            }
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&b.to_dtype(y.dtype())?)?,
            None => y,
        };
        match &self.adapter {
            Some(adapter) => Ok((y + adapter.forward(x, mode)?)?),
            None => Ok(y),
        }
    }
}

impl Linear {
    /// Training through the layer and its adapter as one operation (see `lora_op`).
    fn forward_fused(&self, x: &Tensor, adapter: &LoraAdapter) -> Result<Tensor> {
        let (out, inp) = self.weight.dims2()?;
        let rows = x.elem_count() / inp;
        let op = crate::lora_op::LoraLinear {
            weight: self.weight.clone(),
            scale: adapter.scale,
            dropout: adapter.dropout,
            seed: next_dropout_seed(),
        };
        let y = x.reshape((rows, inp))?.contiguous()?.apply_op3(
            adapter.a.as_tensor(),
            adapter.b.as_tensor(),
            op,
        )?;
        let mut dims = x.dims().to_vec();
        *dims
            .last_mut()
            .expect("linear input has at least one dimension") = out;
        let y = y.reshape(dims)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f32,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_mode(x, Mode::Inference)
    }

    pub fn forward_mode(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        match mode {
            Mode::Inference => Ok(candle_nn::ops::rms_norm(
                &x.contiguous()?,
                &self.weight.to_dtype(x.dtype())?,
                self.eps,
            )?),
            Mode::Training => Ok(crate::grad_ops::rms_norm(x, &self.weight, self.eps as f64)?),
            Mode::Portable => Ok(crate::portable::rms_norm(x, &self.weight, self.eps as f64)?),
        }
    }
}

/// Token embeddings; quantized tables are looked up row by row without dequantizing the whole.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub weight: Weight,
    pub hidden_size: usize,
}

impl Embedding {
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let mut dims = ids.dims().to_vec();
        let flat = ids.flatten_all()?;
        let rows = match &self.weight {
            Weight::Dense(w) => w.index_select(&flat, 0)?,
            Weight::Quantized { matmul, .. } => matmul.embedding(&flat)?,
            Weight::Nf4(q) => q.dequantize(ids.device())?.index_select(&flat, 0)?,
        };
        dims.push(self.hidden_size);
        Ok(rows.reshape(dims)?)
    }
}

/// cos and sin tables `(seq_len, head_dim / 2)` for positions `offset..offset + seq_len`.
pub fn rotary_tables(
    inv_freq: &[f32],
    offset: usize,
    seq_len: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = inv_freq.len();
    let mut cos = Vec::with_capacity(seq_len * half);
    let mut sin = Vec::with_capacity(seq_len * half);
    for p in offset..offset + seq_len {
        for f in inv_freq {
            let angle = p as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (seq_len, half), device)?,
        Tensor::from_vec(sin, (seq_len, half), device)?,
    ))
}

/// Rotary embedding in the Hugging Face "rotate half" layout, for `x` of shape `(b, h, t, d)`.
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (cos, sin) = (cos.to_dtype(x.dtype())?, sin.to_dtype(x.dtype())?);
    Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)?)
}

/// Causal mask `(t, offset + t)`: 0 where a query may attend, -inf elsewhere.
pub fn causal_mask(t: usize, offset: usize, device: &Device) -> Result<Tensor> {
    let total = offset + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j <= offset + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (t, total), device)?)
}

pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::softmax_last_dim(x)?)
}

pub fn silu(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::silu(x)?)
}

/// Index of the largest value of the last dimension, for a 1-D tensor.
pub fn argmax(logits: &Tensor) -> Result<u32> {
    Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
}

/// The largest absolute difference between two tensors of the same shape: how parity checks
/// and tests compare outputs.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    max_abs(&(a - b)?)
}

/// The largest absolute value in a tensor: the scale a parity check's tolerance is set against.
pub fn max_abs(t: &Tensor) -> Result<f32> {
    Ok(t.abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_keeps_the_expected_share_and_the_mean() {
        let x = Tensor::ones(100_000, DType::F32, &Device::Cpu).unwrap();
        let m = dropout_mask(&x, 0.1).unwrap().to_vec1::<f32>().unwrap();
        let dropped = m.iter().filter(|v| **v == 0.0).count() as f64 / m.len() as f64;
        assert!(
            (dropped - 0.1).abs() < 0.01,
            "about 10% dropped, got {dropped}"
        );
        let mean = m.iter().map(|v| *v as f64).sum::<f64>() / m.len() as f64;
        assert!(
            (mean - 1.0).abs() < 0.02,
            "the kept values are scaled so the mean stays 1, got {mean}"
        );
        let again = dropout_mask(&x, 0.1).unwrap().to_vec1::<f32>().unwrap();
        assert_ne!(m, again, "each call draws a new mask");
    }

    #[test]
    fn a_seeded_mask_is_the_same_on_any_number_of_threads_and_its_chunks_differ() {
        let x = Tensor::ones(5 * DROPOUT_CHUNK + 7, DType::F32, &Device::Cpu).unwrap();
        let draw = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| dropout_mask_seeded(&x, 0.25, 7).unwrap())
                .to_vec1::<f32>()
                .unwrap()
        };
        let one = draw(1);
        assert_eq!(one, draw(3));
        let chunks: Vec<&[f32]> = one.chunks(DROPOUT_CHUNK).collect();
        assert_ne!(chunks[0], chunks[1]);
        for chunk in &chunks[..5] {
            let dropped = chunk.iter().filter(|v| **v == 0.0).count() as f64 / chunk.len() as f64;
            assert!((dropped - 0.25).abs() < 0.02, "{dropped}");
        }
        // Neighbouring chunks are not correlated: they agree on about p² + (1-p)² of places.
        let same = chunks[0]
            .iter()
            .zip(chunks[1])
            .filter(|(a, b)| a == b)
            .count() as f64;
        let expected = 0.25f64.powi(2) + 0.75f64.powi(2);
        assert!((same / DROPOUT_CHUNK as f64 - expected).abs() < 0.02);
    }
}
