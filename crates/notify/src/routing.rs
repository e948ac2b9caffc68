//! From a notification to deliveries: who (audience -> addresses), on which channels (routes
//! and escalation levels), saying what (templates). Pure: `now` is passed in.
//!
//! Rules:
//! - `Administrators` and `User` audiences use every route that matches the notification's
//!   kind, priority and category; their channels are united. Email goes to the administrators
//!   (or the user's address) plus the routes' extra `emails`.
//! - `EscalationLevel { level }` uses that level's entry in `escalation_levels` (or the highest
//!   listed level below it): its channels, users and emails.
//! - PagerDuty reacts to three kinds only: `escalation` triggers, `escalation_acknowledged`
//!   acknowledges, `resolved` resolves, all keyed `<dedup_key_prefix><incident id>`.
//! - SMS goes to `sms.numbers` for the administrators, and to the numbers of the users in
//!   `sms.users` (the level's users, or the user a notification is for).
//! - A level paging a schedule also reaches the person on call when the engine decided the
//!   page (`on_call_email`, `on_call_sms` in the notification's fields).
//! - Channels that are not configured are skipped.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::json;

use incident_core::engine::{Audience, Notification, NotificationKind};
use incident_core::event::Priority;

use super::config::{Channel, LevelRecipients, NotifyConfig};
use super::policy::Suppressed;
use super::store::{Delivery, DeliveryKind, Payload};
use super::template::{TemplateSet, TemplateSlot, single_line, values_of};

/// A recipient the router could not turn into a delivery (e.g. a user without an address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unroutable {
    pub channel: Channel,
    pub recipient: String,
    pub reason: &'static str,
}

#[derive(Debug, Default)]
pub struct Routed {
    pub deliveries: Vec<Delivery>,
    pub unroutable: Vec<Unroutable>,
}

pub struct Router {
    config: NotifyConfig,
    templates: TemplateSet,
}

/// PagerDuty severities from incident priorities.
pub fn pagerduty_severity(priority: Option<Priority>) -> &'static str {
    match priority {
        Some(Priority::Critical) => "critical",
        Some(Priority::High) => "error",
        Some(Priority::Medium) => "warning",
        Some(Priority::Low) | None => "info",
    }
}

/// User names become addresses only if they look like the local part of one: a name from an
/// event must not smuggle a second address or a header into `{user}@example.com`.
fn plain_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
}

