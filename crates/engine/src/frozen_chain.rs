//! Training through runs of frozen layers while keeping only each run's input.
//!
//! Without activation checkpointing, candle keeps every tensor a recorded op took until
//! backward is done. Between frozen layers most of them are needed by no gradient: a frozen
//! linear layer's backward needs its weight, not its input, and a rotation's needs only its
//! angles. A soft prompt trains through a base that is frozen everywhere, so each block kept
//! its two normed inputs, the projections before they were rotated and their copies in the
//! heads' layout, the attention output's copy and the MLP's activation, none of which its
//! gradients read.
//!
//! Each chain below is one recorded op instead (`portable::with_backward`): its forward runs
//! the layers with nothing recorded, so the tensors between them are freed as soon as the next
//! one is made, and its backward recomputes what it needs from the chain's input (an RMSNorm's
//! scale, an activation), which costs a pass over the rows, not a matrix product. The chains
//! run where every layer in them is frozen (`Linear::is_frozen`, a norm weight that is not a
//! variable) on the CPU in f32; the blocks choose them in `model.rs`.

use candle_core::{Result, Tensor};

use crate::backward_kernels::{RmsNormBackward, RmsPart, SiluMulBackward};
use crate::grad_ops;
use crate::layers::{Linear, Mode, RmsNorm, Weight};
use crate::portable::{with_backward, with_backward2};

/// `dy · W` for a frozen `(n, k)` weight: the gradient of `x Wᵀ` with respect to `x`, for `dy`
/// of any shape ending in `n`. Quantized weights are decoded for it and dropped after.
fn through_frozen(weight: &Weight, dy: &Tensor) -> Result<Tensor> {
    let w = weight
        .to_dense(dy.device())
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let (n, k) = w.dims2()?;
    let rows = dy.elem_count() / n;
    let mut dims = dy.dims().to_vec();
    *dims.last_mut().expect("gradients have a last dimension") = k;
    dy.contiguous()?
        .reshape((rows, n))?
        .matmul(&w)?
        .reshape(dims)
}

/// RMSNorm's input gradient for a frozen weight.
fn norm_input_grad(x: &Tensor, norm: &Tensor, eps: f64, dy: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op3_no_bwd(
        norm,
        &dy.contiguous()?,
        &RmsNormBackward {
            eps,
            part: RmsPart::Input,
        },
    )
}

/// The frozen layer's product on untracked input (its forward kernels, nothing recorded).
fn frozen_forward(linear: &Linear, x: &Tensor) -> Result<Tensor> {
    linear
        .forward_mode(&x.detach(), Mode::Training)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))
}

