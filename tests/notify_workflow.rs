//! The whole path: incident events through the engine, its notification effects through the
//! notifier, to a real SMTP server and a real HTTP server on loopback. A high incident pages,
//! re-escalates when nobody answers, is acknowledged from the console and resolved.

#[path = "support/notify_fixtures.rs"]
mod fixtures;
#[path = "support/notify_servers.rs"]
mod servers;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use incident_console::core::engine::{Effect, Engine, EngineConfig, Input, Notification};
use incident_console::core::event;
use incident_console::notify::Notifier;

use fixtures::{fast_config, with_smtp};
use servers::{HttpReceiver, SmtpSink, WAIT, eventually};

fn event_input(json: &str) -> Input {
    let event = event::decode(Some(json.as_bytes()), 1 << 20).expect("a valid event");
    Input::Event {
        event,
        source: None,
        raw: json.into(),
    }
}

fn notifications(effects: Vec<Effect>) -> Vec<Notification> {
    effects
        .into_iter()
        .filter_map(|effect| match effect {
            Effect::Notify(notification) => Some(notification),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_incident_pages_re_escalates_is_acknowledged_and_resolved() {
    let sink = SmtpSink::start().await;
    let mut receiver = HttpReceiver::start().await;
    let mut config = with_smtp(fast_config(), sink.port);
    config.slack.webhook_url = Some(receiver.url("/slack"));
    config.pagerduty.routing_key = Some("routing-123".into());
    config.pagerduty.events_url = receiver.url("/pagerduty");
    config.webhook.url = Some(receiver.url("/webhook"));
    let mut notifier = Notifier::start(&config).unwrap();

    let mut engine = Engine::new(EngineConfig::default());
    let t0: DateTime<Utc> = "2024-01-01T10:00:00Z".parse().unwrap();
    let mut all = Vec::new();
    all.extend(notifications(engine.apply(
        event_input(
            r#"{"incident_id": 123, "title": "Server Down", "priority": "high", "status": "open",
                "category": "hardware", "reported_by": "john.doe", "assigned_to": "jane.smith",
                "created_at": "2024-01-01T10:00:00Z", "event_type": "incident_created"}"#,
        ),
        t0,
    )));
    // Level 1 (on-call, 5 minutes) does not answer: level 2 is paged.
    all.extend(notifications(
        engine.apply(Input::Tick, t0 + TimeDelta::seconds(301)),
    ));
    all.extend(notifications(engine.apply(
        Input::Acknowledge {
            incident_id: 123,
            by: "operator-7".into(),
        },
        t0 + TimeDelta::seconds(320),
    )));
    all.extend(notifications(engine.apply(
        event_input(
            r#"{"incident_id": 123, "title": "Server Down", "old_status": "open",
                "new_status": "resolved", "priority": "high", "assigned_to": "jane.smith",
                "updated_at": "2024-01-01T11:30:00Z", "event_type": "status_updated"}"#,
        ),
        t0 + TimeDelta::seconds(5400),
    )));
    let kinds: Vec<&str> = all.iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "incident_created",
            "escalation",
            "escalation",
            "escalation_acknowledged",
            "status_changed",
            "resolved",
            "resolved"
        ],
        "what the engine decided"
    );
    // All at once, as a burst of effects would come: PagerDuty must still see them in order.
    for notification in all {
        notifier.submit(notification);
    }

    let pages = receiver.wait_ok("/pagerduty", 4).await;
    let actions: Vec<&str> = pages
        .iter()
        .map(|p| p.body["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "trigger", "acknowledge", "resolve"]);
    for page in &pages {
        assert_eq!(page.body["dedup_key"], "incident-123");
        assert_eq!(page.body["routing_key"], "routing-123");
    }
    assert_eq!(pages[0].body["payload"]["severity"], "error");
    let second = pages[1].body["payload"]["summary"].as_str().unwrap();
    assert!(
        second.contains("level 2 secondary: level 1 did not acknowledge in time"),
        "{second}"
    );

    // created: 2 admins; L1: pager-1 + oncall.one; L2: pager-2; ack: pager-2;
    // status: jane; resolved: 2 admins + pager-2.
    let mails = sink.wait_for(10).await;
    let received: BTreeSet<(String, String)> = mails
        .iter()
        .map(|m| (m.rcpt_tos.join(","), m.subject()))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        (
            "admins@example.com",
            "[high] New incident #123: Server Down",
        ),
        ("boss@example.com", "[high] New incident #123: Server Down"),
        (
            "pager-1@example.com",
            "[high] ESCALATION level 1 (on-call): incident #123: Server Down",
        ),
        (
            "oncall.one@example.com",
            "[high] ESCALATION level 1 (on-call): incident #123: Server Down",
        ),
        (
            "pager-2@example.com",
            "[high] ESCALATION level 2 (secondary): incident #123: Server Down",
        ),
        (
            "pager-2@example.com",
            "[high] Acknowledged by operator-7: incident #123: Server Down",
        ),
        (
            "jane@corp.example",
            "[high] Incident #123 is now resolved: Server Down",
        ),
        (
            "admins@example.com",
            "[high] Resolved: incident #123: Server Down",
        ),
        (
            "boss@example.com",
            "[high] Resolved: incident #123: Server Down",
        ),
        (
            "pager-2@example.com",
            "[high] Resolved: incident #123: Server Down",
        ),
    ]
    .into_iter()
    .map(|(to, subject)| (to.to_string(), subject.to_string()))
    .collect();
    assert_eq!(received, expected);

    // Slack and the webhook each get one message per distinct notification: the resolution
    // to admins and to level 2 share a dedup key, so the second is dropped.
    let hooks = receiver.wait_ok("/webhook", 6).await;
    receiver.wait_ok("/slack", 6).await;
    let status = eventually(WAIT, "everything settled", || {
        let status = notifier.status();
        (status.outbox_depth == 0 && status.delivered == 10 + 4 + 6 + 6).then_some(status)
    })
    .await;
    assert_eq!(status.failed, 0);
    assert_eq!(status.deduplicated, 2);
    notifier.shutdown(Duration::from_secs(5)).await;
    let hook_kinds: BTreeSet<&str> = hooks
        .iter()
        .map(|h| h.body["notification"].as_str().unwrap())
        .collect();
    assert_eq!(hook_kinds.len(), 5);
    assert_eq!(receiver.on("/webhook").len(), 6);
    assert_eq!(receiver.on("/slack").len(), 6);
    assert_eq!(receiver.on("/pagerduty").len(), 4);
    assert_eq!(sink.mails().len(), 10, "no mail twice");
}
