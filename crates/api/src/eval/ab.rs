//! The prompt studio's A/B test: two versions of a saved template, or one against none, each
//! evaluated on the same file with the same model and decoding, then set side by side
//! ([`super::diff`]). Each side is an ordinary evaluation, so a side already evaluated is
//! reused and a stopped test carries on where it stopped.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::config::pinned;
use super::{diff, run, Caches, EvalDiff, EvalEvent, EvalRequest};
use crate::error::{ApiError, ErrorCode, Result};
use crate::prompts::TemplateRef;
use crate::train::RunStatus;
use crate::workspace::Workspace;

/// What to set against what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct TemplateAbRequest {
    /// The evaluation file (as for `tunelab eval`).
    #[ts(type = "string")]
    pub data: PathBuf,
    /// The registered chat model both sides answer with.
    pub model: String,
    /// A template version, or none: the bare question.
    pub a: Option<TemplateRef>,
    pub b: Option<TemplateRef>,
    /// Longest answer in tokens.
    pub max_tokens: u32,
    /// Only the first N rows.
    pub limit: Option<u32>,
}

/// Which side an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum AbSide {
    A,
    B,
}

/// A side's evaluation reporting progress.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct AbEvent {
    pub side: AbSide,
    pub event: EvalEvent,
}

/// Evaluates both sides of `request`, A first, and compares them. `cancel` stops the side
/// answering, keeping its rows; the test then ends with a `cancelled` error.
pub fn template_ab(
    ws: &Workspace,
    caches: &Caches,
    request: &TemplateAbRequest,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(AbEvent),
) -> Result<EvalDiff> {
    if request.a.is_none() && request.b.is_none() {
        return Err(ApiError::invalid(
            "choose a template version for at least one side of the A/B test",
        ));
    }
    let pin = |t: &Option<TemplateRef>| t.as_ref().map(|t| pinned(ws, t)).transpose();
    let (a, b) = (pin(&request.a)?, pin(&request.b)?);
    if a == b {
        return Err(ApiError::invalid(
            "both sides of the A/B test are the same template version: choose two",
        ));
    }
    let mut ids = Vec::with_capacity(2);
    for (side, template) in [(AbSide::A, &a), (AbSide::B, &b)] {
        let eval = EvalRequest {
            data: request.data.clone(),
            model: Some(request.model.clone()),
            template: template.clone(),
            max_tokens: request.max_tokens,
            limit: request.limit,
            ..EvalRequest::default()
        };
        let summary = run(ws, caches, &eval, cancel, &mut |event| {
            on_event(AbEvent { side, event })
        })?;
        if summary.status == RunStatus::Cancelled {
            return Err(ApiError::new(
                ErrorCode::Cancelled,
                "the A/B test was stopped; its answers so far are kept for the next try",
            ));
        }
        ids.push(summary.id);
    }
    diff(ws, &ids[0], &ids[1])
}
