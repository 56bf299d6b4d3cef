//! The vector kernels of the block dot products (AVX2, AVX-512), and the choice between them.

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::super::{BlockFormat, RowActivations, BLOCK};
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
    /// A block's 16-bit scale (and Q4_1's minimum) is converted as a broadcast to all eight
    /// lanes: converted as a scalar, it was inserted into a register the compiler shared with
    /// the running offset sum, and every block waited for the previous block's addition. Even
    /// and odd blocks sum apart for the same reason. Alone on a Zen 5 (one thread, alternating
    /// with the scalar form), Q4_1 took 1.8–1.95 ns a block against 2.2–2.9, Q4_0 1.75–2.5
    /// against 2.5–3.5.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `row` holds `x.q.len() / 32` whole blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_row(format: BlockFormat, row: &[u8], x: &RowActivations) -> f32 {
        if format == BlockFormat::Q8_0 {
            // SAFETY: passed on.
            return unsafe { q8_0(row, x) };
        }
        // SAFETY: the caller guarantees AVX2/FMA; every pointer stays inside `row` and `x.q`.
        unsafe {
            let size = format.bytes();
            let nblocks = x.q.len() / BLOCK;
            let xq = x.q.as_ptr();
            let mask = _mm_set1_epi8(0x0F);
            let half_at = |blk: *const u8, at: usize| {
                let bits = (blk.add(at) as *const u16).read_unaligned() as i16;
                _mm256_cvtph_ps(_mm_set1_epi16(bits))
            };
            // (sum, offsets) after block `b`; the offsets' lanes all hold the same value.
            let block = |b: usize, (sum, offsets): (__m256, __m256)| {
                let blk = row.as_ptr().add(b * size);
                let x0 = _mm256_loadu_si256(xq.add(b * BLOCK) as *const __m256i);
                let x1 = _mm256_loadu_si256(xq.add(b * BLOCK + 16) as *const __m256i);
                let d = half_at(blk, 0);
                let q = _mm_loadu_si128(blk.add(size - 16) as *const __m128i);
                let lo = _mm256_cvtepu8_epi16(_mm_and_si128(q, mask));
                let hi = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(q, 4), mask));
                let ints = _mm256_add_epi32(_mm256_madd_epi16(lo, x0), _mm256_madd_epi16(hi, x1));
                let scale = _mm256_mul_ps(d, _mm256_set1_ps(x.scale[b]));
                let sum = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ints), scale, sum);
                let offsets = if format == BlockFormat::Q4_0 {
                    _mm256_fmadd_ps(d, _mm256_set1_ps(-8.0 * x.sum[b]), offsets)
                } else {
                    _mm256_fmadd_ps(half_at(blk, 2), _mm256_set1_ps(x.sum[b]), offsets)
                };
                (sum, offsets)
            };
            let zero = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let (even, odd) = super::even_odd(nblocks, (zero, zero), block);
            hsum(_mm256_add_ps(even.0, odd.0)) + _mm256_cvtss_f32(_mm256_add_ps(even.1, odd.1))
        }
    }

    /// Q8_0, a block at a time, one sum: it has no offset term, and through the 4-bit
    /// formats' loop it measured slower (2.3 ns a block against 1.35 on 18-block rows). Its
    /// scale is converted as a broadcast too (1.2 ns a block, alternating with the scalar
    /// conversion's 1.15, which in this function fell on the running sum's register: 2.0).
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_0(row: &[u8], x: &RowActivations) -> f32 {
        // SAFETY: the caller guarantees AVX2/FMA; every pointer stays inside `row` and `x.q`.
        unsafe {
            let size = BlockFormat::Q8_0.bytes();
            let xq = x.q.as_ptr();
            let mut acc = _mm256_setzero_ps();
            for b in 0..x.q.len() / BLOCK {
                let blk = row.as_ptr().add(b * size);
                let x0 = _mm256_loadu_si256(xq.add(b * BLOCK) as *const __m256i);
                let x1 = _mm256_loadu_si256(xq.add(b * BLOCK + 16) as *const __m256i);
                let bits = (blk as *const u16).read_unaligned() as i16;
                let d = _mm256_cvtph_ps(_mm_set1_epi16(bits));
                let scale = _mm256_mul_ps(d, _mm256_set1_ps(x.scale[b]));
                let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(2) as *const __m128i));
                let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(18) as *const __m128i));
                let ints = _mm256_add_epi32(_mm256_madd_epi16(w0, x0), _mm256_madd_epi16(w1, x1));
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ints), scale, acc);
            }
            hsum(acc)
        }
    }
}

