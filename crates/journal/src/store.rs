//! The synchronous journal: opening (with the checks that turn a bad file into a clear
//! error), batched writes, look-ups for a restart, and retention.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use serde::Serialize;

use super::lock::JournalLock;
use super::record::{JournalRecord, ResumedNotifications};
use super::schema::{self, SchemaProblem};
use super::{JournalConfig, JournalError, query};
use incident_core::engine::Notification;
use incident_core::escalation::Escalation;
use incident_core::event::Timestamp;

/// How long a statement waits for a lock held by another connection (a sqlite3 shell, the
/// reader's checkpoint) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// SQLite's page cache per connection, in KiB, set on purpose rather than left to the
/// build's default, so that the console's memory does not depend on how large the journal
/// grows. Each connection's cache is a fixed bound (pages beyond it are read again from the
/// file, through the kernel's page cache, which is not the console's RSS).
///
/// The writer: 2 MiB (512 pages of 4 KiB). What it touches per batch is the right-hand edge
/// of `events` and of its offset and time indexes, the insertion points of the few incidents
/// that are open in `events_by_incident`, and the rows of those incidents' escalations and
/// notifications: a few hundred pages at most, so more cache buys no speed, and the cache is
/// full (and stays at 2 MiB) long before 100,000 events, when the file is already ~34 MB.
pub(crate) const WRITER_CACHE_KIB: i64 = 2048;
/// The reader (and the short-lived connection of the cluster check): 512 KiB. It answers point
/// look-ups (was this offset journaled?) for re-delivered messages only, each a walk of 3-4
/// pages down one index, and the start-up queries that run once.
pub(crate) const READER_CACHE_KIB: i64 = 512;

/// Sets a connection's memory on purpose: its page cache (`cache_size`, negative means KiB),
/// and no memory-mapped I/O (`mmap_size = 0`, SQLite's default, written down so that a
/// build default cannot change it): mapped pages of the journal would count in the
/// console's RSS and grow with the file. The WAL is left to SQLite's defaults
/// (`wal_autocheckpoint` 1,000 pages, so ~4 MB of WAL and a wal-index of 32 KiB in `-shm`):
/// measured, the mapped `-shm` and the files stay flat (docs/performance.md, memory).
pub(crate) fn set_memory(connection: &Connection, cache_kib: i64) -> rusqlite::Result<()> {
    connection.execute_batch(&format!(
        "PRAGMA cache_size = -{cache_kib}; PRAGMA mmap_size = 0;"
    ))
}

/// Rows deleted per table by one `prune` call, so that retention never holds the write lock
/// for long; the writer calls it again while there is more.
pub const PRUNE_CHUNK: usize = 5000;

/// What one `prune` call deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub events: usize,
    pub escalation_changes: usize,
    pub acknowledgements: usize,
    pub escalations: usize,
    pub delivery_attempts: usize,
    pub deliveries: usize,
    pub notifications: usize,
    /// What silences held, and silences that ended (docs/oncall.md).
    pub held_notifications: usize,
    pub silences: usize,
    /// Some table hit the per-call limit: call again.
    pub more: bool,
}

impl PruneReport {
    pub fn counts(&self) -> [usize; 9] {
        [
            self.events,
            self.escalation_changes,
            self.acknowledgements,
            self.escalations,
            self.delivery_attempts,
            self.deliveries,
            self.notifications,
            self.held_notifications,
            self.silences,
        ]
    }

    pub fn total(&self) -> usize {
        self.counts().iter().sum()
    }
}

/// The journal, open for writing. One per file: a second open of the same file, from this
/// process or another, fails with `JournalError::Locked`.
pub struct Journal {
    // Fields drop in order: the connection closes before the lock is released.
    connection: Connection,
    path: PathBuf,
    config: JournalConfig,
    _lock: JournalLock,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens the journal at `config.path`, or in the user's data directory.
    pub fn open_configured(config: &JournalConfig) -> Result<Self, JournalError> {
        Self::open(&config.resolved_path()?, config)
    }

