//! The model registry: every folder under `models/` with a `model.json` manifest is a model the
//! app can use. Setup installs the defaults there; `add` registers a user's own GGUF file or
//! Hugging Face folder in place (nothing is copied); `pull` downloads from the Hugging Face hub.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::error::{ApiError, ErrorCode, Result};
use crate::workspace::{write_atomic, Workspace};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum ModelFormat {
    Gguf,
    Hf,
}

/// What a model is for: chatting (a causal language model) or embedding text for search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum ModelRole {
    Chat,
    Embedding,
}

/// Where a model came from, kept so the user can tell and so a pull can be repeated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ModelSource {
    Pypi { package: String, version: String },
    Hub { repo: String, revision: String },
    Local { path: PathBuf },
}

/// `models/<name>/model.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelManifest {
    pub name: String,
    pub role: ModelRole,
    pub format: ModelFormat,
    /// The file or folder to load, relative to the manifest's folder or absolute.
    pub entry: PathBuf,
    #[serde(default)]
    pub description: String,
    pub source: ModelSource,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ModelEntry {
    pub name: String,
    pub role: ModelRole,
    pub format: ModelFormat,
    pub path: String,
    pub architecture: String,
    pub quantization: Option<String>,
    #[ts(type = "number | null")]
    pub parameters: Option<u64>,
    pub context_length: Option<u32>,
    #[ts(type = "number")]
    pub size_bytes: u64,
    pub description: String,
    /// Set when the files cannot be read; the entry stays listed so the user can fix or remove it.
    pub problem: Option<String>,
    /// Whether the registry owns the files (a download, a default model) and deletes them on
    /// remove; a model registered in place keeps its files.
    pub files_owned: bool,
}

impl ModelManifest {
    fn folder(ws: &Workspace, name: &str) -> PathBuf {
        ws.models_dir().join(name)
    }

    pub fn read(folder: &Path) -> Result<Self> {
        let path = folder.join("model.json");
        let text = std::fs::read_to_string(&path).map_err(|e| ApiError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            ApiError::new(
                ErrorCode::BadModel,
                format!("{}: line {}: {e}", path.display(), e.line()),
            )
        })
    }

    pub fn write(&self, folder: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).expect("manifest serializes");
        Ok(write_atomic(
            &folder.join("model.json"),
            format!("{json}\n").as_bytes(),
        )?)
    }

    /// The path the engine loads.
    pub fn resolved_entry(&self, folder: &Path) -> PathBuf {
        if self.entry.is_absolute() {
            self.entry.clone()
        } else {
            folder.join(&self.entry)
        }
    }
}

