//! What the notifier remembers and what it reports: the delivery keys claimed recently
//! ([`Claims`], for deduplication, in memory) and each change in a delivery's life
//! ([`DeliveryChange`]), which the journal records through a [`DeliveryRecorder`]. The journal
//! is the one owner of notification state; the notifier never opens it.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use incident_core::engine::{Notification, NotificationKind};
use incident_core::event::IncidentId;

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
    /// What it tells: a notification of one kind, or a rate-limit summary.
    pub kind: DeliveryKind,
    pub payload: Payload,
    pub accepted_at: DateTime<Utc>,
    /// Retries stop at this time; the delivery then counts as failed.
    pub give_up_at: DateTime<Utc>,
}

/// What a delivery tells. Written as the notification kind's name, or `digest`, in the journal
/// and on the state topic, as it was when this was a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum DeliveryKind {
    Notification(NotificationKind),
    /// A rate-limit summary of the notifications held back.
    Digest,
}

impl DeliveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notification(kind) => kind.as_str(),
            Self::Digest => "digest",
        }
    }
}

impl From<NotificationKind> for DeliveryKind {
    fn from(kind: NotificationKind) -> Self {
        Self::Notification(kind)
    }
}

impl From<DeliveryKind> for String {
    fn from(kind: DeliveryKind) -> Self {
        kind.as_str().into()
    }
}

impl TryFrom<String> for DeliveryKind {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        if name == "digest" {
            return Ok(Self::Digest);
        }
        super::config::kind_from_str(&name)
            .map(Self::Notification)
            .ok_or_else(|| format!("unknown delivery kind `{name}`"))
    }
}

impl std::fmt::Display for DeliveryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Delivery {
    pub fn key_for(dedup_key: &str, channel: Channel, recipient: &str) -> String {
        format!("{dedup_key}|{channel}|{}", recipient.to_lowercase())
    }
}

/// What became of a delivery, for whoever keeps notification state durably (the journal,
/// through its writer thread). The notifier never reads these back while it runs: its
/// deduplication works from [`Claims`] in memory, seeded from the journal at start.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryChange {
    /// The notification `dedup_key` was dealt with: each of its deliveries was queued (and
    /// recorded before this), held back for a digest, or found to be a duplicate.
    Routed {
        dedup_key: String,
        at: DateTime<Utc>,
    },
    /// A claimed delivery is about to be attempted. Recorded before it is handed to its
    /// channel, so its outcome can never be recorded before it.
    Queued(Box<Delivery>),
    /// One attempt of the delivery `key` finished.
    Attempted {
        key: String,
        at: DateTime<Utc>,
        outcome: AttemptOutcome,
    },
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    /// Will be tried again after a backoff.
    Retrying {
        error: String,
    },
    /// Given up: the delivery is failed, and its key released.
    Failed {
        error: String,
    },
}

impl AttemptOutcome {
    /// The name the journal stores.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retrying { .. } => "failed",
            Self::Failed { .. } => "gave_up",
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Delivered => None,
            Self::Retrying { error } | Self::Failed { error } => Some(error),
        }
    }
}

/// Where the notifier sends [`DeliveryChange`]s: the journal's writer. `record` returns once
/// the changes are durable, so a slow disk slows delivery down rather than losing a mark: a
/// delivery is durable as queued (its claim) before it is sent, and as delivered before its
/// channel slot is free again, so a crash can repeat only the sends in flight.
pub trait DeliveryRecorder: Send + Sync {
    fn record(&self, changes: Vec<DeliveryChange>) -> BoxFuture<'_, ()>;
}

/// What the notifier resumes at a start: from the journal (`Journal::resume_notifications`),
/// or in team mode from `<topic>.state` (`team::state::Restorer`). One type for both.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResumedNotifications {
    /// Decided within the resume horizon and never routed: to be routed now.
    pub decided: Vec<Notification>,
    /// Pending deliveries and recent claims, for the notifier.
    pub deliveries: ResumedDeliveries,
    /// Decided notifications older than the horizon, never routed: not sent (the journal
    /// marks them expired).
    pub expired_notifications: usize,
    /// Pending deliveries older than the horizon: not sent (the journal marks them expired).
    pub expired_deliveries: usize,
}

/// Notification state read back from the journal at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResumedDeliveries {
    /// Deliveries queued before the restart and not finished, within the resume horizon:
    /// they are sent now.
    pub pending: Vec<Delivery>,
    /// Delivery keys queued within the deduplication window (delivered, pending or expired,
    /// not failed), with when: they are not sent again.
    pub claims: Vec<(String, DateTime<Utc>)>,
}

/// Delivery keys claimed within `window`, at most `max_entries` (oldest forgotten first), in
/// memory. The journal keeps them across restarts (`ResumedDeliveries::claims`). The one
/// window of claims: the notifier's, and in team mode the state topic's copy of the delivered
/// ones, which deletes each key this forgets (`reporting_forgotten`).
#[derive(Debug)]
pub struct Claims {
    window: Duration,
    max_entries: usize,
    claimed: HashMap<String, DateTime<Utc>>,
    /// Claims in time order; an entry whose time differs from `claimed` is stale.
    order: VecDeque<(DateTime<Utc>, String)>,
    /// With `reporting_forgotten`: the keys forgotten since the last `take_forgotten`, oldest
    /// first. Its owner drains it about once a second; it holds at most the keys claimed
    /// meanwhile.
    forgotten: Option<Vec<String>>,
}

