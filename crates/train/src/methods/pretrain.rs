//! Pretraining from scratch: a byte-level BPE tokenizer trained on the user's corpus, and a
//! freshly initialised Llama-architecture model of a chosen size, written as a Hugging Face
//! folder that the ordinary loader then reads (and full fine-tuning trains).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};
use tunelab_engine::{Architecture, ModelConfig};

use crate::methods::full::Full;
use crate::recipe::{
    limits, require, ArtifactKind, PlanTerms, RunConfig, StoredBase, TrainingMethod,
};
use crate::trainer::TrainError;

/// Pretraining's recipe: every weight trained, as in full fine-tuning, of a new model (or of
/// the run's model, continued).
pub struct Pretrain;

impl TrainingMethod for Pretrain {
    /// A model learning language from its start takes larger steps than a tuned one.
    fn default_lr(&self) -> f64 {
        1e-3
    }

    /// A new model's vocabulary and context; continued pretraining has nothing of its own.
    fn check(&self, config: &RunConfig) -> Result<(), TrainError> {
        let p = &config.pretrain;
        if !p.from_scratch {
            return Ok(());
        }
        let (lo, hi) = limits::VOCAB_SIZE;
        let vocab = p.vocab_size();
        require((lo..=hi).contains(&vocab), || {
            format!("vocabulary (`pretrain.vocab_size`) {vocab} is out of range: use {lo} to {hi}")
        })?;
        require(config.seq_len <= p.context_length, || {
            format!(
                "sequence length (`seq_len`) {} is longer than the new model's context (`pretrain.context_length`) {}",
                config.seq_len, p.context_length
            )
        })?;
        p.model_config(vocab, &[0]).map(|_| ())
    }

    fn plan_terms(
        &self,
        model: &ModelConfig,
        config: &RunConfig,
        stored: StoredBase,
    ) -> Result<PlanTerms, TrainError> {
        Full.plan_terms(model, config, stored)
    }

    fn attach(
        &self,
        model: &mut tunelab_engine::LoadedModel,
        config: &RunConfig,
    ) -> Result<Vec<(String, candle_core::Var)>, TrainError> {
        Full.attach(model, config)
    }

    fn save(
        &self,
        dir: &Path,
        model: &tunelab_engine::LoadedModel,
        params: &[(String, candle_core::Var)],
        config: &RunConfig,
    ) -> Result<(), TrainError> {
        Full.save(dir, model, params, config)
    }

    fn artifact(&self) -> ArtifactKind {
        ArtifactKind::Model
    }
}

/// Marks the end of a document; the first token of every trained vocabulary.
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// Chat turn markers, so the pretrained model can be tuned for chat with the usual template.
pub const TURN_START: &str = "<|im_start|>";
pub const TURN_END: &str = "<|im_end|>";

/// The chat template written with a pretrained model (turns between the markers above).
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Model sizes to start from; each names its dimensions and a vocabulary to go with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// About 1M parameters: trains in seconds, for trying the pipeline.
    #[serde(rename = "1m")]
    M1,
    /// About 10M parameters.
    #[default]
    #[serde(rename = "10m")]
    M10,
    /// About 30M parameters.
    #[serde(rename = "30m")]
    M30,
    /// About 120M parameters.
    #[serde(rename = "120m")]
    M120,
}

impl Preset {
    pub const ALL: [Preset; 4] = [Preset::M1, Preset::M10, Preset::M30, Preset::M120];

    pub fn as_str(self) -> &'static str {
        match self {
            Preset::M1 => "1m",
            Preset::M10 => "10m",
            Preset::M30 => "30m",
            Preset::M120 => "120m",
        }
    }

    pub fn parse(text: &str) -> Result<Preset, TrainError> {
        Preset::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                TrainError::Config(format!(
                    "unknown size preset `{text}`: choose 1m, 10m, 30m or 120m"
                ))
            })
    }

    /// (hidden, layers, heads, key/value heads, intermediate, vocabulary).
    fn dims(self) -> (usize, usize, usize, usize, usize, usize) {
        match self {
            Preset::M1 => (128, 4, 4, 2, 384, 2048),
            Preset::M10 => (256, 8, 8, 4, 768, 8192),
            Preset::M30 => (384, 12, 6, 2, 1024, 16384),
            Preset::M120 => (768, 15, 12, 4, 2048, 32000),
        }
    }

    pub fn default_vocab_size(self) -> usize {
        self.dims().5
    }
}