/// `block(i, sum)` for `i` in `0..n`, even `i` into the first sum and odd `i` into the second,
/// so that consecutive blocks do not wait on each other's addition.
#[inline(always)]
fn even_odd<T: Copy>(n: usize, sums: (T, T), block: impl Fn(usize, T) -> T) -> (T, T) {
    let (mut even, mut odd) = sums;
    let mut i = 0;
    while i + 1 < n {
        even = block(i, even);
        odd = block(i + 1, odd);
        i += 2;
    }
    if i < n {
        even = block(i, even);
    }
    (even, odd)
}

/// AVX-512 (F and BW): one block of 32 per 512-bit multiply-add, and the blocks' scales handled
/// sixteen blocks at a time.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use super::super::{BlockFormat, RowActivations, BLOCK};
    use std::arch::x86_64::*;

    /// Blocks whose scales are read, converted and multiplied together, one per lane.
    const GROUP: usize = 16;

    /// Dot product of one row of weight blocks with prepared activations, as
    /// [`super::avx2::dot_row`] computes it.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F and BW; `row` holds `x.q.len() / 32` whole blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    pub unsafe fn dot_row(format: BlockFormat, row: &[u8], x: &RowActivations) -> f32 {
        // SAFETY: the caller's guarantees, passed on.
        unsafe {
            match format {
                BlockFormat::Q4_0 => grouped::<{ BlockFormat::Q4_0 as u8 }>(row, x),
                BlockFormat::Q4_1 => grouped::<{ BlockFormat::Q4_1 as u8 }>(row, x),
                BlockFormat::Q8_0 => q8_0(row, x),
            }
        }
    }

    /// The 4-bit formats. Each block is one integer multiply-add of its weights with the
    /// activations, then one float multiply-add of that by the two scales. The scales'
    /// product is made for sixteen blocks at once (their 16-bit scales fetched together by
    /// [`block_heads`] and converted in one instruction), and so is the offset term (Q4_1's
    /// minimum, Q4_0's −8): per block that leaves a broadcast where there were scalar loads,
    /// conversions and products. Even and odd blocks sum apart, so consecutive blocks do not
    /// wait on each other's addition. Measured alone on a 2-core Zen 5 (60,000 rows, one
    /// thread), a Q4_1 row of 48 blocks takes about 1.0 ns a block against 1.8–1.9 a block at
    /// a time; a row of 18 blocks, 1.25 against 1.6–1.75.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    #[inline(never)]
    unsafe fn grouped<const FORMAT: u8>(row: &[u8], x: &RowActivations) -> f32 {
        let format = if FORMAT == BlockFormat::Q4_0 as u8 {
            BlockFormat::Q4_0
        } else {
            BlockFormat::Q4_1
        };
        // SAFETY: the caller guarantees AVX-512 F/BW; every pointer stays inside `row` and `x`
        // (the reads of a last, partial group are masked to its blocks).
        unsafe {
            let size = format.bytes();
            let nblocks = x.q.len() / BLOCK;
            let xq = x.q.as_ptr();
            let (mut even, mut odd) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            let mut offsets = _mm512_setzero_ps();
            let mut scales = [0f32; GROUP];
            let mut first = 0;
            while first < nblocks {
                let count = (nblocks - first).min(GROUP);
                let lanes: __mmask16 = if count == GROUP {
                    !0
                } else {
                    (1u16 << count) - 1
                };
                let heads = block_heads(format, row.as_ptr().add(first * size), lanes);
                let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(heads));
                let x_scale = _mm512_maskz_loadu_ps(lanes, x.scale.as_ptr().add(first));
                let x_sum = _mm512_maskz_loadu_ps(lanes, x.sum.as_ptr().add(first));
                _mm512_storeu_ps(scales.as_mut_ptr(), _mm512_mul_ps(d, x_scale));
                let low = if FORMAT == BlockFormat::Q4_0 as u8 {
                    _mm512_mul_ps(d, _mm512_set1_ps(-8.0))
                } else {
                    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(heads, 16)))
                };
                offsets = _mm512_fmadd_ps(low, x_sum, offsets);
                let block = |lane: usize, sum: __m512| {
                    let b = first + lane;
                    let ints = _mm512_madd_epi16(
                        nibbles(row.as_ptr().add(b * size + size - 16)),
                        _mm512_loadu_si512(xq.add(b * BLOCK) as *const __m512i),
                    );
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(ints), _mm512_set1_ps(scales[lane]), sum)
                };
                (even, odd) = super::even_odd(count, (even, odd), block);
                first += count;
            }
            _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(even, odd), offsets))
        }
    }

    /// The first four bytes of up to sixteen consecutive blocks from `at` (the scale, and
    /// Q4_1's minimum), one block per lane; `lanes` says which of the sixteen exist, and the
    /// others are 0. Q4_1's blocks are five 32-bit words apart, so its heads come from five
    /// (masked) loads and three permutes; Q4_0's (18 bytes apart) are gathered. On Zen 5,
    /// alternating in one run, Q4_1's rows of 18 blocks took 1.25 ns a block with the permutes
    /// against 1.4 gathered, rows of 48 blocks 1.02 against 1.07.
    #[inline(always)]
    unsafe fn block_heads(format: BlockFormat, at: *const u8, lanes: __mmask16) -> __m512i {
        // SAFETY: the caller keeps the `lanes` blocks from `at` inside the row; the masked
        // loads and the gather read no word past the last of them.
        unsafe {
            if format != BlockFormat::Q4_1 {
                // The byte offsets of the sixteen blocks' starts.
                let starts = _mm512_mullo_epi32(
                    _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                    _mm512_set1_epi32(format.bytes() as i32),
                );
                return _mm512_mask_i32gather_epi32::<1>(
                    _mm512_setzero_si512(),
                    lanes,
                    starts,
                    at as *const i32,
                );
            }
            let word = at as *const i32;
            let v: [__m512i; 5] = if lanes == !0 {
                std::array::from_fn(|i| _mm512_loadu_si512(word.add(16 * i) as *const __m512i))
            } else {
                let words = 5 * lanes.count_ones() as usize;
                std::array::from_fn(|i| {
                    let valid = words.saturating_sub(16 * i).min(16);
                    _mm512_maskz_loadu_epi32(((1u32 << valid) - 1) as __mmask16, word.add(16 * i))
                })
            };
            // Word 5·p holds block p's head: words 0..32 are in v0 and v1, 32..64 in v2 and
            // v3, 64..80 in v4.
            let index =
                _mm512_set_epi32(75, 70, 65, 60, 55, 50, 45, 40, 35, 30, 25, 20, 15, 10, 5, 0);
            let low = _mm512_permutex2var_epi32(v[0], index, v[1]);
            let middle = _mm512_permutex2var_epi32(
                v[2],
                _mm512_sub_epi32(index, _mm512_set1_epi32(32)),
                v[3],
            );
            let high =
                _mm512_permutexvar_epi32(_mm512_sub_epi32(index, _mm512_set1_epi32(64)), v[4]);
            // Blocks 0..7 lie in words below 32, 7..13 below 64, 13..16 above.
            let heads = _mm512_mask_blend_epi32(0b0001_1111_1000_0000, low, middle);
            _mm512_mask_blend_epi32(0b1110_0000_0000_0000, heads, high)
        }
    }

    /// A 4-bit block's 16 bytes of weights as 32 16-bit integers in the order of its values:
    /// the bytes twice, widened; lanes 0..16 keep the low nibbles (values 0..16 of the block),
    /// lanes 16..32 the high nibbles (values 16..32).
    #[inline(always)]
    unsafe fn nibbles(qs: *const u8) -> __m512i {
        // SAFETY: the caller keeps `qs..qs + 16` inside the row.
        unsafe {
            let q = _mm_loadu_si128(qs as *const __m128i);
            let both = _mm512_cvtepu8_epi16(_mm256_broadcastsi128_si256(q));
            let shifts = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
            _mm512_and_si512(_mm512_srlv_epi16(both, shifts), _mm512_set1_epi16(0x0F))
        }
    }

    /// Q8_0 (the default model's output layer): a block at a time. Its rows are read at the
    /// memory's pace already (34 bytes a block against the 4-bit formats' 18 or 20), and
    /// with the grouped scales they measured slower.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
    #[inline(never)]
    unsafe fn q8_0(row: &[u8], x: &RowActivations) -> f32 {
        // SAFETY: the caller guarantees AVX-512 F/BW; every pointer stays inside `row` and `x.q`.
        unsafe {
            let size = BlockFormat::Q8_0.bytes();
            let xq = x.q.as_ptr();
            let mut acc = _mm512_setzero_ps();
            for b in 0..x.q.len() / BLOCK {
                let blk = row.as_ptr().add(b * size);
                // The scale is converted as a broadcast: a scalar conversion inserts its 16 bits
                // into a register the compiler may pick from the running sum, and then every
                // block waits for the previous block's multiply-add (1.9 ns a block, not 1.05).
                let bits = (blk as *const u16).read_unaligned() as i16;
                let d = _mm512_cvtph_ps(_mm256_set1_epi16(bits));
                let scale = _mm512_mul_ps(d, _mm512_set1_ps(x.scale[b]));
                let w = _mm512_cvtepi8_epi16(_mm256_loadu_si256(blk.add(2) as *const __m256i));
                let ints =
                    _mm512_madd_epi16(w, _mm512_loadu_si512(xq.add(b * BLOCK) as *const __m512i));
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ints), scale, acc);
            }
            _mm512_reduce_add_ps(acc)
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
