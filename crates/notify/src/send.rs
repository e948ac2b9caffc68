//! One attempt to deliver: SMTP through lettre, HTTP (and Twilio's form API) through reqwest. Every error is sorted into
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
use incident_core::permit::SideEffects;

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
    sms: Option<SmsEndpoint>,
    /// Refused while a team worker's lease has lapsed; always granted otherwise.
    side_effects: SideEffects,
}

/// Twilio's Messages API for one account. The SID and token are secrets: they are never
/// logged, and errors from reqwest are stripped of the URL (which holds the SID).
struct SmsEndpoint {
    client: reqwest::Client,
    url: String,
    account_sid: String,
    auth_token: String,
    from: String,
}

struct HttpEndpoint {
    client: reqwest::Client,
    url: String,
    /// The whole URL is the secret (a Slack incoming webhook): never shown, even redacted.
    secret_url: bool,
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
                secret_url: channel == Channel::Slack,
                bearer: bearer.cloned(),
                routing_key: routing_key.cloned(),
            }))
        };
        let pagerduty_url = config
            .pagerduty
            .routing_key
            .as_ref()
            .map(|_| &config.pagerduty.events_url);
        let sms = match (
            &config.sms.account_sid,
            &config.sms.auth_token,
            &config.sms.from,
        ) {
            (Some(account_sid), Some(auth_token), Some(from)) => Some(SmsEndpoint {
                client: reqwest::Client::builder()
                    .timeout(config.timeout(Channel::Sms))
                    .connect_timeout(config.timeout(Channel::Sms))
                    .user_agent(concat!("incident-console/", env!("CARGO_PKG_VERSION")))
                    .build()?,
                url: format!(
                    "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
                    config.sms.api_url.trim_end_matches('/')
                ),
                account_sid: account_sid.clone(),
                auth_token: auth_token.clone(),
                from: from.clone(),
            }),
            _ => None,
        };
        Ok(Self {
            side_effects: SideEffects::always(),
            smtp,
            sms,
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

    /// These senders, sending only while `side_effects` allows it.
    pub fn gated_by(mut self, side_effects: SideEffects) -> Self {
        self.side_effects = side_effects;
        self
    }

    pub async fn send(&self, delivery: &Delivery) -> Outcome {
        // A team worker whose leadership lease lapsed sends nothing (always open otherwise).
        if !self.side_effects.allowed("notification send") {
            return failed(
                "fenced",
                "this worker lost the leadership; the active one sends",
            );
        }
        match &delivery.payload {
            Payload::Email { to, subject, body } => {
                self.send_email(&delivery.key, to, subject, body).await
            }
            Payload::Sms { to, body } => match &self.sms {
                Some(endpoint) => endpoint.post(to, body).await,
                None => failed("channel_disabled", "SMS not configured"),
            },
            Payload::Json {
                body,
                idempotency_key,
            } => {
                let Some(endpoint) = self
                    .http
                    .get(delivery.channel.index())
                    .and_then(Option::as_ref)
                else {
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
                let reason = transport_reason(&error);
                // reqwest's message names the URL whole, which may carry a secret: it is
                // named here without userinfo and query values (Slack's is secret throughout).
                let shown = if self.secret_url {
                    incident_core::REDACTED.to_string()
                } else {
                    super::config::redact_url(&self.url)
                };
                return retry(reason, format!("{shown}: {}", error.without_url()));
            }
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let retry_after = retry_after_header(&response);
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

impl SmsEndpoint {
    /// 201 (or any 2xx) is delivered; 429 and 5xx are retried (after `Retry-After` if given);
    /// other 4xx are final, with Twilio's error code as the reason (`twilio_21211`: bad `To`).
    async fn post(&self, to: &str, body: &str) -> Outcome {
        let request = self
            .client
            .post(&self.url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form_encode(&[
                ("To", to),
                ("From", self.from.as_str()),
                ("Body", body),
            ]));
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let reason = transport_reason(&error);
                return retry(reason, error.without_url().to_string());
            }
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let retry_after = retry_after_header(&response);
        let excerpt = body_excerpt(response).await;
        // Twilio answers errors with {"code": 21211, "message": "...", "status": 400, ...}.
        let error: Option<serde_json::Value> = serde_json::from_str(&excerpt).ok();
        let code = error
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(serde_json::Value::as_u64);
        let message = error
            .as_ref()
            .and_then(|e| e.get("message"))
            .and_then(serde_json::Value::as_str)
            .map(|m| super::template::single_line(m, 200))
            .unwrap_or(excerpt);
        let reason = match code {
            Some(code) => format!("twilio_{code}"),
            None => format!("http_{}", status.as_u16()),
        };
        let detail = format!("HTTP {status}: {message}");
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

/// `application/x-www-form-urlencoded`, as browsers write it (UTF-8, space as `+`).
impl Senders {
    /// `doctor`: connects to the SMTP server and says EHLO (with STARTTLS and login as
    /// configured), then QUIT; no mail is sent. `None` when email is off.
    pub async fn test_smtp(&self) -> Option<Result<(), String>> {
        let (transport, _, _) = self.smtp.as_ref()?;
        Some(match transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the server did not accept the connection".into()),
            Err(error) => Err(error.to_string()),
        })
    }
}

pub fn form_encode(fields: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        for (j, text) in [name, value].into_iter().enumerate() {
            if j > 0 {
                out.push('=');
            }
            for byte in text.bytes() {
                match byte {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                        out.push(byte as char)
                    }
                    b' ' => out.push('+'),
                    _ => out.push_str(&format!("%{byte:02X}")),
                }
            }
        }
    }
    out
}

/// The response's `Retry-After` (seconds or an HTTP date), if it has a usable one.
fn retry_after_header(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, chrono::Utc::now()))
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

/// The failure reason counted for a request that got no HTTP answer.
fn transport_reason(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else {
        "http_error"
    }
}

#[cfg(test)]
mod form_tests {
    #[test]
    fn forms_are_percent_encoded() {
        assert_eq!(
            super::form_encode(&[("To", "+1555"), ("Body", "a b&c=é/…")]),
            "To=%2B1555&Body=a+b%26c%3D%C3%A9%2F%E2%80%A6"
        );
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_post_names_the_url_without_its_secrets() {
        // Nothing listens on port 1: the connection is refused at once.
        let mut config = NotifyConfig::default();
        config.webhook.url = Some("http://user:pw@127.0.0.1:1/hook?token=abc".into());
        config.slack.webhook_url = Some("http://127.0.0.1:1/services/T0/B0/secretpath".into());
        let senders = Senders::new(&config).unwrap();
        let delivery = |channel| Delivery {
            key: "k".into(),
            channel,
            recipient: channel.to_string(),
            incident_id: None,
            kind: incident_core::engine::NotificationKind::IncidentCreated.into(),
            payload: Payload::Json {
                body: serde_json::json!({}),
                idempotency_key: None,
            },
            accepted_at: chrono::Utc::now(),
            give_up_at: chrono::Utc::now(),
        };
        let Outcome::Retry { detail, .. } = senders.send(&delivery(Channel::Webhook)).await else {
            panic!("a refused connection is retried");
        };
        assert!(
            detail.starts_with("http://REDACTED@127.0.0.1:1/hook?token=REDACTED: "),
            "{detail}"
        );
        assert!(
            !detail.contains("abc") && !detail.contains("pw"),
            "{detail}"
        );
        let Outcome::Retry { detail, .. } = senders.send(&delivery(Channel::Slack)).await else {
            panic!("a refused connection is retried");
        };
        assert!(!detail.contains("secretpath"), "{detail}");
    }
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
