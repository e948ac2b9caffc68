//! One attempt to deliver: SMTP through lettre, HTTP through reqwest. Every error is sorted into
//! "try again" (network, timeouts, 5xx, 429, SMTP 4xx) or "final" (other 4xx, SMTP 5xx, bad
//! address), with a short reason for the counters and a detail for the log.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::config::{Channel, NotifyConfig, SmtpTls};
use super::policy::parse_retry_after;
use super::store::{Delivery, Payload};

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    Retry {
        reason: String,
        detail: String,
        /// What the server asked for (`Retry-After`), if anything.
        after: Option<Duration>,
    },
    Failed {
        reason: String,
        detail: String,
    },
}

fn retry(reason: impl Into<String>, detail: impl Into<String>) -> Outcome {
    Outcome::Retry {
        reason: reason.into(),
        detail: detail.into(),
        after: None,
    }
}

fn failed(reason: impl Into<String>, detail: impl Into<String>) -> Outcome {
    Outcome::Failed {
        reason: reason.into(),
        detail: detail.into(),
    }
}

/// The clients, built once. Cheap to share behind an `Arc`.
pub struct Senders {
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox, Duration)>,
    http: [Option<HttpEndpoint>; 4],
}

struct HttpEndpoint {
    client: reqwest::Client,
    url: String,
    bearer: Option<String>,
    routing_key: Option<String>,
}

impl Senders {
    pub fn new(config: &NotifyConfig) -> anyhow::Result<Self> {
        let smtp = match &config.email.smtp_host {
            None => None,
            Some(host) => {
                let email = &config.email;
                let parameters = || -> anyhow::Result<TlsParameters> {
                    let mut builder = TlsParameters::builder(host.clone());
                    if let Some(path) = &email.ca_file {
                        let pem = std::fs::read(path).map_err(|error| {
                            anyhow::anyhow!(
                                "notifications.email.ca_file {}: {error}",
                                path.display()
                            )
                        })?;
                        let certificate = Certificate::from_pem(&pem).map_err(|error| {
                            anyhow::anyhow!(
                                "notifications.email.ca_file {}: {error}",
                                path.display()
                            )
                        })?;
                        builder = builder.add_root_certificate(certificate);
                    }
                    Ok(builder.build()?)
                };
                let tls = match email.tls {
                    SmtpTls::None => Tls::None,
                    SmtpTls::Starttls => Tls::Required(parameters()?),
                    SmtpTls::Tls => Tls::Wrapper(parameters()?),
                };
                let timeout = Duration::from_millis(email.timeout_ms);
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(email.port())
                    .tls(tls)
                    .timeout(Some(timeout));
                if let (Some(user), Some(password)) = (&email.username, &email.password) {
                    builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
                }
                let from: Mailbox = email
                    .from
                    .parse()
                    .map_err(|error| anyhow::anyhow!("notifications.email.from: {error}"))?;
                Some((builder.build(), from, timeout))
            }
        };
        let endpoint = |channel: Channel,
                        url: Option<&String>,
                        bearer: Option<&String>,
                        routing_key: Option<&String>|
         -> anyhow::Result<Option<HttpEndpoint>> {
            let Some(url) = url else { return Ok(None) };
            let client = reqwest::Client::builder()
                .timeout(config.timeout(channel))
                .connect_timeout(config.timeout(channel))
                .user_agent(concat!("incident-console/", env!("CARGO_PKG_VERSION")))
                .build()?;
            Ok(Some(HttpEndpoint {
                client,
                url: url.clone(),
                bearer: bearer.cloned(),
                routing_key: routing_key.cloned(),
            }))
        };
        let pagerduty_url = config
            .pagerduty
            .routing_key
            .as_ref()
            .map(|_| &config.pagerduty.events_url);
        Ok(Self {
            smtp,
            http: [
                None,
                endpoint(
                    Channel::Slack,
                    config.slack.webhook_url.as_ref(),
                    None,
                    None,
                )?,
                endpoint(
                    Channel::PagerDuty,
                    pagerduty_url,
                    None,
                    config.pagerduty.routing_key.as_ref(),
                )?,
                endpoint(
                    Channel::Webhook,
                    config.webhook.url.as_ref(),
                    config.webhook.bearer_token.as_ref(),
                    None,
                )?,
            ],
        })
    }

