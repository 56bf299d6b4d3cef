//! Broken model files get one clear error naming the file and the problem, never a panic.

use std::path::Path;

use tunelab_engine::{Device, EngineError, Precision};

use crate::{reference_model, smollm_gguf};

fn load_err(path: &Path) -> String {
    match tunelab_engine::load(path, Precision::Native, &Device::Cpu) {
        Ok(_) => panic!("{} should not load", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_gguf_names_the_file_and_the_missing_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(smollm_gguf()).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(&cut);
    assert!(
        err.contains("cut.gguf") && err.contains("truncated"),
        "{err}"
    );

    let header_only = dir.path().join("header.gguf");
    std::fs::write(&header_only, &bytes[..2000]).unwrap();
    let err = load_err(&header_only);
    assert!(
        err.contains("header.gguf") && err.contains("not a valid GGUF"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("notes.gguf");
    std::fs::write(&junk, b"these are my notes, not a model").unwrap();
    let err = load_err(&junk);
    assert!(err.contains("notes.gguf") && err.contains("magic"), "{err}");
    let err = load_err(&dir.path().join("absent.gguf"));
    assert!(err.contains("absent.gguf"), "{err}");
}

fn write_config(dir: &Path, config: serde_json::Value) {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
}

fn tiny_config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "vocab_size": 49152, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
        "max_position_embeddings": 64, "tie_word_embeddings": true
    })
}

#[test]
fn impossible_config_values_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "num_attention_heads",
            serde_json::json!(0),
            "must be greater than 0",
        ),
        (
            "num_key_value_heads",
            serde_json::json!(3),
            "does not divide",
        ),
        ("rms_norm_eps", serde_json::json!(-1.0), "small positive"),
        ("hidden_size", serde_json::json!(null), "is missing"),
    ];
    for (field, value, expect) in cases {
        let mut config = tiny_config();
        config[field] = value;
        write_config(dir.path(), config);
        let err = load_err(dir.path());
        assert!(
            err.contains("config.json") && err.contains(field) && err.contains(expect),
            "{field}: {err}"
        );
    }
    let mut config = tiny_config();
    config["architectures"] = serde_json::json!(["GPT2LMHeadModel"]);
    write_config(dir.path(), config);
    let err = load_err(dir.path());
    assert!(
        err.contains("GPT2LMHeadModel") && err.contains("not supported"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("config.json"),
        "{ \"hidden_size\": 16,\n  oops }",
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("config.json") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn missing_tokenizer_and_corrupt_weights_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), tiny_config());
    let err = load_err(dir.path());
    assert!(err.contains("safetensors"), "no weights at all: {err}");

    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}",
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("tokenizer.json") && err.contains("missing"),
        "{err}"
    );

    reference_model()
        .tokenizer
        .save(&dir.path().join("tokenizer.json"))
        .unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("model.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );
    assert!(matches!(
        tunelab_engine::load(dir.path(), Precision::Native, &Device::Cpu),
        Err(EngineError::Format { .. })
    ));
}

#[test]
fn a_gguf_with_an_alignment_of_zero_is_refused_not_a_panic() {
    // GGUF v3: magic, version, no tensors, one key: general.alignment (u32) = 0.
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend_from_slice(&1u64.to_le_bytes());
    let key = b"general.alignment";
    bytes.extend_from_slice(&(key.len() as u64).to_le_bytes());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&4u32.to_le_bytes()); // value type: u32
    bytes.extend_from_slice(&0u32.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zero-align.gguf");
    std::fs::write(&path, &bytes).unwrap();
    let err = load_err(&path);
    assert!(
        err.contains("zero-align.gguf") && err.contains("not a valid GGUF"),
        "{err}"
    );
}

#[test]
fn a_tokenizer_regex_that_backtracks_without_end_gives_up_instead_of_hanging() {
    // `(a|aa)+(?=b)` needs the backtracking engine (a lookahead), and on a run of `a` with no
    // `b` a naive search tries every way of splitting the run: about 10^20 paths for 100
    // letters. fancy-regex bounds every search (a backtracking limit of a million steps, and
    // the tokenizer stops splitting at the first error), so the text goes through unsplit.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {
            "type": "Split",
            "pattern": {"Regex": "(a|aa)+(?=b)"},
            "behavior": "Isolated",
            "invert": false
        },
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"a": 0, "[UNK]": 1}, "unk_token": "[UNK]"}
    });
    std::fs::write(&path, tokenizer.to_string()).unwrap();
    let t = tunelab_engine::TextTokenizer::from_hf_files(&path, None).unwrap();
    let ids = t.encode(&"a".repeat(100), false).unwrap();
    assert_eq!(ids, vec![1], "the unsplit run is one unknown word");
}
