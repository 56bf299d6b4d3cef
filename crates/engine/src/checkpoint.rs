//! Activation checkpointing: a transformer block keeps only its input for the backward pass.
//! Backward runs the block again from that input, this time recording, and takes the
//! gradients from there: each block's activations exist for one block at a time instead of
//! all at once, trading about a third more compute for most of the activation memory.
//!
//! candle's autograd cannot hand gradients of variables found inside a custom op's backward
//! to the outer `backward()`, so those (the adapters' gradients) are collected in
//! [`SideGrads`], which the trainer reads after `backward()`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{Tensor, TensorId, Var};

use crate::model::{Block, Pass};

/// Gradients of trainable tensors inside checkpointed blocks, gathered while the blocks are
/// recomputed in backward.
#[derive(Default)]
pub struct SideGrads {
    grads: Mutex<HashMap<TensorId, Tensor>>,
    /// Accumulators allocated before the pass, for the tensors named in `with_buffers`: the
    /// gradients that live through the whole backward pass then sit in memory taken before
    /// its churn instead of pinning the allocator's pages in the middle of it (full
    /// fine-tuning measured 3 GB lower at its peak).
    buffers: HashMap<TensorId, (Var, std::sync::atomic::AtomicBool)>,
}

impl SideGrads {
    /// Side gradients with a zeroed accumulator for each of `tensors`.
    pub fn with_buffers<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> crate::Result<Self> {
        let mut buffers = HashMap::new();
        for t in tensors {
            let buffer = Var::zeros(t.shape(), t.dtype(), t.device())?;
            buffers.insert(t.id(), (buffer, std::sync::atomic::AtomicBool::new(false)));
        }
        Ok(SideGrads {
            grads: Mutex::default(),
            buffers,
        })
    }

    fn add(&self, id: TensorId, grad: Tensor) -> candle_core::Result<()> {
        if let Some((buffer, touched)) = self.buffers.get(&id) {
            let sum = (buffer.as_tensor() + grad)?;
            buffer.set(&sum)?;
            touched.store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        let mut map = self
            .grads
            .lock()
            .map_err(|_| candle_core::Error::Msg("side gradients poisoned".into()))?;
        let sum = match map.remove(&id) {
            Some(prev) => (prev + grad)?,
            None => grad,
        };
        map.insert(id, sum);
        Ok(())
    }

    /// Takes the gradient gathered for `var`, if any.
    pub fn take(&self, var: &Tensor) -> Option<Tensor> {
        if let Some((buffer, touched)) = self.buffers.get(&var.id()) {
            return touched
                .swap(false, std::sync::atomic::Ordering::Relaxed)
                .then(|| buffer.as_tensor().detach());
        }
        self.grads.lock().ok()?.remove(&var.id())
    }
}

pub(crate) struct CheckpointedBlock {
    pub block: Block,
    pub cos: Tensor,
    pub sin: Tensor,
    pub mask: Option<Tensor>,
    pub mode: crate::layers::Mode,
    pub side: Arc<SideGrads>,
    /// Dropout seed of this block: the recomputation draws the forward pass's masks again.
    pub seed: u64,
}

/// The block's trainable tensors: adapter variables, and in full fine-tuning its weights,
/// biases and norm weights.
pub(crate) fn trainable_tensors(block: &Block) -> Vec<Tensor> {
    let mut out = Vec::new();
    for (_, linear) in block.linears() {
        if let Some(ad) = &linear.adapter {
            out.push(ad.a.as_tensor().clone());
            out.push(ad.b.as_tensor().clone());
        }
        if let crate::layers::Weight::Dense(w) = &linear.weight {
            out.push(w.clone());
        }
        out.extend(linear.bias.iter().cloned());
    }
    out.push(block.input_layernorm.weight.clone());
    out.push(block.post_attention_layernorm.weight.clone());
    out.retain(|t| t.is_variable());
    out
}

impl CheckpointedBlock {
    fn run(&self, x: &Tensor) -> crate::Result<Tensor> {
        let pass = Pass {
            cos: &self.cos,
            sin: &self.sin,
            mask: self.mask.as_ref(),
            mode: self.mode,
        };
        crate::layers::with_dropout_seed(self.seed, || self.block.forward(x, &pass, None))
    }

    /// The block's output for `x`, keeping nothing of the pass but `x`: backward runs the
    /// block again from it, this time recording, and takes the gradients from there. Works on
    /// every device (see `portable::with_backward`).
    pub fn apply(self, x: &Tensor) -> crate::Result<Tensor> {
        // The recorded graph of this pass is dropped with `y`'s tracked original.
        let y = self.run(&x.detach())?.detach();
        Ok(crate::portable::with_backward(y, x, move |x, _y, dy| {
            let input = Var::from_tensor(&x.detach())?;
            let y = self
                .run(input.as_tensor())
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let grads = crate::grad_ops::seeded_scalar(&y, dy, 0.0)?.backward()?;
            for tensor in trainable_tensors(&self.block) {
                if let Some(g) = grads.get(&tensor) {
                    self.side.add(tensor.id(), g.clone())?;
                }
            }
            grads.get(input.as_tensor()).cloned().ok_or_else(|| {
                candle_core::Error::Msg("a checkpointed block's input got no gradient".into())
            })
        })?)
    }
}
