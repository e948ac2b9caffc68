//! The notification outbox, kept beside the journal so that deduplication and undelivered
//! notifications survive a restart (and a `kill -9`).
//!
//! - *Intents*: each notification the engine decides on is written by the runtime into the
//!   journal's `notifications` table (`channel = 'intent'`), in the same transaction as the
//!   event that caused it.
//! - The notifier's own state lives in a second SQLite file, `<journal>.outbox`, written only
//!   by the notifier, so it never waits for the journal's writer: `claims` (delivery keys
//!   queued within the deduplication window), `deliveries` (one message to one recipient on
//!   one channel, with its state) and `routed` (intents the notifier has dealt with).
//! - An intent in the journal with no `routed` row was never dealt with: after a restart, or
//!   after the notifier's outbox overflowed, it is routed again; deduplication stops whatever
//!   had already been queued.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::JournalError;
use super::query::time_text;
use crate::core::engine::Notification;
use crate::core::event::Timestamp;
use crate::notify::{Delivery, OutboxStore};

/// The channel name that marks an intent row in the journal.
pub const INTENT_CHANNEL: &str = "intent";
/// Claims made in this process and not yet queued (held back by the rate limiter, say).
const MAX_UNQUEUED_CLAIMS: usize = 100_000;

const OUTBOX_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS claims (
    key        TEXT PRIMARY KEY,
    claimed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    key         TEXT PRIMARY KEY,
    channel     TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    incident_id INTEGER,
    payload     TEXT NOT NULL,
    queued_at   TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_by_state ON deliveries (state, queued_at);
CREATE TABLE IF NOT EXISTS routed (
    dedup_key TEXT PRIMARY KEY,
    at        TEXT NOT NULL
);
";

/// `<journal>.outbox`, beside the journal.
pub fn outbox_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".outbox");
    PathBuf::from(name)
}

type HistorySink = Box<dyn Fn(Vec<super::JournalRecord>) + Send>;

pub struct JournalOutboxStore {
    connection: Connection,
    /// The journal's own tables get a copy of each delivery and attempt, for history queries.
    history: Option<HistorySink>,
    window: chrono::TimeDelta,
    unqueued: HashSet<String>,
    unqueued_order: VecDeque<String>,
    /// Routed marks not yet written. Losing them to a crash only means routing those
    /// notifications again after the restart, which deduplication makes harmless; writing them
    /// in groups keeps one transaction per notification off the hot path.
    unwritten_routed: Vec<(String, String)>,
}

/// Routed marks are written in groups of this many (or sooner, with other writes).
const ROUTED_BATCH: usize = 256;

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
    move |error| JournalError::from_sqlite(path, error)
}

#[cfg(unix)]
fn create_private(path: &Path) -> Result<(), JournalError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|error| JournalError::cannot_open(path, error.to_string()))
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> Result<(), JournalError> {
    Ok(())
}

