//! A run from its configuration to its artifact: the data read, rendered and split, the model
//! loaded (or made, for pretraining from scratch), the method attached, the trainer run, the
//! result saved, and what it all cost. The caller (the api) owns the workspace around it: the
//! run folder's lock, the memory plan check, and the summary it writes from what this returns.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tunelab_engine::{Device, LoadedModel};
use tunelab_hardware::{CpuEnergy, CpuEnergyRecorder, GpuCost, GpuMeter, GpuRecorder};

use crate::data::{
    pack, read_dataset, split_train_validation, take_share, tokenize_dataset, Dataset,
    ExampleContent, ReadOptions, RenderOptions,
};
use crate::methods::pretrain;
use crate::recipe::RunConfig;
use crate::trainer::{
    self, EvalMetrics, ProgressSink, RunDir, StepMetrics, TrainError, TrainOutcome,
};

/// What a finished (or cancelled) run did and cost, for its summary.
#[derive(Debug)]
pub struct TrainedRun {
    pub outcome: TrainOutcome,
    pub total_steps: u64,
    pub train_examples: usize,
    pub val_examples: usize,
    /// Examples cut at the sequence length.
    pub truncated_examples: usize,
    pub trainable_parameters: u64,
    /// On a GPU: its peak memory, mean utilisation and energy while the run trained.
    pub gpu: Option<GpuCost>,
    /// The CPU packages' energy while the run trained, where the machine lets it be read.
    pub cpu_energy: Option<CpuEnergy>,
    /// Where the result is (saved unless the run was cancelled).
    pub artifact: PathBuf,
}

/// Trains as `config` says in `run` (whose config.json the caller has written), from the model
/// file `base` (unused when pretraining from scratch). A run folder with checkpoints goes on
/// from the newest. Unless cancelled, the result is saved to `artifact/` whole or not at all.
pub fn train_run(
    config: &RunConfig,
    base: Option<&Path>,
    run: &RunDir,
    device: &Device,
    sink: &mut dyn ProgressSink,
    cancel: &AtomicBool,
) -> Result<TrainedRun, TrainError> {
    let dataset = read_dataset(
        &config.data,
        &ReadOptions {
            format: config.format,
            ..ReadOptions::default()
        },
    )?;
    let mut model = if config.from_scratch() {
        new_model(run, config, &dataset, device)?
    } else {
        let base = base
            .ok_or_else(|| TrainError::Config(format!("no model file for `{}`", config.model)))?;
        tunelab_engine::load(base, config.method.precision(device), device)?
    };
    let tokenized = tokenize_dataset(
        &model,
        &dataset,
        &RenderOptions {
            train_on: config.train_on,
            max_len: config.seq_len,
        },
    );
    if tokenized.examples.is_empty() {
        let first = dataset
            .issues
            .iter()
            .chain(&tokenized.issues)
            .next()
            .map(|i| format!(": {i}"))
            .unwrap_or_default();
        return Err(TrainError::Config(format!(
            "{} has no usable examples{first}; run `tunelab data check` for the full report",
            config.data.display()
        )));
    }
    // Plain text is packed into full blocks: no compute goes to padding.
    let plain_text = dataset
        .examples
        .iter()
        .all(|e| matches!(e.content, ExampleContent::Text(_)));
    // Training needs the tokens only: the text goes before it starts.
    drop(dataset);
    let truncated_examples = tokenized.truncated;
    let examples = if plain_text {
        pack(tokenized.examples, config.seq_len)?
    } else {
        tokenized.examples
    };
    if examples.is_empty() {
        return Err(TrainError::Config(format!(
            "{} holds fewer than {} tokens, one block of the sequence length; add text or lower seq_len",
            config.data.display(),
            config.seq_len
        )));
    }
    let mut split = split_train_validation(examples, config.val_fraction, config.train.seed)?;
    split.train = take_share(split.train, config.train_fraction, config.train.seed)?;
    let method = config.method.recipe();
    let params = method.attach(&mut model, config)?;
    let trainable_parameters: u64 = params.iter().map(|(_, v)| v.elem_count() as u64).sum();
    let pad_id = model.eos_ids.first().copied().unwrap_or(0);
    // On a GPU, what the run costs it: read twice a second while it trains.
    let gpu_index = tunelab_engine::cuda_index(device).map(|i| i as u32);
    let gpu_recorder = gpu_index.and_then(|i| GpuRecorder::start(i, Duration::from_millis(500)));
    let cpu_energy = CpuEnergyRecorder::start(Duration::from_secs(1));
    let mut sink = LiveGpu {
        inner: sink,
        meter: gpu_index.and_then(GpuMeter::open),
        last: None,
    };
    let outcome = trainer::train(
        &model.transformer,
        &params,
        &split.train,
        &split.validation,
        &config.train,
        run,
        pad_id,
        &mut sink,
        cancel,
    )?;
    let gpu = gpu_recorder.and_then(|r| r.finish());
    let cpu_energy = cpu_energy.and_then(|r| r.finish());

    let artifact = run.artifact_dir();
    if !outcome.cancelled {
        let staging = run.path().join(".artifact.partial");
        std::fs::create_dir_all(&staging).map_err(|e| TrainError::Io(staging.clone(), e))?;
        method.save(&staging, &model, &params, config)?;
        if artifact.exists() {
            std::fs::remove_dir_all(&artifact).map_err(|e| TrainError::Io(artifact.clone(), e))?;
        }
        std::fs::rename(&staging, &artifact).map_err(|e| TrainError::Io(artifact.clone(), e))?;
    }
    Ok(TrainedRun {
        total_steps: config.train.total_steps(split.train.len()),
        train_examples: split.train.len(),
        val_examples: split.validation.len(),
        truncated_examples,
        trainable_parameters,
        gpu,
        cpu_energy,
        artifact,
        outcome,
    })
}

