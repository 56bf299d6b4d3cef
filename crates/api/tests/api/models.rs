//! The model registry.

use tunelab_api::models::{self, ModelFormat, ModelRole};

use crate::{default_gguf, temp_workspace};
use tunelab_api::ErrorCode;

#[test]
fn adding_a_gguf_registers_it_in_place_with_its_facts() {
    let (_dir, ws) = temp_workspace();
    assert!(
        models::list(&ws).unwrap().is_empty(),
        "a new workspace has no models"
    );
    let entry = models::add(&ws, &default_gguf(), None).unwrap();
    assert_eq!(
        entry.name, "smollm2-135m-instruct.q4_1",
        "the name comes from the file name"
    );
    assert_eq!(entry.role, ModelRole::Chat);
    assert_eq!(entry.format, ModelFormat::Gguf);
    assert_eq!(entry.architecture, "llama");
    assert_eq!(entry.quantization.as_deref(), Some("Q4_1"));
    assert_eq!(entry.context_length, Some(8192));
    let params = entry.parameters.unwrap();
    assert!(
        (134_000_000..136_000_000).contains(&params),
        "SmolLM2-135M has about 134.5M parameters, got {params}"
    );
    assert_eq!(models::list(&ws).unwrap().len(), 1);

    let again = models::add(&ws, &default_gguf(), None).unwrap_err();
    assert_eq!(again.code, ErrorCode::Exists);

    models::remove(&ws, &entry.name).unwrap();
    assert!(models::list(&ws).unwrap().is_empty());
    assert!(
        default_gguf().is_file(),
        "removing a model added in place keeps the user's file"
    );
}

#[test]
fn files_that_are_not_models_are_refused_with_the_reason() {
    let (dir, ws) = temp_workspace();
    let notes = dir.path().join("notes.gguf");
    std::fs::write(&notes, "not a model").unwrap();
    let err = models::add(&ws, &notes, None).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadModel);
    assert!(err.message.contains("notes.gguf"), "{}", err.message);
    let err = models::add(&ws, &dir.path().join("absent.gguf"), None).unwrap_err();
    assert!(err.message.contains("absent.gguf"), "{}", err.message);
    let err = models::add(&ws, &default_gguf(), Some("../escape")).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidInput);
    assert!(
        models::list(&ws).unwrap().is_empty(),
        "nothing was registered"
    );
}

#[test]
fn unknown_names_list_what_is_installed() {
    let (_dir, ws) = temp_workspace();
    models::add(&ws, &default_gguf(), Some("smol")).unwrap();
    let err = models::resolve(&ws, "llama-70b").unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert!(err.message.contains("smol"), "{}", err.message);
}

#[test]
fn a_broken_manifest_is_listed_with_its_problem() {
    let (_dir, ws) = temp_workspace();
    let folder = ws.models_dir().join("broken");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("model.json"), "{ \"name\": ").unwrap();
    let list = models::list(&ws).unwrap();
    assert_eq!(list.len(), 1);
    assert!(
        list[0]
            .problem
            .as_deref()
            .unwrap_or("")
            .contains("model.json"),
        "{:?}",
        list[0].problem
    );
    assert!(!list[0].files_owned);

    // Removing it forgets the manifest and leaves any other file alone.
    std::fs::write(folder.join("weights.gguf"), b"not ours to delete").unwrap();
    models::remove(&ws, "broken").unwrap();
    assert!(models::list(&ws).unwrap().is_empty());
    assert!(folder.join("weights.gguf").is_file());
}

#[test]
fn removing_keeps_files_registered_in_place_and_deletes_downloads() {
    let (_dir, ws) = temp_workspace();
    let added = models::add(&ws, &default_gguf(), Some("smol")).unwrap();
    assert!(!added.files_owned);
    models::remove(&ws, "smol").unwrap();
    assert!(default_gguf().is_file(), "the user's file stays");
    assert!(!ws.models_dir().join("smol").exists());

    // A model the registry owns (as a download is) goes with its files.
    let folder = ws.models_dir().join("pulled");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(default_gguf(), folder.join("m.gguf")).unwrap();
    std::fs::write(
        folder.join("model.json"),
        r#"{"name":"pulled","role":"chat","format":"gguf","entry":"m.gguf","source":{"kind":"hub","repo":"a/b","revision":"main"}}"#,
    )
    .unwrap();
    let listed = models::list(&ws).unwrap();
    assert!(
        listed[0].files_owned && listed[0].problem.is_none(),
        "{listed:?}"
    );
    models::remove(&ws, "pulled").unwrap();
    assert!(!folder.exists());
    assert_eq!(
        models::remove(&ws, "pulled").unwrap_err().code,
        ErrorCode::NotFound
    );
}

