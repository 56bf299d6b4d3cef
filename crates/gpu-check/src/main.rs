//! tunelab-gpu-check: what `scripts/gpu-check.sh` runs on a machine with a GPU. It needs no
//! files: every model is made here from initial weights.
//!
//! 1. Checks: a small Llama-shaped model trains one step through the portable kernels on the
//!    device and through the fused kernels on the CPU, for each method (LoRA, QLoRA on 4-bit
//!    blocks, soft prompt, full fine-tuning, pretraining), with checkpointing on and off. The
//!    logits, the loss and every trainable gradient must agree (f32 on both); the same step in
//!    16 bits on the device must give the loss within 2%.
//! 2. Benchmarks: training steps of LoRA, QLoRA and full fine-tuning, and decoding, on Llama
//!    shapes of about 0.5B, 1B and 3B parameters in 16 bits, each with tokens/s, peak GPU
//!    memory and MFU.
//!
//! Usage: tunelab-gpu-check [--device cuda|cuda:N|cpu] [--quick] [--only checks|bench]
//!        [--json FILE]
//! `--quick` shrinks every shape and batch (a smoke run, also on the CPU). The exit status is 1
//! when a check fails.

use std::process::ExitCode;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use serde_json::{json, Value};
use tunelab_engine::{ModelConfig, Precision, Transformer};
use tunelab_train::methods::pretrain::PretrainConfig;
use tunelab_train::methods::{full, lora, soft_prompt};
use tunelab_train::trainer::loss_and_grads;
use tunelab_train::trainer::optim::{AdamW, AdamWConfig};

/// The training methods, as the checks and benchmarks run them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Method {
    Lora,
    Qlora,
    SoftPrompt,
    Full,
    Pretrain,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Lora => "lora",
            Method::Qlora => "qlora",
            Method::SoftPrompt => "soft_prompt",
            Method::Full => "full",
            Method::Pretrain => "pretrain",
        }
    }

    /// How the base model is held: QLoRA's in 4-bit blocks, the rest dense in `dense`.
    fn precision(self, dense: Precision) -> Precision {
        match self {
            Method::Qlora => Precision::Native,
            _ => dense,
        }
    }

    /// Makes the method's parameters trainable on `model`.
    fn attach(self, model: &mut Transformer, seed: u64) -> Result<Vec<(String, Var)>, String> {
        let err = |e: tunelab_train::trainer::TrainError| e.to_string();
        match self {
            Method::Lora | Method::Qlora => {
                let config = lora::LoraConfig {
                    rank: 16,
                    targets: vec!["all-linear".into()],
                    // The check compares kernels; the two paths draw dropout masks differently.
                    dropout: 0.0,
                    ..Default::default()
                };
                let params = lora::attach(model, &config, seed).map_err(err)?;
                // B starts at zero, which would leave A without a gradient to compare.
                for (name, var) in &params {
                    if name.contains("lora_B") {
                        let values =
                            tunelab_engine::weights::normal_values(var.elem_count(), 0.02, seed);
                        let t = Tensor::from_vec(values, var.shape(), &Device::Cpu)
                            .and_then(|t| t.to_device(var.device()))
                            .map_err(|e| e.to_string())?;
                        var.set(&t).map_err(|e| e.to_string())?;
                    }
                }
                Ok(params)
            }
            Method::SoftPrompt => {
                let ids = soft_prompt::random_ids(8, model.config.vocab_size as u64, seed);
                soft_prompt::attach_ids(model, &ids).map_err(err)
            }
            Method::Full | Method::Pretrain => full::attach(model).map_err(err),
        }
    }

    fn all() -> [Method; 5] {
        [
            Method::Lora,
            Method::Qlora,
            Method::SoftPrompt,
            Method::Full,
            Method::Pretrain,
        ]
    }
}

/// A Llama-shaped configuration.
fn shape(
    vocab: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    intermediate: usize,
) -> ModelConfig {
    PretrainConfig {
        hidden_size: Some(hidden),
        num_layers: Some(layers),
        num_heads: Some(heads),
        num_kv_heads: Some(kv_heads),
        intermediate_size: Some(intermediate),
        context_length: 4096,
        ..Default::default()
    }
    .model_config(vocab, &[0])
    .expect("the shapes here are valid")
}