impl JournalOutboxStore {
    /// Opens (creating) the outbox beside the journal at `journal`.
    pub fn open(journal: &Path, dedup_window: Duration) -> Result<Self, JournalError> {
        let path = outbox_path(journal);
        create_private(&path)?;
        let connection = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite(&path))?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(sqlite(&path))?;
        // WAL + NORMAL: a commit survives the process being killed; only a power cut may lose
        // the last ones (a repeated message at worst). An fsync per notification (FULL) is
        // more than a console catching up on a backlog can afford.
        connection
            .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(sqlite(&path))?;
        connection
            .execute_batch(&format!("PRAGMA synchronous = NORMAL; {OUTBOX_SCHEMA}"))
            .map_err(sqlite(&path))?;
        let window = chrono::TimeDelta::from_std(dedup_window).unwrap_or(chrono::TimeDelta::MAX);
        let horizon = time_text(
            &chrono::Utc::now()
                .checked_sub_signed(window)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
        );
        connection
            .execute_batch("BEGIN")
            .and_then(|_| {
                connection.execute("DELETE FROM claims WHERE claimed_at < ?1", params![horizon])?;
                connection.execute("DELETE FROM routed WHERE at < ?1", params![horizon])?;
                connection.execute(
                    "DELETE FROM deliveries WHERE state != 'pending' AND finished_at < ?1",
                    params![horizon],
                )?;
                connection.execute_batch("COMMIT")
            })
            .map_err(sqlite(&path))?;
        Ok(Self {
            connection,
            history: None,
            window,
            unqueued: HashSet::new(),
            unqueued_order: VecDeque::new(),
            unwritten_routed: Vec::new(),
        })
    }

    fn write_routed(&mut self) {
        if self.unwritten_routed.is_empty() {
            return;
        }
        let marks = std::mem::take(&mut self.unwritten_routed);
        let result = self.connection.execute_batch("BEGIN").and_then(|_| {
            let mut statement = self
                .connection
                .prepare_cached("INSERT OR IGNORE INTO routed (dedup_key, at) VALUES (?1, ?2)")?;
            for (key, at) in &marks {
                statement.execute(params![key, at])?;
            }
            drop(statement);
            self.connection.execute_batch("COMMIT")
        });
        if let Err(error) = result {
            let _ = self.connection.execute_batch("ROLLBACK");
            tracing::error!(%error, "notification outbox: cannot record routed notifications");
        }
    }

    /// Copies deliveries and their outcomes into the journal (best effort, never waiting).
    pub fn with_history<T: Send + 'static>(mut self, writer: super::JournalWriter<T>) -> Self {
        self.history = Some(Box::new(move |records| {
            writer.try_record(records);
        }));
        self
    }

    fn record_history(&self, records: Vec<super::JournalRecord>) {
        if let Some(history) = &self.history {
            history(records);
        }
    }

    /// The journal's key for a delivery: its notification's dedup key, channel, recipient.
    fn history_key(delivery_key: &str, channel: &str, recipient: &str) -> super::DeliveryKey {
        super::DeliveryKey {
            dedup_key: delivery_key
                .split('|')
                .next()
                .unwrap_or(delivery_key)
                .to_string(),
            channel: channel.to_string(),
            recipient: recipient.to_string(),
        }
    }

    fn record_attempt(&self, key: &str, outcome: super::AttemptOutcome) {
        if self.history.is_none() {
            return;
        }
        let row: Option<(String, String, i64)> = self
            .connection
            .query_row(
                "SELECT channel, recipient, attempts FROM deliveries WHERE key = ?1",
                params![key],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .ok()
            .flatten();
        if let Some((channel, recipient, attempts)) = row {
            self.record_history(vec![super::JournalRecord::NotificationAttempt(
                super::DeliveryAttempt {
                    key: Self::history_key(key, &channel, &recipient),
                    attempt: u32::try_from(attempts.max(1)).unwrap_or(u32::MAX),
                    at: chrono::Utc::now(),
                    outcome,
                },
            )]);
        }
    }

    fn forget_unqueued(&mut self, key: &str) {
        if self.unqueued.remove(key) {
            self.unqueued_order.retain(|k| k != key);
        }
    }

    fn log(result: rusqlite::Result<usize>, what: &str) {
        if let Err(error) = result {
            tracing::error!(%error, "notification outbox: cannot record {what}");
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
                "SELECT claimed_at FROM claims WHERE key = ?1",
                params![key],
                |row| row.get(0),
            )
            .optional()
            .unwrap_or_else(|error| {
                tracing::error!(%error, "notification outbox: cannot read claims");
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
        self.write_routed();
        self.forget_unqueued(&delivery.key);
        let payload = match serde_json::to_string(delivery) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, "notification outbox: cannot serialise a delivery");
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
                    "INSERT INTO claims (key, claimed_at) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET claimed_at = excluded.claimed_at",
                    params![delivery.key, at],
                )?;
                self.connection.execute(
                    "INSERT INTO deliveries
                     (key, channel, recipient, incident_id, payload, queued_at, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')
                 ON CONFLICT (key) DO UPDATE
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
            tracing::error!(%error, key = delivery.key, "notification outbox: cannot queue a delivery");
            return;
        }
        if self.history.is_some() {
            self.record_history(vec![super::JournalRecord::NotificationQueued(
                super::OutboxEntry {
                    key: Self::history_key(
                        &delivery.key,
                        delivery.channel.as_str(),
                        &delivery.recipient,
                    ),
                    incident_id: delivery.incident_id,
                    payload: serde_json::to_value(&delivery.payload).unwrap_or_default(),
                    queued_at: delivery.accepted_at,
                },
            )]);
        }
    }

    fn delivered(&mut self, key: &str, now: Timestamp) {
        Self::log(
            self.connection.execute(
                "UPDATE deliveries SET state = 'delivered', finished_at = ?2,
                     attempts = attempts + 1
                 WHERE key = ?1",
                params![key, time_text(&now)],
            ),
            "a delivery",
        );
        self.record_attempt(key, super::AttemptOutcome::Delivered);
    }

    fn abandoned(&mut self, key: &str) {
        self.forget_unqueued(key);
        self.record_attempt(
            key,
            super::AttemptOutcome::Failed {
                error: "given up".into(),
                will_retry: false,
            },
        );
        let at = time_text(&chrono::Utc::now());
        Self::log(
            self.connection.execute(
                "UPDATE deliveries SET state = 'failed', finished_at = ?2
                 WHERE key = ?1 AND state = 'pending'",
                params![key, at],
            ),
            "a failed delivery",
        );
        Self::log(
            self.connection
                .execute("DELETE FROM claims WHERE key = ?1", params![key]),
            "a released claim",
        );
    }

    fn pending(&self) -> Vec<Delivery> {
        let read = || -> rusqlite::Result<Vec<String>> {
            let mut statement = self.connection.prepare(
                "SELECT payload FROM deliveries WHERE state = 'pending' ORDER BY queued_at, key",
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
                tracing::error!(%error, "notification outbox: cannot read pending deliveries");
                Vec::new()
            }
        }
    }

    fn routed(&mut self, dedup_key: &str) {
        self.unwritten_routed
            .push((dedup_key.to_string(), time_text(&chrono::Utc::now())));
        if self.unwritten_routed.len() >= ROUTED_BATCH {
            self.write_routed();
        }
    }
}

impl Drop for JournalOutboxStore {
    fn drop(&mut self) {
        self.write_routed();
    }
}

/// Notifications decided (before `older_than`) and never routed, oldest first, at most
/// `limit`: after a restart, or after the notifier's outbox overflowed.
pub fn pending_intents(
    path: &Path,
    older_than: Timestamp,
    limit: usize,
) -> Result<Vec<Notification>, JournalError> {
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite(path))?;
    let outbox = outbox_path(path);
    let routed_filter = if outbox.exists() {
        connection
            .execute(
                "ATTACH DATABASE ?1 AS outbox",
                params![outbox.to_string_lossy()],
            )
            .map_err(sqlite(&outbox))?;
        "AND NOT EXISTS (SELECT 1 FROM outbox.routed r WHERE r.dedup_key = n.dedup_key)"
    } else {
        ""
    };
    let mut statement = connection
        .prepare(&format!(
            "SELECT payload FROM notifications n
             WHERE n.state = 'pending' AND n.channel = 'intent' AND n.queued_at < ?1
             {routed_filter}
             ORDER BY n.id LIMIT ?2"
        ))
        .map_err(sqlite(path))?;
    let payloads: Vec<String> = statement
        .query_map(params![time_text(&older_than), limit as i64], |row| {
            row.get(0)
        })
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

/// For tests and tools: the number of deliveries in each state.
pub fn delivery_states(journal: &Path) -> Result<Vec<(String, i64)>, JournalError> {
    let path = outbox_path(journal);
    let connection = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite(&path))?;
    let mut statement = connection
        .prepare("SELECT state, count(*) FROM deliveries GROUP BY state ORDER BY state")
        .map_err(sqlite(&path))?;
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(sqlite(&path))
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
    fn intents_are_pending_until_routed() {
        use crate::core::engine::{Audience, NotificationKind};
        use crate::journal::{DeliveryKey, JournalRecord, OutboxEntry};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite3");
        let mut journal = Journal::open(&path, &JournalConfig::default()).unwrap();
        let queued_at = chrono::Utc::now() - chrono::TimeDelta::seconds(60);
        let intent = |key: &str| {
            let notification = Notification {
                kind: NotificationKind::IncidentCreated,
                audience: Audience::Administrators,
                incident_id: 1,
                title: "t".into(),
                priority: None,
                dedup_key: key.into(),
                fields: Default::default(),
            };
            JournalRecord::NotificationQueued(OutboxEntry {
                key: DeliveryKey {
                    dedup_key: key.into(),
                    channel: INTENT_CHANNEL.into(),
                    recipient: String::new(),
                },
                incident_id: Some(1),
                payload: serde_json::to_value(notification).unwrap(),
                queued_at,
            })
        };
        journal
            .write(&[intent("a"), intent("b"), intent("c")])
            .unwrap();
        let keys = |older_than, limit| -> Vec<String> {
            pending_intents(&path, older_than, limit)
                .unwrap()
                .into_iter()
                .map(|n| n.dedup_key)
                .collect()
        };
        let now = chrono::Utc::now();
        assert_eq!(keys(now, 10), vec!["a", "b", "c"], "no outbox yet");
        let mut store = JournalOutboxStore::open(&path, Duration::from_secs(3600)).unwrap();
        store.routed("b");
        drop(store);
        assert_eq!(keys(now, 10), vec!["a", "c"]);
        assert_eq!(keys(now, 1), vec!["a"]);
        assert!(
            keys(queued_at, 10).is_empty(),
            "only intents older than the cut-off"
        );
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
