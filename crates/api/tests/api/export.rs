//! Exports checked against the model they came from: GGUF key by key against the default
//! model's own file, a LoRA run merged and as GGUF with an Ollama Modelfile, round trips back
//! through `models add`, and damaged exports that the check must catch by name.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use tunelab_api::export::{self, CheckKind, ExportFormat, ExportReport, ExportRequest};
use tunelab_api::train::{self, Method, RunConfig, RunStatus};
use tunelab_api::Workspace;
use tunelab_engine::gguf::GgufFile;
use tunelab_engine::gguf_write::{self, GgufQuant, Value};
use tunelab_engine::{Device, Precision};

use crate::{default_gguf, workspace_with_default_model};

fn request(source: &str, format: ExportFormat, quant: Option<&str>, out: &Path) -> ExportRequest {
    ExportRequest {
        source: source.into(),
        format,
        quant: quant.map(String::from),
        ollama: false,
        out: Some(out.to_path_buf()),
    }
}

fn export(ws: &Workspace, request: &ExportRequest) -> ExportReport {
    let report = export::run(ws, request, &AtomicBool::new(false), &mut |_| {})
        .unwrap_or_else(|e| panic!("export of {} failed: {}", request.source, e.message));
    assert!(report.check.passed, "{:#?}", report.check);
    report
}

fn gguf_in(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "gguf"))
        .expect("the export has a .gguf file")
}

fn train_run(ws: &Workspace, method: Method, name: &str, steps: u64) -> String {
    let mut config = RunConfig {
        data: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../datasets/lora-json-extract/train.jsonl"),
        seq_len: 96,
        ..RunConfig::for_method(method)
    };
    config.train.max_steps = steps;
    config.train.batch_size = 1;
    config.train.warmup_steps = 0;
    config.lora.rank = 4;
    config.soft_prompt.num_virtual_tokens = 4;
    if method == Method::Lora {
        // Large steps, so the merged weights differ from the base where the check can see it.
        config.train.lr = 5e-3;
    }
    let dir = ws.runs_dir().join(name);
    let summary = train::run(ws, &config, &dir, &mut NoProgress, &AtomicBool::new(false)).unwrap();
    assert_eq!(summary.status, RunStatus::Completed);
    name.to_string()
}

struct NoProgress;
impl train::ProgressSink for NoProgress {
    fn step(&mut self, _: &train::StepMetrics) {}
    fn eval(&mut self, _: &train::EvalMetrics) {}
}

#[test]
fn the_default_model_as_gguf_matches_its_own_file_key_by_key() {
    let (dir, ws) = workspace_with_default_model();
    let out = dir.path().join("out");
    let report = export(
        &ws,
        &request(
            tunelab_api::DEFAULT_MODEL,
            ExportFormat::Gguf,
            Some("q4_1"),
            &out,
        ),
    );
    let ours = GgufFile::open(&gguf_in(&out)).unwrap();
    let theirs = GgufFile::open(&default_gguf()).unwrap();

    // Tensors: the same names in the same shapes, matrices in the blocks asked for.
    let mut names: Vec<&String> = ours.tensor_names().collect();
    let mut expected: Vec<&String> = theirs.tensor_names().collect();
    names.sort();
    expected.sort();
    assert_eq!(names, expected, "llama.cpp's tensor names");
    assert_eq!(report.tensors, names.len());
    for name in names {
        let (a, b) = (
            ours.qtensor(name, None, &Device::Cpu).unwrap(),
            theirs.qtensor(name, None, &Device::Cpu).unwrap(),
        );
        assert_eq!(a.shape(), b.shape(), "{name}");
        assert_eq!(
            a.dtype(),
            b.dtype(),
            "{name}: llama.cpp's block type for it"
        );
        if name.ends_with("attn_q.weight") || name.ends_with("attn_k.weight") {
            // Written back in llama.cpp's interleaved row order: the same rows as the source.
            let diff = tunelab_engine::layers::max_abs_diff(
                &a.dequantize(&Device::Cpu).unwrap(),
                &b.dequantize(&Device::Cpu).unwrap(),
            )
            .unwrap();
            assert!(
                diff < 1e-2,
                "{name} keeps llama.cpp's row order (max diff {diff})"
            );
        }
    }
    // Metadata: every tokenizer key and the configuration as the source has them.
    for (key, value) in theirs.metadata() {
        let configuration = key.starts_with("llama.") && !key.contains("rope.scaling");
        if key.starts_with("tokenizer.") || configuration {
            let mine = ours.metadata().get(key);
            assert!(mine.is_some(), "the export keeps {key}");
            assert_eq!(
                format!("{:?}", mine.unwrap()),
                format!("{value:?}"),
                "{key} as in the source"
            );
        }
    }
    assert_eq!(ours.get_str("general.architecture"), Some("llama"));
    assert_eq!(
        ours.get_u64("general.file_type"),
        Some(3),
        "llama.cpp's MOSTLY_Q4_1"
    );
    assert_eq!(ours.config().unwrap(), theirs.config().unwrap());
    assert_eq!(
        report.check.greedy_matched, report.check.greedy_compared,
        "the file requantized to its own blocks answers as the source"
    );
    let saved: ExportReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("export.json")).unwrap()).unwrap();
    assert_eq!(saved.check, report.check, "export.json keeps the check");

    // An export never writes over a folder with files in it.
    let err = export::run(
        &ws,
        &request(tunelab_api::DEFAULT_MODEL, ExportFormat::Gguf, None, &out),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.message.contains("already exists"), "{}", err.message);
}