/// Token ids and next-token labels `(batch, seq)` drawn by `seed`, the first three positions of
/// each row not trained on.
fn batch(vocab: usize, b: usize, t: usize, seed: u64, device: &Device) -> (Tensor, Vec<Vec<i64>>) {
    let mut state = seed | 1;
    let ids: Vec<u32> = (0..b * t)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab as u64) as u32
        })
        .collect();
    let labels = ids
        .chunks(t)
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, &id)| if i < 3 { -100 } else { id as i64 })
                .collect()
        })
        .collect();
    (
        Tensor::from_vec(ids, (b, t), device).expect("ids fit"),
        labels,
    )
}

/// The largest difference between `a` and `b` relative to the largest magnitude in `a`.
fn relative_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f64> {
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let scale = a
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?
        .max(1e-12) as f64;
    let diff = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? as f64;
    Ok(diff / scale)
}

// --- 1. checks -------------------------------------------------------------------------------

const LOSS_TOLERANCE: f64 = 1e-4;
const GRADIENT_TOLERANCE: f64 = 1e-2;
const HALF_LOSS_TOLERANCE: f64 = 0.02;
const QUANTIZED_LOGITS_TOLERANCE: f64 = 0.05;

fn check_method(
    method: Method,
    config: &ModelConfig,
    device: &Device,
    half: Precision,
) -> Result<Vec<Value>, String> {
    let e = |e: candle_core::Error| e.to_string();
    let ee = |e: tunelab_engine::EngineError| e.to_string();
    let mut out = Vec::new();
    let (ids_cpu, labels) = batch(config.vocab_size, 2, 64, 11, &Device::Cpu);
    let ids_dev = ids_cpu.to_device(device).map_err(e)?;
    // The same initial weights on both devices (drawn on the host, then moved).
    let mut cpu = Transformer::initial(config, method.precision(Precision::F32), &Device::Cpu, 5)
        .map_err(ee)?;
    let mut dev =
        Transformer::initial(config, method.precision(Precision::F32), device, 5).map_err(ee)?;
    dev.portable = true;
    let cpu_params = method.attach(&mut cpu, 3)?;
    let dev_params = method.attach(&mut dev, 3)?;
    let logits_cpu = cpu.forward(&ids_cpu, None).map_err(ee)?;
    let logits_dev = dev.forward(&ids_dev, None).map_err(ee)?;
    let logits_diff = relative_diff(&logits_cpu, &logits_dev).map_err(e)?;
    for checkpointing in [false, true] {
        let (loss_cpu, grads_cpu) =
            loss_and_grads(&cpu, &cpu_params, &ids_cpu, &labels, checkpointing, 1.0)
                .map_err(|e| e.to_string())?;
        let (loss_dev, grads_dev) =
            loss_and_grads(&dev, &dev_params, &ids_dev, &labels, checkpointing, 1.0)
                .map_err(|e| e.to_string())?;
        let mut worst = (0f64, String::new());
        let mut missing = Vec::new();
        for (((name, _), g_cpu), g_dev) in cpu_params.iter().zip(&grads_cpu).zip(&grads_dev) {
            match (g_cpu, g_dev) {
                (Some(a), Some(b)) => {
                    let d = relative_diff(a, b).map_err(e)?;
                    if d > worst.0 {
                        worst = (d, name.clone());
                    }
                }
                _ => missing.push(name.clone()),
            }
        }
        let loss_diff = (loss_cpu - loss_dev).abs() / loss_cpu.abs().max(1.0);
        // Answering through 4-bit blocks, CUDA's kernels quantize the activations to 8 bits
        // (as llama.cpp's do); training decodes the blocks and is held to the tighter mark.
        let logits_tolerance = match method {
            Method::Qlora => QUANTIZED_LOGITS_TOLERANCE,
            _ => GRADIENT_TOLERANCE,
        };
        let pass = loss_diff <= LOSS_TOLERANCE
            && worst.0 <= GRADIENT_TOLERANCE
            && logits_diff <= logits_tolerance
            && missing.is_empty();
        println!(
            "  {:<12} checkpointing {:<5}  loss {loss_cpu:.6} cpu / {loss_dev:.6} device  \
             logits Δ {logits_diff:.1e}  worst gradient Δ {:.1e} ({})  {}",
            method.name(),
            checkpointing,
            worst.0,
            worst.1,
            if pass { "ok" } else { "FAILED" }
        );
        out.push(json!({
            "method": method.name(), "checkpointing": checkpointing, "dtype": "f32",
            "loss_cpu": loss_cpu, "loss_device": loss_dev, "loss_relative_diff": loss_diff,
            "logits_relative_diff": logits_diff, "worst_gradient_relative_diff": worst.0,
            "worst_gradient": worst.1, "missing_gradients": missing, "pass": pass,
        }));
    }
    // The same step in 16 bits on the device: the loss within 2% of the f32 CPU loss.
    if half != Precision::F32 {
        let mut dev16 =
            Transformer::initial(config, method.precision(half), device, 5).map_err(ee)?;
        let params16 = method.attach(&mut dev16, 3)?;
        let (loss32, _) = loss_and_grads(&cpu, &cpu_params, &ids_cpu, &labels, false, 1.0)
            .map_err(|e| e.to_string())?;
        let (loss16, grads16) = loss_and_grads(&dev16, &params16, &ids_dev, &labels, true, 1.0)
            .map_err(|e| e.to_string())?;
        let diff = (loss32 - loss16).abs() / loss32.abs().max(1.0);
        let all_finite = grads16.iter().flatten().all(|g| {
            g.to_dtype(DType::F32)
                .and_then(|g| g.sqr()?.sum_all()?.to_scalar::<f32>())
                .is_ok_and(f32::is_finite)
        });
        let pass = diff <= HALF_LOSS_TOLERANCE && all_finite && grads16.iter().all(Option::is_some);
        println!(
            "  {:<12} {:?} on the device: loss {loss16:.6} against {loss32:.6} in f32 (Δ {diff:.1e}), gradients finite: {all_finite}  {}",
            method.name(),
            half,
            if pass { "ok" } else { "FAILED" }
        );
        out.push(json!({
            "method": method.name(), "checkpointing": true, "dtype": format!("{half:?}").to_lowercase(),
            "loss_f32_cpu": loss32, "loss_device": loss16, "loss_relative_diff": diff,
            "gradients_finite": all_finite, "pass": pass,
        }));
    }
    Ok(out)
}