impl Router {
    pub fn new(config: NotifyConfig, templates: TemplateSet) -> Self {
        Self { config, templates }
    }

    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }

    /// The address for a user name: the `users` table, then the `user_email` pattern.
    pub fn user_address(&self, name: &str) -> Option<String> {
        if let Some(address) = self.config.users.get(name) {
            return Some(address.clone());
        }
        let pattern = self.config.user_email.as_ref()?;
        plain_user_name(name).then(|| pattern.replace("{user}", name))
    }

    fn level(&self, level: u32) -> Option<&LevelRecipients> {
        self.config
            .escalation_levels
            .iter()
            .filter(|entry| entry.level <= level)
            .max_by_key(|entry| entry.level)
    }

    /// Channels and email recipients for a notification, before configuration filtering.
    fn targets(
        &self,
        notification: &Notification,
    ) -> (BTreeSet<Channel>, Vec<String>, Vec<String>) {
        let mut channels = BTreeSet::new();
        let mut emails = Vec::new();
        let mut users = Vec::new();
        if notification.kind == NotificationKind::SelfAlert {
            // Only the channels named for self-alerts; never the failing channel an alert is
            // about (its mail would fail too, and keep the channel failing).
            let failing = notification.fields.get("channel");
            let wanted = &self.config.self_alerts;
            channels.extend(
                wanted
                    .channels
                    .iter()
                    .filter(|channel| failing.is_none_or(|name| name != channel.as_str())),
            );
            emails.extend(self.config.administrators.iter().cloned());
            emails.extend(wanted.emails.iter().cloned());
            return (channels, emails, users);
        }
        match &notification.audience {
            Audience::EscalationLevel { level } => {
                if let Some(entry) = self.level(*level) {
                    channels.extend(entry.channels.iter().copied());
                    emails.extend(entry.emails.iter().cloned());
                    users.extend(entry.users.iter().cloned());
                }
                // A level that pages a schedule: the engine named who was on call (core::oncall).
                emails.extend(notification.fields.get("on_call_email").cloned());
            }
            audience => {
                match audience {
                    Audience::Administrators => {
                        emails.extend(self.config.administrators.iter().cloned())
                    }
                    Audience::User { name } => users.push(name.clone()),
                    Audience::EscalationLevel { .. } => {}
                }
                let category = notification.fields.get("category");
                for route in &self.config.routes {
                    let kind_matches =
                        route.kinds.is_empty() || route.kinds.contains(&notification.kind);
                    let priority_matches = route.priorities.is_empty()
                        || notification
                            .priority
                            .is_some_and(|p| route.priorities.contains(&p));
                    let category_matches = route.categories.is_empty()
                        || category.is_some_and(|c| {
                            route.categories.iter().any(|r| r.eq_ignore_ascii_case(c))
                        });
                    if kind_matches && priority_matches && category_matches {
                        channels.extend(route.channels.iter().copied());
                        emails.extend(route.emails.iter().cloned());
                    }
                }
            }
        }
        (channels, emails, users)
    }

    pub fn route(&self, notification: &Notification, now: DateTime<Utc>) -> Routed {
        let mut routed = Routed::default();
        let (channels, emails, users) = self.targets(notification);
        let give_up_at = now
            + chrono::Duration::seconds(
                i64::try_from(self.config.delivery.give_up_after_secs).unwrap_or(i64::MAX / 2000),
            );
        let delivery = |channel: Channel, recipient: &str, payload: Payload| Delivery {
            key: Delivery::key_for(&notification.dedup_key, channel, recipient),
            channel,
            recipient: recipient.to_string(),
            incident_id: Some(notification.incident_id),
            kind: notification.kind.into(),
            payload,
            accepted_at: now,
            give_up_at,
        };
        for channel in channels {
            if !self.config.enabled(channel) {
                continue;
            }
            match channel {
                Channel::Email => {
                    let mut addresses: Vec<String> = emails.clone();
                    for user in &users {
                        match self.user_address(user) {
                            Some(address) => addresses.push(address),
                            None => routed.unroutable.push(Unroutable {
                                channel,
                                recipient: single_line(user, 64),
                                reason: "no_address",
                            }),
                        }
                    }
                    let mut seen = BTreeSet::new();
                    for address in addresses {
                        if !seen.insert(address.to_lowercase()) {
                            continue;
                        }
                        if address.parse::<lettre::Address>().is_err() {
                            routed.unroutable.push(Unroutable {
                                channel,
                                recipient: single_line(&address, 64),
                                reason: "invalid_address",
                            });
                            continue;
                        }
                        let values = values_of(notification, &address);
                        let Some(email) = self.templates.email(notification.kind, &values) else {
                            continue;
                        };
                        routed.deliveries.push(delivery(
                            channel,
                            &address,
                            Payload::Email {
                                to: address.clone(),
                                subject: email.subject,
                                body: email.body,
                            },
                        ));
                    }
                }
                Channel::Slack => {
                    let values = values_of(notification, "slack");
                    if let Some(text) =
                        self.templates
                            .text(TemplateSlot::Slack, notification.kind, &values)
                    {
                        routed.deliveries.push(delivery(
                            channel,
                            "slack",
                            Payload::Json {
                                body: json!({ "text": text }),
                                idempotency_key: None,
                            },
                        ));
                    }
                }
                Channel::Webhook => {
                    let values = values_of(notification, "webhook");
                    let message = self
                        .templates
                        .text(TemplateSlot::Webhook, notification.kind, &values)
                        .unwrap_or_default();
                    routed.deliveries.push(delivery(
                        channel,
                        "webhook",
                        Payload::Json {
                            body: json!({
                                "notification": notification.kind.as_str(),
                                "incident_id": notification.incident_id,
                                "title": notification.title,
                                "priority": notification.priority,
                                "audience": notification.audience,
                                "dedup_key": notification.dedup_key,
                                "fields": notification.fields,
                                "message": message,
                                "sent_at": now.to_rfc3339(),
                            }),
                            idempotency_key: Some(notification.dedup_key.clone()),
                        },
                    ));
                }
                Channel::Sms => {
                    let mut numbers = Vec::new();
                    if notification.audience == Audience::Administrators {
                        numbers.extend(self.config.sms.numbers.iter().cloned());
                    }
                    if matches!(notification.audience, Audience::EscalationLevel { .. }) {
                        numbers.extend(notification.fields.get("on_call_sms").cloned());
                    }
                    for user in &users {
                        match self.config.sms.users.get(user) {
                            Some(number) => numbers.push(number.clone()),
                            None => routed.unroutable.push(Unroutable {
                                channel,
                                recipient: single_line(user, 64),
                                reason: "no_number",
                            }),
                        }
                    }
                    let mut seen = BTreeSet::new();
                    for number in numbers {
                        if !seen.insert(number.clone()) {
                            continue;
                        }
                        let values = values_of(notification, &number);
                        let Some(body) =
                            self.templates
                                .text(TemplateSlot::Sms, notification.kind, &values)
                        else {
                            continue;
                        };
                        routed.deliveries.push(delivery(
                            channel,
                            &number,
                            Payload::Sms {
                                to: number.clone(),
                                body,
                            },
                        ));
                    }
                }
                Channel::PagerDuty => {
                    if let Some(body) = self.pagerduty_event(notification) {
                        routed.deliveries.push(delivery(
                            channel,
                            "pagerduty",
                            Payload::Json {
                                body,
                                idempotency_key: None,
                            },
                        ));
                    }
                }
            }
        }
        routed
    }

    /// The Events API v2 body, without `routing_key` (added when sending).
    fn pagerduty_event(&self, notification: &Notification) -> Option<serde_json::Value> {
        let pagerduty = &self.config.pagerduty;
        let mut dedup_key = format!("{}{}", pagerduty.dedup_key_prefix, notification.incident_id);
        let action = match notification.kind {
            NotificationKind::Escalation => "trigger",
            NotificationKind::EscalationAcknowledged => "acknowledge",
            NotificationKind::Resolved => "resolve",
            NotificationKind::SelfAlert => {
                // One PagerDuty alert per self-alert name and console (`source`): its start
                // triggers it, its clear resolves it.
                let alert = notification.fields.get("alert").map_or("", String::as_str);
                dedup_key = format!("{}/self-alert/{alert}", pagerduty.source);
                match notification.fields.get("state").map(String::as_str) {
                    Some("firing") => "trigger",
                    _ => "resolve",
                }
            }
            _ => return None,
        };
        if action != "trigger" {
            return Some(json!({ "event_action": action, "dedup_key": dedup_key }));
        }
        let values = values_of(notification, "pagerduty");
        let summary = self
            .templates
            .text(TemplateSlot::PagerDuty, notification.kind, &values)
            .unwrap_or_else(|| single_line(&notification.title, 1024));
        Some(json!({
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "client": "incident-console",
            "payload": {
                "summary": summary,
                "source": pagerduty.source,
                "severity": pagerduty_severity(notification.priority),
                "custom_details": {
                    "incident_id": notification.incident_id,
                    "title": notification.title,
                    "priority": notification.priority,
                    "fields": notification.fields,
                },
            },
        }))
    }

    /// One summary of what the rate limiter held back for `recipient` on `channel`.
    pub fn digest(
        &self,
        channel: Channel,
        recipient: &str,
        suppressed: &Suppressed,
        now: DateTime<Utc>,
    ) -> Delivery {
        let count = suppressed.count;
        let window = self.config.rate_limit.digest_interval_secs;
        let headline = format!(
            "{count} more notification{} suppressed by the rate limit (at most {} per minute on {channel})",
            if count == 1 { "" } else { "s" },
            self.config.rate_limit.per_minute,
        );
        let mut listing = suppressed.samples.join("\n");
        if count > suppressed.samples.len() as u64 {
            listing.push_str(&format!(
                "\n... and {} more",
                count - suppressed.samples.len() as u64
            ));
        }
        let payload = match channel {
            Channel::Email => Payload::Email {
                to: recipient.to_string(),
                subject: single_line(&headline, 250),
                body: format!(
                    "{headline}.\n\nHeld back in the last {window} s:\n{listing}\n\nThe console shows them all.\n"
                ),
            },
            Channel::Sms => Payload::Sms {
                to: recipient.to_string(),
                body: single_line(&headline, super::template::SMS_MAX_CHARS),
            },
            Channel::Slack => Payload::Json {
                body: json!({ "text": format!(":warning: {headline}:\n{listing}") }),
                idempotency_key: None,
            },
            Channel::Webhook => Payload::Json {
                body: json!({
                    "notification": "digest",
                    "suppressed": count,
                    "samples": suppressed.samples,
                    "message": headline,
                    "sent_at": now.to_rfc3339(),
                }),
                idempotency_key: None,
            },
            Channel::PagerDuty => Payload::Json {
                body: json!({
                    "event_action": "trigger",
                    "dedup_key": format!("{}rate-limited", self.config.pagerduty.dedup_key_prefix),
                    "client": "incident-console",
                    "payload": {
                        "summary": single_line(&headline, 1024),
                        "source": self.config.pagerduty.source,
                        "severity": "warning",
                        "custom_details": { "suppressed": count, "samples": suppressed.samples },
                    },
                }),
                idempotency_key: None,
            },
        };
        Delivery {
            key: format!(
                "digest/{}|{channel}|{}",
                now.timestamp_millis(),
                recipient.to_lowercase()
            ),
            channel,
            recipient: recipient.to_string(),
            incident_id: None,
            kind: DeliveryKind::Digest,
            payload,
            accepted_at: now,
            give_up_at: now
                + chrono::Duration::seconds(
                    i64::try_from(self.config.delivery.give_up_after_secs)
                        .unwrap_or(i64::MAX / 2000),
                ),
        }
    }
}

