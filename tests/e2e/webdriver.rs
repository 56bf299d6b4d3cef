//! A minimal W3C WebDriver client over HTTP: just the calls the end-to-end tests make.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Session {
    base: String,
    id: String,
}

fn post(url: &str, body: Value) -> Value {
    let mut resp = ureq::post(url)
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .send_json(body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let text = resp
        .body_mut()
        .read_to_string()
        .expect("WebDriver answers with text");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("POST {url}: not JSON: {text}"))
}

fn get(url: &str) -> Value {
    let mut resp = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let text = resp
        .body_mut()
        .read_to_string()
        .expect("WebDriver answers with text");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("GET {url}: not JSON: {text}"))
}

impl Session {
    /// Opens the app through tauri-driver listening at `base` (e.g. http://127.0.0.1:4444).
    pub fn start(base: &str, application: &str) -> Session {
        let caps = json!({ "capabilities": { "alwaysMatch": { "browserName": "wry", "tauri:options": { "application": application } } } });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = ureq::post(&format!("{base}/session"))
                .config()
                .http_status_as_error(false)
                .build()
                .send_json(&caps);
            if let Ok(mut resp) = answer {
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if let Some(id) = v["value"]["sessionId"].as_str() {
                    return Session {
                        base: base.to_string(),
                        id: id.to_string(),
                    };
                }
                assert!(Instant::now() < deadline, "no WebDriver session: {text}");
            }
            assert!(
                Instant::now() < deadline,
                "tauri-driver did not answer at {base}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.id)
    }

    /// The first element matching a CSS selector, waiting up to `timeout` for it to appear.
    pub fn find(&self, css: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let v = post(
                &self.url("/element"),
                json!({ "using": "css selector", "value": css }),
            );
            // W3C names the element reference with this fixed key; errors come as {error, message}.
            if let Some(id) = v["value"]["element-6066-11e4-a52e-4f735466cecf"].as_str() {
                return id.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no element matches `{css}` after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn text(&self, element: &str) -> String {
        get(&self.url(&format!("/element/{element}/text")))["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The DOM text of the first element matching `css` (including text WebKit's rendered-text
    /// view leaves out, such as ellipsised titles), or None when nothing matches.
    pub fn text_content(&self, css: &str) -> Option<String> {
        let script =
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;";
        post(
            &self.url("/execute/sync"),
            json!({ "script": script, "args": [css] }),
        )["value"]
            .as_str()
            .map(String::from)
    }

    /// Scrolls the first element matching `css` to the top of the view (for a screenshot).
    pub fn scroll_to(&self, css: &str) {
        let script = "const e = document.querySelector(arguments[0]); if (e) e.scrollIntoView({ block: 'start' });";
        post(
            &self.url("/execute/sync"),
            json!({ "script": script, "args": [css] }),
        );
    }

    pub fn clear(&self, element: &str) {
        post(&self.url(&format!("/element/{element}/clear")), json!({}));
    }

    /// The attribute `name` of the first element matching `css`, if there is one.
    pub fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let script = "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;";
        post(
            &self.url("/execute/sync"),
            json!({ "script": script, "args": [css, name] }),
        )["value"]
            .as_str()
            .map(String::from)
    }

    pub fn click(&self, element: &str) {
        post(&self.url(&format!("/element/{element}/click")), json!({}));
    }

    pub fn type_text(&self, element: &str, text: &str) {
        post(
            &self.url(&format!("/element/{element}/value")),
            json!({ "text": text }),
        );
    }

    /// Waits until the element's text satisfies `check`, returning the text.
    pub fn wait_text(&self, css: &str, timeout: Duration, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let el = self.find(css, timeout);
            let text = self.text(&el);
            if check(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "`{css}` never reached the expected text; last: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `wait_text` over the DOM text (`text_content`), for text WebKit's rendered-text view
    /// leaves out.
    pub fn wait_content(
        &self,
        css: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text_content(css).unwrap_or_default();
            if check(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "`{css}` never reached the expected content; last: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn close(self) {
        let _ = ureq::delete(&self.url("")).call();
    }
}
