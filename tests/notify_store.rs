//! Notification state kept by the journal outlives a notifier: deliveries owed when one run
//! stops are sent by the next, and what was sent is not sent again. Each run opens the
//! journal, resumes from it, records through its writer and closes it, as the runtime does.

#[path = "support/notify_fixtures.rs"]
mod fixtures;
#[path = "support/notify_servers.rs"]
mod servers;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use incident_console::core::engine::SourceRef;
use incident_console::core::engine::{Audience, NotificationKind};
use incident_console::core::event::Priority;
use incident_console::journal::{Journal, JournalConfig, JournalWriter};
use incident_console::notify::{Notifier, NotifyConfig};

use fixtures::{fast_config, notification};
use servers::{HttpReceiver, WAIT, eventually, free_port};

struct Run {
    notifier: Notifier,
    writer: JournalWriter<SourceRef>,
}

/// Opens the journal at `path` and starts a notifier on it, as the runtime does at start.
fn start(path: &Path, config: &NotifyConfig) -> Run {
    let mut journal = Journal::open(path, &JournalConfig::default()).unwrap();
    let resumed = journal
        .resume_notifications(
            chrono::Utc::now(),
            Duration::from_secs(config.dedup.resume_horizon_secs),
            Duration::from_secs(config.dedup.window_secs),
            config.dedup.max_entries,
        )
        .unwrap();
    let (writer, _completions) = JournalWriter::start(journal).unwrap();
    let notifier =
        Notifier::start_with_journal(config, Arc::new(writer.clone()), resumed.deliveries).unwrap();
    Run { notifier, writer }
}

impl Run {
    async fn stop(mut self, timeout: Duration) {
        self.notifier.shutdown(timeout).await;
        drop(self.notifier);
        self.writer.shutdown().await.unwrap();
    }
}

fn deliveries(path: &Path) -> Vec<(String, i64)> {
    Journal::open(path, &JournalConfig::default())
        .unwrap()
        .states("deliveries")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_resume_and_dedup_holds_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite3");
    let port = free_port();
    let mut config = fast_config();
    config.webhook.url = Some(format!("http://127.0.0.1:{port}/webhook"));
    let created = notification(
        NotificationKind::IncidentCreated,
        Audience::Administrators,
        77,
        "Stored",
        Priority::Medium,
        &[],
    );

    // First run: the webhook is down; the console stops before it comes back.
    let mut first = start(&path, &config);
    first.notifier.submit(created.clone());
    eventually(WAIT, "the delivery to be retrying", || {
        (first.notifier.status().channels[0].retrying > 0).then_some(())
    })
    .await;
    first.stop(Duration::from_millis(100)).await;
    assert_eq!(
        deliveries(&path),
        [("pending".to_string(), 1)],
        "still owed after the first run"
    );

    // Second run: the webhook is back. The owed delivery is resumed, and the same
    // notification arriving again (a re-read Kafka message) is recognised as sent.
    let mut receiver = HttpReceiver::start_on(port).await;
    let mut second = start(&path, &config);
    let ok = receiver.wait_ok("/webhook", 1).await;
    assert_eq!(ok[0].body["incident_id"], 77);
    assert_eq!(ok[0].headers["idempotency-key"], "77/incident_created/0");
    second.notifier.submit(created.clone());
    eventually(WAIT, "the repeat to be dropped", || {
        let status = second.notifier.status();
        (status.deduplicated == 1 && status.delivered == 1).then_some(())
    })
    .await;
    second.stop(Duration::from_secs(5)).await;
    assert_eq!(deliveries(&path), [("delivered".to_string(), 1)]);

    // Third run: the same notification again is still a duplicate (the claim came back
    // from the journal, not from memory).
    let mut third = start(&path, &config);
    third.notifier.submit(created);
    eventually(WAIT, "the repeat to be dropped", || {
        (third.notifier.status().deduplicated == 1).then_some(())
    })
    .await;
    third.stop(Duration::from_secs(5)).await;
    assert_eq!(
        receiver.on("/webhook").len(),
        1,
        "exactly once over both runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_delivery_for_a_channel_now_off_is_counted_not_lost_silently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite3");
    let mut config = fast_config();
    config.webhook.url = Some(format!("http://127.0.0.1:{}/webhook", free_port()));
    let mut first = start(&path, &config);
    first.notifier.submit(notification(
        NotificationKind::Resolved,
        Audience::Administrators,
        78,
        "Stored",
        Priority::Low,
        &[],
    ));
    eventually(WAIT, "the delivery to be retrying", || {
        (first.notifier.status().channels[0].retrying > 0).then_some(())
    })
    .await;
    first.stop(Duration::from_millis(50)).await;
    config.webhook.url = None;
    let second = start(&path, &config);
    let status = second.notifier.status();
    assert_eq!(status.failed, 1);
    second.stop(Duration::from_secs(1)).await;
    assert_eq!(deliveries(&path), [("failed".to_string(), 1)]);
}

