//! The outbox's memory: which deliveries were accepted and not yet finished, and which were
//! sent recently (deduplication). Behind a trait so a persistent store (the journal) can keep
//! both across restarts; `InMemoryOutboxStore` is the default, bounded and forgetful.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::core::event::IncidentId;

use super::config::Channel;

/// What goes over the wire, rendered when the delivery was accepted, so a resumed delivery
/// needs neither the notification nor the templates. Holds no secrets: the PagerDuty routing
/// key, webhook token and Slack URL are added when sending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    Email {
        to: String,
        subject: String,
        body: String,
    },
    /// A text message; the sender and the account's credentials are added when sending.
    Sms { to: String, body: String },
    /// A JSON body for Slack, PagerDuty (without `routing_key`) or the webhook.
    Json {
        body: serde_json::Value,
        /// Sent as `Idempotency-Key` so a receiver can drop a retried duplicate.
        idempotency_key: Option<String>,
    },
}

/// One message to one recipient on one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// `<notification dedup_key>|<channel>|<recipient>`: the deduplication key.
    pub key: String,
    pub channel: Channel,
    /// An email address, a phone number (SMS), or the channel name for the single-endpoint
    /// channels.
    pub recipient: String,
    pub incident_id: Option<IncidentId>,
    /// The notification kind, or "digest" for a rate-limit summary.
    pub kind: String,
    pub payload: Payload,
    pub accepted_at: DateTime<Utc>,
    /// Retries stop at this time; the delivery then counts as failed.
    pub give_up_at: DateTime<Utc>,
}

impl Delivery {
    pub fn key_for(dedup_key: &str, channel: Channel, recipient: &str) -> String {
        format!("{dedup_key}|{channel}|{}", recipient.to_lowercase())
    }
}

/// State behind deduplication and the outbox. Called from the notifier's dispatcher and
/// channel tasks (never from `Notifier::submit`), under one mutex, so implementations may do
/// quick blocking I/O such as an SQLite write.
///
/// Life of a key: `claim` (new, or refused as a duplicate) -> `enqueue` -> `delivered` or
/// `abandoned`. A claimed key that the rate limiter held back is never enqueued; it stays
/// claimed (it was summarised in a digest).
pub trait OutboxStore: Send {
    /// Claims `key` at `now`: `false` if it was claimed within the deduplication window and
    /// not abandoned since (the delivery is a duplicate and must not be sent).
    fn claim(&mut self, key: &str, now: DateTime<Utc>) -> bool;
    /// A claimed delivery is about to be attempted; keep it until `delivered` or `abandoned`.
    fn enqueue(&mut self, delivery: &Delivery);
    /// The channel accepted the delivery: forget the delivery, keep its key for the window.
    fn delivered(&mut self, key: &str, now: DateTime<Utc>);
    /// The delivery failed for good: forget it and its key, so an identical notification
    /// later is tried again.
    fn abandoned(&mut self, key: &str);
    /// Deliveries enqueued and not finished, oldest first: what to resume after a restart.
    fn pending(&self) -> Vec<Delivery>;
    /// Every delivery of the notification with this dedup key has been claimed (and queued,
    /// held back or found duplicate): the notification itself is dealt with.
    fn routed(&mut self, _dedup_key: &str) {}
}

/// Keys for `window`, at most `max_entries` (oldest forgotten first), and pending deliveries,
/// all in memory: deduplication does not survive a restart, nor does the outbox.
#[derive(Debug)]
pub struct InMemoryOutboxStore {
    window: Duration,
    max_entries: usize,
    claimed: HashMap<String, DateTime<Utc>>,
    /// Claims in time order; an entry whose time differs from `claimed` is stale.
    order: VecDeque<(DateTime<Utc>, String)>,
    pending: BTreeMap<String, Delivery>,
}

impl InMemoryOutboxStore {
    pub fn new(window: Duration, max_entries: usize) -> Self {
        Self {
            window,
            max_entries: max_entries.max(1),
            claimed: HashMap::new(),
            order: VecDeque::new(),
            pending: BTreeMap::new(),
        }
    }

    pub fn remembered(&self) -> usize {
        self.claimed.len()
    }

    fn expired(&self, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        (now - at).to_std().is_ok_and(|age| age >= self.window)
    }

