//! The trainer shared by every method: optimiser, schedules, the masked loss, run folders with
//! checkpoints, and the loop itself.

pub mod loss;
pub mod optim;
pub mod run;
pub mod run_dir;

pub use run::{
    loss_and_grads, train, EvalMetrics, ProgressSink, StepMetrics, TrainOutcome, TrainSettings,
};
pub use run_dir::{write_atomic, CheckpointState, RunDir, Saved};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Config(String),
    #[error("the loss became {loss} at step {step}: lower the learning rate, or check the data for empty or broken examples")]
    NonFinite { step: u64, loss: f64 },
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Engine(#[from] tunelab_engine::EngineError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}
