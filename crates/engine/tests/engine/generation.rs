//! Generation controls on the real model: streaming, stop strings, budgets, seeds.

use std::ops::ControlFlow;

use tunelab_engine::{Message, SamplingParams, StopReason};

use crate::native_model;

fn ask(question: &str, params: &SamplingParams) -> (tunelab_engine::Generation, String) {
    let model = native_model();
    let mut streamed = String::new();
    let out = model
        .chat(&[Message::new("user", question)], params, &mut |piece| {
            streamed.push_str(piece);
            ControlFlow::Continue(())
        })
        .unwrap();
    (out, streamed)
}

#[test]
fn the_default_model_knows_the_capital_of_france() {
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: 40,
        ..Default::default()
    };
    let (out, streamed) = ask("What is the capital of France?", &params);
    assert!(out.text.contains("Paris"), "answer: {:?}", out.text);
    assert_eq!(
        streamed, out.text,
        "the streamed pieces add up to the answer"
    );
    assert_eq!(
        out.stop_reason,
        StopReason::Eos,
        "a short answer ends with the end-of-turn token: {:?}",
        out.text
    );
    assert!(out.prefill_tokens_per_second() > 0.0 && out.decode_tokens_per_second() > 0.0);
}

#[test]
fn max_tokens_and_stop_strings_end_the_answer() {
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: 5,
        ..Default::default()
    };
    let (out, _) = ask("Write a long story about a dragon.", &params);
    assert_eq!(out.token_ids.len(), 5);
    assert_eq!(out.stop_reason, StopReason::MaxTokens);

    let full = ask(
        "What is the capital of France?",
        &SamplingParams {
            temperature: 0.0,
            max_tokens: 40,
            ..Default::default()
        },
    )
    .0
    .text;
    let cut_at = full.find("Paris").expect("answer mentions Paris");
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: 40,
        stop: vec!["Paris".into()],
        ..Default::default()
    };
    let (out, streamed) = ask("What is the capital of France?", &params);
    assert_eq!(out.stop_reason, StopReason::StopString);
    assert_eq!(
        out.text,
        full[..cut_at],
        "text ends right before the stop string"
    );
    assert_eq!(
        streamed, out.text,
        "no part of the stop string was streamed"
    );
}

#[test]
fn a_seed_makes_sampled_answers_repeatable_and_cancel_stops() {
    let params = SamplingParams {
        temperature: 0.9,
        seed: Some(42),
        max_tokens: 12,
        ..Default::default()
    };
    let (a, _) = ask("Tell me a fun fact.", &params);
    let (b, _) = ask("Tell me a fun fact.", &params);
    assert_eq!(a.token_ids, b.token_ids);

    let model = native_model();
    let mut pieces = 0;
    let out = model
        .chat(
            &[Message::new("user", "Count to one hundred.")],
            &SamplingParams {
                temperature: 0.0,
                max_tokens: 100,
                ..Default::default()
            },
            &mut |_| {
                pieces += 1;
                if pieces >= 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .unwrap();
    assert_eq!(out.stop_reason, StopReason::Cancelled);
    assert!(
        out.token_ids.len() < 10,
        "generation stopped soon after cancel"
    );
}
