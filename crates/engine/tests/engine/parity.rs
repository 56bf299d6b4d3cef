//! Parity with Hugging Face transformers reading the same GGUF (weights dequantized to f32).

use tunelab_engine::{Message, Tensor};

use crate::{fixture, native_model, reference_model};

/// Logits are compared after dequantization to f32: differences come only from the order of
/// floating-point sums, so they stay far below this bound (relative to the logit's magnitude,
/// with an absolute floor for logits near zero).
const LOGIT_TOLERANCE: f32 = 1e-3;

#[test]
fn gguf_tokenizer_matches_reference_ids_exactly() {
    let model = reference_model();
    let fx = fixture("smollm2_135m_reference.json");
    for case in fx["tokenizer"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = model.tokenizer.encode(text, false).unwrap();
        assert_eq!(got, want, "token ids of {text:?}");
        let decoded = model.tokenizer.decode(&got, false).unwrap();
        assert_eq!(decoded, text, "decoding gives the text back");
    }
}

#[test]
fn chat_template_renders_like_transformers() {
    let model = reference_model();
    let fx = &fixture("smollm2_135m_reference.json")["chat_template"];
    let messages: Vec<Message> = serde_json::from_value(fx["messages"].clone()).unwrap();
    assert_eq!(
        model.render_chat(&messages).unwrap(),
        fx["rendered"].as_str().unwrap()
    );
    let user_only: Vec<Message> = messages
        .iter()
        .filter(|m| m.role == "user")
        .cloned()
        .collect();
    assert_eq!(
        model.render_chat(&user_only).unwrap(),
        fx["rendered_user_only"].as_str().unwrap(),
        "without a system message the template inserts SmolLM's default one"
    );
}

