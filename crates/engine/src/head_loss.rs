//! Cross-entropy through the output head without ever holding the full `(tokens, vocab)`
//! logits.
//!
//! The output head of a small model is its biggest matrix product: 1,024 tokens against a
//! 49,152-word vocabulary make 200 MB of logits in f32, and autograd keeps several copies of
//! them (logits, log-softmax, their gradients). Here the rows go through the head a chunk at a
//! time; each chunk's loss and its gradient with respect to the hidden states are computed at
//! once (softmax minus one-hot, times the head's weights, with no autograd graph), and only
//! the `(tokens, hidden)`
//! gradient is kept. The returned loss carries that gradient into the graph below it, so
//! `loss.backward()` reaches the transformer as usual. A frozen head receives no gradient; a
//! trainable one (a variable, in full fine-tuning) gets its own, accumulated over the chunks.

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::layers::{Linear, Mode, Weight};
use crate::Result;

/// Logit elements per chunk: about 16 MB in f32, whatever the vocabulary.
pub const CHUNK_ELEMENTS: usize = 4 << 20;
/// On a GPU: 256 MB of f32 logits per chunk.
pub const DEVICE_CHUNK_ELEMENTS: usize = 64 << 20;
/// Decoded weights of a quantized head held at once: at most this many f32 elements (8 MB).
pub const DECODED_HEAD_ELEMENTS: usize = 2 << 20;

/// Mean cross-entropy of `head(hidden)` against `targets`, one target per row of `hidden`
/// `(rows, hidden_size)`. With `with_grad`, the result back-propagates into `hidden`.
/// In [`Mode::Portable`] (any device but the CPU's fused kernels) a dense head's rows are
/// scored where they are, without a trip through the host.
pub fn head_cross_entropy(
    head: &Linear,
    hidden: &Tensor,
    targets: &[u32],
    with_grad: bool,
    mode: Mode,
) -> Result<Tensor> {
    chunked(head, hidden, targets, with_grad, CHUNK_ELEMENTS, mode)
}

fn chunked(
    head: &Linear,
    hidden: &Tensor,
    targets: &[u32],
    with_grad: bool,
    chunk_elements: usize,
    mode: Mode,
) -> Result<Tensor> {
    let (rows, _) = hidden.dims2()?;
    if rows != targets.len() {
        return Err(crate::EngineError::InvalidRequest(format!(
            "{} hidden rows but {} targets",
            rows,
            targets.len()
        )));
    }
    if rows == 0 {
        return Ok(Tensor::new(0f32, hidden.device())?);
    }
    if head.adapter.is_some() {
        return Err(crate::EngineError::InvalidRequest(
            "the chunked loss needs a frozen output head without an adapter".into(),
        ));
    }
    // A trainable head (full fine-tuning) also gets its gradient, Σ over chunks of dlogitsᵀ x.
    let trainable = match &head.weight {
        Weight::Dense(w) if with_grad && w.is_variable() => Some(w.clone()),
        _ => None,
    };
    let w = match &head.weight {
        Weight::Dense(w) => w.detach(),
        // A quantized head is never decoded whole.
        quantized => {
            let rows_of = quantized_rows(quantized);
            return by_vocab_slices(head, &rows_of, hidden, targets, with_grad, chunk_elements);
        }
    };
    let w = w.to_dtype(hidden.dtype())?;
    let vocab = w.dim(0)?;
    let on_device = mode == Mode::Portable;
    // On a GPU, larger chunks: each is a few kernels over the whole chunk, and small ones
    // leave it idle.
    let chunk_elements = if on_device && !hidden.device().is_cpu() {
        chunk_elements.max(DEVICE_CHUNK_ELEMENTS)
    } else {
        chunk_elements
    };
    let chunk = (chunk_elements / vocab).clamp(1, rows);
    let scale = 1.0 / rows as f32;
    let mut total = 0f64;
    let mut device_total: Option<Tensor> = None;
    let mut grads = Vec::new();
    let mut head_grad: Option<Tensor> = None;
    for start in (0..rows).step_by(chunk) {
        let len = chunk.min(rows - start);
        let x = hidden.narrow(0, start, len)?.detach();
        let mut logits = x.matmul(&w.t()?)?;
        if let Some(b) = &head.bias {
            logits = logits.broadcast_add(&b.detach().to_dtype(logits.dtype())?)?;
        }
        let chunk_targets = &targets[start..start + len];
        let dlogits = if on_device {
            let index = Tensor::from_slice(chunk_targets, len, hidden.device())?;
            let (sum, grad) = crate::portable::cross_entropy_rows(
                &logits,
                &index,
                with_grad.then_some(scale as f64),
            )?;
            device_total = Some(match device_total.take() {
                Some(acc) => (acc + sum)?,
                None => sum,
            });
            grad
        } else {
            let mut values = logits
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            // Row by row: the loss, and in place of the logits the gradient softmax − one-hot.
            total += values
                .par_chunks_mut(vocab)
                .zip(chunk_targets.par_iter())
                .map(|(row, &target)| row_loss_and_grad(row, target as usize, scale, with_grad))
                .sum::<f64>();
            with_grad
                .then(|| Tensor::from_vec(values, (len, vocab), hidden.device()))
                .transpose()?
        };
        drop(logits);
        if let Some(dlogits) = dlogits {
            let dlogits = dlogits.to_dtype(w.dtype())?;
            grads.push(dlogits.matmul(&w)?);
            if trainable.is_some() {
                let g = dlogits.t()?.matmul(&x)?;
                head_grad = Some(match head_grad.take() {
                    Some(acc) => (acc + g)?,
                    None => g,
                });
            }
        }
    }
    if let Some(sum) = device_total {
        total = sum.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    }
    let mean = total / rows as f64;
    if !with_grad {
        return Ok(Tensor::new(mean as f32, hidden.device())?);
    }
    // The mean, with gradient G for the hidden rows, and for a trainable head its own, handed
    // on as it is: written as `(w · g).sum()`, the product, `g`, the sum's broadcast gradient
    // and the product's gradient (each the head's size, 113 MB for SmolLM2) stayed in memory
    // through the whole backward pass of full fine-tuning.
    let grad = Tensor::cat(&grads, 0)?;
    let mut loss = crate::grad_ops::seeded_scalar(hidden, &grad, mean as f32)?;
    if let (Some(w), Some(g)) = (trainable, head_grad) {
        let head = crate::grad_ops::seeded_scalar(&w, &g.to_dtype(w.dtype())?, 0.0)?;
        loss = (loss + head.to_dtype(DType::F32)?)?;
    }
    Ok(loss)
}

