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

use crate::layers::{Linear, Weight};
use crate::Result;

/// Logit elements per chunk: about 16 MB in f32, whatever the vocabulary.
const CHUNK_ELEMENTS: usize = 4 << 20;

/// Mean cross-entropy of `head(hidden)` against `targets`, one target per row of `hidden`
/// `(rows, hidden_size)`. With `with_grad`, the result back-propagates into `hidden`.
pub fn head_cross_entropy(
    head: &Linear,
    hidden: &Tensor,
    targets: &[u32],
    with_grad: bool,
) -> Result<Tensor> {
    chunked(head, hidden, targets, with_grad, CHUNK_ELEMENTS)
}

fn chunked(
    head: &Linear,
    hidden: &Tensor,
    targets: &[u32],
    with_grad: bool,
    chunk_elements: usize,
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
    // The head's weights as one dense matrix (a quantized head is decoded once per call).
    let w = match &head.weight {
        Weight::Dense(w) => w.detach(),
        Weight::Quantized { qtensor, .. } => qtensor.dequantize(hidden.device())?,
        Weight::Nf4(q) => q.dequantize(hidden.device())?,
    };
    let w = w.to_dtype(hidden.dtype())?;
    let vocab = w.dim(0)?;
    let chunk = (chunk_elements / vocab).clamp(1, rows);
    let scale = 1.0 / rows as f32;
    let mut total = 0f64;
    let mut grads = Vec::new();
    let mut head_grad: Option<Tensor> = None;
    for start in (0..rows).step_by(chunk) {
        let len = chunk.min(rows - start);
        let x = hidden.narrow(0, start, len)?.detach();
        let mut logits = x.matmul(&w.t()?)?;
        if let Some(b) = &head.bias {
            logits = logits.broadcast_add(&b.detach())?;
        }
        let mut values = logits
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        drop(logits);
        let chunk_targets = &targets[start..start + len];
        // Row by row: the loss, and in place of the logits the gradient softmax − one-hot.
        total += values
            .par_chunks_mut(vocab)
            .zip(chunk_targets.par_iter())
            .map(|(row, &target)| row_loss_and_grad(row, target as usize, scale, with_grad))
            .sum::<f64>();
        if with_grad {
            let dlogits =
                Tensor::from_vec(values, (len, vocab), hidden.device())?.to_dtype(w.dtype())?;
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
    let mean = total / rows as f64;
    if !with_grad {
        return Ok(Tensor::new(mean as f32, hidden.device())?);
    }
    // `s - s.detach()` is zero with gradient G: the value is the mean, the gradient G.
    let grad = Tensor::cat(&grads, 0)?;
    let mut surrogate = (hidden * grad)?.sum_all()?;
    if let (Some(w), Some(g)) = (trainable, head_grad) {
        surrogate = (surrogate + (w * g)?.sum_all()?)?;
    }
    let loss = (&surrogate - surrogate.detach())?.to_dtype(DType::F32)?;
    Ok(loss.affine(1.0, mean)?)
}

/// `logsumexp(row) − row[target]`; with `grad`, overwrites `row` with
/// `scale · (softmax(row) − onehot(target))`.
fn row_loss_and_grad(row: &mut [f32], target: usize, scale: f32, grad: bool) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
    let lse = max as f64 + sum.ln();
    let loss = lse - row[target] as f64;
    if grad {
        let lse = lse as f32;
        for v in row.iter_mut() {
            *v = (*v - lse).exp() * scale;
        }
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
            let loss = chunked(&head, h.as_tensor(), &targets, true, chunk_elements).unwrap();
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
            let loss = chunked(&trainable, h.as_tensor(), &targets, true, chunk_elements).unwrap();
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

            let value = chunked(&head, h.as_tensor(), &targets, false, chunk_elements).unwrap();
            assert!((value.to_scalar::<f32>().unwrap() - b).abs() < 1e-5);
        }
    }
}
