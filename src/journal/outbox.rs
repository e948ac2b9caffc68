//! The notification outbox kept in the journal, so that deduplication and undelivered
//! notifications survive a restart (and a `kill -9`).
//!
//! Two kinds of rows share the journal's `notifications` table:
//! - *intents*: a notification the engine decided on (`channel = 'intent'`), written by the
//!   runtime in the same transaction as the event that caused it. Once the notifier has routed
//!   it into deliveries it is marked delivered; one still pending after a restart is routed
//!   again (deduplication stops whatever was already queued).
//! - *deliveries*: one message to one recipient on one channel, written by the notifier before
//!   its first attempt, marked delivered or failed when it is.
//!
//! `notification_claims` remembers which delivery keys were queued, and when, for the
//! deduplication window.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::JournalError;
use super::query::time_text;
use crate::core::engine::Notification;
use crate::core::event::Timestamp;
use crate::notify::{Delivery, OutboxStore};

/// The channel name that marks an intent row.
pub const INTENT_CHANNEL: &str = "intent";
/// Claims made in this process and not yet queued (held back by the rate limiter, say).
const MAX_UNQUEUED_CLAIMS: usize = 100_000;

pub struct JournalOutboxStore {
    connection: Connection,
    window: chrono::TimeDelta,
    unqueued: HashSet<String>,
    unqueued_order: VecDeque<String>,
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
    move |error| JournalError::from_sqlite(path, error)
}

impl JournalOutboxStore {
    /// Opens a second connection to a journal that `Journal::open` has already created.
    pub fn open(path: &Path, dedup_window: Duration) -> Result<Self, JournalError> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite(path))?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(sqlite(path))?;
        connection
            .execute_batch(
                "PRAGMA synchronous = FULL;
                 CREATE TABLE IF NOT EXISTS notification_claims (
                     key        TEXT PRIMARY KEY,
                     claimed_at TEXT NOT NULL
                 );",
            )
            .map_err(sqlite(path))?;
        let window = chrono::TimeDelta::from_std(dedup_window).unwrap_or(chrono::TimeDelta::MAX);
        let horizon = chrono::Utc::now()
            .checked_sub_signed(window)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        connection
            .execute(
                "DELETE FROM notification_claims WHERE claimed_at < ?1",
                params![time_text(&horizon)],
            )
            .map_err(sqlite(path))?;
        Ok(Self {
            connection,
            window,
            unqueued: HashSet::new(),
            unqueued_order: VecDeque::new(),
        })
    }

    fn forget_unqueued(&mut self, key: &str) {
        if self.unqueued.remove(key) {
            self.unqueued_order.retain(|k| k != key);
        }
    }

    fn log(result: rusqlite::Result<usize>, what: &str) {
        if let Err(error) = result {
            tracing::error!(%error, "journal outbox: cannot record {what}");
        }
    }
}

impl OutboxStore for JournalOutboxStore {
    fn claim(&mut self, key: &str, now: Timestamp) -> bool {
        if self.unqueued.contains(key) {
            return false;
        }
        let claimed_at: Option<String> = self
            .connection
            .query_row(
                "SELECT claimed_at FROM notification_claims WHERE key = ?1",
                params![key],
                |row| row.get(0),
            )
            .optional()
            .unwrap_or_else(|error| {
                tracing::error!(%error, "journal outbox: cannot read claims");
                None
            });
        let recent = claimed_at
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(&text).ok())
            .is_some_and(|at| now.signed_duration_since(at) < self.window);
        if recent {
            return false;
        }
        if self.unqueued_order.len() >= MAX_UNQUEUED_CLAIMS
            && let Some(oldest) = self.unqueued_order.pop_front()
        {
            self.unqueued.remove(&oldest);
        }
        self.unqueued.insert(key.to_string());
        self.unqueued_order.push_back(key.to_string());
        true
    }

    fn enqueue(&mut self, delivery: &Delivery) {
        self.forget_unqueued(&delivery.key);
        let payload = match serde_json::to_string(delivery) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, "journal outbox: cannot serialise a delivery");
                return;
            }
        };
        let at = time_text(&delivery.accepted_at);
        // Claim and delivery together: a crash leaves both or neither.
        let result = self
            .connection
            .execute_batch("BEGIN IMMEDIATE")
            .and_then(|_| {
                self.connection.execute(
                    "INSERT INTO notification_claims (key, claimed_at) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET claimed_at = excluded.claimed_at",
                    params![delivery.key, at],
                )?;
                self.connection.execute(
                    "INSERT INTO notifications
                     (dedup_key, channel, recipient, incident_id, payload, queued_at, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')
                 ON CONFLICT (dedup_key, channel, recipient) DO UPDATE
                     SET payload = excluded.payload, state = 'pending', finished_at = NULL",
                    params![
                        delivery.key,
                        delivery.channel.as_str(),
                        delivery.recipient,
                        delivery.incident_id,
                        payload,
                        at
                    ],
                )?;
                self.connection.execute_batch("COMMIT")
            });
        if let Err(error) = result {
            let _ = self.connection.execute_batch("ROLLBACK");
            tracing::error!(%error, key = delivery.key, "journal outbox: cannot queue a delivery");
        }
    }

    fn delivered(&mut self, key: &str, now: Timestamp) {
        let at = time_text(&now);
        Self::log(
            self.connection.execute(
                "UPDATE notifications SET state = 'delivered', finished_at = ?2,
                     attempts = attempts + 1
                 WHERE dedup_key = ?1 AND channel != 'intent'",
                params![key, at],
            ),
            "a delivery",
        );
        Self::log(
            self.connection.execute(
                "INSERT INTO notification_attempts
                     (dedup_key, channel, recipient, attempt, at, outcome)
                 SELECT dedup_key, channel, recipient, attempts, ?2, 'delivered'
                 FROM notifications WHERE dedup_key = ?1 AND channel != 'intent'",
                params![key, at],
            ),
            "a delivery attempt",
        );
    }

    fn abandoned(&mut self, key: &str) {
        self.forget_unqueued(key);
        let at = time_text(&chrono::Utc::now());
        Self::log(
            self.connection.execute(
                "UPDATE notifications SET state = 'failed', finished_at = ?2
                 WHERE dedup_key = ?1 AND channel != 'intent' AND state = 'pending'",
                params![key, at],
            ),
            "a failed delivery",
        );
        Self::log(
            self.connection.execute(
                "DELETE FROM notification_claims WHERE key = ?1",
                params![key],
            ),
            "a released claim",
        );
    }

    fn pending(&self) -> Vec<Delivery> {
        let read = || -> rusqlite::Result<Vec<String>> {
            let mut statement = self.connection.prepare(
                "SELECT payload FROM notifications
                 WHERE state = 'pending' AND channel != 'intent' ORDER BY id",
            )?;
            statement
                .query_map([], |row| row.get::<_, String>(0))?
                .collect()
        };
        match read() {
            Ok(payloads) => payloads
                .iter()
                .filter_map(|payload| serde_json::from_str(payload).ok())
                .collect(),
            Err(error) => {
                tracing::error!(%error, "journal outbox: cannot read pending deliveries");
                Vec::new()
            }
        }
    }

    fn routed(&mut self, dedup_key: &str) {
        Self::log(
            self.connection.execute(
                "UPDATE notifications SET state = 'delivered', finished_at = ?2
                 WHERE dedup_key = ?1 AND channel = 'intent' AND state = 'pending'",
                params![dedup_key, time_text(&chrono::Utc::now())],
            ),
            "a routed notification",
        );
    }
}

