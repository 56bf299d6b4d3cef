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

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, TensorId, Var};

use crate::model::{Block, Pass};

/// Gradients of adapter variables, gathered while blocks are recomputed in backward.
#[derive(Default)]
pub struct SideGrads {
    grads: Mutex<HashMap<TensorId, Tensor>>,
}

impl SideGrads {
    fn add(&self, id: TensorId, grad: Tensor) -> candle_core::Result<()> {
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
        self.grads.lock().ok()?.remove(&var.id())
    }
}

pub(crate) struct CheckpointedBlock {
    pub block: Block,
    pub cos: Tensor,
    pub sin: Tensor,
    pub mask: Option<Tensor>,
    pub side: Arc<SideGrads>,
    /// Dropout seed of this block: the recomputation draws the forward pass's masks again.
    pub seed: u64,
}

fn adapter_vars(block: &Block) -> Vec<Var> {
    block
        .linears()
        .into_iter()
        .filter_map(|(_, l)| l.adapter.as_ref())
        .flat_map(|ad| [ad.a.clone(), ad.b.clone()])
        .collect()
}

impl CheckpointedBlock {
    fn run(&self, x: &Tensor) -> crate::Result<Tensor> {
        let pass = Pass {
            cos: &self.cos,
            sin: &self.sin,
            mask: self.mask.as_ref(),
            mode: crate::layers::Mode::Training,
        };
        crate::layers::with_dropout_seed(self.seed, || self.block.forward(x, &pass, None))
    }
}

impl CustomOp1 for CheckpointedBlock {
    fn name(&self) -> &'static str {
        "checkpointed-block"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let values = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F32(v), Some((a, b))) => v[a..b].to_vec(),
            _ => candle_core::bail!("checkpointed blocks take contiguous f32 activations"),
        };
        let x = Tensor::from_vec(values, layout.shape(), &candle_core::Device::Cpu)?;
        // The recorded graph of this pass is dropped with `y`: nothing of it is kept.
        let y = self
            .run(&x)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?
            .detach();
        Ok((
            CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?),
            y.shape().clone(),
        ))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let input = Var::from_tensor(&x.detach())?;
        let y = self
            .run(input.as_tensor())
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let grads = (y * dy.detach())?.sum_all()?.backward()?;
        for var in adapter_vars(&self.block) {
            if let Some(g) = grads.get(var.as_tensor()) {
                self.side.add(var.id(), g.clone())?;
            }
        }
        Ok(grads.get(input.as_tensor()).cloned())
    }
}