/// What to pretrain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PretrainConfig {
    /// Start from random weights and a new tokenizer; otherwise continue pretraining the
    /// run's model on the text.
    pub from_scratch: bool,
    pub preset: Preset,
    /// Vocabulary of the new tokenizer (the preset's when absent); at least 256 + 3.
    pub vocab_size: Option<usize>,
    /// Explicit dimensions, each overriding the preset's.
    pub hidden_size: Option<usize>,
    pub num_layers: Option<usize>,
    pub num_heads: Option<usize>,
    pub num_kv_heads: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub context_length: usize,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig {
            from_scratch: true,
            preset: Preset::default(),
            vocab_size: None,
            hidden_size: None,
            num_layers: None,
            num_heads: None,
            num_kv_heads: None,
            intermediate_size: None,
            context_length: 2048,
        }
    }
}

impl PretrainConfig {
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
            .unwrap_or_else(|| self.preset.default_vocab_size())
    }

    /// The model's configuration for a vocabulary of `vocab_size` (the trained tokenizer's)
    /// and the ids of the end-of-text and end-of-turn tokens.
    pub fn model_config(&self, vocab_size: usize, eos: &[u32]) -> Result<ModelConfig, TrainError> {
        let (h, l, heads, kv, inter, _) = self.preset.dims();
        let hidden = self.hidden_size.unwrap_or(h);
        let heads = self.num_heads.unwrap_or(heads);
        let kv = self.num_kv_heads.unwrap_or(kv.min(heads));
        if heads == 0 || !hidden.is_multiple_of(heads) || !(hidden / heads).is_multiple_of(2) {
            return Err(TrainError::Config(format!(
                "pretrain.hidden_size {hidden} must split into {heads} heads of an even size"
            )));
        }
        if kv == 0 || !heads.is_multiple_of(kv) {
            return Err(TrainError::Config(format!(
                "pretrain.num_kv_heads {kv} must divide num_heads {heads}"
            )));
        }
        let config = ModelConfig {
            architecture: Architecture::Llama,
            vocab_size,
            hidden_size: hidden,
            intermediate_size: self.intermediate_size.unwrap_or(inter),
            num_hidden_layers: self.num_layers.unwrap_or(l),
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim: hidden / heads,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: None,
            max_position_embeddings: self.context_length,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: None,
            eos_token_ids: eos.to_vec(),
        };
        config
            .validate(Path::new("pretrain settings"))
            .map_err(|e| TrainError::Config(e.to_string()))?;
        Ok(config)
    }
}

/// Trains a byte-level BPE tokenizer on `texts`: every one of the 256 bytes is in the
/// vocabulary whatever the corpus holds, so any UTF-8 text round-trips.
pub fn train_tokenizer<'a>(
    texts: impl Iterator<Item = &'a str> + Send,
    vocab_size: usize,
) -> Result<Tokenizer, TrainError> {
    let specials = [END_OF_TEXT, TURN_START, TURN_END];
    if vocab_size < 256 + specials.len() {
        return Err(TrainError::Config(format!(
            "pretrain.vocab_size {vocab_size} is too small: the 256 bytes and {} special tokens need {}",
            specials.len(),
            256 + specials.len()
        )));
    }
    let byte_level = ByteLevel::new(false, true, true);
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(byte_level));
    tokenizer.with_decoder(Some(byte_level));
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(
            specials
                .iter()
                .map(|s| AddedToken::from(s.to_string(), true))
                .collect(),
        )
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::from(trainer);
    tokenizer
        .train(&mut trainer, texts)
        .map_err(|e| TrainError::Config(format!("training the tokenizer failed: {e}")))?;
    Ok(tokenizer)
}

/// A tokenizer saved by [`write_initial_model`].
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, TrainError> {
    Tokenizer::from_file(path).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))
}

