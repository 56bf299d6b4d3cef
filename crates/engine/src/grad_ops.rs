//! Differentiable versions of the transformer's fused operations.
//!
//! candle's fused RMSNorm, softmax and RoPE kernels have no backward pass: a model built on
//! them trains nothing and says nothing. These ops compute the same forward results with our
//! own CPU kernels (f32 and f64, parallel over rows) and carry a hand-derived backward pass in
//! one pass over memory (`backward_kernels`). They run on the CPU only; every other device
//! trains through `portable`. Each is checked against central finite differences in the tests
//! below.

use candle_core::{
    backend::BackendStorage, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape,
    Tensor,
};
use rayon::prelude::*;

use crate::backward_kernels::{RmsNormBackward, RmsPart, SiluMulBackward, SoftmaxBackward};
use crate::fast_exp::Exp;

/// The contiguous slice behind a CPU tensor argument.
pub(crate) fn slice<'a, T: candle_core::WithDType>(
    storage: &'a [T],
    layout: &Layout,
) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&storage[a..b]),
        None => candle_core::bail!("differentiable ops need contiguous inputs"),
    }
}

/// Applies `f(row_in, row_out)` to every row of length `dim`, in parallel.
fn map_rows<T: Copy + Send + Sync + Default>(
    input: &[T],
    dim: usize,
    f: impl Fn(usize, &[T], &mut [T]) + Sync,
) -> Vec<T> {
    let mut out = vec![T::default(); input.len()];
    out.par_chunks_mut(dim)
        .zip(input.par_chunks(dim))
        .enumerate()
        .for_each(|(i, (o, x))| f(i, x, o));
    out
}

macro_rules! float_dispatch {
    ($storage:expr, $layout:expr, |$x:ident: $t:ident| $body:expr) => {
        match $storage {
            CpuStorage::F32(v) => {
                type $t = f32;
                let $x = slice(v, $layout)?;
                CpuStorage::F32($body)
            }
            CpuStorage::F64(v) => {
                type $t = f64;
                let $x = slice(v, $layout)?;
                CpuStorage::F64($body)
            }
            other => candle_core::bail!(
                "differentiable ops take f32 or f64, got {:?}",
                other.dtype()
            ),
        }
    };
}

// ---------------------------------------------------------------------------------------------
// RMSNorm: y = x / sqrt(mean(x²) + eps) * w
struct RmsNorm {
    eps: f64,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dim = l1.shape().dims().last().copied().unwrap_or(1);
        let eps = self.eps;
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(w)) => {
                let (x, w) = (slice(x, l1)?, slice(w, l2)?);
                CpuStorage::F32(map_rows(x, dim, |_, row, out| {
                    let ms =
                        row.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / dim as f64;
                    let r = (1.0 / (ms + eps).sqrt()) as f32;
                    for ((o, v), g) in out.iter_mut().zip(row).zip(w) {
                        *o = v * r * g;
                    }
                }))
            }
            (CpuStorage::F64(x), CpuStorage::F64(w)) => {
                let (x, w) = (slice(x, l1)?, slice(w, l2)?);
                CpuStorage::F64(map_rows(x, dim, |_, row, out| {
                    let r =
                        1.0 / (row.iter().map(|v| v * v).sum::<f64>() / dim as f64 + eps).sqrt();
                    for ((o, v), g) in out.iter_mut().zip(row).zip(w) {
                        *o = v * r * g;
                    }
                }))
            }
            _ => candle_core::bail!("rms-norm-grad: input and weight must both be f32 or both f64"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // A frozen weight (everything but full fine-tuning) gets no gradient at all.
        let want_dw = w.track_op();
        let dy = dy.contiguous()?;
        let dx = x.apply_op3_no_bwd(
            w,
            &dy,
            &RmsNormBackward {
                eps: self.eps,
                part: RmsPart::Input,
            },
        )?;
        let dw = if want_dw {
            Some(x.apply_op3_no_bwd(
                w,
                &dy,
                &RmsNormBackward {
                    eps: self.eps,
                    part: RmsPart::Weight,
                },
            )?)
        } else {
            None
        };
        Ok((Some(dx), dw))
    }
}

pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNorm { eps })
}

// ---------------------------------------------------------------------------------------------
// Softmax over the last dimension.
/// Softmax over the last dimension; with `causal = Some((t, offset))`, rows are queries at
/// positions `offset + row % t` and keys after them get probability zero (the causal mask
/// applied inside the kernel, so no masked copy of the scores exists).
struct Softmax {
    causal: Option<(usize, usize)>,
}

impl Softmax {
    /// Number of keys row `i` may see.
    fn visible(&self, i: usize, dim: usize) -> usize {
        match self.causal {
            Some((t, offset)) => (offset + i % t + 1).min(dim),
            None => dim,
        }
    }
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dim = l.shape().dims().last().copied().unwrap_or(1);
        let out = float_dispatch!(s, l, |x: T| map_rows(x, dim, |i, row, out| {
            let n = self.visible(i, dim);
            let (row, out) = (&row[..n], &mut out[..n]);
            let max = row.iter().copied().fold(T::NEG_INFINITY, T::max);
            let mut total = 0.0;
            for (o, v) in out.iter_mut().zip(row) {
                *o = (v - max).exp_nonpositive();
            }
            for o in out.iter() {
                total += *o;
            }
            out.iter_mut().for_each(|o| *o /= total);
        }));
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            y.apply_op2_no_bwd(&dy.contiguous()?, &SoftmaxBackward)?,
        ))
    }
}

pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax { causal: None })
}

/// Softmax of attention scores `(…, rows, keys)` under the causal mask: row `r` is the query
/// at position `offset + r % t`, and sees keys `0..=offset + r % t`; the mask is applied inside
/// the kernel.
pub fn causal_softmax_last_dim(x: &Tensor, t: usize, offset: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax {
        causal: Some((t, offset)),
    })
}

// ---------------------------------------------------------------------------------------------
// Rotary embedding, Hugging Face "rotate half" layout: x (b, h, t, d), cos/sin (t, d/2).
struct Rope;

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "rope-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims();
        let (t, d) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        let half = d / 2;
        macro_rules! run {
            ($variant:ident, $x:expr, $c:expr, $s:expr) => {{
                let (x, c, s) = (slice($x, l1)?, slice($c, l2)?, slice($s, l3)?);
                CpuStorage::$variant(map_rows(x, d, |row_index, row, out| {
                    let pos = row_index % t;
                    let (c, s) = (
                        &c[pos * half..(pos + 1) * half],
                        &s[pos * half..(pos + 1) * half],
                    );
                    for i in 0..half {
                        let (a, b) = (row[i], row[i + half]);
                        out[i] = a * c[i] - b * s[i];
                        out[i + half] = b * c[i] + a * s[i];
                    }
                }))
            }};
        }
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(c), CpuStorage::F32(s)) => run!(F32, x, c, s),
            (CpuStorage::F64(x), CpuStorage::F64(c), CpuStorage::F64(s)) => run!(F64, x, c, s),
            _ => candle_core::bail!("rope-grad: x, cos and sin must share f32 or f64"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // A rotation's transpose rotates back: the same op with -sin.
        let dx = rope(dy, cos, &sin.neg()?)?;
        Ok((Some(dx), None, None))
    }
}

pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&cos.contiguous()?, &sin.contiguous()?, Rope)
}

