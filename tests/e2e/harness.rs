//! What every end-to-end test stands on: tauri-driver and the app started on a workspace of
//! the test's own, the models setup installed, window screenshots, and a loopback hub.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::loopback;
use crate::webdriver::Session;

/// tauri-driver in its own process group, so that dropping it (also when a test fails) ends
/// WebKitWebDriver and the app it started as well.
pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where setup put the default model `name`.
fn default_model(name: &str) -> std::path::PathBuf {
    let ws = tunelab_api::Workspace::open(None).expect("the default workspace opens");
    let (_, path) = tunelab_api::models::resolve(&ws, name)
        .unwrap_or_else(|e| panic!("setup installed {name}: {}", e.message));
    path
}

pub fn default_gguf() -> std::path::PathBuf {
    default_model(tunelab_api::DEFAULT_MODEL)
}

/// Starts tauri-driver for a workspace holding the default models, as setup leaves one.
pub fn start(home: &std::path::Path) -> (Driver, Session) {
    start_with_env(home, &[])
}

/// `start`, with extra environment for the app (it inherits tauri-driver's).
pub fn start_with_env(home: &std::path::Path, env: &[(&str, &str)]) -> (Driver, Session) {
    let ws = tunelab_api::Workspace::open(Some(home.to_path_buf())).unwrap();
    for name in [tunelab_api::DEFAULT_MODEL, "all-minilm-l6-v2"] {
        tunelab_api::models::add(&ws, &default_model(name), Some(name)).unwrap();
    }
    launch(home, env)
}

/// The app under test: the one this test was built with, or the one `TUNELAB_E2E_APP` names
/// (the packaged app, unpacked from the .deb by scripts/test-package.sh).
fn app_binary() -> String {
    std::env::var("TUNELAB_E2E_APP").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tunelab-app").into())
}

/// Starts tauri-driver and the app on the workspace `home` as it is.
pub fn launch(home: &std::path::Path, env: &[(&str, &str)]) -> (Driver, Session) {
    let (port, native) = (free_port(), free_port());
    use std::os::unix::process::CommandExt;
    let child = Command::new("tauri-driver")
        .process_group(0)
        .args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        .env("TUNELAB_HOME", home)
        .env("WEBKIT_DISABLE_DMABUF_RENDERER", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tauri-driver is installed (scripts/setup.sh installs it)");
    let driver = Driver(child);
    let session = Session::start(&format!("http://127.0.0.1:{port}"), &app_binary());
    (driver, session)
}

/// Captures the app's window (WebKitWebDriver's own screenshot call hangs under Xvfb): the
/// first window named Tunelab that ImageMagick can read (WebKit also keeps unmapped ones), or
/// else the whole display.
pub fn screenshot(path: &std::path::Path) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    // WebKit paints a while after the DOM settles (charts drawn on arrival most of all): a
    // capture straight away could show the screen half painted.
    std::thread::sleep(Duration::from_millis(600));
    let ids = Command::new("xdotool")
        .args(["search", "--onlyvisible", "--name", "^Tunelab$"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    let captured = ids.lines().chain(["root"]).any(|target| {
        Command::new("import")
            .args(["-window", target, path.to_str().unwrap()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(captured, "ImageMagick's import captured {}", path.display());
}

/// A one-repository Hugging Face hub on the loopback interface serving `file` as
/// `someone/tiny-chat-GGUF`'s only GGUF, listed with its size (as a mirror that names no
/// commit lists it); returns its address.
pub fn serve_hub(file: Vec<u8>) -> String {
    let listing = format!(
        r#"{{"siblings":[{{"rfilename":"README.md","size":12}},{{"rfilename":"tiny-chat.Q4_1.gguf","size":{}}}]}}"#,
        file.len()
    );
    loopback::serve(std::collections::HashMap::from([
        (
            "/api/models/someone/tiny-chat-GGUF/revision/main?blobs=true".to_string(),
            listing.into_bytes(),
        ),
        (
            "/someone/tiny-chat-GGUF/resolve/main/tiny-chat.Q4_1.gguf".to_string(),
            file,
        ),
    ]))
    .0
}
