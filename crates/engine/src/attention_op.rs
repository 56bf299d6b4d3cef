//! Causal grouped-query attention for training on the CPU, as one op with a hand-written
//! backward pass.
//!
//! Built from tensor ops, attention keeps its `(heads, t, t)` scores and probabilities for
//! backward and makes several more of that size while it runs: at batch 4 × 256 tokens that
//! is about 40 MB per block, the largest part of a recomputed block's memory. Here each
//! (sequence, key/value head) pair is one task that works in two `t × t` scratch buffers of
//! its own; the backward pass recomputes the probabilities from the queries and keys instead
//! of keeping them (the way FlashAttention does), so nothing of size `t × t` outlives a task.
//!
//! Queries are `(b, heads, t, d)`, keys and values `(b, kv_heads, t, d)`, all contiguous;
//! query head `h` reads key/value head `h / (heads / kv_heads)`. Query `i` sees keys `0..=i`.

use crate::cpu_gemm::{matmul, rows, transposed};
use crate::grad_ops::slice;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

/// The element types the kernels run in (f32 for training, f64 for the gradient checks).
trait Real:
    Copy
    + Send
    + Sync
    + Default
    + 'static
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + From<f32>
    + crate::fast_exp::Exp
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INF: Self;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INF: Self = f32::NEG_INFINITY;
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INF: Self = f64::NEG_INFINITY;
}

/// Row `i` of `scores` (t × t) becomes softmax over keys `0..=i`; later keys get 0.
fn causal_softmax_rows<T: Real>(scores: &mut [T], t: usize) {
    for (i, row) in scores.chunks_mut(t).enumerate() {
        let (seen, hidden) = row.split_at_mut(i + 1);
        let max = seen
            .iter()
            .copied()
            .fold(T::NEG_INF, |a, b| if b > a { b } else { a });
        let mut total = T::ZERO;
        // The exponentials in a loop of their own, which vectorizes; the sum after, in order.
        for v in seen.iter_mut() {
            *v = (*v - max).exp_nonpositive();
        }
        for v in seen.iter() {
            total = total + *v;
        }
        for v in seen.iter_mut() {
            *v = *v / total;
        }
        hidden.iter_mut().for_each(|v| *v = T::ZERO);
    }
}

#[derive(Clone, Copy)]
struct Dims {
    heads: usize,
    kv_heads: usize,
    t: usize,
    d: usize,
}

