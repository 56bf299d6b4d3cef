//! A comparison task: the TOML file a user writes (format in docs/compare.md), read and checked
//! before anything runs, and the budget a preset gives each method.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::error::{ApiError, Result};
use crate::prompts::PromptTemplate;

/// How much each method gets to spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "kebab-case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum Preset {
    /// Minutes on a laptop CPU: enough steps to show each method's direction.
    #[default]
    Quick,
    /// Several times the training steps and longer answers, for a GPU or a night.
    Thorough,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Quick => "quick",
            Preset::Thorough => "thorough",
        }
    }
}

impl std::str::FromStr for Preset {
    type Err = ApiError;
    fn from_str(text: &str) -> Result<Self> {
        [Preset::Quick, Preset::Thorough]
            .into_iter()
            .find(|p| p.as_str() == text)
            .ok_or_else(|| {
                ApiError::invalid(format!("unknown preset `{text}`: use quick or thorough"))
            })
    }
}

/// Steps, sizes and limits for every method of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct Budget {
    /// Optimizer steps of each trained method.
    #[ts(type = "number")]
    pub soft_prompt_steps: u64,
    #[ts(type = "number")]
    pub lora_steps: u64,
    #[ts(type = "number")]
    pub full_steps: u64,
    #[ts(type = "number")]
    pub pretrain_steps: u64,
    pub batch_size: usize,
    /// Longest training example, in tokens.
    pub seq_len: usize,
    /// Size of the model pretrained from scratch: 1m, 10m, 30m or 120m.
    pub pretrain_size: String,
    /// Only the first rows of the evaluation file (all when absent).
    pub eval_limit: Option<u32>,
    /// Only the first questions of the forgetting probe (all when absent).
    pub probe_limit: Option<u32>,
    /// Longest answer, in tokens.
    pub max_tokens: u32,
    /// Shares of the training examples each trained method is also trained on (same steps) to
    /// draw quality against the amount of data; none in the quick preset.
    #[serde(default)]
    pub data_fractions: Vec<f64>,
}

impl Budget {
    pub fn for_preset(preset: Preset) -> Self {
        match preset {
            Preset::Quick => Budget {
                soft_prompt_steps: 40,
                lora_steps: 40,
                full_steps: 20,
                pretrain_steps: 150,
                batch_size: 4,
                seq_len: 128,
                pretrain_size: "1m".into(),
                eval_limit: None,
                probe_limit: None,
                max_tokens: 40,
                data_fractions: Vec::new(),
            },
            Preset::Thorough => Budget {
                soft_prompt_steps: 200,
                lora_steps: 200,
                full_steps: 100,
                pretrain_steps: 600,
                batch_size: 8,
                seq_len: 256,
                pretrain_size: "10m".into(),
                eval_limit: None,
                probe_limit: None,
                max_tokens: 64,
                data_fractions: vec![0.1, 0.3],
            },
        }
    }
}

/// `[budget]` in a task file: each field set replaces the preset's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetOverrides {
    soft_prompt_steps: Option<u64>,
    lora_steps: Option<u64>,
    full_steps: Option<u64>,
    pretrain_steps: Option<u64>,
    batch_size: Option<usize>,
    seq_len: Option<usize>,
    pretrain_size: Option<String>,
    eval_limit: Option<u32>,
    probe_limit: Option<u32>,
    max_tokens: Option<u32>,
    data_fractions: Option<Vec<f64>>,
}

impl BudgetOverrides {
    fn apply(self, budget: &mut Budget) {
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(value) = self.$field {
                    budget.$field = value;
                }
            )*};
        }
        set!(
            soft_prompt_steps,
            lora_steps,
            full_steps,
            pretrain_steps,
            batch_size,
            seq_len,
            pretrain_size,
            max_tokens,
            data_fractions
        );
        if self.eval_limit.is_some() {
            budget.eval_limit = self.eval_limit;
        }
        if self.probe_limit.is_some() {
            budget.probe_limit = self.probe_limit;
        }
    }
}

