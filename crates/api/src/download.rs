//! One resumable HTTP download into a file, shared by hub pulls and the default models' wheels:
//! bytes go to `<dest>.part`, a later call continues it with a range request, and the file
//! gets its final name only once complete. Connect and read timeouts keep a stalled connection
//! from hanging a download for good, and the body is read on a thread of its own, so Stop
//! answers within a fraction of a second even while the connection sends nothing.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::error::{ApiError, ErrorCode, Result};

/// A connection that sends nothing for this long is given up (the partial file stays).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a download waiting for bytes looks at its Stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The shared HTTP agent: timeouts set, HTTP errors returned as `ureq::Error::StatusCode`.
pub(crate) fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(READ_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .user_agent(concat!("tunelab/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    })
}

/// The JSON body of `resp`, the answer of `server` (e.g. "the hub") to `url`; `map_err` words
/// a connection that broke while reading it.
pub(crate) fn read_json(
    mut resp: ureq::http::Response<ureq::Body>,
    url: &str,
    server: &str,
    map_err: &dyn Fn(ureq::Error) -> ApiError,
) -> Result<serde_json::Value> {
    let text = resp.body_mut().read_to_string().map_err(map_err)?;
    serde_json::from_str(&text).map_err(|e| {
        ApiError::new(
            ErrorCode::HubError,
            format!("{url}: unexpected answer from {server}: {e}"),
        )
    })
}

/// `dest` with `.part` added to its file name.
pub(crate) fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// A GET of `url` with `headers`, continuing `<dest>.part` when there is one; reports
/// `(bytes so far, total)` and stops, keeping the part, soon after `cancel` is set.
/// `map_err` turns a failed request into the caller's own words (which server, what to do).
pub(crate) fn resume_to_file(
    url: &str,
    headers: &[(&str, String)],
    dest: &Path,
    cancel: Option<&AtomicBool>,
    map_err: &dyn Fn(ureq::Error) -> ApiError,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<()> {
    let part = part_path(dest);
    if let Some(parent) = part.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ApiError::io(parent, e))?;
    }
    let have = part.metadata().map(|m| m.len()).unwrap_or(0);
    let mut req = agent().get(url);
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    if have > 0 {
        req = req.header("Range", &format!("bytes={have}-"));
    }
    // Statuses are read here: a 416 says how long the file is.
    let resp = req
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .map_err(map_err)?;
    let status = resp.status().as_u16();
    if status == 416 && have > 0 {
        // Nothing past the part's end: it is complete when the file is as long as the part
        // (`Content-Range: bytes */N`). Longer than the file (it changed since), or a server
        // that does not say: the part is dropped and the download starts over.
        let size = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes */"))
            .and_then(|n| n.trim().parse::<u64>().ok());
        if size == Some(have) {
            progress(have, Some(have));
            return finish(&part, dest);
        }
        std::fs::remove_file(&part).map_err(|e| ApiError::io(&part, e))?;
        return resume_to_file(url, headers, dest, cancel, map_err, progress);
    }
    if status >= 400 {
        return Err(map_err(ureq::Error::StatusCode(status)));
    }
    let resumed = status == 206;
    let length = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (mut done, total) = if resumed {
        (have, length.map(|l| l + have))
    } else {
        (0, length)
    };
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&part)
        .map_err(|e| ApiError::io(&part, e))?;
    let chunks = read_on_a_thread(resp.into_body().into_with_config().limit(u64::MAX).reader());
    let stopped = || cancel.is_some_and(|c| c.load(Ordering::Relaxed));
    let stop = |out: &std::fs::File, done: u64| -> ApiError {
        if let Err(e) = out.sync_all() {
            return ApiError::io(&part, e);
        }
        let file = dest.file_name().unwrap_or_default().to_string_lossy();
        ApiError::new(
            ErrorCode::Cancelled,
            format!("{file}: stopped after {done} bytes; start the download again to resume"),
        )
    };
    loop {
        // Only this thread writes the part: once it returns, no byte more lands in the file,
        // whatever the reading thread is still waiting for.
        let chunk = match chunks.recv_timeout(STOP_POLL) {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => {
                return Err(ApiError::new(
                    ErrorCode::Offline,
                    format!("{url}: download interrupted ({e}); start it again to resume"),
                ))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if stopped() => {
                return Err(stop(&out, done))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        out.write_all(&chunk).map_err(|e| ApiError::io(&part, e))?;
        done += chunk.len() as u64;
        progress(done, total);
        if stopped() {
            return Err(stop(&out, done));
        }
    }
    out.sync_all().map_err(|e| ApiError::io(&part, e))?;
    if let Some(total) = total {
        if done != total {
            return Err(ApiError::new(
                ErrorCode::Offline,
                format!("{url}: got {done} of {total} bytes; start the download again to resume"),
            ));
        }
    }
    finish(&part, dest)
}

/// Reads `body` to its end on a thread of its own, sending its bytes in pieces of up to 1 MiB
/// (a few at a time in flight); the channel closes at the end, after an error, or when the
/// receiver is gone (a stopped download: the thread ends once its read returns).
fn read_on_a_thread(
    mut body: impl Read + Send + 'static,
) -> std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    std::thread::spawn(move || loop {
        let mut buf = vec![0u8; 1 << 20];
        match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                buf.truncate(n);
                if tx.send(Ok(buf)).is_err() {
                    break;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                break;
            }
        }
    });
    rx
}

fn finish(part: &Path, dest: &Path) -> Result<()> {
    std::fs::rename(part, dest).map_err(|e| ApiError::io(dest, e))
}
