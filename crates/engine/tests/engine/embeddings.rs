//! Sentence embeddings of all-MiniLM-L6-v2 against sentence-transformers' reference.

use tunelab_engine::bert::{Pooling, SentenceEncoder};
use tunelab_engine::Device;

use crate::{fixture, models_dir};

fn encoder() -> SentenceEncoder {
    let folder = models_dir().join("all-minilm-l6-v2");
    assert!(
        folder.join("model.safetensors").is_file(),
        "{} is missing: run scripts/setup.sh (or scripts/fetch-models.py) first",
        folder.display()
    );
    SentenceEncoder::load(&folder, &Device::Cpu).expect("encoder loads")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_token_ids_and_embeddings_match_the_reference() {
    let reference = fixture("minilm_l6_v2_reference.json");
    let cases = reference["cases"].as_array().unwrap();
    let encoder = encoder();
    assert_eq!(encoder.dimension(), 384);
    assert_eq!(encoder.pooling(), Pooling::Mean);
    assert_eq!(encoder.max_tokens(), 256);

    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    for (case, text) in cases.iter().zip(&texts) {
        let want: Vec<u32> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            encoder.token_ids(text).unwrap(),
            want,
            "token ids of {text:?}"
        );
    }
    // All cases in one call: sorted into batches with padding, as ingestion embeds them.
    let got = encoder.embed(&texts).unwrap();
    let mut worst = 1f32;
    for ((case, text), vector) in cases.iter().zip(&texts).zip(&got) {
        let want: Vec<f32> = case["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(vector.len(), want.len());
        let c = cosine(vector, &want);
        worst = worst.min(c);
        assert!(c >= 0.999, "cosine {c} for {text:?}");
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    }
    eprintln!(
        "lowest cosine to the reference over {} cases: {worst:.6}",
        cases.len()
    );
    // One text alone embeds the same as inside a padded batch.
    let alone = encoder.embed(&texts[..1]).unwrap();
    assert!(cosine(&alone[0], &got[0]) > 0.99999);

    // A search query takes the 8-bit path; it too stays within 0.999 of the reference and of
    // the full-precision vector of the same text, so queries still meet documents.
    let mut worst_query = 1f32;
    for ((case, text), full) in cases.iter().zip(&texts).zip(&got) {
        let want: Vec<f32> = case["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let query = encoder.embed_query(text).unwrap();
        let c = cosine(&query, &want);
        worst_query = worst_query.min(c);
        assert!(c >= 0.999, "query cosine {c} for {text:?}");
        assert!(cosine(&query, full) >= 0.999, "query vs full for {text:?}");
        let norm: f32 = query.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    }
    eprintln!("lowest cosine of a query embedding to the reference: {worst_query:.6}");
    // One-word queries pool over few rows, so rounding shows most there: still ≥ 0.998.
    for q in ["warranty", "refund", "shipping times", "a"] {
        let full = encoder.embed(&[q]).unwrap().remove(0);
        let c = cosine(&full, &encoder.embed_query(q).unwrap());
        assert!(c >= 0.998, "query cosine {c} to full precision for {q:?}");
    }
}

#[test]
fn the_path_a_gpu_takes_embeds_like_the_cpu_kernels() {
    // Attention with a padding mask, candle's GELU and full-precision layers, run on the CPU:
    // the same vectors as the CPU's own kernels, for every length in one padded batch, and
    // for queries (which the CPU answers in 8 bits).
    let reference = fixture("minilm_l6_v2_reference.json");
    let texts: Vec<&str> = reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    let (fused, portable) = (encoder(), encoder().portable());
    let a = fused.embed(&texts).unwrap();
    let b = portable.embed(&texts).unwrap();
    for ((x, y), text) in a.iter().zip(&b).zip(&texts) {
        let c = cosine(x, y);
        assert!(c > 0.99999, "cosine {c} between the two paths for {text:?}");
    }
    for (text, full) in texts.iter().zip(&a) {
        let query = portable.embed_query(text).unwrap();
        assert!(cosine(&query, full) > 0.99999, "query {text:?}");
    }
}

#[test]
fn similar_sentences_are_closer_than_unrelated_ones() {
    let encoder = encoder();
    let v = encoder
        .embed(&[
            "How many days do I have to return a purchase?",
            "Our refund policy allows returns within 30 days of purchase.",
            "The mitochondria is the powerhouse of the cell.",
        ])
        .unwrap();
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.2);
}

#[test]
fn a_folder_that_is_not_an_encoder_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"model_type":"llama","hidden_size":8,"num_attention_heads":2,"num_hidden_layers":1,"max_position_embeddings":8}"#,
    )
    .unwrap();
    let err = SentenceEncoder::load(dir.path(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("config.json") && err.contains("llama"),
        "{err}"
    );
}
