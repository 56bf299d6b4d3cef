//! One decoder block of the Llama-family model: attention and the gated MLP, each after its
//! RMSNorm, with the residual stream around them, in the three modes of `layers::Mode`.

use candle_core::{DType, Tensor};
use candle_nn::kv_cache::KvCache;

use crate::error::Result;
use crate::grad_ops;
use crate::layers::{apply_rotary, silu, softmax_last_dim, Linear, Mode, RmsNorm};
use crate::portable;

#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub(crate) num_heads: usize,
    pub(crate) num_kv_heads: usize,
    pub(crate) head_dim: usize,
}

#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

#[derive(Debug, Clone)]
pub struct Block {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

/// What every block of one forward pass shares.
pub(crate) struct Pass<'a> {
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    pub mask: Option<&'a Tensor>,
    pub mode: Mode,
}

impl Pass<'_> {
    fn rotate(&self, x: &Tensor) -> Result<Tensor> {
        match self.mode {
            Mode::Inference => apply_rotary(x, self.cos, self.sin),
            Mode::Training => Ok(grad_ops::rope(x, self.cos, self.sin)?),
            Mode::Portable => Ok(portable::rope(x, self.cos, self.sin)?),
        }
    }

    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        match self.mode {
            Mode::Inference => softmax_last_dim(x),
            Mode::Training => Ok(grad_ops::softmax_last_dim(x)?),
            Mode::Portable => Ok(portable::softmax_last_dim(x)?),
        }
    }
}

/// Whether a block's layers from `norm` through `linears` train as one frozen chain (see
/// `frozen_chain`): training on the CPU in f32, with none of them changed by training.
fn frozen_chain(x: &Tensor, mode: Mode, norm: &RmsNorm, linears: &[&Linear]) -> bool {
    mode == Mode::Training
        && x.device().is_cpu()
        && x.dtype() == candle_core::DType::F32
        && !norm.weight.is_variable()
        && linears.iter().all(|l| l.is_frozen())
}

impl Attention {
    /// Attention over the normed block input `x`.
    fn forward(
        &self,
        x: &Tensor,
        norm: &RmsNorm,
        pass: &Pass,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let linears = [&self.q_proj, &self.k_proj, &self.v_proj, &self.o_proj];
        if cache.is_none() && pass.mask.is_some() && frozen_chain(x, pass.mode, norm, &linears) {
            return self.forward_frozen(x, norm, pass);
        }
        self.forward_normed(&norm.forward_mode(x, pass.mode)?, pass, cache)
    }

    /// Training through a frozen attention (a soft prompt's base): the same products and
    /// kernels as below, keeping only the block input, the rotated queries and keys and the
    /// values.
    fn forward_frozen(&self, x: &Tensor, norm: &RmsNorm, pass: &Pass) -> Result<Tensor> {
        use crate::frozen_chain::{heads_project, norm_project_heads, Rotation};
        let rotation = || {
            Some(Rotation {
                cos: pass.cos,
                sin: pass.sin,
            })
        };
        let q = norm_project_heads(x, norm, &self.q_proj, self.num_heads, rotation())?;
        let k = norm_project_heads(x, norm, &self.k_proj, self.num_kv_heads, rotation())?;
        let v = norm_project_heads(x, norm, &self.v_proj, self.num_kv_heads, None)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let out = crate::attention_op::causal_attention(&q, &k, &v, scale)?;
        Ok(heads_project(&out, &self.o_proj)?)
    }

