//! Knowledge bases (RAG): create one, add documents, search it, and answer questions from it
//! with citations. The store is one LanceDB folder in the workspace (`knowledge/`); embedders
//! are registered models with the `embedding` role.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use ts_rs::TS;
pub use tunelab_knowledge::prompt::Citation;
use tunelab_knowledge::prompt::{grounded_prompt, not_covered, DEFAULT_MIN_SIMILARITY};
pub use tunelab_knowledge::{
    AddProgress, AddReport, ChunkOptions, FailedFile, Hit, KnowledgeBaseInfo, Location, SearchMode,
    SearchOptions, SourceInfo,
};
use tunelab_knowledge::{Embedder, KnowledgeError, KnowledgeStore};

use crate::chat::{ChatMessage, ChatRequest, ChatRole, ChatSummary};
use crate::error::{ApiError, ErrorCode, Result};
use crate::jobs::{self, JobKind, JobLock};
use crate::models::{self, ModelRole};
use crate::workspace::Workspace;
use crate::DeviceChoice;
use tunelab_engine::LoadedModel;

/// The embedder a new knowledge base uses unless told otherwise.
pub const DEFAULT_EMBEDDER: &str = "all-minilm-l6-v2";

impl From<KnowledgeError> for ApiError {
    fn from(err: KnowledgeError) -> Self {
        use KnowledgeError as K;
        let err = match err {
            K::Engine(e) => return e.into(),
            other => other,
        };
        let code = match &err {
            K::NotFound(_) => ErrorCode::NotFound,
            K::Exists(_) => ErrorCode::Exists,
            K::InvalidName { .. } | K::Setting { .. } | K::Unsupported { .. } => {
                ErrorCode::InvalidInput
            }
            K::EmbedderMismatch { .. } => ErrorCode::EmbedderMismatch,
            K::Document { .. } | K::Refused { .. } => ErrorCode::BadDocument,
            K::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorCode::NotFound
            }
            K::Io { .. } => ErrorCode::Io,
            K::Store { .. } => ErrorCode::Store,
            K::Cancelled(_) => ErrorCode::Cancelled,
            K::Engine(_) => ErrorCode::Internal,
        };
        ApiError::new(code, err.to_string())
    }
}

/// The open store and the last embedder used, kept between calls (the app holds one).
#[derive(Default)]
pub struct KnowledgeCache {
    store: Mutex<Option<(PathBuf, Arc<KnowledgeStore>)>>,
    embedder: Mutex<Option<(DeviceChoice, Arc<Embedder>)>>,
    /// Where embedders run; the workspace's device setting when `None`.
    device: Option<DeviceChoice>,
}

impl KnowledgeCache {
    /// A cache whose embedders run on `device` (the workspace's setting when `None`).
    pub fn on(device: Option<DeviceChoice>) -> Self {
        KnowledgeCache {
            device,
            ..Default::default()
        }
    }

    pub fn store(&self, ws: &Workspace) -> Result<Arc<KnowledgeStore>> {
        let dir = ws.knowledge_dir();
        let mut slot = crate::slot::lock(&self.store);
        if let Some((root, store)) = slot.as_ref() {
            if *root == dir {
                return Ok(store.clone());
            }
        }
        let store = Arc::new(KnowledgeStore::open(&dir)?);
        *slot = Some((dir, store.clone()));
        Ok(store)
    }

    /// The registered embedding model `name`, loaded once, on the cache's device.
    pub fn embedder(&self, ws: &Workspace, name: &str) -> Result<Arc<Embedder>> {
        let choice = crate::settings::device(ws, self.device)?;
        let mut slot = crate::slot::lock(&self.embedder);
        if let Some((device, e)) = slot.as_ref() {
            if e.name() == name && *device == choice {
                return Ok(e.clone());
            }
        }
        let (manifest, path) = models::resolve(ws, name)?;
        if manifest.role != ModelRole::Embedding
            && !tunelab_engine::bert::is_sentence_encoder(&path)
        {
            return Err(ApiError::invalid(format!(
                "`{name}` is a chat model; knowledge bases need a sentence-embedding model such as {DEFAULT_EMBEDDER}"
            )));
        }
        // The previous embedder goes first: a GPU may not hold two.
        *slot = None;
        let device = choice.open()?;
        let embedder = crate::slot::load(name, || Ok(Embedder::load(name, &path, &device)?))?;
        let embedder = Arc::new(embedder);
        *slot = Some((choice, embedder.clone()));
        Ok(embedder)
    }
}

/// A knowledge base with its files.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct KnowledgeBaseDetail {
    pub info: KnowledgeBaseInfo,
    pub sources: Vec<SourceInfo>,
}

#[derive(Debug, Clone, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct CreateKnowledgeBase {
    pub name: String,
    /// A registered embedding model; the default when absent.
    #[serde(default)]
    #[ts(optional)]
    pub embedder: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub chunking: Option<ChunkOptions>,
}

pub fn create(
    ws: &Workspace,
    cache: &KnowledgeCache,
    request: &CreateKnowledgeBase,
) -> Result<KnowledgeBaseInfo> {
    let embedder_name = request.embedder.as_deref().unwrap_or(DEFAULT_EMBEDDER);
    let embedder = cache.embedder(ws, embedder_name)?;
    let chunking = request.chunking.unwrap_or_default();
    chunking.validate(embedder.max_tokens())?;
    Ok(cache.store(ws)?.create(
        &request.name,
        embedder.name(),
        embedder.dimension(),
        chunking,
    )?)
}

pub fn list(ws: &Workspace, cache: &KnowledgeCache) -> Result<Vec<KnowledgeBaseInfo>> {
    Ok(cache.store(ws)?.list()?)
}

