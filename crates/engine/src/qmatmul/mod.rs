//! Matrix products with GGUF 4- and 8-bit weight blocks.
//!
//! candle's quantized matmul (like llama.cpp's) rounds the activations to 8 bits before the dot
//! product. On a 135M-parameter model that noise is enough to change greedy answers ("What is
//! the capital of France?" stopped mentioning Paris). For the block formats the engine knows
//! (Q4_0, Q4_1, Q8_0) the activations are instead rounded to 16 bits per block of 32, which is
//! as accurate as f32 for this purpose, and multiplied with integer instructions: the memory
//! traffic of the quantized path with the answers of the dequantized one. Few rows (decoding)
//! take the vectorised per-row kernel split across threads; many rows (prefill) decode the
//! matrix once and use the f32 GEMM.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use half::f16;
use rayon::prelude::*;

mod kernels;
pub(crate) use kernels::has_avx2;
pub use kernels::BlockKernel;
#[cfg(target_arch = "x86_64")]
use kernels::{avx2, avx512};

/// Rows at or below this count take the per-row kernel; more rows amortise a full decode.
pub(crate) const GEMV_MAX_ROWS: usize = 8;
const BLOCK: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockFormat {
    Q4_0,
    Q4_1,
    Q8_0,
}

impl BlockFormat {
    pub fn of(dtype: GgmlDType) -> Option<Self> {
        match dtype {
            GgmlDType::Q4_0 => Some(BlockFormat::Q4_0),
            GgmlDType::Q4_1 => Some(BlockFormat::Q4_1),
            GgmlDType::Q8_0 => Some(BlockFormat::Q8_0),
            _ => None,
        }
    }

    fn bytes(self) -> usize {
        match self {
            BlockFormat::Q4_0 => 18,
            BlockFormat::Q4_1 => 20,
            BlockFormat::Q8_0 => 34,
        }
    }
}

/// `x (.., k) @ W^T` with `W (n, k)` stored in GGUF blocks; a candle custom op on CPU tensors.
pub struct BlockMatmul<'a> {
    pub qtensor: &'a QTensor,
    pub format: BlockFormat,
}

