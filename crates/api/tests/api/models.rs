//! The model registry.

use tunelab_api::models::{self, ModelFormat, ModelRole};

use crate::{default_gguf, temp_workspace};

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
    assert_eq!(again.code, "exists");

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
    assert_eq!(err.code, "bad_model");
    assert!(err.message.contains("notes.gguf"), "{}", err.message);
    let err = models::add(&ws, &dir.path().join("absent.gguf"), None).unwrap_err();
    assert!(err.message.contains("absent.gguf"), "{}", err.message);
    let err = models::add(&ws, &default_gguf(), Some("../escape")).unwrap_err();
    assert_eq!(err.code, "invalid_input");
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
    assert_eq!(err.code, "not_found");
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
    assert_eq!(models::remove(&ws, "pulled").unwrap_err().code, "not_found");
}
