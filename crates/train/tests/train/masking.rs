//! Rendering through the real SmolLM2 chat template: the loss covers the assistant's replies
//! and their `<|im_end|>` markers, nothing else.

use tunelab_train::data::render::{
    chat_pieces, cut_for, text_pieces, tokenize_chat, tokenize_text, TextCut, TEXT_PIECE_BYTES,
};
use tunelab_train::data::{
    pack, tokenize_dataset, Dataset, Example, ExampleContent, RenderOptions, TrainOn, IGNORE_INDEX,
};

use crate::{conversation, native_model};

fn two_turns() -> Vec<tunelab_engine::Message> {
    conversation(&[
        ("user", "What is the capital of France?"),
        ("assistant", "Paris is the capital of France."),
        ("user", "And of Italy?"),
        ("assistant", "Rome."),
    ])
}

/// The runs of consecutive trained tokens, each decoded.
fn trained_runs(ids: &[u32], labels: &[i64]) -> Vec<String> {
    let model = native_model();
    let mut runs: Vec<Vec<u32>> = Vec::new();
    let mut previous_trained = false;
    for (&id, &label) in ids.iter().zip(labels) {
        let trained = label != IGNORE_INDEX;
        if trained {
            assert_eq!(
                label, id as i64,
                "a trained label is the token itself (not shifted)"
            );
            if !previous_trained {
                runs.push(Vec::new());
            }
            runs.last_mut().unwrap().push(id);
        }
        previous_trained = trained;
    }
    runs.iter()
        .map(|r| model.tokenizer.decode(r, false).unwrap())
        .collect()
}

#[test]
fn only_the_replies_and_their_end_of_turn_markers_are_trained() {
    let model = native_model();
    let messages = two_turns();
    let (ids, labels) = tokenize_chat(model, &messages, TrainOn::AssistantReplies).unwrap();
    assert_eq!(ids.len(), labels.len());
    assert_eq!(
        trained_runs(&ids, &labels),
        vec![
            "Paris is the capital of France.<|im_end|>",
            "Rome.<|im_end|>"
        ],
        "each reply is trained with the marker that ends it, so the model learns to stop"
    );
    // The line break ChatML writes after <|im_end|> is framing: generation stops at the
    // marker, so it is never produced and not trained.
    let im_end = model.tokenizer.token_to_id("<|im_end|>").unwrap();
    for (t, &id) in ids.iter().enumerate() {
        if id == im_end && labels[t] != IGNORE_INDEX {
            assert_eq!(
                model.tokenizer.decode(&ids[t + 1..t + 2], false).unwrap(),
                "\n"
            );
            assert_eq!(labels[t + 1], IGNORE_INDEX);
        }
    }
}

#[test]
fn pieces_tokenize_exactly_like_the_whole_rendered_conversation() {
    let model = native_model();
    let messages = two_turns();
    let pieces = chat_pieces(model, &messages).unwrap();
    let whole = model
        .template
        .render(
            &messages,
            false,
            model.tokenizer.bos_token(),
            model.tokenizer.eos_token(),
        )
        .unwrap();
    let joined: String = pieces.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(
        joined, whole,
        "the pieces cut the rendered text without changing it"
    );
    assert!(
        whole.starts_with("<|im_start|>system\n"),
        "SmolLM2's template adds its default system prompt"
    );
    let trainable: Vec<&str> = pieces
        .iter()
        .filter(|p| p.trainable)
        .map(|p| p.text.as_str())
        .collect();
    assert_eq!(
        trainable,
        vec![
            "Paris is the capital of France.<|im_end|>",
            "Rome.<|im_end|>"
        ]
    );
    // Byte-level BPE never merges across these boundaries: special tokens are split off
    // first, and the pre-tokenizer splits "\n" from the reply's first word.
    let (ids, _) = tokenize_chat(model, &messages, TrainOn::AssistantReplies).unwrap();
    assert_eq!(ids, model.tokenizer.encode(&whole, false).unwrap());
}

