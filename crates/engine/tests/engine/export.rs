//! Writing models back out: GGUF files and Hugging Face folders that load into the same model,
//! for Llama (query/key rows interleaved as llama.cpp stores them) and Qwen2 (biases, rows as
//! they are), tied and untied, with the tokenizer rebuilt from the written metadata.

use std::path::Path;

use tunelab_engine::gguf_write::{self, GgufQuant, Value};
use tunelab_engine::{Device, LoadedModel, Precision};

use crate::formats::{untie, write_hf};
use crate::native_model;

const TEXT: &str = "Exports keep 123 weights, naïve café 🙂 and <|im_start|> in place.";

/// The GGUF metadata an export writes: configuration, tokenizer (from tokenizer.json) and the
/// chat template.
fn metadata(model: &LoadedModel) -> Vec<(String, Value)> {
    let config = &model.transformer.config;
    let mut m = gguf_write::config_metadata(config, "tiny", GgufQuant::F32);
    m.extend(model.tokenizer.gguf_metadata(config).unwrap());
    m.push((
        "tokenizer.chat_template".into(),
        Value::String(model.template.source().into()),
    ));
    m
}

fn assert_same_model(a: &LoadedModel, b: &LoadedModel, what: &str) {
    let ids = a.tokenizer.encode(TEXT, false).unwrap();
    assert_eq!(
        ids,
        b.tokenizer.encode(TEXT, false).unwrap(),
        "{what}: token ids"
    );
    let diff = tunelab_engine::layers::max_abs_diff(
        &a.transformer.logits(&ids).unwrap(),
        &b.transformer.logits(&ids).unwrap(),
    )
    .unwrap();
    assert!(diff < 1e-4, "{what}: logits differ by {diff}");
    assert_eq!(
        a.summary.config.tie_word_embeddings,
        b.summary.config.tie_word_embeddings
    );
    assert_eq!(
        a.summary.config.attention_bias,
        b.summary.config.attention_bias
    );
}

fn gguf_round_trip(dir: &Path, what: &str) {
    let model = tunelab_engine::load(dir, Precision::F32, &Device::Cpu).unwrap();
    let path = dir.join("out.gguf");
    let written = gguf_write::write_gguf(
        &path,
        &model.transformer,
        &metadata(&model),
        GgufQuant::F32,
        &mut |_, _| true,
    )
    .unwrap();
    assert_eq!(written.len(), model.transformer.weight_names().len());
    let back = tunelab_engine::load(&path, Precision::F32, &Device::Cpu).unwrap();
    assert_same_model(&model, &back, what);
    assert_eq!(back.template.source(), model.template.source());
}

#[test]
fn llama_and_qwen2_folders_written_as_gguf_load_back_to_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    write_hf(dir.path(), "LlamaForCausalLM", false);
    gguf_round_trip(dir.path(), "llama, tied");
    untie(dir.path());
    gguf_round_trip(dir.path(), "llama, untied");

    let dir = tempfile::tempdir().unwrap();
    write_hf(dir.path(), "Qwen2ForCausalLM", true);
    gguf_round_trip(dir.path(), "qwen2 with biases");
}

#[test]
fn the_default_model_written_as_a_folder_loads_back_to_the_same_model() {
    let model = native_model();
    let dir = tempfile::tempdir().unwrap();
    let mut calls = 0;
    tunelab_engine::hf_write::write_hf_folder(
        dir.path(),
        model,
        tunelab_engine::DType::F32,
        &mut |done, total| {
            calls += 1;
            assert!(done <= total);
            true
        },
    )
    .unwrap();
    assert_eq!(calls, model.transformer.weight_names().len());
    let back = tunelab_engine::load(dir.path(), Precision::Native, &Device::Cpu).unwrap();
    assert_same_model(model, &back, "HF folder");
    assert_eq!(
        back.summary.config.eos_token_ids,
        model.summary.config.eos_token_ids
    );

    // Stopping halfway leaves an error, not a file that looks complete.
    let err = tunelab_engine::hf_write::write_hf_folder(
        dir.path(),
        model,
        tunelab_engine::DType::F16,
        &mut |done, _| done < 3,
    )
    .unwrap_err();
    assert!(
        matches!(err, tunelab_engine::EngineError::Cancelled),
        "{err}"
    );
}
