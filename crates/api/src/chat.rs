//! Chat with a registered model: one answer at a time per conversation, streamed as events,
//! cancellable between tokens. Loaded models stay in memory for the next message.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use tunelab_engine::{LoadedModel, Message, Precision, SamplingParams};
use tunelab_knowledge::prompt::Citation;
use tunelab_train::Artifact;

use crate::error::{ApiError, Result};
use crate::models;
use crate::workspace::Workspace;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct GenerationParams {
    pub temperature: f32,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub repetition_penalty: f32,
    #[ts(type = "number | null")]
    pub seed: Option<u64>,
    pub max_tokens: u32,
    pub stop: Vec<String>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        let d = SamplingParams::default();
        GenerationParams {
            temperature: d.temperature,
            top_k: d.top_k.map(|k| k as u32),
            top_p: d.top_p,
            repetition_penalty: d.repetition_penalty,
            seed: None,
            max_tokens: d.max_tokens as u32,
            stop: Vec::new(),
        }
    }
}

impl GenerationParams {
    fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k.map(|k| k as usize),
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            max_tokens: self.max_tokens as usize,
            stop: self.stop.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ChatRequest {
    pub model: String,
    /// A trained adapter to answer with: a run id, a run folder or a PEFT adapter folder.
    #[serde(default)]
    #[ts(optional)]
    pub adapter: Option<String>,
    /// Answer from this knowledge base, citing its sources (see [`chat`] and `knowledge::ground`).
    #[serde(default)]
    #[ts(optional)]
    pub kb: Option<String>,
    /// A saved prompt template that frames the conversation (see `prompts`).
    #[serde(default)]
    #[ts(optional)]
    pub template: Option<crate::prompts::TemplateRef>,
    pub messages: Vec<ChatMessage>,
    pub params: GenerationParams,
    /// Where to answer ("auto", "cpu", "cuda:N"); the workspace's device setting when absent.
    #[serde(default)]
    #[ts(optional, type = "string")]
    pub device: Option<tunelab_engine::DeviceChoice>,
}

/// What streams to the front end while an answer is generated.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum ChatEvent {
    /// The prompt is processed; text follows.
    PrefillDone {
        prompt_tokens: u32,
    },
    Token {
        text: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub enum StopReason {
    Eos,
    StopString,
    MaxTokens,
    ContextFull,
    /// The answer started repeating itself and was stopped.
    Repetition,
    Cancelled,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct ChatSummary {
    pub model: String,
    pub text: String,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    pub stop_reason: StopReason,
    /// With a knowledge base: the numbered sources the prompt gave the model, in order.
    pub citations: Vec<Citation>,
    /// With a knowledge base: whether relevant sources were found (when not, the answer says
    /// so and no model was asked). `None` for a plain chat.
    pub grounded: Option<bool>,
    /// Where the model answered: "cpu" or "cuda:N"; null when no model was asked.
    pub device: Option<String>,
}

/// Models kept in memory between messages, each with the adapter and device it was loaded
/// with: the last [`KEEP_MODELS`] used, so that two chats compared side by side answer without
/// reloading, as long as the next model fits beside the one kept. Otherwise only the newest
/// stays.
#[derive(Default)]
pub struct ModelCache {
    /// Least recently used first.
    loaded: Mutex<Vec<CachedModel>>,
}

/// How many models the cache holds at most.
pub const KEEP_MODELS: usize = 2;

/// A loaded model with the name, adapter and device it was asked for.
struct CachedModel {
    name: String,
    adapter: Option<Artifact>,
    device: tunelab_engine::DeviceChoice,
    model: Arc<LoadedModel>,
}

impl ModelCache {
    /// The model on the workspace's device.
    pub fn get(&self, ws: &Workspace, name: &str) -> Result<Arc<LoadedModel>> {
        self.get_with_adapter(ws, name, None, None)
    }

    /// The model with a trained result: a PEFT adapter attached (LoRA unmerged, or a soft
    /// prompt), or the model folder a full fine-tuning run saved in the base's place; on
    /// `device` (the workspace's setting when `None`).
    pub fn get_with_adapter(
        &self,
        ws: &Workspace,
        name: &str,
        adapter: Option<&Artifact>,
        device: Option<tunelab_engine::DeviceChoice>,
    ) -> Result<Arc<LoadedModel>> {
        let choice = crate::settings::device(ws, device)?;
        let mut slot = crate::slot::lock(&self.loaded);
        let hit = slot.iter().position(|cached| {
            cached.name == name && cached.adapter.as_ref() == adapter && cached.device == choice
        });
        if let Some(index) = hit {
            let cached = slot.remove(index);
            let model = cached.model.clone();
            slot.push(cached);
            return Ok(model);
        }
        // Room for the new one: the least recently used go.
        let excess = (slot.len() + 1).saturating_sub(KEEP_MODELS);
        slot.drain(..excess);
        let device = choice.open()?;
        let path = model_path(ws, name, adapter)?;
        let summary = tunelab_engine::inspect(&path)?;
        let on_gpu = !device.is_cpu();
        let need = crate::plan::chat_memory(&summary, on_gpu, LOAD_CONTEXT, false);
        let check = || {
            let free = crate::plan::chat_free_memory(&device);
            crate::plan::check_chat(name, &summary, on_gpu, &need, free)
        };
        if !slot.is_empty() && check().is_err() {
            // No room beside the model kept: it goes, and the check is made without it.
            slot.clear();
        }
        check()?;
        let model = crate::slot::load(name, || load_model(ws, name, adapter, &device))?;
        let model = Arc::new(model);
        slot.push(CachedModel {
            name: name.to_string(),
            adapter: adapter.cloned(),
            device: choice,
            model: model.clone(),
        });
        Ok(model)
    }

    /// Lets go of every model kept, so that their memory is free for something bigger (a
    /// training run); an answer being generated keeps its model until it ends.
    pub fn release(&self) {
        crate::slot::lock(&self.loaded).clear();
    }
}

/// The context a model is checked for before it loads: a conversation of this many tokens
/// must fit beside its weights. Each answer checks its own context again.
const LOAD_CONTEXT: usize = 2048;

/// Below this, an answer's KV cache is not checked against free memory (reading it costs more
/// than the answer risks).
const KV_CHECK_FROM: u64 = 64 << 20;

/// The files chat loads for `name` with `adapter`: the model's, or the model folder a full
/// fine-tuning or pretraining run saved in its place.
fn model_path(ws: &Workspace, name: &str, adapter: Option<&Artifact>) -> Result<PathBuf> {
    if let Some(dir) = adapter.and_then(Artifact::replaces_base) {
        return Ok(dir.to_path_buf());
    }
    let (manifest, path) = models::resolve(ws, name)?;
    if manifest.role != models::ModelRole::Chat {
        return Err(ApiError::invalid(format!(
            "`{name}` is an embedding model; choose a chat model"
        )));
    }
    Ok(path)
}

/// Loads the model `name` as chat holds it on `device`, with `adapter` (a PEFT LoRA or
/// prompt-tuning folder attached, or the model folder a full fine-tuning or pretraining run
/// saved, which answers in the base's place): on the CPU as stored (GGUF blocks stay quantized,
/// 16-bit tensors 16-bit), on a GPU in 16 bits.
pub(crate) fn load_model(
    ws: &Workspace,
    name: &str,
    adapter: Option<&Artifact>,
    device: &tunelab_engine::Device,
) -> Result<LoadedModel> {
    let path = model_path(ws, name, adapter)?;
    let precision = match device.is_cpu() {
        true => Precision::Native,
        false => Precision::half_for(device),
    };
    let mut model = tunelab_engine::load(&path, precision, device)?;
    if let Some(artifact) = adapter {
        artifact.attach(&mut model.transformer)?;
    }
    Ok(model)
}

pub(crate) fn engine_messages(messages: &[ChatMessage]) -> Result<Vec<Message>> {
    if !messages.iter().any(|m| m.role == ChatRole::User) {
        return Err(ApiError::invalid("the conversation has no user message"));
    }
    Ok(messages
        .iter()
        .map(|m| {
            let role = match m.role {
                ChatRole::System => "system",
                ChatRole::User => "user",
                ChatRole::Assistant => "assistant",
            };
            Message::new(role, m.content.clone())
        })
        .collect())
}

/// The caches a request is answered through: the loaded model (with its trained result) and
/// the knowledge store with its embedder. The app holds one of each, so chat, evaluations and
/// comparisons share what is loaded.
pub struct Caches<'a> {
    pub models: &'a ModelCache,
    pub knowledge: &'a crate::knowledge::KnowledgeCache,
}

/// The model `request` is answered by: its base, with the trained result `request.adapter`
/// names, which is resolved here, once per request.
pub fn model_for(
    ws: &Workspace,
    cache: &ModelCache,
    request: &ChatRequest,
) -> Result<Arc<LoadedModel>> {
    let artifact = request
        .adapter
        .as_deref()
        .map(|a| crate::train::resolve_artifact(ws, a))
        .transpose()?;
    cache.get_with_adapter(ws, &request.model, artifact.as_ref(), request.device)
}

/// The token ids of the prompt `model` is given for `request`: the conversation, framed by the
/// request's template, through the model's chat template.
pub fn prompt_ids(ws: &Workspace, model: &LoadedModel, request: &ChatRequest) -> Result<Vec<u32>> {
    let messages = match &request.template {
        Some(t) => engine_messages(
            &crate::prompts::load(ws, &t.name, t.version)?
                .template
                .frame(&request.messages)?,
        )?,
        None => engine_messages(&request.messages)?,
    };
    let prompt = model.render_chat(&messages)?;
    Ok(model.tokenizer.encode(&prompt, false)?)
}

/// Answers the conversation in `request`, sending events to `on_event`; `cancel` stops it
/// between two tokens. Every front end asks through here: with `request.kb` the question is
/// first grounded in that knowledge base (`knowledge::ground`), and the answer cites the
/// sources it was given, or says the knowledge base does not cover it.
pub fn chat(
    ws: &Workspace,
    caches: &Caches,
    request: &ChatRequest,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(ChatEvent),
) -> Result<ChatSummary> {
    let model = model_for(ws, caches.models, request)?;
    let (asked, citations) = match request.kb.as_deref() {
        None => (None, None),
        Some(kb) => match crate::knowledge::ground(ws, caches.knowledge, &model, request, kb)? {
            crate::knowledge::Grounding::NotCovered(summary) => {
                on_event(ChatEvent::Token {
                    text: summary.text.clone(),
                });
                return Ok(summary);
            }
            crate::knowledge::Grounding::Grounded { request, citations } => {
                (Some(request), Some(citations))
            }
        },
    };
    let asked = asked.as_ref().unwrap_or(request);
    let ids = prompt_ids(ws, &model, asked)?;
    check_context(
        &request.model,
        &model,
        ids.len() + request.params.max_tokens as usize,
    )?;
    let mut summary = answer_prepared(&model, &ids, asked, cancel, on_event)?;
    if let Some(citations) = citations {
        summary.citations = citations;
        summary.grounded = Some(true);
    }
    Ok(summary)
}

/// Refuses an answer whose KV cache at `context` tokens would not fit in the free memory of
/// the loaded `model`'s device, saying what would.
fn check_context(name: &str, model: &LoadedModel, context: usize) -> Result<()> {
    let device = model.transformer.device();
    let need = crate::plan::chat_memory(&model.summary, !device.is_cpu(), context, true);
    if need.kv_cache_bytes < KV_CHECK_FROM {
        return Ok(());
    }
    let free = crate::plan::chat_free_memory(device);
    crate::plan::check_chat(name, &model.summary, !device.is_cpu(), &need, free)
}

/// Answers with `model` from the prompt `ids` that [`prompt_ids`] made for `request`.
pub fn answer_prepared(
    model: &LoadedModel,
    ids: &[u32],
    request: &ChatRequest,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(ChatEvent),
) -> Result<ChatSummary> {
    let mut first = true;
    let prompt_tokens = ids.len() as u32;
    let out = tunelab_engine::generate(
        &model.transformer,
        &model.tokenizer,
        ids,
        &model.eos_ids,
        &request.params.sampling(),
        &mut |text| {
            if first {
                on_event(ChatEvent::PrefillDone { prompt_tokens });
                first = false;
            }
            on_event(ChatEvent::Token {
                text: text.to_string(),
            });
            if cancel.load(Ordering::Relaxed) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )?;
    Ok(ChatSummary {
        device: Some(tunelab_engine::device_label(model.transformer.device())),
        model: request.model.clone(),
        text: out.text.clone(),
        prompt_tokens,
        generated_tokens: out.token_ids.len() as u32,
        prefill_tokens_per_s: out.prefill_tokens_per_second(),
        decode_tokens_per_s: out.decode_tokens_per_second(),
        stop_reason: match out.stop_reason {
            tunelab_engine::StopReason::Eos => StopReason::Eos,
            tunelab_engine::StopReason::StopString => StopReason::StopString,
            tunelab_engine::StopReason::MaxTokens => StopReason::MaxTokens,
            tunelab_engine::StopReason::ContextFull => StopReason::ContextFull,
            tunelab_engine::StopReason::Repetition => StopReason::Repetition,
            tunelab_engine::StopReason::Cancelled => StopReason::Cancelled,
        },
        citations: Vec::new(),
        grounded: None,
    })
}
