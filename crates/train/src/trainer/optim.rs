//! AdamW with decoupled weight decay, whose state can be saved and restored exactly (a resumed
//! run continues the same loss curve), global-norm gradient clipping, and learning-rate
//! schedules (linear warm-up, then cosine decay or constant).

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::trainer::run_dir::Saved;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// A parameter's first and second moments: plain vectors updated in place for f32 parameters
/// on the CPU (one fused pass per step, no temporaries), tensors elsewhere.
enum Moments {
    Host { m: Vec<f32>, v: Vec<f32> },
    Device { m: Tensor, v: Tensor },
}

impl Moments {
    fn zeros(param: &Tensor) -> Result<Self> {
        Ok(if is_host_f32(param) {
            let n = param.elem_count();
            Moments::Host {
                m: vec![0.0; n],
                v: vec![0.0; n],
            }
        } else {
            Moments::Device {
                m: param.zeros_like()?,
                v: param.zeros_like()?,
            }
        })
    }
}

fn is_host_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// One AdamW step for an f32 parameter on the CPU, written into the parameter's own storage in
/// one parallel pass: no copy of the parameter or its gradient (for full fine-tuning those
/// copies were 1 GB a step for the default model).
struct HostUpdate<'a> {
    moments: std::sync::Mutex<(&'a mut [f32], &'a mut [f32])>,
    beta1: f32,
    beta2: f32,
    bias1: f32,
    bias2: f32,
    eps: f32,
    lr: f32,
    decay: f32,
}

impl candle_core::InplaceOp2 for HostUpdate<'_> {
    fn name(&self) -> &'static str {
        "adamw-update"
    }

    fn cpu_fwd(
        &self,
        ps: &mut candle_core::CpuStorage,
        pl: &candle_core::Layout,
        gs: &candle_core::CpuStorage,
        gl: &candle_core::Layout,
    ) -> Result<()> {
        use candle_core::CpuStorage;
        let (CpuStorage::F32(p), CpuStorage::F32(g), Some((p0, p1)), Some((g0, g1))) =
            (ps, gs, pl.contiguous_offsets(), gl.contiguous_offsets())
        else {
            candle_core::bail!("the host AdamW update takes contiguous f32 tensors");
        };
        let (p, g) = (&mut p[p0..p1], &g[g0..g1]);
        let mut moments = self
            .moments
            .lock()
            .map_err(|_| candle_core::Error::Msg("optimizer state poisoned".into()))?;
        let (m, v) = &mut *moments;
        if p.len() != g.len() || m.len() != p.len() {
            candle_core::bail!(
                "AdamW: {} values, {} gradients, {} moments",
                p.len(),
                g.len(),
                m.len()
            );
        }
        let (b1, b2) = (self.beta1, self.beta2);
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| {
                for j in 0..p.len() {
                    m[j] = b1 * m[j] + (1.0 - b1) * g[j];
                    v[j] = b2 * v[j] + (1.0 - b2) * g[j] * g[j];
                    let update = (m[j] / self.bias1) / ((v[j] / self.bias2).sqrt() + self.eps);
                    p[j] = p[j] * self.decay - self.lr * update;
                }
            });
        Ok(())
    }
}

/// One optimiser over named trainable variables.
pub struct AdamW {
    params: Vec<(String, Var)>,
    moments: Vec<Moments>,
    steps: u64,
    config: AdamWConfig,
}

