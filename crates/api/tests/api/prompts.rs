//! Prompt templates through the api: rendering with the default model's chat template, saved
//! versions, and chat framed by a saved template.

use std::sync::atomic::AtomicBool;

use tunelab_api::chat::{self, ChatMessage, ChatRequest, ChatRole, GenerationParams, ModelCache};
use tunelab_api::prompts::{self, FewShotExample, PromptTemplate, PromptVariable, TemplateRef};

use crate::workspace_with_default_model;

fn support() -> PromptTemplate {
    PromptTemplate {
        system: "You answer for {{company}}. Be brief.".into(),
        user: "Customer question: {{input}}".into(),
        variables: vec![
            PromptVariable {
                name: "company".into(),
                value: "Brightloom".into(),
            },
            PromptVariable {
                name: "input".into(),
                value: "Do you ship to Norway?".into(),
            },
            PromptVariable {
                name: "tone".into(),
                value: "friendly".into(),
            },
        ],
        examples: vec![FewShotExample {
            user: "Customer question: Can I pay by invoice?".into(),
            assistant: "Yes, for business customers.".into(),
        }],
    }
}

#[test]
fn a_template_renders_through_the_models_chat_template_with_its_token_count() {
    let (_dir, ws) = workspace_with_default_model();
    let cache = ModelCache::default();
    let rendered = prompts::render(&ws, &cache, tunelab_api::DEFAULT_MODEL, &support()).unwrap();
    assert_eq!(
        rendered.text,
        "<|im_start|>system\nYou answer for Brightloom. Be brief.<|im_end|>\n\
         <|im_start|>user\nCustomer question: Can I pay by invoice?<|im_end|>\n\
         <|im_start|>assistant\nYes, for business customers.<|im_end|>\n\
         <|im_start|>user\nCustomer question: Do you ship to Norway?<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    let model = cache.get(&ws, tunelab_api::DEFAULT_MODEL).unwrap();
    let ids = model.tokenizer.encode(&rendered.text, false).unwrap();
    assert_eq!(rendered.tokens as usize, ids.len());
    assert_eq!(rendered.context_length, 8192);
    assert_eq!(rendered.unused, vec!["tone".to_string()]);
    assert_eq!(rendered.messages.len(), 4);
}

#[test]
fn saving_makes_numbered_versions_and_never_overwrites() {
    let (_dir, ws) = workspace_with_default_model();
    let first = prompts::save(&ws, "support", "first try", &support()).unwrap();
    assert_eq!(first.version, 1);
    let mut changed = support();
    changed.system = "You answer for {{company}}. Be brief and polite.".into();
    let second = prompts::save(&ws, "support", " politer ", &changed).unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(second.note, "politer");

    let listed = prompts::list(&ws).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0]
            .versions
            .iter()
            .map(|v| (v.version, v.note.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, "first try"), (2, "politer")]
    );
    assert_eq!(
        prompts::load(&ws, "support", None).unwrap().template,
        changed
    );
    assert_eq!(
        prompts::load(&ws, "support", Some(1)).unwrap().template,
        support()
    );
    let err = prompts::load(&ws, "support", Some(9)).unwrap_err();
    assert!(err.message.contains("saved: 1, 2"), "{}", err.message);

    // A damaged file is named with its line; the other versions still list and load.
    let bad = ws.root().join("prompts/support/v0003.json");
    std::fs::write(&bad, "{\n  \"name\": \"support\",\n  oops\n}\n").unwrap();
    let err = prompts::load(&ws, "support", Some(3)).unwrap_err();
    assert!(
        err.message.contains("v0003.json") && err.message.contains("line 3"),
        "{}",
        err.message
    );
    assert_eq!(prompts::list(&ws).unwrap()[0].versions.len(), 2);
    // The next save goes after the damaged file rather than over it.
    assert_eq!(
        prompts::save(&ws, "support", "", &support())
            .unwrap()
            .version,
        4
    );

    let err = prompts::save(&ws, "../escape", "", &support()).unwrap_err();
    assert!(err.message.starts_with("name:"), "{}", err.message);
    let mut empty = support();
    empty.user.clear();
    let err = prompts::save(&ws, "empty", "", &empty).unwrap_err();
    assert!(err.message.starts_with("user:"), "{}", err.message);

    prompts::remove(&ws, "support").unwrap();
    assert!(prompts::list(&ws).unwrap().is_empty());
}

#[test]
fn chat_with_a_saved_template_sends_the_framed_conversation() {
    let (_dir, ws) = workspace_with_default_model();
    let cache = ModelCache::default();
    prompts::save(&ws, "support", "", &support()).unwrap();
    let question = "Where is my order?";
    let request = ChatRequest {
        template: Some(TemplateRef {
            name: "support".into(),
            version: None,
        }),
        kb: None,
        device: None,
        model: tunelab_api::DEFAULT_MODEL.into(),
        adapter: None,
        messages: vec![ChatMessage {
            role: ChatRole::User,
            content: question.into(),
        }],
        params: GenerationParams {
            temperature: 0.0,
            max_tokens: 8,
            ..Default::default()
        },
    };
    let summary = chat::chat(
        &ws,
        &crate::caches(&cache),
        &request,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    // The prompt is the template with the message as {{input}}, token for token.
    let mut filled = support();
    filled.variables[1].value = question.into();
    let rendered = prompts::render(&ws, &cache, tunelab_api::DEFAULT_MODEL, &filled).unwrap();
    assert_eq!(summary.prompt_tokens, rendered.tokens);

    let plain = chat::chat(
        &ws,
        &crate::caches(&cache),
        &ChatRequest {
            template: None,
            ..request.clone()
        },
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    assert!(plain.prompt_tokens < summary.prompt_tokens);

    let err = chat::chat(
        &ws,
        &crate::caches(&cache),
        &ChatRequest {
            template: Some(TemplateRef {
                name: "nope".into(),
                version: None,
            }),
            ..request
        },
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        err.message.contains("no template named `nope`"),
        "{}",
        err.message
    );
}
