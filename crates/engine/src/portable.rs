//! The training path that runs on any device: what a GPU trains through.
//!
//! The CPU trains through fused kernels of our own (`grad_ops`, `attention_op`, `lora_op`,
//! `qmatmul`): candle only calls a custom op's `cpu_fwd` there. Everywhere else, and on the
//! CPU when a model asks for it ([`Transformer::portable`](crate::Transformer)), training goes
//! through this module instead:
//!
//! - [`with_backward`]: a value computed without recording a graph, joined to the graph with a
//!   backward pass we write. The op's own forward only hands the value on (a storage copy,
//!   which every backend can do), so it runs on the CPU and on CUDA alike. RMSNorm, rotary
//!   embeddings and softmax compute their forward with candle's fused kernels (which have CPU
//!   and CUDA versions but no backward) and their backward here in f32 tensor ops; activation
//!   checkpointing and quantized base layers (QLoRA) use it to keep less than a recorded graph
//!   would;
//! - compositions of candle tensor ops whose backward candle already has: the gated activation
//!   and the loss.
//!
//! The tests (`crates/train/tests/train/portable.rs`) hold this path to the fused one on the
//! CPU: the loss and every trainable gradient, for each training method, with checkpointing on
//! and off; `tunelab-gpu-check` does the same on a GPU.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Result, Shape, Tensor, D};

/// The gradient of an input, from the input, the output and the gradient arriving at it.
type Backward = dyn Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + Send + Sync;
/// The gradients of two inputs (either may be `None`), from them, the output and its gradient.
type Backward2 = dyn Fn(&Tensor, &Tensor, &Tensor, &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)>
    + Send
    + Sync;

/// The value a bridge hands on: taken out of the op by its forward, so that the recorded
/// graph keeps only the inputs (as any op does), not a second copy of the output.
struct Handed(std::sync::Mutex<Option<Tensor>>);

impl Handed {
    fn new(value: Tensor) -> Result<Self> {
        let value = value.detach().contiguous()?;
        // A contiguous view into a larger buffer (a narrowed tensor) is copied out first.
        let value = if value.layout().start_offset() != 0 {
            value.copy()?
        } else {
            value
        };
        Ok(Handed(std::sync::Mutex::new(Some(value))))
    }

    fn take(&self) -> Result<Tensor> {
        self.0
            .lock()
            .map_err(|_| candle_core::Error::Msg("a gradient bridge was poisoned".into()))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("a gradient bridge ran twice".into()))
    }

    fn cpu(&self) -> Result<(CpuStorage, Shape)> {
        let value = self.take()?;
        let (storage, layout) = value.storage_and_layout();
        match &*storage {
            candle_core::Storage::Cpu(s) => Ok((s.try_clone(layout)?, layout.shape().clone())),
            _ => candle_core::bail!("a gradient bridge's value is not on the CPU"),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda(&self) -> Result<(candle_core::CudaStorage, Shape)> {
        let value = self.take()?;
        let (storage, layout) = value.storage_and_layout();
        match &*storage {
            candle_core::Storage::Cuda(s) => Ok((s.try_clone(layout)?, layout.shape().clone())),
            _ => candle_core::bail!("a gradient bridge's value is not on the GPU"),
        }
    }
}

/// Hands on a value computed outside the graph and, in backward, calls `backward` for its
/// input's gradient.
struct Bridge {
    value: Handed,
    backward: Box<Backward>,
}

impl candle_core::CustomOp1 for Bridge {
    fn name(&self) -> &'static str {
        "gradient-bridge"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        self.value.cpu()
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.value.cuda()
    }

    fn bwd(&self, input: &Tensor, out: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some((self.backward)(input, out, grad)?))
    }
}

/// [`Bridge`] for two inputs.
struct Bridge2 {
    value: Handed,
    backward: Box<Backward2>,
}

impl candle_core::CustomOp2 for Bridge2 {
    fn name(&self) -> &'static str {
        "gradient-bridge-2"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.value.cpu()
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.value.cuda()
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        (self.backward)(a, b, out, grad)
    }
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
    input.apply_op1(Bridge {
        value: Handed::new(value)?,
        backward: Box::new(backward),
    })
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
    a.apply_op2(
        b,
        Bridge2 {
            value: Handed::new(value)?,
            backward: Box::new(backward),
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

/// `x @ Wᵀ` for a frozen dense weight, in `x`'s dtype, on any device: the gradient flows to
/// `x` alone. Through candle's own matmul, backward would also compute the gradient of `Wᵀ`
/// (a product as large as the forward one) for every frozen layer and keep each of them to the
/// end of the pass: a soft prompt's step, whose base is all frozen dense layers, spent about a
/// third of its time and 1.9 GB on them.
pub fn frozen_dense_matmul(w: &Tensor, x: &Tensor) -> Result<Tensor> {
    let w = w.detach();
    frozen_product(x, move |_device, dtype| w.to_dtype(dtype))
}

/// `x @ Wᵀ` for a frozen quantized weight (QLoRA's base layers: GGUF blocks or NF4) on any
/// device. The layer is decoded for the product and again in backward, so no more than one
/// layer's weights ever exist in full precision; the gradient flows to `x` alone.
pub fn frozen_matmul(weight: &crate::layers::Weight, x: &Tensor) -> Result<Tensor> {
    let weight = weight.clone();
    frozen_product(x, move |device, dtype| {
        weight
            .to_dense(device)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?
            .to_device(device)?
            .to_dtype(dtype)
    })
}

/// `x @ Wᵀ` with the `(n, k)` matrix `weight` gives on `x`'s device in `x`'s dtype, and a
/// backward that asks for it again and hands `dy · W` to `x` only. What `weight` makes for the
/// product is dropped right after it.
fn frozen_product(
    x: &Tensor,
    weight: impl Fn(&candle_core::Device, DType) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    let w = weight(x.device(), x.dtype())?;
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
        let w = weight(dy.device(), dy.dtype())?;
        dy.reshape((rows, n))?.matmul(&w)?.reshape(x.shape())
    })
}
