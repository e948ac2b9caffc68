//! The journal's tables, and the version bookkeeping that lets a later release migrate them.
//!
//! Times are stored as RFC 3339 text in UTC with microseconds (`2024-01-01T10:00:00.000000Z`):
//! readable in the sqlite3 shell, ordered when compared as text, and understood by SQLite's
//! date functions.

use rusqlite::{Connection, OptionalExtension};

/// Marks a database as ours (`PRAGMA application_id`), so another program's SQLite file is
/// never mistaken for a journal. "ICJ1".
pub const APPLICATION_ID: i64 = 0x4943_4A31;

/// Index `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    SCHEMA_V1,
    SCHEMA_V2,
    SCHEMA_V3,
    super::oncall::SCHEMA,
    SCHEMA_V5,
    SCHEMA_V6,
];

/// Version 5: `events` loses its index by time, a fifth B-tree written for every event (about
/// 10 % of a row's cost, docs/performance.md) whose one reader was retention. Rows are
/// journaled in the order they are handled, so retention finds the old ones by id instead
/// (`query::prune`); a query by time reads the table, as a query with `datetime(handled_at)`
/// did anyway.
const SCHEMA_V5: &str = "DROP INDEX IF EXISTS events_by_time;";

/// Version 6: `events_by_incident` keys on the incident alone, not (incident, handled_at). Its
/// one use is finding an incident's events (docs/journal.md), which then sort by time; an
/// index entry already ends in the row id, so an incident's entries are in the order they were
/// journaled anyway. The time (27 bytes of text) made each entry four times as large: the
/// index outgrew the writer's page cache four times sooner and every batch dirtied and read
/// more of its pages, the largest single cost of an event's row (docs/performance.md,
/// 2026-12-08). Rebuilding it takes about a second per million rows, once.
const SCHEMA_V6: &str = "
DROP INDEX IF EXISTS events_by_incident;
CREATE INDEX events_by_incident ON events (incident_id);
";

/// The cluster each topic's records came from (see `cluster.rs`): offsets from another
/// cluster, or another incarnation of the topic, are other messages.
const SCHEMA_V3: &str = "
CREATE TABLE kafka_clusters (
    kafka_topic TEXT PRIMARY KEY,
    cluster_id  TEXT NOT NULL,
    since       TEXT NOT NULL
);
";

pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

const SCHEMA_V1: &str = "
CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    kafka_topic     TEXT    NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset    INTEGER NOT NULL,
    incident_id     INTEGER,
    event_type      TEXT,
    summary         TEXT,
    received_at     TEXT    NOT NULL,
    handled_at      TEXT    NOT NULL,
    outcome         TEXT    NOT NULL CHECK (outcome IN ('handled', 'dead_lettered')),
    reason          TEXT,
    error           TEXT,
    UNIQUE (kafka_topic, kafka_partition, kafka_offset)
);
CREATE INDEX events_by_incident ON events (incident_id, handled_at);
CREATE INDEX events_by_time ON events (handled_at);

-- The current state of each escalation; closed ones keep their last state until pruned.
CREATE TABLE escalations (
    incident_id     INTEGER PRIMARY KEY,
    title           TEXT    NOT NULL,
    priority        TEXT    NOT NULL,
    level           INTEGER NOT NULL,
    opened_at       TEXT    NOT NULL,
    level_since     TEXT    NOT NULL,
    next_step_at    TEXT,
    repeats         INTEGER NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at TEXT,
    closed_at       TEXT,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX escalations_by_closed ON escalations (closed_at);

CREATE TABLE escalation_changes (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL,
    at          TEXT    NOT NULL,
    change      TEXT    NOT NULL,
    level       INTEGER NOT NULL,
    detail      TEXT    NOT NULL
);
CREATE INDEX escalation_changes_by_incident ON escalation_changes (incident_id, at);
CREATE INDEX escalation_changes_by_time ON escalation_changes (at);

CREATE TABLE acknowledgements (
    id                       INTEGER PRIMARY KEY,
    incident_id              INTEGER NOT NULL,
    level                    INTEGER NOT NULL,
    acknowledged_by          TEXT    NOT NULL,
    acknowledged_at          TEXT    NOT NULL,
    time_to_acknowledge_secs REAL    NOT NULL
);
CREATE INDEX acknowledgements_by_incident ON acknowledgements (incident_id);
CREATE INDEX acknowledgements_by_time ON acknowledgements (acknowledged_at);

-- The outbox: one row per notification, channel and recipient.
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY,
    dedup_key   TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    recipient   TEXT    NOT NULL,
    incident_id INTEGER,
    payload     TEXT    NOT NULL,
    queued_at   TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    finished_at TEXT,
    UNIQUE (dedup_key, channel, recipient)
);
CREATE INDEX notifications_by_state ON notifications (state, finished_at);
CREATE INDEX notifications_by_incident ON notifications (incident_id);

CREATE TABLE notification_attempts (
    id        INTEGER PRIMARY KEY,
    dedup_key TEXT    NOT NULL,
    channel   TEXT    NOT NULL,
    recipient TEXT    NOT NULL,
    attempt   INTEGER NOT NULL,
    at        TEXT    NOT NULL,
    outcome   TEXT    NOT NULL CHECK (outcome IN ('delivered', 'failed', 'gave_up')),
    error     TEXT
);
CREATE INDEX notification_attempts_by_key ON notification_attempts (dedup_key, channel, recipient);
CREATE INDEX notification_attempts_by_time ON notification_attempts (at);
";