/// Elements per parallel work item of the fused update.
const CHUNK: usize = 1 << 14;

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        let moments = params
            .iter()
            .map(|(_, p)| Moments::zeros(p.as_tensor()))
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW {
            params,
            moments,
            steps: 0,
            config,
        })
    }

    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// Updates completed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One update with `grads[i]` for `params()[i]` (`None`: no gradient this step).
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        self.steps += 1;
        let c = self.config;
        let t = self.steps as i32;
        let (bias1, bias2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        for (i, ((_, param), moments)) in self.params.iter().zip(&mut self.moments).enumerate() {
            let Some(g) = grads.get(i).and_then(|g| g.as_ref()) else {
                continue;
            };
            match moments {
                Moments::Host { m, v } => {
                    let g = g.to_dtype(DType::F32)?.contiguous()?;
                    let update = HostUpdate {
                        moments: std::sync::Mutex::new((m.as_mut_slice(), v.as_mut_slice())),
                        beta1: c.beta1 as f32,
                        beta2: c.beta2 as f32,
                        bias1: bias1 as f32,
                        bias2: bias2 as f32,
                        eps: c.eps as f32,
                        lr: lr as f32,
                        decay: (1.0 - lr * c.weight_decay) as f32,
                    };
                    param.as_tensor().inplace_op2(&g, &update)?;
                }
                Moments::Device { m, v } => {
                    let new_m = ((&*m * c.beta1)? + (g * (1.0 - c.beta1))?)?;
                    let new_v = ((&*v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                    let update = ((&new_m / bias1)? / ((&new_v / bias2)?.sqrt()? + c.eps)?)?;
                    let decayed = (param.as_tensor().detach() * (1.0 - lr * c.weight_decay))?;
                    param.set(&(decayed - (update * lr)?)?)?;
                    *m = new_m;
                    *v = new_v;
                }
            }
        }
        Ok(())
    }

    /// First and second moments by parameter name (`{name}.exp_avg`, `{name}.exp_avg_sq`), as
    /// a checkpoint writes them: host moments borrowed, not copied.
    pub fn saved(&self) -> Vec<(String, Saved<'_>)> {
        let mut out = Vec::with_capacity(2 * self.params.len());
        for ((name, param), moments) in self.params.iter().zip(&self.moments) {
            let (m, v) = match moments {
                Moments::Host { m, v } => {
                    let shape = param.dims().to_vec();
                    (
                        Saved::Host {
                            values: m,
                            shape: shape.clone(),
                        },
                        Saved::Host { values: v, shape },
                    )
                }
                Moments::Device { m, v } => (Saved::Tensor(m.clone()), Saved::Tensor(v.clone())),
            };
            out.push((format!("{name}.exp_avg"), m));
            out.push((format!("{name}.exp_avg_sq"), v));
        }
        out
    }

    /// [`saved`](Self::saved) as tensors, as [`load_state`](Self::load_state) takes them.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        self.saved()
            .into_iter()
            .map(|(name, saved)| Ok((name, saved.to_tensor(&Device::Cpu)?)))
            .collect()
    }

    /// Restores moments and the step count saved by `state()`.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        for ((name, param), moments) in self.params.iter().zip(&mut self.moments) {
            let read = |key: String| -> Result<Tensor> {
                let t = state.get(&key).ok_or_else(|| {
                    candle_core::Error::Msg(format!("optimizer state has no `{key}`"))
                })?;
                if t.dims() != param.dims() {
                    candle_core::bail!(
                        "optimizer state `{key}` has shape {:?}, the parameter {:?}",
                        t.dims(),
                        param.dims()
                    );
                }
                t.to_device(param.device())?.to_dtype(param.dtype())
            };
            let (m, v) = (
                read(format!("{name}.exp_avg"))?,
                read(format!("{name}.exp_avg_sq"))?,
            );
            *moments = match moments {
                Moments::Host { .. } => Moments::Host {
                    m: m.flatten_all()?.to_vec1::<f32>()?,
                    v: v.flatten_all()?.to_vec1::<f32>()?,
                },
                Moments::Device { .. } => Moments::Device { m, v },
            };
        }
        self.steps = steps;
        Ok(())
    }
}

/// Scales gradients so that their global L2 norm is at most `max_norm`; returns the norm
/// before clipping.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for g in grads.iter().flatten() {
        total += g
            .sqr()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
    }
    let norm = total.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.iter_mut().flatten() {
            *g = (&*g * scale)?;
        }
    }
    Ok(norm)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    #[default]
    Cosine,
    Constant,
}

