//! Engine tests against the real default model and the reference outputs of Hugging Face
//! transformers in shared/fixtures. The model cache is filled by scripts/fetch-models.py
//! (run by the setup script); the tests fail with that hint if it is empty.

mod bad_input;
mod embeddings;
mod export;
mod formats;
mod generation;
mod parity;
mod precision;
mod tokenizers;
mod training;

use std::path::PathBuf;
use std::sync::OnceLock;

use tunelab_engine::{Device, LoadedModel, Precision};

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

pub fn smollm_gguf() -> PathBuf {
    let path = models_dir().join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh (or scripts/fetch-models.py) first",
        path.display()
    );
    path
}

/// Where the reference outputs live: `TUNELAB_FIXTURES`, else `shared/fixtures` inside the
/// checkout or beside it (the project keeps its ground truth next to the repository).
fn fixtures_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TUNELAB_FIXTURES") {
        return PathBuf::from(dir);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        root.join("shared/fixtures"),
        root.join("../shared/fixtures"),
    ];
    candidates
        .iter()
        .find(|dir| dir.is_dir())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the reference fixtures are not in {} or {}: set TUNELAB_FIXTURES to the folder",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}

pub fn fixture(name: &str) -> serde_json::Value {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// The default model with weights dequantized to f32, as the reference computed them.
pub fn reference_model() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    tunelab_engine::configure_threads(None);
    MODEL.get_or_init(|| {
        tunelab_engine::load(&smollm_gguf(), Precision::F32, &Device::Cpu)
            .expect("default model loads")
    })
}

/// The default model as chat uses it: GGUF quantized blocks kept as they are.
pub fn native_model() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    tunelab_engine::configure_threads(None);
    MODEL.get_or_init(|| {
        tunelab_engine::load(&smollm_gguf(), Precision::Native, &Device::Cpu)
            .expect("default model loads")
    })
}
