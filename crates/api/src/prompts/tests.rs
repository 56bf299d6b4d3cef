//! Templates: variables filled, examples as earlier turns, bad placeholders named by field and
//! line, and chat turns framed by a template.

use super::*;

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
        ],
        examples: vec![FewShotExample {
            user: "Customer question: Can I pay by invoice?".into(),
            assistant: "Yes, {{company}} sends invoices to business customers.".into(),
        }],
    }
}

fn text(messages: &[ChatMessage]) -> Vec<(ChatRole, String)> {
    messages
        .iter()
        .map(|m| (m.role, m.content.clone()))
        .collect()
}

#[test]
fn variables_fill_every_text_and_examples_become_earlier_turns() {
    let t = support();
    assert_eq!(t.used_variables().unwrap(), vec!["company", "input"]);
    let m = t.messages(&BTreeMap::new()).unwrap();
    assert_eq!(
        text(&m),
        vec![
            (
                ChatRole::System,
                "You answer for Brightloom. Be brief.".into()
            ),
            (
                ChatRole::User,
                "Customer question: Can I pay by invoice?".into()
            ),
            (
                ChatRole::Assistant,
                "Yes, Brightloom sends invoices to business customers.".into()
            ),
            (
                ChatRole::User,
                "Customer question: Do you ship to Norway?".into()
            ),
        ]
    );
}

#[test]
fn bad_placeholders_and_missing_values_name_the_field_and_line() {
    let mut t = support();
    t.user = "First line\nAsk {{topic}}".into();
    let err = t.messages(&BTreeMap::new()).unwrap_err();
    assert!(
        err.message.contains("user, line 2") && err.message.contains("topic"),
        "{}",
        err.message
    );
    t.user = "{{input".into();
    let err = t.messages(&BTreeMap::new()).unwrap_err();
    assert!(err.message.contains("not closed"), "{}", err.message);
    t.user = "{{two words}}".into();
    let err = t.used_variables().unwrap_err();
    assert!(
        err.message.contains("not a variable name"),
        "{}",
        err.message
    );
    t.user = " ".into();
    assert!(t.messages(&BTreeMap::new()).is_err());
    let mut t = support();
    t.examples[0].assistant.clear();
    let err = t.messages(&BTreeMap::new()).unwrap_err();
    assert!(err.message.starts_with("example 1"), "{}", err.message);
}

#[test]
fn chat_turns_go_through_the_template() {
    let t = support();
    let conversation = vec![
        ChatMessage {
            role: ChatRole::User,
            content: "Where is my order?".into(),
        },
        ChatMessage {
            role: ChatRole::Assistant,
            content: "It left on Monday.".into(),
        },
        ChatMessage {
            role: ChatRole::User,
            content: "And the invoice?".into(),
        },
    ];
    let framed = t.frame(&conversation).unwrap();
    assert_eq!(framed.len(), 6);
    assert_eq!(framed[0].content, "You answer for Brightloom. Be brief.");
    assert_eq!(framed[3].content, "Customer question: Where is my order?");
    assert_eq!(framed[4].content, "It left on Monday.");
    assert_eq!(framed[5].content, "Customer question: And the invoice?");

    // Without {{input}} the message follows the template's user text.
    let mut t = support();
    t.user = "Answer in French.".into();
    let framed = t.frame(&conversation[..1]).unwrap();
    assert_eq!(
        framed.last().unwrap().content,
        "Answer in French.\n\nWhere is my order?"
    );
}