fn checks(device: &Device, half: Precision) -> (Vec<Value>, bool) {
    // Small, with grouped-query attention and a vocabulary that is not a power of two.
    let config = shape(1000, 128, 3, 4, 2, 352);
    println!("checks: portable kernels on {device:?} against the CPU's fused kernels");
    let mut results = Vec::new();
    let mut all_pass = true;
    for method in Method::all() {
        match check_method(method, &config, device, half) {
            Ok(rows) => {
                all_pass &= rows.iter().all(|r| r["pass"] == json!(true));
                results.extend(rows);
            }
            Err(e) => {
                println!("  {:<12} FAILED: {e}", method.name());
                results.push(json!({"method": method.name(), "error": e, "pass": false}));
                all_pass = false;
            }
        }
    }
    (results, all_pass)
}

// --- 2. benchmarks ---------------------------------------------------------------------------

/// NVIDIA's dense bf16 peak for the GPU, by name, in FLOP/s: what MFU divides by.
fn peak_flops(name: &str) -> Option<f64> {
    let n = name.to_uppercase();
    let tflops = if n.contains("H200") || n.contains("H100") {
        989.0
    } else if n.contains("A100") {
        312.0
    } else if n.contains("4090") {
        165.2
    } else if n.contains("3090") {
        71.0
    } else if n.contains("L40S") {
        362.0
    } else {
        return None;
    };
    Some(tflops * 1e12)
}

/// Model FLOPs of one trained token: each weight matrix costs 2 per token forward and 2 more
/// backward for the input's gradient, and full training 2 more for the weight's own gradient;
/// attention's score and value products `4·L·t·(heads·head_dim)` forward, twice that backward.
/// Recomputation for checkpointing is not counted: MFU measures the model's work, not ours.
fn flops_per_token(config: &ModelConfig, t: usize, trains_weights: bool) -> f64 {
    let c = config;
    let q = c.num_attention_heads * c.head_dim;
    let kv = c.num_key_value_heads * c.head_dim;
    let per_layer =
        c.hidden_size * (q + 2 * kv) + q * c.hidden_size + 3 * c.hidden_size * c.intermediate_size;
    let matrices = (per_layer * c.num_hidden_layers + c.vocab_size * c.hidden_size) as f64;
    let per_weight = if trains_weights { 6.0 } else { 4.0 };
    // Causal attention: on average half of the t keys, forward 2 products, backward 4.
    let attention = 3.0 * 4.0 * (c.num_hidden_layers * q) as f64 * t as f64 / 2.0;
    per_weight * matrices + attention
}

