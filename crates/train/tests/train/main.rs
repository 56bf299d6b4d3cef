//! tunelab-train end to end: datasets (fixtures written to temporary files in code), LoRA and
//! the trainer. Rendering and training use the real default model from the cache setup fills
//! (the tests fail with that hint when it is empty).

mod formats;
mod full;
mod interop;
mod issues;
mod lora;
mod masking;
mod portable;
mod sample;
mod soft_prompt;
mod split;
mod train_run;
mod trainer;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tunelab_engine::{Device, LoadedModel, Message, Precision};
use tunelab_train::data::{read_dataset, Dataset, ExampleContent, ReadOptions};

pub fn models_dir() -> PathBuf {
    if let Ok(home) = std::env::var("TUNELAB_HOME") {
        return PathBuf::from(home).join("models");
    }
    let data = std::env::var("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME is set")).join(".local/share")
        });
    data.join("tunelab/models")
}

fn load_default(precision: Precision) -> LoadedModel {
    tunelab_engine::configure_threads(None);
    let path = models_dir().join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh (or scripts/fetch-models.py) first",
        path.display()
    );
    tunelab_engine::load(&path, precision, &Device::Cpu).expect("default model loads")
}

/// The default model as QLoRA uses it: GGUF blocks kept as they are.
pub fn native_model() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| load_default(Precision::Native))
}

/// The default model dequantized to f32, as LoRA and merging use it.
pub fn f32_model() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| load_default(Precision::F32))
}

/// Question/answer pairs through `model`'s chat template, the loss on the answers only (each
/// closed with `<|im_end|>`); example `i` is on line `i + 1`.
pub fn chat_examples(
    model: &LoadedModel,
    pairs: &[(&str, &str)],
) -> Vec<tunelab_train::data::TokenizedExample> {
    pairs
        .iter()
        .enumerate()
        .map(|(i, (q, a))| {
            let prompt = model.render_chat(&[Message::new("user", *q)]).unwrap();
            let p = model.tokenizer.encode(&prompt, false).unwrap();
            let r = model
                .tokenizer
                .encode(&format!("{a}<|im_end|>"), false)
                .unwrap();
            let ids: Vec<u32> = p.iter().chain(&r).copied().collect();
            let labels = p
                .iter()
                .map(|_| -100i64)
                .chain(r.iter().map(|t| *t as i64))
                .collect();
            tunelab_train::data::TokenizedExample {
                line: i + 1,
                full_len: ids.len(),
                full_len_estimated: false,
                ids,
                labels,
            }
        })
        .collect()
}

/// Writes `text` to `name` in `dir`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("fixture writes");
    path
}

/// Reads a fixture with default options.
pub fn read(dir: &Path, name: &str, text: &str) -> Dataset {
    read_dataset(&write(dir, name, text), &ReadOptions::default()).expect("dataset reads")
}

/// The conversations of a dataset, as (role, content) pairs.
pub fn chats(dataset: &Dataset) -> Vec<Vec<(String, String)>> {
    dataset
        .examples
        .iter()
        .map(|e| match &e.content {
            ExampleContent::Chat(messages) => messages
                .iter()
                .map(|m| (m.role.clone(), m.content.clone()))
                .collect(),
            ExampleContent::Text(text) => panic!("expected a conversation, got text {text:?}"),
        })
        .collect()
}

pub fn pair(role: &str, content: &str) -> (String, String) {
    (role.to_string(), content.to_string())
}

pub fn conversation(turns: &[(&str, &str)]) -> Vec<Message> {
    turns.iter().map(|(r, c)| Message::new(r, *c)).collect()
}
