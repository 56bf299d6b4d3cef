//! Attention for a few new tokens against the key/value cache, on the CPU, without gradients.
//!
//! Decoding a token attends one query per head to every cached key. Through tensor ops that is
//! two matrix products of a `(heads, 1, d)` by `(d, t)` shape plus a scale, a softmax and
//! reshapes around them: several dispatches into gemm and candle per block, each paying its
//! set-up for a few thousand multiply-adds. Measured on SmolLM2-135M at 200–600 cached tokens,
//! those products took 16–19% of a decoded token's time on the thread that runs the pass; this
//! op takes 11–12%, most of it reading the f32 cache (about 15 MB a token at 330 tokens). Each
//! query is one pass over its key/value head's cached rows where they lie (the cache's time
//! axis may be a view into a longer buffer): scores, softmax, weighted sum of the values.
//!
//! Queries are `(b, heads, t, d)`, keys and values `(b, kv_heads, total, d)` with the last axis
//! contiguous; query head `h` reads key/value head `h / (heads / kv_heads)`, and query `i` of
//! the `t` new ones sees keys `0..=total - t + i` (the causal mask of a cached pass). The result
//! is `(b, t, heads · d)`, the layout the output projection takes.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Above this many multiply-adds in a call, the key/value groups run on every core; below it the
/// hand-off to the thread pool costs more than it saves.
const PARALLEL_WORK: usize = 1 << 20;

/// Where a `(b, heads, time, d)` view's rows lie in its storage.
#[derive(Clone, Copy)]
struct Rows {
    start: usize,
    batch: usize,
    head: usize,
    time: usize,
}

impl Rows {
    fn of(layout: &Layout, name: &str) -> Result<Rows> {
        let stride = layout.stride();
        if layout.dims().len() != 4 || stride[3] != 1 {
            candle_core::bail!(
                "decode attention: {name} must be (batch, heads, time, head_dim) with a contiguous last axis, got {:?} with strides {stride:?}",
                layout.shape()
            );
        }
        Ok(Rows {
            start: layout.start_offset(),
            batch: stride[0],
            head: stride[1],
            time: stride[2],
        })
    }

    fn at(&self, b: usize, h: usize, t: usize) -> usize {
        self.start + b * self.batch + h * self.head + t * self.time
    }
}

/// `a · b` over equal lengths. Written with AVX2 intrinsics (every x86 build targets
/// x86-64-v3): left to the compiler, the lanes of this loop were split into pairs of floats.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let body = n / 16 * 16;
    // SAFETY: AVX2 and FMA are compiled in (cfg above); every load reads `i..i + 8` with
    // `i + 16 <= body <= n`.
    let vector = unsafe {
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in (0..body).step_by(16) {
            let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa), _mm256_loadu_ps(pb), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(8)), _mm256_loadu_ps(pb.add(8)), s1);
        }
        let s = _mm256_add_ps(s0, s1);
        let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    };
    vector
        + a[body..n]
            .iter()
            .zip(&b[body..n])
            .map(|(x, y)| x * y)
            .sum::<f32>()
}

#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
)))]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

struct DecodeAttention {
    scale: f32,
}

