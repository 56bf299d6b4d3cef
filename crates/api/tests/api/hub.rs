//! Hub downloads against a small hub served on the loopback interface: listing, file choice,
//! resuming a partial download with a Range request, and the errors a user sees offline.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use tunelab_api::hub::{self, Hub};
use tunelab_api::jobs::JobKind;

use crate::loopback::{self, RequestLog};
use crate::{default_gguf, temp_workspace};
use tunelab_api::ErrorCode;

const REPO: &str = "someone/tiny-chat-GGUF";
const FILE: &str = "tiny-chat.Q4_1.gguf";
/// The commit `main` points at in the served repository.
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Serves one repository holding one GGUF file, listed with its size and SHA-256 (as the hub
/// lists LFS files) and downloadable at the listed commit only; records every request's
/// Range start.
fn serve(file: Vec<u8>) -> (String, RequestLog) {
    let listed = serde_json::json!({"size": file.len(), "sha256": sha256_hex(&file)});
    serve_listed(file, listed)
}

/// [`serve`] with the file served as `served` but listed as `listed` says (`size`, `sha256`).
fn serve_listed(served: Vec<u8>, listed: serde_json::Value) -> (String, RequestLog) {
    serve_listed_stalling(served, listed, None)
}

/// [`serve_listed`], the file's download stalling after `stall_after` bytes when given.
fn serve_listed_stalling(
    served: Vec<u8>,
    listed: serde_json::Value,
    stall_after: Option<usize>,
) -> (String, RequestLog) {
    let mut entry = serde_json::json!({"rfilename": FILE});
    if let Some(size) = listed.get("size") {
        entry["size"] = size.clone();
    }
    if let Some(sha) = listed.get("sha256") {
        entry["lfs"] =
            serde_json::json!({"sha256": sha, "size": size_of(&listed), "pointerSize": 134});
    }
    let listing = serde_json::json!({
        "sha": COMMIT,
        "siblings": [{"rfilename": "README.md", "size": 12}, entry],
    });
    let file_path = format!("/{REPO}/resolve/{COMMIT}/{FILE}");
    let stall = stall_after.map(|after| (file_path.clone(), after));
    loopback::serve_stalling(
        HashMap::from([
            (
                format!("/api/models/{REPO}/revision/main?blobs=true"),
                listing.to_string().into_bytes(),
            ),
            (file_path, served),
        ]),
        stall,
    )
}

/// Pulls the served repository's GGUF as `tiny`, with no progress shown.
fn pull_tiny(
    ws: &tunelab_api::Workspace,
    endpoint: &str,
) -> tunelab_api::Result<tunelab_api::models::ModelEntry> {
    hub::pull(
        ws,
        &Hub::new(endpoint, None),
        REPO,
        "main",
        None,
        Some("tiny"),
        &mut |_| {},
    )
}

fn size_of(listed: &serde_json::Value) -> serde_json::Value {
    listed
        .get("size")
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn pull_resumes_a_partial_download_and_registers_the_model() {
    let original = std::fs::read(default_gguf()).unwrap();
    let (endpoint, seen) = serve(original.clone());
    let (_dir, ws) = temp_workspace();
    // An earlier pull that stopped after 10 MB left this behind.
    let staging = ws.models_dir().join(".pull-tiny");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join(format!("{FILE}.part")), &original[..10 << 20]).unwrap();

    let mut last = None;
    let entry = hub::pull(
        &ws,
        &Hub::new(&endpoint, None),
        REPO,
        "main",
        None,
        Some("tiny"),
        &mut |p| last = Some(p.clone()),
    )
    .unwrap();
    assert_eq!(entry.name, "tiny");
    assert_eq!(entry.architecture, "llama");
    let last = last.expect("progress was reported");
    assert_eq!(last.downloaded_bytes, original.len() as u64);
    assert_eq!(last.total_bytes, Some(original.len() as u64));
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|r| r.ends_with(&format!("from {}", 10 << 20))),
        "the download resumed with a Range request: {:?}",
        seen.lock().unwrap()
    );

    let (manifest, path) = tunelab_api::models::resolve(&ws, "tiny").unwrap();
    let mut stored = Vec::new();
    std::fs::File::open(&path)
        .unwrap()
        .read_to_end(&mut stored)
        .unwrap();
    assert!(
        stored == original,
        "the downloaded file is byte for byte the served one"
    );
    assert!(
        matches!(manifest.source, tunelab_api::models::ModelSource::Hub { ref repo, ref revision } if repo == REPO && revision == COMMIT),
        "the model records the commit it was downloaded at: {:?}",
        manifest.source
    );
    assert!(
        !staging.exists(),
        "the staging folder became the model folder"
    );
}

