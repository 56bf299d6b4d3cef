//! Prompt templates: system text, a user message with `{{variables}}`, and few-shot examples,
//! rendered through a model's own chat template with the token count, and saved as numbered
//! versions under `prompts/<name>/` (a save never overwrites an earlier version).
//!
//! In chat a template frames every turn: its system text and examples come first, and the
//! user's message fills `{{input}}` (or follows the template's user text when it has none).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::chat::{ChatMessage, ChatRole, ModelCache};
use crate::error::{ApiError, ErrorCode, Result};
use crate::workspace::{write_atomic, Workspace};

/// The variable chat fills with what the user typed.
pub const INPUT_VARIABLE: &str = "input";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct PromptTemplate {
    /// Instructions sent as the system message; empty for none.
    #[serde(default)]
    pub system: String,
    /// The user's message, with `{{name}}` where a variable's value goes.
    pub user: String,
    /// Values to try the template with (and to use in chat for all but `input`).
    #[serde(default)]
    pub variables: Vec<PromptVariable>,
    /// Worked examples sent before the real message, as earlier turns of the conversation.
    #[serde(default)]
    pub examples: Vec<FewShotExample>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct PromptVariable {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct FewShotExample {
    pub user: String,
    pub assistant: String,
}

/// A template as the model will see it.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct RenderedPrompt {
    /// The conversation the template makes (system, examples, the filled user message).
    pub messages: Vec<ChatMessage>,
    /// Those messages through the model's chat template, ready for the answer.
    pub text: String,
    pub tokens: u32,
    pub context_length: u32,
    /// Variables with a value that no text uses.
    pub unused: Vec<String>,
}

/// One saved version.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct SavedPrompt {
    pub name: String,
    pub version: u32,
    #[ts(type = "number")]
    pub saved_unix: i64,
    /// What changed, in the user's words.
    #[serde(default)]
    pub note: String,
    pub template: PromptTemplate,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct PromptVersion {
    pub version: u32,
    #[ts(type = "number")]
    pub saved_unix: i64,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct PromptSummary {
    pub name: String,
    /// Oldest first.
    pub versions: Vec<PromptVersion>,
}

/// Which saved template a chat uses (the latest version when `version` is absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct TemplateRef {
    pub name: String,
    #[serde(default)]
    #[ts(optional)]
    pub version: Option<u32>,
}

/// Where `{{name}}` placeholders are, or the first malformed one.
fn placeholders(field: &str, text: &str) -> Result<Vec<(String, std::ops::Range<usize>)>> {
    let mut out = Vec::new();
    let mut rest = 0;
    while let Some(open) = text[rest..].find("{{").map(|i| i + rest) {
        let line = text[..open].matches('\n').count() + 1;
        let Some(close) = text[open + 2..].find("}}").map(|i| i + open + 2) else {
            return Err(ApiError::invalid(format!(
                "{field}, line {line}: `{{{{` is not closed with `}}}}`"
            )));
        };
        let name = text[open + 2..close].trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ApiError::invalid(format!(
                "{field}, line {line}: `{}` is not a variable name (letters, digits, `_` and `-`)",
                &text[open..close + 2]
            )));
        }
        out.push((name.to_string(), open..close + 2));
        rest = close + 2;
    }
    Ok(out)
}

