//! An evaluation's configuration: the request resolved (model, metrics, data digest) and
//! checked, and the id it gets.

use std::path::Path;

use super::{data, EvalConfig, EvalRequest, EvalRow, Metric};
use crate::error::{ApiError, Result};
use crate::prompts::TemplateRef;
use crate::workspace::Workspace;

pub(super) fn read_rows(request: &EvalRequest) -> Result<Vec<EvalRow>> {
    let mut rows = data::read(&request.data)?;
    if let Some(limit) = request.limit {
        rows.truncate(limit.max(1) as usize);
    }
    Ok(rows)
}

/// The request with its model, metrics and data pinned down, and checked against each other.
pub(super) fn resolve(
    ws: &Workspace,
    request: &EvalRequest,
    rows: &[EvalRow],
) -> Result<EvalConfig> {
    let data = std::path::absolute(&request.data).map_err(|e| ApiError::io(&request.data, e))?;
    let bytes = std::fs::read(&data).map_err(|e| ApiError::io(&data, e))?;
    let data_sha256 = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    // A run answers with its own base model unless told otherwise.
    let run = match &request.run {
        Some(run) => {
            let artifact = crate::train::resolve_artifact(ws, run)?;
            let run_dir = [artifact.dir.parent(), Some(artifact.dir.as_path())]
                .into_iter()
                .flatten()
                .find(|d| d.join("config.json").is_file() && d.join("summary.json").is_file());
            Some((run.clone(), run_dir.map(Path::to_path_buf)))
        }
        None => None,
    };
    let run_model = run
        .as_ref()
        .and_then(|(_, dir)| dir.as_ref())
        .and_then(|dir| crate::train::show(dir).ok())
        .map(|(config, _)| config.model);
    let model = request
        .model
        .clone()
        .or(run_model)
        .unwrap_or_else(|| crate::DEFAULT_MODEL.to_string());
    crate::models::resolve(ws, &model)?;
    if let Some(judge) = &request.judge {
        crate::models::resolve(ws, judge)?;
    }
    let metrics = choose_metrics(request, rows)?;
    let device = crate::settings::device(ws, request.device)?;
    Ok(EvalConfig {
        data,
        data_sha256,
        rows: rows.len() as u32,
        model,
        run: run.map(|(run, _)| run),
        kb: request.kb.clone(),
        template: request
            .template
            .as_ref()
            .map(|t| pinned(ws, t))
            .transpose()?,
        metrics,
        judge: request.judge.clone(),
        max_tokens: request.max_tokens.max(1),
        seed: request.seed,
        temperature: request.temperature.max(0.0),
        device: device.to_string(),
    })
}

/// `template` with its version: the latest saved when it names none, so that the evaluation
/// (and its id) stays with the version it scored when a newer one is saved.
pub(super) fn pinned(ws: &Workspace, template: &TemplateRef) -> Result<TemplateRef> {
    let saved = crate::prompts::load(ws, &template.name, template.version)?;
    Ok(TemplateRef {
        name: saved.name,
        version: Some(saved.version),
    })
}

/// The metrics asked for, or every one that applies; a metric asked for that cannot apply is
/// an error naming what it needs.
pub(super) fn choose_metrics(request: &EvalRequest, rows: &[EvalRow]) -> Result<Vec<Metric>> {
    let has = |f: &dyn Fn(&EvalRow) -> bool| rows.iter().any(f);
    let needs = |metric: Metric| -> Option<&'static str> {
        match metric {
            Metric::ExactMatch | Metric::TokenF1 | Metric::RougeL | Metric::Perplexity
                if !has(&|r| r.reference.is_some()) =>
            {
                Some("rows with a reference answer")
            }
            Metric::ContainsAll if !has(&|r| !r.must_contain.is_empty()) => {
                Some("rows with `must_contain`")
            }
            Metric::Regex if !has(&|r| r.regex.is_some()) => Some("rows with `regex`"),
            Metric::Json if !has(&|r| r.json) => Some("rows with `\"json\": true`"),
            Metric::HitAt3 | Metric::Mrr if request.kb.is_none() => Some("a knowledge base (--kb)"),
            Metric::HitAt3 | Metric::Mrr if !has(&|r| !r.sources.is_empty()) => {
                Some("rows with `source`")
            }
            Metric::Judge if request.judge.is_none() => Some("a judge model (--judge)"),
            Metric::Judge if !has(&|r| r.reference.is_some()) => {
                Some("rows with a reference answer")
            }
            _ => None,
        }
    };
    if request.metrics.is_empty() {
        return Ok(Metric::ALL
            .into_iter()
            .filter(|m| needs(*m).is_none())
            .collect());
    }
    let mut chosen = request.metrics.clone();
    chosen.sort();
    chosen.dedup();
    for m in &chosen {
        if let Some(what) = needs(*m) {
            return Err(ApiError::invalid(format!(
                "metric `{}` needs {what}",
                m.as_str()
            )));
        }
    }
    Ok(chosen)
}

/// An id given by the user: one folder name.
pub(super) fn checked_id(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 120
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    match ok {
        true => Ok(name.to_string()),
        false => Err(ApiError::invalid(format!(
            "evaluation name `{name}`: use letters, digits, '-', '_', '.' or '@', not starting with '.'"
        ))),
    }
}

/// The data file's stem, what answers, and a digest of the whole configuration: the same
/// command gives the same id, so running it again reuses or resumes its evaluation.
pub(super) fn new_id(config: &EvalConfig) -> String {
    let stem = config
        .data
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "eval".into());
    let who = config
        .run
        .as_deref()
        .and_then(|r| Path::new(r).file_name())
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|| config.model.clone());
    let digest = crate::workspace::short_digest(config);
    crate::workspace::folder_safe(&format!("{stem}-{who}-{digest}"))
}