/// A new model for pretraining from scratch: a tokenizer trained on the dataset's text and
/// weights drawn at random, kept under `base/` in the run folder so that a resumed run uses the
/// very same tokenizer (the weights come from the checkpoint then).
fn new_model(
    run: &RunDir,
    config: &RunConfig,
    dataset: &Dataset,
    device: &Device,
) -> Result<LoadedModel, TrainError> {
    let base = run.path().join("base");
    let tokenizer_path = base.join("tokenizer.json");
    let tokenizer = if tokenizer_path.is_file() {
        pretrain::load_tokenizer(&tokenizer_path)?
    } else {
        let texts = dataset.examples.iter().filter_map(|e| match &e.content {
            ExampleContent::Text(t) => Some(t.as_str()),
            _ => None,
        });
        pretrain::train_tokenizer(texts, config.pretrain.vocab_size())?
    };
    let eos: Vec<u32> = [pretrain::END_OF_TEXT, pretrain::TURN_END]
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .collect();
    let model_config = config
        .pretrain
        .model_config(tokenizer.get_vocab_size(true), &eos)?;
    pretrain::create_model(&base, &model_config, &tokenizer, config.train.seed, device)
}

/// Passes progress on, adding a reading of the GPU after a step at most once a second.
struct LiveGpu<'a> {
    inner: &'a mut dyn ProgressSink,
    meter: Option<GpuMeter>,
    last: Option<Instant>,
}

impl ProgressSink for LiveGpu<'_> {
    fn step(&mut self, metrics: &StepMetrics) {
        self.inner.step(metrics);
        let due = self.last.is_none_or(|t| t.elapsed().as_secs_f64() >= 1.0);
        if let (true, Some(meter)) = (due, &self.meter) {
            if let Some(reading) = meter.info() {
                self.inner.gpu(&reading);
            }
            self.last = Some(Instant::now());
        }
    }

    fn eval(&mut self, metrics: &EvalMetrics) {
        self.inner.eval(metrics);
    }
}