#[test]
fn training_on_all_tokens_labels_every_token() {
    let model = native_model();
    let (ids, labels) = tokenize_chat(model, &two_turns(), TrainOn::AllTokens).unwrap();
    assert_eq!(labels, ids.iter().map(|&i| i as i64).collect::<Vec<_>>());
}

#[test]
fn truncation_cuts_conversations_and_counts_them_but_keeps_text_whole() {
    let model = native_model();
    let example = |line, content| Example { line, content };
    let dataset = Dataset {
        file: "mem.jsonl".into(),
        format: None,
        rows_total: 3,
        examples: vec![
            example(1, ExampleContent::Chat(two_turns())),
            example(
                2,
                ExampleContent::Chat(conversation(&[("user", "Hi"), ("assistant", "Hello.")])),
            ),
            example(3, ExampleContent::Text("word ".repeat(200))),
        ],
        issues: Vec::new(),
    };
    let (full, _) = tokenize_chat(model, &two_turns(), TrainOn::AssistantReplies).unwrap();
    let short = tokenize_chat(
        model,
        &conversation(&[("user", "Hi"), ("assistant", "Hello.")]),
        TrainOn::AssistantReplies,
    )
    .unwrap()
    .0;
    let max_len = full.len() - 3;
    assert!(short.len() < max_len, "the short conversation fits");
    let set = tokenize_dataset(
        model,
        &dataset,
        &RenderOptions {
            train_on: TrainOn::AssistantReplies,
            max_len,
        },
    );
    assert_eq!(set.truncated, 1);
    assert_eq!(set.sources, vec![0, 1, 2]);
    let cut = &set.examples[0];
    assert!(cut.truncated());
    assert_eq!(
        (cut.ids.len(), cut.labels.len(), cut.full_len),
        (max_len, max_len, full.len())
    );
    assert_eq!(cut.ids[..], full[..max_len]);
    assert!(!set.examples[1].truncated());
    assert!(
        set.examples[2].ids.len() > max_len,
        "text is kept whole for packing"
    );
    assert_eq!(set.issues.len(), 1);
    assert_eq!(set.issues[0].line, 1);
}

#[test]
fn a_huge_reply_is_tokenized_only_as_far_as_the_max_length_needs() {
    let model = native_model();
    // About 3 MB of reply: a row far beyond any max length.
    let reply: String = (0..400_000).map(|i| format!("word{} ", i % 97)).collect();
    let messages = conversation(&[("user", "Write a lot."), ("assistant", &reply)]);
    let (exact, _) = tokenize_chat(model, &messages, TrainOn::AssistantReplies).unwrap();
    let dataset = Dataset {
        file: "huge.jsonl".into(),
        format: None,
        rows_total: 1,
        examples: vec![Example {
            line: 1,
            content: ExampleContent::Chat(messages),
        }],
        issues: Vec::new(),
    };
    let set = tokenize_dataset(
        model,
        &dataset,
        &RenderOptions {
            train_on: TrainOn::AssistantReplies,
            max_len: 128,
        },
    );
    let cut = &set.examples[0];
    assert_eq!(
        cut.ids[..],
        exact[..128],
        "the kept tokens are the whole text's"
    );
    assert!(cut.full_len_estimated);
    let error = (cut.full_len as f64 - exact.len() as f64).abs() / exact.len() as f64;
    assert!(
        error < 0.05,
        "estimated {} tokens, exactly {}",
        cut.full_len,
        exact.len()
    );
    assert!(
        set.issues[0].message.starts_with("about "),
        "{}",
        set.issues[0].message
    );
}