/// `text` with every `{{name}}` replaced by its value; a name without one is an error naming
/// `field` and the line.
fn fill(field: &str, text: &str, values: &BTreeMap<&str, &str>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (name, range) in placeholders(field, text)? {
        let line = text[..range.start].matches('\n').count() + 1;
        let value = values.get(name.as_str()).ok_or_else(|| {
            ApiError::invalid(format!(
                "{field}, line {line}: {{{{{name}}}}} has no value; add `{name}` under variables"
            ))
        })?;
        out.push_str(&text[last..range.start]);
        out.push_str(value);
        last = range.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

impl PromptTemplate {
    /// The texts that may hold placeholders, with the names errors use for them.
    fn fields(&self) -> Vec<(String, &str)> {
        let mut fields = vec![
            ("system".to_string(), self.system.as_str()),
            ("user".to_string(), self.user.as_str()),
        ];
        for (i, e) in self.examples.iter().enumerate() {
            fields.push((format!("example {} user", i + 1), e.user.as_str()));
            fields.push((format!("example {} answer", i + 1), e.assistant.as_str()));
        }
        fields
    }

    /// Every variable the texts use, in order of first use.
    pub fn used_variables(&self) -> Result<Vec<String>> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (field, text) in self.fields() {
            for (name, _) in placeholders(&field, text)? {
                if seen.insert(name.clone()) {
                    out.push(name);
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.user.trim().is_empty() {
            return Err(ApiError::invalid(
                "user: the template has no user message; write one (it can be just {{input}})",
            ));
        }
        for (i, e) in self.examples.iter().enumerate() {
            if e.user.trim().is_empty() || e.assistant.trim().is_empty() {
                return Err(ApiError::invalid(format!(
                    "example {}: an example needs both a user message and an answer",
                    i + 1
                )));
            }
        }
        let mut names = BTreeSet::new();
        for v in &self.variables {
            if !names.insert(v.name.as_str()) {
                return Err(ApiError::invalid(format!(
                    "variables: `{}` is listed twice",
                    v.name
                )));
            }
        }
        Ok(())
    }

    /// The template's test values, with `extra` taking precedence.
    fn values<'a>(&'a self, extra: &'a BTreeMap<String, String>) -> BTreeMap<&'a str, &'a str> {
        let mut all: BTreeMap<&str, &str> = self
            .variables
            .iter()
            .map(|v| (v.name.as_str(), v.value.as_str()))
            .collect();
        for (k, v) in extra {
            all.insert(k, v);
        }
        all
    }

    /// The conversation this template makes, with `values` filled in (a value given there wins
    /// over the template's test value).
    pub fn messages(&self, values: &BTreeMap<String, String>) -> Result<Vec<ChatMessage>> {
        self.check()?;
        let all = self.values(values);
        let fill = |field: &str, text: &str| fill(field, text, &all);
        let mut messages = Vec::new();
        if !self.system.trim().is_empty() {
            messages.push(ChatMessage {
                role: ChatRole::System,
                content: fill("system", &self.system)?,
            });
        }
        for (i, e) in self.examples.iter().enumerate() {
            messages.push(ChatMessage {
                role: ChatRole::User,
                content: fill(&format!("example {} user", i + 1), &e.user)?,
            });
            messages.push(ChatMessage {
                role: ChatRole::Assistant,
                content: fill(&format!("example {} answer", i + 1), &e.assistant)?,
            });
        }
        messages.push(ChatMessage {
            role: ChatRole::User,
            content: fill("user", &self.user)?,
        });
        Ok(messages)
    }

    /// Frames a chat: the template's system text and examples first, then each user turn put
    /// through the template's user text as `{{input}}` (or after it, when it has no
    /// `{{input}}`). Assistant turns pass through unchanged; a system message of the chat's
    /// own is appended to the template's.
    pub fn frame(&self, conversation: &[ChatMessage]) -> Result<Vec<ChatMessage>> {
        let uses_input = self.used_variables()?.iter().any(|v| v == INPUT_VARIABLE);
        let mut head = self.messages(&BTreeMap::from([(
            INPUT_VARIABLE.to_string(),
            String::new(),
        )]))?;
        // The last message is the template's own user turn: it is re-filled per chat turn.
        head.pop();
        let extra_system: Vec<&str> = conversation
            .iter()
            .filter(|m| m.role == ChatRole::System)
            .map(|m| m.content.as_str())
            .collect();
        if !extra_system.is_empty() {
            match head.first_mut() {
                Some(first) if first.role == ChatRole::System => {
                    for s in &extra_system {
                        first.content.push_str("\n\n");
                        first.content.push_str(s);
                    }
                }
                _ => head.insert(
                    0,
                    ChatMessage {
                        role: ChatRole::System,
                        content: extra_system.join("\n\n"),
                    },
                ),
            }
        }
        // Only the user text is filled per turn; without {{input}} it is the same every time.
        let fixed = BTreeMap::new();
        let fixed = self.values(&fixed);
        let intro = if uses_input {
            None
        } else {
            Some(fill("user", &self.user, &fixed)?)
        };
        for m in conversation {
            match m.role {
                ChatRole::System => {}
                ChatRole::Assistant => head.push(m.clone()),
                ChatRole::User => {
                    let content = match &intro {
                        Some(intro) => format!("{intro}\n\n{}", m.content),
                        None => {
                            let mut values = fixed.clone();
                            values.insert(INPUT_VARIABLE, &m.content);
                            fill("user", &self.user, &values)?
                        }
                    };
                    head.push(ChatMessage {
                        role: ChatRole::User,
                        content,
                    });
                }
            }
        }
        Ok(head)
    }
}

/// Renders `template` with its test values through `model`'s chat template.
pub fn render(
    ws: &Workspace,
    cache: &ModelCache,
    model: &str,
    template: &PromptTemplate,
) -> Result<RenderedPrompt> {
    let messages = template.messages(&BTreeMap::new())?;
    let loaded = cache.get(ws, model)?;
    let engine = crate::chat::engine_messages(&messages)?;
    let text = loaded.render_chat(&engine)?;
    let tokens = loaded.tokenizer.encode(&text, false)?.len() as u32;
    let used: BTreeSet<String> = template.used_variables()?.into_iter().collect();
    Ok(RenderedPrompt {
        messages,
        text,
        tokens,
        context_length: loaded.transformer.config.max_position_embeddings as u32,
        unused: template
            .variables
            .iter()
            .filter(|v| !used.contains(&v.name))
            .map(|v| v.name.clone())
            .collect(),
    })
}

fn prompts_dir(ws: &Workspace) -> PathBuf {
    ws.root().join("prompts")
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "name: `{name}` is not a usable template name: use 1 to 64 letters, digits, '-', '_' and '.'"
        )))
    }
}

