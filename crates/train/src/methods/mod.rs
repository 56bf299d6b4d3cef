//! The training methods. Each attaches its trainable parameters to the frozen model and knows
//! how to save them in the format other tools read.

pub mod lora;