    /// Opens (creating if needed) the journal at `path`: the directory is created readable
    /// by the owner only (0700), the file too (0600); WAL mode; schema created or migrated.
    pub fn open(path: &Path, config: &JournalConfig) -> Result<Self, JournalError> {
        if path.is_dir() {
            return Err(JournalError::cannot_open(path, "it is a directory"));
        }
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent.filter(|p| p.exists() && !p.is_dir()) {
            return Err(JournalError::cannot_open(
                path,
                format!("{} is not a directory", parent.display()),
            ));
        }
        if let Some(parent) = parent.filter(|p| !p.exists()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|error| {
                    JournalError::cannot_open(
                        path,
                        format!("cannot create {}: {error}", parent.display()),
                    )
                })?;
        }
        // What the path is, before anything is created or changed beside it.
        let existing = inspect_existing(path)?;
        let mut lock = JournalLock::acquire(path)?;
        match Self::open_locked(path, existing, &mut lock) {
            Ok((connection, created)) => {
                if !created {
                    narrow_permissions(path);
                }
                Ok(Self {
                    connection,
                    path: path.to_path_buf(),
                    config: config.clone(),
                    _lock: lock,
                })
            }
            Err(error) => {
                lock.discard();
                Err(error)
            }
        }
    }

    /// Opens the file under the `.lock` lock, locks the file itself, and checks the schema.
    /// Returns the connection and whether this call created the file.
    fn open_locked(
        path: &Path,
        existing: bool,
        lock: &mut JournalLock,
    ) -> Result<(Connection, bool), JournalError> {
        let (file, created) = open_or_create(path, existing)?;
        lock.hold_journal(path, file)?;
        let opened = Self::connect(path);
        if opened.is_err() && created {
            // Ours, and empty: nothing is left where the wrong path was.
            let _ = std::fs::remove_file(path);
        }
        opened.map(|connection| (connection, created))
    }

    fn connect(path: &Path) -> Result<Connection, JournalError> {
        let sqlite = |error| JournalError::from_sqlite(path, error);
        let mut connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        // The first statement reads the header: a file that is not SQLite fails here.
        let mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(sqlite)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                path = %path.display(),
                %mode,
                "the journal's filesystem does not support WAL mode; readers will wait for writes"
            );
        }
        // FULL: a commit is on disk before the offset it covers is stored in Kafka.
        connection
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(sqlite)?;
        set_memory(&connection, WRITER_CACHE_KIB).map_err(sqlite)?;
        match schema::ensure(&mut connection, &query::time_text(&chrono::Utc::now())) {
            Ok(found) => {
                tracing::info!(path = %path.display(), ?found, "journal open");
                import_legacy_outbox(&mut connection, path)?;
                Ok(connection)
            }
            Err(SchemaProblem::Foreign(detail)) => Err(JournalError::NotAJournal {
                path: path.to_path_buf(),
                detail,
            }),
            Err(SchemaProblem::TooNew(found)) => Err(JournalError::TooNew {
                path: path.to_path_buf(),
                found,
                supported: schema::CURRENT_VERSION,
            }),
            Err(SchemaProblem::Sqlite(error)) => Err(sqlite(error)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config(&self) -> &JournalConfig {
        &self.config
    }

    /// Writes `records` in one transaction: all of them, or none.
    pub fn write(&mut self, records: &[JournalRecord]) -> Result<(), JournalError> {
        self.write_groups(std::iter::once(records))
    }

    /// Writes several submissions in one transaction (the writer's group commit).
    pub(crate) fn write_groups<'a>(
        &mut self,
        groups: impl Iterator<Item = &'a [JournalRecord]>,
    ) -> Result<(), JournalError> {
        let path = &self.path;
        let sqlite = |error| JournalError::from_sqlite(path, error);
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        for records in groups {
            query::write_records(&transaction, records).map_err(sqlite)?;
        }
        transaction.commit().map_err(sqlite)
    }

    /// Whether this Kafka message was handled (or dead-lettered) before.
    pub fn contains_event(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<bool, JournalError> {
        query::contains_event(&self.connection, &self.path, topic, partition, offset)
    }

    /// Escalations that were open (acknowledged or not) when the journal was last written.
    pub fn open_escalations(&self) -> Result<Vec<Escalation>, JournalError> {
        query::open_escalations(&self.connection, &self.path)
    }

    /// Operators' silences still running at `now`.
    pub fn open_silences(
        &self,
        now: Timestamp,
    ) -> Result<Vec<incident_core::silence::Silence>, JournalError> {
        super::oncall::open_silences(&self.connection, &self.path, now)
    }

    /// Notification state for a start, at `now`: what was decided or queued before
    /// `now - horizon` and never finished is marked expired (and counted), never sent; what is
    /// younger comes back to be routed or delivered, with the delivery keys claimed within
    /// `window` (at most `max_claims`, the newest) so that nothing is sent twice. One
    /// transaction: a crash leaves it undone or done.
    pub fn resume_notifications(
        &mut self,
        now: Timestamp,
        horizon: Duration,
        window: Duration,
        max_claims: usize,
    ) -> Result<ResumedNotifications, JournalError> {
        let before = |age: Duration| {
            chrono::TimeDelta::from_std(age)
                .ok()
                .and_then(|age| now.checked_sub_signed(age))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
        };
        let path = &self.path;
        let sqlite = |error| JournalError::from_sqlite(path, error);
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let resumed = query::resume_notifications(
            &transaction,
            path,
            &now,
            &before(horizon),
            &before(window),
            max_claims,
        )?;
        transaction.commit().map_err(sqlite)?;
        Ok(resumed)
    }

    /// The highest journaled offset of each partition: a message at or below it may be a
    /// re-delivery, and is looked up; above it, it cannot be.
    pub fn highest_offsets(&self) -> Result<Vec<(String, i32, i64)>, JournalError> {
        query::highest_offsets(&self.connection, &self.path)
    }

    /// How many notifications (`table = "notifications"`) or deliveries (`"deliveries"`) are
    /// in each state, for tests and tools.
    pub fn states(&self, table: &str) -> Result<Vec<(String, i64)>, JournalError> {
        query::states(&self.connection, &self.path, table)
    }

    pub fn schema_version(&self) -> Result<i64, JournalError> {
        query::schema_version(&self.connection, &self.path)
    }

    /// Deletes what is older than `retention_days` before `now` (at most `PRUNE_CHUNK` rows
    /// per table; `more` says to call again). Retention 0 keeps everything.
    pub fn prune(&mut self, now: Timestamp) -> Result<PruneReport, JournalError> {
        self.prune_bounded(now, PRUNE_CHUNK)
    }

    /// `prune` with a chosen bound on rows deleted per table.
    pub fn prune_bounded(
        &mut self,
        now: Timestamp,
        max_rows_per_table: usize,
    ) -> Result<PruneReport, JournalError> {
        if self.config.retention_days == 0 {
            return Ok(PruneReport::default());
        }
        let cutoff = now - chrono::TimeDelta::days(i64::from(self.config.retention_days));
        let path = &self.path;
        let sqlite = |error| JournalError::from_sqlite(path, error);
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let report =
            query::prune(&transaction, &cutoff, max_rows_per_table.max(1)).map_err(sqlite)?;
        transaction.commit().map_err(sqlite)?;
        Ok(report)
    }

    /// Moves the WAL into the database file and empties it (done at shutdown, so the file
    /// left behind is complete on its own).
    pub fn checkpoint(&mut self) -> Result<(), JournalError> {
        self.connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|error| JournalError::from_sqlite(&self.path, error))
    }

    /// A read-only connection to this journal, for look-ups while a writer owns this one.
    pub fn reader(&self) -> Result<JournalReader, JournalError> {
        JournalReader::open(&self.path)
    }
}