fn version_file(dir: &Path, version: u32) -> PathBuf {
    dir.join(format!("v{version:04}.json"))
}

/// The version numbers saved under `dir`, ascending.
fn versions_in(dir: &Path) -> Result<Vec<u32>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ApiError::io(dir, e)),
    };
    let mut out: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_prefix('v')?.strip_suffix(".json")?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

fn read_version(dir: &Path, version: u32) -> Result<SavedPrompt> {
    let path = version_file(dir, version);
    let text = std::fs::read_to_string(&path).map_err(|e| ApiError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        ApiError::new(
            ErrorCode::BadPrompt,
            format!("{}: line {}: {e}", path.display(), e.line()),
        )
    })
}

/// Saves `template` as the next version of `name`; earlier versions stay as they were.
pub fn save(
    ws: &Workspace,
    name: &str,
    note: &str,
    template: &PromptTemplate,
) -> Result<SavedPrompt> {
    check_name(name)?;
    template.check()?;
    template.used_variables()?;
    let dir = prompts_dir(ws).join(name);
    let version = versions_in(&dir)?.last().copied().unwrap_or(0) + 1;
    let saved = SavedPrompt {
        name: name.to_string(),
        version,
        saved_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
        note: note.trim().to_string(),
        template: template.clone(),
    };
    let path = version_file(&dir, version);
    if path.exists() {
        return Err(ApiError::new(
            ErrorCode::Exists,
            format!("{} appeared while saving; save again", path.display()),
        ));
    }
    let json = serde_json::to_string_pretty(&saved).expect("a prompt serializes");
    write_atomic(&path, format!("{json}\n").as_bytes())?;
    Ok(saved)
}

/// Every saved template with its versions, by name.
pub fn list(ws: &Workspace) -> Result<Vec<PromptSummary>> {
    let root = prompts_dir(ws);
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ApiError::io(&root, e)),
    };
    let mut out = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().to_string();
        if check_name(&name).is_err() || !entry.path().is_dir() {
            continue;
        }
        let mut versions = Vec::new();
        for v in versions_in(&entry.path())? {
            // An unreadable version is skipped here; loading it names the file and the line.
            if let Ok(saved) = read_version(&entry.path(), v) {
                versions.push(PromptVersion {
                    version: v,
                    saved_unix: saved.saved_unix,
                    note: saved.note,
                });
            }
        }
        if !versions.is_empty() {
            out.push(PromptSummary { name, versions });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A saved version (the latest when `version` is `None`).
pub fn load(ws: &Workspace, name: &str, version: Option<u32>) -> Result<SavedPrompt> {
    check_name(name)?;
    let dir = prompts_dir(ws).join(name);
    let versions = versions_in(&dir)?;
    let version = match version {
        Some(v) if versions.contains(&v) => v,
        Some(v) => {
            return Err(ApiError::not_found(format!(
                "template `{name}` has no version {v} (saved: {})",
                versions
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
        None => *versions
            .last()
            .ok_or_else(|| ApiError::not_found(format!("no template named `{name}`")))?,
    };
    read_version(&dir, version)
}

/// Deletes a template and all its versions.
pub fn remove(ws: &Workspace, name: &str) -> Result<()> {
    check_name(name)?;
    let dir = prompts_dir(ws).join(name);
    if !dir.is_dir() {
        return Err(ApiError::not_found(format!("no template named `{name}`")));
    }
    std::fs::remove_dir_all(&dir).map_err(|e| ApiError::io(&dir, e))
}

#[cfg(test)]
mod tests;