/// Fixed pseudo-random normal values (Box–Muller over xorshift), for reproducible weights.
fn normal(len: usize, std: f32, state: &mut u64) -> Vec<f32> {
    let mut uniform = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        ((*state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..len)
        .map(|_| {
            let (u1, u2) = (uniform(), uniform());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32 * std
        })
        .collect()
}

/// Writes a Hugging Face folder for a new model: `config`, weights drawn from N(0, 0.02)
/// (norms at one), `tokenizer` and the chat template.
pub fn write_initial_model(
    dir: &Path,
    config: &ModelConfig,
    tokenizer: &Tokenizer,
    seed: u64,
) -> Result<(), TrainError> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut matrix = |name: String, rows: usize, cols: usize, state: &mut u64| {
        let values = normal(rows * cols, 0.02, state);
        tensors.insert(
            name,
            Tensor::from_vec(values, (rows, cols), &Device::Cpu).expect("shape matches"),
        );
    };
    let (h, i) = (config.hidden_size, config.intermediate_size);
    let q = config.num_attention_heads * config.head_dim;
    let kv = config.num_key_value_heads * config.head_dim;
    matrix(
        "model.embed_tokens.weight".into(),
        config.vocab_size,
        h,
        &mut state,
    );
    for l in 0..config.num_hidden_layers {
        let p = format!("model.layers.{l}");
        matrix(format!("{p}.self_attn.q_proj.weight"), q, h, &mut state);
        matrix(format!("{p}.self_attn.k_proj.weight"), kv, h, &mut state);
        matrix(format!("{p}.self_attn.v_proj.weight"), kv, h, &mut state);
        matrix(format!("{p}.self_attn.o_proj.weight"), h, q, &mut state);
        matrix(format!("{p}.mlp.gate_proj.weight"), i, h, &mut state);
        matrix(format!("{p}.mlp.up_proj.weight"), i, h, &mut state);
        matrix(format!("{p}.mlp.down_proj.weight"), h, i, &mut state);
    }
    let ones = |n: usize| Tensor::ones(n, candle_core::DType::F32, &Device::Cpu);
    for l in 0..config.num_hidden_layers {
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            tensors.insert(format!("model.layers.{l}.{norm}.weight"), ones(h)?);
        }
    }
    tensors.insert("model.norm.weight".into(), ones(h)?);
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    write_json(dir, "config.json", &config.to_hf_json())?;
    let tokenizer_json = tokenizer
        .to_string(false)
        .map_err(|e| TrainError::Config(format!("saving the tokenizer: {e}")))?;
    crate::trainer::write_atomic(&dir.join("tokenizer.json"), tokenizer_json.as_bytes())?;
    write_json(
        dir,
        "tokenizer_config.json",
        &serde_json::json!({
            "chat_template": CHAT_TEMPLATE,
            "eos_token": END_OF_TEXT,
            "bos_token": null,
            "model_max_length": config.max_position_embeddings,
            "tokenizer_class": "PreTrainedTokenizerFast",
        }),
    )?;
    Ok(())
}

/// A new model ([`write_initial_model`]) loaded in f32, its folder kept as `dir`: the config,
/// tokenizer and chat template that define the model (the weights live in memory, and later in
/// checkpoints). The model is written to a scratch folder beside `dir`, which becomes `dir` in
/// one rename the first time; a resumed run finds `dir` there and leaves it as it is.
pub fn create_model(
    dir: &Path,
    config: &ModelConfig,
    tokenizer: &Tokenizer,
    seed: u64,
    device: &Device,
) -> Result<tunelab_engine::LoadedModel, TrainError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e| TrainError::Io(path, e)
    };
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("base");
    let scratch = dir.with_file_name(format!(".{name}.partial"));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).map_err(io(&scratch))?;
    }
    std::fs::create_dir_all(&scratch).map_err(io(&scratch))?;
    write_initial_model(&scratch, config, tokenizer, seed)?;
    let model = tunelab_engine::load(&scratch, tunelab_engine::Precision::F32, device)?;
    let weights = scratch.join("model.safetensors");
    std::fs::remove_file(&weights).map_err(io(&weights))?;
    if dir.exists() {
        std::fs::remove_dir_all(&scratch).map_err(io(&scratch))?;
    } else {
        std::fs::rename(&scratch, dir).map_err(io(dir))?;
        if let Some(parent) = dir.parent() {
            crate::trainer::run_dir::sync_dir(parent)?;
        }
    }
    Ok(model)
}

