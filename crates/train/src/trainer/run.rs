//! The training loop every method shares: deterministic batches, gradient accumulation,
//! clipping, AdamW with a schedule, periodic validation, checkpoints, resume and cancel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};
use tunelab_engine::Transformer;

use crate::data::TokenizedExample;
use crate::trainer::loss::{masked_head_loss, IGNORE};
use crate::trainer::optim::{clip_grad_norm, learning_rate, AdamW, AdamWConfig, Schedule};
use crate::trainer::run_dir::{load_checkpoint, CheckpointState, RunDir};
use crate::trainer::TrainError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSettings {
    /// Optimiser steps; 0 means as many as `epochs` take.
    pub max_steps: u64,
    pub epochs: f64,
    pub lr: f64,
    pub warmup_steps: u64,
    pub schedule: Schedule,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    pub max_grad_norm: f64,
    pub weight_decay: f64,
    /// Validation every N steps (0: only at the end).
    pub eval_every: u64,
    /// Checkpoint every N steps (0: only at the end).
    pub save_every: u64,
    /// Checkpoints kept: the newest N, plus the one with the lowest validation loss (0: keep
    /// every checkpoint). One full fine-tune of the 135M model's checkpoint is about 1.6 GB.
    pub keep_checkpoints: u64,
    pub seed: u64,
    /// Keep only each block's input for backward and recompute the rest: far less memory,
    /// about a third more compute.
    pub activation_checkpointing: bool,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            max_steps: 0,
            epochs: 1.0,
            lr: 2e-4,
            warmup_steps: 10,
            schedule: Schedule::Cosine,
            batch_size: 4,
            grad_accum: 1,
            max_grad_norm: 1.0,
            weight_decay: 0.0,
            eval_every: 50,
            save_every: 100,
            keep_checkpoints: 2,
            seed: 42,
            activation_checkpointing: true,
        }
    }
}