#[test]
fn a_lora_run_exports_merged_and_as_gguf_for_ollama_and_both_load_back() {
    let (dir, ws) = workspace_with_default_model();
    let run = train_run(&ws, Method::Lora, "lora", 3);

    let merged = dir.path().join("merged");
    let report = export(&ws, &request(&run, ExportFormat::Merged, None, &merged));
    assert_eq!(
        report.dtype.as_deref(),
        Some("F16"),
        "a GGUF base merges into f16"
    );
    for file in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "export.json",
    ] {
        assert!(merged.join(file).is_file(), "merged/{file}");
    }
    let generation: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(merged.join("generation_config.json")).unwrap(),
    )
    .unwrap();
    assert!(generation["eos_token_id"].is_array(), "{generation}");
    let entry = tunelab_api::models::add(&ws, &merged, Some("merged-lora")).unwrap();
    assert_eq!(entry.name, "merged-lora");

    let gguf = dir.path().join("gguf");
    let mut req = request(&run, ExportFormat::Gguf, Some("q8_0"), &gguf);
    req.ollama = true;
    let report = export(&ws, &req);
    assert!(report
        .check
        .items
        .iter()
        .any(|i| i.check == CheckKind::Ollama && i.passed));
    let modelfile = std::fs::read_to_string(gguf.join("Modelfile")).unwrap();
    let file = gguf_in(&gguf);
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(modelfile.contains(&format!("FROM ./{name}")), "{modelfile}");
    assert!(
        modelfile.contains("PARAMETER stop \"<|im_end|>\""),
        "{modelfile}"
    );
    assert!(
        modelfile.contains("SYSTEM \"\"\"You are a helpful AI assistant named SmolLM"),
        "SmolLM2's template brings a default system text: {modelfile}"
    );
    assert!(report
        .ollama_create
        .as_deref()
        .unwrap()
        .starts_with("ollama create lora -f "));
    tunelab_api::models::add(&ws, &file, Some("gguf-lora")).unwrap();

    // The merged folder exported as GGUF goes through the tokenizer.json path.
    let again = dir.path().join("again");
    let report = export(
        &ws,
        &request("merged-lora", ExportFormat::Gguf, Some("f16"), &again),
    );
    assert_eq!(report.check.greedy_matched, report.check.greedy_compared);
}

#[test]
fn a_soft_prompt_exports_as_peft_and_is_refused_as_weights() {
    let (dir, ws) = workspace_with_default_model();
    let run = train_run(&ws, Method::SoftPrompt, "soft", 1);
    let out = dir.path().join("peft");
    let report = export(&ws, &request(&run, ExportFormat::Peft, None, &out));
    assert!(
        out.join("adapter_config.json").is_file()
            && out.join("adapter_model.safetensors").is_file()
    );
    assert_eq!(
        report.check.max_logit_error, 0.0,
        "the adapter is copied as it is"
    );
    let err = export::run(
        &ws,
        &request(&run, ExportFormat::Gguf, None, &dir.path().join("no")),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        err.message.contains("cannot be merged into weights"),
        "{}",
        err.message
    );
    assert!(
        !dir.path().join("no").exists(),
        "a refused export leaves nothing"
    );
    let err = export::run(
        &ws,
        &request(
            tunelab_api::DEFAULT_MODEL,
            ExportFormat::Peft,
            None,
            &dir.path().join("no"),
        ),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.message.contains("has no adapter"), "{}", err.message);
}

