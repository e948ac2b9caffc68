//! A real browser for the tests: Debian's headless Chromium, driven over the DevTools
//! protocol (JSON over a WebSocket) with nothing between. Killed when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Browser {
    child: Child,
    socket: Socket,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts Chromium on a blank page and attaches to that page. `--no-sandbox`: tests run
    /// as root in CI containers, where Chromium's sandbox cannot start.
    pub async fn start(width: u32, height: u32) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts (scripts/setup installs Debian's `chromium`)");
        // Chromium prints its DevTools address on stderr; the rest of stderr is drained so
        // that it never blocks on a full pipe.
        let stderr = child.stderr.take().unwrap();
        let (found, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("DevTools listening on ")
                    && let Some(found) = found.take()
                {
                    let _ = found.send(rest.trim().to_string());
                }
            }
        });
        let browser_url = address
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium prints its DevTools address");
        let host = browser_url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .expect("ws://HOST:PORT/...")
            .to_string();
        let page_url = wait_for_page(&host).await;
        let (socket, _) = tokio_tungstenite::connect_async(page_url.as_str())
            .await
            .expect("attach to the page");
        let mut browser = Self {
            child,
            socket,
            next_id: 0,
            _profile: profile,
        };
        browser.call("Page.enable", json!({})).await;
        browser.call("Runtime.enable", json!({})).await;
        browser
    }

    /// One DevTools command and its result; events in between are skipped.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params }).to_string();
        self.socket
            .send(Message::text(request))
            .await
            .expect("send to chromium");
        let wait = async {
            loop {
                let message = self
                    .socket
                    .next()
                    .await
                    .expect("chromium's socket open")
                    .expect("chromium's socket readable");
                let Message::Text(text) = message else {
                    continue;
                };
                let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if value["id"] == id {
                    if let Some(error) = value.get("error") {
                        panic!("{method}: {error}");
                    }
                    return value["result"].clone();
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer from chromium"))
    }

    /// Opens `url` once its server answers (a page loaded before would be an error page).
    pub async fn navigate(&mut self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(url).await.is_err() {
            assert!(Instant::now() < deadline, "{url} never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is `true`; panics with `what` after `timeout`.
    pub async fn wait_for(&mut self, what: &str, timeout: Duration, expression: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            // Before the page has loaded, its elements are missing: not yet, not an error.
            let guarded = format!(
                "(() => {{ try {{ return ({expression}); }} catch (e) {{ return false; }} }})()"
            );
            if self.eval(&guarded).await == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let body = self.eval("document.body.innerText.slice(0, 3000)").await;
                panic!("timed out after {timeout:?} waiting for {what}; the page:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A PNG of the page as shown.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        let result = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(result["data"].as_str().expect("image data"))
            .expect("base64")
    }
}

/// The DevTools WebSocket address of the browser's first page.
async fn wait_for_page(host: &str) -> String {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(format!("http://{host}/json/list")).send().await
            && let Ok(targets) = response.json::<Vec<Value>>().await
            && let Some(url) = targets
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        {
            return url.to_string();
        }
        assert!(Instant::now() < deadline, "chromium lists no page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
