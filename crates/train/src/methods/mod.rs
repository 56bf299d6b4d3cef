//! The training methods. Each attaches its trainable parameters to the frozen model and knows
//! how to save them in the format other tools read.

pub mod lora;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MethodError {
    #[error("{0}")]
    Config(String),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Engine(#[from] tunelab_engine::EngineError),
}