/// A one-layer Llama folder with zero weights (F32, all of the tensors its config implies) and
/// the embedding model's tokenizer: enough for `models add` to read everything it checks.
fn tiny_hf_folder(dir: &std::path::Path) -> std::path::PathBuf {
    let folder = dir.join("tiny-llama");
    std::fs::create_dir_all(&folder).unwrap();
    let (hidden, inter, vocab) = (8usize, 16usize, 32usize);
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": inter,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5, "max_position_embeddings": 64, "tie_word_embeddings": true,
    });
    std::fs::write(folder.join("config.json"), config.to_string()).unwrap();
    let tokenizer = default_gguf()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("all-minilm-l6-v2/tokenizer.json");
    std::fs::copy(tokenizer, folder.join("tokenizer.json")).unwrap();
    let mut tensors: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![vocab, hidden]),
        ("model.norm.weight".into(), vec![hidden]),
    ];
    for (part, shape) in [
        ("input_layernorm.weight", vec![hidden]),
        ("post_attention_layernorm.weight", vec![hidden]),
        ("self_attn.q_proj.weight", vec![hidden, hidden]),
        ("self_attn.k_proj.weight", vec![hidden, hidden]),
        ("self_attn.v_proj.weight", vec![hidden, hidden]),
        ("self_attn.o_proj.weight", vec![hidden, hidden]),
        ("mlp.gate_proj.weight", vec![inter, hidden]),
        ("mlp.up_proj.weight", vec![inter, hidden]),
        ("mlp.down_proj.weight", vec![hidden, inter]),
    ] {
        tensors.push((format!("model.layers.0.{part}"), shape));
    }
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in &tensors {
        let bytes = shape.iter().product::<usize>() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.resize(file.len() + offset, 0);
    std::fs::write(folder.join("model.safetensors"), file).unwrap();
    folder
}

#[test]
fn a_hugging_face_folder_is_read_before_it_is_registered() {
    let (dir, ws) = temp_workspace();
    let folder = tiny_hf_folder(dir.path());
    let weights = folder.join("model.safetensors");
    let good = std::fs::read(&weights).unwrap();
    // Each fault is refused at add, naming the file and what is wrong, and nothing is listed.
    let refused = |what: &str, expect: &[&str]| {
        let err = models::add(&ws, &folder, Some("tiny")).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadModel, "{what}: {}", err.message);
        for part in expect {
            assert!(err.message.contains(part), "{what}: {}", err.message);
        }
        assert!(
            models::list(&ws).unwrap().is_empty(),
            "{what}: nothing registered"
        );
    };

    let mut longer_header = good.clone();
    longer_header[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
    std::fs::write(&weights, &longer_header).unwrap();
    refused(
        "a header length past the end",
        &["model.safetensors", "header length"],
    );

    std::fs::write(&weights, &good[..good.len() - 4]).unwrap();
    refused("tensor data cut short", &["model.safetensors", "past the"]);

    std::fs::write(&weights, &good[..20]).unwrap();
    refused("a truncated header", &["model.safetensors"]);

    std::fs::write(&weights, &good).unwrap();
    let config = std::fs::read_to_string(folder.join("config.json")).unwrap();
    std::fs::write(
        folder.join("config.json"),
        config.replace("\"hidden_size\":8", "\"hidden_size\":16"),
    )
    .unwrap();
    refused(
        "shapes the config does not imply",
        &["model.safetensors", "implies"],
    );
    std::fs::write(folder.join("config.json"), &config).unwrap();

    std::fs::rename(folder.join("tokenizer.json"), folder.join("elsewhere.json")).unwrap();
    refused("no tokenizer", &["tokenizer.json"]);
    std::fs::rename(folder.join("elsewhere.json"), folder.join("tokenizer.json")).unwrap();

    // Intact, it registers.
    let entry = models::add(&ws, &folder, Some("tiny")).unwrap();
    assert_eq!(entry.architecture, "llama");
    assert!(entry.problem.is_none(), "{:?}", entry.problem);
}