/// `(b, t, heads · d)` → `(b, heads, t, d)`, contiguous.
fn to_heads(y: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, n) = y.dims3()?;
    y.reshape((b, t, heads, n / heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// `(b, heads, t, d)` → `(b, t, heads · d)`, contiguous.
fn from_heads(y: &Tensor) -> Result<Tensor> {
    let (b, h, t, d) = y.dims4()?;
    y.transpose(1, 2)?.contiguous()?.reshape((b, t, h * d))
}

/// The rotation a projection gets (queries and keys): the tables of `rope`.
pub(crate) struct Rotation<'a> {
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
}

/// `rope(heads(linear(rms_norm(x))))`, or without the rotation when `rotation` is `None`: an
/// attention projection `(b, heads, t, d)` from the block's input `x`, keeping only `x`.
pub(crate) fn norm_project_heads(
    x: &Tensor,
    norm: &RmsNorm,
    linear: &Linear,
    heads: usize,
    rotation: Option<Rotation>,
) -> Result<Tensor> {
    let eps = f64::from(norm.eps);
    let normed = grad_ops::rms_norm(&x.detach(), &norm.weight.detach(), eps)?;
    let projected = to_heads(&frozen_forward(linear, &normed)?, heads)?;
    drop(normed);
    let tables = rotation.map(|r| (r.cos.detach(), r.sin.detach()));
    let value = match &tables {
        Some((cos, sin)) => grad_ops::rope(&projected, cos, sin)?,
        None => projected,
    };
    let (norm_weight, weight) = (norm.weight.detach(), linear.weight.clone());
    with_backward(value, x, move |x, _value, dy| {
        let dy = match &tables {
            // A rotation's transpose rotates back.
            Some((cos, sin)) => grad_ops::rope(&dy.contiguous()?, cos, &sin.neg()?)?,
            None => dy.clone(),
        };
        let d_normed = through_frozen(&weight, &from_heads(&dy)?)?;
        norm_input_grad(x, &norm_weight, eps, &d_normed)
    })
}

/// `linear(rms_norm(x))`: the MLP's gate or up projection from the block's input, keeping
/// only `x`.
pub(crate) fn norm_project(x: &Tensor, norm: &RmsNorm, linear: &Linear) -> Result<Tensor> {
    let eps = f64::from(norm.eps);
    let normed = grad_ops::rms_norm(&x.detach(), &norm.weight.detach(), eps)?;
    let value = frozen_forward(linear, &normed)?;
    drop(normed);
    let (norm_weight, weight) = (norm.weight.detach(), linear.weight.clone());
    with_backward(value, x, move |x, _value, dy| {
        norm_input_grad(x, &norm_weight, eps, &through_frozen(&weight, dy)?)
    })
}

/// `linear(x)` on attention's output in the heads' layout `(b, heads, t, d)`: the output
/// projection, without keeping a copy of `x` in the `(b, t, heads · d)` layout.
pub(crate) fn heads_project(x: &Tensor, linear: &Linear) -> Result<Tensor> {
    let value = frozen_forward(linear, &from_heads(&x.detach())?)?;
    let weight = linear.weight.clone();
    with_backward(value, x, move |x, _value, dy| {
        let (b, h, t, d) = x.dims4()?;
        through_frozen(&weight, dy)?
            .reshape((b, t, h, d))?
            .transpose(1, 2)?
            .contiguous()
    })
}

/// `linear(silu(gate) · up)`: the MLP's down projection, keeping `gate` and `up` (which the
/// activation's gradient reads) but not the activation.
pub(crate) fn silu_mul_project(gate: &Tensor, up: &Tensor, linear: &Linear) -> Result<Tensor> {
    let hidden = grad_ops::silu_mul(&gate.detach(), &up.detach())?;
    let value = frozen_forward(linear, &hidden)?;
    drop(hidden);
    let weight = linear.weight.clone();
    with_backward2(value, gate, up, move |gate, up, _value, dy| {
        let d_hidden = through_frozen(&weight, dy)?;
        let (gate, up) = (gate.contiguous()?, up.contiguous()?);
        let dg = gate.apply_op3_no_bwd(&up, &d_hidden, &SiluMulBackward { gate: true })?;
        let du = gate.apply_op3_no_bwd(&up, &d_hidden, &SiluMulBackward { gate: false })?;
        Ok((Some(dg), Some(du)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// A frozen linear layer of random weights, `(n, k)`, dense or in GGUF blocks.
    fn frozen(n: usize, k: usize, quantized: bool) -> Linear {
        let w = Tensor::randn(0f32, 0.2, (n, k), &Device::Cpu).unwrap();
        let weight = if quantized {
            let q = candle_core::quantized::QTensor::quantize(
                &w,
                candle_core::quantized::GgmlDType::Q8_0,
            )
            .unwrap();
            Weight::quantized(q).unwrap()
        } else {
            Weight::Dense(w)
        };
        Linear::new(weight, None)
    }

    fn norm(k: usize) -> RmsNorm {
        RmsNorm {
            weight: (Tensor::rand(0.5f32, 1.5, k, &Device::Cpu).unwrap()),
            eps: 1e-5,
        }
    }

    fn tables(t: usize, d: usize) -> (Tensor, Tensor) {
        let angles = Tensor::rand(0f32, 3.0, (t, d / 2), &Device::Cpu).unwrap();
        (angles.cos().unwrap(), angles.sin().unwrap())
    }

    /// The gradient a fixed random projection of `f`'s output sends back to `inputs`, through
    /// the chain and through the same layers op by op.
    fn grads(
        inputs: &[Tensor],
        chain: impl Fn(&[Tensor]) -> Tensor,
        layers: impl Fn(&[Tensor]) -> Tensor,
    ) -> (Vec<Tensor>, Vec<Tensor>) {
        let run = |f: &dyn Fn(&[Tensor]) -> Tensor| {
            let vars: Vec<Var> = inputs
                .iter()
                .map(|t| Var::from_tensor(t).unwrap())
                .collect();
            let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
            let y = f(&tensors);
            let probe = Tensor::ones(y.shape(), y.dtype(), y.device())
                .unwrap()
                .cumsum(candle_core::D::Minus1)
                .unwrap()
                .cos()
                .unwrap();
            let grads = (y * probe).unwrap().sum_all().unwrap().backward().unwrap();
            vars.iter()
                .map(|v| grads.get(v.as_tensor()).expect("a gradient").clone())
                .collect::<Vec<_>>()
        };
        (run(&chain), run(&layers))
    }

    fn assert_close(got: &[Tensor], want: &[Tensor], what: &str) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let scale = crate::layers::max_abs(w).unwrap();
            let diff = crate::layers::max_abs_diff(g, w).unwrap();
            assert!(
                diff <= 1e-4 * scale.max(1.0),
                "{what}: gradient {i} differs by {diff} (up to {scale})"
            );
        }
    }

    #[test]
    fn each_chain_equals_its_layers_forward_and_backward() {
        let (b, t, k, heads, d) = (2, 5, 32, 2, 16);
        let x = Tensor::randn(0f32, 1.0, (b, t, k), &Device::Cpu).unwrap();
        let (cos, sin) = tables(t, d);
        for quantized in [false, true] {
            let (n, q) = (norm(k), frozen(heads * d, k, quantized));
            let layers = |x: &Tensor, rotate: bool| {
                let y = q
                    .forward_mode(
                        &grad_ops::rms_norm(x, &n.weight, 1e-5).unwrap(),
                        Mode::Training,
                    )
                    .unwrap();
                let y = to_heads(&y, heads).unwrap();
                if rotate {
                    grad_ops::rope(&y, &cos, &sin).unwrap()
                } else {
                    y
                }
            };
            for rotate in [true, false] {
                let chain = |x: &[Tensor]| {
                    let rotation = rotate.then_some(Rotation {
                        cos: &cos,
                        sin: &sin,
                    });
                    norm_project_heads(&x[0], &n, &q, heads, rotation).unwrap()
                };
                let want = layers(&x, rotate);
                let diff =
                    crate::layers::max_abs_diff(&chain(std::slice::from_ref(&x)), &want).unwrap();
                assert!(diff < 1e-5, "forward differs by {diff}");
                let (got, want) = grads(std::slice::from_ref(&x), chain, |x| layers(&x[0], rotate));
                assert_close(
                    &got,
                    &want,
                    &format!("norm → projection (rotated: {rotate})"),
                );
            }

            let (got, want) = grads(
                std::slice::from_ref(&x),
                |x| norm_project(&x[0], &n, &q).unwrap(),
                |x| {
                    q.forward_mode(
                        &grad_ops::rms_norm(&x[0], &n.weight, 1e-5).unwrap(),
                        Mode::Training,
                    )
                    .unwrap()
                },
            );
            assert_close(&got, &want, "norm → projection");

            let o = frozen(k, heads * d, quantized);
            let attended = Tensor::randn(0f32, 1.0, (b, heads, t, d), &Device::Cpu).unwrap();
            let (got, want) = grads(
                &[attended],
                |x| heads_project(&x[0], &o).unwrap(),
                |x| {
                    o.forward_mode(&from_heads(&x[0]).unwrap(), Mode::Training)
                        .unwrap()
                },
            );
            assert_close(&got, &want, "heads → output projection");

            let down = frozen(k, 3 * k, quantized);
            let gate = Tensor::randn(0f32, 1.0, (b, t, 3 * k), &Device::Cpu).unwrap();
            let up = Tensor::randn(0f32, 1.0, (b, t, 3 * k), &Device::Cpu).unwrap();
            let (got, want) = grads(
                &[gate, up],
                |x| silu_mul_project(&x[0], &x[1], &down).unwrap(),
                |x| {
                    down.forward_mode(&grad_ops::silu_mul(&x[0], &x[1]).unwrap(), Mode::Training)
                        .unwrap()
                },
            );
            assert_close(&got, &want, "activation → down projection");
        }
    }

    #[test]
    fn the_norm_chain_matches_finite_differences() {
        // The op-by-op layers are checked against finite differences in grad_ops; this holds
        // the chain to them directly too (f32, so a wide step and a loose bound).
        let (b, t, k) = (1, 3, 8);
        let x = Tensor::randn(0f32, 1.0, (b, t, k), &Device::Cpu).unwrap();
        let (n, q) = (norm(k), frozen(4, k, false));
        // The chain's output against fixed weights: a scalar to differentiate.
        let probed = |x: &Tensor| {
            let y = norm_project(x, &n, &q).unwrap();
            let probe = Tensor::arange(0f32, y.elem_count() as f32, &Device::Cpu)
                .unwrap()
                .reshape(y.shape())
                .unwrap()
                .cos()
                .unwrap();
            (y * probe).unwrap().sum_all().unwrap()
        };
        let f = |x: &Tensor| f64::from(probed(x).to_scalar::<f32>().unwrap());
        let var = Var::from_tensor(&x).unwrap();
        let grads = probed(var.as_tensor()).backward().unwrap();
        let analytic: Vec<f32> = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let values: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let h = 1e-2f32;
        for i in 0..values.len() {
            let at = |delta: f32| {
                let mut v = values.clone();
                v[i] += delta;
                f(&Tensor::from_vec(v, x.shape(), &Device::Cpu).unwrap())
            };
            let numeric = (at(h) - at(-h)) / (2.0 * f64::from(h));
            let err = (numeric - f64::from(analytic[i])).abs();
            assert!(
                err < 2e-2 * numeric.abs().max(1.0),
                "x[{i}]: finite differences {numeric}, backward {}",
                analytic[i]
            );
        }
    }
}