// ---------------------------------------------------------------------------------------------
// The gated MLP's activation: y = silu(gate) · up.
struct SiluMul;

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        macro_rules! run {
            ($variant:ident, $g:expr, $u:expr) => {{
                let (g, u) = (slice($g, l1)?, slice($u, l2)?);
                let mut out = vec![Default::default(); g.len()];
                out.par_iter_mut()
                    .zip(g.par_iter().zip(u.par_iter()))
                    .for_each(|(o, (&g, &u))| *o = g * g.sigmoid() * u);
                CpuStorage::$variant(out)
            }};
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(g), CpuStorage::F32(u)) => run!(F32, g, u),
            (CpuStorage::F64(g), CpuStorage::F64(u)) => run!(F64, g, u),
            _ => candle_core::bail!("silu-mul-grad: gate and up must share f32 or f64"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        // Two passes on purpose: one op writing both gradients into a stacked buffer saved
        // the second sigmoid but raised LoRA's and QLoRA's peaks by about 8 MB (the 12.6 MB
        // block lives until both gradients are taken), enough to undo QLoRA's margin.
        let dg = g.apply_op3_no_bwd(u, &dy, &SiluMulBackward { gate: true })?;
        let du = g.apply_op3_no_bwd(u, &dy, &SiluMulBackward { gate: false })?;
        Ok((Some(dg), Some(du)))
    }
}

pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, SiluMul)
}

// ---------------------------------------------------------------------------------------------
/// A scalar that starts a backward pass with a gradient already known: its value is `value`
/// and the gradient it hands its input is `grad` (times the gradient it receives). Written as
/// `(x · grad).sum()` the product, a materialised copy of the incoming gradient and a gradient
/// for `grad` itself would each stay in memory for the whole backward pass.
struct GradientSeed {
    grad: Tensor,
    value: f32,
}

impl CustomOp1 for GradientSeed {
    fn name(&self) -> &'static str {
        "gradient-seed"
    }

    fn cpu_fwd(&self, _s: &CpuStorage, _l: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((CpuStorage::F32(vec![self.value]), Shape::from(())))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let scale = dy.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        Ok(Some(if scale == 1.0 {
            self.grad.clone()
        } else {
            (&self.grad * scale)?
        }))
    }
}

