//! Tokenizers rebuilt from GGUF metadata for SentencePiece models (Llama 2, Mistral), checked on
//! a small vocabulary whose merges and byte fallback are worked out by hand.

use candle_core::quantized::gguf_file::{self, Value};
use tunelab_engine::gguf::GgufFile;
use tunelab_engine::TextTokenizer;

/// `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then pieces whose scores order the merges so
/// that "hello world" becomes `▁hello ▁world`.
fn sentencepiece_gguf(dir: &std::path::Path) -> std::path::PathBuf {
    let mut tokens: Vec<(String, f32, i32)> = vec![
        ("<unk>".into(), 0.0, 2),
        ("<s>".into(), 0.0, 3),
        ("</s>".into(), 0.0, 3),
    ];
    tokens.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 0.0, 6)));
    let merged = [
        "ll", "▁h", "▁he", "▁hell", "▁hello", "or", "▁w", "▁wor", "ld", "▁world",
    ];
    tokens.extend(
        merged
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), -1.0 - i as f32, 1)),
    );
    let singles = ["▁", "h", "e", "l", "o", "w", "r", "d"];
    tokens.extend(
        singles
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), -100.0 - i as f32, 1)),
    );
    let array =
        |f: &dyn Fn(&(String, f32, i32)) -> Value| Value::Array(tokens.iter().map(f).collect());
    let metadata = [
        ("tokenizer.ggml.model", Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            array(&|t| Value::String(t.0.clone())),
        ),
        ("tokenizer.ggml.scores", array(&|t| Value::F32(t.1))),
        ("tokenizer.ggml.token_type", array(&|t| Value::I32(t.2))),
        ("tokenizer.ggml.unknown_token_id", Value::U32(0)),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
    ];
    let refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let path = dir.join("spm.gguf");
    gguf_file::write(&mut std::fs::File::create(&path).unwrap(), &refs, &[]).unwrap();
    path
}

#[test]
fn sentencepiece_merges_follow_piece_scores_and_unknown_text_falls_back_to_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = GgufFile::open(&sentencepiece_gguf(dir.path())).unwrap();
    let tok = TextTokenizer::from_gguf(&gguf).unwrap();
    let id = |piece: &str| tok.token_to_id(piece).unwrap();

    let ids = tok.encode("hello world", true).unwrap();
    assert_eq!(
        ids,
        vec![id("<s>"), id("▁hello"), id("▁world")],
        "BOS, then the two highest-scoring merges"
    );
    assert_eq!(
        tok.decode(&ids, true).unwrap(),
        "hello world",
        "the leading ▁ is stripped on decode"
    );

    let ids = tok.encode("h€", false).unwrap();
    assert_eq!(
        ids,
        vec![id("▁h"), id("<0xE2>"), id("<0x82>"), id("<0xAC>")],
        "€ is not in the vocabulary: its UTF-8 bytes are"
    );
    assert_eq!(tok.decode(&ids, false).unwrap(), "h€");
    assert_eq!(tok.bos_token(), Some("<s>"));
    assert_eq!(tok.eos_token(), Some("</s>"));
}
