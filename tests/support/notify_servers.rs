//! Real servers on loopback for the notification tests: an SMTP sink (aiosmtpd, through
//! `notify_smtp_sink.py`) and an HTTP receiver (axum) that records every request and answers
//! as scripted (status codes, `Retry-After`, hanging). Every wait is bounded.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

pub const WAIT: Duration = Duration::from_secs(20);

#[allow(clippy::duplicate_mod)]
#[path = "ports.rs"]
mod ports;
pub use ports::free_port;

// The shared waiting helper, through this module for the tests that use these servers.
#[allow(clippy::duplicate_mod)]
#[path = "eventually.rs"]
mod waiting;
#[allow(unused_imports)]
pub use waiting::{eventually, eventually_blocking, eventually_ok};

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub data: String,
    /// The user that authenticated, if any.
    pub login: Option<String>,
    /// Whether the message came over TLS.
    pub tls: bool,
}

impl Mail {
    fn split(&self) -> (&str, &str) {
        let data = self.data.as_str();
        data.split_once("\r\n\r\n")
            .or_else(|| data.split_once("\n\n"))
            .unwrap_or((data, ""))
    }

    /// Header lines, unfolded, as (name, value).
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in self.split().0.split("\r\n").flat_map(|l| l.split('\n')) {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        headers
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    pub fn subject(&self) -> String {
        self.header("Subject").unwrap_or_default()
    }

    /// The body with CRLF as LF (the messages are plain 7-bit text).
    pub fn body(&self) -> String {
        self.split().1.replace("\r\n", "\n")
    }
}

/// How the SMTP sink secures and guards its door.
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    /// `starttls` or `implicit`, with a certificate and key (PEM files).
    pub tls: Option<(&'static str, PathBuf, PathBuf)>,
    /// `user:password` required (AUTH PLAIN/LOGIN) before mail is accepted.
    pub auth: Option<String>,
    /// Every message is answered `554` (refused for good) and not kept.
    pub refuse: bool,
}

/// aiosmtpd on 127.0.0.1:`port`, writing messages into a temporary directory.
pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    options: SinkOptions,
    child: Option<Child>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/notify_smtp_sink.py")
}

impl SmtpSink {
    pub async fn start() -> Self {
        Self::start_with(SinkOptions::default()).await
    }

    /// Starts the server on a free port. When another socket took the port between its choice
    /// and aiosmtpd's bind (the server exits before it says "listening"), it starts again on
    /// another port.
    pub async fn start_with(options: SinkOptions) -> Self {
        let mut sink = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            options,
            child: None,
        };
        for _ in 1..5 {
            match sink.try_start().await {
                Ok(()) => return sink,
                Err(failure) => {
                    eprintln!("SMTP sink did not start on port {}: {failure}", sink.port);
                    sink.port = free_port();
                }
            }
        }
        sink.restart().await;
        sink
    }

    /// (Re)starts the server on the same port and waits until it says it is listening (it
    /// does so once aiosmtpd has answered its own test connection).
    pub async fn restart(&mut self) {
        if let Err(failure) = self.try_start().await {
            panic!("SMTP sink did not start on port {}: {failure}", self.port);
        }
    }

    async fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "already running");
        let mut command = Command::new("/usr/bin/python3");
        command
            .arg(script())
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path());
        if let Some((mode, cert, key)) = &self.options.tls {
            command
                .args(["--tls", mode])
                .arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key);
        }
        if let Some(auth) = &self.options.auth {
            command.args(["--auth", auth]);
        }
        if self.options.refuse {
            command.arg("--refuse");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start /usr/bin/python3 (python3-aiosmtpd: run scripts/setup)");
        let stdout = child.stdout.take().unwrap();
        self.child = Some(child);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = ready_tx.send(first);
            // Keep the pipe drained for as long as the process lives.
            for _ in lines {}
        });
        match tokio::time::timeout(WAIT, ready_rx).await {
            Ok(Ok(Some(line))) if line.starts_with("listening") => Ok(()),
            other => {
                self.stop();
                Err(match other {
                    Ok(Ok(Some(line))) => format!("it said {line:?}"),
                    Ok(_) => "it exited before it listened (its error is above)".to_string(),
                    Err(_) => format!("it did not say \"listening\" within {WAIT:?}"),
                })
            }
        }
    }

    /// Whether the next (re)start refuses every message.
    pub fn set_refusing(&mut self, refuse: bool) {
        self.options.refuse = refuse;
    }

    /// Stops the server (the process this sink started) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("msg-") && n.ends_with(".json"))
            })
            .collect();
        names.sort_by_key(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok());
        names
            .into_iter()
            .map(|path| {
                let record: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                Mail {
                    mail_from: record["mail_from"].as_str().unwrap_or_default().into(),
                    rcpt_tos: record["rcpt_tos"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_str().unwrap().to_string())
                        .collect(),
                    data: record["data"].as_str().unwrap_or_default().into(),
                    login: record["login"].as_str().map(str::to_string),
                    tls: record["tls"].as_bool().unwrap_or(false),
                }
            })
            .collect()
    }

    /// Waits until at least `count` messages arrived; returns all of them.
    pub async fn wait_for(&self, count: usize) -> Vec<Mail> {
        eventually(WAIT, &format!("{count} mails"), || {
            let mails = self.mails();
            (mails.len() >= count).then_some(mails)
        })
        .await
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How the HTTP receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    TooMany(u64),
    /// Never answers (the client's timeout must fire).
    Hang,
}

