//! Slack, PagerDuty and webhook notifications delivered to a real HTTP server (axum) on
//! loopback, including failures: 5xx, 429 with Retry-After, a hanging server, a server that is
//! down and comes back, a final 4xx, floods and duplicates.

#[path = "support/notify_fixtures.rs"]
mod fixtures;
#[path = "support/notify_servers.rs"]
mod servers;

use std::time::Duration;

use incident_console::core::engine::{Audience, Notification, NotificationKind};
use incident_console::core::event::Priority;
use incident_console::notify::{Notifier, NotifyConfig};

use fixtures::{fast_config, notification};
use servers::{HttpReceiver, Reply, WAIT, eventually, free_port};

const ROUTING_KEY: &str = "test-routing-key";

fn http_config(receiver: &HttpReceiver) -> NotifyConfig {
    let mut config = fast_config();
    config.slack.webhook_url = Some(receiver.url("/slack"));
    config.pagerduty.routing_key = Some(ROUTING_KEY.into());
    config.pagerduty.events_url = receiver.url("/pagerduty");
    config.webhook.url = Some(receiver.url("/webhook"));
    config.webhook.bearer_token = Some("hook-token".into());
    config
}

fn created(id: i64, priority: Priority) -> Notification {
    notification(
        NotificationKind::IncidentCreated,
        Audience::Administrators,
        id,
        "Server Down",
        priority,
        &[
            ("status", "open"),
            ("category", "hardware"),
            ("reported_by", "john.doe"),
            ("assignee", "jane.smith"),
            ("created_at", "2024-01-01T10:00:00+00:00"),
        ],
    )
}

