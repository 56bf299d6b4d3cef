//! The CPU loops of the training ops' backward passes (`grad_ops`), each one pass over its
//! inputs with no temporaries the size of an activation. Written with tensor operations, these
//! backward passes made several such temporaries each; the gated activation's alone made ten
//! the size of the MLP's hidden layer, the peak of a LoRA step's memory.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape};
use rayon::prelude::*;

use crate::fast_exp::Exp;
use crate::grad_ops::slice;

/// Which gradient of RMSNorm a [`RmsNormBackward`] computes.
#[derive(Clone, Copy)]
pub(crate) enum RmsPart {
    Input,
    Weight,
}

/// RMSNorm's backward on the CPU, one pass over each row and no temporaries the size of the
/// input: `dx = r·(dy·w) − x·r³·mean(dy·w·x)` or `dw = Σ_rows dy·x·r`, with
/// `r = 1/sqrt(mean(x²) + eps)`.
pub(crate) struct RmsNormBackward {
    pub eps: f64,
    pub part: RmsPart,
}

impl CustomOp3 for RmsNormBackward {
    fn name(&self) -> &'static str {
        "rms-norm-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dim = xl.shape().dims().last().copied().unwrap_or(1);
        let (eps, part) = (self.eps, self.part);
        macro_rules! run {
            ($variant:ident, $t:ty, $x:expr, $w:expr, $dy:expr) => {{
                let (x, w, dy) = (slice($x, xl)?, slice($w, wl)?, slice($dy, dyl)?);
                let inv_rms = |row: &[$t]| -> $t {
                    let ms =
                        row.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / dim as f64;
                    (1.0 / (ms + eps).sqrt()) as $t
                };
                match part {
                    RmsPart::Input => {
                        let mut dx = vec![0 as $t; x.len()];
                        dx.par_chunks_mut(dim)
                            .zip(x.par_chunks(dim).zip(dy.par_chunks(dim)))
                            .for_each(|(dx, (x, dy))| {
                                let r = inv_rms(x);
                                let proj = x
                                    .iter()
                                    .zip(dy)
                                    .zip(w)
                                    .map(|((x, dy), w)| (x * dy * w) as f64)
                                    .sum::<f64>()
                                    / dim as f64;
                                let c = (r as f64).powi(3) * proj;
                                for (((o, x), dy), w) in dx.iter_mut().zip(x).zip(dy).zip(w) {
                                    *o = r * dy * w - x * c as $t;
                                }
                            });
                        (CpuStorage::$variant(dx), xl.shape().clone())
                    }
                    RmsPart::Weight => {
                        let dw = x
                            .par_chunks(dim)
                            .zip(dy.par_chunks(dim))
                            .fold(
                                || vec![0f64; dim],
                                |mut acc, (x, dy)| {
                                    let r = inv_rms(x) as f64;
                                    for ((a, x), dy) in acc.iter_mut().zip(x).zip(dy) {
                                        *a += (*x as f64) * (*dy as f64) * r;
                                    }
                                    acc
                                },
                            )
                            .reduce(
                                || vec![0f64; dim],
                                |mut a, b| {
                                    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                                    a
                                },
                            );
                        let dw: Vec<$t> = dw.into_iter().map(|v| v as $t).collect();
                        (CpuStorage::$variant(dw), wl.shape().clone())
                    }
                }
            }};
        }
        Ok(match (xs, ws, dys) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(dy)) => {
                run!(F32, f32, x, w, dy)
            }
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(dy)) => {
                run!(F64, f64, x, w, dy)
            }
            _ => candle_core::bail!("rms-norm backward takes matching f32 or f64 tensors"),
        })
    }
}

/// `dx = y·(dy − Σ dy·y)` row by row in one pass over the memory.
pub(crate) struct SoftmaxBackward;

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax-backward"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dim = yl.shape().dims().last().copied().unwrap_or(1);
        fn run<T>(y: &[T], dy: &[T], dim: usize) -> Vec<T>
        where
            T: Copy + Send + Sync + Default,
            T: std::ops::Add<Output = T> + std::ops::Sub<Output = T> + std::ops::Mul<Output = T>,
        {
            let mut out = vec![T::default(); y.len()];
            out.par_chunks_mut(dim)
                .zip(y.par_chunks(dim).zip(dy.par_chunks(dim)))
                .for_each(|(o, (y, dy))| {
                    let dot = y
                        .iter()
                        .zip(dy)
                        .fold(T::default(), |acc, (&a, &b)| acc + a * b);
                    for ((o, &y), &dy) in o.iter_mut().zip(y).zip(dy) {
                        *o = y * (dy - dot);
                    }
                });
            out
        }
        let out = match (ys, dys) {
            (CpuStorage::F32(y), CpuStorage::F32(dy)) => {
                CpuStorage::F32(run(slice(y, yl)?, slice(dy, dyl)?, dim))
            }
            (CpuStorage::F64(y), CpuStorage::F64(dy)) => {
                CpuStorage::F64(run(slice(y, yl)?, slice(dy, dyl)?, dim))
            }
            _ => candle_core::bail!("softmax backward takes matching f32 or f64 tensors"),
        };
        Ok((out, yl.shape().clone()))
    }
}

/// The gated activation's backward on the CPU in one pass: with `gate`,
/// `dg = dy·u·σ(g)·(1 + g·(1 − σ(g)))`, otherwise `du = dy·g·σ(g)`. The tensor-op version
/// made ten temporaries the size of the MLP's hidden layer, the peak of a LoRA step's memory.
pub(crate) struct SiluMulBackward {
    /// The gate's gradient, or the up projection's.
    pub gate: bool,
}

impl CustomOp3 for SiluMulBackward {
    fn name(&self) -> &'static str {
        "silu-mul-backward"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        macro_rules! run {
            ($variant:ident, $t:ty, $g:expr, $u:expr, $dy:expr) => {{
                let (g, u, dy) = (slice($g, gl)?, slice($u, ul)?, slice($dy, dyl)?);
                let mut out = vec![0 as $t; g.len()];
                let gate = self.gate;
                out.par_iter_mut()
                    .zip(g.par_iter().zip(u.par_iter().zip(dy.par_iter())))
                    .for_each(|(o, (&g, (&u, &dy)))| {
                        let sig = g.sigmoid();
                        *o = if gate {
                            dy * u * sig * (1.0 + g * (1.0 - sig))
                        } else {
                            dy * g * sig
                        };
                    });
                CpuStorage::$variant(out)
            }};
        }
        let out = match (gs, us, dys) {
            (CpuStorage::F32(g), CpuStorage::F32(u), CpuStorage::F32(dy)) => {
                run!(F32, f32, g, u, dy)
            }
            (CpuStorage::F64(g), CpuStorage::F64(u), CpuStorage::F64(dy)) => {
                run!(F64, f64, g, u, dy)
            }
            _ => candle_core::bail!("silu-mul backward takes matching f32 or f64 tensors"),
        };
        Ok((out, gl.shape().clone()))
    }
}
