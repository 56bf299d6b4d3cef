//! The training path that runs on any device: what a GPU trains through.
//!
//! The CPU trains through fused kernels of our own (`grad_ops`, `attention_op`, `lora_op`,
//! `qmatmul`): candle only calls a custom op's `cpu_fwd` there. Everywhere else, and on the
//! CPU when a model asks for it ([`Transformer::portable`](crate::Transformer)), training goes
//! through this module instead:
//!
//! - compositions of candle tensor ops whose backward candle already has (RMSNorm, rotary
//!   embeddings, the gated activation, softmax), computed in f32 whatever the activations'
//!   dtype, and handed back in it;
//! - [`with_backward`]: a value computed without recording a graph, joined to the graph with a
//!   backward pass we write. Its forward only copies storage, which every backend can do, so
//!   it runs on the CPU and on CUDA alike. Activation checkpointing and quantized base layers
//!   (QLoRA) use it: neither keeps what a recorded graph would.
//!
//! The tests (`tests/engine/portable.rs`) hold this path to the fused one on the CPU: the loss
//! and every trainable gradient, for each training method, with checkpointing on and off.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, D};

/// The gradient of an input, from the input and the gradient arriving at the output.
type Backward = dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync;

/// Hands on the first argument's values and, in backward, calls `backward` for the second's
/// gradient.
struct Bridge {
    backward: Arc<Backward>,
}

/// The storage behind `layout` must be exactly the tensor: a fresh, contiguous result.
fn check_whole(layout: &Layout) -> Result<()> {
    match layout.contiguous_offsets() {
        Some((0, end)) if end == layout.shape().elem_count() => Ok(()),
        _ => candle_core::bail!("a bridged value must be a fresh contiguous tensor"),
    }
}

impl CustomOp2 for Bridge {
    fn name(&self) -> &'static str {
        "gradient-bridge"
    }

    fn cpu_fwd(
        &self,
        value: &CpuStorage,
        layout: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        check_whole(layout)?;
        Ok((value.try_clone(layout)?, layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        value: &candle_core::CudaStorage,
        layout: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        check_whole(layout)?;
        Ok((value.try_clone(layout)?, layout.shape().clone()))
    }

    fn bwd(
        &self,
        _value: &Tensor,
        input: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((None, Some((self.backward)(input, grad)?)))
    }
}

/// `value` (computed from `input` with nothing recorded) as a tensor whose gradient with
/// respect to `input` is `backward(input, dy)`. When `input` is not tracked, `value` comes back
/// as it is.
pub fn with_backward(
    value: Tensor,
    input: &Tensor,
    backward: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    if !input.track_op() {
        return Ok(value);
    }
    let value = value.detach().contiguous()?;
    // A contiguous view into a larger buffer (a narrowed tensor) is copied out first.
    let value = if value.layout().start_offset() != 0 {
        value.copy()?
    } else {
        value
    };
    value.apply_op2(
        input,
        Bridge {
            backward: Arc::new(backward),
        },
    )
}

/// RMSNorm `x / sqrt(mean(x²) + eps) · w`, in f32, returned in `x`'s dtype.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let r = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&r)?
        .broadcast_mul(&weight.to_dtype(DType::F32)?)?
        .to_dtype(dtype)
}

/// Rotary embedding in the "rotate half" layout for `x` `(b, h, t, d)`; `cos`, `sin` `(t, d/2)`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let half = d / 2;
    let (cos, sin) = (cos.to_dtype(x.dtype())?, sin.to_dtype(x.dtype())?);
    let (a, b) = (
        x.narrow(D::Minus1, 0, half)?,
        x.narrow(D::Minus1, half, half)?,
    );
    let first = (a.broadcast_mul(&cos)? - b.broadcast_mul(&sin)?)?;
    let second = (b.broadcast_mul(&cos)? + a.broadcast_mul(&sin)?)?;
    Tensor::cat(&[first, second], D::Minus1)
}

/// The gated MLP's activation `silu(gate) · up`.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.silu()? * up
}

/// Softmax over the last dimension, in f32, returned in `x`'s dtype.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    // The maximum only keeps exp() in range; the result does not depend on it.
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?.to_dtype(dtype)
}

/// Softmax of attention scores `(…, rows, keys)` under the causal mask: row `r` is the query at
/// position `offset + r % t` and sees keys `0..=offset + r % t`.
pub fn causal_softmax_last_dim(x: &Tensor, t: usize, offset: usize) -> Result<Tensor> {
    let keys = x.dim(D::Minus1)?;
    let rows = x.dim(D::Minus2)?;
    let mask: Vec<f32> = (0..rows)
        .flat_map(|r| {
            (0..keys).map(move |k| {
                if k <= offset + r % t {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    let mask = Tensor::from_vec(mask, (rows, keys), x.device())?;
    softmax_last_dim(&x.to_dtype(DType::F32)?.broadcast_add(&mask)?)?.to_dtype(x.dtype())
}

/// Cross-entropy rows of `logits` `(rows, vocab)` against `targets` on their own device: the
/// sum of `logsumexp(row) − row[target]`, and with `scale`, the gradient
/// `scale · (softmax(row) − onehot(target))` in f32. Nothing goes through the host.
pub fn cross_entropy_rows(
    logits: &Tensor,
    targets: &Tensor,
    scale: Option<f64>,
) -> Result<(Tensor, Option<Tensor>)> {
    let logits = logits.to_dtype(DType::F32)?;
    let max = logits.max_keepdim(D::Minus1)?;
    let shifted = logits.broadcast_sub(&max)?;
    let e = shifted.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    let index = targets.to_dtype(DType::U32)?.unsqueeze(1)?;
    let picked = shifted.gather(&index, 1)?;
    let total = (sum.log()? - picked)?.sum_all()?;
    let grad = match scale {
        Some(scale) => {
            let probs = (e.broadcast_div(&sum)? * scale)?;
            let minus = Tensor::full(-scale as f32, index.shape(), logits.device())?;
            Some(probs.scatter_add(&index, &minus, 1)?)
        }
        None => None,
    };
    Ok((total, grad))
}

/// `x @ Wᵀ` for a frozen quantized weight (QLoRA's base layers: GGUF blocks or NF4) on any
/// device. The layer is decoded for the product and again in backward, so no more than one
/// layer's weights ever exist in full precision; the gradient flows to `x` alone.
pub fn frozen_matmul(weight: &crate::layers::Weight, x: &Tensor) -> Result<Tensor> {
    let decode = {
        let weight = weight.clone();
        move |device: &candle_core::Device, dtype: DType| -> Result<Tensor> {
            weight
                .to_dense(device)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?
                .to_device(device)?
                .to_dtype(dtype)
        }
    };
    let w = decode(x.device(), x.dtype())?;
    let (n, k) = w.dims2()?;
    let rows = x.elem_count() / k;
    let mut dims = x.dims().to_vec();
    *dims.last_mut().expect("activations have a last dimension") = n;
    let y = x
        .detach()
        .reshape((rows, k))?
        .matmul(&w.t()?)?
        .reshape(dims)?;
    drop(w);
    with_backward(y, x, move |x, dy| {
        let w = decode(dy.device(), dy.dtype())?;
        dy.reshape((rows, n))?.matmul(&w)?.reshape(x.shape())
    })
}