fn escalation_kind(kind: NotificationKind, id: i64, level: u32) -> Notification {
    let level_text = level.to_string();
    let fields: Vec<(&'static str, &str)> = match kind {
        NotificationKind::Escalation => vec![
            ("level", &level_text),
            ("level_name", "on-call"),
            ("repeat", "0"),
            ("reason", "new incident"),
            ("opened_at", "2024-01-01T10:00:00+00:00"),
        ],
        NotificationKind::EscalationAcknowledged => vec![
            ("level", &level_text),
            ("by", "operator-7"),
            ("acknowledged_at", "2024-01-01T10:03:00+00:00"),
            ("time_to_acknowledge", "3m 00s"),
        ],
        _ => vec![
            ("new_status", "resolved"),
            ("assignee", "jane.smith"),
            ("time_to_resolve", "1h 30m"),
            ("updated_at", "2024-01-01T11:30:00+00:00"),
        ],
    };
    notification(
        kind,
        Audience::EscalationLevel { level },
        id,
        "Server Down",
        Priority::High,
        &fields,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_life_reaches_slack_pagerduty_and_the_webhook() {
    let mut receiver = HttpReceiver::start().await;
    let mut notifier = Notifier::start(&http_config(&receiver)).unwrap();

    notifier.submit(created(42, Priority::High));
    let slack = receiver.wait_ok("/slack", 1).await;
    let hook = receiver.wait_ok("/webhook", 1).await;
    let text = slack[0].body["text"].as_str().unwrap();
    assert!(
        text.contains("*New high incident #42*: Server Down"),
        "{text}"
    );
    let body = &hook[0].body;
    assert_eq!(body["notification"], "incident_created");
    assert_eq!(body["incident_id"], 42);
    assert_eq!(body["title"], "Server Down");
    assert_eq!(body["priority"], "high");
    assert_eq!(body["audience"]["type"], "administrators");
    assert_eq!(body["fields"]["category"], "hardware");
    assert_eq!(body["message"], "New high incident #42: Server Down");
    assert_eq!(hook[0].headers["authorization"], "Bearer hook-token");
    assert_eq!(hook[0].headers["idempotency-key"], body["dedup_key"]);
    assert_eq!(hook[0].headers["content-type"], "application/json");
    assert!(
        receiver.on("/pagerduty").is_empty(),
        "no page for a new incident alone"
    );

    // Escalation: PagerDuty trigger, keyed by incident, severity from priority.
    notifier.submit(escalation_kind(NotificationKind::Escalation, 42, 1));
    let pages = receiver.wait_ok("/pagerduty", 1).await;
    let trigger = &pages[0].body;
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "incident-42");
    assert_eq!(trigger["payload"]["severity"], "error");
    assert_eq!(trigger["payload"]["source"], "incident-console");
    assert_eq!(
        trigger["payload"]["summary"],
        "[high] Incident #42: Server Down (level 1 on-call: new incident)"
    );
    assert_eq!(trigger["payload"]["custom_details"]["fields"]["level"], "1");
    receiver.wait_ok("/webhook", 2).await;
    let slack = receiver.wait_ok("/slack", 2).await;
    assert!(
        slack[1].body["text"]
            .as_str()
            .unwrap()
            .contains("*Escalation level 1 (on-call)*")
    );

    // Acknowledged in the console: PagerDuty acknowledge.
    notifier.submit(escalation_kind(
        NotificationKind::EscalationAcknowledged,
        42,
        1,
    ));
    let pages = receiver.wait_ok("/pagerduty", 2).await;
    receiver.wait_ok("/webhook", 3).await;
    receiver.wait_ok("/slack", 3).await;
    assert_eq!(
        pages[1].body,
        serde_json::json!({
            "routing_key": ROUTING_KEY,
            "event_action": "acknowledge",
            "dedup_key": "incident-42",
        })
    );

    // Resolved: PagerDuty resolve.
    notifier.submit(escalation_kind(NotificationKind::Resolved, 42, 1));
    let pages = receiver.wait_ok("/pagerduty", 3).await;
    assert_eq!(pages[2].body["event_action"], "resolve");
    assert_eq!(pages[2].body["dedup_key"], "incident-42");
    let hooks = receiver.wait_ok("/webhook", 4).await;
    let kinds: Vec<&str> = hooks
        .iter()
        .map(|h| h.body["notification"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "incident_created",
            "escalation",
            "escalation_acknowledged",
            "resolved"
        ]
    );
    receiver.wait_ok("/slack", 4).await;
    notifier.shutdown(Duration::from_secs(5)).await;
    let status = notifier.status();
    assert_eq!(status.delivered, 11);
    assert_eq!(status.failed, 0);
    assert_eq!(receiver.drain().len(), 11, "no request twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_one_succeeds() {
    let mut receiver = HttpReceiver::start().await;
    receiver.script("/webhook", [Reply::Status(500), Reply::Status(503)]);
    let mut config = http_config(&receiver);
    config.slack.webhook_url = None;
    let mut notifier = Notifier::start(&config).unwrap();
    notifier.submit(created(1, Priority::Low));
    let ok = receiver.wait_ok("/webhook", 1).await;
    assert_eq!(ok.len(), 1);
    let attempts: Vec<Option<u16>> = receiver.on("/webhook").iter().map(|r| r.answered).collect();
    assert_eq!(attempts, [Some(500), Some(503), Some(200)]);
    let status = eventually(WAIT, "the delivery to be counted", || {
        let status = notifier.status();
        (status.delivered == 1).then_some(status)
    })
    .await;
    assert_eq!(status.failed, 0);
    let webhook = status
        .channels
        .iter()
        .find(|c| c.name == "webhook")
        .unwrap();
    assert!(
        webhook
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("http_503")),
        "{:?}",
        webhook.last_error
    );
    notifier.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_waits_as_retry_after_says() {
    let mut receiver = HttpReceiver::start().await;
    receiver.script("/slack", [Reply::TooMany(1)]);
    let mut config = http_config(&receiver);
    config.webhook.url = None;
    let mut notifier = Notifier::start(&config).unwrap();
    notifier.submit(created(2, Priority::Critical));
    receiver.wait_ok("/slack", 1).await;
    let attempts = receiver.on("/slack");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].answered, Some(429));
    // The configured backoff is at most 200 ms; Retry-After asked for 1 s.
    let gap = attempts[1].at - attempts[0].at;
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
    notifier.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_server_times_out_and_is_retried() {
    let mut receiver = HttpReceiver::start().await;
    receiver.script("/webhook", [Reply::Hang]);
    let mut config = http_config(&receiver);
    config.slack.webhook_url = None;
    config.webhook.timeout_ms = 300;
    let mut notifier = Notifier::start(&config).unwrap();
    notifier.submit(created(3, Priority::Low));
    receiver.wait_ok("/webhook", 1).await;
    let attempts: Vec<Option<u16>> = receiver.on("/webhook").iter().map(|r| r.answered).collect();
    assert_eq!(attempts, [None, Some(200)]);
    let status = eventually(WAIT, "the delivery to be counted", || {
        let status = notifier.status();
        (status.delivered == 1).then_some(status)
    })
    .await;
    let webhook = status
        .channels
        .iter()
        .find(|c| c.name == "webhook")
        .unwrap();
    assert!(
        webhook
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("timeout")),
        "{:?}",
        webhook.last_error
    );
    notifier.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_then_back_gets_the_notification_exactly_once() {
    let port = free_port();
    let mut config = fast_config();
    config.webhook.url = Some(format!("http://127.0.0.1:{port}/webhook"));
    let mut notifier = Notifier::start(&config).unwrap();
    notifier.submit(created(4, Priority::Medium));
    let waiting = eventually(WAIT, "the delivery to be retrying", || {
        let status = notifier.status();
        (status.channels[0].retrying > 0).then_some(status)
    })
    .await;
    assert!(
        waiting.channels[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("connect")),
        "{:?}",
        waiting.channels[0].last_error
    );
    let mut receiver = HttpReceiver::start_on(port).await;
    let ok = receiver.wait_ok("/webhook", 1).await;
    assert_eq!(ok[0].body["incident_id"], 4);
    eventually(WAIT, "the outbox to empty", || {
        (notifier.status().outbox_depth == 0).then_some(())
    })
    .await;
    notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!(receiver.on("/webhook").len(), 1, "exactly once");
    assert_eq!(notifier.status().delivered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_is_final_and_counted_by_reason() {
    let mut receiver = HttpReceiver::start().await;
    receiver.script("/webhook", [Reply::Status(400)]);
    let mut config = http_config(&receiver);
    config.slack.webhook_url = None;
    let mut notifier = Notifier::start(&config).unwrap();
    notifier.submit(created(5, Priority::Low));
    let status = eventually(WAIT, "the failure to be counted", || {
        let status = notifier.status();
        (status.failed == 1).then_some(status)
    })
    .await;
    let webhook = status
        .channels
        .iter()
        .find(|c| c.name == "webhook")
        .unwrap();
    assert_eq!(webhook.failures.get("http_400"), Some(&1));
    assert_eq!(webhook.retrying, 0);
    // A later notification goes through; the refused one was not tried again before it.
    notifier.submit(created(6, Priority::Low));
    let ok = receiver.wait_ok("/webhook", 1).await;
    assert_eq!(ok[0].body["incident_id"], 6);
    notifier.shutdown(Duration::from_secs(5)).await;
    let attempts: Vec<Option<u16>> = receiver.on("/webhook").iter().map(|r| r.answered).collect();
    assert_eq!(attempts, [Some(400), Some(200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_channel_does_not_hold_up_the_others() {
    let mut receiver = HttpReceiver::start().await;
    let mut config = http_config(&receiver);
    config.slack.webhook_url = Some(format!("http://127.0.0.1:{}/slack", free_port()));
    let mut notifier = Notifier::start(&config).unwrap();
    for id in 10..15 {
        notifier.submit(created(id, Priority::High));
    }
    receiver.wait_ok("/webhook", 5).await;
    let status = eventually(WAIT, "slack to be retrying", || {
        let status = notifier.status();
        let slack = status.channels.iter().find(|c| c.name == "slack")?;
        (slack.retrying > 0 && status.delivered == 5).then_some(status.clone())
    })
    .await;
    let slack = status.channels.iter().find(|c| c.name == "slack").unwrap();
    assert_eq!(slack.delivered, 0);
    notifier.shutdown(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_notification_twice_is_delivered_once_per_channel() {
    let mut receiver = HttpReceiver::start().await;
    let mut notifier = Notifier::start(&http_config(&receiver)).unwrap();
    notifier.submit(created(20, Priority::High));
    notifier.submit(created(20, Priority::High));
    eventually(WAIT, "the duplicates to be dropped", || {
        let status = notifier.status();
        (status.deduplicated == 2 && status.delivered == 2).then_some(())
    })
    .await;
    notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!(receiver.on("/slack").len(), 1);
    assert_eq!(receiver.on("/webhook").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_sends_at_most_the_burst_plus_one_digest() {
    let mut receiver = HttpReceiver::start().await;
    let mut config = http_config(&receiver);
    config.slack.webhook_url = None;
    config.rate_limit.burst = 3;
    config.rate_limit.per_minute = 1;
    config.rate_limit.digest_interval_secs = 1;
    let mut notifier = Notifier::start(&config).unwrap();
    for id in 100..120 {
        notifier.submit(created(id, Priority::Low));
    }
    let ok = receiver.wait_ok("/webhook", 4).await;
    let digest = ok
        .iter()
        .find(|r| r.body["notification"] == "digest")
        .expect("a digest");
    assert_eq!(digest.body["suppressed"], 17);
    assert_eq!(digest.body["samples"].as_array().unwrap().len(), 10);
    assert!(
        digest.body["samples"][0]
            .as_str()
            .unwrap()
            .contains("incident_created: Server Down")
    );
    let status = eventually(WAIT, "the digest to be counted", || {
        let status = notifier.status();
        (status.delivered == 4).then_some(status)
    })
    .await;
    assert_eq!(status.rate_limited, 17);
    notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        receiver.on("/webhook").len(),
        4,
        "3 notifications and 1 digest"
    );
}

/// On a single-threaded runtime the delivery tasks cannot run between these `submit` calls,
/// so the outbox really fills: the overflow is counted, and `submit` still returns.
#[tokio::test(flavor = "current_thread")]
async fn a_full_outbox_counts_what_it_refuses() {
    let mut receiver = HttpReceiver::start().await;
    let mut config = http_config(&receiver);
    config.slack.webhook_url = None;
    config.outbox_capacity = 2;
    let mut notifier = Notifier::start(&config).unwrap();
    for id in 200..210 {
        notifier.submit(created(id, Priority::Low));
    }
    let status = notifier.status();
    assert_eq!(status.outbox_overflowed, 8);
    assert_eq!(status.outbox_depth, 2);
    receiver.wait_ok("/webhook", 2).await;
    notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!(notifier.status().delivered, 2);
    assert_eq!(receiver.on("/webhook").len(), 2);
}

fn channel_status(notifier: &Notifier, name: &str) -> incident_console::status::ChannelStatus {
    let status = notifier.status();
    status
        .channels
        .into_iter()
        .find(|c| c.name == name)
        .unwrap()
}

/// Escalation pages on `channel` only, unlimited, with the shipped queue and concurrency;
/// the receiver leaves the first sends (as many as the concurrency) hanging until the client
/// gives up, so nothing drains meanwhile.
fn stuck_channel(
    receiver: &HttpReceiver,
    channel: incident_console::notify::config::Channel,
) -> NotifyConfig {
    use incident_console::notify::config::{Channel, DeliveryConfig};
    let mut config = http_config(receiver);
    config.routes.clear();
    config.slack.webhook_url = None;
    if channel != Channel::Webhook {
        config.webhook.url = None;
    }
    if channel != Channel::PagerDuty {
        config.pagerduty.routing_key = None;
    }
    for level in &mut config.escalation_levels {
        level.channels = vec![channel];
    }
    config.rate_limit.burst = 1_000_000;
    config.rate_limit.per_minute = 1_000_000;
    config.delivery = DeliveryConfig::default();
    let path = match channel {
        Channel::PagerDuty => "/pagerduty",
        _ => "/webhook",
    };
    receiver.script(path, (0..config.delivery.concurrency).map(|_| Reply::Hang));
    config
}

/// A flood of pages fills PagerDuty's queues while the service hangs. The acknowledge that
/// comes after them is neither dropped (a lost one leaves the alert paging people) nor left
/// behind them, and still follows its own incident's trigger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledge_behind_a_flood_of_pages_is_never_dropped_and_goes_first() {
    use incident_console::notify::config::{Channel, PagerDutyConfig};
    let mut receiver = HttpReceiver::start().await;
    let mut config = stuck_channel(&receiver, Channel::PagerDuty);
    // And the shipped PagerDuty timeout: while the first sends hang, the whole flood and the
    // acknowledge are routed.
    config.pagerduty.timeout_ms = PagerDutyConfig::default().timeout_ms;
    let (concurrency, capacity) = (config.delivery.concurrency, config.delivery.queue_capacity);
    let mut notifier = Notifier::start(&config).unwrap();
    // More than the channel's queues and the dispatcher's parking hold (1 + 1 + 4 times the
    // queue's capacity).
    let pages = 6 * capacity as i64 + 500;
    for id in 1..=pages {
        notifier.submit(escalation_kind(NotificationKind::Escalation, id, 1));
    }
    // The first pages are on the wire, hanging; the rest of the flood is queued.
    eventually(WAIT, "the hanging sends", || {
        (receiver.on("/pagerduty").len() >= concurrency).then_some(())
    })
    .await;
    let acknowledged = 100;
    notifier.submit(escalation_kind(
        NotificationKind::EscalationAcknowledged,
        acknowledged,
        1,
    ));
    let position = |requests: &[servers::Received], action: &str, id: i64| {
        let key = format!("{}{id}", config.pagerduty.dedup_key_prefix);
        requests.iter().position(|r| {
            r.answered == Some(200)
                && r.body["event_action"] == action
                && r.body["dedup_key"] == key.as_str()
        })
    };
    let requests = eventually(WAIT, "the acknowledge at PagerDuty", || {
        let requests = receiver.on("/pagerduty");
        position(&requests, "acknowledge", acknowledged).map(|_| requests)
    })
    .await;
    let ack = position(&requests, "acknowledge", acknowledged).unwrap();
    let trigger = position(&requests, "trigger", acknowledged).expect("its trigger was sent");
    assert!(trigger < ack, "trigger {trigger}, acknowledge {ack}");
    // Ahead of the pages queued before it: incident 50's trigger was waiting in front of
    // incident 100's.
    let earlier_page = position(&requests, "trigger", 50);
    assert!(
        earlier_page.is_none_or(|page| page > ack),
        "acknowledge {ack} after the earlier page {earlier_page:?}"
    );
    let pagerduty = channel_status(&notifier, "pagerduty");
    assert!(
        pagerduty.failures.get("queue_full").is_some_and(|n| *n > 0),
        "the flood overflowed the queue: {pagerduty:?}"
    );
    notifier.shutdown(Duration::from_secs(1)).await;
}

/// A burst of pages bigger than a channel's queues (a worker catching up after a restart)
/// waits in the dispatcher while the channel is stuck, and is delivered in full once it is
/// free again: none given up as "queue full".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_bigger_than_the_queue_is_delivered_in_full() {
    use incident_console::notify::config::Channel;
    let mut receiver = HttpReceiver::start().await;
    let config = stuck_channel(&receiver, Channel::Webhook);
    let capacity = config.delivery.queue_capacity;
    let mut notifier = Notifier::start(&config).unwrap();
    let pages = 3 * capacity;
    for id in 1..=pages as i64 {
        notifier.submit(escalation_kind(NotificationKind::Escalation, id, 1));
    }
    let delivered = eventually(WAIT * 3, "every page delivered", || {
        let ok = receiver
            .on("/webhook")
            .iter()
            .filter(|r| r.answered == Some(200))
            .count();
        (ok >= pages).then_some(ok)
    })
    .await;
    assert_eq!(delivered, pages);
    let webhook = channel_status(&notifier, "webhook");
    assert_eq!(webhook.failures.get("queue_full"), None, "{webhook:?}");
    notifier.shutdown(Duration::from_secs(5)).await;
}
