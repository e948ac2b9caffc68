//! `notifications:` in config.ron: channels, recipients, routing, retry, rate limit, dedup.
//! Secrets come from the environment (`apply_env`) and are never printed (`redact`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use incident_core::engine::NotificationKind;
use incident_core::event::Priority;

/// Where a notification can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Slack,
    #[serde(rename = "pagerduty")]
    PagerDuty,
    Webhook,
    Sms,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Self::Email,
        Self::Slack,
        Self::PagerDuty,
        Self::Webhook,
        Self::Sms,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Slack => "slack",
            Self::PagerDuty => "pagerduty",
            Self::Webhook => "webhook",
            Self::Sms => "sms",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Self::Email => 0,
            Self::Slack => 1,
            Self::PagerDuty => 2,
            Self::Webhook => 3,
            Self::Sms => 4,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const KINDS: [NotificationKind; 7] = [
    NotificationKind::IncidentCreated,
    NotificationKind::StatusChanged,
    NotificationKind::AssignmentChanged,
    NotificationKind::Escalation,
    NotificationKind::EscalationAcknowledged,
    NotificationKind::Resolved,
    NotificationKind::SelfAlert,
];

pub fn kind_from_str(name: &str) -> Option<NotificationKind> {
    KINDS.into_iter().find(|kind| kind.as_str() == name)
}

/// A route's `kinds`, written by name as the configuration always has (`["incident_created"]`)
/// and held as kinds: an unknown name is refused where it is parsed, so the error carries the
/// file's line, and nothing later compares strings.
mod kind_names {
    use super::{KINDS, NotificationKind, kind_from_str};
    use serde::{Deserialize, Deserializer, Serializer, de::Error, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(kinds: &[NotificationKind], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(kinds.len()))?;
        for kind in kinds {
            seq.serialize_element(kind.as_str())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NotificationKind>, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names
            .iter()
            .map(|name| {
                kind_from_str(name).ok_or_else(|| {
                    let known: Vec<&str> = KINDS
                        .iter()
                        .filter(|k| **k != NotificationKind::SelfAlert)
                        .map(|k| k.as_str())
                        .collect();
                    D::Error::custom(format!(
                        "unknown kind `{name}` in a route's `kinds`; known: {}",
                        known.join(", ")
                    ))
                })
            })
            .collect()
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text: only for a relay on the same host or a trusted network.
    None,
    /// Plain connection upgraded with STARTTLS; refuses to continue without it (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

impl SmtpTls {
    pub fn default_port(self) -> u16 {
        match self {
            Self::None => 25,
            Self::Starttls => 587,
            Self::Tls => 465,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `None` turns email off.
    pub smtp_host: Option<String>,
    /// `None`: 25, 587 or 465 according to `tls`.
    pub smtp_port: Option<u16>,
    pub tls: SmtpTls,
    /// Sender, e.g. "incident-console <incidents@example.com>".
    pub from: String,
    /// From `SMTP_USERNAME`; better left out of the file.
    pub username: Option<String>,
    /// From `SMTP_PASSWORD`; better left out of the file.
    pub password: Option<String>,
    /// One SMTP command may take this long before the attempt counts as failed.
    pub timeout_ms: u64,
    /// An extra trusted CA certificate (PEM) for the server's TLS, e.g. a private CA.
    pub ca_file: Option<PathBuf>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp_host: None,
            smtp_port: None,
            tls: SmtpTls::Starttls,
            from: "incident-console <incident-console@localhost>".into(),
            username: None,
            password: None,
            timeout_ms: 10_000,
            ca_file: None,
        }
    }
}

impl EmailConfig {
    pub fn port(&self) -> u16 {
        self.smtp_port.unwrap_or_else(|| self.tls.default_port())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackConfig {
    /// Incoming-webhook URL (`SLACK_WEBHOOK_URL`); `None` turns Slack off. It is a secret.
    pub webhook_url: Option<String>,
    pub timeout_ms: u64,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            timeout_ms: 10_000,
        }
    }
}

pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagerDutyConfig {
    /// Events API v2 integration key (`PAGERDUTY_ROUTING_KEY`); `None` turns PagerDuty off.
    pub routing_key: Option<String>,
    pub events_url: String,
    /// Alerts are keyed `<prefix><incident id>`, so trigger, acknowledge and resolve meet.
    pub dedup_key_prefix: String,
    /// `source` of triggered alerts.
    pub source: String,
    pub timeout_ms: u64,
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        Self {
            routing_key: None,
            events_url: PAGERDUTY_EVENTS_URL.into(),
            dedup_key_prefix: "incident-".into(),
            source: "incident-console".into(),
            timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Receives every routed notification as JSON (`WEBHOOK_URL`); `None` turns it off.
    pub url: Option<String>,
    /// Sent as `Authorization: Bearer <token>` (`WEBHOOK_BEARER_TOKEN`).
    pub bearer_token: Option<String>,
    pub timeout_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: None,
            bearer_token: None,
            timeout_ms: 10_000,
        }
    }
}

/// Twilio's Messages API, unless `api_url` points elsewhere (a test server, a proxy).
pub const TWILIO_API_URL: &str = "https://api.twilio.com";

/// SMS through Twilio's Messages API: a form POST to
/// `<api_url>/2010-04-01/Accounts/<account_sid>/Messages.json` with basic authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    /// `TWILIO_ACCOUNT_SID`; SMS is on when the SID, token and sender are all set.
    pub account_sid: Option<String>,
    /// `TWILIO_AUTH_TOKEN`; a secret, better left out of the file.
    pub auth_token: Option<String>,
    /// Sender number in E.164 form, e.g. "+15005550006" (`TWILIO_FROM_NUMBER`).
    pub from: Option<String>,
    pub api_url: String,
    /// Numbers texted for what a route with the `sms` channel matches (administrator audience).
    pub numbers: Vec<String>,
    /// User name -> number: escalation-level users and users a notification is for.
    pub users: BTreeMap<String, String>,
    pub timeout_ms: u64,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            account_sid: None,
            auth_token: None,
            from: None,
            api_url: TWILIO_API_URL.into(),
            numbers: Vec::new(),
            users: BTreeMap::new(),
            timeout_ms: 10_000,
        }
    }
}

