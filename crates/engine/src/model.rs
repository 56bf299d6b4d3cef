//! The Llama-family decoder: one implementation for Llama 2/3, SmolLM/SmolLM2, Mistral and
//! Qwen2, producing logits for every position, with a key/value cache for generation.

use candle_core::{Device, Tensor};
use candle_nn::kv_cache::KvCache;

pub(crate) use crate::block::Pass;
pub use crate::block::{Attention, Block, Mlp};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::{causal_mask, rotary_tables, Embedding, Linear, Mode, RmsNorm};
use crate::weights::{Precision, WeightSource};

#[derive(Debug, Clone)]
pub struct Transformer {
    pub config: ModelConfig,
    pub embed_tokens: Embedding,
    pub layers: Vec<Block>,
    pub norm: RmsNorm,
    pub lm_head: Linear,
    /// Soft prompt: virtual token embeddings `(n, hidden)` placed before every sequence (prompt
    /// tuning). Their positions come first; outputs are returned for the real tokens only.
    pub soft_prompt: Option<Tensor>,
    /// Train through the kernels that run on any device (see `portable`) even on the CPU, where
    /// the fused ones are the default: how the tests hold the GPU's path to the CPU's.
    pub portable: bool,
    /// The activations' dtype: that of the dense weights (f32, or 16 bits on a GPU); trained
    /// parameters stay f32 and compute in it.
    pub dtype: candle_core::DType,
    inv_freq: Vec<f32>,
    device: Device,
}

/// Keys and values of every layer for the tokens seen so far.
pub struct Cache {
    layers: Vec<KvCache>,
}

impl Cache {
    pub fn new(config: &ModelConfig) -> Self {
        Cache {
            layers: (0..config.num_hidden_layers)
                .map(|_| KvCache::new(2, 512))
                .collect(),
        }
    }

    /// Number of positions already in the cache.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .map(|l| l.current_seq_len())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(KvCache::reset);
    }
}