fn entry_for(manifest: &ModelManifest, folder: &Path) -> ModelEntry {
    let path = manifest.resolved_entry(folder);
    let mut entry = ModelEntry {
        name: manifest.name.clone(),
        role: manifest.role,
        format: manifest.format,
        path: path.display().to_string(),
        architecture: String::new(),
        quantization: None,
        parameters: None,
        context_length: None,
        size_bytes: 0,
        description: manifest.description.clone(),
        problem: None,
        files_owned: !matches!(manifest.source, ModelSource::Local { .. }),
    };
    match manifest.role {
        ModelRole::Chat => match tunelab_engine::inspect(&path) {
            Ok(s) => {
                entry.architecture = s.config.architecture.as_str().to_string();
                entry.quantization = s.quantization;
                entry.parameters = Some(s.config.parameter_count());
                entry.context_length = Some(s.config.max_position_embeddings as u32);
                entry.size_bytes = s.size_bytes;
            }
            Err(e) => entry.problem = Some(e.to_string()),
        },
        ModelRole::Embedding => {
            let config = std::fs::read_to_string(path.join("config.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
            entry.architecture = config
                .as_ref()
                .and_then(|c| c.get("model_type"))
                .and_then(|v| v.as_str())
                .unwrap_or("unknown")
                .to_string();
            entry.context_length = config
                .as_ref()
                .and_then(|c| c.get("max_position_embeddings"))
                .and_then(|v| v.as_u64())
                .map(|v| v as u32);
            entry.size_bytes = std::fs::read_dir(&path)
                .map(|d| {
                    d.filter_map(|e| e.ok()?.metadata().ok())
                        .filter(|m| m.is_file())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0);
        }
    }
    entry
}

/// Every registered model, sorted by name.
pub fn list(ws: &Workspace) -> Result<Vec<ModelEntry>> {
    let dir = ws.models_dir();
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(|e| ApiError::io(&dir, e))?;
    for folder in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        // Hidden folders are downloads and unpacks in progress (`.pull-*`, `.default-*`).
        let hidden = folder
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden || !folder.join("model.json").is_file() {
            continue;
        }
        match ModelManifest::read(&folder) {
            Ok(manifest) => out.push(entry_for(&manifest, &folder)),
            Err(e) => out.push(ModelEntry {
                name: folder
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                role: ModelRole::Chat,
                format: ModelFormat::Gguf,
                path: folder.display().to_string(),
                architecture: String::new(),
                quantization: None,
                parameters: None,
                context_length: None,
                size_bytes: 0,
                description: String::new(),
                problem: Some(e.message),
                // Unknown without a manifest: removing forgets it and deletes nothing else.
                files_owned: false,
            }),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The file or folder behind a registered model name.
pub fn resolve(ws: &Workspace, name: &str) -> Result<(ModelManifest, PathBuf)> {
    let folder = ModelManifest::folder(ws, name);
    if !folder.join("model.json").is_file() {
        let known: Vec<String> = list(ws)?.into_iter().map(|m| m.name).collect();
        let hint = if known.is_empty() {
            "no models are installed yet: download the defaults from Home or with `tunelab models defaults`, or add one with `tunelab models add PATH`"
                .to_string()
        } else {
            format!("installed: {}", known.join(", "))
        };
        return Err(ApiError::not_found(format!(
            "no model named `{name}` ({hint})"
        )));
    }
    let manifest = ModelManifest::read(&folder)?;
    let path = manifest.resolved_entry(&folder);
    Ok((manifest, path))
}

/// A registry name from a file or folder name: lowercase letters, digits, `-`, `.` and `_`.
pub fn name_from_path(path: &Path) -> String {
    let stem = if path.is_dir() {
        path.file_name()
    } else {
        path.file_stem()
    };
    let raw = stem
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_else(|| "model".into());
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    cleaned.trim_matches('-').to_string()
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "`{name}` is not a usable model name: use letters, digits, '-', '.' and '_'"
        )))
    }
}

/// Registers a GGUF file or Hugging Face folder where it lies, after checking that it loads.
pub fn add(ws: &Workspace, path: &Path, name: Option<&str>) -> Result<ModelEntry> {
    let path = std::fs::canonicalize(path).map_err(|e| ApiError::io(path, e))?;
    let name = name
        .map(str::to_string)
        .unwrap_or_else(|| name_from_path(&path));
    check_name(&name)?;
    let folder = ModelManifest::folder(ws, &name);
    if folder.join("model.json").exists() {
        return Err(ApiError::new(
            ErrorCode::Exists,
            format!("a model named `{name}` is already registered; pass --name to choose another"),
        ));
    }
    // A sentence-transformers folder is an embedder for knowledge bases, not a chat model.
    if path.is_dir() && tunelab_engine::bert::is_sentence_encoder(&path) {
        let encoder =
            tunelab_engine::bert::SentenceEncoder::load(&path, &tunelab_engine::Device::Cpu)?;
        let manifest = ModelManifest {
            name: name.clone(),
            role: ModelRole::Embedding,
            format: ModelFormat::Hf,
            entry: path.clone(),
            description: format!(
                "sentence encoder ({} dimensions, {:?} pooling) added from {}",
                encoder.dimension(),
                encoder.pooling(),
                path.display()
            ),
            source: ModelSource::Local { path },
        };
        std::fs::create_dir_all(&folder).map_err(|e| ApiError::io(&folder, e))?;
        manifest.write(&folder)?;
        return Ok(entry_for(&manifest, &folder));
    }
    // Everything chat will read is read now, so a broken file is refused here, by name, rather
    // than registered and failing at the first message.
    let summary = tunelab_engine::verify(&path)?;
    let manifest = ModelManifest {
        name: name.clone(),
        role: ModelRole::Chat,
        format: match summary.format {
            tunelab_engine::ModelFormat::Gguf => ModelFormat::Gguf,
            tunelab_engine::ModelFormat::Hf => ModelFormat::Hf,
        },
        entry: path.clone(),
        description: format!(
            "{} model added from {}",
            summary.config.architecture.as_str(),
            path.display()
        ),
        source: ModelSource::Local { path },
    };
    std::fs::create_dir_all(&folder).map_err(|e| ApiError::io(&folder, e))?;
    manifest.write(&folder)?;
    Ok(entry_for(&manifest, &folder))
}

/// Forgets a model. Files the registry owns (downloads, setup's defaults) are deleted; a model
/// registered in place keeps its files.
pub fn remove(ws: &Workspace, name: &str) -> Result<()> {
    check_name(name)?;
    let folder = ModelManifest::folder(ws, name);
    let manifest_path = folder.join("model.json");
    // A manifest that cannot be read is removed on its own: without it there is no telling
    // whose the other files are, so they stay.
    if manifest_path.is_file() && ModelManifest::read(&folder).is_err() {
        std::fs::remove_file(&manifest_path).map_err(|e| ApiError::io(&manifest_path, e))?;
        let _ = std::fs::remove_dir(&folder);
        return Ok(());
    }
    let (manifest, _) = resolve(ws, name)?;
    match manifest.source {
        ModelSource::Local { .. } => std::fs::remove_file(folder.join("model.json"))
            .and_then(|_| std::fs::remove_dir(&folder))
            .map_err(|e| ApiError::io(&folder, e)),
        _ => std::fs::remove_dir_all(&folder).map_err(|e| ApiError::io(&folder, e)),
    }
}
