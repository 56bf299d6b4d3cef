//! A run's recipe: the training method, the model and data it starts from, and every setting,
//! checked in one place whoever builds it (the command line, the app, a comparison, a config
//! file). Each method's own behaviour (what it trains, its memory terms, its artifact) is one
//! [`TrainingMethod`], implemented beside the method in `methods/`; [`Artifact`] says what a
//! finished run (or any adapter or model folder) holds, for chat and export.

use std::path::{Path, PathBuf};

use candle_core::Var;
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use tunelab_engine::{Device, DeviceChoice, LoadedModel, ModelConfig, Precision};

use crate::data::{DatasetFormat, TrainOn};
use crate::methods::lora::LoraConfig;
use crate::methods::pretrain::PretrainConfig;
use crate::methods::soft_prompt::SoftPromptConfig;
use crate::methods::{full, lora, pretrain, soft_prompt};
use crate::plan::BaseWeights;
use crate::trainer::{TrainError, TrainSettings};

mod artifact;
mod defaults;
mod train_run;

pub use artifact::{Artifact, ArtifactKind};
pub use defaults::{Limits, MethodDefaults, TrainDefaults, WizardDefaults};
pub use train_run::{train_run, TrainedRun};

/// The chat model a run starts from when none is named: the default model setup installs.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// The ranges [`RunConfig::validate`] accepts, which the app's inputs are bounded by too.
pub mod limits {
    /// LoRA rank.
    pub const RANK: (usize, usize) = (1, 512);
    /// LoRA alpha (above 0).
    pub const ALPHA_MAX: f64 = 4096.0;
    /// Soft prompt virtual tokens.
    pub const VIRTUAL_TOKENS: (usize, usize) = (1, 512);
    /// Sequence length in tokens.
    pub const SEQ_LEN: (usize, usize) = (8, 131_072);
    /// A new tokenizer's vocabulary: the 256 bytes and the three special tokens at least.
    pub const VOCAB_SIZE: (usize, usize) = (259, 262_144);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, TS)]
#[serde(rename_all = "kebab-case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum Method {
    /// Adapters over the base dequantized to f32.
    #[default]
    Lora,
    /// Adapters over the base kept in 4 bits (a GGUF's own blocks, or NF4 made from a 16/32-bit
    /// base while it loads), decoded one layer at a time.
    Qlora,
    /// Trained virtual token embeddings before every input; every weight frozen.
    SoftPrompt,
    /// Every weight trained (f32); the result is a complete model folder.
    Full,
    /// Language modelling on plain text: a new model (and tokenizer) from scratch, or
    /// continued pretraining of an existing one.
    Pretrain,
}

impl Method {
    pub const ALL: [Method; 5] = [
        Method::Lora,
        Method::Qlora,
        Method::SoftPrompt,
        Method::Full,
        Method::Pretrain,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Lora => "lora",
            Method::Qlora => "qlora",
            Method::SoftPrompt => "soft-prompt",
            Method::Full => "full",
            Method::Pretrain => "pretrain",
        }
    }

    /// Its name as the app shows it.
    pub fn label(self) -> &'static str {
        match self {
            Method::Lora => "LoRA",
            Method::Qlora => "QLoRA",
            Method::SoftPrompt => "Soft prompt",
            Method::Full => "Full fine-tuning",
            Method::Pretrain => "Pretraining",
        }
    }

    /// The method named `text` (as [`as_str`](Self::as_str) writes it).
    pub fn parse(text: &str) -> Result<Method, TrainError> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == text)
            .ok_or_else(|| {
                TrainError::Config(format!(
                    "unknown training method `{text}`: use lora, qlora, soft-prompt, full or pretrain"
                ))
            })
    }

    /// What this method does, in one place.
    pub fn recipe(self) -> &'static dyn TrainingMethod {
        match self {
            Method::Lora => &lora::Lora { quantized: false },
            Method::Qlora => &lora::Lora { quantized: true },
            Method::SoftPrompt => &soft_prompt::SoftPrompt,
            Method::Full => &full::Full,
            Method::Pretrain => &pretrain::Pretrain,
        }
    }

    /// The learning rate a run of this method starts from unless told otherwise.
    pub fn default_lr(self) -> f64 {
        self.recipe().default_lr()
    }

    /// How the frozen base is held on `device`.
    pub fn precision(self, device: &Device) -> Precision {
        self.recipe().precision(device)
    }
}

