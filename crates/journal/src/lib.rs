//! The journal: an embedded SQLite record of what was handled and sent, so that a restart
//! loses nothing and repeats nothing.
//!
//! It records every processed Kafka message (handled or dead-lettered, unique by topic,
//! partition and offset), every escalation change with the current state of each open
//! escalation, every acknowledgement, and all notification state: each notification the engine
//! decided (`decided` → `routed` → `delivered` / `failed` / `expired`), each delivery (which is
//! also the deduplication claim) and each attempt. It is the one owner of that state; the
//! notifier sends it [`DeliveryChange`]s through the writer and never opens the file.
//!
//! - [`Journal`] is the synchronous store: open it at start-up, ask it what happened before
//!   (`open_escalations`, `resume_notifications`, `highest_offsets`), then hand it to a
//!   [`JournalWriter`].
//! - [`JournalWriter`] owns the connection on a thread of its own behind a bounded queue,
//!   commits whatever is queued in one transaction, and reports each submission back, with
//!   the caller's token, once its transaction has committed.
//! - [`JournalReader`] is a second, read-only connection for look-ups while the writer runs
//!   (SQLite's WAL mode lets it read while the writer writes).

pub mod cluster;
mod error;
mod lock;
mod oncall;
mod query;
mod record;
mod schema;
mod store;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use incident_notify::{DecidedSource, DeliveryChange, DeliveryRecorder};

pub use error::{JournalError, JournalFailed};
pub use oncall::OnCallRecord;
pub use record::{
    Decision, EscalationRecord, EventOutcome, JournalRecord, ProcessedEvent, ResumedNotifications,
    ToJournal, escalation_records,
};
pub use store::{Journal, JournalReader, PruneReport};
pub use writer::{Completion, JournalStats, JournalWriter};

/// The file name inside the data directory when `path` is not set.
pub const JOURNAL_FILE_NAME: &str = "journal.sqlite3";

/// Journal settings (`journal:` in config.ron).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Without a journal nothing survives a restart: notifications may be sent twice and
    /// open escalations are forgotten.
    pub enabled: bool,
    /// `None` is `journal.sqlite3` in the user's data directory.
    pub path: Option<PathBuf>,
    /// Records older than this many days are deleted, except open escalations and
    /// notifications not yet delivered. 0 keeps everything.
    pub retention_days: u32,
    /// At most this many records go into one transaction.
    pub max_batch_records: usize,
    /// After the first queued record, wait at most this long for more before committing.
    pub max_batch_delay_ms: u64,
    /// Submissions waiting for the writer; submitting waits when the queue is full.
    pub queue_capacity: usize,
    /// Records waiting for the writer or being written, whatever the submissions they came
    /// in; submitting waits when there is no room. A writer that stalls (a slow fsync) then
    /// holds back consumption after this many, not after `queue_capacity` batches of them.
    pub queue_records: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            retention_days: 90,
            max_batch_records: 2000,
            max_batch_delay_ms: 2,
            queue_capacity: 4096,
            queue_records: 20_000,
        }
    }
}

impl JournalConfig {
    /// Returns the offending field (relative to `journal.`) and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let invalid = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
        if self.max_batch_records == 0 {
            return invalid("max_batch_records", "must be more than 0");
        }
        if self.queue_capacity == 0 {
            return invalid("queue_capacity", "must be more than 0");
        }
        if self.queue_records == 0 {
            return invalid("queue_records", "must be more than 0");
        }
        if self.max_batch_delay_ms > 1000 {
            return invalid(
                "max_batch_delay_ms",
                "must be at most 1000 (it delays every offset commit)",
            );
        }
        if self
            .path
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return invalid("path", "must not be empty (use None for the default)");
        }
        Ok(())
    }

    /// The configured path, or `journal.sqlite3` in the user's data directory.
    pub fn resolved_path(&self) -> Result<PathBuf, JournalError> {
        match &self.path {
            Some(path) => Ok(path.clone()),
            None => default_path().ok_or(JournalError::NoDataDir),
        }
    }

    pub(crate) fn batch_delay(&self) -> Duration {
        Duration::from_millis(self.max_batch_delay_ms)
    }
}

/// The notifier records delivery changes through the writer: one writer for all notification
/// state. Recording returns once the changes are committed.
impl<T: Send + 'static> DeliveryRecorder for JournalWriter<T> {
    fn record(&self, changes: Vec<DeliveryChange>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let records = changes.into_iter().map(JournalRecord::Delivery).collect();
            if let Err(error) = self.record_committed(records).await {
                tracing::error!(%error, "cannot journal notification deliveries");
            }
        })
    }
}

/// The journal as the notifier's durable record of decisions: where its refill reads back
/// what the full outbox refused (decided, never routed). A read-only connection of its own,
/// opened at the first read: most runs never overflow the outbox and never need it.
pub struct DecidedRows {
    path: PathBuf,
    reader: std::sync::Mutex<Option<JournalReader>>,
}

impl DecidedRows {
    /// Reads the journal at `path` (its writer has opened and migrated it).
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            reader: std::sync::Mutex::new(None),
        }
    }
}

impl DecidedSource for DecidedRows {
    fn decided(
        &self,
        not_before: chrono::DateTime<chrono::Utc>,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> anyhow::Result<Vec<incident_core::engine::Notification>> {
        let mut reader = self
            .reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if reader.is_none() {
            *reader = Some(JournalReader::open(&self.path)?);
        }
        let reader = reader.as_ref().expect("opened above");
        Ok(reader.decided_notifications(not_before, before, limit)?)
    }
}

/// `~/.local/share/incident-console/journal.sqlite3` on Linux.
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "incident-console")
        .map(|dirs| dirs.data_dir().join(JOURNAL_FILE_NAME))
}