#[test]
fn text_documents_end_with_eos_and_pack_into_exact_blocks() {
    let model = native_model();
    let eos = model
        .tokenizer
        .token_to_id(model.tokenizer.eos_token().unwrap())
        .unwrap();
    let docs = [
        "The first document is short.",
        "The second one is a little longer than that.",
        "Third.",
    ];
    let dataset = Dataset {
        file: "corpus.txt".into(),
        format: None,
        rows_total: 3,
        examples: docs
            .iter()
            .enumerate()
            .map(|(i, d)| Example {
                line: 1 + 2 * i,
                content: ExampleContent::Text(d.to_string()),
            })
            .collect(),
        issues: Vec::new(),
    };
    let set = tokenize_dataset(
        model,
        &dataset,
        &RenderOptions {
            train_on: TrainOn::AssistantReplies,
            max_len: 4,
        },
    );
    let lengths: Vec<usize> = set.examples.iter().map(|e| e.ids.len()).collect();
    for (example, doc) in set.examples.iter().zip(docs) {
        assert_eq!(
            example.ids.last(),
            Some(&eos),
            "every document ends with EOS"
        );
        assert_eq!(example.ids, tokenize_text(model, doc).unwrap());
        assert_eq!(example.trainable_tokens(), example.ids.len());
    }
    let total: usize = lengths.iter().sum();
    let seq_len = 8;
    let blocks = pack(set.examples.clone(), seq_len).unwrap();
    assert_eq!(blocks.len(), total / seq_len);
    assert!(blocks
        .iter()
        .all(|b| b.ids.len() == seq_len && b.labels.len() == seq_len));
    let flat: Vec<u32> = set
        .examples
        .iter()
        .flat_map(|e| e.ids.iter().copied())
        .collect();
    let packed: Vec<u32> = blocks.iter().flat_map(|b| b.ids.iter().copied()).collect();
    assert_eq!(
        packed[..],
        flat[..packed.len()],
        "blocks are the documents end to end"
    );
    let separators = packed.iter().filter(|&&id| id == eos).count();
    assert!(
        separators >= 1,
        "EOS separates the documents inside the blocks"
    );
}

/// The project's own docs (prose, code, tables, lists, numbers), repeated to `at_least` bytes.
fn long_text(at_least: usize) -> String {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let mut names: Vec<_> = std::fs::read_dir(&docs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    names.sort();
    let mut text = String::new();
    for name in names {
        text.push_str(&std::fs::read_to_string(name).unwrap());
    }
    while text.len() < at_least {
        text = text.repeat(2);
    }
    text
}

/// The pieces' tokens, the first with BOS, laid end to end.
fn pieced_ids(tokenizer: &tunelab_engine::TextTokenizer, text: &str, cut: TextCut) -> Vec<u32> {
    let mut ids = Vec::new();
    for (i, piece) in text_pieces(text, cut).enumerate() {
        ids.extend(tokenizer.encode(piece, i == 0).unwrap());
    }
    ids
}

#[test]
fn a_long_document_is_tokenized_in_pieces_exactly_as_whole() {
    let model = native_model();
    assert_eq!(cut_for(&model.tokenizer).unwrap(), TextCut::KeepSpace);
    let text = long_text(3 * TEXT_PIECE_BYTES);
    let pieces = text_pieces(&text, TextCut::KeepSpace).count();
    assert!(pieces >= 3, "{pieces} pieces");
    let mut whole = model.tokenizer.encode(&text, true).unwrap();
    let pieced = pieced_ids(&model.tokenizer, &text, TextCut::KeepSpace);
    assert_eq!(pieced.len(), whole.len());
    assert!(
        pieced == whole,
        "the pieces' tokens differ from the whole text's"
    );
    whole.push(tunelab_train::data::eos_id(model).unwrap());
    assert!(tokenize_text(model, &text).unwrap() == whole);

    // The tokenizer a new model gets when pretraining from scratch follows the same cut.
    let dir = tempfile::tempdir().unwrap();
    let trained = tunelab_train::methods::pretrain::train_tokenizer(
        std::iter::once(&text[..TEXT_PIECE_BYTES]),
        600,
    )
    .unwrap();
    let path = dir.path().join("tokenizer.json");
    trained.save(&path, false).unwrap();
    let tokenizer = tunelab_engine::TextTokenizer::from_hf_files(&path, None).unwrap();
    assert_eq!(cut_for(&tokenizer).unwrap(), TextCut::KeepSpace);
    let whole = tokenizer.encode(&text, true).unwrap();
    assert!(pieced_ids(&tokenizer, &text, TextCut::KeepSpace) == whole);
}