/// What a model's files hold, for the memory plan of a method that keeps them as stored.
#[derive(Debug, Clone, Copy)]
pub struct StoredBase {
    /// The file is a GGUF of quantized blocks (its own blocks are trained over as they are).
    pub quantized_file: bool,
    /// The file's size.
    pub bytes: u64,
}

/// A method's terms in the memory plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanTerms {
    pub trainable_parameters: u64,
    /// Positions every sequence gains (a soft prompt's virtual tokens run through every layer).
    pub extra_positions: usize,
    /// The trainable parameters are the weights themselves, counted with them already.
    pub trainable_are_weights: bool,
    /// Every layer of every block is frozen (a soft prompt): on the CPU the blocks train
    /// through frozen chains and keep fewer tensors for backward.
    pub frozen_blocks: bool,
    pub base: BaseWeights,
}

/// One way of training, from what it attaches to what it leaves: implemented once per method,
/// beside the method's code, and reached through [`Method::recipe`].
pub trait TrainingMethod: Sync {
    /// The learning rate a run starts from unless told otherwise.
    fn default_lr(&self) -> f64;

    /// How the frozen base is held on `device`: f32 on the CPU, 16 bits on a GPU (trained
    /// parameters stay f32 on both).
    fn precision(&self, device: &Device) -> Precision {
        Precision::half_for(device)
    }

    /// Checks the method's own settings in `config`, naming the field of a bad one.
    fn check(&self, _config: &RunConfig) -> Result<(), TrainError> {
        Ok(())
    }

    /// Its terms in the memory plan of a run on a model shaped `model`.
    fn plan_terms(
        &self,
        model: &ModelConfig,
        config: &RunConfig,
        stored: StoredBase,
    ) -> Result<PlanTerms, TrainError>;

    /// Attaches the parameters it trains to `model` and returns them by their saved names.
    fn attach(
        &self,
        model: &mut LoadedModel,
        config: &RunConfig,
    ) -> Result<Vec<(String, Var)>, TrainError>;

    /// Writes the trained `params` into `dir` (which exists) in the format other tools read.
    fn save(
        &self,
        dir: &Path,
        model: &LoadedModel,
        params: &[(String, Var)],
        config: &RunConfig,
    ) -> Result<(), TrainError>;

    /// What [`save`](Self::save) leaves.
    fn artifact(&self) -> ArtifactKind;

    /// A method that trains the same thing in less memory, and how, offered when a run does
    /// not fit.
    fn leaner(&self) -> Option<(Method, &'static str)> {
        None
    }
}

/// Everything a run needs; saved, with every default filled in, as the run's config.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    pub method: Method,
    pub model: String,
    pub data: PathBuf,
    pub format: Option<DatasetFormat>,
    /// Longest example in tokens; longer ones are cut (and counted).
    pub seq_len: usize,
    pub val_fraction: f64,
    /// Trains on this share of the training examples (what the validation share leaves),
    /// chosen by the seed; 1 uses them all. A larger share keeps the examples a smaller one
    /// chose. Left out of config.json at 1, so older runs' settings read the same.
    #[serde(skip_serializing_if = "is_all")]
    pub train_fraction: f64,
    pub train_on: TrainOn,
    pub lora: LoraConfig,
    pub soft_prompt: SoftPromptConfig,
    pub pretrain: PretrainConfig,
    pub train: TrainSettings,
    /// Where it trains: `auto` (the first CUDA GPU of a build with CUDA, else the CPU), `cpu`,
    /// `cuda` or `cuda:N`. The device it ran on is in the summary.
    pub device: DeviceChoice,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            method: Method::Lora,
            model: DEFAULT_MODEL.to_string(),
            data: PathBuf::new(),
            format: None,
            seq_len: 512,
            val_fraction: 0.1,
            train_fraction: 1.0,
            train_on: TrainOn::default(),
            lora: LoraConfig::default(),
            soft_prompt: SoftPromptConfig::default(),
            pretrain: PretrainConfig::default(),
            train: TrainSettings::default(),
            device: DeviceChoice::Auto,
        }
    }
}

