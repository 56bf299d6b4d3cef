//! Chat with a registered model: one answer at a time per conversation, streamed as events,
//! cancellable between tokens. Loaded models stay in memory for the next message.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use tunelab_engine::{LoadedModel, Message, Precision, SamplingParams};
use tunelab_knowledge::prompt::Citation;

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
    /// Answer from this knowledge base, citing its sources (see `knowledge::chat_with_kb`).
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

/// Models kept in memory between messages: the most recently used one (a home machine rarely
/// has room for two), with the adapter it was loaded with.
#[derive(Default)]
pub struct ModelCache {
    loaded: Mutex<Option<CachedModel>>,
}

/// A loaded model with the name, adapter and device it was asked for.
struct CachedModel {
    name: String,
    adapter: Option<PathBuf>,
    device: tunelab_engine::DeviceChoice,
    model: Arc<LoadedModel>,
}

impl ModelCache {
    /// The model on the workspace's device.
    pub fn get(&self, ws: &Workspace, name: &str) -> Result<Arc<LoadedModel>> {
        self.get_with_adapter(ws, name, None, None)
    }

    /// The model with a PEFT adapter folder attached (LoRA unmerged, or a soft prompt), or the
    /// model folder a full fine-tuning run saved, on `device` (the workspace's setting when
    /// `None`).
    pub fn get_with_adapter(
        &self,
        ws: &Workspace,
        name: &str,
        adapter: Option<&Path>,
        device: Option<tunelab_engine::DeviceChoice>,
    ) -> Result<Arc<LoadedModel>> {
        let choice = crate::settings::device(ws, device)?;
        let mut slot = self
            .loaded
            .lock()
            .map_err(|_| ApiError::new("internal", "model cache poisoned"))?;
        if let Some(cached) = slot.as_ref() {
            if cached.name == name
                && cached.adapter.as_deref() == adapter
                && cached.device == choice
            {
                return Ok(cached.model.clone());
            }
        }
        // Free the previous model before loading the next.
        *slot = None;
        let device = choice.open()?;
        let model = load_model(ws, name, adapter, &device)?;
        let model = Arc::new(model);
        *slot = Some(CachedModel {
            name: name.to_string(),
            adapter: adapter.map(Path::to_path_buf),
            device: choice,
            model: model.clone(),
        });
        Ok(model)
    }
}

/// Loads the model `name` as chat holds it on `device`, with `adapter` (a PEFT LoRA or
/// prompt-tuning folder, or the model folder a full fine-tuning or pretraining run saved,
/// which answers in the base's place): on the CPU as stored (GGUF blocks stay quantized,
/// 16-bit tensors 16-bit), on a GPU in 16 bits.
pub(crate) fn load_model(
    ws: &Workspace,
    name: &str,
    adapter: Option<&Path>,
    device: &tunelab_engine::Device,
) -> Result<LoadedModel> {
    let full_model = adapter.filter(|dir| {
        dir.join("config.json").is_file() && !dir.join("adapter_config.json").is_file()
    });
    let path = match full_model {
        Some(dir) => dir.to_path_buf(),
        None => {
            let (manifest, path) = models::resolve(ws, name)?;
            if manifest.role != models::ModelRole::Chat {
                return Err(ApiError::invalid(format!(
                    "`{name}` is an embedding model; choose a chat model"
                )));
            }
            path
        }
    };
    let precision = match device.is_cpu() {
        true => Precision::Native,
        false => Precision::half_for(device),
    };
    let mut model = tunelab_engine::load(&path, precision, device)?;
    if let Some(dir) = adapter.filter(|_| full_model.is_none()) {
        use tunelab_train::methods::{lora, peft_type, soft_prompt};
        match peft_type(dir)?.as_str() {
            "LORA" => {
                lora::load_peft(dir, &mut model.transformer)?;
            }
            "PROMPT_TUNING" => {
                soft_prompt::load_peft(dir, &mut model.transformer)?;
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "{}: peft_type {other} is not supported; Tunelab reads LORA and PROMPT_TUNING adapters",
                    dir.join("adapter_config.json").display()
                )))
            }
        }
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

/// The model `request` is answered by (its adapter attached) and the token ids of the prompt it
/// is given: the conversation, framed by the request's template, through the chat template.
pub fn prepare(
    ws: &Workspace,
    cache: &ModelCache,
    request: &ChatRequest,
) -> Result<(Arc<LoadedModel>, Vec<u32>)> {
    let messages = match &request.template {
        Some(t) => engine_messages(
            &crate::prompts::load(ws, &t.name, t.version)?
                .template
                .frame(&request.messages)?,
        )?,
        None => engine_messages(&request.messages)?,
    };
    let adapter = request
        .adapter
        .as_deref()
        .map(|a| crate::train::resolve_adapter(ws, a))
        .transpose()?;
    let model = cache.get_with_adapter(ws, &request.model, adapter.as_deref(), request.device)?;
    let prompt = model.render_chat(&messages)?;
    let ids = model.tokenizer.encode(&prompt, false)?;
    Ok((model, ids))
}

/// Answers the conversation in `request`, sending events to `on_event`; `cancel` stops it
/// between two tokens.
pub fn chat(
    ws: &Workspace,
    cache: &ModelCache,
    request: &ChatRequest,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(ChatEvent),
) -> Result<ChatSummary> {
    let (model, ids) = prepare(ws, cache, request)?;
    answer_prepared(&model, &ids, request, cancel, on_event)
}

/// Answers with `model` from the prompt `ids` that [`prepare`] made for `request`.
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
