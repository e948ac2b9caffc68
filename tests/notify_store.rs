//! The outbox/dedup state behind `OutboxStore` outlives a notifier when the store does: what a
//! persistent store (the journal) will give. Here one store is shared by two notifiers in
//! turn, like one console stopping during an outage and starting again.

#[path = "support/notify_fixtures.rs"]
mod fixtures;
#[path = "support/notify_servers.rs"]
mod servers;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use incident_console::core::engine::{Audience, NotificationKind};
use incident_console::core::event::Priority;
use incident_console::notify::{Delivery, InMemoryOutboxStore, Notifier, OutboxStore};

use fixtures::{fast_config, notification};
use servers::{HttpReceiver, WAIT, eventually, free_port};

/// A store that survives the notifier using it, as a journal-backed one would.
#[derive(Clone)]
struct Kept(Arc<Mutex<InMemoryOutboxStore>>);

impl OutboxStore for Kept {
    fn claim(&mut self, key: &str, now: DateTime<Utc>) -> bool {
        self.0.lock().unwrap().claim(key, now)
    }
    fn enqueue(&mut self, delivery: &Delivery) {
        self.0.lock().unwrap().enqueue(delivery)
    }
    fn delivered(&mut self, key: &str, now: DateTime<Utc>) {
        self.0.lock().unwrap().delivered(key, now)
    }
    fn abandoned(&mut self, key: &str) {
        self.0.lock().unwrap().abandoned(key)
    }
    fn pending(&self) -> Vec<Delivery> {
        self.0.lock().unwrap().pending()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_resume_and_dedup_holds_across_a_restart() {
    let store = Kept(Arc::new(Mutex::new(InMemoryOutboxStore::new(
        Duration::from_secs(3600),
        1000,
    ))));
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
    let mut first = Notifier::start_with_store(&config, Box::new(store.clone())).unwrap();
    first.submit(created.clone());
    eventually(WAIT, "the delivery to be retrying", || {
        (first.status().channels[0].retrying > 0).then_some(())
    })
    .await;
    first.shutdown(Duration::from_millis(100)).await;
    let pending = store.pending();
    assert_eq!(pending.len(), 1, "still owed after the first run");
    assert_eq!(pending[0].key, "77/incident_created/0|webhook|webhook");

    // Second run: the webhook is back. The owed delivery is resumed, and the same
    // notification arriving again (a re-read Kafka message) is recognised as sent.
    let mut receiver = HttpReceiver::start_on(port).await;
    let mut second = Notifier::start_with_store(&config, Box::new(store.clone())).unwrap();
    let ok = receiver.wait_ok("/webhook", 1).await;
    assert_eq!(ok[0].body["incident_id"], 77);
    assert_eq!(ok[0].headers["idempotency-key"], "77/incident_created/0");
    second.submit(created);
    eventually(WAIT, "the repeat to be dropped", || {
        let status = second.status();
        (status.deduplicated == 1 && status.delivered == 1).then_some(())
    })
    .await;
    second.shutdown(Duration::from_secs(5)).await;
    assert!(store.pending().is_empty());
    assert_eq!(
        receiver.on("/webhook").len(),
        1,
        "exactly once over both runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_delivery_for_a_channel_now_off_is_counted_not_lost_silently() {
    let store = Kept(Arc::new(Mutex::new(InMemoryOutboxStore::new(
        Duration::from_secs(3600),
        1000,
    ))));
    let mut config = fast_config();
    config.webhook.url = Some(format!("http://127.0.0.1:{}/webhook", free_port()));
    let mut first = Notifier::start_with_store(&config, Box::new(store.clone())).unwrap();
    first.submit(notification(
        NotificationKind::Resolved,
        Audience::Administrators,
        78,
        "Stored",
        Priority::Low,
        &[],
    ));
    eventually(WAIT, "the delivery to be held", || {
        (!store.pending().is_empty()).then_some(())
    })
    .await;
    first.shutdown(Duration::from_millis(50)).await;
    config.webhook.url = None;
    let mut second = Notifier::start_with_store(&config, Box::new(store.clone())).unwrap();
    let status = second.status();
    assert_eq!(status.failed, 1);
    assert!(store.pending().is_empty());
    second.shutdown(Duration::from_secs(1)).await;
}