    pub async fn send(&self, delivery: &Delivery) -> Outcome {
        // A team worker whose leadership lease lapsed sends nothing (always open otherwise).
        if !crate::team::leader::side_effects_allowed("notification send") {
            return failed(
                "fenced",
                "this worker lost the leadership; the active one sends",
            );
        }
        match &delivery.payload {
            Payload::Email { to, subject, body } => {
                self.send_email(&delivery.key, to, subject, body).await
            }
            Payload::Json {
                body,
                idempotency_key,
            } => {
                let Some(endpoint) = &self.http[delivery.channel.index()] else {
                    return failed("channel_disabled", "channel not configured");
                };
                endpoint.post(body, idempotency_key.as_deref()).await
            }
        }
    }

    async fn send_email(&self, key: &str, to: &str, subject: &str, body: &str) -> Outcome {
        let Some((transport, from, timeout)) = &self.smtp else {
            return failed("channel_disabled", "email not configured");
        };
        let to: Mailbox = match to.parse() {
            Ok(to) => to,
            Err(error) => return failed("invalid_address", format!("{to}: {error}")),
        };
        // The same delivery always carries the same Message-ID, so a resend after a crash
        // between the server's acceptance and our record of it is recognisable as one message.
        let message = Message::builder()
            .message_id(Some(message_id(key)))
            .from(from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string());
        let message = match message {
            Ok(message) => message,
            Err(error) => return failed("invalid_message", error.to_string()),
        };
        // lettre's timeout bounds each SMTP command; this bounds the whole exchange.
        match tokio::time::timeout(*timeout * 3, transport.send(message)).await {
            Err(_) => retry("timeout", "SMTP exchange timed out"),
            Ok(Ok(_)) => Outcome::Delivered,
            Ok(Err(error)) => {
                let code = error
                    .status()
                    .map(|code| code.to_string())
                    .unwrap_or_default();
                if error.is_permanent() {
                    failed(format!("smtp_{code}"), error.to_string())
                } else if error.is_transient() {
                    retry(format!("smtp_{code}"), error.to_string())
                } else if error.is_timeout() {
                    retry("timeout", error.to_string())
                } else if error.is_client() {
                    // E.g. no authentication mechanism in common: trying again will not help.
                    failed("smtp_client", error.to_string())
                } else if error.is_tls() {
                    retry("tls", error.to_string())
                } else {
                    retry("smtp_connection", error.to_string())
                }
            }
        }
    }
}

impl HttpEndpoint {
    async fn post(&self, body: &serde_json::Value, idempotency_key: Option<&str>) -> Outcome {
        let mut body = body.clone();
        if let (Some(key), Some(object)) = (&self.routing_key, body.as_object_mut()) {
            object.insert("routing_key".into(), serde_json::Value::String(key.clone()));
        }
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let reason = if error.is_timeout() {
                    "timeout"
                } else if error.is_connect() {
                    "connect"
                } else {
                    "http_error"
                };
                // reqwest's message names the URL, which may carry a secret (Slack): drop it.
                return retry(reason, error.without_url().to_string());
            }
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, chrono::Utc::now()));
        let detail = format!("HTTP {status}: {}", body_excerpt(response).await);
        let reason = format!("http_{}", status.as_u16());
        if status.as_u16() == 429 || status.is_server_error() {
            Outcome::Retry {
                reason,
                detail,
                after: retry_after,
            }
        } else {
            failed(reason, detail)
        }
    }
}

/// The start of an error response, for the log: at most 300 bytes, one line.
async fn body_excerpt(mut response: reqwest::Response) -> String {
    let mut excerpt = Vec::new();
    while excerpt.len() < 300 {
        match tokio::time::timeout(Duration::from_secs(2), response.chunk()).await {
            Ok(Ok(Some(chunk))) => excerpt.extend_from_slice(&chunk),
            _ => break,
        }
    }
    excerpt.truncate(300);
    super::template::single_line(&String::from_utf8_lossy(&excerpt), 300)
}

/// `<16 hex digits of FNV-1a(key)@incident-console>`: stable across runs and versions.
pub fn message_id(key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("<{hash:016x}@incident-console>")
}

#[cfg(test)]
mod message_id_tests {
    #[test]
    fn message_ids_are_stable_and_distinct() {
        assert_eq!(
            super::message_id("a"),
            "<af63dc4c8601ec8c@incident-console>"
        );
        assert_ne!(
            super::message_id("1/x|email|a@b"),
            super::message_id("1/x|email|c@b")
        );
    }
}