/// A burst larger than the outbox: what the full outbox refused is still decided in the
/// journal, and the notifier's refill queues it again from there once there is room (and the
/// refused decisions are older than the refill's minimum age, 5 s). On a single-threaded
/// runtime the delivery tasks cannot run between the `submit` calls, so the outbox fills.
#[tokio::test(flavor = "current_thread")]
async fn a_burst_larger_than_the_outbox_is_queued_again_from_the_journal() {
    use incident_console::journal::{DecidedRows, Decision, JournalRecord};
    use incident_console::notify::Refill;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite3");
    let mut receiver = HttpReceiver::start().await;
    let mut config = fast_config();
    config.webhook.url = Some(receiver.url("/webhook"));
    config.outbox_capacity = 2;
    let burst: Vec<_> = (300..310)
        .map(|id| {
            notification(
                NotificationKind::IncidentCreated,
                Audience::Administrators,
                id,
                "Burst",
                Priority::Medium,
                &[],
            )
        })
        .collect();

    let journal = Journal::open(&path, &JournalConfig::default()).unwrap();
    let (writer, _completions) = JournalWriter::<SourceRef>::start(journal).unwrap();
    // As the runtime does: the decisions are committed before the notifier is handed them.
    let decided = burst
        .iter()
        .map(|notification| {
            JournalRecord::Decided(Decision {
                notification: notification.clone(),
                at: chrono::Utc::now(),
            })
        })
        .collect();
    writer.record_committed(decided).await.unwrap();
    let refill = Refill {
        source: Arc::new(DecidedRows::new(&path)),
        horizon: Duration::from_secs(config.dedup.resume_horizon_secs),
    };
    let mut notifier = Notifier::start_gated(
        &config,
        Some(Arc::new(writer.clone())),
        Default::default(),
        incident_console::core::permit::SideEffects::always(),
        Some(refill),
    )
    .unwrap();
    for notification in &burst {
        notifier.submit(notification.clone());
    }
    assert_eq!(
        notifier.status().outbox_overflowed,
        8,
        "the outbox took 2 of the 10"
    );

    let ok = receiver.wait_ok("/webhook", burst.len()).await;
    let mut ids: Vec<i64> = ok
        .iter()
        .map(|received| received.body["incident_id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (300..310).collect::<Vec<_>>(),
        "every notification of the burst, once"
    );
    eventually(WAIT, "all ten to be delivered", || {
        (notifier.status().delivered == 10).then_some(())
    })
    .await;
    notifier.shutdown(Duration::from_secs(5)).await;
    drop(notifier);
    writer.shutdown().await.unwrap();
    assert_eq!(
        receiver.on("/webhook").len(),
        10,
        "nothing sent twice while the refill read rows back"
    );
    assert_eq!(deliveries(&path), [("delivered".to_string(), 10)]);
}