/// Decodes rows `start..start + len` of a quantized head to f32.
type RowDecoder<'a> = Box<dyn Fn(usize, usize) -> Result<Tensor> + 'a>;

/// A row-range decoder for a head's weights: NF4 and every GGUF format decode only the rows
/// asked for (on the CPU, where the blocks live).
fn quantized_rows(weight: &Weight) -> RowDecoder<'_> {
    match weight {
        Weight::Dense(w) => Box::new(move |start, len| Ok(w.detach().narrow(0, start, len)?)),
        Weight::Nf4(q) => {
            Box::new(move |start, len| q.dequantize_rows(start, len, &candle_core::Device::Cpu))
        }
        Weight::Quantized { qtensor, .. } => {
            Box::new(move |start, len| Ok(crate::qmatmul::dequantize_rows(qtensor, start, len)?))
        }
    }
}

/// The loss through a quantized head, decoded a slice of the vocabulary at a time so that the
/// whole head never exists in f32 (113 MB for a 49,152 × 576 head, the largest single
/// allocation of a QLoRA step). The first pass keeps each row's running maximum and sum of
/// exponentials (an online log-sum-exp) and its target's logit; with a gradient, a second pass
/// decodes each slice again and adds `(softmax − one-hot) · W_slice` to the rows' gradient.
fn by_vocab_slices(
    head: &Linear,
    rows_of: &RowDecoder<'_>,
    hidden: &Tensor,
    targets: &[u32],
    with_grad: bool,
    chunk_elements: usize,
) -> Result<Tensor> {
    let (rows, hidden_size) = hidden.dims2()?;
    let vocab = match &head.weight {
        Weight::Nf4(q) => q.dims2().0,
        Weight::Quantized { qtensor, .. } => qtensor.shape().dims2()?.0,
        Weight::Dense(w) => w.dim(0)?,
    };
    let x = hidden.detach().to_dtype(DType::F32)?.contiguous()?;
    // Small batches would otherwise decode the whole head as one slice.
    let slice = (chunk_elements / rows)
        .min(DECODED_HEAD_ELEMENTS / hidden_size.max(1))
        .clamp(1, vocab);
    // Logits (rows, len) of vocabulary entries start..start + len, as one row-major vector.
    let logits_of = |start: usize, len: usize| -> Result<(Vec<f32>, Tensor)> {
        let w = rows_of(start, len)?.to_device(x.device())?;
        let mut logits = x.matmul(&w.t()?)?;
        if let Some(b) = &head.bias {
            logits =
                logits.broadcast_add(&b.detach().narrow(0, start, len)?.to_dtype(DType::F32)?)?;
        }
        Ok((logits.flatten_all()?.to_vec1::<f32>()?, w))
    };
    // (running max, Σ exp(logit − max), target logit) per row.
    let mut stats = vec![(f32::NEG_INFINITY, 0f64, 0f32); rows];
    for start in (0..vocab).step_by(slice) {
        let len = slice.min(vocab - start);
        let (logits, _) = logits_of(start, len)?;
        stats
            .par_iter_mut()
            .zip(logits.par_chunks(len))
            .zip(targets.par_iter())
            .for_each(|(((max, sum, target_logit), row), &target)| {
                let row_max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let new_max = max.max(row_max);
                *sum = *sum * ((*max - new_max) as f64).exp()
                    + row
                        .iter()
                        .map(|&v| ((v - new_max) as f64).exp())
                        .sum::<f64>();
                *max = new_max;
                if let Some(i) = (target as usize).checked_sub(start).filter(|&i| i < len) {
                    *target_logit = row[i];
                }
            });
    }
    let lse: Vec<f32> = stats
        .iter()
        .map(|&(max, sum, _)| (max as f64 + sum.ln()) as f32)
        .collect();
    let total: f64 = stats
        .iter()
        .zip(&lse)
        .map(|(&(_, _, target_logit), &lse)| (lse - target_logit) as f64)
        .sum();
    let mean = total / rows as f64;
    if !with_grad {
        return Ok(Tensor::new(mean as f32, hidden.device())?);
    }
    let scale = 1.0 / rows as f32;
    let mut grad: Option<Tensor> = None;
    for start in (0..vocab).step_by(slice) {
        let len = slice.min(vocab - start);
        let (mut dlogits, w) = logits_of(start, len)?;
        dlogits
            .par_chunks_mut(len)
            .zip(lse.par_iter().zip(targets.par_iter()))
            .for_each(|(row, (&lse, &target))| {
                row.iter_mut().for_each(|v| *v = (*v - lse).exp() * scale);
                if let Some(i) = (target as usize).checked_sub(start).filter(|&i| i < len) {
                    row[i] -= scale;
                }
            });
        let part = Tensor::from_vec(dlogits, (rows, len), x.device())?.matmul(&w)?;
        grad = Some(match grad {
            Some(g) => (g + part)?,
            None => part,
        });
    }
    let grad = grad
        .expect("a vocabulary has at least one entry")
        .to_dtype(hidden.dtype())?;
    Ok(crate::grad_ops::seeded_scalar(hidden, &grad, mean as f32)?)
}