/// E.164: a plus sign and 8 to 15 digits. Anything else would be refused by the API anyway,
/// and checking here names the setting.
pub fn is_phone_number(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// An address the email channel can send to (as lettre reads it), for sections outside this
/// crate that name recipients (the on-call people).
pub fn is_email_address(address: &str) -> bool {
    address.parse::<lettre::Address>().is_ok()
}

/// Which channels (and extra email recipients) notifications to administrators and users use.
/// Every matching route applies; empty filter lists match everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Notification kinds, written by name (`["incident_created"]`); empty: all.
    #[serde(with = "kind_names")]
    pub kinds: Vec<NotificationKind>,
    pub priorities: Vec<Priority>,
    /// Incident categories (known for new incidents only); empty: all.
    pub categories: Vec<String>,
    pub channels: Vec<Channel>,
    /// Extra email recipients for what this route matches.
    pub emails: Vec<String>,
}

/// Who is told about alerts on the console itself (`monitoring.alerts`: Kafka unreachable,
/// lag, stuck, dead letters, a channel failing): one notification when an alert starts, one
/// when it clears. Routes do not apply to them. Nobody is told unless `channels` names some.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfAlertRecipients {
    /// Channels that carry self-alerts; empty (the default): they are only logged, shown and
    /// exposed as metrics. An alert about a failing channel skips that channel.
    pub channels: Vec<Channel>,
    /// Email goes to `administrators` and these addresses; SMS to `sms.numbers`.
    pub emails: Vec<String>,
    /// After an alert's start was notified, that alert starting again is notified no sooner
    /// than this: a flapping condition pages once, and a start it held back is notified when
    /// the quiet spell ends if the alert still holds (its clear follows as usual).
    pub min_interval_secs: u64,
}