struct Bench<'a> {
    device: &'a Device,
    meter: Option<tunelab_hardware::GpuMeter>,
    /// GPU memory in use before anything of the benchmarks was allocated (other processes, the
    /// CUDA context): the peaks are counted above it. Freed memory stays in the allocator's
    /// pool, so a peak never reads lower than the largest run before it.
    baseline: u64,
    gpu_index: u32,
    gpu_name: String,
    half: Precision,
}

impl Bench<'_> {
    fn sync(&self) -> candle_core::Result<()> {
        self.device.synchronize()
    }

    /// Trains `steps` measured steps (after one warm-up) of `method` on `config`.
    fn train(
        &self,
        label: &str,
        config: &ModelConfig,
        method: Method,
        (b, t): (usize, usize),
        checkpointing: bool,
        steps: usize,
    ) -> Result<Value, String> {
        let e = |e: candle_core::Error| e.to_string();
        let recorder = tunelab_hardware::GpuRecorder::start(
            self.gpu_index,
            std::time::Duration::from_millis(50),
        );
        let started = Instant::now();
        let mut model = Transformer::initial(config, method.precision(self.half), self.device, 1)
            .map_err(|e| e.to_string())?;
        let params = method.attach(&mut model, 2)?;
        let mut optimizer =
            AdamW::new(params.clone(), AdamWConfig::default()).map_err(|e| e.to_string())?;
        let made = started.elapsed().as_secs_f64();
        let (ids, labels) = batch(config.vocab_size, b, t, 17, self.device);
        let mut times = Vec::new();
        let mut last_loss = f64::NAN;
        let mut energy = 0.0;
        for step in 0..=steps {
            self.sync().map_err(e)?;
            let joules = self.meter.as_ref().and_then(|m| m.energy_joules());
            let start = Instant::now();
            let (loss, grads) = loss_and_grads(&model, &params, &ids, &labels, checkpointing, 1.0)
                .map_err(|e| e.to_string())?;
            optimizer.step(&grads, 1e-5).map_err(|e| e.to_string())?;
            self.sync().map_err(e)?;
            if step > 0 {
                times.push(start.elapsed().as_secs_f64());
                let now = self.meter.as_ref().and_then(|m| m.energy_joules());
                energy += now.zip(joules).map_or(0.0, |(b, a)| b - a);
            }
            last_loss = loss;
        }
        drop((optimizer, params, model));
        let cost = recorder.and_then(|r| r.finish());
        let peak = cost
            .as_ref()
            .map_or(0, |c| c.peak_memory_bytes.saturating_sub(self.baseline));
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let tokens_per_s = (b * t) as f64 / mean;
        let trains_weights = matches!(method, Method::Full | Method::Pretrain);
        let flops = flops_per_token(config, t, trains_weights) * tokens_per_s;
        let mfu = peak_flops(&self.gpu_name).map(|p| flops / p);
        println!(
            "  {label:<5} {:<6} {b}×{t:<5} checkpointing {:<5}  {tokens_per_s:>9.0} tokens/s  \
             peak {:>6.1} GiB  MFU {}  (model made in {made:.1} s, loss {last_loss:.3})",
            method.name(),
            checkpointing,
            peak as f64 / (1u64 << 30) as f64,
            mfu.map_or("n/a".into(), |m| format!("{:.1}%", m * 100.0)),
        );
        Ok(json!({
            "shape": label, "method": method.name(), "batch": b, "seq_len": t,
            "checkpointing": checkpointing, "dtype": format!("{:?}", self.half).to_lowercase(),
            "parameters": config.parameter_count(), "tokens_per_s": tokens_per_s,
            "step_seconds": times, "peak_gpu_memory_bytes": peak, "model_flops_per_s": flops,
            "mfu": mfu, "final_loss": last_loss,
            "joules_per_token": energy / (b * t * times.len()) as f64,
            "mean_gpu_utilization_percent": cost.and_then(|c| c.mean_utilization_percent),
        }))
    }

    /// Greedy decoding speed: a 32-token prompt, then `tokens` tokens one at a time.
    fn decode(&self, label: &str, config: &ModelConfig, tokens: usize) -> Result<Value, String> {
        let ee = |e: tunelab_engine::EngineError| e.to_string();
        let e = |e: candle_core::Error| e.to_string();
        let model = Transformer::initial(config, self.half, self.device, 1).map_err(ee)?;
        let (prompt, _) = batch(config.vocab_size, 1, 32, 5, self.device);
        let mut cache = tunelab_engine::Cache::new(config);
        let logits = model.forward_last(&prompt, Some(&mut cache)).map_err(ee)?;
        let mut next = logits.argmax(1).map_err(e)?;
        self.sync().map_err(e)?;
        let start = Instant::now();
        for _ in 0..tokens {
            let ids = next.unsqueeze(1).map_err(e)?;
            let logits = model.forward_last(&ids, Some(&mut cache)).map_err(ee)?;
            next = logits.argmax(1).map_err(e)?;
        }
        next.to_vec1::<u32>().map_err(e)?;
        let tokens_per_s = tokens as f64 / start.elapsed().as_secs_f64();
        println!("  {label:<5} decode  batch 1      {tokens_per_s:>9.1} tokens/s");
        Ok(
            json!({"shape": label, "decode_tokens_per_s": tokens_per_s, "dtype": format!("{:?}", self.half).to_lowercase()}),
        )
    }
}