/// `logsumexp(row) − row[target]`; with `grad`, leaves in `row`
/// `scale · (softmax(row) − onehot(target))`. `row` is scratch either way.
fn row_loss_and_grad(row: &mut [f32], target: usize, scale: f32, grad: bool) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let target_logit = row[target];
    // The exponentials in place (a loop that vectorizes), then their sum in f64 over four
    // running sums.
    row.iter_mut()
        .for_each(|v| *v = crate::fast_exp::exp_nonpositive(*v - max));
    let mut sums = [0f64; 4];
    let mut quads = row.chunks_exact(4);
    for quad in &mut quads {
        for (sum, &e) in sums.iter_mut().zip(quad) {
            *sum += e as f64;
        }
    }
    let sum = sums.iter().sum::<f64>() + quads.remainder().iter().map(|&e| e as f64).sum::<f64>();
    let loss = max as f64 + sum.ln() - target_logit as f64;
    if grad {
        // softmax = e^(v − max) / Σ.
        let factor = (scale as f64 / sum) as f32;
        row.iter_mut().for_each(|e| *e *= factor);
        row[target] -= scale;
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    /// The chunked loss and its gradient equal autograd through full logits and log-softmax.
    #[test]
    fn matches_cross_entropy_through_full_logits() {
        let dev = Device::Cpu;
        let (rows, hidden_size, vocab) = (7, 5, 11);
        let w = Tensor::randn(0f32, 1.0, (vocab, hidden_size), &dev).unwrap();
        let head = Linear::new(Weight::Dense(w.clone()), None);
        let h = Var::from_tensor(&Tensor::randn(0f32, 1.0, (rows, hidden_size), &dev).unwrap())
            .unwrap();
        let targets: Vec<u32> = (0..rows as u32).map(|i| (i * 3) % vocab as u32).collect();

        let logits = h.as_tensor().matmul(&w.t().unwrap()).unwrap();
        let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
        let t = Tensor::new(targets.as_slice(), &dev)
            .unwrap()
            .unsqueeze(1)
            .unwrap();
        let reference = log_probs
            .gather(&t, 1)
            .unwrap()
            .mean_all()
            .unwrap()
            .neg()
            .unwrap();
        let reference_grad = reference.backward().unwrap();
        let reference_grad = reference_grad.get(h.as_tensor()).unwrap();

        let b = reference.to_scalar::<f32>().unwrap();
        // One chunk of 7 rows, and chunks of 3 + 3 + 1 rows.
        for chunk_elements in [1 << 20, 3 * vocab] {
            let loss = chunked(
                &head,
                h.as_tensor(),
                &targets,
                true,
                chunk_elements,
                Mode::Training,
            )
            .unwrap();
            let a = loss.to_scalar::<f32>().unwrap();
            assert!((a - b).abs() < 1e-5, "loss {a} against {b}");
            let store = loss.backward().unwrap();
            let grad = store.get(h.as_tensor()).unwrap();
            let diff = crate::layers::max_abs_diff(grad, reference_grad).unwrap();
            assert!(diff < 1e-6, "gradient differs by {diff}");
            assert!(store.get(&w).is_none(), "the frozen head keeps no gradient");

            // A trainable head gets the gradient autograd gives it through full logits.
            let wv = Var::from_tensor(&w).unwrap();
            let trainable = Linear::new(Weight::Dense(wv.as_tensor().clone()), None);
            let loss = chunked(
                &trainable,
                h.as_tensor(),
                &targets,
                true,
                chunk_elements,
                Mode::Training,
            )
            .unwrap();
            let store = loss.backward().unwrap();
            let logits = h.as_tensor().matmul(&wv.as_tensor().t().unwrap()).unwrap();
            let reference = candle_nn::ops::log_softmax(&logits, D::Minus1)
                .unwrap()
                .gather(&t, 1)
                .unwrap()
                .mean_all()
                .unwrap()
                .neg()
                .unwrap()
                .backward()
                .unwrap();
            let diff = crate::layers::max_abs_diff(
                store.get(wv.as_tensor()).unwrap(),
                reference.get(wv.as_tensor()).unwrap(),
            )
            .unwrap();
            assert!(diff < 1e-6, "head gradient differs by {diff}");

            let value = chunked(
                &head,
                h.as_tensor(),
                &targets,
                false,
                chunk_elements,
                Mode::Training,
            )
            .unwrap();
            assert!((value.to_scalar::<f32>().unwrap() - b).abs() < 1e-5);
        }
    }

    /// A quantized head, decoded a vocabulary slice at a time, gives the loss and gradient of
    /// the same head decoded whole; whatever the slice size, with and without a gradient.
    #[test]
    fn quantized_heads_by_vocabulary_slices_equal_the_decoded_head() {
        let dev = Device::Cpu;
        let (rows, hidden_size, vocab) = (6, 64, 37);
        let w = Tensor::randn(0f32, 1.0, (vocab, hidden_size), &dev).unwrap();
        let h = Var::from_tensor(&Tensor::randn(0f32, 1.0, (rows, hidden_size), &dev).unwrap())
            .unwrap();
        let targets: Vec<u32> = (0..rows as u32)
            .map(|i| (i * 7 + 3) % vocab as u32)
            .collect();
        let q8 =
            candle_core::quantized::QTensor::quantize(&w, candle_core::quantized::GgmlDType::Q8_0)
                .unwrap();
        let nf4 = crate::nf4::Nf4Tensor::quantize(&w).unwrap();
        let heads = [
            (q8.dequantize(&dev).unwrap(), Weight::quantized(q8).unwrap()),
            (
                nf4.dequantize(&dev).unwrap(),
                Weight::Nf4(std::sync::Arc::new(nf4)),
            ),
        ];
        for (decoded, weight) in heads {
            let dense = Linear::new(Weight::Dense(decoded), None);
            let reference = chunked(
                &dense,
                h.as_tensor(),
                &targets,
                true,
                1 << 20,
                Mode::Training,
            )
            .unwrap();
            let reference_grad = reference.backward().unwrap();
            let reference_grad = reference_grad.get(h.as_tensor()).unwrap();
            let quantized = Linear::new(weight, None);
            // One slice of the whole vocabulary, slices of 5, 2 and 1 entries.
            for chunk_elements in [1 << 20, 5 * rows, 2 * rows, 1] {
                let loss = chunked(
                    &quantized,
                    h.as_tensor(),
                    &targets,
                    true,
                    chunk_elements,
                    Mode::Training,
                )
                .unwrap();
                let (a, b) = (
                    loss.to_scalar::<f32>().unwrap(),
                    reference.to_scalar::<f32>().unwrap(),
                );
                assert!((a - b).abs() < 1e-4, "loss {a} against {b}");
                let store = loss.backward().unwrap();
                let diff =
                    crate::layers::max_abs_diff(store.get(h.as_tensor()).unwrap(), reference_grad)
                        .unwrap();
                assert!(diff < 1e-5, "gradient differs by {diff}");
                let value = chunked(
                    &quantized,
                    h.as_tensor(),
                    &targets,
                    false,
                    chunk_elements,
                    Mode::Training,
                )
                .unwrap();
                assert!((value.to_scalar::<f32>().unwrap() - b).abs() < 1e-4);
            }
        }
    }
}