/// Learning rate for optimiser step `step` (0-based): linear warm-up over `warmup` steps, then
/// cosine decay to zero at `total`, or constant.
pub fn learning_rate(base: f64, step: u64, warmup: u64, total: u64, schedule: Schedule) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    match schedule {
        Schedule::Constant => base,
        Schedule::Cosine => {
            let span = total.saturating_sub(warmup).max(1) as f64;
            let progress = ((step - warmup) as f64 / span).min(1.0);
            base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// `steps` updates of AdamW on (p - target)², from `start` with optimiser `state`.
    fn descend(
        start: &[f32],
        state: Option<(&HashMap<String, Tensor>, u64)>,
        steps: usize,
    ) -> (Vec<f32>, HashMap<String, Tensor>, u64) {
        let dev = Device::Cpu;
        let target = Tensor::new(&[1.0f32, -2.0, 0.5], &dev).unwrap();
        let p = Var::new(start, &dev).unwrap();
        let mut opt = AdamW::new(vec![("p".into(), p.clone())], AdamWConfig::default()).unwrap();
        if let Some((saved, n)) = state {
            opt.load_state(saved, n).unwrap();
        }
        for _ in 0..steps {
            let g = ((p.as_tensor() - &target).unwrap() * 2.0).unwrap();
            opt.step(&[Some(g)], 0.05).unwrap();
        }
        (
            p.as_tensor().to_vec1::<f32>().unwrap(),
            opt.state().unwrap(),
            opt.steps(),
        )
    }

    #[test]
    fn the_tensor_path_for_other_devices_and_dtypes_takes_the_same_steps() {
        // An f64 parameter goes through the tensor path (what a GPU uses); the f32 one through
        // the fused host loop. Both must walk the same way.
        let dev = Device::Cpu;
        let target = [1.0f64, -2.0, 0.5];
        let p64 = Var::new(&[0.0f64; 3], &dev).unwrap();
        let p32 = Var::new(&[0.0f32; 3], &dev).unwrap();
        let config = AdamWConfig {
            weight_decay: 0.1,
            ..Default::default()
        };
        let mut o64 = AdamW::new(vec![("p".into(), p64.clone())], config).unwrap();
        let mut o32 = AdamW::new(vec![("p".into(), p32.clone())], config).unwrap();
        for _ in 0..50 {
            let t64 = Tensor::new(&target, &dev).unwrap();
            let g64 = ((p64.as_tensor() - &t64).unwrap() * 2.0).unwrap();
            let g32 = g64.to_dtype(DType::F32).unwrap();
            o64.step(&[Some(g64)], 0.05).unwrap();
            o32.step(&[Some(g32)], 0.05).unwrap();
        }
        let a = p64.as_tensor().to_vec1::<f64>().unwrap();
        let b = p32.as_tensor().to_vec1::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - *y as f64).abs() < 1e-4, "{a:?} against {b:?}");
        }
    }

    #[test]
    fn adamw_minimises_a_quadratic_and_resumes_exactly() {
        let (straight, _, _) = descend(&[0.0; 3], None, 300);
        for (got, want) in straight.iter().zip([1.0, -2.0, 0.5]) {
            assert!(
                (got - want).abs() < 1e-2,
                "AdamW reaches the minimum: {straight:?}"
            );
        }
        let (halfway, state, steps) = descend(&[0.0; 3], None, 120);
        let (resumed, _, _) = descend(&halfway, Some((&state, steps)), 180);
        assert_eq!(
            resumed, straight,
            "a resumed optimiser continues bit for bit"
        );
    }

    #[test]
    fn clipping_caps_the_global_norm() {
        let dev = Device::Cpu;
        let mut grads = vec![
            Some(Tensor::new(&[3f32, 0.0], &dev).unwrap()),
            None,
            Some(Tensor::new(&[4f32], &dev).unwrap()),
        ];
        let norm = clip_grad_norm(&mut grads, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        let after: f32 = grads
            .iter()
            .flatten()
            .map(|g| {
                g.sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            })
            .sum();
        assert!((after.sqrt() - 1.0).abs() < 1e-4, "clipped to norm 1");
    }

    #[test]
    fn schedules_warm_up_then_decay() {
        assert!((learning_rate(1.0, 0, 10, 100, Schedule::Cosine) - 0.1).abs() < 1e-12);
        assert!((learning_rate(1.0, 9, 10, 100, Schedule::Cosine) - 1.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 10, 10, 100, Schedule::Cosine) - 1.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 55, 10, 100, Schedule::Cosine) - 0.5).abs() < 1e-9);
        assert!(learning_rate(1.0, 100, 10, 100, Schedule::Cosine).abs() < 1e-12);
        assert_eq!(learning_rate(2.0, 50, 0, 100, Schedule::Constant), 2.0);
    }
}