/// Earlier releases kept the notifier's state in a second file, `<journal>.outbox`. Its
/// deliveries (with their states) and routed marks move into the journal, which now owns them,
/// and the file is removed. Done under the journal's lock, in one transaction.
fn import_legacy_outbox(connection: &mut Connection, path: &Path) -> Result<(), JournalError> {
    let mut legacy = path.as_os_str().to_owned();
    legacy.push(".outbox");
    let legacy = PathBuf::from(legacy);
    if !legacy.is_file() {
        return Ok(());
    }
    let sqlite = |error| JournalError::from_sqlite(&legacy, error);
    connection
        .execute(
            "ATTACH DATABASE ?1 AS legacy",
            [legacy.to_string_lossy().as_ref()],
        )
        .map_err(sqlite)?;
    let imported = (|| -> rusqlite::Result<usize> {
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let tables: i64 = transaction.query_row(
            "SELECT count(*) FROM legacy.sqlite_master
             WHERE type = 'table' AND name IN ('deliveries', 'routed')",
            [],
            |row| row.get(0),
        )?;
        let mut count = 0;
        if tables == 2 {
            count = transaction.execute(
                "INSERT INTO deliveries (key, dedup_key, channel, recipient, incident_id, payload,
                     queued_at, state, attempts, finished_at)
                 SELECT key, substr(key, 1, instr(key, '|') - 1), channel, recipient,
                     incident_id, payload, queued_at, state, attempts, finished_at
                 FROM legacy.deliveries WHERE instr(key, '|') > 0
                 ON CONFLICT (key) DO UPDATE SET payload = excluded.payload,
                     state = excluded.state, attempts = excluded.attempts,
                     finished_at = excluded.finished_at",
                [],
            )?;
            transaction.execute(
                "UPDATE notifications SET state = 'routed'
                 WHERE state = 'decided'
                     AND dedup_key IN (SELECT dedup_key FROM legacy.routed)",
                [],
            )?;
        }
        transaction.commit()?;
        Ok(count)
    })();
    let detached = connection.execute("DETACH DATABASE legacy", []);
    let imported = imported.map_err(sqlite)?;
    detached.map_err(sqlite)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = legacy.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(file));
    }
    tracing::info!(
        path = %legacy.display(),
        deliveries = imported,
        "notification state of an earlier release moved into the journal"
    );
    Ok(())
}