fn half(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Decodes one block into 32 floats (the scalar reference the vector kernels are tested against).
pub fn decode_block(format: BlockFormat, b: &[u8], out: &mut [f32]) {
    match format {
        BlockFormat::Q4_0 | BlockFormat::Q4_1 => {
            let (d, m, qs) = match format {
                BlockFormat::Q4_0 => (half(b, 0), -8.0 * half(b, 0), &b[2..18]),
                _ => (half(b, 0), half(b, 2), &b[4..20]),
            };
            for j in 0..16 {
                out[j] = (qs[j] & 0x0F) as f32 * d + m;
                out[j + 16] = (qs[j] >> 4) as f32 * d + m;
            }
        }
        BlockFormat::Q8_0 => {
            let d = half(b, 0);
            for j in 0..32 {
                out[j] = (b[2 + j] as i8) as f32 * d;
            }
        }
    }
}

/// Rows `start..start + len` of a quantized matrix `(n, k)` decoded to f32 `(len, k)`. Rows
/// are whole blocks in every GGUF format, so a row range is a byte range: the formats this
/// module knows are decoded here, the others by candle from a copy of just those bytes.
pub fn dequantize_rows(qtensor: &QTensor, start: usize, len: usize) -> candle_core::Result<Tensor> {
    let (n, k) = qtensor.shape().dims2()?;
    let dtype = qtensor.dtype();
    if start + len > n || k % dtype.block_size() != 0 {
        candle_core::bail!("rows {start}..{} of a ({n}, {k}) matrix", start + len);
    }
    let row_bytes = k / dtype.block_size() * dtype.type_size();
    let data = qtensor.data()?;
    let data = &data[start * row_bytes..(start + len) * row_bytes];
    let cpu = candle_core::Device::Cpu;
    let Some(format) = BlockFormat::of(dtype) else {
        let storage = candle_core::quantized::QStorage::from_data(data.into(), &cpu, dtype)?;
        return QTensor::new(storage, (len, k))?.dequantize(&cpu);
    };
    let mut out = vec![0f32; len * k];
    out.par_chunks_mut(BLOCK)
        .zip(data.par_chunks(format.bytes()))
        .for_each(|(out, block)| decode_block(format, block, out));
    Tensor::from_vec(out, (len, k), &cpu)
}

/// Dot product of one weight row (in blocks) with `x`, decoding each block to f32: the reference.
fn dot_row_scalar(format: BlockFormat, row: &[u8], x: &[f32]) -> f32 {
    let mut w = [0f32; BLOCK];
    let mut total = 0f32;
    for (b, block) in row.chunks_exact(format.bytes()).enumerate() {
        decode_block(format, block, &mut w);
        total += w
            .iter()
            .zip(&x[b * BLOCK..(b + 1) * BLOCK])
            .map(|(a, c)| a * c)
            .sum::<f32>();
    }
    total
}

/// Activations of one row prepared for the integer kernels: each block of 32 values scaled to
/// 16-bit integers (relative rounding error below 2e-5 of the block's largest value), with the
/// scale and the exact sum of the block.
pub struct RowActivations {
    q: Vec<i16>,
    scale: Vec<f32>,
    sum: Vec<f32>,
}

impl RowActivations {
    pub fn new(x: &[f32]) -> Self {
        let blocks = x.len() / BLOCK;
        let mut q = vec![0i16; x.len()];
        let mut scale = vec![0f32; blocks];
        let mut sum = vec![0f32; blocks];
        for (b, chunk) in x.chunks_exact(BLOCK).enumerate() {
            let out = &mut q[b * BLOCK..(b + 1) * BLOCK];
            (scale[b], sum[b]) = prepare_block(chunk.try_into().expect("whole blocks"), out);
        }
        RowActivations { q, scale, sum }
    }
}

/// One block of 32 activations as 16-bit integers in `out`, with its scale and its exact sum.
/// Every product waits for this on one thread: in AVX2, a 1536-wide row takes 0.35 µs
/// against the 3 µs it took folded element by element.
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
fn prepare_block(x: &[f32; BLOCK], out: &mut [i16]) -> (f32, f32) {
    use std::arch::x86_64::*;
    // SAFETY: AVX2 is compiled in (cfg above); the loads read `x`'s 32 values and the stores
    // write `out`'s 32 (checked).
    unsafe {
        assert_eq!(out.len(), BLOCK);
        let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(x.as_ptr().add(8 * i)));
        let magnitude = |a: __m256| _mm256_andnot_ps(_mm256_set1_ps(-0.0), a);
        let max = _mm256_max_ps(
            _mm256_max_ps(magnitude(v[0]), magnitude(v[1])),
            _mm256_max_ps(magnitude(v[2]), magnitude(v[3])),
        );
        let total = _mm256_add_ps(_mm256_add_ps(v[0], v[1]), _mm256_add_ps(v[2], v[3]));
        let fold = |a: __m256, op: unsafe fn(__m128, __m128) -> __m128| {
            let s = op(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            let s = op(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(op(s, _mm_movehdup_ps(s)))
        };
        let (max, total) = (
            fold(max, |a, b| _mm_max_ps(a, b)),
            fold(total, |a, b| _mm_add_ps(a, b)),
        );
        if max > 0.0 {
            // Nearest, ties to even (the default rounding mode); |x| · inv <= 32767.
            let inv = _mm256_set1_ps(32767.0 / max);
            let ints: [__m256i; 4] =
                std::array::from_fn(|i| _mm256_cvtps_epi32(_mm256_mul_ps(v[i], inv)));
            // packs interleaves 128-bit halves; the permute puts the 16 values back in order.
            let lo =
                _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(ints[0], ints[1]));
            let hi =
                _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(ints[2], ints[3]));
            _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, lo);
            _mm256_storeu_si256(out.as_mut_ptr().add(16) as *mut __m256i, hi);
            (max / 32767.0, total)
        } else {
            (0.0, total)
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
fn prepare_block(x: &[f32; BLOCK], out: &mut [i16]) -> (f32, f32) {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let total = x.iter().sum();
    if max == 0.0 {
        return (0.0, total);
    }
    let inv = 32767.0 / max;
    for (dst, v) in out.iter_mut().zip(x) {
        *dst = (v * inv).round_ties_even() as i16;
    }
    (max / 32767.0, total)
}

/// `y (m, n) = x (m, k) @ W^T` for few rows, parallel over output features.
pub fn gemv(
    format: BlockFormat,
    weights: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) {
    let row_bytes = k / BLOCK * format.bytes();
    let kernel = BlockKernel::detect();
    let prepared: Vec<RowActivations> = match kernel {
        BlockKernel::Scalar => Vec::new(),
        _ => (0..m)
            .map(|r| RowActivations::new(&x[r * k..(r + 1) * k]))
            .collect(),
    };
    let dot = |row: &[u8], r: usize| -> f32 {
        #[cfg(target_arch = "x86_64")]
        match kernel {
            // SAFETY: the CPU's sets were detected at run time; `row` holds k/32 whole blocks.
            BlockKernel::Avx512 => return unsafe { avx512::dot_row(format, row, &prepared[r]) },
            BlockKernel::Avx2 => return unsafe { avx2::dot_row(format, row, &prepared[r]) },
            BlockKernel::Scalar => {}
        }
        dot_row_scalar(format, row, &x[r * k..(r + 1) * k])
    };
    by_output_features(n, m, y, |j, values| {
        let row = &weights[j * row_bytes..(j + 1) * row_bytes];
        for (r, v) in values.iter_mut().enumerate() {
            *v = dot(row, r);
        }
    });
}

/// Fills `y (m, n)` in parallel over output features: `feature(j, values)` writes output
/// feature `j` of every row, `values[r]` for row `r`. Each task takes a run of features and
/// keeps them feature by feature, so `values` is a slice of its buffer, written in place.
pub(crate) fn by_output_features(
    n: usize,
    m: usize,
    y: &mut [f32],
    feature: impl Fn(usize, &mut [f32]) + Sync,
) {
    let chunk = (n / (rayon::current_num_threads() * 4)).max(16);
    if m == 1 {
        // One row (decoding a token): its features are contiguous, written where they go.
        y[..n]
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(c, out)| {
                for (jj, value) in out.iter_mut().enumerate() {
                    feature(c * chunk + jj, std::slice::from_mut(value));
                }
            });
        return;
    }
    let columns: Vec<(usize, Vec<f32>)> = (0..n)
        .step_by(chunk)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|start| {
            let end = (start + chunk).min(n);
            let mut out = vec![0f32; m * (end - start)];
            for (j, values) in (start..end).zip(out.chunks_exact_mut(m)) {
                feature(j, values);
            }
            (start, out)
        })
        .collect();
    for (start, out) in columns {
        for (jj, values) in out.chunks_exact(m).enumerate() {
            for (r, v) in values.iter().enumerate() {
                y[r * n + start + jj] = *v;
            }
        }
    }
}