fn write_json(dir: &Path, name: &str, value: &serde_json::Value) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).expect("json serializes") + "\n";
    crate::trainer::write_atomic(&dir.join(name), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = "The lighthouse keeper counted the ships. The ships counted the waves. \
        Every evening the keeper wrote the count in a blue book, and every morning the book \
        was one page longer.";

    #[test]
    fn the_tokenizer_round_trips_any_utf8_including_bytes_it_never_saw() {
        let tokenizer = train_tokenizer([CORPUS; 20].into_iter(), 400).unwrap();
        assert!(tokenizer.get_vocab_size(true) <= 400);
        for text in [
            CORPUS,
            "Ünïcödé, 日本語, emoji 🦀🚀, Ελληνικά, עברית",
            "tabs\tand\nnewlines\r\n and \u{0}\u{7f} control bytes",
            "  leading and trailing spaces  ",
            "<|im_start|>user\nhello<|im_end|>",
        ] {
            let ids = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
            let back = tokenizer.decode(&ids, false).unwrap();
            assert_eq!(back, text, "round trip of {text:?}");
        }
        // The corpus's frequent words became single tokens; the special tokens stay whole.
        let keeper = tokenizer.encode(" keeper", false).unwrap();
        assert_eq!(keeper.get_ids().len(), 1);
        let end = tokenizer.token_to_id(END_OF_TEXT).unwrap();
        let ids = tokenizer.encode("a<|endoftext|>b", false).unwrap();
        assert!(ids.get_ids().contains(&end));
        assert!(train_tokenizer([CORPUS].into_iter(), 100).is_err());
    }

    #[test]
    fn a_new_models_folder_is_written_once_and_left_alone_on_resume() {
        let tokenizer = train_tokenizer([CORPUS; 20].into_iter(), 400).unwrap();
        let config = PretrainConfig::default()
            .model_config(tokenizer.get_vocab_size(true), &[0])
            .unwrap();
        let run = tempfile::tempdir().unwrap();
        let base = run.path().join("base");
        let first = create_model(&base, &config, &tokenizer, 7, &Device::Cpu).unwrap();
        let files = |dir: &Path| {
            let mut names: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .map(|p| {
                    let bytes = std::fs::read(&p).unwrap();
                    (p.file_name().unwrap().to_string_lossy().into_owned(), bytes)
                })
                .collect();
            names.sort();
            names
        };
        let written = files(&base);
        let names: Vec<&str> = written.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["config.json", "tokenizer.json", "tokenizer_config.json"]
        );
        // A resume builds the model again; the folder stays byte for byte as it was, and no
        // scratch folder is left beside it.
        std::fs::write(base.join("tokenizer_config.json"), b"kept").unwrap();
        let again = create_model(&base, &config, &tokenizer, 7, &Device::Cpu).unwrap();
        let mut expected = written.clone();
        expected[2].1 = b"kept".to_vec();
        assert!(files(&base) == expected, "base/ is not rewritten");
        let left: Vec<_> = std::fs::read_dir(run.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only base/ is in the run folder");
        let ids = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu).unwrap();
        let a = first.transformer.hidden_states(&ids).unwrap();
        let b = again.transformer.hidden_states(&ids).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(
            diff.to_scalar::<f32>().unwrap(),
            0.0,
            "the same seed, the same model"
        );
    }

    #[test]
    fn presets_have_about_the_parameters_they_are_named_for() {
        for (preset, want) in [
            (Preset::M1, 1e6),
            (Preset::M10, 1e7),
            (Preset::M30, 3e7),
            (Preset::M120, 1.2e8),
        ] {
            let config = PretrainConfig {
                preset,
                ..Default::default()
            };
            let c = config
                .model_config(preset.default_vocab_size(), &[0])
                .unwrap();
            let n = c.parameter_count() as f64;
            assert!(
                (want * 0.7..want * 1.3).contains(&n),
                "{} has {n} parameters",
                preset.as_str()
            );
        }
        let bad = PretrainConfig {
            hidden_size: Some(100),
            num_heads: Some(3),
            ..Default::default()
        };
        assert!(bad.model_config(1000, &[0]).is_err());
    }
}
