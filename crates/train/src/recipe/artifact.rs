//! What a trained result is, told from its files: how chat, evaluation and export load it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use tunelab_engine::Transformer;

use crate::methods::{lora, soft_prompt};
use crate::trainer::TrainError;

/// What a trained result is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "kebab-case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum ArtifactKind {
    /// A PEFT LoRA adapter folder, attached to its base.
    LoraAdapter,
    /// A PEFT prompt-tuning folder: virtual tokens put before the base's inputs.
    SoftPrompt,
    /// A complete Hugging Face model folder that answers in the base's place.
    Model,
}

impl ArtifactKind {
    /// What it is, in a few words.
    pub fn describe(self) -> &'static str {
        match self {
            ArtifactKind::LoraAdapter => "LoRA adapter (PEFT)",
            ArtifactKind::SoftPrompt => "soft prompt (PEFT)",
            ArtifactKind::Model => "model (Hugging Face folder)",
        }
    }
}

/// A trained result on disk: its kind and its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub kind: ArtifactKind,
    pub dir: PathBuf,
}

impl Artifact {
    /// What `dir` holds: a PEFT adapter (by its `peft_type`), a model folder (config.json with
    /// model.safetensors), or nothing Tunelab reads (`None`). An adapter of a kind Tunelab does
    /// not compute is an error naming it.
    pub fn read(dir: &Path) -> Result<Option<Artifact>, TrainError> {
        let kind = if dir.join("adapter_config.json").is_file() {
            match crate::methods::peft_type(dir)?.as_str() {
                "LORA" => ArtifactKind::LoraAdapter,
                "PROMPT_TUNING" => ArtifactKind::SoftPrompt,
                other => {
                    return Err(TrainError::Config(format!(
                        "{}: peft_type {other} is not supported; Tunelab reads LORA and PROMPT_TUNING adapters",
                        dir.join("adapter_config.json").display()
                    )))
                }
            }
        } else if dir.join("config.json").is_file() && dir.join("model.safetensors").is_file() {
            ArtifactKind::Model
        } else {
            return Ok(None);
        };
        Ok(Some(Artifact {
            kind,
            dir: dir.to_path_buf(),
        }))
    }

    /// The result in a run folder (its `artifact/`), or `dir` itself when it is one.
    pub fn find(dir: &Path) -> Result<Option<Artifact>, TrainError> {
        match Artifact::read(&dir.join("artifact"))? {
            Some(artifact) => Ok(Some(artifact)),
            None => Artifact::read(dir),
        }
    }

    /// The model folder to load instead of the base, for a result that replaces it.
    pub fn replaces_base(&self) -> Option<&Path> {
        (self.kind == ArtifactKind::Model).then_some(self.dir.as_path())
    }

    /// Puts an adapter or soft prompt onto `model`, its base; a model folder attaches nothing
    /// (it is loaded in the base's place).
    pub fn attach(&self, model: &mut Transformer) -> Result<(), TrainError> {
        match self.kind {
            ArtifactKind::LoraAdapter => {
                lora::load_peft(&self.dir, model)?;
            }
            ArtifactKind::SoftPrompt => {
                soft_prompt::load_peft(&self.dir, model)?;
            }
            ArtifactKind::Model => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_is_known_by_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(Artifact::find(root).unwrap(), None);
        let write = |path: &Path, text: &str| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        // A model folder...
        write(&root.join("model/config.json"), "{}");
        assert_eq!(Artifact::read(&root.join("model")).unwrap(), None);
        write(&root.join("model/model.safetensors"), "");
        let model = Artifact::read(&root.join("model")).unwrap().unwrap();
        assert_eq!(model.kind, ArtifactKind::Model);
        assert_eq!(model.replaces_base(), Some(root.join("model").as_path()));
        // ...a run folder with an adapter under artifact/ (its own config.json is the run's)...
        write(&root.join("run/config.json"), "{}");
        write(
            &root.join("run/artifact/adapter_config.json"),
            r#"{"peft_type": "PROMPT_TUNING"}"#,
        );
        let soft = Artifact::find(&root.join("run")).unwrap().unwrap();
        assert_eq!(soft.kind, ArtifactKind::SoftPrompt);
        assert_eq!(soft.dir, root.join("run/artifact"));
        assert_eq!(soft.replaces_base(), None);
        // ...and an adapter of a kind Tunelab does not compute, refused by name.
        write(
            &root.join("ia3/adapter_config.json"),
            r#"{"peft_type": "IA3"}"#,
        );
        let err = Artifact::read(&root.join("ia3")).unwrap_err().to_string();
        assert!(err.contains("peft_type IA3 is not supported"), "{err}");
    }
}
