//! A GGUF written here, answered by llama.cpp: tests/interop/make.sh exported the LoRA run in
//! tests/interop/fixtures/tunelab-lora as q8_0 and recorded llama.cpp's greedy answers and its
//! logits over them. Here the same run is exported again; the file must be the one llama.cpp
//! read, byte for byte, and Tunelab reading it must give llama.cpp's logits and choose its
//! tokens.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use sha2::{Digest, Sha256};
use tunelab_api::export::{self, ExportFormat, ExportRequest};
use tunelab_engine::{Device, Precision};

use crate::workspace_with_default_model;

/// Both sides multiply the same q8_0 blocks, but llama.cpp also rounds each activation row to 8
/// bits before its products and keeps keys and values in f16, so logits differ a little: in
/// standard deviations of the row, as the export check measures; 0.43 at most on the fixtures.
const LOGIT_SPREADS: f32 = 0.75;
/// How far behind this model's first choice a token llama.cpp chose may be: a near tie that the
/// two roundings may break either way; the two such tokens on the fixtures are 0.1 behind.
const NEAR_TIE: f32 = 0.25;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/fixtures")
}

fn sha256(path: &Path) -> String {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).unwrap();
    format!("{:x}", hasher.finalize())
}

#[test]
fn a_gguf_exported_here_answers_greedily_as_llama_cpp_answered_it() {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let fx: serde_json::Value = serde_json::from_str(&text).unwrap();
    let fx = &fx["gguf"];
    let run = fx["run"].as_str().unwrap();
    let (dir, ws) = workspace_with_default_model();
    // Exported from the fixture's own folder, as the script did (an export only reads its run).
    let source = fixtures().join(run);
    let out = dir.path().join("export");
    let report = export::run(
        &ws,
        &ExportRequest {
            source: source.display().to_string(),
            format: ExportFormat::Gguf,
            quant: fx["quant"].as_str().map(String::from),
            ollama: false,
            out: Some(out.clone()),
        },
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("export failed: {}", e.message));
    assert!(report.check.passed, "{:#?}", report.check);
    let gguf = out.join(fx["file"].as_str().unwrap());
    assert_eq!(
        sha256(&gguf),
        fx["sha256"].as_str().unwrap(),
        "{} differs from the file llama.cpp answered with when the fixtures were made \
         ({} bytes now, {} then): the GGUF writer changed, so llama.cpp has not read what it \
         writes now; run tests/interop/make.sh and commit its fixtures",
        gguf.display(),
        std::fs::metadata(&gguf).unwrap().len(),
        fx["bytes"]
    );

    let model = tunelab_engine::load(&gguf, Precision::Native, &Device::Cpu).unwrap();
    let params = tunelab_engine::SamplingParams {
        temperature: 0.0,
        repetition_penalty: 1.0,
        max_tokens: 16,
        ..Default::default()
    };
    let (mut worst, mut widest_tie, mut same_choice, mut same_free, mut total) =
        (0f32, 0f32, 0, 0, 0);
    let (mut top_agrees, mut positions) = (0, 0);
    for case in fx["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let answer: Vec<u32> = serde_json::from_value(case["greedy_16"].clone()).unwrap();
        assert_eq!(
            model.tokenizer.encode(prompt, false).unwrap(),
            ids,
            "the export tokenizes {prompt:?} as llama.cpp did"
        );
        // Over llama.cpp's own answer: its top-10 logits at every position.
        let sequence: Vec<u32> = ids.iter().chain(&answer).copied().collect();
        let rows = model
            .transformer
            .logits(&sequence)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for pos in case["positions"].as_array().unwrap() {
            let p = pos["position"].as_u64().unwrap() as usize;
            let row = &rows[p];
            let n = row.len() as f32;
            let mean = row.iter().sum::<f32>() / n;
            let spread = (row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt();
            let top: Vec<u32> = serde_json::from_value(pos["top10_ids"].clone()).unwrap();
            for (id, want) in top.iter().zip(pos["top10_logits"].as_array().unwrap()) {
                let (got, want) = (row[*id as usize], want.as_f64().unwrap() as f32);
                let off = (got - want).abs() / spread;
                worst = worst.max(off);
                assert!(
                    off <= LOGIT_SPREADS,
                    "logit of {id} at {p} of {prompt:?}: {got} here, {want} in llama.cpp \
                     ({off:.2} standard deviations of the row apart)"
                );
            }
            let best = (0..row.len())
                .max_by(|a, b| row[*a].total_cmp(&row[*b]))
                .unwrap();
            top_agrees += usize::from(best == top[0] as usize);
            positions += 1;
        }
        // Each token llama.cpp chose is the one chosen here, or a near tie.
        for (k, token) in answer.iter().enumerate() {
            let row = &rows[ids.len() + k - 1];
            let best = (0..row.len())
                .max_by(|a, b| row[*a].total_cmp(&row[*b]))
                .unwrap();
            let behind = row[best] - row[*token as usize];
            assert!(
                behind <= NEAR_TIE,
                "after {prompt:?} and {k} answer tokens llama.cpp chose {token}, which is {behind} \
                 behind this model's choice {best}"
            );
            widest_tie = widest_tie.max(behind);
            same_choice += usize::from(best == *token as usize);
        }
        // Answering on its own, without llama.cpp's tokens to follow.
        let free = tunelab_engine::generate(
            &model.transformer,
            &model.tokenizer,
            &ids,
            &[],
            &params,
            &mut |_| std::ops::ControlFlow::Continue(()),
        )
        .unwrap()
        .token_ids;
        same_free += free.iter().zip(&answer).take_while(|(a, b)| a == b).count();
        total += answer.len();
    }
    eprintln!(
        "against llama.cpp: logits within {worst:.3} standard deviations, the most likely token \
         the same at {top_agrees} of {positions} positions; {same_choice} of {total} of its \
         answer tokens are this model's first choice (the others within {widest_tie:.3}); \
         answering on its own, {same_free} of {total} tokens before the answers part"
    );
    // 124 of 130 (95%) on the fixtures.
    assert!(
        top_agrees * 100 >= positions * 90,
        "the most likely token agrees at only {top_agrees} of {positions} positions"
    );
}
