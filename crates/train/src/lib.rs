//! tunelab-train customizes language models on a home machine. `data` reads training sets
//! (Alpaca, ShareGPT, OpenAI `messages`, CSV, plain text), reports every problem in them with
//! file, line and field, renders conversations through the model's own chat template with the
//! loss on the assistant's replies only, packs plain text into fixed-length blocks and splits
//! off a deterministic validation set. `trainer` is the loop every method shares (AdamW with a
//! schedule, gradient accumulation and clipping, masked cross-entropy, validation, atomic
//! checkpoints, exact resume, cancel), writing a self-describing run folder. `recipe` is a run's
//! configuration, checked in one place, the `TrainingMethod` trait, and `train_run`, which takes a
//! run from its configuration to its saved artifact and its cost; `methods` holds each
//! method's implementation of it: LoRA (also over a 4-bit base: QLoRA) and the soft prompt,
//! saved and loaded in the PEFT format, and full fine-tuning and pretraining, saved as Hugging
//! Face model folders.

pub mod data;
pub mod methods;
pub mod plan;
pub mod recipe;
pub mod trainer;

pub use recipe::{
    train_run, Artifact, ArtifactKind, Method, RunConfig, TrainedRun, TrainingMethod, DEFAULT_MODEL,
};

pub use data::{
    check_dataset, pack, read_dataset, split_train_validation, take_share, tokenize_dataset,
    DataError, DataReport, Dataset, DatasetFormat, Example, ExampleContent, Issue, IssueKind,
    ReadOptions, RenderOptions, TokenizedExample, TokenizedSet, TrainOn, IGNORE_INDEX,
};
