//! `tunelab bench`: decode, training, embedding and knowledge-base speed on this machine

use tunelab_api::chat::ModelCache;
use tunelab_api::{Result, Workspace, DEFAULT_MODEL};

use crate::output::{bytes, print_json};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Sentence-embedding speed in sentences per second (tokenization included)
    Embed {
        #[arg(long, default_value = tunelab_api::knowledge::DEFAULT_EMBEDDER)]
        model: String,
        #[arg(long, default_value_t = 256)]
        sentences: usize,
        /// Tokens per sentence, [CLS] and [SEP] included
        #[arg(long, default_value_t = 47)]
        tokens: usize,
        /// Runs to take the best of
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// auto, cpu, cuda or cuda:N; the workspace's setting when absent
        #[arg(long)]
        device: Option<tunelab_api::DeviceChoice>,
        #[arg(long)]
        json: bool,
    },
    /// Knowledge bases: ingest speed on the sample documents, and query latency (p50/p95,
    /// the query's embedding included) for vector and hybrid search at several table sizes
    Kb {
        #[arg(long, default_value = tunelab_api::knowledge::DEFAULT_EMBEDDER)]
        embedder: String,
        /// Documents to ingest
        #[arg(long, default_value = "datasets/kb-brightloom/docs")]
        docs: std::path::PathBuf,
        /// JSON lines with a `question` field: the queries timed
        #[arg(long, default_value = "datasets/kb-brightloom/questions.jsonl")]
        questions: std::path::PathBuf,
        /// Ingest the documents this many times (as distinct files)
        #[arg(long, default_value_t = 10)]
        copies: usize,
        /// Table sizes to time queries at, in chunks
        #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
        sizes: Vec<usize>,
        #[arg(long)]
        json: bool,
    },
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
        /// auto, cpu, cuda or cuda:N; the workspace's setting when absent
        #[arg(long)]
        device: Option<tunelab_api::DeviceChoice>,
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
        /// auto, cpu, cuda or cuda:N
        #[arg(long, default_value = "auto")]
        device: tunelab_api::DeviceChoice,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(ws: &Workspace, cmd: Command) -> Result<()> {
    match cmd {
        Command::Embed {
            model,
            sentences,
            tokens,
            runs,
            device,
            json,
        } => {
            let result = tunelab_api::bench::embed(ws, &model, sentences, tokens, runs, device)?;
            if json {
                return print_json(&result);
            }
            println!(
                "{} on {} with {} threads: {} sentences of {} tokens in batches of {}, best of {} runs",
                result.model,
                result.device,
                result.threads,
                result.sentences,
                result.tokens_per_sentence,
                result.batch_size,
                result.runs
            );
            println!("embedding {:>8.1} sentences/s", result.sentences_per_s);
            if let Some(peak) = result.peak_rss_bytes {
                println!("peak memory {}", bytes(peak));
            }
            Ok(())
        }
        Command::Kb {
            embedder,
            docs,
            questions,
            copies,
            sizes,
            json,
        } => {
            let result =
                tunelab_api::bench::knowledge(ws, &embedder, &docs, &questions, copies, &sizes)?;
            if json {
                return print_json(&result);
            }
            println!(
                "ingest: {} documents, {} chunks with {} on {} ({} threads)",
                result.documents, result.chunks, result.embedder, result.device, result.threads
            );
            println!(
                "  {:.1} chunks/s end to end, {:.1} embeddings/s",
                result.ingest_chunks_per_s, result.embeddings_per_s
            );
            println!(
                "{:>8} {:>6} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10} {:>9}",
                "CHUNKS",
                "ANN",
                "VECTOR p50",
                "VECTOR p95",
                "HYBRID p50",
                "HYBRID p95",
                "TEXT p50",
                "EMBED p50",
                "BUILD"
            );
            for s in &result.search {
                println!(
                    "{:>8} {:>6} {:>10.2}ms {:>10.2}ms {:>10.2}ms {:>10.2}ms {:>8.2}ms {:>8.2}ms {:>8.1}s",
                    s.chunks,
                    if s.vector_index { "yes" } else { "no" },
                    s.vector_p50_ms,
                    s.vector_p95_ms,
                    s.hybrid_p50_ms,
                    s.hybrid_p95_ms,
                    s.text_p50_ms,
                    s.embed_p50_ms,
                    s.build_seconds
                );
            }
            if let Some(peak) = result.peak_rss_bytes {
                println!("peak memory {}", bytes(peak));
            }
            Ok(())
        }
        Command::Train {
            model,
            method,
            batch_size,
            seq_len,
            steps,
            no_checkpointing,
            device,
            json,
        } => {
            let method = tunelab_api::train::Method::parse(&method)?;
            let request = tunelab_api::bench::TrainBenchRequest {
                model,
                method,
                batch_size,
                seq_len,
                steps,
                activation_checkpointing: !no_checkpointing,
                device,
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
            device,
            json,
        } => {
            let cache = ModelCache::default();
            let result = tunelab_api::bench::decode(
                ws,
                &cache,
                &model,
                prompt_tokens,
                gen_tokens,
                runs,
                device,
            )?;
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
