//! Masked next-token cross-entropy: each position predicts the following token, and only
//! positions whose target is trainable (label ≠ -100) count.

use candle_core::{DType, Result, Tensor, D};
use tunelab_engine::Transformer;

/// Label value that excludes a token from the loss.
pub const IGNORE: i64 = crate::data::IGNORE_INDEX;

/// Mean cross-entropy of `logits (b, t, vocab)` against `labels (b, t)` shifted by one, and the
/// number of tokens that counted.
pub fn masked_cross_entropy(logits: &Tensor, labels: &[Vec<i64>]) -> Result<(Tensor, usize)> {
    let (b, t, vocab) = logits.dims3()?;
    let mut targets = Vec::with_capacity(b * (t - 1));
    let mut weights = Vec::with_capacity(b * (t - 1));
    for row in labels {
        for pos in 1..t {
            let label = row.get(pos).copied().unwrap_or(IGNORE);
            let keep = label != IGNORE && (label as usize) < vocab;
            targets.push(if keep { label as u32 } else { 0 });
            weights.push(if keep { 1f32 } else { 0.0 });
        }
    }
    let count = weights.iter().filter(|w| **w > 0.0).count();
    let dev = logits.device();
    let logits = logits.narrow(1, 0, t - 1)?.reshape((b * (t - 1), vocab))?;
    let log_probs = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
    let targets = Tensor::from_vec(targets, (b * (t - 1), 1), dev)?;
    let picked = log_probs.gather(&targets, 1)?.squeeze(1)?;
    let weights = Tensor::from_vec(weights, b * (t - 1), dev)?;
    let total = (picked * weights)?.sum_all()?.neg()?;
    Ok(((total / count.max(1) as f64)?, count))
}

/// The rows of the flattened `(b, t)` positions whose next token counts, and those tokens.
pub fn counted_targets(labels: &[Vec<i64>], t: usize, vocab: usize) -> (Vec<u32>, Vec<u32>) {
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for (b, row) in labels.iter().enumerate() {
        for pos in 1..t {
            let label = row.get(pos).copied().unwrap_or(IGNORE);
            if label != IGNORE && label >= 0 && (label as usize) < vocab {
                rows.push((b * t + pos - 1) as u32);
                targets.push(label as u32);
            }
        }
    }
    (rows, targets)
}

/// [`masked_cross_entropy`] from the final hidden states `(b, t, hidden)` through the model's
/// frozen output head, chunked so that full logits never exist; only positions whose target
/// counts go through the head at all.
pub fn masked_head_loss(
    model: &Transformer,
    hidden: &Tensor,
    labels: &[Vec<i64>],
    with_grad: bool,
) -> Result<(Tensor, usize)> {
    let (b, t, h) = hidden.dims3()?;
    let (rows, targets) = counted_targets(labels, t, model.config.vocab_size);
    if rows.is_empty() {
        return Ok((hidden.sum_all()?.zeros_like()?.to_dtype(DType::F32)?, 0));
    }
    let index = Tensor::from_vec(rows, targets.len(), hidden.device())?;
    let picked = hidden.reshape((b * t, h))?.index_select(&index, 0)?;
    let loss = model
        .head_loss(&picked, &targets, with_grad)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    Ok((loss, targets.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn only_trainable_targets_count() {
        let dev = Device::Cpu;
        // Uniform logits over 4 tokens: every counted position costs ln 4.
        let logits = Tensor::zeros((1, 4, 4), DType::F32, &dev).unwrap();
        let (loss, n) = masked_cross_entropy(&logits, &[vec![IGNORE, IGNORE, 2, 3]]).unwrap();
        assert_eq!(n, 2, "positions 2 and 3 are trainable targets");
        assert!((loss.to_scalar::<f32>().unwrap() - 4f32.ln()).abs() < 1e-5);
        // A confident correct prediction costs nearly nothing.
        let mut v = vec![0f32; 16];
        v[4 + 2] = 20.0; // position 1 predicts token 2
        let logits = Tensor::from_vec(v, (1, 4, 4), &dev).unwrap();
        let (loss, n) = masked_cross_entropy(&logits, &[vec![IGNORE, IGNORE, 2, IGNORE]]).unwrap();
        assert_eq!(n, 1);
        assert!(loss.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
