//! Products with 16-bit weights on the CPU: `x @ Wᵀ` for f32 activations `x` and a bf16 or f16
//! weight `W`, which is what chatting over a 16-bit safetensors model computes. The weight is
//! never widened whole: up to [`GEMV_MAX_ROWS`] rows (decoding, a short prompt) read each
//! weight row once, widening it into a small buffer; more rows (a long prompt) widen a band of
//! output features at a time for the f32 GEMM, so the extra memory is one band, not a matrix.

use std::cell::RefCell;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use half::slice::HalfFloatSliceExt;

use crate::error::Result;
use crate::qmatmul::{by_output_features, has_avx2};

/// Widened weights a prompt's product holds at once: 4 Mi values (16 MiB).
const BAND_ELEMENTS: usize = 4 << 20;

/// Rows up to which each weight row is widened once and dotted with every row: a chat turn's
/// prompt is mostly this short, and widening whole bands for it cost more than the products.
pub(crate) const GEMV_MAX_ROWS: usize = 64;

/// Whether [`forward`] computes `x @ wᵀ`: a 16-bit weight and f32 activations, on the CPU.
pub fn applies(w: &Tensor, x: &Tensor) -> bool {
    matches!(w.dtype(), DType::BF16 | DType::F16)
        && x.dtype() == DType::F32
        && x.device().is_cpu()
        && w.device().is_cpu()
}

/// `x (.., k) @ wᵀ` for a 16-bit `w (n, k)` and f32 `x`, in f32. Records no gradient: for
/// answering, not training.
pub fn forward(w: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (n, k) = w.dims2()?;
    let rows = x.elem_count() / k.max(1);
    let mut dims = x.dims().to_vec();
    *dims.last_mut().expect("linear input has a last dimension") = n;
    let flat = x.reshape((rows, k))?.contiguous()?;
    let y = if rows <= GEMV_MAX_ROWS {
        flat.apply_op2_no_bwd(&w.contiguous()?, &HalfGemv)?
    } else {
        banded(&flat, w, (BAND_ELEMENTS / k.max(1)).clamp(1, n))?
    };
    Ok(y.reshape(dims)?)
}

/// `x (m, k) @ wᵀ` with `band` output features widened to f32 at a time.
fn banded(x: &Tensor, w: &Tensor, band: usize) -> candle_core::Result<Tensor> {
    let n = w.dim(0)?;
    let parts = (0..n)
        .step_by(band)
        .map(|start| {
            let wide = w
                .narrow(0, start, band.min(n - start))?
                .to_dtype(DType::F32)?;
            x.matmul(&wide.t()?)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Tensor::cat(&parts, 1)
}

/// `x (m, k) @ Wᵀ` for few rows, parallel over `W`'s rows (output features).
struct HalfGemv;

thread_local! {
    /// One weight row widened to f32, reused by every row this thread computes.
    static WIDE_ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl CustomOp2 for HalfGemv {
    fn name(&self) -> &'static str {
        "half-gemv"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = xl.shape().dims2()?;
        let (n, k2) = wl.shape().dims2()?;
        if k != k2 {
            candle_core::bail!(
                "half-gemv: activations ({m}, {k}) do not match weights ({n}, {k2})"
            );
        }
        let x = match (xs, xl.contiguous_offsets()) {
            (CpuStorage::F32(v), Some((a, b))) => &v[a..b],
            _ => candle_core::bail!("half-gemv takes contiguous f32 activations"),
        };
        let offsets = wl
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("half-gemv needs a contiguous weight".into()))?;
        let mut y = vec![0f32; m * n];
        match ws {
            CpuStorage::BF16(w) => gemv(&w[offsets.0..offsets.1], k, x, &mut y),
            CpuStorage::F16(w) => gemv(&w[offsets.0..offsets.1], k, x, &mut y),
            other => candle_core::bail!(
                "half-gemv takes bf16 or f16 weights, not {:?}",
                other.dtype()
            ),
        }
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }
}

/// `y (m, n) = x (m, k) @ wᵀ` for a 16-bit `w (n, k)`: each weight row is widened once into
/// this thread's buffer and dotted with every row of `x`.
fn gemv<E: Sync>(w: &[E], k: usize, x: &[f32], y: &mut [f32])
where
    [E]: HalfFloatSliceExt,
{
    let (m, n) = (x.len() / k, w.len() / k);
    let avx2 = has_avx2();
    by_output_features(n, m, y, |j, values| {
        WIDE_ROW.with_borrow_mut(|wide| {
            wide.resize(k, 0.0);
            w[j * k..(j + 1) * k].convert_to_f32_slice(wide);
            for (r, v) in values.iter_mut().enumerate() {
                *v = dot(wide, &x[r * k..(r + 1) * k], avx2);
            }
        })
    });
}

/// Σ a·b over equal-length slices.
fn dot(a: &[f32], b: &[f32], avx2: bool) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { dot_fma(a, b) };
    }
    let _ = avx2;
    dot_lanes(a, b, |acc, x, y| acc + x * y)
}

/// The same sum compiled for AVX2, with fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_fma(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b, |acc, x, y| x.mul_add(y, acc))
}

/// Sixteen independent accumulators, so the compiler keeps two vector registers of partial
/// sums instead of one serial chain.
#[inline(always)]
pub(crate) fn dot_lanes(a: &[f32], b: &[f32], step: impl Fn(f32, f32, f32) -> f32) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] = step(acc[i], xa[i], xb[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn product_matches_the_widened_weight(dtype: DType, rows: usize) {
        // 100 inputs: six blocks of the kernel's 16 lanes and a remainder of 4.
        let (n, k) = (70, 100);
        let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, rows, k), &Device::Cpu).unwrap();
        assert!(applies(&w, &x));
        let got = forward(&w, &x).unwrap();
        assert_eq!(got.dims(), &[1, rows, n]);
        let want = x
            .reshape((rows, k))
            .unwrap()
            .matmul(&w.to_dtype(DType::F32).unwrap().t().unwrap())
            .unwrap();
        let diff = crate::layers::max_abs_diff(&got.reshape((rows, n)).unwrap(), &want).unwrap();
        assert!(diff < 1e-4, "{dtype:?}, {rows} rows: off by {diff}");
    }

    #[test]
    fn few_rows_read_16_bit_rows_as_the_widened_product() {
        for dtype in [DType::BF16, DType::F16] {
            for rows in [1, 3, 17, GEMV_MAX_ROWS] {
                product_matches_the_widened_weight(dtype, rows);
            }
        }
    }

    #[test]
    fn many_rows_widen_bands_as_the_whole_product() {
        product_matches_the_widened_weight(DType::BF16, GEMV_MAX_ROWS + 5);
        product_matches_the_widened_weight(DType::F16, 100);
        // Several bands, the last one short.
        let w = Tensor::randn(0f32, 1.0, (70, 32), &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (12, 32), &Device::Cpu).unwrap();
        let w = w.to_dtype(DType::BF16).unwrap();
        let wide = x
            .matmul(&w.to_dtype(DType::F32).unwrap().t().unwrap())
            .unwrap();
        let got = banded(&x, &w, 16).unwrap();
        assert_eq!(got.dims(), &[12, 70]);
        assert!(crate::layers::max_abs_diff(&got, &wide).unwrap() < 1e-5);
    }
}
