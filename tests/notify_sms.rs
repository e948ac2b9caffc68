//! SMS through Twilio's Messages API, against a loopback HTTP server (axum) that answers as the
//! API does: 201 with a message SID, 400 with a Twilio error code (final), 429 with
//! Retry-After (retried after it). Also routing to numbers, the 160-character template, dedup
//! and the rate limit's digest, and that the credentials never reach the logs or the status.

#[path = "support/notify_fixtures.rs"]
mod fixtures;
#[path = "support/notify_servers.rs"]
mod servers;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Form;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use incident_console::core::engine::{Audience, Notification, NotificationKind};
use incident_console::core::event::Priority;
use incident_console::notify::config::{Channel, LevelRecipients, RouteConfig};
use incident_console::notify::{Notifier, NotifyConfig};

use fixtures::{fast_config, notification};
use servers::{WAIT, eventually};

const SID: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "twilio-secret-token";
const FROM: &str = "+15005550006";
const MESSAGES: &str = "/2010-04-01/Accounts/AC00000000000000000000000000000001/Messages.json";

#[derive(Clone, Copy, Debug)]
enum Answer {
    Created,
    /// 400 with this Twilio error code.
    Invalid(u32),
    /// 429 with `Retry-After: <seconds>`.
    TooMany(u64),
    ServerError,
}

#[derive(Debug, Clone)]
struct Sms {
    path: String,
    authorization: String,
    form: BTreeMap<String, String>,
    at: Instant,
    status: u16,
}

#[derive(Clone)]
struct FakeState {
    script: Arc<Mutex<HashMap<String, VecDeque<Answer>>>>,
    requests: mpsc::Sender<Sms>,
    counter: Arc<Mutex<u32>>,
}

/// A fake of the Messages API: answers per `To` number from a script, then 201.
struct FakeTwilio {
    addr: std::net::SocketAddr,
    script: Arc<Mutex<HashMap<String, VecDeque<Answer>>>>,
    requests: mpsc::Receiver<Sms>,
    seen: Vec<Sms>,
    server: tokio::task::JoinHandle<()>,
}

async fn messages(
    State(state): State<FakeState>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let to = form.get("To").cloned().unwrap_or_default();
    let answer = state
        .script
        .lock()
        .unwrap()
        .get_mut(&to)
        .and_then(VecDeque::pop_front)
        .unwrap_or(Answer::Created);
    let status = match answer {
        Answer::Created => 201,
        Answer::Invalid(_) => 400,
        Answer::TooMany(_) => 429,
        Answer::ServerError => 500,
    };
    let sms = Sms {
        path: uri.path().to_string(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        form: form.clone(),
        at: Instant::now(),
        status,
    };
    let _ = state.requests.send(sms).await;
    match answer {
        Answer::Created => {
            let n = {
                let mut counter = state.counter.lock().unwrap();
                *counter += 1;
                *counter
            };
            let body = serde_json::json!({
                "sid": format!("SM{n:032x}"),
                "status": "queued",
                "to": to,
                "from": form.get("From"),
                "body": form.get("Body"),
            });
            (StatusCode::CREATED, axum::Json(body)).into_response()
        }
        Answer::Invalid(code) => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "code": code,
                "message": format!("The 'To' number {to} is not a valid phone number."),
                "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
                "status": 400,
            })),
        )
            .into_response(),
        Answer::TooMany(seconds) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("Retry-After", seconds.to_string())],
            axum::Json(
                serde_json::json!({"code": 20429, "message": "Too Many Requests", "status": 429}),
            ),
        )
            .into_response(),
        Answer::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
    }
}