#[test]
fn a_stopped_pull_keeps_its_bytes_and_the_next_one_resumes() {
    let original = std::fs::read(default_gguf()).unwrap();
    let (endpoint, seen) = serve(original.clone());
    let (_dir, ws) = temp_workspace();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hub = Hub::new(&endpoint, None).with_cancel(stop.clone());
    let request = hub::PullRequest {
        repo: format!(" {REPO} "),
        revision: Some(String::new()),
        file: None,
        name: Some("tiny".into()),
    };
    // Stop once 5 MB have arrived, as the app's Stop button does.
    let err = hub::pull_request(&ws, &hub, &request, &mut |p| {
        if p.downloaded_bytes >= 5 << 20 {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    })
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Cancelled);
    assert!(err.message.contains("resume"), "{}", err.message);
    let part = ws
        .models_dir()
        .join(".pull-tiny")
        .join(format!("{FILE}.part"));
    let kept = part.metadata().unwrap().len();
    assert!(kept >= 5 << 20 && kept < original.len() as u64, "{kept}");
    assert!(tunelab_api::models::list(&ws).unwrap().is_empty());

    stop.store(false, std::sync::atomic::Ordering::Relaxed);
    let entry = hub::pull_request(&ws, &hub, &request, &mut |_| {}).unwrap();
    assert_eq!(entry.name, "tiny");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|r| r.ends_with(&format!("from {kept}"))),
        "the second pull asked for the rest only: {:?}",
        seen.lock().unwrap()
    );
    let (_, path) = tunelab_api::models::resolve(&ws, "tiny").unwrap();
    assert!(std::fs::read(path).unwrap() == original);

    // A repository id without an owner is refused before anything is fetched.
    let bad = hub::PullRequest {
        repo: "SmolLM2".into(),
        revision: None,
        file: None,
        name: None,
    };
    let err = hub::pull_request(&ws, &hub, &bad, &mut |_| {}).unwrap_err();
    assert!(err.message.contains("owner/name"), "{}", err.message);
}

#[test]
fn a_second_pull_into_the_same_folder_is_refused_while_the_first_downloads() {
    let original = std::fs::read(default_gguf()).unwrap();
    let (endpoint, _) = serve(original);
    let (_dir, ws) = temp_workspace();
    let hub = Hub::new(&endpoint, None);
    let mut checked = false;
    let entry = hub::pull(&ws, &hub, REPO, "main", None, Some("tiny"), &mut |p| {
        if checked || p.downloaded_bytes < 1 << 20 {
            return;
        }
        checked = true;
        // The download is a job of the workspace, listed for every process...
        let listed = tunelab_api::jobs::list(&ws);
        assert!(
            listed
                .iter()
                .any(|j| j.kind == JobKind::Download && j.target == REPO),
            "{listed:?}"
        );
        // ...and a second writer of its staging folder is refused, naming it.
        let err = hub::pull(&ws, &hub, REPO, "main", None, Some("tiny"), &mut |_| {}).unwrap_err();
        assert_eq!(err.code, ErrorCode::Busy);
        assert!(
            err.message.contains(REPO) && err.message.contains("download"),
            "{}",
            err.message
        );
    })
    .unwrap();
    assert!(
        checked,
        "the second pull was tried while the first downloaded"
    );
    assert_eq!(entry.name, "tiny");
    assert!(
        tunelab_api::jobs::list(&ws).is_empty(),
        "the lock went with the finished download"
    );
}