/// One request the HTTP receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: serde_json::Value,
    pub at: Instant,
    /// What it was answered (`None`: left hanging).
    pub answered: Option<u16>,
}

#[derive(Clone)]
struct ReceiverState {
    script: Arc<Mutex<HashMap<String, VecDeque<Reply>>>>,
    requests: mpsc::Sender<Received>,
}

/// An axum server on 127.0.0.1 that records every POST and answers from a per-path script
/// (then 200 once the script for that path is used up).
pub struct HttpReceiver {
    pub addr: SocketAddr,
    script: Arc<Mutex<HashMap<String, VecDeque<Reply>>>>,
    requests: mpsc::Receiver<Received>,
    server: tokio::task::JoinHandle<()>,
    /// Everything received so far, in order.
    pub seen: Vec<Received>,
}

async fn record(
    State(state): State<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let reply = state
        .script
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(|replies| replies.pop_front())
        .unwrap_or(Reply::Status(200));
    let answered = match reply {
        Reply::Status(code) => Some(code),
        Reply::TooMany(_) => Some(429),
        Reply::Hang => None,
    };
    let received = Received {
        path,
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        at: Instant::now(),
        answered,
    };
    let _ = state.requests.send(received).await;
    match reply {
        Reply::Status(code) => (StatusCode::from_u16(code).unwrap(), "{}").into_response(),
        Reply::TooMany(seconds) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("Retry-After", seconds.to_string())],
            "slow down",
        )
            .into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

impl HttpReceiver {
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Starts on `port` (0: any free port).
    pub async fn start_on(port: u16) -> Self {
        let script: Arc<Mutex<HashMap<String, VecDeque<Reply>>>> = Arc::default();
        let (tx, requests) = mpsc::channel(4096);
        let state = ReceiverState {
            script: script.clone(),
            requests: tx,
        };
        let app = Router::new()
            .fallback(axum::routing::post(record))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the HTTP receiver");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            script,
            requests,
            server,
            seen: Vec::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next replies for `path`, in order.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.script
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_default()
            .extend(replies);
    }

    /// Waits for the next request (bounded).
    pub async fn next(&mut self) -> Received {
        let received = tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("timed out waiting for an HTTP request")
            .expect("receiver running");
        self.seen.push(received.clone());
        received
    }

    /// Waits until `count` requests to `path` that were answered with success arrived.
    pub async fn wait_ok(&mut self, path: &str, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + WAIT;
        loop {
            let ok: Vec<Received> = self
                .seen
                .iter()
                .filter(|r| r.path == path && r.answered.is_some_and(|c| (200..300).contains(&c)))
                .cloned()
                .collect();
            if ok.len() >= count {
                return ok;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.requests.recv()).await {
                Ok(Some(received)) => self.seen.push(received),
                _ => panic!(
                    "timed out waiting for {count} successful requests to {path}; got {}",
                    ok.len()
                ),
            }
        }
    }

    /// Everything that arrived without waiting.
    pub fn drain(&mut self) -> &[Received] {
        while let Ok(received) = self.requests.try_recv() {
            self.seen.push(received);
        }
        &self.seen
    }

    pub fn on(&mut self, path: &str) -> Vec<Received> {
        self.drain();
        self.seen
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn stop(&self) {
        self.server.abort();
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A self-signed certificate for 127.0.0.1 (and its key), made with the openssl command.
pub fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl (scripts/setup installs it)");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// The shipped configuration with every new incident mailed to `admins@example.com` through
/// the SMTP sink on `smtp_port` (no TLS), no escalation recipients, and no rate limit in the
/// way of a flood. Callers change what their test is about.
pub fn mail_admins_config(smtp_port: u16) -> incident_console::config::Config {
    use incident_console::notify::Channel;
    use incident_console::notify::config::{RouteConfig, SmtpTls};
    let mut config = incident_console::config::Config::built_in();
    let notify = &mut config.notifications;
    notify.administrators = vec!["admins@example.com".into()];
    notify.routes = vec![RouteConfig {
        kinds: vec![incident_console::core::engine::NotificationKind::IncidentCreated],
        channels: vec![Channel::Email],
        ..RouteConfig::default()
    }];
    notify.escalation_levels.clear();
    notify.email.smtp_host = Some("127.0.0.1".into());
    notify.email.smtp_port = Some(smtp_port);
    notify.email.tls = SmtpTls::None;
    notify.rate_limit.burst = 1_000_000;
    notify.rate_limit.per_minute = 1_000_000;
    config
}

/// Writes `config` to `path` readable by its owner only (it may hold secrets).
pub fn write_private_config(config: &incident_console::config::Config, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, config.to_redacted_ron()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
