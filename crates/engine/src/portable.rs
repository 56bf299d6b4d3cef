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

/// The gradient of an input, from the input, the output and the gradient arriving at it.
type Backward = dyn Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + Send + Sync;
/// The gradients of two inputs (either may be `None`), from them, the output and its gradient.
type Backward2 = dyn Fn(&Tensor, &Tensor, &Tensor, &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)>
    + Send
    + Sync;

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
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((None, Some((self.backward)(input, out, grad)?)))
    }
}

/// [`Bridge`] for two inputs.
struct Bridge2 {
    backward: Arc<Backward2>,
}

impl candle_core::CustomOp3 for Bridge2 {
    fn name(&self) -> &'static str {
        "gradient-bridge-2"
    }

    fn cpu_fwd(
        &self,
        value: &CpuStorage,
        layout: &Layout,
        _: &CpuStorage,
        _: &Layout,
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
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        check_whole(layout)?;
        Ok((value.try_clone(layout)?, layout.shape().clone()))
    }

    fn bwd(
        &self,
        _value: &Tensor,
        a: &Tensor,
        b: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (da, db) = (self.backward)(a, b, out, grad)?;
        Ok((None, da, db))
    }
}

/// A value fit to be bridged: detached, contiguous, starting at its storage's beginning.
fn bridgeable(value: Tensor) -> Result<Tensor> {
    let value = value.detach().contiguous()?;
    // A contiguous view into a larger buffer (a narrowed tensor) is copied out first.
    if value.layout().start_offset() != 0 {
        return value.copy();
    }
    Ok(value)
}

/// `value` (computed from `input` with nothing recorded) as a tensor whose gradient with
/// respect to `input` is `backward(input, value, dy)`. When `input` is not tracked, `value`
/// comes back as it is.
pub fn with_backward(
    value: Tensor,
    input: &Tensor,
    backward: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    if !input.track_op() {
        return Ok(value);
    }
    bridgeable(value)?.apply_op2(
        input,
        Bridge {
            backward: Arc::new(backward),
        },
    )
}

/// [`with_backward`] for a value computed from two inputs.
pub fn with_backward2(
    value: Tensor,
    a: &Tensor,
    b: &Tensor,
    backward: impl Fn(&Tensor, &Tensor, &Tensor, &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)>
        + Send
        + Sync
        + 'static,
) -> Result<Tensor> {
    if !a.track_op() && !b.track_op() {
        return Ok(value);
    }
    bridgeable(value)?.apply_op3(
        a,
        b,
        Bridge2 {
            backward: Arc::new(backward),
        },
    )
}

/// RMSNorm `x / sqrt(mean(x²) + eps) · w`: candle's fused kernel forward (f32 inside, in
/// `x`'s dtype out), the backward in f32 tensor ops. A frozen `w` gets no gradient.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let y = candle_nn::ops::rms_norm(
        &x.detach().contiguous()?,
        &weight.detach().to_dtype(x.dtype())?,
        eps as f32,
    )?;
    with_backward2(y, x, weight, move |x, w, _y, dy| {
        let (x32, w32, dy32) = (
            x.to_dtype(DType::F32)?,
            w.to_dtype(DType::F32)?,
            dy.to_dtype(DType::F32)?,
        );
        let dim = x.dim(D::Minus1)? as f64;
        let r = (x32.sqr()?.mean_keepdim(D::Minus1)? + eps)?
            .sqrt()?
            .recip()?;
        let dyw = dy32.broadcast_mul(&w32)?;
        // dx = r·(dy·w) − x·r³·mean(dy·w·x)
        let proj = ((&dyw * &x32)?.sum_keepdim(D::Minus1)? / dim)?;
        let dx = (dyw.broadcast_mul(&r)? - x32.broadcast_mul(&(r.powf(3.0)? * proj)?)?)?;
        let dw = if w.track_op() {
            // dw = Σ_rows dy·x·r
            let rows = dy.elem_count() / w.elem_count();
            let dw = (dy32 * x32.broadcast_mul(&r)?)?
                .reshape((rows, w.elem_count()))?
                .sum(0)?;
            Some(dw.to_dtype(w.dtype())?)
        } else {
            None
        };
        Ok((Some(dx.to_dtype(x.dtype())?), dw))
    })
}

/// Rotary embedding in the "rotate half" layout for `x` `(b, h, t, d)`; `cos`, `sin` `(t, d/2)`:
/// candle's fused kernel, and in backward the same rotation turned back (`-sin`).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (cos, sin) = (cos.to_dtype(x.dtype())?, sin.to_dtype(x.dtype())?);
    let y = candle_nn::rotary_emb::rope(&x.detach().contiguous()?, &cos, &sin)?;
    let back = sin.neg()?;
    with_backward(y, x, move |_x, _y, dy| {
        candle_nn::rotary_emb::rope(&dy.contiguous()?, &cos, &back)
    })
}

/// The gated MLP's activation `silu(gate) · up`.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.silu()? * up
}

/// Softmax over the last dimension: candle's fused kernel forward (in `x`'s dtype), the
/// backward `y·(dy − Σ dy·y)` in f32 tensor ops from the output.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let y = candle_nn::ops::softmax_last_dim(&x.detach().contiguous()?)?;
    with_backward(y, x, |x, y, dy| {
        let (y32, dy32) = (y.to_dtype(DType::F32)?, dy.to_dtype(DType::F32)?);
        let dot = (&dy32 * &y32)?.sum_keepdim(D::Minus1)?;
        (y32 * dy32.broadcast_sub(&dot)?)?.to_dtype(x.dtype())
    })
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
    with_backward(y, x, move |x, _y, dy| {
        let w = decode(dy.device(), dy.dtype())?;
        dy.reshape((rows, n))?.matmul(&w)?.reshape(x.shape())
    })
}