fn benchmarks(device: &Device, half: Precision, quick: bool) -> Vec<Value> {
    let report = tunelab_hardware::probe();
    let gpu_index = tunelab_engine::cuda_index(device).unwrap_or(0) as u32;
    let gpu_name = report
        .gpus
        .iter()
        .find(|g| g.index == gpu_index)
        .map(|g| g.name.clone())
        .unwrap_or_default();
    let meter = tunelab_hardware::GpuMeter::open(gpu_index);
    let bench = Bench {
        device,
        baseline: meter
            .as_ref()
            .and_then(|m| m.memory_used_bytes())
            .unwrap_or(0),
        meter,
        gpu_index,
        gpu_name,
        half,
    };
    let shapes: Vec<(&str, ModelConfig)> = if quick {
        vec![("tiny", shape(2000, 256, 2, 4, 2, 704))]
    } else {
        vec![
            // Llama 3.2 1B's shape, Qwen2.5-0.5B's and Llama 3.2 3B's (tied embeddings).
            ("1B", shape(128_256, 2048, 16, 32, 8, 8192)),
            ("0.5B", shape(151_936, 896, 24, 14, 2, 4864)),
            ("3B", shape(128_256, 3072, 28, 24, 8, 8192)),
        ]
    };
    let (b, t, steps) = if quick { (2, 64, 2) } else { (8, 1024, 3) };
    println!(
        "benchmarks: {:?} on {device:?} ({}), batch {b}×{t}",
        half, bench.gpu_name
    );
    let mut out = Vec::new();
    let mut record = |r: Result<Value, String>, what: &str| match r {
        Ok(v) => out.push(v),
        Err(e) => {
            println!("  {what}: {e}");
            out.push(json!({"run": what, "error": e}));
        }
    };
    for (label, config) in &shapes {
        for method in [Method::Lora, Method::Qlora, Method::Full] {
            // Without recomputation where it fits; otherwise with it.
            let mut r = bench.train(label, config, method, (b, t), false, steps);
            if r.is_err() {
                r = bench.train(label, config, method, (b, t), true, steps);
            }
            record(r, &format!("{label} {}", method.name()));
            if *label == "1B" && method == Method::Lora {
                let r = bench.train(label, config, method, (b, t), true, steps);
                record(r, "1B lora, checkpointing");
            }
        }
        let r = bench.decode(label, config, if quick { 8 } else { 128 });
        record(r, &format!("{label} decode"));
    }
    out
}

fn parse_device(text: &str) -> Result<Device, String> {
    text.parse::<tunelab_engine::DeviceChoice>()
        .and_then(|choice| choice.open())
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let quick = args.iter().any(|a| a == "--quick");
    let only = value("--only");
    let device = match parse_device(value("--device").as_deref().unwrap_or("cuda")) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let half = Precision::half_for(&device);
    let started = Instant::now();
    let mut report =
        json!({"device": format!("{device:?}"), "precision": format!("{half:?}").to_lowercase()});
    let mut pass = true;
    if only.as_deref() != Some("bench") {
        let (results, ok) = checks(&device, half);
        report["checks"] = Value::Array(results);
        pass = ok;
    }
    if only.as_deref() != Some("checks") {
        report["benchmarks"] = Value::Array(benchmarks(&device, half, quick));
    }
    report["seconds"] = json!(started.elapsed().as_secs_f64());
    if let Some(path) = value("--json") {
        let text = serde_json::to_string_pretty(&report).expect("json serializes") + "\n";
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("error: writing {path}: {e}");
            return ExitCode::from(2);
        }
    }
    println!(
        "{} in {:.0} s",
        if pass {
            "checks passed"
        } else {
            "checks FAILED"
        },
        started.elapsed().as_secs_f64()
    );
    if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