impl CustomOp1 for BlockMatmul<'_> {
    fn name(&self) -> &'static str {
        "block-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, k) = self.qtensor.shape().dims2()?;
        let x = match storage {
            CpuStorage::F32(v) => v,
            _ => candle_core::bail!("block-matmul takes f32 activations"),
        };
        let x = match layout.contiguous_offsets() {
            Some((a, b)) => &x[a..b],
            None => candle_core::bail!("block-matmul needs contiguous activations"),
        };
        let mut dims = layout.shape().dims().to_vec();
        if dims.last() != Some(&k) || k % BLOCK != 0 {
            candle_core::bail!(
                "block-matmul: activations {dims:?} do not match weights ({n}, {k})"
            );
        }
        let m = x.len() / k;
        *dims.last_mut().expect("checked above") = n;
        let data = self.qtensor.data()?;
        let mut y = vec![0f32; m * n];
        gemv(self.format, &data, n, k, x, m, &mut y);
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }
}

/// `x @ W^T` for a CPU tensor `x (.., k)`; `None` when the format or shape needs another path.
pub fn forward(qtensor: &QTensor, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let Some(format) = BlockFormat::of(qtensor.dtype()) else {
        return Ok(None);
    };
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
        return Ok(None);
    }
    let (_, k) = qtensor.shape().dims2()?;
    let rows = x.elem_count() / k.max(1);
    if rows > GEMV_MAX_ROWS {
        // Prefill: decode the matrix once (a few MB, freed right after) and use the f32 GEMM.
        let w = qtensor.dequantize(x.device())?;
        let flat = x.reshape((rows, k))?;
        let mut dims = x.dims().to_vec();
        *dims.last_mut().expect("x has a last dimension") = w.dim(0)?;
        return Ok(Some(flat.matmul(&w.t()?)?.reshape(dims)?));
    }
    Ok(Some(
        x.contiguous()?
            .apply_op1_no_bwd(&BlockMatmul { qtensor, format })?,
    ))
}

/// `x @ Wᵀ` for training through a frozen quantized weight: the matrix is decoded for this call
/// only, in the forward pass and again in the backward pass, so at most one layer's weights are
/// ever held in full precision. Gradients flow to `x`; the weight never gets one.
struct TrainableBlockMatmul {
    qtensor: std::sync::Arc<QTensor>,
}

