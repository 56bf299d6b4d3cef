//! `tunelab bench decode`

use tunelab_api::chat::ModelCache;
use tunelab_api::{Result, Workspace, DEFAULT_MODEL};

use crate::output::{bytes, print_json};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Prompt processing (prefill) and generation (decode) speed in tokens per second
    Decode {
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: String,
        #[arg(long, default_value_t = 264)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 128)]
        gen_tokens: usize,
        /// Runs to take the best of
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long)]
        json: bool,
    },
    /// Training speed and peak memory, every token trained: LoRA rank 16 on all linear layers,
    /// a 20-token soft prompt, full fine-tuning or pretraining
    Train {
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: String,
        /// lora (f32 base), qlora (4-bit base), soft-prompt (20 virtual tokens), full (every
        /// weight) or pretrain (a new 10M-parameter model)
        #[arg(long, default_value = "lora")]
        method: String,
        #[arg(long, default_value_t = 4)]
        batch_size: usize,
        #[arg(long, default_value_t = 256)]
        seq_len: usize,
        /// Measured steps, after one warm-up step
        #[arg(long, default_value_t = 3)]
        steps: usize,
        /// Keep every block's activations instead of recomputing them in backward: faster,
        /// more memory
        #[arg(long)]
        no_checkpointing: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(ws: &Workspace, cmd: Command) -> Result<()> {
    match cmd {
        Command::Train {
            model,
            method,
            batch_size,
            seq_len,
            steps,
            no_checkpointing,
            json,
        } => {
            use tunelab_api::train::Method;
            let method = match method.as_str() {
                "lora" => Method::Lora,
                "qlora" => Method::Qlora,
                "soft-prompt" => Method::SoftPrompt,
                "full" => Method::Full,
                "pretrain" => Method::Pretrain,
                other => {
                    let known = "lora, qlora, soft-prompt, full or pretrain";
                    let message = format!("unknown method `{other}`: choose {known}");
                    return Err(tunelab_api::ApiError::invalid(message));
                }
            };
            let request = tunelab_api::bench::TrainBenchRequest {
                model,
                method,
                batch_size,
                seq_len,
                steps,
                activation_checkpointing: !no_checkpointing,
            };
            let result = tunelab_api::bench::train(ws, &request)?;
            if json {
                return print_json(&result);
            }
            println!(
                "{} on {} at batch {} x {} tokens, {} measured steps, activation checkpointing {}",
                result.method,
                result.model,
                result.batch_size,
                result.seq_len,
                result.steps,
                if result.activation_checkpointing {
                    "on"
                } else {
                    "off"
                }
            );
            println!(
                "training {:>8.1} tokens/s   ({} trainable parameters)",
                result.tokens_per_s, result.trainable_parameters
            );
            if let Some(peak) = result.peak_rss_bytes {
                println!("peak memory {}", bytes(peak));
            }
            Ok(())
        }
        Command::Decode {
            model,
            prompt_tokens,
            gen_tokens,
            runs,
            json,
        } => {
            let cache = ModelCache::default();
            let result =
                tunelab_api::bench::decode(ws, &cache, &model, prompt_tokens, gen_tokens, runs)?;
            if json {
                return print_json(&result);
            }
            println!(
                "model {} on {} with {} threads, best of {} runs",
                result.model, result.device, result.threads, result.runs
            );
            println!(
                "prefill  {:>8.1} tokens/s   ({} prompt tokens)",
                result.prefill_tokens_per_s, result.prompt_tokens
            );
            println!(
                "decode   {:>8.1} tokens/s   ({} generated tokens)",
                result.decode_tokens_per_s, result.generated_tokens
            );
            if let Some(peak) = result.peak_rss_bytes {
                println!("peak memory {}", bytes(peak));
            }
            Ok(())
        }
    }
}