/// Version 2: notification state has one owner, this file. `notifications` holds each decision
/// of the engine (one row per dedup key) and moves through explicit states; `deliveries` holds
/// each message to one recipient on one channel, the notifier's dedup claims included;
/// `delivery_attempts` each attempt. Version 1 kept intents in `notifications` (`channel =
/// 'intent'`) next to copies of deliveries, and the real delivery state in a second file.
///
/// Migrated intents start as `decided`, so one decided within the resume horizon and never
/// routed is still sent; the rest expire at the first start. Migrated delivery copies that
/// were still pending start as `expired` (the second file, imported at open, has the truth).
const SCHEMA_V2: &str = "
CREATE TABLE deliveries (
    id          INTEGER PRIMARY KEY,
    key         TEXT    NOT NULL UNIQUE,
    dedup_key   TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    recipient   TEXT    NOT NULL,
    incident_id INTEGER,
    payload     TEXT    NOT NULL,
    queued_at   TEXT    NOT NULL,
    state       TEXT    NOT NULL
                CHECK (state IN ('pending', 'delivered', 'failed', 'expired')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    finished_at TEXT
);
INSERT INTO deliveries (key, dedup_key, channel, recipient, incident_id, payload, queued_at,
                        state, attempts, last_error, finished_at)
    SELECT dedup_key || '|' || channel || '|' || lower(recipient), dedup_key, channel,
           recipient, incident_id, payload, queued_at,
           CASE state WHEN 'pending' THEN 'expired' ELSE state END, attempts, last_error,
           coalesce(finished_at, queued_at)
    FROM notifications WHERE channel != 'intent';
CREATE INDEX deliveries_by_state ON deliveries (state, queued_at);
CREATE INDEX deliveries_by_notification ON deliveries (dedup_key);
CREATE INDEX deliveries_by_incident ON deliveries (incident_id);
CREATE INDEX deliveries_by_time ON deliveries (queued_at);

CREATE TABLE notifications_v2 (
    id          INTEGER PRIMARY KEY,
    dedup_key   TEXT    NOT NULL UNIQUE,
    incident_id INTEGER,
    kind        TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    decided_at  TEXT    NOT NULL,
    state       TEXT    NOT NULL
                CHECK (state IN ('decided', 'routed', 'delivered', 'failed', 'expired')),
    updated_at  TEXT    NOT NULL
);
INSERT OR IGNORE INTO notifications_v2 (dedup_key, incident_id, kind, payload, decided_at,
                                        state, updated_at)
    SELECT dedup_key, incident_id, coalesce(json_extract(payload, '$.notification'), ''), payload,
           queued_at, 'decided', queued_at
    FROM notifications WHERE channel = 'intent' ORDER BY id;
DROP TABLE notifications;
ALTER TABLE notifications_v2 RENAME TO notifications;
CREATE INDEX notifications_by_state ON notifications (state, decided_at);
CREATE INDEX notifications_by_incident ON notifications (incident_id);
CREATE INDEX notifications_by_time ON notifications (decided_at);

ALTER TABLE notification_attempts RENAME TO delivery_attempts;
";

/// Creates a version 1 journal, as an earlier release left it, for migration tests.
#[cfg(test)]
pub fn create_v1(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID};
         CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
         {SCHEMA_V1}
         INSERT INTO schema_version (version, applied_at) VALUES (1, 'then');"
    ))
}

/// What the file held before `ensure` ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// An empty database: the schema was created.
    New,
    /// A journal at this version (migrated if older).
    Journal { version: i64 },
}

#[derive(Debug)]
pub enum SchemaProblem {
    /// Another program's database.
    Foreign(String),
    TooNew(i64),
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for SchemaProblem {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(error)
    }
}

/// Creates or migrates the schema, in one immediate transaction so that two starts racing on
/// one file cannot both create it.
pub fn ensure(connection: &mut Connection, now: &str) -> Result<Found, SchemaProblem> {
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let application_id: i64 = transaction.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let tables: i64 = transaction.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
        [],
        |r| r.get(0),
    )?;
    let found = if application_id == 0 && tables == 0 {
        transaction.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID};
             CREATE TABLE schema_version (
                 version    INTEGER PRIMARY KEY,
                 applied_at TEXT NOT NULL
             );"
        ))?;
        Found::New
    } else if application_id != APPLICATION_ID {
        return Err(SchemaProblem::Foreign(if application_id == 0 {
            format!("a SQLite database of another program, with {tables} tables")
        } else {
            format!("a SQLite database of another program (application id {application_id:#x})")
        }));
    } else {
        let version: Option<i64> = transaction
            .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .optional()?
            .flatten();
        let version = version.unwrap_or(0);
        if version > CURRENT_VERSION {
            return Err(SchemaProblem::TooNew(version));
        }
        Found::Journal { version }
    };
    let from = match found {
        Found::New => 0,
        Found::Journal { version } => version,
    };
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        transaction.execute_batch(migration)?;
        transaction.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![index as i64 + 1, now],
        )?;
    }
    transaction.commit()?;
    Ok(match found {
        Found::New => Found::New,
        Found::Journal { .. } => Found::Journal {
            version: CURRENT_VERSION,
        },
    })
}