impl Default for SelfAlertRecipients {
    fn default() -> Self {
        Self {
            channels: Vec::new(),
            emails: Vec::new(),
            min_interval_secs: 900,
        }
    }
}

/// Who is paged at one escalation level, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelRecipients {
    pub level: u32,
    /// User names, mapped to addresses by `users` / `user_email`.
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub channels: Vec<Channel>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// First retry after about this long (jittered down to half).
    pub initial_backoff_ms: u64,
    pub backoff_factor: f64,
    pub max_backoff_ms: u64,
    /// A delivery still failing this long after it was accepted is given up (and counted).
    pub give_up_after_secs: u64,
    /// Deliveries in flight at once per channel.
    pub concurrency: usize,
    /// Deliveries waiting per channel (queued or between retries); beyond, they fail.
    pub queue_capacity: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 500,
            backoff_factor: 1.5,
            max_backoff_ms: 60_000,
            give_up_after_secs: 3600,
            concurrency: 4,
            queue_capacity: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sends a channel may make at once after a quiet spell (token bucket size).
    pub burst: u32,
    /// Sustained sends per minute per channel (token refill rate).
    pub per_minute: u32,
    /// Held-back notifications are summarised in one digest per recipient this often.
    pub digest_interval_secs: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            burst: 20,
            per_minute: 30,
            digest_interval_secs: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "DedupFile")]
pub struct DedupConfig {
    /// The same notification to the same recipient on the same channel is sent once per window.
    pub window_secs: u64,
    /// Keys remembered at most; the oldest are forgotten first.
    pub max_entries: usize,
    /// After a restart, a notification decided (or a delivery queued) longer ago than this and
    /// never sent is not sent: it is marked expired. A page hours late for an incident that
    /// may be long resolved does more harm than good; open escalations come back from the
    /// journal and page again at their next step. At most `window_secs`.
    pub resume_horizon_secs: u64,
}

/// The default horizon, or the window when that is shorter.
const DEFAULT_RESUME_HORIZON_SECS: u64 = 3600;

impl Default for DedupConfig {
    fn default() -> Self {
        DedupFile::default().into()
    }
}

/// `dedup` as written: a horizon left out follows the window (`window_secs: 1` alone is
/// valid), while one the user wrote is checked against it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DedupFile {
    window_secs: u64,
    max_entries: usize,
    resume_horizon_secs: Option<u64>,
}

impl Default for DedupFile {
    fn default() -> Self {
        Self {
            window_secs: 24 * 3600,
            max_entries: 100_000,
            resume_horizon_secs: None,
        }
    }
}

impl From<DedupFile> for DedupConfig {
    fn from(file: DedupFile) -> Self {
        Self {
            window_secs: file.window_secs,
            max_entries: file.max_entries,
            resume_horizon_secs: file
                .resume_horizon_secs
                .unwrap_or(DEFAULT_RESUME_HORIZON_SECS.min(file.window_secs)),
        }
    }
}