/// The first bytes of every SQLite database.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Whether `path` exists, refusing at once what cannot be a journal: something other than a
/// regular file (a device, a pipe, a socket), or a file with content that does not start
/// like a SQLite database. Nothing is created or changed.
fn inspect_existing(path: &Path) -> Result<bool, JournalError> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(JournalError::cannot_open(path, error)),
    };
    if !metadata.is_file() {
        return Err(JournalError::cannot_open(
            path,
            "it is not a regular file (a device, a pipe or a socket?)",
        ));
    }
    if metadata.len() == 0 {
        return Ok(true);
    }
    let mut header = [0u8; 16];
    let read = std::fs::File::open(path)
        .and_then(|mut file| std::io::Read::read(&mut file, &mut header))
        .map_err(|error| JournalError::cannot_open(path, error))?;
    if read < header.len() || &header != SQLITE_HEADER {
        return Err(JournalError::NotAJournal {
            path: path.to_path_buf(),
            detail: "it does not start like a SQLite database".into(),
        });
    }
    Ok(true)
}

/// Opens the journal file, creating it readable and writable by its owner only (0600) when
/// it does not exist. Returns the file and whether this call created it.
fn open_or_create(path: &Path, existing: bool) -> Result<(std::fs::File, bool), JournalError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if !existing {
        match options.clone().create_new(true).mode(0o600).open(path) {
            Ok(file) => return Ok((file, true)),
            // Created by someone else meanwhile: opened as existing below.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(JournalError::cannot_open(path, error)),
        }
    }
    let file = options
        .open(path)
        .map_err(|error| JournalError::cannot_open(path, error))?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(JournalError::cannot_open(path, "it is not a regular file"));
    }
    Ok((file, false))
}

/// An existing journal, now known to be one and owned by this user, that others could read
/// is narrowed to 0600: it holds names and incident titles. Anything else is never chmodded.
fn narrow_permissions(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(metadata) = std::fs::metadata(path) else {
        return;
    };
    // SAFETY: geteuid has no preconditions and no memory effects.
    let ours = metadata.uid() == unsafe { libc::geteuid() };
    if !metadata.is_file() || metadata.permissions().mode() & 0o077 == 0 {
        return;
    }
    if !ours {
        tracing::warn!(path = %path.display(), "the journal is readable by others and not ours to change");
        return;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Ok(()) => tracing::info!(path = %path.display(), "journal made private (0600)"),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot make the journal private")
        }
    }
}

/// A read-only connection. SQLite's WAL mode lets it read committed data while the writer
/// writes; what is queued but not yet committed is not visible.
pub struct JournalReader {
    connection: Connection,
    path: PathBuf,
    /// Topics whose cluster this run has checked (see `check_cluster`); a handful at most.
    clusters_checked: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for JournalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalReader")
            .field("path", &self.path)
            .finish()
    }
}

