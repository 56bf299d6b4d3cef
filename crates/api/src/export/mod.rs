//! Exporting a model or a run's result to the formats other tools load: a PEFT adapter, a
//! merged Hugging Face folder, or a GGUF file (with an Ollama Modelfile). Every export reloads
//! what it wrote and compares it with the model as Tunelab answers with it before it is called
//! done (`check`); the result, `export.json`, stays in the folder.

mod check;
mod ollama;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use tunelab_engine::gguf_write::GgufQuant;
use tunelab_engine::{DType, Device, LoadedModel};

pub use check::{CheckItem, CheckKind, ExportCheck};

use crate::error::{ApiError, ErrorCode, Result};
use crate::jobs::{JobKind, JobLock};
use crate::train::{Artifact, ArtifactKind, Method};
use crate::workspace::{folder_safe, json_bytes, read_json, write_atomic, Workspace};

/// The form an export takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum ExportFormat {
    /// The run's PEFT adapter (LoRA or prompt tuning), for transformers + PEFT.
    Peft,
    /// The model with a LoRA run folded into its weights, as a Hugging Face folder.
    Merged,
    /// One GGUF file, for llama.cpp, Ollama and LM Studio.
    Gguf,
}

impl ExportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Peft => "peft",
            ExportFormat::Merged => "merged",
            ExportFormat::Gguf => "gguf",
        }
    }
}

/// The GGUF recipe an export uses unless it names one: near the 16-bit model's quality at
/// about half its size.
pub const DEFAULT_QUANT: GgufQuant = GgufQuant::Q8_0;

/// What to export, and how.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ExportRequest {
    /// A run id (or run folder), or a registered model's name.
    pub source: String,
    pub format: ExportFormat,
    /// GGUF only: f32, f16, q8_0 (the default), q4_0, q4_1 or q4_k_m.
    #[serde(default)]
    pub quant: Option<String>,
    /// GGUF only: write an Ollama Modelfile next to the file.
    #[serde(default)]
    pub ollama: bool,
    /// The folder to create; `exports/<source>-<format>[-<quant>]` in the workspace when
    /// unset. An existing folder with files in it is refused, never overwritten.
    #[serde(default)]
    #[ts(type = "string | null")]
    pub out: Option<PathBuf>,
}

/// Where an export came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ExportSource {
    /// The run id, or null for a model exported as it is.
    pub run: Option<String>,
    /// The training method of the run, or null.
    pub method: Option<Method>,
    /// The registered model: the run's base, or the model exported.
    pub model: String,
}

/// A file of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ExportFile {
    pub name: String,
    #[ts(type = "number")]
    pub bytes: u64,
}

/// `export.json`: what was written, from what, and what the check found.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ExportReport {
    pub source: ExportSource,
    pub format: ExportFormat,
    /// The GGUF recipe (f16, q8_0, ...), or null.
    pub quant: Option<String>,
    /// Safetensors dtype of a merged folder (F32, F16 or BF16), or null.
    pub dtype: Option<String>,
    pub folder: String,
    pub files: Vec<ExportFile>,
    /// Tensors written (GGUF and merged).
    pub tensors: usize,
    /// The Ollama Modelfile's name in the folder, when one was written.
    pub modelfile: Option<String>,
    /// The command that makes an Ollama model of it, when a Modelfile was written.
    pub ollama_create: Option<String>,
    pub check: ExportCheck,
    pub wall_time_s: f64,
    #[ts(type = "number")]
    pub created_at: u64,
}

/// Progress of an export, for a progress bar.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum ExportEvent {
    /// A stage begins: "loading", "writing", "checking".
    Stage { stage: ExportStage },
    /// `done` of `total` tensors written.
    Written { done: usize, total: usize },
    /// One check's result.
    Checked { item: CheckItem },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum ExportStage {
    Loading,
    Writing,
    Checking,
}

/// The source resolved: what to load, and what may be done with it.
struct Resolved {
    source: ExportSource,
    /// The run's result (PEFT adapter or model folder), for runs.
    artifact: Option<Artifact>,
    /// A short name for files and folders.
    label: String,
}