/// Notification settings (`notifications:` in config.ron).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Directory of templates overriding the shipped ones, file by file; `None`: shipped only.
    pub templates_dir: Option<PathBuf>,
    /// Notifications accepted but not yet routed. When full, new ones are counted and logged.
    pub outbox_capacity: usize,
    /// Email addresses told about new incidents and resolutions.
    pub administrators: Vec<String>,
    /// User name -> email address; wins over `user_email`.
    pub users: BTreeMap<String, String>,
    /// Address for users not in `users`, `{user}` replaced by the name, e.g. "{user}@example.com".
    pub user_email: Option<String>,
    pub routes: Vec<RouteConfig>,
    pub escalation_levels: Vec<LevelRecipients>,
    pub email: EmailConfig,
    pub slack: SlackConfig,
    pub pagerduty: PagerDutyConfig,
    pub webhook: WebhookConfig,
    pub sms: SmsConfig,
    pub delivery: DeliveryConfig,
    pub rate_limit: RateLimitConfig,
    pub dedup: DedupConfig,
    pub self_alerts: SelfAlertRecipients,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            templates_dir: None,
            outbox_capacity: 10_000,
            administrators: Vec::new(),
            users: BTreeMap::new(),
            user_email: None,
            // As documented in config.ron, which a test compares with these defaults.
            routes: vec![
                RouteConfig {
                    channels: vec![Channel::Email, Channel::Webhook],
                    ..RouteConfig::default()
                },
                RouteConfig {
                    priorities: vec![Priority::High, Priority::Critical],
                    channels: vec![Channel::Slack],
                    ..RouteConfig::default()
                },
            ],
            escalation_levels: (1..=3)
                .map(|level| LevelRecipients {
                    level,
                    users: Vec::new(),
                    emails: Vec::new(),
                    channels: Channel::ALL.to_vec(),
                })
                .collect(),
            email: EmailConfig::default(),
            slack: SlackConfig::default(),
            pagerduty: PagerDutyConfig::default(),
            webhook: WebhookConfig::default(),
            sms: SmsConfig::default(),
            delivery: DeliveryConfig::default(),
            rate_limit: RateLimitConfig::default(),
            dedup: DedupConfig::default(),
            self_alerts: SelfAlertRecipients::default(),
        }
    }
}

type Invalid = (String, String);

fn invalid(field: &str, message: impl Into<String>) -> Invalid {
    (field.to_string(), message.into())
}

fn check_address(field: &str, address: &str) -> Result<(), Invalid> {
    address
        .parse::<lettre::Address>()
        .map(|_| ())
        .map_err(|error| {
            invalid(
                field,
                format!("`{address}` is not an email address: {error}"),
            )
        })
}

/// `url` with its userinfo and the values of its query and fragment replaced, so it can be
/// printed or logged: webhook URLs often carry their secret there
/// (`https://u:p@x/hook?token=abc` -> `https://REDACTED@x/hook?token=REDACTED`). Query keys stay
/// (they help to tell endpoints apart). Text that is not a URL is redacted whole.
pub fn redact_url(url: &str) -> String {
    const MASK: &str = "REDACTED";
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return incident_core::REDACTED.to_string();
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Only URLs with a host have userinfo, so these cannot fail here.
        let _ = parsed.set_password(None);
        let _ = parsed.set_username(MASK);
    }
    if parsed.query().is_some() {
        let keys: Vec<String> = parsed
            .query_pairs()
            .map(|(key, _)| key.into_owned())
            .collect();
        parsed
            .query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|key| (key.as_str(), MASK)));
    }
    if parsed.fragment().is_some() {
        parsed.set_fragment(Some(MASK));
    }
    parsed.to_string()
}

