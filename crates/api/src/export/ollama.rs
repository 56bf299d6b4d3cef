//! Ollama Modelfiles: the GGUF file, a TEMPLATE in Ollama's Go template language that renders
//! the prompt the model's own chat template renders, the default system text that template
//! inserts, and stop parameters for the end of a turn. Tunelab writes templates for the chat
//! formats of the models it loads (ChatML: SmolLM2, Qwen2; Llama 3), and checks them by
//! rendering a conversation the way Ollama renders them.

use std::path::Path;

use tunelab_engine::{LoadedModel, Message};

use super::check::{end_of_turn, CheckItem, CheckKind};
use crate::error::{ApiError, Result};

/// A chat format Tunelab writes an Ollama template for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `<|im_start|>role\ncontent<|im_end|>\n` (SmolLM2, Qwen2).
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` (Llama 3).
    Llama3,
}

impl Family {
    fn detect(template: &str) -> Option<Family> {
        if template.contains("<|im_start|>") {
            Some(Family::ChatMl)
        } else if template.contains("<|start_header_id|>") {
            Some(Family::Llama3)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::ChatMl => "ChatML",
            Family::Llama3 => "Llama 3",
        }
    }

    /// The TEMPLATE, over Ollama's `.Messages` (Ollama puts SYSTEM first when a conversation
    /// brings no system message of its own).
    fn go_template(self) -> &'static str {
        match self {
            Family::ChatMl => "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
            Family::Llama3 => "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
        }
    }

    /// The prompt Ollama renders from [`go_template`](Self::go_template) for `messages`.
    fn render(self, messages: &[Message]) -> String {
        let mut out = String::new();
        for m in messages {
            match self {
                Family::ChatMl => {
                    out += &format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content)
                }
                Family::Llama3 => {
                    out += &format!(
                        "<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>",
                        m.role, m.content
                    )
                }
            }
        }
        out += match self {
            Family::ChatMl => "<|im_start|>assistant\n",
            Family::Llama3 => "<|start_header_id|>assistant<|end_header_id|>\n\n",
        };
        out
    }

    /// The system text the chat template adds when a conversation has none, read from a
    /// rendering of a conversation without one.
    fn default_system(self, rendered: &str) -> Option<String> {
        let (open, close) = match self {
            Family::ChatMl => ("<|im_start|>system\n", "<|im_end|>"),
            Family::Llama3 => (
                "<|start_header_id|>system<|end_header_id|>\n\n",
                "<|eot_id|>",
            ),
        };
        let start = rendered.find(open)? + open.len();
        let end = rendered[start..].find(close)? + start;
        Some(rendered[start..end].to_string())
    }
}

/// The model's chat template rendered for `messages`, without a beginning-of-text marker the
/// template writes itself (`{{ bos_token }}`, as Llama 3's does): llama.cpp and Ollama add that
/// token on their own.
fn jinja(model: &LoadedModel, messages: &[Message]) -> Result<String> {
    let text = model.render_chat(messages)?;
    let writes_bos = model.template.source().contains("bos_token");
    Ok(match model.tokenizer.bos_token() {
        Some(bos) if writes_bos && !bos.is_empty() => {
            text.strip_prefix(bos).unwrap_or(&text).to_string()
        }
        _ => text,
    })
}

fn family(model: &LoadedModel) -> Result<Family> {
    Family::detect(model.template.source()).ok_or_else(|| {
        ApiError::invalid(
            "Tunelab writes Ollama templates for ChatML (SmolLM2, Qwen2) and Llama 3 chat formats, and this model's chat template is neither: export the GGUF without --ollama (Ollama reads the chat template inside it for the formats it knows)",
        )
    })
}

/// The stop strings: the token that ends a turn and every end-of-sequence token.
fn stops(model: &LoadedModel) -> Result<Vec<String>> {
    let mut stops = Vec::new();
    if let Some((_, text)) = end_of_turn(model)? {
        stops.push(text);
    }
    for id in &model.summary.config.eos_token_ids {
        if let Some(text) = model.tokenizer.id_to_token(*id) {
            if !stops.contains(&text) {
                stops.push(text);
            }
        }
    }
    Ok(stops)
}

/// A Modelfile for the GGUF file `gguf` (a name in the same folder).
pub(crate) fn modelfile(model: &LoadedModel, gguf: &str) -> Result<String> {
    let family = family(model)?;
    let without_system = jinja(model, &[Message::new("user", "Hello")])?;
    let mut text = format!("# Written by Tunelab. Make an Ollama model of it with: ollama create NAME -f Modelfile\nFROM ./{gguf}\n\nTEMPLATE \"\"\"{}\"\"\"\n", family.go_template());
    if let Some(system) = family.default_system(&without_system) {
        text += &format!("\nSYSTEM \"\"\"{system}\"\"\"\n");
    }
    text += "\n";
    for stop in stops(model)? {
        text += &format!("PARAMETER stop \"{}\"\n", stop.replace('"', "\\\""));
    }
    Ok(text)
}

/// The parts of a Modelfile the check reads.
struct Parsed {
    template: Option<String>,
    system: Option<String>,
    stops: Vec<String>,
}

fn parse(text: &str) -> Parsed {
    let block = |key: &str| -> Option<String> {
        let open = format!("{key} \"\"\"");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find("\"\"\"")? + start;
        Some(text[start..end].to_string())
    };
    let stops = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("PARAMETER stop "))
        .map(|v| v.trim().trim_matches('"').replace("\\\"", "\""))
        .collect();
    Parsed {
        template: block("TEMPLATE"),
        system: block("SYSTEM"),
        stops,
    }
}

/// Renders a conversation with and without a system message through the Modelfile as Ollama
/// would, compares with the chat template, and checks the stops include the end of a turn.
pub(crate) fn check(
    model: &LoadedModel,
    path: &Path,
    end_of_turn: Option<&(u32, String)>,
) -> Result<CheckItem> {
    let text = std::fs::read_to_string(path).map_err(|e| ApiError::io(path, e))?;
    let parsed = parse(&text);
    let fail = |detail: String| CheckItem {
        check: CheckKind::Ollama,
        passed: false,
        detail,
    };
    let family = family(model)?;
    if parsed.template.as_deref() != Some(family.go_template()) {
        return Ok(fail(format!(
            "its TEMPLATE is not the {} template Tunelab writes for this model's chat format",
            family.name()
        )));
    }
    let conversations = [
        vec![
            Message::new("system", "Be brief."),
            Message::new("user", "Hi"),
            Message::new("assistant", "Hello!"),
            Message::new("user", "Name a colour."),
        ],
        vec![
            Message::new("user", "Hi"),
            Message::new("assistant", "Hello!"),
            Message::new("user", "Name a colour."),
        ],
    ];
    for conversation in conversations {
        // Ollama puts SYSTEM first when the conversation has no system message.
        let mut messages = conversation.clone();
        if let (Some(system), false) = (&parsed.system, messages[0].role == "system") {
            messages.insert(0, Message::new("system", system.clone()));
        }
        let (expected, got) = (jinja(model, &conversation)?, family.render(&messages));
        if expected != got {
            return Ok(fail(format!(
                "Ollama would render {got:?} where the chat template renders {expected:?}"
            )));
        }
    }
    if let Some((_, token)) = end_of_turn {
        if !parsed.stops.contains(token) {
            return Ok(fail(format!(
                "its stop parameters {:?} leave out {token}, which ends a turn: Ollama would generate past the answer",
                parsed.stops
            )));
        }
    }
    Ok(CheckItem {
        check: CheckKind::Ollama,
        passed: true,
        detail: format!(
            "its {} template renders conversations with and without a system message as the chat template does; it stops at {}",
            family.name(),
            parsed.stops.join(", ")
        ),
    })
}
