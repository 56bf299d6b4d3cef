//! The six ways of making a model one's own, as the comparison names and describes them.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// One of the six methods the method guide and the comparison put side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "kebab-case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum MethodId {
    Prompt,
    Rag,
    SoftPrompt,
    Lora,
    Full,
    Pretrain,
}

impl MethodId {
    /// In the guide's order: from no training at all to a model of one's own.
    pub const ALL: [MethodId; 6] = [
        MethodId::Prompt,
        MethodId::Rag,
        MethodId::SoftPrompt,
        MethodId::Lora,
        MethodId::Full,
        MethodId::Pretrain,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MethodId::Prompt => "prompt",
            MethodId::Rag => "rag",
            MethodId::SoftPrompt => "soft-prompt",
            MethodId::Lora => "lora",
            MethodId::Full => "full",
            MethodId::Pretrain => "pretrain",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MethodId::Prompt => "Prompt engineering",
            MethodId::Rag => "Retrieval (RAG)",
            MethodId::SoftPrompt => "Soft prompt",
            MethodId::Lora => "LoRA / QLoRA",
            MethodId::Full => "Full fine-tuning",
            MethodId::Pretrain => "Pretraining",
        }
    }

    /// One sentence: what changes, and what stays as it was.
    pub fn what(self) -> &'static str {
        match self {
            MethodId::Prompt => "Instructions, examples and a template around each question; the model itself is untouched.",
            MethodId::Rag => "Your documents are indexed; the passages that match a question are handed to the model with it.",
            MethodId::SoftPrompt => "A handful of learned token vectors sit before every input; every weight of the model stays frozen.",
            MethodId::Lora => "Small low-rank matrices are trained next to the frozen weights; QLoRA keeps those weights in 4 bits.",
            MethodId::Full => "Every weight of the model is trained on your data.",
            MethodId::Pretrain => "A new model and tokenizer learn language from your own text, or an existing model keeps learning from it.",
        }
    }

    pub fn good_for(self) -> &'static str {
        match self {
            MethodId::Prompt => {
                "scripted conversations, fixed business rules, a first version of anything"
            }
            MethodId::Rag => {
                "policies, manuals, product catalogues, anything that changes and must be quoted"
            }
            MethodId::SoftPrompt => "a voice, a tone, a house style, light adaptation to a domain",
            MethodId::Lora => {
                "a task with a fixed output format, an industry workflow, multi-step procedures"
            }
            MethodId::Full => "a deeply specialised assistant where adapters are not enough",
            MethodId::Pretrain => {
                "owning a model end to end; a language or domain general models barely know"
            }
        }
    }

    /// Whether the method trains (and so has a one-time cost to weigh against per-query cost).
    pub fn trains(self) -> bool {
        !matches!(self, MethodId::Prompt | MethodId::Rag)
    }
}

impl std::str::FromStr for MethodId {
    type Err = crate::ApiError;
    fn from_str(text: &str) -> crate::Result<Self> {
        let text = text.trim().to_ascii_lowercase();
        let alias = match text.as_str() {
            "qlora" => "lora",
            "full-finetune" | "finetune" => "full",
            "prompt-engineering" | "template" => "prompt",
            other => other,
        };
        MethodId::ALL
            .into_iter()
            .find(|m| m.as_str() == alias)
            .ok_or_else(|| {
                crate::ApiError::invalid(format!(
                    "unknown method `{text}`: use prompt, rag, soft-prompt, lora, full or pretrain"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guide's words for one method, as the app's method guide shows them: the UI reads them
    /// from `ui/src/bindings/method-guide.json`, which the test below writes from [`MethodId`].
    #[derive(Debug, Clone, Serialize)]
    struct MethodWords {
        id: MethodId,
        name: &'static str,
        what: &'static str,
        good_for: &'static str,
    }

    /// Every method's words, in the guide's order.
    fn method_words() -> Vec<MethodWords> {
        MethodId::ALL
            .into_iter()
            .map(|id| MethodWords {
                id,
                name: id.name(),
                what: id.what(),
                good_for: id.good_for(),
            })
            .collect()
    }

    /// Writes the words the UI's method guide reads (like the generated bindings, CI fails when
    /// the committed file differs).
    #[test]
    fn export_method_guide_words() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../ui/src/bindings/method-guide.json");
        let json = serde_json::to_string_pretty(&method_words()).unwrap() + "\n";
        if std::fs::read_to_string(&path).ok().as_deref() != Some(json.as_str()) {
            std::fs::write(&path, json).unwrap();
        }
        let names: Vec<&str> = method_words().iter().map(|w| w.id.as_str()).collect();
        assert_eq!(
            names,
            ["prompt", "rag", "soft-prompt", "lora", "full", "pretrain"]
        );
    }
}