fn check_url(field: &str, url: &str) -> Result<(), Invalid> {
    let parsed =
        reqwest::Url::parse(url).map_err(|error| invalid(field, format!("not a URL: {error}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(field, "must be an http:// or https:// URL"));
    }
    Ok(())
}

fn positive(field: &str, value: u64) -> Result<(), Invalid> {
    if value == 0 {
        return Err(invalid(field, "must be more than 0"));
    }
    Ok(())
}

/// More than 0 and at most `max` (time spans beyond reason would overflow clock arithmetic).
fn within(field: &str, value: u64, max: u64) -> Result<(), Invalid> {
    positive(field, value)?;
    if value > max {
        return Err(invalid(field, format!("must be at most {max}")));
    }
    Ok(())
}

const TEN_MINUTES_MS: u64 = 10 * 60 * 1000;
const DAY_SECS: u64 = 24 * 3600;

impl NotifyConfig {
    /// Returns the offending field (relative to `notifications.`) and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        positive("outbox_capacity", self.outbox_capacity as u64)?;
        if let Some(dir) = &self.templates_dir
            && !dir.is_dir()
        {
            return Err(invalid(
                "templates_dir",
                format!("{} is not a directory", dir.display()),
            ));
        }
        for address in &self.administrators {
            check_address("administrators", address)?;
        }
        for address in self.users.values() {
            check_address("users", address)?;
        }
        if let Some(pattern) = &self.user_email {
            if !pattern.contains("{user}") {
                return Err(invalid("user_email", "must contain `{user}`"));
            }
            check_address("user_email", &pattern.replace("{user}", "name"))?;
        }
        for route in &self.routes {
            if route.kinds.contains(&NotificationKind::SelfAlert) {
                return Err(invalid(
                    "kinds",
                    "`self_alert` is not routed by routes: name its channels in \
                     notifications.self_alerts.channels",
                ));
            }
            for address in &route.emails {
                check_address("emails", address)?;
            }
        }
        for address in &self.self_alerts.emails {
            check_address("self_alerts.emails", address)?;
        }
        within(
            "self_alerts.min_interval_secs",
            self.self_alerts.min_interval_secs.max(1),
            DAY_SECS,
        )?;
        let mut levels = std::collections::BTreeSet::new();
        for level in &self.escalation_levels {
            if level.level == 0 {
                return Err(invalid("level", "levels start at 1"));
            }
            if !levels.insert(level.level) {
                return Err(invalid(
                    "level",
                    format!("level {} is listed twice", level.level),
                ));
            }
            for address in &level.emails {
                check_address("emails", address)?;
            }
        }
        if let Some(host) = &self.email.smtp_host {
            if host.trim().is_empty() {
                return Err(invalid(
                    "email.smtp_host",
                    "must not be empty (None turns email off)",
                ));
            }
            self.email
                .from
                .parse::<lettre::message::Mailbox>()
                .map_err(|error| {
                    invalid(
                        "email.from",
                        format!("`{}` is not a mailbox: {error}", self.email.from),
                    )
                })?;
            if let Some(path) = &self.email.ca_file
                && !path.is_file()
            {
                return Err(invalid(
                    "email.ca_file",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            if self.email.username.is_some() != self.email.password.is_some() {
                return Err(invalid(
                    "email.username",
                    "username and password go together (SMTP_USERNAME, SMTP_PASSWORD)",
                ));
            }
        }
        within("email.timeout_ms", self.email.timeout_ms, TEN_MINUTES_MS)?;
        if let Some(url) = &self.slack.webhook_url {
            check_url("slack.webhook_url", url)?;
        }
        within("slack.timeout_ms", self.slack.timeout_ms, TEN_MINUTES_MS)?;
        check_url("pagerduty.events_url", &self.pagerduty.events_url)?;
        if self
            .pagerduty
            .routing_key
            .as_deref()
            .is_some_and(|key| key.trim().is_empty())
        {
            return Err(invalid("pagerduty.routing_key", "must not be empty"));
        }
        within(
            "pagerduty.timeout_ms",
            self.pagerduty.timeout_ms,
            TEN_MINUTES_MS,
        )?;
        if let Some(url) = &self.webhook.url {
            check_url("webhook.url", url)?;
        }
        within(
            "webhook.timeout_ms",
            self.webhook.timeout_ms,
            TEN_MINUTES_MS,
        )?;
        self.validate_sms()?;
        let delivery = &self.delivery;
        positive("delivery.initial_backoff_ms", delivery.initial_backoff_ms)?;
        if !(delivery.backoff_factor.is_finite() && delivery.backoff_factor >= 1.0) {
            return Err(invalid("delivery.backoff_factor", "must be at least 1.0"));
        }
        if delivery.max_backoff_ms < delivery.initial_backoff_ms {
            return Err(invalid(
                "delivery.max_backoff_ms",
                "must be at least initial_backoff_ms",
            ));
        }
        if delivery.max_backoff_ms > 3600 * 1000 {
            return Err(invalid(
                "delivery.max_backoff_ms",
                "must be at most 3600000 (an hour)",
            ));
        }
        within(
            "delivery.give_up_after_secs",
            delivery.give_up_after_secs,
            30 * DAY_SECS,
        )?;
        positive("delivery.concurrency", delivery.concurrency as u64)?;
        positive("delivery.queue_capacity", delivery.queue_capacity as u64)?;
        positive("rate_limit.burst", u64::from(self.rate_limit.burst))?;
        positive(
            "rate_limit.per_minute",
            u64::from(self.rate_limit.per_minute),
        )?;
        within(
            "rate_limit.digest_interval_secs",
            self.rate_limit.digest_interval_secs,
            DAY_SECS,
        )?;
        within("dedup.window_secs", self.dedup.window_secs, 365 * DAY_SECS)?;
        positive("dedup.max_entries", self.dedup.max_entries as u64)?;
        // Claims are kept for the window: a horizon longer than it could resend a delivery
        // whose claim was already forgotten.
        within(
            "dedup.resume_horizon_secs",
            self.dedup.resume_horizon_secs,
            self.dedup.window_secs,
        )
        .map_err(|(field, message)| (field, format!("{message} (dedup.window_secs)")))?;
        Ok(())
    }

    fn validate_sms(&self) -> Result<(), Invalid> {
        let sms = &self.sms;
        check_url("sms.api_url", &sms.api_url)?;
        within("sms.timeout_ms", sms.timeout_ms, TEN_MINUTES_MS)?;
        if let Some(sid) = &sms.account_sid
            && (sid.is_empty() || !sid.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            // It goes into the URL path: letters and digits only (Twilio's are `AC` + 32 hex).
            return Err(invalid(
                "sms.account_sid",
                "must be letters and digits only",
            ));
        }
        if sms
            .auth_token
            .as_deref()
            .is_some_and(|token| token.trim().is_empty())
        {
            return Err(invalid("sms.auth_token", "must not be empty"));
        }
        if let Some(from) = &sms.from
            && !is_phone_number(from)
        {
            return Err(invalid(
                "sms.from",
                format!("`{from}` is not an E.164 number (+ and 8 to 15 digits)"),
            ));
        }
        for (field, number) in sms
            .numbers
            .iter()
            .map(|n| ("sms.numbers", n))
            .chain(sms.users.values().map(|n| ("sms.users", n)))
        {
            if !is_phone_number(number) {
                return Err(invalid(
                    field,
                    format!("`{number}` is not an E.164 number (+ and 8 to 15 digits)"),
                ));
            }
        }
        let parts = [
            sms.account_sid.is_some(),
            sms.auth_token.is_some(),
            sms.from.is_some(),
        ];
        if parts.contains(&true) && parts.contains(&false) {
            return Err(invalid(
                "sms.account_sid",
                "account_sid, auth_token and from go together \
                 (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER)",
            ));
        }
        Ok(())
    }

    /// Secrets (and endpoints that embed them) from the environment override the file.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        let get = |name: &str| env(name).filter(|value| !value.is_empty());
        if let Some(value) = get("SMTP_USERNAME") {
            self.email.username = Some(value);
        }
        if let Some(value) = get("SMTP_PASSWORD") {
            self.email.password = Some(value);
        }
        if let Some(value) = get("SLACK_WEBHOOK_URL") {
            self.slack.webhook_url = Some(value);
        }
        if let Some(value) = get("PAGERDUTY_ROUTING_KEY") {
            self.pagerduty.routing_key = Some(value);
        }
        if let Some(value) = get("WEBHOOK_URL") {
            self.webhook.url = Some(value);
        }
        if let Some(value) = get("WEBHOOK_BEARER_TOKEN") {
            self.webhook.bearer_token = Some(value);
        }
        if let Some(value) = get("TWILIO_ACCOUNT_SID") {
            self.sms.account_sid = Some(value);
        }
        if let Some(value) = get("TWILIO_AUTH_TOKEN") {
            self.sms.auth_token = Some(value);
        }
        if let Some(value) = get("TWILIO_FROM_NUMBER") {
            self.sms.from = Some(value);
        }
    }

    /// Replaces every secret with `incident_core::REDACTED`, for `--print-config`.
    pub fn redact(&mut self) {
        let redacted = || Some(incident_core::REDACTED.to_string());
        for secret in [
            &mut self.email.username,
            &mut self.email.password,
            &mut self.slack.webhook_url,
            &mut self.pagerduty.routing_key,
            &mut self.webhook.bearer_token,
            &mut self.sms.account_sid,
            &mut self.sms.auth_token,
        ] {
            if secret.is_some() {
                *secret = redacted();
            }
        }
        // The webhook URL is not secret as a whole, but its userinfo and query may be.
        if let Some(url) = &mut self.webhook.url {
            *url = redact_url(url);
        }
        self.pagerduty.events_url = redact_url(&self.pagerduty.events_url);
    }

    pub fn enabled(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email.smtp_host.is_some(),
            Channel::Slack => self.slack.webhook_url.is_some(),
            Channel::PagerDuty => self.pagerduty.routing_key.is_some(),
            Channel::Webhook => self.webhook.url.is_some(),
            Channel::Sms => {
                self.sms.account_sid.is_some()
                    && self.sms.auth_token.is_some()
                    && self.sms.from.is_some()
            }
        }
    }

    pub fn timeout(&self, channel: Channel) -> Duration {
        Duration::from_millis(match channel {
            Channel::Email => self.email.timeout_ms,
            Channel::Slack => self.slack.timeout_ms,
            Channel::PagerDuty => self.pagerduty.timeout_ms,
            Channel::Webhook => self.webhook.timeout_ms,
            Channel::Sms => self.sms.timeout_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_userinfo_query_and_fragment_values() {
        assert_eq!(
            redact_url("https://u:p@x.example/hook?token=abc&v=1#frag"),
            "https://REDACTED@x.example/hook?token=REDACTED&v=REDACTED#REDACTED"
        );
        assert_eq!(
            redact_url("https://x.example:8443/v2/enqueue"),
            "https://x.example:8443/v2/enqueue"
        );
        assert_eq!(
            redact_url("https://user@x.example/"),
            "https://REDACTED@x.example/"
        );
        assert_eq!(redact_url("not a url with secret"), incident_core::REDACTED);
        let mut config = NotifyConfig::default();
        config.webhook.url = Some("https://x.example/hook?token=abc".into());
        config.redact();
        assert_eq!(
            config.webhook.url.as_deref(),
            Some("https://x.example/hook?token=REDACTED")
        );
    }

    #[test]
    fn defaults_validate_and_enable_nothing() {
        let config = NotifyConfig::default();
        config.validate().unwrap();
        assert!(Channel::ALL.iter().all(|c| !config.enabled(*c)));
    }

    #[test]
    fn bad_values_name_their_field() {
        type Change = Box<dyn Fn(&mut NotifyConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.outbox_capacity = 0), "outbox_capacity"),
            (
                Box::new(|c| c.administrators = vec!["not an address".into()]),
                "administrators",
            ),
            (
                Box::new(|c| c.user_email = Some("x@example.com".into())),
                "user_email",
            ),
            (
                Box::new(|c| {
                    c.email.smtp_host = Some("127.0.0.1".into());
                    c.email.from = "no mailbox".into();
                }),
                "email.from",
            ),
            (
                Box::new(|c| c.slack.webhook_url = Some("ftp://x".into())),
                "slack.webhook_url",
            ),
            (
                Box::new(|c| c.delivery.backoff_factor = 0.5),
                "delivery.backoff_factor",
            ),
            (
                Box::new(|c| c.delivery.max_backoff_ms = 1),
                "delivery.max_backoff_ms",
            ),
            (Box::new(|c| c.rate_limit.burst = 0), "rate_limit.burst"),
            (
                Box::new(|c| c.delivery.give_up_after_secs = u64::MAX),
                "delivery.give_up_after_secs",
            ),
            (
                Box::new(|c| c.delivery.max_backoff_ms = u64::MAX),
                "delivery.max_backoff_ms",
            ),
            (
                Box::new(|c| c.rate_limit.digest_interval_secs = u64::MAX),
                "rate_limit.digest_interval_secs",
            ),
            (
                Box::new(|c| c.webhook.timeout_ms = u64::MAX),
                "webhook.timeout_ms",
            ),
            (
                Box::new(|c| c.templates_dir = Some("/nonexistent/templates".into())),
                "templates_dir",
            ),
            (
                Box::new(|c| c.sms.numbers = vec!["555-1234".into()]),
                "sms.numbers",
            ),
            (
                Box::new(|c| c.sms.from = Some("+15005550006".into())),
                "sms.account_sid",
            ),
            (
                Box::new(|c| c.sms.account_sid = Some("AC/../x".into())),
                "sms.account_sid",
            ),
            (Box::new(|c| c.sms.api_url = "twilio".into()), "sms.api_url"),
            (
                Box::new(|c| c.routes[0].kinds = vec![NotificationKind::SelfAlert]),
                "kinds",
            ),
            (
                Box::new(|c| c.self_alerts.emails = vec!["ops at example".into()]),
                "self_alerts.emails",
            ),
            (
                Box::new(|c| c.self_alerts.min_interval_secs = u64::MAX),
                "self_alerts.min_interval_secs",
            ),
            (
                Box::new(|c| {
                    c.escalation_levels = vec![
                        LevelRecipients {
                            level: 1,
                            users: vec![],
                            emails: vec![],
                            channels: vec![],
                        };
                        2
                    ]
                }),
                "level",
            ),
        ];
        for (change, field) in cases {
            let mut config = NotifyConfig::default();
            change(&mut config);
            let (got, message) = config.validate().unwrap_err();
            assert_eq!(got, field, "{message}");
        }
    }

    #[test]
    fn secrets_come_from_the_environment_and_are_redacted() {
        let mut config = NotifyConfig::default();
        config.apply_env(&|name| match name {
            "SMTP_USERNAME" => Some("mailer".into()),
            "SMTP_PASSWORD" => Some("hunter2".into()),
            "SLACK_WEBHOOK_URL" => Some("http://127.0.0.1:9/hooks/T0/B0/secret".into()),
            "PAGERDUTY_ROUTING_KEY" => Some("R0UTING".into()),
            "WEBHOOK_BEARER_TOKEN" => Some("tok".into()),
            "TWILIO_ACCOUNT_SID" => Some("AC0123456789abcdef".into()),
            "TWILIO_AUTH_TOKEN" => Some("twilio-token".into()),
            "TWILIO_FROM_NUMBER" => Some("+15005550006".into()),
            _ => None,
        });
        assert!(config.enabled(Channel::Sms));
        config.validate().unwrap();
        assert_eq!(config.email.password.as_deref(), Some("hunter2"));
        assert!(config.enabled(Channel::Slack) && config.enabled(Channel::PagerDuty));
        config.redact();
        let printed = format!("{config:?}");
        for secret in [
            "mailer",
            "hunter2",
            "secret",
            "R0UTING",
            "\"tok\"",
            "AC0123456789abcdef",
            "twilio-token",
        ] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }
}
