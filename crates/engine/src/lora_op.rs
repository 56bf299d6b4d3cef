//! A frozen linear layer and its LoRA adapter as one differentiable operation (CPU).
//!
//! Written with tensor operations, `x Wᵀ + s · (drop(x) Aᵀ) Bᵀ` keeps the dropout mask, the
//! dropped input, the adapter's output, its scaled copy and the sum for backward: four or five
//! activation-sized tensors per layer, seven layers per block. Here the forward pass returns
//! only `y`; backward regenerates the dropout mask from its seed and recomputes the rank-r
//! product, which costs a sliver of the layer's own matrix product.
//!
//! Backward, with `x_d = drop(x)`, `u = x_d Aᵀ` and `g = ∂L/∂y`:
//! `∂B = s · gᵀ u`, `∂u = s · g B`, `∂A = ∂uᵀ x_d`, `∂x = g W + drop(∂u A)`.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use crate::layers::{dropout_mask_seeded, Weight};
use crate::qmatmul::cpu_tensor as tensor;

pub(crate) struct LoraLinear {
    pub weight: Weight,
    pub scale: f64,
    pub dropout: f32,
    pub seed: u64,
}

impl LoraLinear {
    fn dense(&self) -> candle_core::Result<Tensor> {
        self.weight
            .to_dense(&candle_core::Device::Cpu)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    /// The adapter's input: `x` with the dropout mask of this call applied, and the mask.
    fn dropped(&self, x: &Tensor) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        if self.dropout <= 0.0 {
            return Ok((x.clone(), None));
        }
        let mask = dropout_mask_seeded(x, self.dropout, self.seed)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok(((x * &mask)?, Some(mask)))
    }
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "lora-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        a_s: &CpuStorage,
        al: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, a, b) = (tensor(xs, xl)?, tensor(a_s, al)?, tensor(bs, bl)?);
        let w = self.dense()?;
        let (xd, _) = self.dropped(&x)?;
        let low = (xd.matmul(&a.t()?)? * self.scale)?;
        drop(xd);
        let y = (x.matmul(&w.t()?)? + low.matmul(&b.t()?)?)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (x, a, b, dy) = (
            x.detach(),
            a.detach(),
            b.detach(),
            dy.detach().contiguous()?,
        );
        let w = self.dense()?;
        let (xd, mask) = self.dropped(&x)?;
        let low = xd.matmul(&a.t()?)?;
        let db = (dy.t()?.matmul(&low)? * self.scale)?;
        let dlow = (dy.matmul(&b)? * self.scale)?;
        let da = dlow.t()?.matmul(&xd)?;
        drop(xd);
        let dxd = dlow.matmul(&a)?;
        let dxd = match mask {
            Some(mask) => (dxd * mask)?,
            None => dxd,
        };
        let dx = (dy.matmul(&w)? + dxd)?;
        Ok((Some(dx), Some(da), Some(db)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The fused layer's output and gradients equal the tensor-op formulation's.
    #[test]
    fn matches_the_composed_layer() {
        let dev = Device::Cpu;
        let (rows, inp, out, rank) = (6, 8, 5, 3);
        let w = Tensor::randn(0f32, 1.0, (out, inp), &dev).unwrap();
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (rows, inp), &dev).unwrap()).unwrap();
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (rank, inp), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, (out, rank), &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (rows, out), &dev).unwrap();
        for dropout in [0.0, 0.3] {
            let op = LoraLinear {
                weight: Weight::Dense(w.clone()),
                scale: 1.5,
                dropout,
                seed: 42,
            };
            let fused = x
                .as_tensor()
                .apply_op3(a.as_tensor(), b.as_tensor(), op)
                .unwrap();
            let xd = if dropout > 0.0 {
                let mask = dropout_mask_seeded(x.as_tensor(), dropout, 42).unwrap();
                (x.as_tensor() * mask).unwrap()
            } else {
                x.as_tensor().clone()
            };
            let composed = (x.as_tensor().matmul(&w.t().unwrap()).unwrap()
                + (xd
                    .matmul(&a.as_tensor().t().unwrap())
                    .unwrap()
                    .matmul(&b.as_tensor().t().unwrap())
                    .unwrap()
                    * 1.5)
                    .unwrap())
            .unwrap();
            assert!(crate::layers::max_abs_diff(&fused, &composed).unwrap() < 1e-5);
            let gf = (fused * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gc = (composed * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for v in [&x, &a, &b] {
                let diff = crate::layers::max_abs_diff(
                    gf.get(v.as_tensor()).unwrap(),
                    gc.get(v.as_tensor()).unwrap(),
                )
                .unwrap();
                assert!(diff < 1e-4, "dropout {dropout}: gradient differs by {diff}");
            }
            assert!(gf.get(&w).is_none(), "the frozen weight keeps no gradient");
        }
    }
}