impl FakeTwilio {
    async fn start() -> Self {
        let script: Arc<Mutex<HashMap<String, VecDeque<Answer>>>> = Arc::default();
        let (tx, requests) = mpsc::channel(4096);
        let state = FakeState {
            script: script.clone(),
            requests: tx,
            counter: Arc::default(),
        };
        let app = Router::new()
            .fallback(axum::routing::post(messages))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            script,
            requests,
            seen: Vec::new(),
            server,
        }
    }

    fn script(&self, to: &str, answers: impl IntoIterator<Item = Answer>) {
        self.script
            .lock()
            .unwrap()
            .entry(to.to_string())
            .or_default()
            .extend(answers);
    }

    fn drain(&mut self) -> &[Sms] {
        while let Ok(sms) = self.requests.try_recv() {
            self.seen.push(sms);
        }
        &self.seen
    }

    /// Waits until `count` messages were accepted (201), bounded.
    async fn wait_created(&mut self, count: usize) -> Vec<Sms> {
        let deadline = Instant::now() + WAIT;
        loop {
            let created: Vec<Sms> = self
                .seen
                .iter()
                .filter(|s| s.status == 201)
                .cloned()
                .collect();
            if created.len() >= count {
                return created;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.requests.recv()).await {
                Ok(Some(sms)) => self.seen.push(sms),
                _ => panic!("timed out waiting for {count} SMS; got {}", created.len()),
            }
        }
    }
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Standard base64 with padding, to check the `Authorization` header independently.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn sms_config(twilio: &FakeTwilio) -> NotifyConfig {
    let mut config = fast_config();
    config.routes = vec![RouteConfig {
        channels: vec![Channel::Sms],
        ..RouteConfig::default()
    }];
    config.escalation_levels = vec![LevelRecipients {
        level: 1,
        users: vec!["oncall.one".into(), "nobody".into()],
        emails: vec![],
        channels: vec![Channel::Sms],
    }];
    config.sms.api_url = format!("http://{}/", twilio.addr);
    config.sms.numbers = vec!["+15550000001".into()];
    config.sms.users = BTreeMap::from([("oncall.one".into(), "+15550000101".into())]);
    config.apply_env(&|name| match name {
        "TWILIO_ACCOUNT_SID" => Some(SID.into()),
        "TWILIO_AUTH_TOKEN" => Some(TOKEN.into()),
        "TWILIO_FROM_NUMBER" => Some(FROM.into()),
        _ => None,
    });
    config
}

fn created(id: i64, title: &str) -> Notification {
    notification(
        NotificationKind::IncidentCreated,
        Audience::Administrators,
        id,
        title,
        Priority::High,
        &[
            ("status", "open"),
            ("category", "hardware"),
            ("reported_by", "john.doe"),
            ("assignee", "jane.smith"),
            ("created_at", "2024-01-01T10:00:00+00:00"),
        ],
    )
}

fn page(id: i64) -> Notification {
    notification(
        NotificationKind::Escalation,
        Audience::EscalationLevel { level: 1 },
        id,
        "Server Down",
        Priority::Critical,
        &[
            ("level", "1"),
            ("level_name", "on-call"),
            ("repeat", "0"),
            ("reason", "new incident"),
            ("opened_at", "2024-01-01T10:00:00+00:00"),
        ],
    )
}

