//! The live web view: one page and a WebSocket that pushes what the console shows (feed,
//! escalation queue, acknowledgements, per-type metrics), for the wall screen and for those
//! without a terminal. It is a face like the console: it reads the snapshots the runtime (or,
//! in team mode, the console role) publishes and sends acknowledgements as `Command`s on the
//! same path as the keyboard. Off unless `--web-addr` or `web.addr` is set. docs/web.md
//! describes the endpoint, its security model and its limits.

pub mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

pub use crate::config::web::{WebConfig, WebOperator};

use crate::status::{Command, SharedSnapshot};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Nothing but the page's own script, style and WebSocket: no inline script, no eval, no
/// other origin, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// A page whose socket takes longer than this to accept one update is dropped, freeing its
/// place: it holds one update at most meanwhile, never a queue.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Even without a new snapshot the countdowns ("next in 42s") move on.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// The page sends nothing that matters; anything larger than this from it is an error.
const MAX_INCOMING_BYTES: usize = 1024;
/// An update is a few hundred kilobytes at most (`view::MAX_ESCALATION_ROWS`, `feed_rows`).
const MAX_WRITE_BUFFER: usize = 8 * 1024 * 1024;

pub struct WebServer {
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl WebServer {
    pub fn shutdown(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct Shared {
    snapshots: watch::Receiver<SharedSnapshot>,
    /// The latest update, whole; every page reads the same one.
    views: Arc<watch::Sender<Utf8Bytes>>,
    /// Weak, so the runtime still sees every face gone when the console is.
    commands: mpsc::WeakSender<Command>,
    config: Arc<WebConfig>,
    clients: Arc<Semaphore>,
}

impl Shared {
    fn render(&self) -> Utf8Bytes {
        let snapshot = self.snapshots.borrow().clone();
        let view = view::build(
            &snapshot,
            chrono::Utc::now(),
            self.config.feed_rows,
            !self.config.operators.is_empty(),
        );
        serde_json::to_string(&view)
            .unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
            .into()
    }
}

/// Binds `addr` and serves the page on the current tokio runtime.
pub async fn start(
    addr: &str,
    config: &WebConfig,
    snapshots: watch::Receiver<SharedSnapshot>,
    commands: &mpsc::Sender<Command>,
) -> anyhow::Result<WebServer> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| anyhow::anyhow!("--web-addr {addr}: cannot listen: {error}"))?;
    let bound = listener.local_addr()?;
    let shared = Shared {
        snapshots,
        views: Arc::new(watch::Sender::new(Utf8Bytes::from_static("{}"))),
        commands: commands.downgrade(),
        config: Arc::new(config.clone()),
        clients: Arc::new(Semaphore::new(config.max_clients)),
    };
    let broadcaster = tokio::spawn(broadcast(shared.clone()));
    let app = router(shared);
    let server = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "web view server stopped");
        }
    });
    let mode = if config.operators.is_empty() {
        "read-only"
    } else {
        "acknowledgements by token"
    };
    tracing::info!(addr = %bound, mode, "web view on http://{bound}/");
    Ok(WebServer {
        addr: bound,
        tasks: vec![broadcaster, server],
    })
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/ws", get(socket))
        .route("/api/ack", post(acknowledge))
        .layer(DefaultBodyLimit::max(4096))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(shared)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::CACHE_CONTROL, "no-store");
    response
}

/// Builds one update per interval at most, from the newest snapshot, only while a page
/// watches. A page that falls behind simply finds the newest one when it is ready.
async fn broadcast(shared: Shared) {
    let interval = Duration::from_secs_f64(1.0 / f64::from(shared.config.updates_per_sec.max(1)));
    let mut snapshots = shared.snapshots.clone();
    loop {
        if let Ok(Err(_)) = tokio::time::timeout(REFRESH_EVERY, snapshots.changed()).await {
            // The runtime has gone: pages see their socket close.
            break;
        }
        snapshots.borrow_and_update();
        if shared.views.receiver_count() > 0 {
            shared.views.send_replace(shared.render());
        }
        tokio::time::sleep(interval).await;
    }
}

/// Whether a browser's `Origin` (if it sent one) is this server's own: the page's requests
/// are same-origin; another site's page is refused. Clients that send no `Origin` are not
/// browsers acting for a visited site.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (
        origin.to_str(),
        headers.get(header::HOST).map(|h| h.to_str()),
    ) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}