fn is_all(fraction: &f64) -> bool {
    *fraction == 1.0
}

/// `Err(TrainError::Config(message))` unless `ok`.
pub(crate) fn require(ok: bool, message: impl FnOnce() -> String) -> Result<(), TrainError> {
    match ok {
        true => Ok(()),
        false => Err(TrainError::Config(message())),
    }
}

/// `value` as a run's settings write it: 2e-4, 0.5, 32.
pub(crate) fn short(value: f64) -> String {
    if value != 0.0 && value.abs() < 0.1 {
        format!("{value:e}")
    } else {
        format!("{value}")
    }
}

impl RunConfig {
    /// Whether this run builds a new model instead of starting from `model`.
    pub fn from_scratch(&self) -> bool {
        self.method == Method::Pretrain && self.pretrain.from_scratch
    }

    /// The defaults for `method`, its learning rate included.
    pub fn for_method(method: Method) -> Self {
        let mut config = RunConfig {
            method,
            ..Default::default()
        };
        config.train.lr = method.default_lr();
        config
    }

    /// Checks every setting, the method's own included, before anything loads: the one check
    /// every way of starting a run goes through, so they all refuse a bad setting with the same
    /// words. Each message names the setting and its field in config.json.
    pub fn validate(&self) -> Result<(), TrainError> {
        let t = &self.train;
        require(self.from_scratch() || !self.model.trim().is_empty(), || {
            "model (`model`) is empty: name a registered model (`tunelab models list`)".into()
        })?;
        let (lo, hi) = limits::SEQ_LEN;
        require((lo..=hi).contains(&self.seq_len), || {
            format!(
                "sequence length (`seq_len`) {} is out of range: use {lo} to {hi} tokens",
                self.seq_len
            )
        })?;
        require(t.lr > 0.0 && t.lr < 1.0, || {
            format!(
                "learning rate (`train.lr`) {} is not between 0 and 1: use a number such as {} ({}'s default)",
                t.lr,
                short(self.method.default_lr()),
                self.method.as_str()
            )
        })?;
        require(t.batch_size >= 1, || {
            "batch size (`train.batch_size`) 0: use at least 1".into()
        })?;
        require(t.grad_accum >= 1, || {
            "gradient accumulation (`train.grad_accum`) 0: use at least 1".into()
        })?;
        require(
            t.max_steps > 0 || (t.epochs.is_finite() && t.epochs > 0.0),
            || {
                format!(
                "epochs (`train.epochs`) {} with no step count: give a positive number of epochs, or steps (`train.max_steps`)",
                t.epochs
            )
            },
        )?;
        require(
            t.max_grad_norm.is_finite() && t.max_grad_norm >= 0.0,
            || {
                format!(
                "gradient clipping (`train.max_grad_norm`) {} is not a norm: use 0 (off) or a positive number such as 1",
                t.max_grad_norm
            )
            },
        )?;
        require((0.0..1.0).contains(&t.weight_decay), || {
            format!(
                "weight decay (`train.weight_decay`) {} is out of range: use 0 up to (not including) 1",
                t.weight_decay
            )
        })?;
        require((0.0..=0.5).contains(&self.val_fraction), || {
            format!(
                "validation share (`val_fraction`) {} is out of range: use 0 to 0.5",
                self.val_fraction
            )
        })?;
        require(
            self.train_fraction > 0.0 && self.train_fraction <= 1.0,
            || {
                format!(
                    "training share (`train_fraction`) {} is out of range: use above 0 up to 1",
                    self.train_fraction
                )
            },
        )?;
        self.method.recipe().check(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(config: &RunConfig) -> String {
        match config.validate() {
            Err(TrainError::Config(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn every_methods_defaults_pass_and_each_bad_setting_is_named() {
        for method in Method::ALL {
            RunConfig::for_method(method).validate().unwrap();
        }
        let lora = RunConfig::for_method(Method::Lora);
        let cases: Vec<(&str, RunConfig)> = vec![
            (
                "`train.lr`) 5 is not between 0 and 1: use a number such as 2e-4",
                {
                    let mut c = lora.clone();
                    c.train.lr = 5.0;
                    c
                },
            ),
            ("`train.lr`) NaN", {
                let mut c = lora.clone();
                c.train.lr = f64::NAN;
                c
            }),
            ("`lora.rank`) 0 is out of range: use 1 to 512", {
                let mut c = lora.clone();
                c.lora.rank = 0;
                c
            }),
            ("`lora.alpha`) -1", {
                let mut c = lora.clone();
                c.lora.alpha = -1.0;
                c
            }),
            ("`lora.dropout`) 1", {
                let mut c = lora.clone();
                c.lora.dropout = 1.0;
                c
            }),
            ("unknown LoRA target `qq`", {
                let mut c = lora.clone();
                c.lora.targets = vec!["qq".into()];
                c
            }),
            ("`seq_len`) 4 is out of range", {
                let mut c = lora.clone();
                c.seq_len = 4;
                c
            }),
            ("`train.batch_size`) 0", {
                let mut c = lora.clone();
                c.train.batch_size = 0;
                c
            }),
            ("`val_fraction`) 0.9", {
                let mut c = lora.clone();
                c.val_fraction = 0.9;
                c
            }),
            ("`train_fraction`) 0 is out of range", {
                let mut c = lora.clone();
                c.train_fraction = 0.0;
                c
            }),
            ("`model`) is empty", {
                let mut c = lora.clone();
                c.model = " ".into();
                c
            }),
            (
                "`soft_prompt.num_virtual_tokens`) 0 is out of range: use 1 to 512",
                {
                    let mut c = RunConfig::for_method(Method::SoftPrompt);
                    c.soft_prompt.num_virtual_tokens = 0;
                    c
                },
            ),
            ("`soft_prompt.init_text`) is empty", {
                let mut c = RunConfig::for_method(Method::SoftPrompt);
                c.soft_prompt.init_text = Some("  ".into());
                c
            }),
            ("`pretrain.vocab_size`) 100", {
                let mut c = RunConfig::for_method(Method::Pretrain);
                c.pretrain.vocab_size = Some(100);
                c
            }),
            ("`pretrain.context_length`) 2048", {
                let mut c = RunConfig::for_method(Method::Pretrain);
                c.seq_len = 4096;
                c
            }),
        ];
        for (expected, config) in cases {
            let message = refused(&config);
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
        // A rank only LoRA reads does not stop a soft prompt; a pretraining model may be empty.
        let mut soft = RunConfig::for_method(Method::SoftPrompt);
        soft.lora.rank = 0;
        soft.validate().unwrap();
        let mut scratch = RunConfig::for_method(Method::Pretrain);
        scratch.model.clear();
        scratch.validate().unwrap();
    }

    #[test]
    fn each_method_names_itself_and_its_artifact() {
        for method in Method::ALL {
            assert_eq!(Method::parse(method.as_str()).unwrap(), method);
        }
        assert!(Method::parse("dora").is_err());
        let kinds: Vec<ArtifactKind> = Method::ALL
            .into_iter()
            .map(|m| m.recipe().artifact())
            .collect();
        use ArtifactKind::*;
        assert_eq!(kinds, [LoraAdapter, LoraAdapter, SoftPrompt, Model, Model]);
        assert_eq!(
            Method::Lora.recipe().leaner().map(|(m, _)| m),
            Some(Method::Qlora)
        );
        assert_eq!(Method::Qlora.recipe().leaner(), None);
        assert_eq!(Method::Qlora.precision(&Device::Cpu), Precision::Nf4);
        assert_eq!(Method::Full.precision(&Device::Cpu), Precision::F32);
    }
}