/// Writes the model in `gguf` again into `dir` with `metadata` and `damage` applied to its
/// transformer, next to the export's export.json, for the check to find.
fn damaged_copy(
    gguf: &Path,
    export_dir: &Path,
    dir: &Path,
    edit_metadata: impl Fn(&mut Vec<(String, Value)>),
    damage: impl Fn(&mut tunelab_engine::Transformer),
) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(export_dir.join("export.json"), dir.join("export.json")).unwrap();
    let mut model = tunelab_engine::load(gguf, Precision::Native, &Device::Cpu).unwrap();
    damage(&mut model.transformer);
    let mut metadata: Vec<(String, Value)> = GgufFile::open(gguf)
        .unwrap()
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    edit_metadata(&mut metadata);
    gguf_write::write_gguf(
        &dir.join("model.gguf"),
        &model.transformer,
        &metadata,
        GgufQuant::Q8_0,
        &mut |_, _| true,
    )
    .unwrap();
}

fn failed(ws: &Workspace, dir: &Path) -> Vec<(CheckKind, String)> {
    let check = export::verify(ws, dir).unwrap();
    assert!(!check.passed, "the damage in {} is caught", dir.display());
    check
        .items
        .into_iter()
        .filter(|i| !i.passed)
        .map(|i| (i.check, i.detail))
        .collect()
}

#[test]
fn the_check_names_what_a_damaged_export_broke() {
    let (dir, ws) = workspace_with_default_model();
    let good = dir.path().join("good");
    export(
        &ws,
        &request(
            tunelab_api::DEFAULT_MODEL,
            ExportFormat::Gguf,
            Some("q8_0"),
            &good,
        ),
    );
    let gguf = gguf_in(&good);
    assert!(
        export::verify(&ws, &good).unwrap().passed,
        "the export checks again"
    );

    // Query rows left in Hugging Face order: llama.cpp would rotate the wrong pairs.
    let swapped = dir.path().join("swapped");
    damaged_copy(
        &gguf,
        &good,
        &swapped,
        |_| {},
        |t| {
            let heads = t.config.num_attention_heads;
            for layer in t.layers.iter_mut() {
                let q = &mut layer.self_attn.q_proj;
                let w = q.weight.to_dense(&Device::Cpu).unwrap();
                let (rows, cols) = w.dims2().unwrap();
                let d = rows / heads;
                let mixed = w
                    .reshape((heads, d / 2, 2, cols))
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap()
                    .contiguous()
                    .unwrap()
                    .reshape((rows, cols))
                    .unwrap();
                q.weight = tunelab_engine::layers::Weight::Dense(mixed);
            }
        },
    );
    let failures = failed(&ws, &swapped);
    assert!(
        failures
            .iter()
            .any(|(k, d)| *k == CheckKind::Weights && d.contains("self_attn.q_proj.weight")),
        "the weights check names the tensor: {failures:?}"
    );
    assert!(
        failures.iter().any(|(k, _)| *k == CheckKind::Logits),
        "{failures:?}"
    );

    let no_template = dir.path().join("no-template");
    damaged_copy(
        &gguf,
        &good,
        &no_template,
        |m| m.retain(|(k, _)| k != "tokenizer.chat_template"),
        |_| {},
    );
    let failures = failed(&ws, &no_template);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, CheckKind::ChatTemplate);
    assert!(
        failures[0].1.contains("no chat template"),
        "{}",
        failures[0].1
    );

    let wrong_eos = dir.path().join("wrong-eos");
    damaged_copy(
        &gguf,
        &good,
        &wrong_eos,
        |m| {
            for (k, v) in m.iter_mut() {
                if k == "tokenizer.ggml.eos_token_id" {
                    *v = Value::U32(0);
                }
            }
            m.retain(|(k, _)| k != "tokenizer.ggml.eot_token_id");
        },
        |_| {},
    );
    let failures = failed(&ws, &wrong_eos);
    assert!(
        failures
            .iter()
            .any(|(k, d)| *k == CheckKind::EndOfTurn && d.contains("<|im_end|>")),
        "{failures:?}"
    );
}