/// The task file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    name: String,
    model: Option<String>,
    train: PathBuf,
    eval: PathBuf,
    documents: PathBuf,
    template: PromptTemplate,
    #[serde(default)]
    qlora: bool,
    #[serde(default)]
    continued_pretraining: bool,
    #[serde(default)]
    budget: BudgetOverrides,
}

/// A task with its paths made absolute and checked, and the budget settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct Task {
    /// Names the comparison's folder, its knowledge base, template and runs.
    pub name: String,
    /// The registered base model every method starts from.
    pub model: String,
    /// Chat examples the trained methods learn from.
    #[ts(type = "string")]
    pub train: PathBuf,
    /// The held-out questions every method answers.
    #[ts(type = "string")]
    pub eval: PathBuf,
    /// What RAG indexes and, with the training text, what pretraining reads.
    #[ts(type = "string")]
    pub documents: PathBuf,
    pub template: PromptTemplate,
    /// The adapter method keeps its base in 4 bits (QLoRA) instead of 16/32 (LoRA).
    pub qlora: bool,
    /// Pretraining continues the base model instead of starting a small one from scratch.
    pub continued_pretraining: bool,
    pub preset: Preset,
    pub budget: Budget,
}

/// Reads and checks `path`; a mistake names the file and the field (or line) it is in.
pub fn read(path: &Path, preset: Preset) -> Result<Task> {
    let text = std::fs::read_to_string(path).map_err(|e| ApiError::io(path, e))?;
    let file: TaskFile =
        toml::from_str(&text).map_err(|e| ApiError::invalid(format!("{}: {e}", path.display())))?;
    let field_error = |field: &str, what: String| {
        ApiError::invalid(format!("{}: `{field}`: {what}", path.display()))
    };
    let name_ok = !file.name.is_empty()
        && file.name.len() <= 40
        && !file.name.starts_with('-')
        && file
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        return Err(field_error(
            "name",
            format!(
                "`{}`: use 1 to 40 lowercase letters, digits and '-' (it names folders)",
                file.name
            ),
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let locate = |field: &str, given: &Path, folder: bool| -> Result<PathBuf> {
        let joined = base.join(given);
        let found = match folder {
            true => joined.is_dir(),
            false => joined.is_file(),
        };
        if !found {
            let kind = if folder { "folder" } else { "file" };
            return Err(field_error(
                field,
                format!(
                    "no {kind} at {} (paths are relative to the task file)",
                    joined.display()
                ),
            ));
        }
        std::path::absolute(&joined).map_err(|e| ApiError::io(&joined, e))
    };
    let template = file.template;
    template
        .check()
        .and_then(|_| template.used_variables())
        .map_err(|e| field_error("template", e.message.clone()))?;
    let mut budget = Budget::for_preset(preset);
    file.budget.apply(&mut budget);
    crate::train::Preset::parse(&budget.pretrain_size)
        .map_err(|e| field_error("budget.pretrain_size", e.to_string()))?;
    if budget.batch_size == 0 || budget.seq_len < 16 || budget.max_tokens == 0 {
        return Err(field_error(
            "budget",
            "batch_size and max_tokens must be at least 1, seq_len at least 16".into(),
        ));
    }
    if let Some(bad) = budget
        .data_fractions
        .iter()
        .find(|f| !(**f > 0.0 && **f < 1.0))
    {
        return Err(field_error(
            "budget.data_fractions",
            format!("{bad} is not a share: use numbers above 0 and below 1, such as 0.1 and 0.3 (the whole set is always trained)"),
        ));
    }
    budget.data_fractions.sort_by(f64::total_cmp);
    budget.data_fractions.dedup();
    Ok(Task {
        model: file
            .model
            .unwrap_or_else(|| crate::DEFAULT_MODEL.to_string()),
        train: locate("train", &file.train, false)?,
        eval: locate("eval", &file.eval, false)?,
        documents: locate("documents", &file.documents, true)?,
        name: file.name,
        template,
        qlora: file.qlora,
        continued_pretraining: file.continued_pretraining,
        preset,
        budget,
    })
}
