//! The vector kernels of the block dot products (AVX2, AVX-512), and the choice between them.

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::super::{half, BlockFormat, RowActivations, BLOCK};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let hi = _mm256_extractf128_ps(v, 1);
        let lo = _mm256_castps256_ps128(v);
        let s = _mm_add_ps(hi, lo);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// Dot product of one row of weight blocks with prepared activations: 16-bit integer
    /// multiply-adds per block, then one float multiply-add with the two scales.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `row` holds `x.q.len() / 32` whole blocks.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_row(format: BlockFormat, row: &[u8], x: &RowActivations) -> f32 {
        // SAFETY: the caller guarantees AVX2/FMA; every pointer stays inside `row` and `x.q`.
        unsafe {
            let mut acc = _mm256_setzero_ps();
            let mut offset_total = 0f32;
            let size = format.bytes();
            let nblocks = x.q.len() / BLOCK;
            let xq = x.q.as_ptr();
            let mask = _mm_set1_epi8(0x0F);
            for b in 0..nblocks {
                let blk = row.as_ptr().add(b * size);
                let x0 = _mm256_loadu_si256(xq.add(b * BLOCK) as *const __m256i);
                let x1 = _mm256_loadu_si256(xq.add(b * BLOCK + 16) as *const __m256i);
                let d = half(std::slice::from_raw_parts(blk, 2), 0);
                let ints = match format {
                    BlockFormat::Q4_0 | BlockFormat::Q4_1 => {
                        let qs_at = if format == BlockFormat::Q4_0 { 2 } else { 4 };
                        let q = _mm_loadu_si128(blk.add(qs_at) as *const __m128i);
                        let lo = _mm256_cvtepu8_epi16(_mm_and_si128(q, mask));
                        let hi = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(q, 4), mask));
                        _mm256_add_epi32(_mm256_madd_epi16(lo, x0), _mm256_madd_epi16(hi, x1))
                    }
                    BlockFormat::Q8_0 => {
                        let w0 =
                            _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(2) as *const __m128i));
                        let w1 =
                            _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(18) as *const __m128i));
                        _mm256_add_epi32(_mm256_madd_epi16(w0, x0), _mm256_madd_epi16(w1, x1))
                    }
                };
                acc = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(ints),
                    _mm256_set1_ps(d * x.scale[b]),
                    acc,
                );
                offset_total += match format {
                    BlockFormat::Q4_0 => -8.0 * d * x.sum[b],
                    BlockFormat::Q4_1 => half(std::slice::from_raw_parts(blk, 4), 2) * x.sum[b],
                    BlockFormat::Q8_0 => 0.0,
                };
            }
            hsum(acc) + offset_total
        }
    }
}

/// AVX-512 (F and BW): one block of 32 per 512-bit multiply-add instead of two 256-bit ones,
/// with the block's scale applied to sixteen lanes.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::super::{half, BlockFormat, RowActivations, BLOCK};
    use std::arch::x86_64::*;

    /// Dot product of one row of weight blocks with prepared activations, as
    /// [`super::avx2::dot_row`] computes it. (Two sums for even and odd blocks, to overlap
    /// their additions, measured no faster: the loads, not the additions, set the pace.)
    ///
    /// # Safety
    /// The CPU must support AVX-512 F and BW; `row` holds `x.q.len() / 32` whole blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    pub unsafe fn dot_row(format: BlockFormat, row: &[u8], x: &RowActivations) -> f32 {
        // SAFETY: the caller guarantees AVX-512 F/BW; every pointer stays inside `row` and `x.q`.
        unsafe {
            let mut acc = _mm512_setzero_ps();
            let mut offset_total = 0f32;
            let size = format.bytes();
            let nblocks = x.q.len() / BLOCK;
            let xq = x.q.as_ptr();
            let mask = _mm_set1_epi8(0x0F);
            for b in 0..nblocks {
                let blk = row.as_ptr().add(b * size);
                let xv = _mm512_loadu_si512(xq.add(b * BLOCK) as *const __m512i);
                let d = half(std::slice::from_raw_parts(blk, 2), 0);
                let w = match format {
                    BlockFormat::Q4_0 | BlockFormat::Q4_1 => {
                        let qs_at = if format == BlockFormat::Q4_0 { 2 } else { 4 };
                        let q = _mm_loadu_si128(blk.add(qs_at) as *const __m128i);
                        // Low nibbles are values 0..16 of the block, high nibbles 16..32.
                        let lo = _mm_and_si128(q, mask);
                        let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
                        _mm512_cvtepu8_epi16(_mm256_set_m128i(hi, lo))
                    }
                    BlockFormat::Q8_0 => {
                        _mm512_cvtepi8_epi16(_mm256_loadu_si256(blk.add(2) as *const __m256i))
                    }
                };
                let ints = _mm512_madd_epi16(w, xv);
                acc = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(ints),
                    _mm512_set1_ps(d * x.scale[b]),
                    acc,
                );
                offset_total += match format {
                    BlockFormat::Q4_0 => -8.0 * d * x.sum[b],
                    BlockFormat::Q4_1 => half(std::slice::from_raw_parts(blk, 4), 2) * x.sum[b],
                    BlockFormat::Q8_0 => 0.0,
                };
            }
            _mm512_reduce_add_ps(acc) + offset_total
        }
    }
}

/// The vector code the block kernels run, chosen once per process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKernel {
    Avx512,
    Avx2,
    Scalar,
}

impl BlockKernel {
    /// The widest the CPU runs. `TUNELAB_ASSUME_CPU_LACKS=avx512f` (the variable the start-up CPU
    /// check reads) holds the kernels to AVX2, to measure that path on an AVX-512 machine.
    pub fn detect() -> BlockKernel {
        static CHOSEN: std::sync::OnceLock<BlockKernel> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let lacks = std::env::var("TUNELAB_ASSUME_CPU_LACKS").unwrap_or_default();
            let lacks: Vec<&str> = lacks.split(',').map(str::trim).collect();
            Self::choose(|set| !lacks.contains(&set) && cpu_has(set))
        })
    }

    pub(super) fn choose(has: impl Fn(&str) -> bool) -> BlockKernel {
        if has("avx512f") && has("avx512bw") && has("avx2") && has("fma") {
            BlockKernel::Avx512
        } else if has("avx2") && has("fma") {
            BlockKernel::Avx2
        } else {
            BlockKernel::Scalar
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BlockKernel::Avx512 => "AVX-512",
            BlockKernel::Avx2 => "AVX2 + FMA",
            BlockKernel::Scalar => "scalar",
        }
    }
}

fn cpu_has(set: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match set {
            "avx512f" => std::is_x86_feature_detected!("avx512f"),
            "avx512bw" => std::is_x86_feature_detected!("avx512bw"),
            "avx2" => std::is_x86_feature_detected!("avx2"),
            "fma" => std::is_x86_feature_detected!("fma"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = set;
        false
    }
}

pub(crate) fn has_avx2() -> bool {
    BlockKernel::detect() != BlockKernel::Scalar
}