fn ids_of(case: &serde_json::Value, key: &str) -> Vec<u32> {
    case[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn top_k(row: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    idx.sort_by(|a, b| row[*b as usize].total_cmp(&row[*a as usize]));
    idx.truncate(k);
    idx
}

fn logits_rows(logits: &Tensor) -> Vec<Vec<f32>> {
    logits.to_vec2::<f32>().unwrap()
}

#[test]
fn f32_logits_match_the_reference_within_tolerance() {
    let model = reference_model();
    let fx = fixture("smollm2_135m_reference.json");
    let mut worst = 0f32;
    for case in fx["logits"].as_array().unwrap() {
        let ids = ids_of(case, "ids");
        let prompt = case["prompt"].as_str().unwrap();
        assert_eq!(
            model.tokenizer.encode(prompt, false).unwrap(),
            ids,
            "prompt ids of {prompt:?}"
        );
        let rows = logits_rows(&model.transformer.logits(&ids).unwrap());
        for pos in case["positions"].as_array().unwrap() {
            let p = pos["position"].as_u64().unwrap() as usize;
            let row = &rows[p];
            let want_ids = ids_of(pos, "top10_ids");
            assert_eq!(
                top_k(row, 10),
                want_ids,
                "top-10 ids of {prompt:?} at position {p}"
            );
            for (id, want) in want_ids.iter().zip(pos["top10_logits"].as_array().unwrap()) {
                let want = want.as_f64().unwrap() as f32;
                let got = row[*id as usize];
                let err = (got - want).abs() / want.abs().max(1.0);
                worst = worst.max(err);
                assert!(err <= LOGIT_TOLERANCE, "logit of token {id} at position {p} of {prompt:?}: got {got}, reference {want}");
            }
            let n = row.len() as f64;
            let mean = row.iter().map(|v| *v as f64).sum::<f64>() / n;
            let std = (row.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
            let (want_mean, want_std) =
                (pos["mean"].as_f64().unwrap(), pos["std"].as_f64().unwrap());
            assert!(
                (mean - want_mean).abs() <= 1e-3 * want_mean.abs().max(1.0),
                "mean logit at {p}: {mean} vs {want_mean}"
            );
            assert!(
                (std - want_std).abs() <= 1e-3 * want_std.abs().max(1.0),
                "logit spread at {p}: {std} vs {want_std}"
            );
        }
    }
    eprintln!("worst relative logit error against transformers: {worst:.2e}");
}

fn greedy(model: &tunelab_engine::LoadedModel, ids: &[u32], n: usize) -> Vec<u32> {
    let params = tunelab_engine::SamplingParams {
        temperature: 0.0,
        repetition_penalty: 1.0,
        max_tokens: n,
        ..Default::default()
    };
    let out = tunelab_engine::generate(
        &model.transformer,
        &model.tokenizer,
        ids,
        &[],
        &params,
        &mut |_| std::ops::ControlFlow::Continue(()),
    )
    .unwrap();
    out.token_ids
}

#[test]
fn greedy_continuations_match_the_reference_through_the_kv_cache() {
    let model = reference_model();
    let fx = fixture("smollm2_135m_reference.json");
    for case in fx["logits"].as_array().unwrap() {
        let ids = ids_of(case, "ids");
        let want = ids_of(case, "greedy_16");
        assert_eq!(
            greedy(model, &ids, 16),
            want,
            "greedy continuation of {:?}",
            case["prompt"].as_str().unwrap()
        );
        assert_eq!(
            model.tokenizer.decode(&want, false).unwrap(),
            case["greedy_16_text"].as_str().unwrap()
        );
    }
}

/// Feeds `ids[..split]` as one prefill and the rest one token at a time through the cache, and
/// checks every step's logits against a single full forward pass.
fn assert_cached_steps_match_full_pass(ids: &[u32], split: usize, tolerance: f32) {
    let model = reference_model();
    let full = logits_rows(&model.transformer.logits(ids).unwrap());
    let mut cache = tunelab_engine::Cache::new(&model.transformer.config);
    let dev = model.transformer.device().clone();
    let prefix = Tensor::new(&ids[..split], &dev)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .transformer
        .forward(&prefix, Some(&mut cache))
        .unwrap();
    for (i, id) in ids[split..].iter().enumerate() {
        let step = Tensor::new(&[*id], &dev).unwrap().unsqueeze(0).unwrap();
        let row = model
            .transformer
            .forward_last(&step, Some(&mut cache))
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let want = &full[split + i];
        let max_err = row
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            max_err < tolerance,
            "position {}: cached logits differ from the full pass by {max_err}",
            split + i
        );
    }
}

#[test]
fn cached_decoding_gives_the_same_logits_as_a_full_forward() {
    let ids = reference_model()
        .tokenizer
        .encode(
            "The capital of France is Paris, and the capital of Italy is",
            false,
        )
        .unwrap();
    assert_cached_steps_match_full_pass(&ids, ids.len() - 3, 1e-3);
}

#[test]
fn the_cache_stays_exact_when_it_grows_past_its_first_allocation() {
    // The cache allocates 512 positions at a time; decoding across that boundary must not
    // change a logit beyond rounding.
    let unit = reference_model()
        .tokenizer
        .encode(
            "Tunelab measures every method on the user's own hardware. ",
            false,
        )
        .unwrap();
    let ids: Vec<u32> = unit.iter().copied().cycle().take(530).collect();
    assert_cached_steps_match_full_pass(&ids, 505, 2e-3);
}

#[test]
fn quantized_weights_agree_with_the_reference_on_the_top_token() {
    // Chat keeps the GGUF's 4-bit blocks and quantizes activations to 8 bits inside the matmul,
    // as llama.cpp does; that moves logits slightly, so the check is on the ranking.
    let model = native_model();
    let fx = fixture("smollm2_135m_reference.json");
    for case in fx["logits"].as_array().unwrap() {
        let ids = ids_of(case, "ids");
        let rows = logits_rows(&model.transformer.logits(&ids).unwrap());
        for pos in case["positions"].as_array().unwrap() {
            let p = pos["position"].as_u64().unwrap() as usize;
            let want = ids_of(pos, "top10_ids");
            let got = top_k(&rows[p], 10);
            assert_eq!(
                got[0], want[0],
                "top token at position {p} of {:?}",
                case["prompt"]
            );
            let shared = got.iter().filter(|id| want.contains(id)).count();
            assert!(shared >= 7, "top-10 overlap at position {p}: {shared}/10");
        }
    }
}