impl JournalReader {
    /// Operators' silences still running at `now` (`incident-console silences`).
    pub fn open_silences(
        &self,
        now: Timestamp,
    ) -> Result<Vec<incident_core::silence::Silence>, JournalError> {
        super::oncall::open_silences(&self.connection, &self.path, now)
    }

    /// Opens an existing journal read-only (it must have been opened by `Journal::open`).
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let sqlite = |error| JournalError::from_sqlite(path, error);
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        set_memory(&connection, READER_CACHE_KIB).map_err(sqlite)?;
        let version = query::schema_version(&connection, path)?;
        if version > schema::CURRENT_VERSION {
            return Err(JournalError::TooNew {
                path: path.to_path_buf(),
                found: version,
                supported: schema::CURRENT_VERSION,
            });
        }
        if version < schema::CURRENT_VERSION {
            return Err(JournalError::Storage {
                path: path.to_path_buf(),
                detail: format!(
                    "schema version {version} is older than {}; open it with Journal::open first",
                    schema::CURRENT_VERSION
                ),
            });
        }
        Ok(Self {
            connection,
            path: path.to_path_buf(),
            clusters_checked: Default::default(),
        })
    }

    /// Call before trusting the journal about `topic`: the first time in this run, the
    /// cluster it is read from (`cluster_id`, asked only then; `None` when unknown) is
    /// compared with the one its records came from, and records from another cluster are
    /// moved aside so that no event of this one is taken for handled. Returns true when
    /// records were moved aside.
    pub fn check_cluster(&self, topic: &str, cluster_id: impl FnOnce() -> Option<String>) -> bool {
        let Ok(mut checked) = self.clusters_checked.lock() else {
            return false;
        };
        // Checked once per topic and run, even when the id is unknown: asking may wait.
        if !checked.insert(topic.to_string()) {
            return false;
        }
        let Some(cluster_id) = cluster_id() else {
            tracing::warn!(
                topic,
                "the cluster id is unknown; journal records taken as they are"
            );
            return false;
        };
        let now = query::time_text(&chrono::Utc::now());
        match super::cluster::observe(&self.path, topic, &cluster_id, &now) {
            Ok(super::cluster::ClusterCheck::Same) => false,
            Ok(super::cluster::ClusterCheck::Changed { previous, moved }) => {
                tracing::warn!(
                    topic,
                    previous_cluster = %previous,
                    cluster = %cluster_id,
                    moved,
                    "the topic is read from another Kafka cluster than the journal's records \
                     (a recreated topic or another cluster): its offsets are other messages, \
                     so the old records were set aside and no event is taken for handled"
                );
                true
            }
            Err(error) => {
                tracing::error!(%error, topic, "cannot check the journal's cluster");
                false
            }
        }
    }

    pub fn contains_event(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<bool, JournalError> {
        query::contains_event(&self.connection, &self.path, topic, partition, offset)
    }

    pub fn open_escalations(&self) -> Result<Vec<Escalation>, JournalError> {
        query::open_escalations(&self.connection, &self.path)
    }

    /// Decided notifications never routed, decided in `[not_before, before)`, oldest first,
    /// at most `limit`.
    pub fn decided_notifications(
        &self,
        not_before: Timestamp,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<Notification>, JournalError> {
        query::decided_notifications(&self.connection, &self.path, &not_before, &before, limit)
    }

    pub fn states(&self, table: &str) -> Result<Vec<(String, i64)>, JournalError> {
        query::states(&self.connection, &self.path, table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use incident_notify::{Channel, Delivery, Payload};

    use incident_notify::fixtures::notification;

    /// A journal of the release before notification state moved into it: intents in
    /// `notifications`, the notifier's own state in `<journal>.outbox`.
    #[test]
    fn a_version_1_journal_and_its_outbox_file_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite3");
        let now = chrono::Utc::now();
        let minutes_ago = |m| query::time_text(&(now - chrono::TimeDelta::minutes(m)));
        {
            let connection = Connection::open(&path).unwrap();
            schema::create_v1(&connection).unwrap();
            let intent = |key: &str, minutes: i64| {
                connection
                    .execute(
                        "INSERT INTO notifications (dedup_key, channel, recipient, incident_id,
                             payload, queued_at, state)
                         VALUES (?1, 'intent', '', 1, ?2, ?3, 'pending')",
                        rusqlite::params![
                            key,
                            serde_json::to_string(&notification(key)).unwrap(),
                            minutes_ago(minutes)
                        ],
                    )
                    .unwrap();
            };
            intent("1/never_routed", 10);
            intent("2/routed_and_owed", 10);
            intent("3/long_ago", 600);
        }
        let owed = Delivery {
            key: Delivery::key_for("2/routed_and_owed", Channel::Email, "a@example.com"),
            channel: Channel::Email,
            recipient: "a@example.com".into(),
            incident_id: Some(1),
            kind: incident_core::engine::NotificationKind::IncidentCreated.into(),
            payload: Payload::Email {
                to: "a@example.com".into(),
                subject: "s".into(),
                body: "b".into(),
            },
            accepted_at: now - chrono::TimeDelta::minutes(10),
            give_up_at: now + chrono::TimeDelta::minutes(50),
        };
        {
            let outbox = Connection::open(dir.path().join("journal.sqlite3.outbox")).unwrap();
            outbox
                .execute_batch(
                    "CREATE TABLE claims (key TEXT PRIMARY KEY, claimed_at TEXT NOT NULL);
                     CREATE TABLE deliveries (key TEXT PRIMARY KEY, channel TEXT NOT NULL,
                         recipient TEXT NOT NULL, incident_id INTEGER, payload TEXT NOT NULL,
                         queued_at TEXT NOT NULL, state TEXT NOT NULL,
                         attempts INTEGER NOT NULL DEFAULT 0, finished_at TEXT);
                     CREATE TABLE routed (dedup_key TEXT PRIMARY KEY, at TEXT NOT NULL);",
                )
                .unwrap();
            outbox
                .execute(
                    "INSERT INTO deliveries (key, channel, recipient, incident_id, payload,
                         queued_at, state)
                     VALUES (?1, 'email', 'a@example.com', 1, ?2, ?3, 'pending')",
                    rusqlite::params![
                        owed.key,
                        serde_json::to_string(&owed).unwrap(),
                        minutes_ago(10)
                    ],
                )
                .unwrap();
            outbox
                .execute(
                    "INSERT INTO routed (dedup_key, at) VALUES ('2/routed_and_owed', ?1)",
                    [minutes_ago(10)],
                )
                .unwrap();
        }
        let mut journal = Journal::open(&path, &JournalConfig::default()).unwrap();
        assert_eq!(journal.schema_version().unwrap(), schema::CURRENT_VERSION);
        assert!(
            !dir.path().join("journal.sqlite3.outbox").exists(),
            "the second file is gone"
        );
        let resumed = journal
            .resume_notifications(
                now,
                Duration::from_secs(3600),
                Duration::from_secs(86_400),
                100,
            )
            .unwrap();
        let decided: Vec<_> = resumed
            .decided
            .iter()
            .map(|n| n.dedup_key.as_str())
            .collect();
        assert_eq!(decided, ["1/never_routed"]);
        assert_eq!(resumed.deliveries.pending, std::slice::from_ref(&owed));
        assert_eq!(resumed.expired_notifications, 1, "3/long_ago");
        let claims: Vec<_> = resumed.deliveries.claims.iter().map(|(k, _)| k).collect();
        assert_eq!(claims, [&owed.key]);
    }

    /// Each connection's page cache is the figure chosen for it, not the build's default,
    /// and no journal page is memory-mapped (docs/performance.md, memory).
    #[test]
    fn connections_have_their_memory_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite3");
        let journal = Journal::open(&path, &JournalConfig::default()).unwrap();
        let reader = journal.reader().unwrap();
        let pragma = |connection: &Connection, name: &str| -> i64 {
            connection
                .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(pragma(&journal.connection, "cache_size"), -WRITER_CACHE_KIB);
        assert_eq!(pragma(&reader.connection, "cache_size"), -READER_CACHE_KIB);
        assert_eq!(pragma(&journal.connection, "mmap_size"), 0);
        assert_eq!(pragma(&reader.connection, "mmap_size"), 0);
    }
}
