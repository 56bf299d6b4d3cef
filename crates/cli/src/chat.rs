//! `tunelab chat`: one answer with `--prompt`, otherwise an interactive streaming session.

use std::io::{BufRead, Write};
use std::sync::atomic::AtomicBool;

use tunelab_api::chat::{
    ChatEvent, ChatMessage, ChatRequest, ChatRole, ChatSummary, GenerationParams, ModelCache,
};
use tunelab_api::knowledge::KnowledgeCache;
use tunelab_api::prompts::TemplateRef;
use tunelab_api::{Result, Workspace, DEFAULT_MODEL};
use tunelab_knowledge::prompt::Citation;

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// Registered model name (see `tunelab models list`)
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    /// A trained adapter: run id (see `tunelab runs list`), run folder or PEFT adapter folder
    #[arg(long)]
    adapter: Option<String>,
    /// System message placed before the conversation
    #[arg(long)]
    system: Option<String>,
    /// Answer from this knowledge base, with numbered citations (see `tunelab kb list`)
    #[arg(long)]
    kb: Option<String>,
    /// Frame every message with a saved prompt template: NAME or NAME@VERSION (saved in the
    /// app's prompt studio; each message fills its {{input}})
    #[arg(long, value_parser = parse_template)]
    template: Option<TemplateRef>,
    /// 0 answers deterministically (greedy); higher values vary more
    #[arg(long, default_value_t = 0.3)]
    temperature: f32,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long)]
    top_k: Option<u32>,
    /// Above 1.0 discourages repeating tokens already in the conversation
    #[arg(long, default_value_t = 1.1)]
    repetition_penalty: f32,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value_t = 512)]
    max_tokens: u32,
    /// Stop the answer at this text (repeatable)
    #[arg(long)]
    stop: Vec<String>,
    /// Answer this one message and exit
    #[arg(long)]
    prompt: Option<String>,
    /// With --prompt: print the answer and its statistics as JSON
    #[arg(long)]
    json: bool,
    /// Where to answer: auto (the first GPU of a build with CUDA, else the CPU), cpu, cuda or
    /// cuda:N; the workspace's setting (`tunelab settings`) when absent
    #[arg(long)]
    device: Option<tunelab_api::DeviceChoice>,
}

pub(crate) fn parse_template(text: &str) -> std::result::Result<TemplateRef, String> {
    match text.split_once('@') {
        None => Ok(TemplateRef {
            name: text.to_string(),
            version: None,
        }),
        Some((name, version)) => {
            Ok(TemplateRef {
                name: name.to_string(),
                version: Some(version.trim_start_matches('v').parse().map_err(|_| {
                    format!("`{version}` is not a version number (NAME@3 or NAME@v3)")
                })?),
            })
        }
    }
}

impl Args {
    fn params(&self) -> GenerationParams {
        GenerationParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p.or(if self.temperature > 0.0 {
                Some(0.9)
            } else {
                None
            }),
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
        }
    }

    fn opening(&self) -> Vec<ChatMessage> {
        self.system
            .iter()
            .map(|s| ChatMessage {
                role: ChatRole::System,
                content: s.clone(),
            })
            .collect()
    }
}

/// Both caches a conversation keeps between messages.
#[derive(Default)]
struct Caches {
    models: ModelCache,
    knowledge: KnowledgeCache,
}

fn print_citations(citations: &[Citation]) {
    if citations.is_empty() {
        return;
    }
    println!();
    println!("Sources:");
    for c in citations {
        let place = if c.location.is_empty() {
            String::new()
        } else {
            format!(", {}", c.location)
        };
        println!("  [{}] {}{place}  ({})", c.number, c.title, c.source);
    }
}

fn answer(
    ws: &Workspace,
    caches: &Caches,
    args: &Args,
    messages: Vec<ChatMessage>,
    stream: bool,
) -> Result<ChatSummary> {
    let request = ChatRequest {
        template: args.template.clone(),
        model: args.model.clone(),
        adapter: args.adapter.clone(),
        kb: args.kb.clone(),
        messages,
        params: args.params(),
        device: args.device,
    };
    let cancel = AtomicBool::new(false);
    let mut stdout = std::io::stdout();
    let mut on_event = |event| {
        if let (true, ChatEvent::Token { text }) = (stream, event) {
            let _ = write!(stdout, "{text}");
            let _ = stdout.flush();
        }
    };
    let caches = tunelab_api::chat::Caches {
        models: &caches.models,
        knowledge: &caches.knowledge,
    };
    tunelab_api::chat::chat(ws, &caches, &request, &cancel, &mut on_event)
}

pub fn run(ws: &Workspace, args: Args) -> Result<()> {
    let caches = Caches::default();
    if let Some(prompt) = &args.prompt {
        let mut messages = args.opening();
        messages.push(ChatMessage {
            role: ChatRole::User,
            content: prompt.clone(),
        });
        let answer = answer(ws, &caches, &args, messages, !args.json)?;
        if args.json {
            return print_json(&answer);
        }
        println!();
        print_citations(&answer.citations);
        return Ok(());
    }
    interactive(ws, &caches, &args)
}

fn interactive(ws: &Workspace, caches: &Caches, args: &Args) -> Result<()> {
    eprintln!("Chatting with {}. Type a message and press Enter; /reset starts over, /exit or Ctrl-D quits.", args.model);
    let mut history = args.opening();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        let _ = std::io::stderr().flush();
        let Some(Ok(line)) = lines.next() else { break };
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history = args.opening();
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage {
            role: ChatRole::User,
            content: line.to_string(),
        });
        match answer(ws, caches, args, history.clone(), true) {
            Ok(summary) => {
                println!();
                print_citations(&summary.citations);
                eprintln!(
                    "({} tokens, prefill {:.0} tok/s, decode {:.1} tok/s{})",
                    summary.generated_tokens,
                    summary.prefill_tokens_per_s,
                    summary.decode_tokens_per_s,
                    summary
                        .device
                        .as_deref()
                        .map(|d| format!(", on {d}"))
                        .unwrap_or_default()
                );
                history.push(ChatMessage {
                    role: ChatRole::Assistant,
                    content: summary.text,
                });
            }
            Err(err) => {
                history.pop();
                eprintln!("error: {}", err.message);
            }
        }
    }
    Ok(())
}