impl Transformer {
    /// Builds the model from its weights, checking every tensor's presence and shape.
    pub fn load(
        config: &ModelConfig,
        source: &WeightSource,
        precision: Precision,
        device: &Device,
    ) -> Result<Self> {
        let c = config;
        let (hs, q_out, kv_out) = (
            c.hidden_size,
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
        );
        let linear = |name: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
            let weight =
                source.matrix(&format!("{name}.weight"), (out, inp), c, precision, device)?;
            let bias = if bias {
                Some(source.vector(&format!("{name}.bias"), out, device)?)
            } else {
                None
            };
            Ok(Linear::new(weight, bias))
        };
        let norm = |name: &str| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: source.vector(name, hs, device)?,
                eps: c.rms_norm_eps as f32,
            })
        };
        let embed_weight = source.matrix(
            "model.embed_tokens.weight",
            (c.vocab_size, hs),
            c,
            precision,
            device,
        )?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(Block {
                input_layernorm: norm(&format!("{p}.input_layernorm.weight"))?,
                self_attn: Attention {
                    q_proj: linear(
                        &format!("{p}.self_attn.q_proj"),
                        q_out,
                        hs,
                        c.attention_bias,
                    )?,
                    k_proj: linear(
                        &format!("{p}.self_attn.k_proj"),
                        kv_out,
                        hs,
                        c.attention_bias,
                    )?,
                    v_proj: linear(
                        &format!("{p}.self_attn.v_proj"),
                        kv_out,
                        hs,
                        c.attention_bias,
                    )?,
                    o_proj: linear(&format!("{p}.self_attn.o_proj"), hs, q_out, false)?,
                    num_heads: c.num_attention_heads,
                    num_kv_heads: c.num_key_value_heads,
                    head_dim: c.head_dim,
                },
                post_attention_layernorm: norm(&format!("{p}.post_attention_layernorm.weight"))?,
                mlp: Mlp {
                    gate_proj: linear(
                        &format!("{p}.mlp.gate_proj"),
                        c.intermediate_size,
                        hs,
                        false,
                    )?,
                    up_proj: linear(&format!("{p}.mlp.up_proj"), c.intermediate_size, hs, false)?,
                    down_proj: linear(
                        &format!("{p}.mlp.down_proj"),
                        hs,
                        c.intermediate_size,
                        false,
                    )?,
                },
            });
        }
        let lm_head = if c.tie_word_embeddings {
            Linear::new(embed_weight.clone(), None)
        } else {
            linear("lm_head", c.vocab_size, hs, false)?
        };
        let inv_freq = c.inverse_frequencies(source.rope_freq_factors(device)?.as_deref());
        Ok(Transformer {
            config: c.clone(),
            embed_tokens: Embedding {
                weight: embed_weight,
                hidden_size: hs,
            },
            layers,
            norm: norm("model.norm.weight")?,
            lm_head,
            soft_prompt: None,
            portable: false,
            dtype: precision.dense_dtype(),
            inv_freq,
            device: device.clone(),
        })
    }

    /// A new model of `config` with initial weights (see [`WeightSource::Initial`]): what
    /// pretraining starts from, and what benchmarks of model shapes nobody has downloaded run.
    pub fn initial(
        config: &ModelConfig,
        precision: Precision,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        Self::load(config, &WeightSource::Initial { seed }, precision, device)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Final hidden states `(b, t, hidden)` for `ids` of shape `(b, t)` starting at the cache's length.
    fn hidden(&self, ids: &Tensor, cache: Option<&mut Cache>, mode: Mode) -> Result<Tensor> {
        let offset = cache.as_ref().map(|c| c.len()).unwrap_or(0);
        let (x, virtual_tokens) = self.embed(ids, offset, mode)?;
        let t = x.dim(1)?;
        let (cos, sin) = rotary_tables(&self.inv_freq, offset, t, &self.device)?;
        let mask = if t > 1 {
            Some(causal_mask(t, offset, &self.device)?)
        } else {
            None
        };
        let pass = Pass {
            cos: &cos,
            sin: &sin,
            mask: mask.as_ref(),
            mode,
        };
        let mut x = x;
        match cache {
            Some(cache) => {
                for (block, kv) in self.layers.iter().zip(cache.layers.iter_mut()) {
                    x = block.forward(&x, &pass, Some(kv))?;
                }
            }
            None => {
                for block in &self.layers {
                    x = block.forward(&x, &pass, None)?;
                }
            }
        }
        let x = self.norm.forward_mode(&x, mode)?;
        Ok(x.narrow(1, virtual_tokens, t - virtual_tokens)?)
    }

    /// Token embeddings `(b, t, hidden)` of `ids`, with the soft prompt in front when the
    /// sequence starts here (`offset` 0); returns them and the number of virtual tokens added.
    fn embed(&self, ids: &Tensor, offset: usize, mode: Mode) -> Result<(Tensor, usize)> {
        let x = self.embed_tokens.forward(ids)?.to_dtype(self.dtype)?;
        match (&self.soft_prompt, offset) {
            (Some(prompt), 0) => {
                let prompt = match mode {
                    Mode::Training | Mode::Portable => prompt.clone(),
                    Mode::Inference => prompt.detach(),
                };
                let (b, _, h) = x.dims3()?;
                let n = prompt.dim(0)?;
                let prefix = prompt
                    .to_dtype(x.dtype())?
                    .unsqueeze(0)?
                    .broadcast_as((b, n, h))?;
                Ok((Tensor::cat(&[&prefix, &x], 1)?, n))
            }
            _ => Ok((x, 0)),
        }
    }

    /// Virtual tokens the soft prompt adds before a sequence.
    pub fn virtual_tokens(&self) -> usize {
        self.soft_prompt
            .as_ref()
            .and_then(|p| p.dim(0).ok())
            .unwrap_or(0)
    }

    /// How this model trains: through the CPU's fused kernels, or, on any other device or when
    /// [`portable`](Self::portable) asks for it, through the kernels that run anywhere.
    pub fn training_mode(&self) -> Mode {
        if self.device.is_cpu() && !self.portable {
            Mode::Training
        } else {
            Mode::Portable
        }
    }

    /// Logits `(b, t, vocab)` through differentiable kernels, for training: gradients reach
    /// every adapter; frozen weights pass them on without keeping any.
    pub fn forward_train(&self, ids: &Tensor) -> Result<Tensor> {
        let mode = self.training_mode();
        let x = self.hidden(ids, None, mode)?;
        self.lm_head.forward_mode(&x, mode)
    }

    /// [`forward_train`](Self::forward_train) keeping only each block's input for backward (see
    /// `checkpoint`); adapter gradients arrive in `side` instead of the gradient store.
    pub fn forward_train_checkpointed(
        &self,
        ids: &Tensor,
        side: &std::sync::Arc<crate::checkpoint::SideGrads>,
    ) -> Result<Tensor> {
        let x = self.hidden_train(ids, Some(side))?;
        self.lm_head.forward_mode(&x, self.training_mode())
    }

    /// Where checkpointed blocks leave the gradients of their trainable tensors, with an
    /// accumulator allocated now for each of them (see [`SideGrads::with_buffers`]).
    ///
    /// [`SideGrads::with_buffers`]: crate::checkpoint::SideGrads::with_buffers
    pub fn checkpoint_side_grads(&self) -> Result<std::sync::Arc<crate::checkpoint::SideGrads>> {
        let tensors: Vec<Tensor> = self
            .layers
            .iter()
            .flat_map(crate::checkpoint::trainable_tensors)
            .collect();
        Ok(std::sync::Arc::new(
            crate::checkpoint::SideGrads::with_buffers(&tensors)?,
        ))
    }

    /// The final normed hidden states `(b, t, hidden)` through the training kernels, with each
    /// block checkpointed when `side` is given. Pair with [`head_loss`](Self::head_loss) to
    /// never hold full logits.
    pub fn hidden_train(
        &self,
        ids: &Tensor,
        side: Option<&std::sync::Arc<crate::checkpoint::SideGrads>>,
    ) -> Result<Tensor> {
        let mode = self.training_mode();
        let Some(side) = side else {
            return self.hidden(ids, None, mode);
        };
        let (embedded, virtual_tokens) = self.embed(ids, 0, mode)?;
        let t = embedded.dim(1)?;
        let (cos, sin) = rotary_tables(&self.inv_freq, 0, t, &self.device)?;
        let mask = if t > 1 {
            Some(causal_mask(t, 0, &self.device)?)
        } else {
            None
        };
        // A tracked tensor at the bottom makes candle record the block ops above it: the
        // embeddings when they are tracked already (a soft prompt, trainable embeddings),
        // otherwise a variable made of them.
        let mut x = if embedded.track_op() {
            embedded
        } else {
            candle_core::Var::from_tensor(&embedded)?
                .as_tensor()
                .clone()
        };
        for block in &self.layers {
            let block = crate::checkpoint::CheckpointedBlock {
                block: block.clone(),
                cos: cos.clone(),
                sin: sin.clone(),
                mask: mask.clone(),
                mode,
                side: side.clone(),
                seed: crate::layers::next_dropout_seed(),
            };
            x = block.apply(&x)?;
        }
        let x = self.norm.forward_mode(&x, mode)?;
        Ok(x.narrow(1, virtual_tokens, t - virtual_tokens)?)
    }

    /// The final normed hidden states `(b, t, hidden)` through the inference kernels, recording
    /// no graph: what validation needs.
    pub fn hidden_states(&self, ids: &Tensor) -> Result<Tensor> {
        self.device
            .with_context(|| self.hidden(ids, None, Mode::Inference))
    }

    /// Mean cross-entropy of the output head on `hidden` rows `(n, hidden)` against one target
    /// each, computed in chunks (see `head_loss`); with `with_grad` it back-propagates into
    /// `hidden`. The head stays frozen.
    pub fn head_loss(&self, hidden: &Tensor, targets: &[u32], with_grad: bool) -> Result<Tensor> {
        crate::head_loss::head_cross_entropy(
            &self.lm_head,
            hidden,
            targets,
            with_grad,
            self.training_mode(),
        )
    }

    /// Logits `(b, t, vocab)` for every position.
    pub fn forward(&self, ids: &Tensor, cache: Option<&mut Cache>) -> Result<Tensor> {
        // Run on candle's worker pool so that tensor kernels and the engine's own parallel
        // loops share one set of threads instead of competing for the cores.
        self.device.with_context(|| {
            let x = self.hidden(ids, cache, Mode::Inference)?;
            // Logits are f32 whatever the activations' dtype: sampling reads them as such.
            Ok(self
                .lm_head
                .forward(&x)?
                .to_dtype(candle_core::DType::F32)?)
        })
    }

    /// Logits `(b, vocab)` of the last position only: what generation needs.
    pub fn forward_last(&self, ids: &Tensor, cache: Option<&mut Cache>) -> Result<Tensor> {
        let run = || {
            let x = self.hidden(ids, cache, Mode::Inference)?;
            let t = x.dim(1)?;
            let last = x.narrow(1, t - 1, 1)?.squeeze(1)?;
            Ok(self
                .lm_head
                .forward(&last)?
                .to_dtype(candle_core::DType::F32)?)
        };
        // Decoding steps are many short parallel sections: keep them on candle's warm pool.
        // Prefill is one long GEMM per layer, measured faster on the global pool.
        if ids.dim(1)? == 1 {
            self.device.with_context(run)
        } else {
            run()
        }
    }

    /// Logits `(t, vocab)` for a single sequence of token ids, without a cache.
    pub fn logits(&self, ids: &[u32]) -> Result<Tensor> {
        let input = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        Ok(self.forward(&input, None)?.squeeze(0)?)
    }

    /// Summed negative log-likelihood, in nats, of `continuation` following `prompt` (the
    /// continuation forced token by token), from one pass over both.
    pub fn continuation_nll(&self, prompt: &[u32], continuation: &[u32]) -> Result<f64> {
        if prompt.is_empty() || continuation.is_empty() {
            return Err(crate::EngineError::InvalidRequest(
                "scoring a continuation needs a prompt and at least one continuation token".into(),
            ));
        }
        let ids: Vec<u32> = prompt.iter().chain(continuation).copied().collect();
        // Position p predicts token p + 1: the rows from the prompt's last token on.
        let rows = self
            .logits(&ids)?
            .narrow(0, prompt.len() - 1, continuation.len())?
            .to_vec2::<f32>()?;
        Ok(rows
            .iter()
            .zip(continuation)
            .map(|(row, &target)| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
                f64::from(max) + sum.ln() - f64::from(row[target as usize])
            })
            .sum())
    }

    /// Converts the blocks' dense matrices to NF4 (QLoRA over a model already in memory; see
    /// `Precision::Nf4` to quantize while loading). Returns how many were converted.
    pub fn quantize_nf4(&mut self) -> Result<usize> {
        let mut converted = 0;
        for layer in self.layers.iter_mut() {
            for (_, linear) in layer.linears_mut() {
                if let crate::layers::Weight::Dense(w) = &linear.weight {
                    if w.dim(1)? % crate::nf4::BLOCK == 0 {
                        let q = crate::nf4::Nf4Tensor::quantize(w)?;
                        linear.weight = crate::layers::Weight::Nf4(std::sync::Arc::new(q));
                        converted += 1;
                    }
                }
            }
        }
        Ok(converted)
    }

    /// The inverse rotary frequencies this model computes with (Llama 3 scaling or GGUF's
    /// per-frequency divisors applied).
    pub fn inverse_frequencies(&self) -> &[f32] {
        &self.inv_freq
    }

    /// Bytes held by weights.
    pub fn weight_bytes(&self) -> usize {
        let mut total =
            self.embed_tokens.weight.storage_bytes() + self.norm.weight.elem_count() * 4;
        if !self.config.tie_word_embeddings {
            total += self.lm_head.weight.storage_bytes();
        }
        for l in &self.layers {
            for (_, lin) in l.linears() {
                total += lin.weight.storage_bytes()
                    + lin.bias.as_ref().map(|b| b.elem_count() * 4).unwrap_or(0);
            }
            total += 2 * l.input_layernorm.weight.elem_count() * 4;
        }
        total
    }
}