fn resolve(ws: &Workspace, source: &str) -> Result<Resolved> {
    let run_dir = [PathBuf::from(source), ws.runs_dir().join(source)]
        .into_iter()
        .find(|d| d.join("config.json").is_file() && d.join("metrics.jsonl").exists());
    if let Some(dir) = run_dir {
        let (config, summary) = crate::train::show(&dir)?;
        if crate::train::state(&dir, summary.as_ref()).status == crate::train::RunStatus::Running {
            return Err(ApiError::new(
                ErrorCode::Busy,
                format!("run `{source}` is still training; export it when it has finished"),
            ));
        }
        let artifact = Artifact::find(&dir)?.ok_or_else(|| {
            ApiError::not_found(format!(
                "run `{source}` has no result yet ({}/artifact is missing): resume it to the end, or export its base model",
                dir.display()
            ))
        })?;
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| source.to_string());
        return Ok(Resolved {
            label: folder_safe(&id),
            source: ExportSource {
                run: Some(id),
                method: Some(config.method),
                model: config.model,
            },
            artifact: Some(artifact),
        });
    }
    crate::models::resolve(ws, source).map_err(|_| {
        ApiError::not_found(format!(
            "`{source}` is neither a run (`tunelab runs list`) nor a model (`tunelab models list`)"
        ))
    })?;
    Ok(Resolved {
        label: folder_safe(source),
        source: ExportSource {
            run: None,
            method: None,
            model: source.to_string(),
        },
        artifact: None,
    })
}

/// The forms a result of `kind` can be exported in (a model on its own with `None`): a soft
/// prompt only as PEFT; LoRA and QLoRA adapters in all three; a trained model as a model.
pub fn formats_for(kind: Option<ArtifactKind>) -> Vec<ExportFormat> {
    use ExportFormat::*;
    match kind {
        Some(ArtifactKind::SoftPrompt) => vec![Peft],
        Some(ArtifactKind::LoraAdapter) => vec![Gguf, Merged, Peft],
        Some(ArtifactKind::Model) => vec![Gguf, Merged],
        None => vec![Gguf],
    }
}

/// Refuses what a format cannot carry, with what to do instead.
fn check_format(resolved: &Resolved, request: &ExportRequest) -> Result<Option<GgufQuant>> {
    let method = resolved.source.method;
    let kind = resolved.artifact.as_ref().map(|a| a.kind);
    let quant = match (&request.quant, request.format) {
        (Some(q), ExportFormat::Gguf) => Some(GgufQuant::parse(q).ok_or_else(|| {
            let known: Vec<&str> = GgufQuant::ALL.iter().map(|q| q.as_str()).collect();
            ApiError::invalid(format!(
                "quant `{q}` is not one Tunelab writes: {}",
                known.join(", ")
            ))
        })?),
        (None, ExportFormat::Gguf) => Some(DEFAULT_QUANT),
        (Some(_), _) => return Err(ApiError::invalid(
            "--quant is for GGUF exports; a PEFT adapter or merged folder keeps its own precision",
        )),
        (None, _) => None,
    };
    if request.ollama && request.format != ExportFormat::Gguf {
        return Err(ApiError::invalid(
            "an Ollama Modelfile goes with a GGUF file: export with --format gguf --ollama",
        ));
    }
    if !formats_for(kind).contains(&request.format) {
        return Err(ApiError::invalid(match (request.format, method) {
            (_, Some(m)) if m.recipe().artifact() == ArtifactKind::SoftPrompt => "a soft prompt cannot be merged into weights: its virtual tokens go in front of every prompt, which a GGUF file or a model folder cannot carry. Export it with --format peft (PEFT prompt tuning, which transformers + PEFT load)".to_string(),
            (ExportFormat::Peft, Some(m)) => format!(
                "a {} run trains every weight, so there is no adapter to export: use --format merged or --format gguf",
                m.as_str()
            ),
            (ExportFormat::Peft, None) => "a model on its own has no adapter: export a LoRA, QLoRA or soft-prompt run with --format peft, or the model with --format gguf".to_string(),
            (_, None) => "a model without a run has nothing to merge: export a LoRA or QLoRA run with --format merged, or the model with --format gguf".to_string(),
            (format, Some(m)) => format!("a {} run cannot be exported as {}", m.as_str(), format.as_str()),
        }));
    }
    Ok(quant)
}