fn sms_status(notifier: &Notifier) -> incident_console::status::ChannelStatus {
    notifier
        .status()
        .channels
        .into_iter()
        .find(|c| c.name == "sms")
        .expect("an sms channel")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_is_a_form_post_with_basic_auth_to_the_level_users_number() {
    let mut twilio = FakeTwilio::start().await;
    let mut notifier = Notifier::start(&sms_config(&twilio)).unwrap();
    notifier.submit(page(42));
    let sent = twilio.wait_created(1).await;
    let sms = &sent[0];
    assert_eq!(sms.path, MESSAGES);
    let expected = base64(format!("{SID}:{TOKEN}").as_bytes());
    assert_eq!(sms.authorization, format!("Basic {expected}"));
    assert_eq!(sms.form["To"], "+15550000101");
    assert_eq!(sms.form["From"], FROM);
    assert_eq!(
        sms.form["Body"],
        "PAGE L1 critical #42: Server Down (new incident)"
    );
    // "nobody" has no number: counted as unroutable, not sent.
    let status = eventually(WAIT, "the delivery and the unroutable user", || {
        let status = sms_status(&notifier);
        (status.delivered == 1 && status.failures.get("no_number") == Some(&1)).then_some(status)
    })
    .await;
    assert_eq!(status.failed, 1, "{status:?}");
    notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!(twilio.drain().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_title_is_cut_to_one_160_character_message() {
    let mut twilio = FakeTwilio::start().await;
    let mut notifier = Notifier::start(&sms_config(&twilio)).unwrap();
    let title = "Disk full on db-7\nand ".repeat(20);
    notifier.submit(created(7, &title));
    let sent = twilio.wait_created(1).await;
    let body = &sent[0].form["Body"];
    assert_eq!(sent[0].form["To"], "+15550000001");
    assert_eq!(body.chars().count(), 160, "{body}");
    assert!(
        body.starts_with("NEW high #7: Disk full on db-7 and"),
        "{body}"
    );
    assert!(!body.contains('\n'));
    notifier.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_number_is_final_and_counted_by_twilio_code() {
    let mut twilio = FakeTwilio::start().await;
    twilio.script("+15550000001", [Answer::Invalid(21211)]);
    let mut notifier = Notifier::start(&sms_config(&twilio)).unwrap();
    notifier.submit(created(5, "Server Down"));
    let status = eventually(WAIT, "the failure to be counted", || {
        let status = sms_status(&notifier);
        (status.failed == 1).then_some(status)
    })
    .await;
    assert_eq!(status.failures.get("twilio_21211"), Some(&1), "{status:?}");
    assert_eq!(status.retrying, 0);
    let error = status.last_error.clone().unwrap_or_default();
    assert!(error.contains("not a valid phone number"), "{error}");
    // The next notification goes through; the refused one was never tried again.
    notifier.submit(created(6, "Server Down"));
    twilio.wait_created(1).await;
    notifier.shutdown(Duration::from_secs(5)).await;
    let statuses: Vec<u16> = twilio.drain().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [400, 201]);
    let printed = format!("{:?}", notifier.status());
    assert!(
        !printed.contains(TOKEN) && !printed.contains(SID),
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_is_retried_after_retry_after() {
    let mut twilio = FakeTwilio::start().await;
    twilio.script("+15550000001", [Answer::TooMany(1)]);
    let mut notifier = Notifier::start(&sms_config(&twilio)).unwrap();
    notifier.submit(created(8, "Server Down"));
    twilio.wait_created(1).await;
    let attempts = twilio.drain().to_vec();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, 429);
    // The configured backoff is at most 200 ms; Retry-After asked for 1 s.
    let gap = attempts[1].at - attempts[0].at;
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
    assert_eq!(attempts[0].form, attempts[1].form, "the same message again");
    notifier.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_duplicates_sent_once() {
    let mut twilio = FakeTwilio::start().await;
    twilio.script("+15550000001", [Answer::ServerError]);
    let mut notifier = Notifier::start(&sms_config(&twilio)).unwrap();
    notifier.submit(created(9, "Server Down"));
    notifier.submit(created(9, "Server Down"));
    twilio.wait_created(1).await;
    eventually(WAIT, "the delivery and the duplicate to be counted", || {
        let status = sms_status(&notifier);
        (status.delivered == 1 && status.deduplicated == 1).then_some(())
    })
    .await;
    notifier.shutdown(Duration::from_secs(5)).await;
    let statuses: Vec<u16> = twilio.drain().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [500, 201]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_sends_the_burst_then_one_digest_text() {
    let mut twilio = FakeTwilio::start().await;
    let mut config = sms_config(&twilio);
    config.rate_limit.burst = 2;
    config.rate_limit.per_minute = 1;
    config.rate_limit.digest_interval_secs = 1;
    let mut notifier = Notifier::start(&config).unwrap();
    for id in 100..110 {
        notifier.submit(created(id, "Server Down"));
    }
    let sent = twilio.wait_created(3).await;
    let digest = sent
        .iter()
        .find(|s| s.form["Body"].contains("suppressed by the rate limit"))
        .expect("a digest");
    assert!(
        digest.form["Body"].starts_with("8 more notifications"),
        "{:?}",
        digest.form
    );
    assert!(digest.form["Body"].chars().count() <= 160);
    notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!(twilio.drain().len(), 3, "2 notifications and 1 digest");
}

/// The credentials may come from files (`*_FILE`), like the other secrets, and
/// `--print-config` never shows them.
#[test]
fn credentials_come_from_files_and_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let sid = dir.path().join("sid");
    std::fs::write(&sid, SID).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_incident-console"))
        .arg("--print-config")
        .env_remove("INCIDENT_CONSOLE_CONFIG")
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("TWILIO_ACCOUNT_SID_FILE", &sid)
        .env("TWILIO_AUTH_TOKEN_FILE", &token)
        .env("TWILIO_FROM_NUMBER", FROM)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(
        !printed.contains(TOKEN) && !printed.contains(SID),
        "{printed}"
    );
    assert!(printed.contains(FROM), "the sender is not a secret");
    let sms = printed.split("sms:").nth(1).expect("an sms section");
    assert_eq!(sms.matches("<redacted>").count(), 2, "{sms}");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_incident-console"))
        .arg("--print-config")
        .env_remove("INCIDENT_CONSOLE_CONFIG")
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("TWILIO_AUTH_TOKEN_FILE", dir.path().join("missing"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("TWILIO_AUTH_TOKEN_FILE="), "{stderr}");
}