/// A copy of a contiguous f32 CPU storage as a tensor (custom ops receive raw storage).
pub(crate) fn cpu_tensor(storage: &CpuStorage, layout: &Layout) -> candle_core::Result<Tensor> {
    let values = match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => v[a..b].to_vec(),
        _ => candle_core::bail!("training ops take contiguous f32 activations"),
    };
    Tensor::from_vec(values, layout.shape(), &candle_core::Device::Cpu)
}

fn into_cpu_storage(t: &Tensor) -> candle_core::Result<CpuStorage> {
    Ok(CpuStorage::F32(t.flatten_all()?.to_vec1::<f32>()?))
}

impl CustomOp1 for TrainableBlockMatmul {
    fn name(&self) -> &'static str {
        "trainable-block-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = cpu_tensor(storage, layout)?;
        let w = self.qtensor.dequantize(&candle_core::Device::Cpu)?;
        let (n, k) = w.dims2()?;
        let rows = x.elem_count() / k;
        let y = x.reshape((rows, k))?.matmul(&w.t()?)?;
        let mut dims = layout.shape().dims().to_vec();
        *dims.last_mut().expect("activations have a last dimension") = n;
        Ok((into_cpu_storage(&y)?, Shape::from(dims)))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let w = self.qtensor.dequantize(dy.device())?;
        let (n, k) = w.dims2()?;
        let rows = dy.elem_count() / n;
        let dx = dy.contiguous()?.reshape((rows, n))?.matmul(&w)?;
        debug_assert_eq!(dx.dim(1)?, k);
        Ok(Some(dx.reshape(x.shape())?))
    }
}