pub fn show(ws: &Workspace, cache: &KnowledgeCache, name: &str) -> Result<KnowledgeBaseDetail> {
    let store = cache.store(ws)?;
    Ok(KnowledgeBaseDetail {
        info: store.info(name)?,
        sources: store.sources(name)?,
    })
}

/// Takes the knowledge base's writer lock, so that one process at a time changes it.
fn write_lock(ws: &Workspace, name: &str) -> Result<JobLock> {
    tunelab_knowledge::validate_name(name)?;
    JobLock::acquire(
        &jobs::knowledge_lock_path(ws, name),
        JobKind::Knowledge,
        &format!("knowledge base `{name}`"),
    )
}

pub fn remove(ws: &Workspace, cache: &KnowledgeCache, name: &str) -> Result<()> {
    let lock = write_lock(ws, name)?;
    cache.store(ws)?.remove(name)?;
    // Gone with the knowledge base; removed while still held so no writer slips in between.
    let _ = std::fs::remove_file(lock.path());
    Ok(())
}

/// Deletes one file's chunks; returns how many were deleted.
pub fn remove_source(
    ws: &Workspace,
    cache: &KnowledgeCache,
    name: &str,
    source: &str,
) -> Result<usize> {
    let _lock = write_lock(ws, name)?;
    Ok(cache.store(ws)?.remove_source(name, source)?)
}

/// Adds files and folders with the knowledge base's own embedder.
/// Adds files and folders to the knowledge base `name`, holding its lock; `cancel` stops it,
/// leaving the knowledge base as it was before (code `cancelled`).
pub fn add(
    ws: &Workspace,
    cache: &KnowledgeCache,
    name: &str,
    paths: &[PathBuf],
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(AddProgress),
) -> Result<AddReport> {
    if paths.is_empty() {
        return Err(ApiError::invalid("give at least one file or folder to add"));
    }
    let store = cache.store(ws)?;
    let info = store.settings(name)?;
    let _lock = write_lock(ws, name)?;
    let embedder = cache.embedder(ws, &info.embedder)?;
    Ok(store.add_cancellable(name, &embedder, paths, cancel, progress)?)
}

#[derive(Debug, Clone, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct SearchRequest {
    pub kb: String,
    pub query: String,
    #[serde(default)]
    pub options: SearchOptions,
}

pub fn search(ws: &Workspace, cache: &KnowledgeCache, request: &SearchRequest) -> Result<Vec<Hit>> {
    if request.query.trim().is_empty() {
        return Err(ApiError::invalid("the search query is empty"));
    }
    let store = cache.store(ws)?;
    let info = store.settings(&request.kb)?;
    let embedder = cache.embedder(ws, &info.embedder)?;
    Ok(store.search(&request.kb, &embedder, &request.query, &request.options)?)
}

/// How many hits a grounded answer looks at before the context budget trims them.
pub const ANSWER_HITS: usize = 3;

/// A conversation made ready to answer from a knowledge base.
pub enum Grounding {
    /// The request with the sources numbered in its system message, and those sources.
    Grounded {
        request: ChatRequest,
        citations: Vec<Citation>,
    },
    /// Nothing relevant was found: the answer says so without asking the model.
    NotCovered(ChatSummary),
}

/// Retrieves the best chunks of `kb` for the last user message of `request` and numbers them in
/// a system message (replacing the conversation's own) within the context of `model`, the
/// model that will answer (`chat::chat` calls this when a request names a knowledge base).
pub fn ground(
    ws: &Workspace,
    kb_cache: &KnowledgeCache,
    model: &LoadedModel,
    request: &ChatRequest,
    kb: &str,
) -> Result<Grounding> {
    let question = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == ChatRole::User)
        .map(|m| m.content.clone())
        .ok_or_else(|| ApiError::invalid("the conversation has no user message"))?;
    let hits = search(
        ws,
        kb_cache,
        &SearchRequest {
            kb: kb.to_string(),
            query: question.clone(),
            options: SearchOptions {
                k: ANSWER_HITS,
                ..Default::default()
            },
        },
    )?;
    let context = model.transformer.config.max_position_embeddings;
    let count = |text: &str| {
        model
            .tokenizer
            .encode(text, false)
            .map(|ids| ids.len())
            .unwrap_or(text.len() / 3)
    };
    let conversation_tokens: usize = request.messages.iter().map(|m| count(&m.content) + 8).sum();
    // Room for the instructions, the conversation and the answer; the sources get the rest.
    let budget = context
        .saturating_sub(conversation_tokens + request.params.max_tokens as usize + 160)
        .min(1_500);
    let Some(prompt) = grounded_prompt(kb, &hits, budget, DEFAULT_MIN_SIMILARITY, &count) else {
        return Ok(Grounding::NotCovered(ChatSummary {
            model: request.model.clone(),
            text: not_covered(kb),
            prompt_tokens: 0,
            generated_tokens: 0,
            prefill_tokens_per_s: 0.0,
            decode_tokens_per_s: 0.0,
            stop_reason: crate::chat::StopReason::Eos,
            citations: Vec::new(),
            grounded: Some(false),
            device: None,
        }));
    };
    let mut messages = vec![ChatMessage {
        role: ChatRole::System,
        content: prompt.system,
    }];
    messages.extend(
        request
            .messages
            .iter()
            .filter(|m| m.role != ChatRole::System)
            .cloned(),
    );
    Ok(Grounding::Grounded {
        request: ChatRequest {
            messages,
            kb: None,
            ..request.clone()
        },
        citations: prompt.citations,
    })
}