/// Notifications decided before a restart and never routed, oldest first.
pub fn pending_intents(path: &Path) -> Result<Vec<Notification>, JournalError> {
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite(path))?;
    let mut statement = connection
        .prepare(
            "SELECT payload FROM notifications
             WHERE state = 'pending' AND channel = 'intent' ORDER BY id",
        )
        .map_err(sqlite(path))?;
    let payloads: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .map_err(sqlite(path))?;
    Ok(payloads
        .iter()
        .filter_map(|payload| match serde_json::from_str(payload) {
            Ok(notification) => Some(notification),
            Err(error) => {
                tracing::warn!(%error, "journal: unreadable pending notification skipped");
                None
            }
        })
        .collect())
}

/// The highest journaled offset of each partition: a message at or below it may be a
/// re-delivery, and is looked up; above it, it cannot be.
pub fn highest_offsets(path: &Path) -> Result<Vec<(String, i32, i64)>, JournalError> {
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite(path))?;
    let mut statement = connection
        .prepare(
            "SELECT kafka_topic, kafka_partition, max(kafka_offset) FROM events
             GROUP BY kafka_topic, kafka_partition",
        )
        .map_err(sqlite(path))?;
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .and_then(|rows| rows.collect())
        .map_err(sqlite(path))
}

/// For tests and tools: the number of delivery rows in each state.
pub fn delivery_states(path: &Path) -> Result<Vec<(String, i64)>, JournalError> {
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite(path))?;
    let mut statement = connection
        .prepare(
            "SELECT state, count(*) FROM notifications WHERE channel != 'intent'
             GROUP BY state ORDER BY state",
        )
        .map_err(sqlite(path))?;
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(sqlite(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Journal, JournalConfig};
    use crate::notify::{Channel, Payload};

    fn delivery(key: &str) -> Delivery {
        Delivery {
            key: key.into(),
            channel: Channel::Email,
            recipient: "a@example.com".into(),
            incident_id: Some(1),
            kind: "incident_created".into(),
            payload: Payload::Email {
                to: "a@example.com".into(),
                subject: "s".into(),
                body: "b".into(),
            },
            accepted_at: chrono::Utc::now(),
            give_up_at: chrono::Utc::now() + chrono::TimeDelta::hours(1),
        }
    }

    #[test]
    fn claims_deliveries_and_pending_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite3");
        let _journal = Journal::open(&path, &JournalConfig::default()).unwrap();
        let window = Duration::from_secs(3600);
        let now = chrono::Utc::now();
        {
            let mut store = JournalOutboxStore::open(&path, window).unwrap();
            assert!(store.claim("k1", now));
            assert!(!store.claim("k1", now), "claimed in this process");
            store.enqueue(&delivery("k1"));
            assert!(store.claim("k2", now));
            store.enqueue(&delivery("k2"));
            store.delivered("k2", now);
            assert!(store.claim("k3", now));
            store.enqueue(&delivery("k3"));
            store.abandoned("k3");
        }
        let mut reopened = JournalOutboxStore::open(&path, window).unwrap();
        let pending: Vec<_> = reopened.pending().into_iter().map(|d| d.key).collect();
        assert_eq!(pending, vec!["k1"]);
        assert!(!reopened.claim("k1", now), "queued before the restart");
        assert!(!reopened.claim("k2", now), "delivered before the restart");
        assert!(reopened.claim("k3", now), "given up: may be tried again");
        assert!(
            reopened.claim("k2", now + chrono::TimeDelta::hours(2)),
            "window passed"
        );
        assert_eq!(
            delivery_states(&path).unwrap(),
            vec![
                ("delivered".to_string(), 1),
                ("failed".to_string(), 1),
                ("pending".to_string(), 1)
            ]
        );
    }
}