struct Views<'a> {
    q: (&'a [f32], Rows),
    k: (&'a [f32], Rows),
    v: (&'a [f32], Rows),
    heads: usize,
    rep: usize,
    t: usize,
    total: usize,
    d: usize,
    /// 512-bit registers per head, where the AVX-512 kernels run (the CPU has it and the
    /// head width is one they take).
    wide: Option<usize>,
}

impl Views<'_> {
    /// The `rep` query heads of sequence `b` that read key/value head `kv`: their `rep · t`
    /// output rows, `d` values each, head by head. The portable loops read each key and value
    /// row once for all of them; the AVX-512 kernels take one query at a time, with the
    /// query (scores) or its output (weighted sum) held in registers.
    fn group(&self, b: usize, kv: usize, scale: f32, probs: &mut Vec<f32>, out: &mut [f32]) {
        let (q, qr) = self.q;
        let (k, kr) = self.k;
        let (v, vr) = self.v;
        let (d, t, total) = (self.d, self.t, self.total);
        let rows = self.rep * t;
        // Row `r` is query `r % t` of the group's head `r / t`; it sees `total - t + r % t + 1`
        // keys.
        let query = |r: usize| {
            let at = qr.at(b, kv * self.rep + r / t, r % t);
            (&q[at..at + d], total - t + r % t + 1)
        };
        let (keys, values) = (&k[kr.at(b, kv, 0)..], &v[vr.at(b, kv, 0)..]);
        // Every row of the view lies inside its storage (candle checks views when it makes
        // them); the wide kernels rely on it.
        assert!(
            (total - 1) * kr.time + d <= keys.len() && (total - 1) * vr.time + d <= values.len(),
            "decode attention: cache view runs past its storage"
        );
        #[cfg(target_arch = "x86_64")]
        if let Some(chunks) = self.wide {
            probs.resize(total, 0.0);
            for (r, out) in out.chunks_exact_mut(d).enumerate() {
                let (query, seen) = query(r);
                let cache = avx512::Cache {
                    keys,
                    key_stride: kr.time,
                    values,
                    value_stride: vr.time,
                };
                // SAFETY: AVX-512 F was detected (`wide` is set only then); `query` and `out`
                // hold d = 16 · chunks values, and rows 0..seen of the cache lie inside it
                // (above).
                unsafe { avx512::attend(chunks, query, &cache, scale, &mut probs[..seen], out) };
            }
            return;
        }
        probs.clear();
        probs.resize(rows * total, 0.0);
        for j in 0..total {
            let key = &keys[j * kr.time..][..d];
            for r in 0..rows {
                let (query, seen) = query(r);
                if j < seen {
                    probs[r * total + j] = dot(query, key) * scale;
                }
            }
        }
        for r in 0..rows {
            softmax(&mut probs[r * total..][..query(r).1]);
        }
        out.fill(0.0);
        for j in 0..total {
            let value = &values[j * vr.time..][..d];
            for (r, out) in out.chunks_exact_mut(d).enumerate() {
                let p = probs[r * total + j];
                for (o, &x) in out.iter_mut().zip(value) {
                    *o = p.mul_add(x, *o);
                }
            }
        }
    }
}

/// Scores to probabilities, in place.
fn softmax(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    row.iter_mut()
        .for_each(|s| *s = crate::fast_exp::exp_nonpositive(*s - max));
    let inv = 1.0 / crate::bert_cpu::sum_lanes(row, |s| s);
    row.iter_mut().for_each(|s| *s *= inv);
}

/// Registers per head for the AVX-512 kernels, where they run here: the CPU has AVX-512 (as the
/// block kernels see it, so `TUNELAB_ASSUME_CPU_LACKS=avx512f` holds both to AVX2) and heads
/// are 64 or 128 wide.
fn wide_kernel(d: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if crate::qmatmul::BlockKernel::detect() == crate::qmatmul::BlockKernel::Avx512 {
        return avx512::supports(d);
    }
    let _ = d;
    None
}

/// AVX-512 kernels for heads of 64 or 128 values (four or eight 512-bit registers), the query
/// and the running output kept in registers.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Heads of `16 · chunks` values whose kernels are here.
    pub(super) fn supports(d: usize) -> Option<usize> {
        matches!(d, 64 | 128).then_some(d / 16)
    }

    /// One head's cached keys and values, `*_stride` floats from one row to the next.
    pub(super) struct Cache<'a> {
        pub keys: &'a [f32],
        pub key_stride: usize,
        pub values: &'a [f32],
        pub value_stride: usize,
    }

    /// One query's attention over the first `probs.len()` cached rows into `out`: scores,
    /// softmax (`probs` is its scratch), weighted sum of the values.
    ///
    /// # Safety
    /// AVX-512 F; `query` and `out` hold `16 · chunks` values, and so does each cached row
    /// read.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn attend(
        chunks: usize,
        query: &[f32],
        cache: &Cache,
        scale: f32,
        probs: &mut [f32],
        out: &mut [f32],
    ) {
        // SAFETY: passed on from the caller.
        unsafe {
            match chunks {
                4 => attend_of::<4>(query, cache, scale, probs, out),
                _ => attend_of::<8>(query, cache, scale, probs, out),
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn attend_of<const CHUNKS: usize>(
        query: &[f32],
        cache: &Cache,
        scale: f32,
        probs: &mut [f32],
        out: &mut [f32],
    ) {
        // SAFETY: the caller guarantees the lengths read and written.
        unsafe {
            scores_of::<CHUNKS>(query, cache.keys, cache.key_stride, scale, probs);
            super::softmax(probs);
            weighted_sum_of::<CHUNKS>(probs, cache.values, cache.value_stride, out);
        }
    }

    /// `out[j] = query · keys[j · stride..] · scale` for every `j < out.len()`.
    #[target_feature(enable = "avx512f")]
    unsafe fn scores_of<const CHUNKS: usize>(
        query: &[f32],
        keys: &[f32],
        stride: usize,
        scale: f32,
        out: &mut [f32],
    ) {
        // SAFETY: the caller guarantees the lengths read here.
        unsafe {
            let q: [__m512; CHUNKS] =
                std::array::from_fn(|c| _mm512_loadu_ps(query.as_ptr().add(16 * c)));
            let partial = |j: usize| {
                let key = keys.as_ptr().add(j * stride);
                let mut acc = _mm512_mul_ps(q[0], _mm512_loadu_ps(key));
                for (c, qc) in q.iter().enumerate().skip(1) {
                    acc = _mm512_fmadd_ps(*qc, _mm512_loadu_ps(key.add(16 * c)), acc);
                }
                acc
            };
            let n = out.len();
            let mut j = 0;
            while j + 16 <= n {
                // Key j + p goes to slot TRANSPOSED[p], so that the sums come out in order.
                let mut parts = [_mm512_setzero_ps(); 16];
                for (p, &slot) in TRANSPOSED.iter().enumerate() {
                    parts[slot] = partial(j + p);
                }
                let sums = _mm512_mul_ps(sum_each(parts), _mm512_set1_ps(scale));
                _mm512_storeu_ps(out.as_mut_ptr().add(j), sums);
                j += 16;
            }
            for (jj, s) in out.iter_mut().enumerate().skip(j) {
                *s = _mm512_reduce_add_ps(partial(jj)) * scale;
            }
        }
    }

    /// Where [`sum_each`] puts the sum of each of its sixteen inputs: slot `TRANSPOSED[p]`
    /// comes out in lane `p` (the 4 × 4 transpose, its own inverse).
    const TRANSPOSED: [usize; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

    /// The sums of sixteen vectors' lanes in one vector, in four rounds of pairwise adds:
    /// halves, then quarters, then pairs, then lanes (lane `p` holds input `TRANSPOSED[p]`).
    #[target_feature(enable = "avx512f")]
    unsafe fn sum_each(v: [__m512; 16]) -> __m512 {
        let halves: [__m512; 8] = std::array::from_fn(|i| {
            let (a, b) = (v[2 * i], v[2 * i + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x44>(a, b),
                _mm512_shuffle_f32x4::<0xEE>(a, b),
            )
        });
        let quarters: [__m512; 4] = std::array::from_fn(|i| {
            let (a, b) = (halves[2 * i], halves[2 * i + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x88>(a, b),
                _mm512_shuffle_f32x4::<0xDD>(a, b),
            )
        });
        let pairs: [__m512; 2] = std::array::from_fn(|i| {
            let (a, b) = (quarters[2 * i], quarters[2 * i + 1]);
            _mm512_add_ps(
                _mm512_shuffle_ps::<0x44>(a, b),
                _mm512_shuffle_ps::<0xEE>(a, b),
            )
        });
        let (a, b) = (pairs[0], pairs[1]);
        _mm512_add_ps(
            _mm512_shuffle_ps::<0x88>(a, b),
            _mm512_shuffle_ps::<0xDD>(a, b),
        )
    }

    /// `out = Σ_j probs[j] · values[j · stride..]` over `j < probs.len()`.
    #[target_feature(enable = "avx512f")]
    unsafe fn weighted_sum_of<const CHUNKS: usize>(
        probs: &[f32],
        values: &[f32],
        stride: usize,
        out: &mut [f32],
    ) {
        // SAFETY: the caller guarantees the lengths read and written here.
        unsafe {
            // Even and odd keys add into separate sums, so each multiply-add does not wait for
            // the previous key's.
            let add = |acc: &mut [__m512; CHUNKS], j: usize| {
                let (p, value) = (_mm512_set1_ps(probs[j]), values.as_ptr().add(j * stride));
                for (c, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(p, _mm512_loadu_ps(value.add(16 * c)), *a);
                }
            };
            let (mut even, mut odd) =
                ([_mm512_setzero_ps(); CHUNKS], [_mm512_setzero_ps(); CHUNKS]);
            let mut j = 0;
            while j + 1 < probs.len() {
                add(&mut even, j);
                add(&mut odd, j + 1);
                j += 2;
            }
            if j < probs.len() {
                add(&mut even, j);
            }
            for c in 0..CHUNKS {
                let total = _mm512_add_ps(even[c], odd[c]);
                _mm512_storeu_ps(out.as_mut_ptr().add(16 * c), total);
            }
        }
    }
}

impl CustomOp3 for DecodeAttention {
    fn name(&self) -> &'static str {
        "decode-attention"
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
        let (&[b, heads, t, d], &[kb, kv_heads, total, kd]) = (ql.dims(), kl.dims()) else {
            candle_core::bail!("decode attention takes (batch, heads, time, head_dim) tensors");
        };
        if (kb, kd) != (b, d)
            || vl.dims() != kl.dims()
            || kv_heads == 0
            || heads % kv_heads != 0
            || total < t
        {
            candle_core::bail!(
                "decode attention: queries {:?}, keys {:?} and values {:?} do not fit",
                ql.shape(),
                kl.shape(),
                vl.shape()
            );
        }
        let (CpuStorage::F32(q), CpuStorage::F32(k), CpuStorage::F32(v)) = (qs, ks, vs) else {
            candle_core::bail!("decode attention takes f32 tensors");
        };
        let views = Views {
            q: (q, Rows::of(ql, "queries")?),
            k: (k, Rows::of(kl, "keys")?),
            v: (v, Rows::of(vl, "values")?),
            heads,
            rep: heads / kv_heads,
            t,
            total,
            d,
            wide: wide_kernel(d),
        };
        // Laid out (b, heads, t, d) while computing: one group's heads are one run.
        let mut by_head = vec![0f32; b * heads * t * d];
        let group_len = views.rep * t * d;
        let run = |(index, out): (usize, &mut [f32])| {
            let mut probs = Vec::new();
            views.group(
                index / kv_heads,
                index % kv_heads,
                self.scale,
                &mut probs,
                out,
            );
        };
        if b * heads * t * total * d * 2 >= PARALLEL_WORK {
            by_head.par_chunks_mut(group_len).enumerate().for_each(run);
        } else {
            by_head.chunks_mut(group_len).enumerate().for_each(run);
        }
        let out = if t == 1 {
            by_head
        } else {
            let mut out = vec![0f32; by_head.len()];
            for (index, rows) in by_head.chunks_exact(t * d).enumerate() {
                let (bi, h) = (index / heads, index % heads);
                for (i, row) in rows.chunks_exact(d).enumerate() {
                    let at = ((bi * t + i) * views.heads + h) * d;
                    out[at..at + d].copy_from_slice(row);
                }
            }
            out
        };
        Ok((CpuStorage::F32(out), Shape::from((b, t, heads * d))))
    }
}

/// `softmax(q·kᵀ·scale + causal mask)·v` for `t` new queries `(b, heads, t, d)` against
/// `total` cached keys and values `(b, kv_heads, total, d)`, as `(b, t, heads · d)`; CPU, f32,
/// no gradient.
pub fn decode_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    q.apply_op3_no_bwd(
        k,
        v,
        &DecodeAttention {
            scale: scale as f32,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    /// The tensor-op attention the block runs elsewhere: scores, causal mask, softmax, values.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
        let (b, h, t, d) = q.dims4().unwrap();
        let (_, kvh, total, _) = k.dims4().unwrap();
        let rep = h / kvh;
        let k = k
            .unsqueeze(2)
            .unwrap()
            .repeat((1, 1, rep, 1, 1))
            .unwrap()
            .reshape((b, h, total, d))
            .unwrap();
        let v = v
            .unsqueeze(2)
            .unwrap()
            .repeat((1, 1, rep, 1, 1))
            .unwrap()
            .reshape((b, h, total, d))
            .unwrap();
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| {
                (0..total).map(move |j| {
                    if j <= total - t + i {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (t, total), &Device::Cpu).unwrap();
        let probs =
            candle_nn::ops::softmax(&scores.broadcast_add(&mask).unwrap(), D::Minus1).unwrap();
        probs
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, t, h * d))
            .unwrap()
    }

    fn randn(shape: &[usize]) -> Tensor {
        Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        crate::layers::max_abs_diff(a, b).unwrap()
    }

    #[test]
    fn matches_tensor_op_attention_for_one_and_several_new_tokens() {
        // Head widths with and without a tail past the 16 lanes; grouped and plain heads.
        // 64- and 128-wide heads take the AVX-512 kernels where the CPU has them (37 and 40
        // keys: whole runs of 16 and a rest), the others the portable loops.
        for (b, h, kvh, t, total, d) in [
            (1, 9, 3, 1, 37, 64),
            (1, 4, 2, 3, 40, 128),
            (2, 4, 4, 3, 11, 20),
            (1, 6, 2, 5, 5, 16),
        ] {
            let q = randn(&[b, h, t, d]);
            let k = randn(&[b, kvh, total, d]);
            let v = randn(&[b, kvh, total, d]);
            let scale = 1.0 / (d as f64).sqrt();
            let got = decode_attention(&q, &k, &v, scale).unwrap();
            assert_eq!(got.dims(), &[b, t, h * d]);
            let diff = max_diff(&got, &reference(&q, &k, &v, scale));
            assert!(diff < 1e-5, "{:?}: {diff}", (b, h, kvh, t, total, d));
        }
    }

    #[test]
    fn reads_keys_and_values_through_a_view_of_a_longer_cache() {
        // The KV cache hands out the first `total` steps of a (b, kvh, capacity, d) buffer.
        let (h, kvh, d, capacity, total) = (4, 2, 32, 50, 23);
        let k_buf = randn(&[1, kvh, capacity, d]);
        let v_buf = randn(&[1, kvh, capacity, d]);
        let k = k_buf.narrow(2, 0, total).unwrap();
        let v = v_buf.narrow(2, 0, total).unwrap();
        assert!(!k.is_contiguous());
        let q = randn(&[1, h, 1, d]);
        let got = decode_attention(&q, &k, &v, 0.25).unwrap();
        let want = reference(&q, &k.contiguous().unwrap(), &v.contiguous().unwrap(), 0.25);
        assert!(max_diff(&got, &want) < 1e-5);
    }

    #[test]
    fn long_contexts_split_heads_across_threads_with_the_same_result() {
        let (h, kvh, d, total) = (8, 2, 64, 1200);
        assert!(h * total * d * 2 >= PARALLEL_WORK);
        let q = randn(&[1, h, 1, d]);
        let k = randn(&[1, kvh, total, d]);
        let v = randn(&[1, kvh, total, d]);
        let got = decode_attention(&q, &k, &v, 0.125).unwrap();
        assert!(max_diff(&got, &reference(&q, &k, &v, 0.125)) < 1e-5);
    }

    #[test]
    fn mismatched_shapes_are_refused_with_the_shapes() {
        let q = randn(&[1, 3, 1, 8]);
        let k = randn(&[1, 2, 4, 8]);
        let err = decode_attention(&q, &k, &k, 1.0).unwrap_err().to_string();
        assert!(err.contains("[1, 3, 1, 8]"), "{err}");
    }
}