impl TrainSettings {
    pub fn total_steps(&self, examples: usize) -> u64 {
        if self.max_steps > 0 {
            return self.max_steps;
        }
        let per_step = (self.batch_size * self.grad_accum).max(1) as f64;
        ((self.epochs * examples as f64) / per_step).ceil().max(1.0) as u64
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepMetrics {
    pub kind: &'static str,
    pub step: u64,
    pub total_steps: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: u64,
    pub tokens_seen: u64,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
    pub rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalMetrics {
    pub kind: &'static str,
    pub step: u64,
    pub val_loss: f64,
    pub val_tokens: u64,
}

/// Where progress goes while training (a progress bar, a Tauri channel, a test's log). Training
/// runs on a compute-pool thread, so a sink must be `Send`.
pub trait ProgressSink: Send {
    fn step(&mut self, metrics: &StepMetrics);
    fn eval(&mut self, metrics: &EvalMetrics);
    /// A reading of the GPU the run trains on, after a step (at most one a second); never
    /// called on the CPU.
    fn gpu(&mut self, _reading: &tunelab_hardware::GpuInfo) {}
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    pub steps: u64,
    pub resumed_from: Option<u64>,
    pub final_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub tokens_seen: u64,
    pub elapsed_s: f64,
    pub cancelled: bool,
}

/// The order examples are visited in: every epoch visits each example once, in its own seeded
/// order, so the data position follows from the step alone and a resume is exact. The order of
/// the current epoch is kept, so it is shuffled once per epoch rather than once per example.
struct DataOrder {
    n: usize,
    seed: u64,
    epoch: Option<u64>,
    order: Vec<usize>,
}

impl DataOrder {
    fn new(n: usize, seed: u64) -> Self {
        DataOrder {
            n,
            seed,
            epoch: None,
            order: Vec::new(),
        }
    }

    /// The example at global position `p`.
    fn index(&mut self, p: u64) -> usize {
        let epoch = p / self.n as u64;
        if self.epoch != Some(epoch) {
            self.order = (0..self.n).collect();
            let mut state =
                self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
            for i in (1..self.n).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                self.order.swap(i, (state % (i as u64 + 1)) as usize);
            }
            self.epoch = Some(epoch);
        }
        self.order[(p % self.n as u64) as usize]
    }
}

/// The dropout stream of micro-batch `micro` of optimiser step `step` (counted from 0).
fn dropout_stream(seed: u64, step: u64, micro: u64) -> u64 {
    use tunelab_engine::layers::splitmix64;
    splitmix64(seed ^ splitmix64(step ^ splitmix64(micro)))
}

/// Right-padded ids and labels for a batch.
fn batch_tensors(
    examples: &[&TokenizedExample],
    pad_id: u32,
    device: &candle_core::Device,
) -> Result<(Tensor, Vec<Vec<i64>>, u64), TrainError> {
    let len = examples
        .iter()
        .map(|e| e.ids.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let mut ids = Vec::with_capacity(examples.len() * len);
    let mut labels = Vec::with_capacity(examples.len());
    let mut tokens = 0u64;
    for e in examples {
        ids.extend(
            e.ids
                .iter()
                .copied()
                .chain(std::iter::repeat(pad_id))
                .take(len),
        );
        labels.push(
            e.labels
                .iter()
                .copied()
                .chain(std::iter::repeat(IGNORE))
                .take(len)
                .collect(),
        );
        tokens += e.ids.len() as u64;
    }
    Ok((
        Tensor::from_vec(ids, (examples.len(), len), device)?,
        labels,
        tokens,
    ))
}

fn validation_loss(
    model: &Transformer,
    val: &[TokenizedExample],
    batch: usize,
    pad_id: u32,
) -> Result<(f64, u64), TrainError> {
    let (mut total, mut count) = (0f64, 0u64);
    for chunk in val.chunks(batch.max(1)) {
        let refs: Vec<&TokenizedExample> = chunk.iter().collect();
        let (ids, labels, _) = batch_tensors(&refs, pad_id, model.device())?;
        let hidden = model.hidden_states(&ids)?;
        let (loss, n) = masked_head_loss(model, &hidden, &labels, false)?;
        total += loss.to_scalar::<f32>()? as f64 * n as f64;
        count += n as u64;
    }
    Ok((
        if count > 0 {
            total / count as f64
        } else {
            f64::NAN
        },
        count,
    ))
}

/// One forward and backward pass over a batch: the mean loss over the counted targets, and the
/// gradient of `scale ×` that loss for each of `params` (`None` where it got none). With
/// `checkpointing`, blocks keep only their inputs and are run again in backward. A loss that
/// is not finite comes back without a backward pass.
pub fn loss_and_grads(
    model: &Transformer,
    params: &[(String, candle_core::Var)],
    ids: &Tensor,
    labels: &[Vec<i64>],
    checkpointing: bool,
    scale: f64,
) -> Result<(f64, Vec<Option<Tensor>>), TrainError> {
    let side = match checkpointing {
        true => Some(model.checkpoint_side_grads()?),
        false => None,
    };
    let hidden = model.hidden_train(ids, side.as_ref())?;
    let (loss, _) = masked_head_loss(model, &hidden, labels, true)?;
    let value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    if !value.is_finite() {
        return Ok((value, vec![None; params.len()]));
    }
    let store = (loss * scale)?.backward()?;
    let grads = params
        .iter()
        .map(|(_, var)| {
            store
                .get(var.as_tensor())
                .cloned()
                .or_else(|| side.as_ref()?.take(var.as_tensor()))
        })
        .collect();
    Ok((value, grads))
}

/// Trains `params` (already attached to `model`) on `train_set`.
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: &Transformer,
    params: &[(String, Var)],
    train_set: &[TokenizedExample],
    val_set: &[TokenizedExample],
    settings: &TrainSettings,
    run: &RunDir,
    pad_id: u32,
    sink: &mut dyn ProgressSink,
    cancel: &AtomicBool,
) -> Result<TrainOutcome, TrainError> {
    tunelab_engine::on_compute_pool(|| {
        train_on_pool(
            model, params, train_set, val_set, settings, run, pad_id, sink, cancel,
        )
    })
}

#[allow(clippy::too_many_arguments)]
fn train_on_pool(
    model: &Transformer,
    params: &[(String, Var)],
    train_set: &[TokenizedExample],
    val_set: &[TokenizedExample],
    settings: &TrainSettings,
    run: &RunDir,
    pad_id: u32,
    sink: &mut dyn ProgressSink,
    cancel: &AtomicBool,
) -> Result<TrainOutcome, TrainError> {
    if train_set.is_empty() {
        return Err(TrainError::Config("the training set is empty".into()));
    }
    if settings.batch_size == 0 || settings.grad_accum == 0 {
        return Err(TrainError::Config(
            "batch_size and grad_accum must be at least 1".into(),
        ));
    }
    let total = settings.total_steps(train_set.len());
    let adam = AdamWConfig {
        weight_decay: settings.weight_decay,
        ..Default::default()
    };
    let mut optimizer = AdamW::new(params.to_vec(), adam)?;
    let (mut step, mut tokens_seen, mut elapsed_before, mut resumed_from) =
        (0u64, 0u64, 0f64, None);
    let resume_from = run.latest_checkpoint();
    // What was logged after the checkpoint is done again: the log goes back to it.
    run.truncate_metrics(resume_from.as_ref().map_or(0, |(_, s)| s.step))?;
    if let Some((dir, state)) = resume_from {
        let moments = load_checkpoint(&dir, params)?;
        optimizer.load_state(&moments, state.step)?;
        (step, tokens_seen, elapsed_before, resumed_from) = (
            state.step,
            state.tokens_seen,
            state.elapsed_seconds,
            Some(state.step),
        );
    }
    let start = Instant::now();
    let elapsed = |start: &Instant| elapsed_before + start.elapsed().as_secs_f64();
    let (mut final_loss, mut val_loss, mut cancelled) = (None, None, false);
    let per_micro = settings.batch_size as u64;
    let mut order = DataOrder::new(train_set.len(), settings.seed);
    while step < total {
        if cancel.load(Ordering::Relaxed) {
            cancelled = true;
            break;
        }
        let step_start = Instant::now();
        let lr = learning_rate(
            settings.lr,
            step,
            settings.warmup_steps,
            total,
            settings.schedule,
        );
        let mut grads: Vec<Option<Tensor>> = vec![None; params.len()];
        let (mut loss_sum, mut step_tokens) = (0f64, 0u64);
        for micro in 0..settings.grad_accum as u64 {
            let first = (step * settings.grad_accum as u64 + micro) * per_micro;
            let batch: Vec<&TokenizedExample> = (first..first + per_micro)
                .map(|p| &train_set[order.index(p)])
                .collect();
            let (ids, labels, tokens) = batch_tensors(&batch, pad_id, model.device())?;
            // Dropout draws from a stream that follows from the seed and the position alone,
            // so a resumed run draws the masks the uninterrupted one would have.
            let stream = dropout_stream(settings.seed, step, micro);
            let (value, micro_grads) = tunelab_engine::layers::with_dropout_seed(stream, || {
                loss_and_grads(
                    model,
                    params,
                    &ids,
                    &labels,
                    settings.activation_checkpointing,
                    1.0 / settings.grad_accum as f64,
                )
            })?;
            if !value.is_finite() {
                return Err(TrainError::NonFinite {
                    step: step + 1,
                    loss: value,
                });
            }
            for (slot, g) in grads.iter_mut().zip(micro_grads) {
                if let Some(g) = g {
                    *slot = Some(match slot.take() {
                        Some(acc) => (acc + g)?,
                        None => g,
                    });
                }
            }
            loss_sum += value;
            step_tokens += tokens;
        }
        let grad_norm = clip_grad_norm(&mut grads, settings.max_grad_norm)?;
        optimizer.step(&grads, lr)?;
        step += 1;
        tokens_seen += step_tokens;
        let loss = loss_sum / settings.grad_accum as f64;
        final_loss = Some(loss);
        let metrics = StepMetrics {
            kind: "train",
            step,
            total_steps: total,
            loss,
            lr,
            grad_norm,
            tokens: step_tokens,
            tokens_seen,
            tokens_per_s: step_tokens as f64 / step_start.elapsed().as_secs_f64().max(1e-9),
            elapsed_s: elapsed(&start),
            rss_bytes: tunelab_hardware::current_rss_bytes(),
        };
        run.append_metrics(&metrics)?;
        sink.step(&metrics);
        let last = step == total;
        let mut val_now = None;
        if !val_set.is_empty()
            && (last || (settings.eval_every > 0 && step % settings.eval_every == 0))
        {
            let (v, n) = validation_loss(model, val_set, settings.batch_size, pad_id)?;
            val_loss = Some(v);
            val_now = Some(v);
            let m = EvalMetrics {
                kind: "eval",
                step,
                val_loss: v,
                val_tokens: n,
            };
            run.append_metrics(&m)?;
            sink.eval(&m);
        }
        if last || (settings.save_every > 0 && step % settings.save_every == 0) {
            let state = CheckpointState {
                step,
                tokens_seen,
                elapsed_seconds: elapsed(&start),
                val_loss: val_now,
                files: Default::default(),
            };
            run.save_checkpoint(&state, params, optimizer.saved())?;
            run.prune_checkpoints(settings.keep_checkpoints)?;
        }
    }
    if cancelled && step > 0 {
        let state = CheckpointState {
            step,
            tokens_seen,
            elapsed_seconds: elapsed(&start),
            val_loss: None,
            files: Default::default(),
        };
        run.save_checkpoint(&state, params, optimizer.saved())?;
        run.prune_checkpoints(settings.keep_checkpoints)?;
    }
    Ok(TrainOutcome {
        steps: step,
        resumed_from,
        final_loss,
        val_loss,
        tokens_seen,
        elapsed_s: elapsed(&start),
        cancelled,
    })
}