/// An f32 scalar equal to `value` whose gradient with respect to `x` is `grad` (the shape of
/// `x`). Off the CPU it is built from tensor ops: `value + (x·grad).sum() − its detached copy`.
pub fn seeded_scalar(x: &Tensor, grad: &Tensor, value: f32) -> Result<Tensor> {
    if x.device().is_cpu() {
        return x.apply_op1(GradientSeed {
            grad: grad.detach(),
            value,
        });
    }
    let s = (x * grad.detach())?.sum_all()?;
    (&s - s.detach())?
        .to_dtype(candle_core::DType::F32)?
        .affine(1.0, value as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// Compares the analytic gradient of `loss = Σ f(inputs)·probe` with central differences,
    /// in f64, for every input element.
    fn check_gradients(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let out = f(&tensors).unwrap();
        let probe = Tensor::randn(0f64, 1.0, out.shape(), &Device::Cpu).unwrap();
        let loss = |ts: &[Tensor]| -> f64 {
            (f(ts).unwrap() * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let grads = (out * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let h = 1e-6;
        for (k, var) in vars.iter().enumerate() {
            let analytic: Vec<f64> = grads
                .get(var.as_tensor())
                .expect("gradient reaches every input")
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let base: Vec<f64> = inputs[k].flatten_all().unwrap().to_vec1().unwrap();
            for i in 0..base.len() {
                let shifted = |delta: f64| {
                    let mut v = base.clone();
                    v[i] += delta;
                    let mut ts: Vec<Tensor> = inputs.to_vec();
                    ts[k] = Tensor::from_vec(v, inputs[k].shape(), &Device::Cpu).unwrap();
                    loss(&ts)
                };
                let numeric = (shifted(h) - shifted(-h)) / (2.0 * h);
                let err = (numeric - analytic[i]).abs() / numeric.abs().max(1.0);
                assert!(
                    err < 1e-6,
                    "input {k} element {i}: finite difference {numeric}, backward {}",
                    analytic[i]
                );
            }
        }
    }

    fn randn(shape: &[usize]) -> Tensor {
        Tensor::randn(0f64, 1.0, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn rms_norm_backward_matches_finite_differences() {
        check_gradients(&[randn(&[2, 3, 8]), randn(&[8])], |t| {
            rms_norm(&t[0], &t[1], 1e-5)
        });
    }

    #[test]
    fn a_seeded_scalar_has_its_value_and_hands_on_its_gradient() {
        let x = Var::from_tensor(&randn(&[2, 3])).unwrap();
        let grad = randn(&[2, 3]);
        let y = seeded_scalar(x.as_tensor(), &grad, 2.5).unwrap();
        assert_eq!(y.to_scalar::<f32>().unwrap(), 2.5);
        let store = (y * 3.0).unwrap().backward().unwrap();
        let want = (&grad * 3.0).unwrap();
        let diff = crate::layers::max_abs_diff(store.get(x.as_tensor()).unwrap(), &want).unwrap();
        assert_eq!(diff, 0.0);
    }

    #[test]
    fn rms_norm_gives_a_frozen_weight_no_gradient() {
        let x = Var::from_tensor(&randn(&[2, 3, 8])).unwrap();
        let w = randn(&[8]);
        let grads = rms_norm(x.as_tensor(), &w, 1e-5)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(x.as_tensor()).is_some());
        assert!(grads.get(&w).is_none());
    }

    #[test]
    fn softmax_backward_matches_finite_differences() {
        check_gradients(&[randn(&[2, 4, 6])], |t| softmax_last_dim(&t[0]));
        // Rows are queries at positions 2 + r % 3 over 6 keys: keys after each are masked.
        check_gradients(&[randn(&[2, 6, 6])], |t| {
            causal_softmax_last_dim(&t[0], 3, 2)
        });
    }

    #[test]
    fn rope_backward_matches_finite_differences() {
        let (cos, sin) =
            crate::layers::rotary_tables(&[1.0, 0.1, 0.01], 3, 5, &Device::Cpu).unwrap();
        let (cos, sin) = (
            cos.to_dtype(DType::F64).unwrap(),
            sin.to_dtype(DType::F64).unwrap(),
        );
        check_gradients(&[randn(&[1, 2, 5, 6])], |t| rope(&t[0], &cos, &sin));
    }

    #[test]
    fn silu_mul_backward_matches_finite_differences() {
        check_gradients(&[randn(&[3, 7]), randn(&[3, 7])], |t| {
            silu_mul(&t[0], &t[1])
        });
    }

    #[test]
    fn forward_results_equal_candles_fused_kernels() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 5, 8), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, 8, &dev).unwrap();
        let close = |a: Tensor, b: Tensor| {
            a.sub(&b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                < 1e-5
        };
        assert!(close(
            rms_norm(&x, &w, 1e-5).unwrap(),
            candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap()
        ));
        assert!(close(
            softmax_last_dim(&x).unwrap(),
            candle_nn::ops::softmax_last_dim(&x).unwrap()
        ));
        // The in-kernel causal mask equals adding the model's mask and taking the softmax:
        // rows stacked as (rep · t) queries at offset 4, as grouped-query attention lays them.
        let (t, offset, keys) = (3, 4, 7);
        let scores = Tensor::randn(0f32, 1.0, (2, 2 * t, keys), &dev).unwrap();
        let mask = crate::layers::causal_mask(t, offset, &dev).unwrap();
        let masked = scores
            .reshape((2, 2, t, keys))
            .unwrap()
            .broadcast_add(&mask)
            .unwrap()
            .reshape((2, 2 * t, keys))
            .unwrap();
        assert!(close(
            causal_softmax_last_dim(&scores, t, offset).unwrap(),
            candle_nn::ops::softmax_last_dim(&masked).unwrap()
        ));
        let (cos, sin) = crate::layers::rotary_tables(&[1.0, 0.5, 0.1, 0.01], 7, 5, &dev).unwrap();
        assert!(close(
            rope(&x, &cos, &sin).unwrap(),
            candle_nn::rotary_emb::rope(&x, &cos, &sin).unwrap()
        ));
        let g = Tensor::randn(0f32, 1.0, (4, 6), &dev).unwrap();
        let u = Tensor::randn(0f32, 1.0, (4, 6), &dev).unwrap();
        assert!(close(
            silu_mul(&g, &u).unwrap(),
            (candle_nn::ops::silu(&g).unwrap() * &u).unwrap()
        ));
    }
}