impl Claims {
    pub fn new(window: Duration, max_entries: usize) -> Self {
        Self {
            window,
            max_entries: max_entries.max(1),
            claimed: HashMap::new(),
            order: VecDeque::new(),
            forgotten: None,
        }
    }

    /// These claims, also saying which keys they forget (`take_forgotten`).
    pub fn reporting_forgotten(mut self) -> Self {
        self.forgotten = Some(Vec::new());
        self
    }

    /// The keys forgotten since the last call, by the window (as of `now`) or by the bound,
    /// oldest first. Empty unless `reporting_forgotten`.
    pub fn take_forgotten(&mut self, now: DateTime<Utc>) -> Vec<String> {
        self.prune(now);
        self.forgotten
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
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
            if let Some(forgotten) = &mut self.forgotten {
                forgotten.push(key);
            }
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

    /// Claims `key` at `now`: `false` if it was claimed within the window and not released
    /// since (the delivery is a duplicate and must not be sent).
    pub fn claim(&mut self, key: &str, now: DateTime<Utc>) -> bool {
        self.prune(now);
        if let Some(at) = self.claimed.get(key)
            && !self.expired(*at, now)
        {
            return false;
        }
        self.insert(key, now);
        true
    }

    /// Remembers a claim made elsewhere: before a restart, or (for the state topic's copy) by
    /// a delivery. Claims must be given oldest first.
    pub fn restore(&mut self, key: &str, at: DateTime<Utc>) {
        self.insert(key, at);
    }

    fn insert(&mut self, key: &str, at: DateTime<Utc>) {
        while self.claimed.len() >= self.max_entries {
            self.forget_front();
        }
        self.claimed.insert(key.to_string(), at);
        self.order.push_back((at, key.to_string()));
        // Stale entries (re-claimed keys) must not keep the queue growing.
        while self.order.len() > self.max_entries.saturating_mul(2) {
            self.forget_front();
        }
    }

    /// The delivery failed for good: an identical notification later is tried again.
    pub fn release(&mut self, key: &str) {
        self.claimed.remove(key);
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
        let mut store = Claims::new(Duration::from_secs(60), 100);
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
        let mut store = Claims::new(Duration::from_secs(60), 100);
        assert!(store.claim("k", at(0)));
        store.release("k");
        assert!(store.claim("k", at(1)));
        assert!(!store.claim("k", at(3)));
    }

    #[test]
    fn memory_is_bounded_oldest_first() {
        let mut store = Claims::new(Duration::from_secs(3600), 3);
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(store.claim(key, at(i as i64)));
        }
        assert_eq!(store.remembered(), 3);
        // "a" was forgotten to make room; "b".."d" are still known.
        assert!(store.claim("a", at(10)));
        assert!(!store.claim("d", at(10)));
        for i in 0..100 {
            store.release("x");
            store.claim("x", at(20 + i));
        }
        assert!(store.order.len() <= 6);
        assert!(store.remembered() <= 3);
    }

    #[test]
    fn forgotten_keys_are_reported_once_by_the_window_or_the_bound() {
        let mut claims = Claims::new(Duration::from_secs(24 * 3600), 3).reporting_forgotten();
        for (seconds, key) in [(0, "a"), (60, "b"), (120, "c")] {
            claims.restore(key, at(seconds));
        }
        assert!(
            claims.take_forgotten(at(3600)).is_empty(),
            "all within the window"
        );
        assert_eq!(claims.take_forgotten(at(24 * 3600 + 60)), ["a", "b"]);
        assert!(claims.take_forgotten(at(24 * 3600 + 60)).is_empty(), "once");
        // Over the bound: the oldest goes, whatever its age.
        for (seconds, key) in [(200, "d"), (300, "e"), (400, "f")] {
            claims.restore(key, at(seconds));
        }
        assert_eq!(claims.take_forgotten(at(500)), ["c"]);
        assert_eq!(claims.remembered(), 3);
        // Without reporting, nothing is kept for it.
        let mut quiet = Claims::new(Duration::from_secs(1), 1);
        quiet.restore("x", at(0));
        quiet.restore("y", at(5));
        assert!(quiet.take_forgotten(at(10)).is_empty());
    }

    #[test]
    fn restored_claims_count_within_the_window() {
        let mut store = Claims::new(Duration::from_secs(60), 10);
        store.restore("old", at(0));
        store.restore("recent", at(50));
        assert!(!store.claim("recent", at(100)), "claimed 50 s before");
        assert!(
            store.claim("old", at(100)),
            "claimed 100 s before: window passed"
        );
    }

    #[test]
    fn a_delivery_is_plain_json() {
        let delivery = crate::fixtures::webhook_delivery("a", at(1));
        let json = serde_json::to_string(&delivery).unwrap();
        let back: Delivery = serde_json::from_str(&json).unwrap();
        assert_eq!(back, delivery);
    }
}
