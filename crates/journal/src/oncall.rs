//! The on-call workflow in the journal: silences (set, ended) and the notifications they held,
//! so that a restart keeps operators' silences and a postmortem query sees what was held.

use std::path::Path;

use rusqlite::{Connection, Transaction, params};

use super::JournalError;
use super::query::time_text;
use incident_core::engine::Notification;
use incident_core::event::Timestamp;
use incident_core::silence::{Matcher, Silence, SilenceOrigin, SilenceView};

/// The tables of schema version 4.
pub const SCHEMA: &str = "
CREATE TABLE silences (
    id         TEXT PRIMARY KEY,
    origin     TEXT NOT NULL CHECK (origin IN ('config', 'operator')),
    matcher    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_by TEXT NOT NULL,
    starts_at  TEXT NOT NULL,
    ends_at    TEXT NOT NULL,
    set_at     TEXT NOT NULL,
    ended_at   TEXT,
    ended_by   TEXT
);
CREATE TABLE held_notifications (
    id          INTEGER PRIMARY KEY,
    dedup_key   TEXT    NOT NULL,
    incident_id INTEGER,
    kind        TEXT    NOT NULL,
    silence_id  TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    held_at     TEXT    NOT NULL,
    held_until  TEXT    NOT NULL
);
CREATE INDEX held_notifications_by_incident ON held_notifications (incident_id);
CREATE INDEX held_notifications_by_time ON held_notifications (held_at);
";

/// What the on-call workflow writes.
#[derive(Debug, Clone, PartialEq)]
pub enum OnCallRecord {
    SilenceSet {
        silence: SilenceView,
        at: Timestamp,
    },
    SilenceEnded {
        id: String,
        /// `None`: its time was up.
        by: Option<String>,
        at: Timestamp,
    },
    Held {
        notification: Notification,
        silence_id: String,
        until: Timestamp,
        at: Timestamp,
    },
}

fn json<T: serde::Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value)
        .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))
}

fn origin_text(origin: SilenceOrigin) -> &'static str {
    match origin {
        SilenceOrigin::Config => "config",
        SilenceOrigin::Operator => "operator",
    }
}

pub fn write(transaction: &Transaction<'_>, record: &OnCallRecord) -> rusqlite::Result<()> {
    match record {
        OnCallRecord::SilenceSet { silence, at } => {
            transaction
                .prepare_cached(
                    "INSERT INTO silences (id, origin, matcher, reason, created_by, starts_at,
                         ends_at, set_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (id) DO UPDATE SET ends_at = excluded.ends_at,
                         ended_at = NULL, ended_by = NULL",
                )?
                .execute(params![
                    silence.id,
                    origin_text(silence.origin),
                    json(&silence.matcher)?,
                    silence.reason,
                    silence.created_by,
                    time_text(&silence.start),
                    time_text(&silence.end),
                    time_text(at),
                ])?;
        }
        OnCallRecord::SilenceEnded { id, by, at } => {
            // A planned window has no row until it ends: it gets one then, for the record.
            transaction
                .prepare_cached(
                    "INSERT INTO silences (id, origin, matcher, reason, created_by, starts_at,
                         ends_at, set_at, ended_at, ended_by)
                     VALUES (?1, 'config', '{}', '', 'config', ?2, ?2, ?2, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET ended_at = excluded.ended_at,
                         ended_by = excluded.ended_by",
                )?
                .execute(params![id, time_text(at), by])?;
        }
        OnCallRecord::Held {
            notification,
            silence_id,
            until,
            at,
        } => {
            transaction
                .prepare_cached(
                    "INSERT INTO held_notifications (dedup_key, incident_id, kind, silence_id,
                         payload, held_at, held_until)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    notification.dedup_key,
                    notification.incident_id,
                    notification.kind.as_str(),
                    silence_id,
                    json(notification)?,
                    time_text(at),
                    time_text(until),
                ])?;
        }
    }
    Ok(())
}

/// Operators' silences still running at `now`, as they were set, for a restart.
pub fn open_silences(
    connection: &Connection,
    path: &Path,
    now: Timestamp,
) -> Result<Vec<Silence>, JournalError> {
    let sqlite = |error| JournalError::from_sqlite(path, error);
    let mut statement = connection
        .prepare_cached(
            "SELECT id, matcher, reason, created_by, starts_at, ends_at FROM silences
             WHERE origin = 'operator' AND ended_at IS NULL AND ends_at > ?1 ORDER BY set_at",
        )
        .map_err(sqlite)?;
    let rows = statement
        .query_map(params![time_text(&now)], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
            ))
        })
        .map_err(sqlite)?;
    let mut silences = Vec::new();
    for row in rows {
        let (id, matcher, reason, created_by, start, end) = row.map_err(sqlite)?;
        let time = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .map(|at| at.with_timezone(&chrono::Utc))
                .map_err(|_| JournalError::bad_value(path, "time", text))
        };
        let matcher: Matcher = serde_json::from_str(&matcher)
            .map_err(|_| JournalError::bad_value(path, "matcher", &matcher))?;
        silences.push(Silence {
            id,
            matcher,
            reason,
            created_by,
            origin: SilenceOrigin::Operator,
            start: time(&start)?,
            end: time(&end)?,
            recurrence: None,
        });
    }
    Ok(silences)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Journal, JournalConfig, JournalRecord};

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn view(id: &str, end: &str) -> SilenceView {
        SilenceView {
            id: id.into(),
            matcher: Matcher {
                incident_ids: vec![7],
                ..Matcher::default()
            },
            matches: "incident 7".into(),
            reason: "db failover".into(),
            created_by: "alice".into(),
            origin: SilenceOrigin::Operator,
            active: true,
            start: at("2026-12-01T10:00:00Z"),
            end: at(end),
        }
    }

    #[test]
    fn operators_silences_come_back_after_a_restart_until_they_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite3");
        let config = JournalConfig::default();
        {
            let mut journal = Journal::open(&path, &config).unwrap();
            let set = |silence| {
                JournalRecord::OnCall(OnCallRecord::SilenceSet {
                    silence,
                    at: at("2026-12-01T10:00:00Z"),
                })
            };
            journal
                .write(&[
                    set(view("s1", "2026-12-01T11:00:00Z")),
                    set(view("s2", "2026-12-01T14:00:00Z")),
                    set(view("s3", "2026-12-01T14:00:00Z")),
                    JournalRecord::OnCall(OnCallRecord::SilenceEnded {
                        id: "s3".into(),
                        by: Some("bob".into()),
                        at: at("2026-12-01T10:30:00Z"),
                    }),
                    JournalRecord::OnCall(OnCallRecord::Held {
                        notification: incident_notify::fixtures::notification("7/incident_created"),
                        silence_id: "s2".into(),
                        until: at("2026-12-01T14:00:00Z"),
                        at: at("2026-12-01T10:05:00Z"),
                    }),
                ])
                .unwrap();
        }
        let mut journal = Journal::open(&path, &config).unwrap();
        // s1 is over by 12:00, s3 was ended early: only s2 still holds.
        let open = journal.open_silences(at("2026-12-01T12:00:00Z")).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].id, "s2");
        assert_eq!(open[0].matcher.incident_ids, vec![7]);
        assert_eq!(open[0].created_by, "alice");
        assert_eq!(open[0].end, at("2026-12-01T14:00:00Z"));
        // Retention forgets them like the rest, once they are over.
        let report = journal.prune(at("2027-06-01T00:00:00Z")).unwrap();
        assert_eq!((report.silences, report.held_notifications), (3, 1));
    }
}
