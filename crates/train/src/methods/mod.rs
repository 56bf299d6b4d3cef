//! The training methods. Each attaches its trainable parameters to the frozen model and knows
//! how to save them in the format other tools read.

pub mod full;
pub mod lora;
pub mod pretrain;
pub mod soft_prompt;

use std::path::Path;

use crate::trainer::TrainError;

/// A PEFT adapter folder's adapter_config.json, parsed.
pub fn read_adapter_config(dir: &Path) -> Result<serde_json::Value, TrainError> {
    let path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::Io(path.clone(), e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))
}

/// The kind of a PEFT adapter folder: "LORA", "PROMPT_TUNING", ...
pub fn peft_type(dir: &Path) -> Result<String, TrainError> {
    let raw = read_adapter_config(dir)?;
    raw.get("peft_type")
        .and_then(|v| v.as_str())
        .map(String::from)
        .ok_or_else(|| {
            TrainError::Config(format!(
                "{}: field `peft_type` is missing",
                dir.join("adapter_config.json").display()
            ))
        })
}