/// Differentiable `x @ Wᵀ` for a frozen quantized weight (QLoRA's base layers) on the CPU;
/// other devices use `portable::frozen_matmul`.
pub fn forward_trainable(
    qtensor: &std::sync::Arc<QTensor>,
    x: &Tensor,
) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(TrainableBlockMatmul {
        qtensor: qtensor.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn check(dtype: GgmlDType, rows: usize) {
        let (n, k) = (50, 128); // 50 features: the last of the threads' runs is shorter
        let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let dense = q.dequantize(&Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (rows, k), &Device::Cpu).unwrap();
        let want = x.matmul(&dense.t().unwrap()).unwrap();
        let got = forward(&q, &x).unwrap().expect("format handled");
        let scale = crate::layers::max_abs(&want).unwrap();
        let err = crate::layers::max_abs_diff(&want, &got).unwrap();
        // 16-bit activations round at 1/65534 of each block's largest value, about 1e-5 of
        // each term; over k = 128 random terms the sum's error reached 1.0e-4 of the largest
        // output in one CI run of unseeded inputs, so the bound leaves room above that.
        assert!(
            err < 3e-4 * scale,
            "{dtype:?} with {rows} rows differs from the dequantized product by {err} (outputs up to {scale})"
        );
    }

    #[test]
    fn block_products_equal_dequantized_products() {
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            for rows in [1, 3, 20] {
                check(dtype, rows);
            }
        }
    }

    #[test]
    fn row_ranges_decode_like_the_whole_matrix() {
        // Our own block formats, and K-quants (Q6_K is a common output head) through candle.
        let w = Tensor::randn(0f32, 1.0, (10, 256), &Device::Cpu).unwrap();
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
        ] {
            let q = QTensor::quantize(&w, dtype).unwrap();
            let whole = q.dequantize(&Device::Cpu).unwrap();
            let rows = dequantize_rows(&q, 3, 5).unwrap();
            let diff = crate::layers::max_abs_diff(&rows, &whole.narrow(0, 3, 5).unwrap()).unwrap();
            assert_eq!(diff, 0.0, "{dtype:?}");
            assert!(dequantize_rows(&q, 8, 5).is_err());
        }
    }

    #[test]
    fn activations_round_to_the_nearest_sixteen_bit_step_with_exact_sums() {
        let mut x: Vec<f32> = (0..4 * BLOCK)
            .map(|i| ((i * 7919) % 201) as f32 / 37.0 - 2.7)
            .collect();
        x[BLOCK..2 * BLOCK].fill(0.0); // a block of zeros keeps scale 0
        x[2 * BLOCK + 5] = -40.0; // the largest magnitude negative
        let p = RowActivations::new(&x);
        for (b, chunk) in x.chunks_exact(BLOCK).enumerate() {
            let max = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let sum: f64 = chunk.iter().map(|&v| v as f64).sum();
            assert!(
                (p.sum[b] as f64 - sum).abs() < 1e-5,
                "block {b}: sum {}",
                p.sum[b]
            );
            assert_eq!(p.scale[b], max / 32767.0, "block {b}");
            for (i, &v) in chunk.iter().enumerate() {
                let want = if max > 0.0 {
                    (v * (32767.0 / max)).round_ties_even() as i16
                } else {
                    0
                };
                assert_eq!(p.q[b * BLOCK + i], want, "block {b}, value {i} ({v})");
            }
        }
        assert_eq!(p.q[2 * BLOCK + 5], -32767);
    }

    #[test]
    fn the_widest_kernel_the_cpu_runs_is_chosen() {
        let on = |sets: &'static [&'static str]| move |s: &str| sets.contains(&s);
        let all = on(&["avx512f", "avx512bw", "avx2", "fma"]);
        assert_eq!(BlockKernel::choose(all), BlockKernel::Avx512);
        // Skylake-X has BW; AVX-512 F alone (Knights Landing) is not enough.
        assert_eq!(
            BlockKernel::choose(on(&["avx512f", "avx2", "fma"])),
            BlockKernel::Avx2
        );
        assert_eq!(BlockKernel::choose(on(&["avx2", "fma"])), BlockKernel::Avx2);
        assert_eq!(BlockKernel::choose(on(&["avx2"])), BlockKernel::Scalar);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_kernel_equals_scalar_reference() {
        if !has_avx2() {
            return;
        }
        // 8 blocks; 18 (the default model's rows: a group of 16 and a rest); 37 (two groups
        // and a rest of 5).
        for (dtype, k) in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0]
            .into_iter()
            .flat_map(|dtype| [256, 576, 1184].map(|k| (dtype, k)))
        {
            let format = BlockFormat::of(dtype).unwrap();
            let w = Tensor::randn(0f32, 1.0, (1, k), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let x: Vec<f32> = (0..k)
                .map(|i| ((i * 7919) % 100) as f32 / 50.0 - 1.0)
                .collect();
            let data = q.data().unwrap();
            let scalar = dot_row_scalar(format, &data, &x);
            // Rounding differences scale with the terms, not with their (cancelling) sum.
            let decoded = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
            let terms: f32 = decoded
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .zip(&x)
                .map(|(w, x)| (w * x).abs())
                .sum();
            let prepared = RowActivations::new(&x);
            // SAFETY: AVX2 and FMA detected above.
            let vector = unsafe { avx2::dot_row(format, &data, &prepared) };
            assert!(
                (scalar - vector).abs() < 1e-4 * terms,
                "{dtype:?}, {k} columns: {scalar} vs {vector} (terms' magnitudes sum to {terms})"
            );
            if BlockKernel::detect() == BlockKernel::Avx512 {
                // SAFETY: AVX-512 F and BW detected.
                let wide = unsafe { avx512::dot_row(format, &data, &prepared) };
                // Both sum the same integer products; only the order of float additions differs.
                assert!(
                    (wide - vector).abs() < 1e-6 * terms,
                    "{dtype:?}, {k} columns: AVX-512 {wide} vs AVX2 {vector} (terms' magnitudes sum to {terms})"
                );
            }
        }
    }
}

#[cfg(test)]
mod training_tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn quantized_training_matmul_passes_the_gradient_to_its_input_only() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (24, 64), &dev).unwrap();
        let q = std::sync::Arc::new(QTensor::quantize(&w, GgmlDType::Q4_1).unwrap());
        let dense = q.dequantize(&dev).unwrap();
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 64), &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (2, 3, 24), &dev).unwrap();
        let y = forward_trainable(&q, x.as_tensor()).unwrap();
        let want = x.as_tensor().broadcast_matmul(&dense.t().unwrap()).unwrap();
        let diff = crate::layers::max_abs_diff(&y, &want).unwrap();
        assert!(
            diff < 1e-4,
            "forward equals the dequantized product (diff {diff})"
        );
        let grads = (y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        // d/dx Σ (x Wᵀ)·P = P W
        let expected = probe.broadcast_matmul(&dense).unwrap();
        let got = grads.get(x.as_tensor()).expect("the input gets a gradient");
        let diff = crate::layers::max_abs_diff(got, &expected).unwrap();
        assert!(diff < 1e-3, "input gradient equals P·W (diff {diff})");
    }
}