    fn forward_normed(
        &self,
        x: &Tensor,
        pass: &Pass,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, kvh, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let project = |proj: &Linear, heads: usize| -> Result<Tensor> {
            Ok(proj
                .forward_mode(x, pass.mode)?
                .reshape((b, t, heads, d))?
                .transpose(1, 2)?)
        };
        let q = pass.rotate(&project(&self.q_proj, h)?)?;
        let k = pass.rotate(&project(&self.k_proj, kvh)?)?;
        let v = project(&self.v_proj, kvh)?.contiguous()?;
        let (k, v) = match cache {
            Some(cache) => cache.append(&k, &v)?,
            None => (k, v),
        };
        let total = k.dim(2)?;
        let scale = 1.0 / (d as f64).sqrt();
        if pass.mode == Mode::Training && pass.mask.is_some() && total == t && x.device().is_cpu() {
            // Training on the CPU: one op whose backward recomputes the probabilities, so no
            // `(heads, t, t)` tensor is kept or made.
            let out = crate::attention_op::causal_attention(&q, &k, &v, scale)?
                .transpose(1, 2)?
                .reshape((b, t, h * d))?;
            return self.o_proj.forward_mode(&out, pass.mode);
        }
        if pass.mode == Mode::Inference
            && x.device().is_cpu()
            && q.dtype() == DType::F32
            && t <= crate::qmatmul::GEMV_MAX_ROWS
        {
            // Decoding on the CPU: one pass per query over the cache instead of two small GEMMs.
            let out = crate::decode_attention::decode_attention(&q, &k, &v, scale)?;
            return self.o_proj.forward_mode(&out, pass.mode);
        }
        // Grouped-query attention without copying keys: the query heads that share a key/value
        // head are stacked along the time axis, (b, kvh, rep * t, d).
        let rep = h / kvh;
        let q_dtype = q.dtype();
        let q = q.reshape((b, kvh, rep * t, d))?;
        let probs = match (pass.mode, pass.mask) {
            // Training scales the (smaller) queries and masks inside the softmax kernel, so
            // neither a scaled nor a masked copy of the scores is kept for backward.
            (Mode::Training, Some(_)) => {
                let scores = (q * scale)?.matmul(&k.t()?)?;
                grad_ops::causal_softmax_last_dim(&scores, t, total - t)?
            }
            // Any device: the causal mask (made once per pass, on the device) added to the
            // scores, then a fused softmax.
            (Mode::Portable, Some(mask)) => {
                let scores = (q * scale)?
                    .matmul(&k.t()?)?
                    .reshape((b, h, t, total))?
                    .broadcast_add(&mask.to_dtype(q_dtype)?)?
                    .reshape((b, kvh, rep * t, total))?;
                portable::softmax_last_dim(&scores)?
            }
            (_, mask) => {
                let scores = (q.matmul(&k.t()?)? * scale)?;
                let scores = match mask {
                    Some(mask) => scores
                        .reshape((b, h, t, total))?
                        .broadcast_add(&mask.to_dtype(scores.dtype())?)?
                        .reshape((b, kvh, rep * t, total))?,
                    None => scores,
                };
                pass.softmax(&scores)?
            }
        };
        let out = probs
            .matmul(&v)?
            .reshape((b, h, t, d))?
            .transpose(1, 2)?
            .reshape((b, t, h * d))?;
        self.o_proj.forward_mode(&out, pass.mode)
    }
}

impl Mlp {
    /// The MLP over the normed block input `x`.
    fn forward(&self, x: &Tensor, norm: &RmsNorm, mode: Mode) -> Result<Tensor> {
        let linears = [&self.gate_proj, &self.up_proj, &self.down_proj];
        if frozen_chain(x, mode, norm, &linears) {
            use crate::frozen_chain::{norm_project, silu_mul_project};
            // Only the block input, the gate and the up projection are kept.
            let gate = norm_project(x, norm, &self.gate_proj)?;
            let up = norm_project(x, norm, &self.up_proj)?;
            return Ok(silu_mul_project(&gate, &up, &self.down_proj)?);
        }
        self.forward_normed(&norm.forward_mode(x, mode)?, mode)
    }

    fn forward_normed(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let gate = self.gate_proj.forward_mode(x, mode)?;
        let up = self.up_proj.forward_mode(x, mode)?;
        let hidden = match mode {
            Mode::Inference => (silu(&gate)? * up)?,
            Mode::Training => grad_ops::silu_mul(&gate, &up)?,
            Mode::Portable => portable::silu_mul(&gate, &up)?,
        };
        self.down_proj.forward_mode(&hidden, mode)
    }
}

impl Block {
    /// The block's linear layers with their Hugging Face paths inside the block
    /// (`self_attn.q_proj`, ...), in the order Hugging Face lists them.
    pub fn linears(&self) -> [(&'static str, &Linear); 7] {
        let (a, m) = (&self.self_attn, &self.mlp);
        [
            ("self_attn.q_proj", &a.q_proj),
            ("self_attn.k_proj", &a.k_proj),
            ("self_attn.v_proj", &a.v_proj),
            ("self_attn.o_proj", &a.o_proj),
            ("mlp.gate_proj", &m.gate_proj),
            ("mlp.up_proj", &m.up_proj),
            ("mlp.down_proj", &m.down_proj),
        ]
    }

    /// [`linears`](Self::linears), mutable (to attach or merge adapters).
    pub fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        [
            ("self_attn.q_proj", &mut a.q_proj),
            ("self_attn.k_proj", &mut a.k_proj),
            ("self_attn.v_proj", &mut a.v_proj),
            ("self_attn.o_proj", &mut a.o_proj),
            ("mlp.gate_proj", &mut m.gate_proj),
            ("mlp.up_proj", &mut m.up_proj),
            ("mlp.down_proj", &mut m.down_proj),
        ]
    }

    pub(crate) fn forward(
        &self,
        x: &Tensor,
        pass: &Pass,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let h = self
            .self_attn
            .forward(x, &self.input_layernorm, pass, cache)?;
        let x = (x + h)?;
        let h = self
            .mlp
            .forward(&x, &self.post_attention_layernorm, pass.mode)?;
        Ok((x + h)?)
    }
}