#[test]
fn offline_and_missing_repositories_say_what_to_do() {
    let (_dir, ws) = temp_workspace();
    // Port 9 (discard) on loopback: nothing listens there, so the connection is refused.
    let err = hub::pull(
        &ws,
        &Hub::new("http://127.0.0.1:9", None),
        REPO,
        "main",
        None,
        None,
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Offline);
    assert!(err.message.contains("models add"), "{}", err.message);

    let (endpoint, _) = serve(Vec::new());
    let err = hub::pull(
        &ws,
        &Hub::new(&endpoint, None),
        "nobody/nothing",
        "main",
        None,
        None,
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert!(
        tunelab_api::models::list(&ws).unwrap().is_empty(),
        "failed pulls register nothing"
    );
}

#[test]
fn a_damaged_download_is_fetched_again_then_refused_naming_the_file() {
    let original = std::fs::read(default_gguf()).unwrap();
    let mut damaged = original.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0xff;
    let listed = serde_json::json!({"size": original.len(), "sha256": sha256_hex(&original)});
    let (endpoint, seen) = serve_listed(damaged, listed);
    let (_dir, ws) = temp_workspace();
    let err = pull_tiny(&ws, &endpoint).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadDownload);
    assert!(
        err.message.contains(FILE)
            && err.message.contains("SHA-256")
            && err.message.contains(&sha256_hex(&original)),
        "{}",
        err.message
    );
    let fetched = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.contains("/resolve/"))
        .count();
    assert_eq!(
        fetched, 2,
        "downloaded once more from the start before giving up"
    );
    assert!(tunelab_api::models::list(&ws).unwrap().is_empty());
    let staging = ws.models_dir().join(".pull-tiny");
    assert!(
        !staging.join(FILE).exists(),
        "the damaged file is not kept for a later pull to trust"
    );
}

#[test]
fn a_file_the_listing_gives_no_size_or_checksum_for_is_refused() {
    let original = std::fs::read(default_gguf()).unwrap();
    let (endpoint, _) = serve_listed(original, serde_json::json!({}));
    let (_dir, ws) = temp_workspace();
    let err = pull_tiny(&ws, &endpoint).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadDownload);
    assert!(
        err.message.contains(FILE) && err.message.contains("neither its size nor a checksum"),
        "{}",
        err.message
    );
    assert!(tunelab_api::models::list(&ws).unwrap().is_empty());
}

#[test]
fn a_part_left_by_another_commit_is_not_continued() {
    let original = std::fs::read(default_gguf()).unwrap();
    let (endpoint, seen) = serve(original.clone());
    let (_dir, ws) = temp_workspace();
    // A pull of the same name from an older commit stopped after 4 MB of a different file.
    let staging = ws.models_dir().join(".pull-tiny");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(
        staging.join(".source.json"),
        format!(
            "{{\"repo\":\"{REPO}\",\"revision\":\"{}\"}}",
            "f".repeat(40)
        ),
    )
    .unwrap();
    std::fs::write(staging.join(format!("{FILE}.part")), vec![7u8; 4 << 20]).unwrap();

    pull_tiny(&ws, &endpoint).unwrap();
    let requests = seen.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .filter(|r| r.contains("/resolve/"))
            .all(|r| r.ends_with(" from 0")),
        "the old commit's bytes were dropped, not resumed: {requests:?}"
    );
    let (_, path) = tunelab_api::models::resolve(&ws, "tiny").unwrap();
    assert!(std::fs::read(&path).unwrap() == original);
    assert!(
        !path.parent().unwrap().join(".source.json").exists(),
        "the staging record does not stay in the model's folder"
    );
}

#[test]
fn stop_answers_at_once_while_the_connection_sends_nothing() {
    let original = std::fs::read(default_gguf()).unwrap();
    let listed = serde_json::json!({"size": original.len(), "sha256": sha256_hex(&original)});
    // 2 MB arrive, then the server goes silent with the connection open.
    let (endpoint, _) = serve_listed_stalling(original, listed, Some(2 << 20));
    let (_dir, ws) = temp_workspace();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hub = Hub::new(&endpoint, None).with_cancel(stop.clone());
    let pressed = stop.clone();
    let presser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(2));
        pressed.store(true, std::sync::atomic::Ordering::Relaxed);
        std::time::Instant::now()
    });
    let err = hub::pull(&ws, &hub, REPO, "main", None, Some("tiny"), &mut |_| {}).unwrap_err();
    let answered = std::time::Instant::now();
    let pressed_at = presser.join().unwrap();
    assert_eq!(err.code, ErrorCode::Cancelled, "{}", err.message);
    // The read timeout is 30 s: a Stop that waited for it would take that long.
    let waited = answered.duration_since(pressed_at);
    assert!(
        waited < std::time::Duration::from_secs(5),
        "Stop took {waited:?} on a silent connection"
    );
    let part = ws
        .models_dir()
        .join(".pull-tiny")
        .join(format!("{FILE}.part"));
    assert_eq!(
        part.metadata().unwrap().len(),
        2 << 20,
        "what arrived is kept for the next pull"
    );
}
