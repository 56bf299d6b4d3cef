//! Chat templates: the model's own Jinja template (GGUF `tokenizer.chat_template` or
//! `tokenizer_config.json`), rendered with minijinja in the same mode transformers uses
//! (`trim_blocks`, `lstrip_blocks`, Python string methods).

use minijinja::{context, Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// Used only when a model ships no template: ChatML, the most common format for small models.
pub const FALLBACK_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Message {
            role: role.to_string(),
            content: content.into(),
        }
    }
}

pub struct ChatTemplate {
    source: String,
    env: Environment<'static>,
}

/// Steps one rendering may take: a long conversation through the largest templates we know
/// takes well under a million; a template that loops without end (a hostile or broken file)
/// stops here within a second instead of hanging chat.
const RENDER_FUEL: u64 = 10_000_000;

fn raise_exception(message: String) -> std::result::Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .finish()
    }
}

impl ChatTemplate {
    pub fn new(source: impl Into<String>) -> Result<Self> {
        let source = source.into();
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_fuel(Some(RENDER_FUEL));
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", |format: String| -> String {
            strftime_now(&format)
        });
        env.add_template_owned("chat", source.clone())
            .map_err(|e| {
                EngineError::Template(format!("the model's chat template does not parse: {e}"))
            })?;
        Ok(ChatTemplate { source, env })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation; with `add_generation_prompt` the text ends where the assistant's
    /// answer begins.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<String> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| EngineError::Template(e.to_string()))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => bos_token.unwrap_or(""),
                eos_token => eos_token.unwrap_or(""),
            })
            .map_err(|e| match e.kind() {
                ErrorKind::OutOfFuel => EngineError::Template(format!(
                    "the chat template did not finish within {RENDER_FUEL} steps: it loops \
                     without end, so the model's template is broken"
                )),
                _ => EngineError::Template(format!("rendering failed: {e}")),
            })
    }
}

/// `strftime_now` as Llama 3 templates call it; only the fields they use.
fn strftime_now(format: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    format
        .replace("%Y", &year.to_string())
        .replace("%m", &format!("{month:02}"))
        .replace("%d", &format!("{day:02}"))
        .replace("%B", MONTHS[(month - 1) as usize])
        .replace("%b", &MONTHS[(month - 1) as usize][..3])
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_420), (2025, 11, 28));
    }

    #[test]
    fn templates_can_refuse_with_a_message() {
        let t = ChatTemplate::new("{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}ok").unwrap();
        let err = t
            .render(&[Message::new("assistant", "x")], false, None, None)
            .unwrap_err();
        assert!(
            err.to_string().contains("user first"),
            "the template's own message reaches the user: {err}"
        );
        assert_eq!(
            t.render(&[Message::new("user", "x")], false, None, None)
                .unwrap(),
            "ok"
        );
    }

    #[test]
    fn a_template_that_never_ends_is_stopped_and_long_chats_still_render() {
        let endless = ChatTemplate::new(
            "{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}.{% endfor %}{% endfor %}{% endfor %}",
        )
        .unwrap();
        let started = std::time::Instant::now();
        let err = endless
            .render(&[Message::new("user", "hi")], true, None, None)
            .unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err}");
        eprintln!("stopped after {:?}", started.elapsed());

        let chat = ChatTemplate::new(FALLBACK_TEMPLATE).unwrap();
        let long: Vec<Message> = (0..5000)
            .map(|i| {
                Message::new(
                    if i % 2 == 0 { "user" } else { "assistant" },
                    format!("turn {i}"),
                )
            })
            .collect();
        let text = chat.render(&long, true, None, None).unwrap();
        assert!(text.contains("turn 4999"));
    }

    #[test]
    fn python_string_methods_work() {
        let t = ChatTemplate::new("{{ messages[0]['content'].strip() }}").unwrap();
        assert_eq!(
            t.render(&[Message::new("user", "  hi  ")], false, None, None)
                .unwrap(),
            "hi"
        );
    }
}
