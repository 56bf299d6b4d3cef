//! tunelab-train customizes language models on a home machine. `data` reads training sets
//! (Alpaca, ShareGPT, OpenAI `messages`, CSV, plain text), reports every problem in them with
//! file, line and field, renders conversations through the model's own chat template with the
//! loss on the assistant's replies only, packs plain text into fixed-length blocks and splits
//! off a deterministic validation set. `trainer` is the loop every method shares (AdamW with a
//! schedule, gradient accumulation and clipping, masked cross-entropy, validation, atomic
//! checkpoints, exact resume, cancel), writing a self-describing run folder. `methods` holds
//! the ways of attaching trainable parameters: LoRA (also over a 4-bit base: QLoRA), saved and
//! loaded in the PEFT format.

pub mod data;
pub mod methods;
pub mod plan;
pub mod trainer;

pub use data::{
    check_dataset, pack, read_dataset, split_train_validation, tokenize_dataset, DataError,
    DataReport, Dataset, DatasetFormat, Example, ExampleContent, Issue, IssueKind, ReadOptions,
    RenderOptions, TokenizedExample, TokenizedSet, TrainOn, IGNORE_INDEX,
};