    fn forget_front(&mut self) {
        if let Some((at, key)) = self.order.pop_front()
            && self.claimed.get(&key) == Some(&at)
        {
            self.claimed.remove(&key);
        }
    }

    fn prune(&mut self, now: DateTime<Utc>) {
        while let Some((at, _)) = self.order.front() {
            if !self.expired(*at, now) {
                break;
            }
            self.forget_front();
        }
    }
}

impl OutboxStore for InMemoryOutboxStore {
    fn claim(&mut self, key: &str, now: DateTime<Utc>) -> bool {
        self.prune(now);
        if let Some(at) = self.claimed.get(key)
            && !self.expired(*at, now)
        {
            return false;
        }
        while self.claimed.len() >= self.max_entries {
            self.forget_front();
        }
        self.claimed.insert(key.to_string(), now);
        self.order.push_back((now, key.to_string()));
        // Stale entries (re-claimed keys) must not keep the queue growing.
        while self.order.len() > self.max_entries.saturating_mul(2) {
            self.forget_front();
        }
        true
    }

    fn enqueue(&mut self, delivery: &Delivery) {
        self.pending.insert(delivery.key.clone(), delivery.clone());
    }

    fn delivered(&mut self, key: &str, _now: DateTime<Utc>) {
        self.pending.remove(key);
    }

    fn abandoned(&mut self, key: &str) {
        self.pending.remove(key);
        self.claimed.remove(key);
    }

    fn pending(&self) -> Vec<Delivery> {
        let mut pending: Vec<Delivery> = self.pending.values().cloned().collect();
        pending.sort_by_key(|d| d.accepted_at);
        pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_key_is_claimed_once_per_window() {
        let mut store = InMemoryOutboxStore::new(Duration::from_secs(60), 100);
        let cases = [
            (0, "a", true),
            (1, "a", false),
            (1, "b", true),
            (59, "a", false),
            (60, "a", true),
            (61, "b", true),
            (62, "a", false),
        ];
        for (time, key, expected) in cases {
            assert_eq!(store.claim(key, at(time)), expected, "{key} at {time}");
        }
    }

    #[test]
    fn an_abandoned_key_can_be_tried_again() {
        let mut store = InMemoryOutboxStore::new(Duration::from_secs(60), 100);
        assert!(store.claim("k", at(0)));
        store.abandoned("k");
        assert!(store.claim("k", at(1)));
        store.delivered("k", at(2));
        assert!(!store.claim("k", at(3)));
    }

    #[test]
    fn memory_is_bounded_oldest_first() {
        let mut store = InMemoryOutboxStore::new(Duration::from_secs(3600), 3);
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(store.claim(key, at(i as i64)));
        }
        assert_eq!(store.remembered(), 3);
        // "a" was forgotten to make room; "b".."d" are still known.
        assert!(store.claim("a", at(10)));
        assert!(!store.claim("d", at(10)));
        for i in 0..100 {
            store.abandoned("x");
            store.claim("x", at(20 + i));
        }
        assert!(store.order.len() <= 6);
        assert!(store.remembered() <= 3);
    }

    #[test]
    fn pending_deliveries_are_kept_until_finished() {
        let mut store = InMemoryOutboxStore::new(Duration::from_secs(60), 10);
        let delivery = |key: &str, second: i64| Delivery {
            key: key.into(),
            channel: Channel::Webhook,
            recipient: "webhook".into(),
            incident_id: Some(1),
            kind: "incident_created".into(),
            payload: Payload::Json {
                body: serde_json::json!({}),
                idempotency_key: None,
            },
            accepted_at: at(second),
            give_up_at: at(second + 60),
        };
        store.enqueue(&delivery("b", 2));
        store.enqueue(&delivery("a", 1));
        store.enqueue(&delivery("c", 3));
        store.delivered("b", at(4));
        store.abandoned("c");
        let keys: Vec<String> = store.pending().into_iter().map(|d| d.key).collect();
        assert_eq!(keys, ["a"]);
        // What a persistent store would write is plain JSON.
        let json = serde_json::to_string(&delivery("a", 1)).unwrap();
        let back: Delivery = serde_json::from_str(&json).unwrap();
        assert_eq!(back, delivery("a", 1));
    }
}
