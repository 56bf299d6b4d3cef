//! What a configuration adds to its base model, for the cost of an evaluation and of each
//! method in a comparison: the trained result, the knowledge base and the prompt template,
//! their size on disk, and the data behind them.

use std::path::Path;

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use tunelab_knowledge::KnowledgeStore;
use tunelab_train::{Artifact, ArtifactKind};

use crate::error::Result;
use crate::prompts::PromptTemplate;
use crate::train::RunSummary;
use crate::workspace::Workspace;

/// The parts of a configuration beyond its base model, added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct Footprint {
    /// Parameters training set: the adapter's, the soft prompt's, or every one of a model
    /// trained whole. 0 without a trained result.
    #[ts(type = "number")]
    pub trainable_parameters: u64,
    /// Bytes on disk: the trained result, the knowledge base's index and the template.
    #[ts(type = "number")]
    pub artifact_bytes: u64,
    /// Examples trained on (train and validation), documents indexed and few-shot examples.
    #[ts(type = "number")]
    pub data_rows: u64,
    /// Tokens trained on.
    #[ts(type = "number")]
    pub data_tokens: u64,
}

impl std::ops::Add for Footprint {
    type Output = Footprint;

    fn add(self, other: Footprint) -> Footprint {
        Footprint {
            trainable_parameters: self.trainable_parameters + other.trainable_parameters,
            artifact_bytes: self.artifact_bytes + other.artifact_bytes,
            data_rows: self.data_rows + other.data_rows,
            data_tokens: self.data_tokens + other.data_tokens,
        }
    }
}

impl Footprint {
    /// A finished run, from its summary.
    pub fn of_run(summary: &RunSummary) -> Footprint {
        Footprint {
            trainable_parameters: summary.trainable_parameters,
            artifact_bytes: folder_bytes(&summary.artifact),
            data_rows: (summary.train_examples + summary.val_examples) as u64,
            data_tokens: summary.tokens_seen,
        }
    }

    /// A trained result: from its run's summary when it is a run's `artifact/`, else from its
    /// own tensors (an adapter or a model folder from elsewhere, whose data is not known).
    pub fn of_result(artifact: &Artifact) -> Result<Footprint> {
        let run_dir = artifact
            .dir
            .parent()
            .filter(|_| artifact.dir.file_name().is_some_and(|n| n == "artifact"));
        if let Some(run_dir) = run_dir {
            if let Ok((_, Some(summary))) = crate::train::show(run_dir) {
                return Ok(Footprint::of_run(&summary));
            }
        }
        let file = match artifact.kind {
            ArtifactKind::LoraAdapter | ArtifactKind::SoftPrompt => "adapter_model.safetensors",
            ArtifactKind::Model => "model.safetensors",
        };
        let tensors = tunelab_engine::weights::safetensors_header(&artifact.dir.join(file))?;
        Ok(Footprint {
            trainable_parameters: tensors
                .iter()
                .map(|(_, shape)| shape.iter().product::<usize>() as u64)
                .sum(),
            artifact_bytes: folder_bytes(&artifact.dir),
            ..Footprint::default()
        })
    }

    /// A knowledge base: its folder and its documents.
    pub fn of_knowledge(store: &KnowledgeStore, name: &str) -> Result<Footprint> {
        Ok(Footprint {
            artifact_bytes: folder_bytes(&store.table_dir(name)),
            data_rows: store.info(name)?.documents as u64,
            ..Footprint::default()
        })
    }

    /// A prompt template: its saved form and its few-shot examples.
    pub fn of_template(template: &PromptTemplate) -> Footprint {
        Footprint {
            artifact_bytes: serde_json::to_vec(template).map_or(0, |b| b.len() as u64),
            data_rows: template.examples.len() as u64,
            ..Footprint::default()
        }
    }
}

/// What the evaluated configuration adds to its base model: its trained result, knowledge base
/// and template together.
pub(super) fn of_config(
    ws: &Workspace,
    caches: &super::Caches,
    config: &super::EvalConfig,
) -> Result<Footprint> {
    let mut total = Footprint::default();
    if let Some(run) = &config.run {
        total = total + Footprint::of_result(&crate::train::resolve_artifact(ws, run)?)?;
    }
    if let Some(kb) = &config.kb {
        total = total + Footprint::of_knowledge(&*caches.knowledge.store(ws)?, kb)?;
    }
    if let Some(t) = &config.template {
        let saved = crate::prompts::load(ws, &t.name, t.version)?;
        total = total + Footprint::of_template(&saved.template);
    }
    Ok(total)
}

/// Bytes of a file, or of every file under a folder.
pub(crate) fn folder_bytes(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => meta.len(),
        Ok(_) => std::fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| folder_bytes(&e.path())).sum())
            .unwrap_or(0),
        Err(_) => 0,
    }
}