impl Dims {
    fn rep(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// Probabilities `(t × t)` of query head `q_head` (t × d) against keys `k` (t × d).
fn probabilities<T: Real>(probs: &mut [T], q_head: &[T], k: &[T], dims: Dims, scale: T) {
    let (t, d) = (dims.t, dims.d);
    matmul(
        probs,
        (t, t, d),
        rows(q_head, d),
        transposed(k, d),
        scale,
        false,
    );
    causal_softmax_rows(probs, t);
}

fn forward<T: Real>(q: &[T], k: &[T], v: &[T], dims: Dims, scale: T) -> Vec<T> {
    let Dims { t, d, .. } = dims;
    let rep = dims.rep();
    let mut out = vec![T::ZERO; q.len()];
    // One task per (sequence, key/value head): the `rep` query heads that share it.
    out.par_chunks_mut(rep * t * d)
        .enumerate()
        .for_each(|(group, out)| {
            let kv = &k[group * t * d..(group + 1) * t * d];
            let vv = &v[group * t * d..(group + 1) * t * d];
            let mut probs = vec![T::ZERO; t * t];
            for r in 0..rep {
                let at = (group * rep + r) * t * d;
                probabilities(&mut probs, &q[at..at + t * d], kv, dims, scale);
                let o = &mut out[r * t * d..(r + 1) * t * d];
                matmul(o, (t, d, t), rows(&probs, t), rows(vv, d), T::ONE, false);
            }
        });
    out
}

/// Gradients of the queries, keys and values from the output's gradient `dout`.
fn backward<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    dout: &[T],
    dims: Dims,
    scale: T,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let Dims { t, d, .. } = dims;
    let rep = dims.rep();
    let mut dq = vec![T::ZERO; q.len()];
    let mut dk = vec![T::ZERO; k.len()];
    let mut dv = vec![T::ZERO; v.len()];
    dq.par_chunks_mut(rep * t * d)
        .zip(dk.par_chunks_mut(t * d).zip(dv.par_chunks_mut(t * d)))
        .enumerate()
        .for_each(|(group, (dq, (dk, dv)))| {
            let kv = &k[group * t * d..(group + 1) * t * d];
            let vv = &v[group * t * d..(group + 1) * t * d];
            let mut probs = vec![T::ZERO; t * t];
            let mut dprobs = vec![T::ZERO; t * t];
            for r in 0..rep {
                let at = (group * rep + r) * t * d;
                let (q_head, do_head) = (&q[at..at + t * d], &dout[at..at + t * d]);
                probabilities(&mut probs, q_head, kv, dims, scale);
                // dV += Pᵀ·dO, dP = dO·Vᵀ
                let p_t = transposed(&probs, t);
                matmul(dv, (t, d, t), p_t, rows(do_head, d), T::ONE, r > 0);
                matmul(
                    &mut dprobs,
                    (t, t, d),
                    rows(do_head, d),
                    transposed(vv, d),
                    T::ONE,
                    false,
                );
                // dS = P·(dP − Σⱼ P·dP), times the scale the scores were made with.
                for (p, dp) in probs.chunks(t).zip(dprobs.chunks_mut(t)) {
                    let dot = p
                        .iter()
                        .zip(dp.iter())
                        .fold(T::ZERO, |acc, (&p, &dp)| acc + p * dp);
                    for (dp, &p) in dp.iter_mut().zip(p) {
                        *dp = p * (*dp - dot) * scale;
                    }
                }
                // dQ = dS·K, dK += dSᵀ·Q
                let dq_head = &mut dq[r * t * d..(r + 1) * t * d];
                matmul(
                    dq_head,
                    (t, d, t),
                    rows(&dprobs, t),
                    rows(kv, d),
                    T::ONE,
                    false,
                );
                let ds_t = transposed(&dprobs, t);
                matmul(dk, (t, d, t), ds_t, rows(q_head, d), T::ONE, r > 0);
            }
        });
    (dq, dk, dv)
}

struct CausalAttention {
    scale: f64,
}

fn dims_of(q: &Layout, k: &Layout) -> Result<Dims> {
    let (&[b, heads, t, d], &[kb, kv_heads, kt, kd]) = (q.shape().dims(), k.shape().dims()) else {
        candle_core::bail!("causal attention takes (batch, heads, time, head_dim) tensors");
    };
    if (kb, kt, kd) != (b, t, d) || kv_heads == 0 || heads % kv_heads != 0 {
        candle_core::bail!(
            "causal attention: queries {:?} do not match keys {:?}",
            q.shape(),
            k.shape()
        );
    }
    Ok(Dims {
        heads,
        kv_heads,
        t,
        d,
    })
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = dims_of(ql, kl)?;
        if vl.shape() != kl.shape() {
            candle_core::bail!(
                "causal attention: values {:?} ≠ keys {:?}",
                vl.shape(),
                kl.shape()
            );
        }
        let out = match (qs, ks, vs) {
            (CpuStorage::F32(q), CpuStorage::F32(k), CpuStorage::F32(v)) => {
                CpuStorage::F32(forward(
                    slice(q, ql)?,
                    slice(k, kl)?,
                    slice(v, vl)?,
                    dims,
                    self.scale as f32,
                ))
            }
            (CpuStorage::F64(q), CpuStorage::F64(k), CpuStorage::F64(v)) => {
                CpuStorage::F64(forward(
                    slice(q, ql)?,
                    slice(k, kl)?,
                    slice(v, vl)?,
                    dims,
                    self.scale,
                ))
            }
            _ => candle_core::bail!("causal attention takes matching f32 or f64 tensors"),
        };
        Ok((out, ql.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        dout: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dout = dout.contiguous()?;
        let dims = dims_of(q.layout(), k.layout())?;
        let (qs, ql) = q.storage_and_layout();
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (ds, dl) = dout.storage_and_layout();
        macro_rules! run {
            ($variant:ident, $scale:expr) => {{
                let (
                    Storage::Cpu(CpuStorage::$variant(qd)),
                    Storage::Cpu(CpuStorage::$variant(kd)),
                    Storage::Cpu(CpuStorage::$variant(vd)),
                    Storage::Cpu(CpuStorage::$variant(dd)),
                ) = (&*qs, &*ks, &*vs, &*ds)
                else {
                    candle_core::bail!("causal attention backward takes matching CPU tensors");
                };
                let (dq, dk, dv) = backward(
                    slice(qd, ql)?,
                    slice(kd, kl)?,
                    slice(vd, vl)?,
                    slice(dd, dl)?,
                    dims,
                    $scale,
                );
                (
                    Tensor::from_vec(dq, q.shape(), q.device())?,
                    Tensor::from_vec(dk, k.shape(), k.device())?,
                    Tensor::from_vec(dv, v.shape(), v.device())?,
                )
            }};
        }
        let (dq, dk, dv) = match q.dtype() {
            candle_core::DType::F32 => run!(F32, self.scale as f32),
            candle_core::DType::F64 => run!(F64, self.scale),
            other => candle_core::bail!("causal attention takes f32 or f64, got {other:?}"),
        };
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// `softmax(q·kᵀ·scale + causal mask)·v` per query head, `(b, heads, t, d)`, on the CPU; the
/// backward pass recomputes the probabilities rather than keeping them.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        CausalAttention { scale },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    /// The same attention through tensor ops: scores, an added mask, softmax, values.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
        let (_, heads, t, _) = q.dims4().unwrap();
        let kv_heads = k.dim(1).unwrap();
        let rep = heads / kv_heads;
        let expand = |x: &Tensor| {
            let (b, g, t, d) = x.dims4().unwrap();
            x.unsqueeze(2)
                .unwrap()
                .broadcast_as((b, g, rep, t, d))
                .unwrap()
                .reshape((b, g * rep, t, d))
                .unwrap()
        };
        let (k, v) = (expand(k), expand(v));
        let mask: Vec<f64> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f64::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), q.device())
            .unwrap()
            .to_dtype(q.dtype())
            .unwrap();
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale)
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        let probs = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        probs.matmul(&v).unwrap()
    }

    fn randn(shape: &[usize]) -> Tensor {
        Tensor::randn(0f64, 1.0, shape, &Device::Cpu).unwrap()
    }

    /// Forward values and all three gradients equal autograd through the tensor-op version,
    /// with grouped-query heads (6 query heads over 2 key/value heads).
    #[test]
    fn matches_attention_through_tensor_ops() {
        let (q, k, v) = (
            randn(&[2, 6, 5, 4]),
            randn(&[2, 2, 5, 4]),
            randn(&[2, 2, 5, 4]),
        );
        let vars: Vec<Var> = [&q, &k, &v]
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let [qv, kv, vv] = [0, 1, 2].map(|i| vars[i].as_tensor().clone());
        let probe = randn(&[2, 6, 5, 4]);
        let scale = 0.5;

        let ours = causal_attention(&qv, &kv, &vv, scale).unwrap();
        let theirs = reference(&qv, &kv, &vv, scale);
        let diff = crate::layers::max_abs_diff(&ours, &theirs).unwrap();
        assert!(diff < 1e-12, "outputs differ by {diff}");

        let g_ours = (ours * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_theirs = (theirs * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, t) in [("q", &qv), ("k", &kv), ("v", &vv)] {
            let diff =
                crate::layers::max_abs_diff(g_ours.get(t).unwrap(), g_theirs.get(t).unwrap())
                    .unwrap();
            assert!(diff < 1e-10, "d{name} differs by {diff}");
        }
    }

    /// The hand-written backward against central differences, element by element.
    #[test]
    fn backward_matches_finite_differences() {
        let (q, k, v) = (
            randn(&[1, 2, 4, 3]),
            randn(&[1, 1, 4, 3]),
            randn(&[1, 1, 4, 3]),
        );
        let probe = randn(&[1, 2, 4, 3]);
        let loss = |q: &Tensor, k: &Tensor, v: &Tensor| -> f64 {
            (causal_attention(q, k, v, 0.7).unwrap() * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let vars: Vec<Var> = [&q, &k, &v]
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let grads = (causal_attention(
            vars[0].as_tensor(),
            vars[1].as_tensor(),
            vars[2].as_tensor(),
            0.7,
        )
        .unwrap()
            * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let inputs = [q, k, v];
        let h = 1e-6;
        for (which, var) in vars.iter().enumerate() {
            let analytic: Vec<f64> = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let base: Vec<f64> = inputs[which].flatten_all().unwrap().to_vec1().unwrap();
            for i in 0..base.len() {
                let shifted = |delta: f64| {
                    let mut values = base.clone();
                    values[i] += delta;
                    let mut ts = inputs.clone();
                    ts[which] =
                        Tensor::from_vec(values, inputs[which].shape(), &Device::Cpu).unwrap();
                    loss(&ts[0], &ts[1], &ts[2])
                };
                let numeric = (shifted(h) - shifted(-h)) / (2.0 * h);
                let err = (numeric - analytic[i]).abs() / numeric.abs().max(1.0);
                assert!(
                    err < 1e-6,
                    "input {which} element {i}: finite difference {numeric}, backward {}",
                    analytic[i]
                );
            }
        }
    }

    #[test]
    fn f32_matches_the_f64_result() {
        let (q, k, v) = (
            randn(&[2, 3, 7, 8]),
            randn(&[2, 3, 7, 8]),
            randn(&[2, 3, 7, 8]),
        );
        let wide = causal_attention(&q, &k, &v, 0.35).unwrap();
        let f32s = [&q, &k, &v].map(|t| t.to_dtype(candle_core::DType::F32).unwrap());
        let narrow = causal_attention(&f32s[0], &f32s[1], &f32s[2], 0.35)
            .unwrap()
            .to_dtype(candle_core::DType::F64)
            .unwrap();
        let diff = crate::layers::max_abs_diff(&wide, &narrow).unwrap();
        assert!(diff < 1e-5, "f32 differs from f64 by {diff}");
    }
}
