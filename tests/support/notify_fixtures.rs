//! Notifications and a fast configuration for the notification tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use incident_console::core::engine::{Audience, Notification, NotificationKind};
use incident_console::core::event::Priority;
use incident_console::notify::NotifyConfig;
use incident_console::notify::config::{
    Channel, DeliveryConfig, EmailConfig, LevelRecipients, PagerDutyConfig, RateLimitConfig,
    RouteConfig, SlackConfig, SmtpTls, WebhookConfig,
};

/// Retries after 50-100 ms, capped at 200 ms, for up to 30 s; a generous rate limit; short
/// client timeouts. Channels are off until a test points them somewhere.
pub fn fast_config() -> NotifyConfig {
    NotifyConfig {
        administrators: vec!["admins@example.com".into(), "boss@example.com".into()],
        user_email: Some("{user}@example.com".into()),
        users: BTreeMap::from([("jane.smith".into(), "jane@corp.example".into())]),
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
        escalation_levels: vec![
            LevelRecipients {
                level: 1,
                users: vec!["oncall.one".into()],
                emails: vec!["pager-1@example.com".into()],
                channels: vec![
                    Channel::Email,
                    Channel::Slack,
                    Channel::PagerDuty,
                    Channel::Webhook,
                ],
            },
            LevelRecipients {
                level: 2,
                users: vec![],
                emails: vec!["pager-2@example.com".into()],
                channels: vec![
                    Channel::Email,
                    Channel::Slack,
                    Channel::PagerDuty,
                    Channel::Webhook,
                ],
            },
        ],
        email: EmailConfig {
            smtp_host: None,
            smtp_port: None,
            tls: SmtpTls::None,
            from: "incident-console <console@example.com>".into(),
            timeout_ms: 2000,
            ..EmailConfig::default()
        },
        slack: SlackConfig {
            webhook_url: None,
            timeout_ms: 2000,
        },
        pagerduty: PagerDutyConfig {
            timeout_ms: 2000,
            ..PagerDutyConfig::default()
        },
        webhook: WebhookConfig {
            timeout_ms: 2000,
            ..WebhookConfig::default()
        },
        delivery: DeliveryConfig {
            initial_backoff_ms: 100,
            backoff_factor: 1.5,
            max_backoff_ms: 200,
            give_up_after_secs: 30,
            concurrency: 4,
            queue_capacity: 100,
        },
        rate_limit: RateLimitConfig {
            burst: 1000,
            per_minute: 1000,
            digest_interval_secs: 1,
        },
        ..NotifyConfig::default()
    }
}

pub fn with_smtp(mut config: NotifyConfig, port: u16) -> NotifyConfig {
    config.email.smtp_host = Some("127.0.0.1".into());
    config.email.smtp_port = Some(port);
    config
}

pub fn notification(
    kind: NotificationKind,
    audience: Audience,
    incident_id: i64,
    title: &str,
    priority: Priority,
    fields: &[(&'static str, &str)],
) -> Notification {
    Notification {
        kind,
        audience,
        incident_id,
        title: title.into(),
        priority: Some(priority),
        dedup_key: format!("{incident_id}/{}/{}", kind.as_str(), fields.len()),
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}