/// The default folder of an export in the workspace.
fn default_out(
    ws: &Workspace,
    resolved: &Resolved,
    format: ExportFormat,
    quant: Option<GgufQuant>,
) -> PathBuf {
    let mut name = format!("{}-{}", resolved.label, format.as_str());
    if let Some(q) = quant {
        name = format!("{name}-{}", q.as_str());
    }
    ws.exports_dir().join(name)
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// Runs an export: resolves the source, writes the files into a staging folder beside `out`,
/// checks them against the model as Tunelab answers with it, and moves the folder into place
/// only when every check passed. A failed check leaves nothing at `out` and names the check.
pub fn run(
    ws: &Workspace,
    request: &ExportRequest,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(ExportEvent),
) -> Result<ExportReport> {
    let started = std::time::Instant::now();
    let resolved = resolve(ws, &request.source)?;
    let quant = check_format(&resolved, request)?;
    let out = match &request.out {
        Some(out) => out.clone(),
        None => default_out(ws, &resolved, request.format, quant),
    };
    let _lock = JobLock::acquire(
        &crate::jobs::export_lock_path(ws, &out),
        JobKind::Export,
        &request.source,
    )?;
    // Looked at under the lock: an export to the same folder that just finished counts.
    if out.exists() && !is_empty_dir(&out) {
        return Err(ApiError::invalid(format!(
            "{} already exists and has files in it; choose another --out (an export never overwrites a folder)",
            out.display()
        )));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ApiError::io(parent, e))?;
    let staging = parent.join(format!(
        ".{}.partial",
        out.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| ApiError::io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| ApiError::io(&staging, e))?;
    let result = write_and_check(
        ws, request, &resolved, quant, &staging, &out, cancel, on_event,
    );
    let report = match result {
        Ok(mut report) => {
            report.wall_time_s = started.elapsed().as_secs_f64();
            write_atomic(&staging.join("export.json"), &json_bytes(&report)?)?;
            report
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if !report.check.passed {
        let _ = std::fs::remove_dir_all(&staging);
        let failed: Vec<String> = report
            .check
            .items
            .iter()
            .filter(|i| !i.passed)
            .map(|i| format!("{}: {}", i.check.as_str(), i.detail))
            .collect();
        return Err(ApiError::new(
            ErrorCode::ExportCheckFailed,
            format!(
                "the export did not match the model it came from, so it was not kept. {}",
                failed.join("; ")
            ),
        ));
    }
    if out.exists() {
        std::fs::remove_dir(&out).map_err(|e| ApiError::io(&out, e))?;
    }
    std::fs::rename(&staging, &out).map_err(|e| ApiError::io(&out, e))?;
    Ok(report)
}

/// Checks an export folder again (`export.json` says what it came from): what `tunelab export
/// --check DIR` runs, e.g. after copying it to another disk.
pub fn verify(ws: &Workspace, dir: &Path) -> Result<ExportCheck> {
    let report: ExportReport = read_json(&dir.join("export.json"))?.ok_or_else(|| {
        ApiError::not_found(format!(
            "{} has no export.json: only folders Tunelab exported can be checked",
            dir.display()
        ))
    })?;
    let source = report
        .source
        .run
        .clone()
        .unwrap_or(report.source.model.clone());
    let resolved = resolve(ws, &source)?;
    let reference = load_source(ws, &resolved)?;
    let quant = report.quant.as_deref().and_then(GgufQuant::parse);
    check::check(
        &reference,
        dir,
        report.format,
        quant,
        report.modelfile.as_deref(),
        &mut |_| {},
    )
}

/// The source as chat answers with it, on the CPU.
fn load_source(ws: &Workspace, resolved: &Resolved) -> Result<LoadedModel> {
    crate::chat::load_model(
        ws,
        &resolved.source.model,
        resolved.artifact.as_ref(),
        &Device::Cpu,
    )
}

#[allow(clippy::too_many_arguments)]
fn write_and_check(
    ws: &Workspace,
    request: &ExportRequest,
    resolved: &Resolved,
    quant: Option<GgufQuant>,
    staging: &Path,
    out: &Path,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(ExportEvent),
) -> Result<ExportReport> {
    let stopped = || {
        ApiError::new(
            ErrorCode::Cancelled,
            "the export was stopped; nothing was kept",
        )
    };
    on_event(ExportEvent::Stage {
        stage: ExportStage::Loading,
    });
    let model = load_source(ws, resolved)?;
    if cancel.load(Ordering::Relaxed) {
        return Err(stopped());
    }
    on_event(ExportEvent::Stage {
        stage: ExportStage::Writing,
    });
    let mut progress = |done: usize, total: usize| {
        on_event(ExportEvent::Written { done, total });
        !cancel.load(Ordering::Relaxed)
    };
    let mut tensors = 0;
    let mut dtype = None;
    let mut modelfile = None;
    match request.format {
        ExportFormat::Peft => {
            let artifact = resolved.artifact.as_ref().expect("a PEFT export has a run");
            for name in ["adapter_config.json", "adapter_model.safetensors"] {
                let from = artifact.dir.join(name);
                std::fs::copy(&from, staging.join(name)).map_err(|e| ApiError::io(&from, e))?;
            }
        }
        ExportFormat::Merged => {
            let d = merged_dtype(&model);
            tunelab_engine::hf_write::write_hf_folder(staging, &model, d, &mut progress)?;
            tensors = model.transformer.weight_names().len();
            dtype = Some(format!("{d:?}").to_uppercase());
        }
        ExportFormat::Gguf => {
            let quant = quant.expect("a GGUF export has a quant");
            let file = format!("{}.{}.gguf", resolved.label, quant.as_str());
            let metadata = gguf_metadata(&model, &resolved.label, quant)?;
            let written = tunelab_engine::gguf_write::write_gguf(
                &staging.join(&file),
                &model.transformer,
                &metadata,
                quant,
                &mut progress,
            )?;
            tensors = written.len();
            if request.ollama {
                let text = ollama::modelfile(&model, &file)?;
                write_atomic(&staging.join("Modelfile"), text.as_bytes())?;
                modelfile = Some("Modelfile".to_string());
            }
        }
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(stopped());
    }
    on_event(ExportEvent::Stage {
        stage: ExportStage::Checking,
    });
    let check = check::check(
        &model,
        staging,
        request.format,
        quant,
        modelfile.as_deref(),
        &mut |item| on_event(ExportEvent::Checked { item: item.clone() }),
    )?;
    let mut files: Vec<ExportFile> = std::fs::read_dir(staging)
        .map_err(|e| ApiError::io(staging, e))?
        .filter_map(|e| e.ok())
        .map(|e| ExportFile {
            name: e.file_name().to_string_lossy().into_owned(),
            bytes: e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let ollama_create = modelfile.as_ref().map(|m| {
        format!(
            "ollama create {} -f {}",
            resolved.label.to_lowercase(),
            out.join(m).display()
        )
    });
    Ok(ExportReport {
        source: resolved.source.clone(),
        format: request.format,
        quant: quant.map(|q| q.as_str().to_string()),
        dtype,
        folder: out.display().to_string(),
        files,
        tensors,
        modelfile,
        ollama_create,
        check,
        wall_time_s: 0.0,
        created_at: crate::train::now(),
    })
}

/// A merged folder keeps the base's own dtype: 16- and 32-bit weights as they were, GGUF
/// blocks (which safetensors cannot hold) as f16.
fn merged_dtype(model: &LoadedModel) -> DType {
    match model.summary.quantization.as_deref() {
        Some("F32") => DType::F32,
        Some("BF16") => DType::BF16,
        _ => DType::F16,
    }
}

/// A GGUF file's metadata: the configuration, the tokenizer (copied from a GGUF source, or
/// written from tokenizer.json) and the chat template the model answers with.
fn gguf_metadata(
    model: &LoadedModel,
    name: &str,
    quant: GgufQuant,
) -> Result<Vec<(String, tunelab_engine::gguf_write::Value)>> {
    let config = &model.transformer.config;
    let mut metadata = tunelab_engine::gguf_write::config_metadata(config, name, quant);
    let tokenizer = match model.summary.format {
        tunelab_engine::ModelFormat::Gguf => {
            let source = tunelab_engine::gguf::GgufFile::open(&model.summary.path)?;
            let mut keys: Vec<(String, tunelab_engine::gguf_write::Value)> = source
                .metadata()
                .iter()
                .filter(|(k, _)| k.starts_with("tokenizer.") && *k != "tokenizer.chat_template")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            keys
        }
        tunelab_engine::ModelFormat::Hf => model.tokenizer.gguf_metadata(config)?,
    };
    metadata.extend(tokenizer);
    metadata.push((
        "tokenizer.chat_template".into(),
        tunelab_engine::gguf_write::Value::String(model.template.source().to_string()),
    ));
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes what the app's export panel offers and shows, from the Rust sources: the GGUF
    /// recipes with the default, and each check's name (like the generated bindings, CI fails
    /// when the committed file differs).
    #[test]
    fn export_panel_choices() {
        let quants: Vec<serde_json::Value> = GgufQuant::ALL
            .iter()
            .map(|q| serde_json::json!({"id": q.as_str(), "label": q.describe()}))
            .collect();
        let checks: Vec<serde_json::Value> = CheckKind::ALL
            .iter()
            .map(|c| serde_json::json!({"id": c, "label": c.as_str()}))
            .collect();
        let json = serde_json::to_string_pretty(&serde_json::json!({
            "default_quant": DEFAULT_QUANT.as_str(),
            "quants": quants,
            "checks": checks,
        }))
        .unwrap()
            + "\n";
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/bindings/export-choices.json");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(json.as_str()) {
            std::fs::write(&path, json).unwrap();
        }
    }

    #[test]
    fn each_method_exports_in_the_forms_its_result_has() {
        use ExportFormat::*;
        assert_eq!(formats_for(Some(ArtifactKind::SoftPrompt)), vec![Peft]);
        assert_eq!(
            formats_for(Some(ArtifactKind::LoraAdapter)),
            vec![Gguf, Merged, Peft]
        );
        assert_eq!(formats_for(Some(ArtifactKind::Model)), vec![Gguf, Merged]);
        assert_eq!(formats_for(None), vec![Gguf]);
    }
}
