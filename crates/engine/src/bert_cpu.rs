//! The sentence encoder's CPU kernels (see `bert`): attention straight from the fused
//! query/key/value rows, GELU with an exponential of its own, and sums kept in eight lanes.
//! GELU and the exponential are branch-free arithmetic, so the compiler runs them eight lanes
//! at a time.

use candle_core::Tensor;

use crate::error::{EngineError, Result};

/// The sum of `f` over `values`, kept in eight partial sums so the compiler adds eight lanes at
/// a time (a plain `sum` must add in order, one element after another).
#[inline(always)]
pub(crate) fn sum_lanes(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = values.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|v| f(*v)).sum();
    for chunk in chunks {
        for i in 0..8 {
            lanes[i] += f(chunk[i]);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Self-attention straight from the fused (b, t, 3·hidden) query/key/value rows, one batch
/// row per task: each sentence attends only over its own tokens, so padding needs no mask, and
/// nothing is transposed or copied into per-head tensors. Queries arrive pre-scaled.
pub(crate) fn cpu_attention(qkv: &Tensor, lengths: &[usize], heads: usize) -> Result<Tensor> {
    use rayon::prelude::*;
    let (b, t, three) = qkv.dims3()?;
    let hidden = three / 3;
    let hd = hidden / heads;
    let qkv = qkv.contiguous()?;
    let (storage, layout) = qkv.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(EngineError::InvalidRequest(
            "cpu_attention needs a CPU tensor".into(),
        ));
    };
    let all = cpu.as_slice::<f32>()?;
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| EngineError::InvalidRequest("qkv is not contiguous".into()))?;
    let data = &all[start..end];
    let mut out = vec![0f32; b * t * hidden];
    out.par_chunks_mut(t * hidden)
        .zip(data.par_chunks(t * three))
        .zip(lengths.par_iter())
        .for_each(|((out, rows), &len)| {
            let mut scores = vec![0f32; len];
            for h in 0..heads {
                let (qo, ko, vo) = (h * hd, hidden + h * hd, 2 * hidden + h * hd);
                for r in 0..len {
                    let q = &rows[r * three + qo..r * three + qo + hd];
                    let mut max = f32::NEG_INFINITY;
                    for (c, s) in scores.iter_mut().enumerate() {
                        let k = &rows[c * three + ko..c * three + ko + hd];
                        *s = crate::half_matmul::dot_lanes(q, k, |acc, x, y| acc + x * y);
                        max = max.max(*s);
                    }
                    let mut total = 0f32;
                    // Exponentials in a loop of their own, which vectorizes; the sum after.
                    for s in scores.iter_mut() {
                        *s = crate::fast_exp::exp_nonpositive(*s - max);
                    }
                    for s in scores.iter() {
                        total += *s;
                    }
                    let o = &mut out[r * hidden + h * hd..r * hidden + (h + 1) * hd];
                    for (c, s) in scores.iter().enumerate() {
                        let p = s / total;
                        let v = &rows[c * three + vo..c * three + vo + hd];
                        for (o, v) in o.iter_mut().zip(v) {
                            *o += p * v;
                        }
                    }
                }
            }
        });
    drop(storage);
    Ok(Tensor::from_vec(out, (b, t, hidden), qkv.device())?)
}

/// GELU with the error function, as BERT defines it: x/2 (1 + erf(x/√2)). erf uses
/// Abramowitz and Stegun's formula 7.1.26 (absolute error under 1.5e-7) with an exponential of
/// its own; every step is branch-free arithmetic, so the compiler runs it eight lanes at a time
/// instead of calling libm per element, over the buffer in parallel.
pub(crate) fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    use rayon::prelude::*;
    let shape = x.shape().clone();
    let mut values = x.flatten_all()?.to_vec1::<f32>()?;
    values.par_chunks_mut(4096).for_each(|chunk| {
        for v in chunk {
            *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    });
    Ok(Tensor::from_vec(values, shape, x.device())?)
}

fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    (1.0 - poly * crate::fast_exp::exp_nonpositive(-a * a)).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_is_within_five_parts_in_ten_million() {
        // Reference values of erf from tables.
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.1, 0.112_462_92),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (1.5, 0.966_105_16),
            (2.0, 0.995_322_3),
            (3.0, 0.999_977_9),
            (-1.0, -0.842_700_8),
        ] {
            // The formula is good to 1.5e-7; f32 rounding adds a little.
            assert!((erf(x) - want).abs() < 5e-7, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn gelu_matches_the_erf_definition() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 / 500.0).collect();
        let got = gelu_erf(&Tensor::new(xs.as_slice(), &candle_core::Device::Cpu).unwrap())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (x, g) in xs.iter().zip(got) {
            // The definition, with erf in f64 (`libm_erf` below).
            let want = 0.5 * *x as f64 * (1.0 + libm_erf(*x as f64 / std::f64::consts::SQRT_2));
            assert!(
                (g as f64 - want).abs() < 1e-6 * want.abs().max(1.0),
                "gelu({x}): {g} vs {want}"
            );
        }
    }

    /// erf to double precision by its Taylor series (|x| ≤ 3) or asymptotic tail.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 3.0 {
            let a = x.abs();
            let tail = (-a * a).exp() / (a * std::f64::consts::PI.sqrt())
                * (1.0 - 1.0 / (2.0 * a * a) + 3.0 / (4.0 * a.powi(4)));
            return (1.0 - tail).copysign(x);
        }
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