async fn socket(
    State(shared): State<Shared>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !same_origin(&headers) {
        return refuse(StatusCode::FORBIDDEN, "cross-origin WebSocket refused");
    }
    let Ok(permit) = shared.clients.clone().try_acquire_owned() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "too many web clients (web.max_clients = {}); try again later",
                shared.config.max_clients
            ),
        );
    };
    upgrade
        .max_message_size(MAX_INCOMING_BYTES)
        .max_frame_size(MAX_INCOMING_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| follow(socket, shared, permit))
}

/// One page: the current state at once, then the newest update whenever there is one.
async fn follow(mut socket: WebSocket, shared: Shared, _permit: OwnedSemaphorePermit) {
    let mut views = shared.views.subscribe();
    let first = shared.render();
    if !send(&mut socket, first).await {
        tracing::info!("web page dropped: it did not take its first update");
        return;
    }
    loop {
        tokio::select! {
            changed = views.changed() => {
                if changed.is_err() {
                    break;
                }
                let update = views.borrow_and_update().clone();
                if !send(&mut socket, update).await {
                    // Its place goes to someone who reads.
                    tracing::info!(
                        timeout_secs = SEND_TIMEOUT.as_secs(),
                        "web page dropped: it took no update for the send timeout"
                    );
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                // Pings are answered by the library; the page sends nothing else.
                Some(Ok(_)) => {}
            },
        }
    }
    // A page that stopped reading would not take the close either: bounded like any send.
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(None))).await;
}

async fn send(socket: &mut WebSocket, update: Utf8Bytes) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(update))).await,
        Ok(Ok(()))
    )
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    incident_id: crate::core::event::IncidentId,
}

/// `POST /api/ack` with `Authorization: Bearer TOKEN`, `Content-Type: application/json` and
/// `{"incident_id": N}`. The token names the operator recorded with the acknowledgement; the
/// acknowledgement itself is the keyboard's `Command::Acknowledge`.
async fn acknowledge(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !same_origin(&headers) {
        return refuse(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    if shared.config.operators.is_empty() {
        return refuse(
            StatusCode::FORBIDDEN,
            "read-only: no web operators are configured (web.operators)",
        );
    }
    // A JSON content type cannot be sent cross-site without a CORS preflight, which this
    // server never grants.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().starts_with("application/json"));
    if !json {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(by) = token.and_then(|token| shared.config.operator_for(token)) else {
        let mut response = refuse(
            StatusCode::UNAUTHORIZED,
            "a valid operator token is needed to acknowledge",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"incident-console\""),
        );
        return response;
    };
    let request: AckRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"incident_id\": N}}: {error}"),
            );
        }
    };
    let id = request.incident_id;
    let state = {
        let snapshot = shared.snapshots.borrow();
        snapshot
            .engine
            .escalations
            .iter()
            .find(|view| view.escalation.incident_id == id)
            .map(|view| view.escalation.acknowledged.clone())
    };
    match state {
        None => {
            return refuse(
                StatusCode::NOT_FOUND,
                &format!("incident {id} has no escalation"),
            );
        }
        Some(Some(ack)) => {
            return refuse(
                StatusCode::CONFLICT,
                &format!("incident {id} is already acknowledged by {}", ack.by),
            );
        }
        Some(None) => {}
    }
    let Some(commands) = shared.commands.upgrade() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the console is stopping");
    };
    let command = Command::Acknowledge {
        incident_id: id,
        by: by.to_string(),
    };
    if commands.try_send(command).is_err() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the console is busy; try again",
        );
    }
    tracing::info!(incident_id = id, by, "acknowledgement from the web view");
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "incident_id": id, "by": by }).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_the_servers_own_origin_passes() {
        let host = (header::HOST, "127.0.0.1:8080");
        assert!(same_origin(&headers(std::slice::from_ref(&host))));
        assert!(same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://127.0.0.1:8081")
        ])));
        assert!(!same_origin(&headers(&[(
            header::ORIGIN,
            "http://127.0.0.1:8080"
        )])));
        assert!(!same_origin(&headers(&[host, (header::ORIGIN, "null")])));
    }
}