/// A one-line mention of a notification for a digest.
pub fn digest_sample(delivery: &Delivery, title: &str) -> String {
    single_line(
        &format!(
            "#{} {}: {}",
            delivery.incident_id.unwrap_or_default(),
            delivery.kind,
            title
        ),
        160,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::RouteConfig;

    fn config() -> NotifyConfig {
        NotifyConfig {
            administrators: vec!["admins@example.com".into()],
            users: BTreeMap::from([("carol".into(), "carol@corp.example".into())]),
            user_email: Some("{user}@example.com".into()),
            routes: vec![
                RouteConfig {
                    channels: vec![Channel::Email],
                    ..RouteConfig::default()
                },
                RouteConfig {
                    priorities: vec![Priority::High, Priority::Critical],
                    channels: vec![Channel::Slack, Channel::Webhook],
                    ..RouteConfig::default()
                },
                RouteConfig {
                    categories: vec!["security".into()],
                    kinds: vec![NotificationKind::IncidentCreated],
                    channels: vec![Channel::Email],
                    emails: vec!["security@example.com".into()],
                    ..RouteConfig::default()
                },
            ],
            escalation_levels: vec![
                LevelRecipients {
                    level: 1,
                    users: vec!["alice".into()],
                    emails: vec!["oncall@example.com".into()],
                    channels: vec![Channel::Email, Channel::PagerDuty],
                },
                LevelRecipients {
                    level: 3,
                    users: vec!["carol".into()],
                    emails: vec![],
                    channels: vec![Channel::Email, Channel::Slack, Channel::PagerDuty],
                },
            ],
            email: crate::config::EmailConfig {
                smtp_host: Some("127.0.0.1".into()),
                ..Default::default()
            },
            slack: crate::config::SlackConfig {
                webhook_url: Some("http://127.0.0.1:1/slack".into()),
                ..Default::default()
            },
            pagerduty: crate::config::PagerDutyConfig {
                routing_key: Some("key".into()),
                ..Default::default()
            },
            webhook: crate::config::WebhookConfig {
                url: Some("http://127.0.0.1:1/hook".into()),
                ..Default::default()
            },
            ..NotifyConfig::default()
        }
    }

    fn router() -> Router {
        Router::new(config(), TemplateSet::load(None).unwrap())
    }

    fn notification(
        kind: NotificationKind,
        audience: Audience,
        priority: Priority,
        fields: &[(&'static str, &str)],
    ) -> Notification {
        Notification {
            kind,
            audience,
            incident_id: 42,
            title: "Database down".into(),
            priority: Some(priority),
            dedup_key: format!("42/{}", kind.as_str()),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn targets(routed: &Routed) -> Vec<(Channel, String)> {
        routed
            .deliveries
            .iter()
            .map(|d| (d.channel, d.recipient.clone()))
            .collect()
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn routes_follow_audience_priority_and_category() {
        let router = router();
        let created = |priority, category: &str| {
            router.route(
                &notification(
                    NotificationKind::IncidentCreated,
                    Audience::Administrators,
                    priority,
                    &[("category", category)],
                ),
                now(),
            )
        };
        use Channel::*;
        let s = |x: &str| x.to_string();
        assert_eq!(
            targets(&created(Priority::Low, "db")),
            [(Email, s("admins@example.com"))]
        );
        assert_eq!(
            targets(&created(Priority::High, "Security")),
            [
                (Email, s("admins@example.com")),
                (Email, s("security@example.com")),
                (Slack, s("slack")),
                (Webhook, s("webhook")),
            ]
        );
        let status = router.route(
            &notification(
                NotificationKind::StatusChanged,
                Audience::User { name: "bob".into() },
                Priority::Medium,
                &[],
            ),
            now(),
        );
        assert_eq!(targets(&status), [(Email, s("bob@example.com"))]);
        let mapped = router.route(
            &notification(
                NotificationKind::AssignmentChanged,
                Audience::User {
                    name: "carol".into(),
                },
                Priority::Medium,
                &[],
            ),
            now(),
        );
        assert_eq!(targets(&mapped), [(Email, s("carol@corp.example"))]);
    }

    #[test]
    fn escalation_levels_pick_their_recipients_and_channels() {
        let router = router();
        let page = |level| {
            router.route(
                &notification(
                    NotificationKind::Escalation,
                    Audience::EscalationLevel { level },
                    Priority::Critical,
                    &[("level", &level.to_string())],
                ),
                now(),
            )
        };
        use Channel::*;
        let s = |x: &str| x.to_string();
        let level1 = page(1);
        assert_eq!(
            targets(&level1),
            [
                (Email, s("oncall@example.com")),
                (Email, s("alice@example.com")),
                (PagerDuty, s("pagerduty")),
            ]
        );
        // Level 2 is not listed: level 1's entry applies. Level 4 falls back to level 3.
        assert_eq!(targets(&page(2)), targets(&level1));
        assert_eq!(
            targets(&page(4)),
            [
                (Email, s("carol@corp.example")),
                (Slack, s("slack")),
                (PagerDuty, s("pagerduty")),
            ]
        );
        let Payload::Json { body, .. } = &level1.deliveries[2].payload else {
            panic!("pagerduty sends JSON");
        };
        assert_eq!(body["event_action"], "trigger");
        assert_eq!(body["dedup_key"], "incident-42");
        assert_eq!(body["payload"]["severity"], "critical");
        assert!(
            body.get("routing_key").is_none(),
            "secrets are added when sending"
        );
    }

    #[test]
    fn pagerduty_actions_and_severities() {
        let router = router();
        let cases = [
            (NotificationKind::Escalation, Some("trigger")),
            (
                NotificationKind::EscalationAcknowledged,
                Some("acknowledge"),
            ),
            (NotificationKind::Resolved, Some("resolve")),
            (NotificationKind::IncidentCreated, None),
        ];
        for (kind, action) in cases {
            let routed = router.route(
                &notification(
                    kind,
                    Audience::EscalationLevel { level: 1 },
                    Priority::High,
                    &[],
                ),
                now(),
            );
            let event = routed
                .deliveries
                .iter()
                .find(|d| d.channel == Channel::PagerDuty)
                .map(|d| match &d.payload {
                    Payload::Json { body, .. } => {
                        body["event_action"].as_str().unwrap().to_string()
                    }
                    Payload::Email { .. } | Payload::Sms { .. } => unreachable!(),
                });
            assert_eq!(event.as_deref(), action, "{kind:?}");
        }
        let severities = [
            (Some(Priority::Critical), "critical"),
            (Some(Priority::High), "error"),
            (Some(Priority::Medium), "warning"),
            (Some(Priority::Low), "info"),
            (None, "info"),
        ];
        for (priority, severity) in severities {
            assert_eq!(pagerduty_severity(priority), severity);
        }
    }

    #[test]
    fn users_without_a_usable_address_are_reported_not_sent() {
        let mut config = config();
        config.user_email = Some("{user}@example.com".into());
        let router = Router::new(config, TemplateSet::load(None).unwrap());
        for name in ["eve@evil.example", "a b", "x\r\nBcc: y@example.com", ""] {
            let routed = router.route(
                &notification(
                    NotificationKind::StatusChanged,
                    Audience::User { name: name.into() },
                    Priority::Low,
                    &[],
                ),
                now(),
            );
            assert!(routed.deliveries.is_empty(), "{name:?}");
            assert_eq!(routed.unroutable.len(), 1);
            assert_eq!(routed.unroutable[0].reason, "no_address");
        }
    }

    #[test]
    fn unconfigured_channels_are_skipped() {
        let router = Router::new(
            NotifyConfig {
                administrators: vec!["admins@example.com".into()],
                ..NotifyConfig::default()
            },
            TemplateSet::load(None).unwrap(),
        );
        let routed = router.route(
            &notification(
                NotificationKind::IncidentCreated,
                Audience::Administrators,
                Priority::Critical,
                &[],
            ),
            now(),
        );
        assert!(routed.deliveries.is_empty() && routed.unroutable.is_empty());
    }

    #[test]
    fn dedup_keys_name_notification_channel_and_recipient() {
        let router = router();
        let routed = router.route(
            &notification(
                NotificationKind::Resolved,
                Audience::Administrators,
                Priority::High,
                &[],
            ),
            now(),
        );
        let keys: Vec<&str> = routed.deliveries.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "42/resolved|email|admins@example.com",
                "42/resolved|slack|slack",
                "42/resolved|webhook|webhook",
            ]
        );
    }

    #[test]
    fn self_alerts_go_only_to_their_channels_and_never_to_the_failing_one() {
        let alert = |alert: &str, state: &str| Notification {
            kind: NotificationKind::SelfAlert,
            audience: Audience::Administrators,
            incident_id: 0,
            title: format!("self-alert {alert} {state}"),
            priority: Some(Priority::Critical),
            dedup_key: format!("self-alert/{alert}/1/{state}"),
            fields: [("alert", alert), ("state", state), ("detail", "down")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain(
                    alert
                        .strip_prefix("channel_failing:")
                        .map(|c| ("channel".to_string(), c.to_string())),
                )
                .collect(),
        };
        use Channel::*;
        let s = |x: &str| x.to_string();
        // Not named (the default): nobody, although routes match every kind.
        assert!(
            router()
                .route(&alert("stuck", "firing"), now())
                .deliveries
                .is_empty()
        );
        let mut config = config();
        config.self_alerts.channels = vec![Email, PagerDuty, Webhook];
        config.self_alerts.emails = vec!["ops@example.com".into()];
        let router = Router::new(config, TemplateSet::load(None).unwrap());
        let firing = router.route(&alert("stuck", "firing"), now());
        assert_eq!(
            targets(&firing),
            [
                (Email, s("admins@example.com")),
                (Email, s("ops@example.com")),
                (PagerDuty, s("pagerduty")),
                (Webhook, s("webhook")),
            ]
        );
        let Payload::Email { subject, .. } = &firing.deliveries[0].payload else {
            panic!("email");
        };
        assert_eq!(subject, "[incident-console] self-alert firing: stuck: down");
        let pagerduty = |routed: &Routed| match &routed.deliveries[2].payload {
            Payload::Json { body, .. } => body.clone(),
            _ => panic!("pagerduty sends JSON"),
        };
        let trigger = pagerduty(&firing);
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["dedup_key"], "incident-console/self-alert/stuck");
        assert_eq!(trigger["payload"]["severity"], "critical");
        let resolve = pagerduty(&router.route(&alert("stuck", "cleared"), now()));
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
        // About the failing email channel: everywhere but email.
        let failing = router.route(&alert("channel_failing:email", "firing"), now());
        assert_eq!(
            targets(&failing),
            [(PagerDuty, s("pagerduty")), (Webhook, s("webhook"))]
        );
    }

    #[test]
    fn a_schedule_driven_page_also_reaches_the_person_on_call() {
        let mut config = config();
        config.escalation_levels[0].channels.push(Channel::Sms);
        config.sms.account_sid = Some("AC1".into());
        config.sms.auth_token = Some("token".into());
        config.sms.from = Some("+15550000000".into());
        let router = Router::new(config, TemplateSet::load(None).unwrap());
        let page = notification(
            NotificationKind::Escalation,
            Audience::EscalationLevel { level: 1 },
            Priority::Critical,
            &[
                ("level", "1"),
                ("on_call", "dave"),
                ("on_call_email", "dave@example.com"),
                ("on_call_sms", "+15551230004"),
            ],
        );
        use Channel::*;
        let s = |x: &str| x.to_string();
        let routed = targets(&router.route(&page, now()));
        assert!(
            routed.contains(&(Email, s("dave@example.com"))),
            "{routed:?}"
        );
        assert!(routed.contains(&(Sms, s("+15551230004"))), "{routed:?}");
        // The level's own recipients still get it.
        assert!(routed.contains(&(Email, s("oncall@example.com"))));
        // Other audiences never take on-call fields as recipients.
        let admins = notification(
            NotificationKind::IncidentCreated,
            Audience::Administrators,
            Priority::Critical,
            &[("on_call_email", "dave@example.com")],
        );
        let routed = targets(&router.route(&admins, now()));
        assert!(
            !routed.contains(&(Email, s("dave@example.com"))),
            "{routed:?}"
        );
    }
}
