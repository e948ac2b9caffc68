//! The SQL: writing records, the look-ups a restart needs, and retention. Shared by the
//! read-write `Journal` and the read-only `JournalReader`.

use std::path::Path;

use chrono::SecondsFormat;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::JournalError;
use super::record::{
    AttemptOutcome, DeliveryAttempt, DeliveryKey, EscalationRecord, EventOutcome, JournalRecord,
    OutboxEntry, PendingNotification, ProcessedEvent,
};
use super::store::PruneReport;
use crate::core::escalation::{Acknowledgement, Escalation, EscalationChange};
use crate::core::event::{Priority, Timestamp};

pub fn time_text(at: &Timestamp) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(path: &Path, text: &str) -> Result<Timestamp, JournalError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&chrono::Utc))
        .map_err(|_| JournalError::bad_value(path, "time", text))
}

fn parse_priority(path: &Path, text: &str) -> Result<Priority, JournalError> {
    Priority::ALL
        .into_iter()
        .find(|priority| priority.as_str() == text)
        .ok_or_else(|| JournalError::bad_value(path, "priority", text))
}

fn non_negative_u32(path: &Path, what: &str, value: i64) -> Result<u32, JournalError> {
    u32::try_from(value).map_err(|_| JournalError::bad_value(path, what, &value.to_string()))
}

/// Writes `records` inside `transaction`, in order.
pub fn write_records(
    transaction: &Transaction<'_>,
    records: &[JournalRecord],
) -> rusqlite::Result<()> {
    for record in records {
        match record {
            JournalRecord::Event(event) => write_event(transaction, event)?,
            JournalRecord::Escalation(escalation) => write_escalation(transaction, escalation)?,
            JournalRecord::NotificationQueued(entry) => write_outbox_entry(transaction, entry)?,
            JournalRecord::NotificationAttempt(attempt) => write_attempt(transaction, attempt)?,
        }
    }
    Ok(())
}

fn write_event(transaction: &Transaction<'_>, event: &ProcessedEvent) -> rusqlite::Result<()> {
    let (reason, error) = match &event.outcome {
        EventOutcome::Handled => (None, None),
        EventOutcome::DeadLettered { reason, error } => (Some(reason), Some(error)),
    };
    // A re-delivered message keeps its first record: the journal says what happened first.
    transaction
        .prepare_cached(
            "INSERT INTO events (kafka_topic, kafka_partition, kafka_offset, incident_id,
                 event_type, summary, received_at, handled_at, outcome, reason, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (kafka_topic, kafka_partition, kafka_offset) DO NOTHING",
        )?
        .execute(params![
            event.source.topic,
            event.source.partition,
            event.source.offset,
            event.incident_id,
            event.event_type,
            event.summary,
            time_text(&event.received_at),
            time_text(&event.handled_at),
            event.outcome.as_str(),
            reason,
            error,
        ])?;
    Ok(())
}

/// The change's name, incident and level, for columns that queries can use.
fn change_columns(change: &EscalationChange) -> (&'static str, i64, u32) {
    match change {
        EscalationChange::Opened {
            incident_id, level, ..
        } => ("opened", *incident_id, *level),
        EscalationChange::Raised {
            incident_id,
            to_level,
            ..
        } => ("raised", *incident_id, *to_level),
        EscalationChange::Repeated {
            incident_id, level, ..
        } => ("repeated", *incident_id, *level),
        EscalationChange::Exhausted { incident_id, level } => ("exhausted", *incident_id, *level),
        EscalationChange::Acknowledged {
            incident_id, level, ..
        } => ("acknowledged", *incident_id, *level),
        EscalationChange::Closed {
            incident_id, level, ..
        } => ("closed", *incident_id, *level),
    }
}

fn write_escalation(
    transaction: &Transaction<'_>,
    record: &EscalationRecord,
) -> rusqlite::Result<()> {
    let at = time_text(&record.at);
    let (change, incident_id, level) = change_columns(&record.change);
    let detail = serde_json::to_string(&record.change)
        .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
    transaction
        .prepare_cached(
            "INSERT INTO escalation_changes (incident_id, at, change, level, detail)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![incident_id, at, change, level, detail])?;
    if let EscalationChange::Acknowledged {
        by,
        time_to_acknowledge_secs,
        ..
    } = &record.change
    {
        transaction
            .prepare_cached(
                "INSERT INTO acknowledgements (incident_id, level, acknowledged_by,
                     acknowledged_at, time_to_acknowledge_secs)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                incident_id,
                level,
                by,
                at,
                time_to_acknowledge_secs
            ])?;
    }
    if let Some(current) = &record.current {
        let acknowledged = current.acknowledged.as_ref();
        transaction
            .prepare_cached(
                "INSERT INTO escalations (incident_id, title, priority, level, opened_at,
                     level_since, next_step_at, repeats, acknowledged_by, acknowledged_at,
                     closed_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, ?11)
                 ON CONFLICT (incident_id) DO UPDATE SET
                     title = excluded.title, priority = excluded.priority,
                     level = excluded.level, opened_at = excluded.opened_at,
                     level_since = excluded.level_since, next_step_at = excluded.next_step_at,
                     repeats = excluded.repeats, acknowledged_by = excluded.acknowledged_by,
                     acknowledged_at = excluded.acknowledged_at, closed_at = NULL,
                     updated_at = excluded.updated_at",
            )?
            .execute(params![
                current.incident_id,
                current.title,
                current.priority.as_str(),
                current.level,
                time_text(&current.opened_at),
                time_text(&current.level_since),
                current.next_step_at.as_ref().map(time_text),
                current.repeats,
                acknowledged.map(|ack| ack.by.as_str()),
                acknowledged.map(|ack| time_text(&ack.at)),
                at,
            ])?;
    }
    if matches!(record.change, EscalationChange::Closed { .. }) {
        transaction
            .prepare_cached(
                "UPDATE escalations SET closed_at = ?2, next_step_at = NULL, updated_at = ?2
                 WHERE incident_id = ?1 AND closed_at IS NULL",
            )?
            .execute(params![incident_id, at])?;
    }
    Ok(())
}

fn write_outbox_entry(transaction: &Transaction<'_>, entry: &OutboxEntry) -> rusqlite::Result<()> {
    // Queuing a key again (a re-delivered event) must not reset what happened to it.
    transaction
        .prepare_cached(
            "INSERT INTO notifications (dedup_key, channel, recipient, incident_id, payload,
                 queued_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')
             ON CONFLICT (dedup_key, channel, recipient) DO NOTHING",
        )?
        .execute(params![
            entry.key.dedup_key,
            entry.key.channel,
            entry.key.recipient,
            entry.incident_id,
            entry.payload.to_string(),
            time_text(&entry.queued_at),
        ])?;
    Ok(())
}

fn write_attempt(transaction: &Transaction<'_>, attempt: &DeliveryAttempt) -> rusqlite::Result<()> {
    let at = time_text(&attempt.at);
    let key = &attempt.key;
    let error = match &attempt.outcome {
        AttemptOutcome::Delivered => None,
        AttemptOutcome::Failed { error, .. } => Some(error.as_str()),
    };
    transaction
        .prepare_cached(
            "INSERT INTO notification_attempts (dedup_key, channel, recipient, attempt, at,
                 outcome, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            key.dedup_key,
            key.channel,
            key.recipient,
            attempt.attempt,
            at,
            attempt.outcome.as_str(),
            error,
        ])?;
    let (dedup_key, channel, recipient) = (&key.dedup_key, &key.channel, &key.recipient);
    match &attempt.outcome {
        // A late success counts even after the notifier had given up.
        AttemptOutcome::Delivered => transaction
            .prepare_cached(
                "UPDATE notifications SET state = 'delivered', attempts = max(attempts, ?4),
                     finished_at = ?5
                 WHERE dedup_key = ?1 AND channel = ?2 AND recipient = ?3
                     AND state != 'delivered'",
            )?
            .execute(params![dedup_key, channel, recipient, attempt.attempt, at])?,
        AttemptOutcome::Failed {
            will_retry: true, ..
        } => transaction
            .prepare_cached(
                "UPDATE notifications SET attempts = max(attempts, ?4), last_error = ?5
                 WHERE dedup_key = ?1 AND channel = ?2 AND recipient = ?3 AND state = 'pending'",
            )?
            .execute(params![
                dedup_key,
                channel,
                recipient,
                attempt.attempt,
                error
            ])?,
        AttemptOutcome::Failed {
            will_retry: false, ..
        } => transaction
            .prepare_cached(
                "UPDATE notifications SET state = 'failed', attempts = max(attempts, ?4),
                     last_error = ?5, finished_at = ?6
                 WHERE dedup_key = ?1 AND channel = ?2 AND recipient = ?3 AND state = 'pending'",
            )?
            .execute(params![
                dedup_key,
                channel,
                recipient,
                attempt.attempt,
                error,
                at
            ])?,
    };
    Ok(())
}

pub fn contains_event(
    connection: &Connection,
    path: &Path,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<bool, JournalError> {
    connection
        .prepare_cached(
            "SELECT 1 FROM events
             WHERE kafka_topic = ?1 AND kafka_partition = ?2 AND kafka_offset = ?3",
        )
        .and_then(|mut statement| {
            statement
                .query_row(params![topic, partition, offset], |_| Ok(()))
                .optional()
        })
        .map(|found| found.is_some())
        .map_err(|error| JournalError::from_sqlite(path, error))
}

/// Escalations not closed, oldest first, as the escalation book held them.
pub fn open_escalations(
    connection: &Connection,
    path: &Path,
) -> Result<Vec<Escalation>, JournalError> {
    type Row = (
        i64,
        String,
        String,
        i64,
        String,
        String,
        Option<String>,
        i64,
        Option<String>,
        Option<String>,
    );
    let sqlite = |error| JournalError::from_sqlite(path, error);
    let mut statement = connection
        .prepare_cached(
            "SELECT incident_id, title, priority, level, opened_at, level_since, next_step_at,
                 repeats, acknowledged_by, acknowledged_at
             FROM escalations WHERE closed_at IS NULL ORDER BY opened_at, incident_id",
        )
        .map_err(sqlite)?;
    let rows = statement
        .query_map([], |row| {
            Ok::<Row, _>((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
                row.get(7)?,
                row.get(8)?,
                row.get(9)?,
            ))
        })
        .map_err(sqlite)?;
    let mut escalations = Vec::new();
    for row in rows {
        let (id, title, priority, level, opened, since, next, repeats, by, at) =
            row.map_err(sqlite)?;
        let acknowledged = match (by, at) {
            (Some(by), Some(at)) => Some(Acknowledgement {
                by,
                at: parse_time(path, &at)?,
            }),
            _ => None,
        };
        escalations.push(Escalation {
            incident_id: id,
            title,
            priority: parse_priority(path, &priority)?,
            level: non_negative_u32(path, "level", level)?,
            opened_at: parse_time(path, &opened)?,
            level_since: parse_time(path, &since)?,
            next_step_at: next.as_deref().map(|t| parse_time(path, t)).transpose()?,
            repeats: non_negative_u32(path, "repeat count", repeats)?,
            acknowledged,
        });
    }
    Ok(escalations)
}

/// Outbox entries still to deliver, in the order they were queued.
pub fn undelivered_notifications(
    connection: &Connection,
    path: &Path,
) -> Result<Vec<PendingNotification>, JournalError> {
    type Row = (
        String,
        String,
        String,
        Option<i64>,
        String,
        String,
        i64,
        Option<String>,
    );
    let sqlite = |error| JournalError::from_sqlite(path, error);
    let mut statement = connection
        .prepare_cached(
            "SELECT dedup_key, channel, recipient, incident_id, payload, queued_at, attempts,
                 last_error
             FROM notifications WHERE state = 'pending' ORDER BY id",
        )
        .map_err(sqlite)?;
    let rows = statement
        .query_map([], |row| {
            Ok::<Row, _>((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
                row.get(7)?,
            ))
        })
        .map_err(sqlite)?;
    let mut pending = Vec::new();
    for row in rows {
        let (dedup_key, channel, recipient, incident_id, payload, queued_at, attempts, error) =
            row.map_err(sqlite)?;
        pending.push(PendingNotification {
            entry: OutboxEntry {
                key: DeliveryKey {
                    dedup_key,
                    channel,
                    recipient,
                },
                incident_id,
                payload: serde_json::from_str(&payload)
                    .map_err(|_| JournalError::bad_value(path, "payload", &payload))?,
                queued_at: parse_time(path, &queued_at)?,
            },
            attempts: non_negative_u32(path, "attempt count", attempts)?,
            last_error: error,
        });
    }
    Ok(pending)
}

/// Deliveries that succeeded at or after `since`.
pub fn delivered_since(
    connection: &Connection,
    path: &Path,
    since: &Timestamp,
) -> Result<Vec<DeliveryKey>, JournalError> {
    let sqlite = |error| JournalError::from_sqlite(path, error);
    let mut statement = connection
        .prepare_cached(
            "SELECT dedup_key, channel, recipient FROM notifications
             WHERE state = 'delivered' AND finished_at >= ?1 ORDER BY finished_at, id",
        )
        .map_err(sqlite)?;
    let rows = statement
        .query_map([time_text(since)], |row| {
            Ok(DeliveryKey {
                dedup_key: row.get(0)?,
                channel: row.get(1)?,
                recipient: row.get(2)?,
            })
        })
        .map_err(sqlite)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sqlite)
}

/// Dedup keys with at least one delivery at or after `since`, each once, sorted.
pub fn delivered_keys_since(
    connection: &Connection,
    path: &Path,
    since: &Timestamp,
) -> Result<Vec<String>, JournalError> {
    let sqlite = |error| JournalError::from_sqlite(path, error);
    let mut statement = connection
        .prepare_cached(
            "SELECT DISTINCT dedup_key FROM notifications
             WHERE state = 'delivered' AND finished_at >= ?1 ORDER BY dedup_key",
        )
        .map_err(sqlite)?;
    let rows = statement
        .query_map([time_text(since)], |row| row.get(0))
        .map_err(sqlite)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sqlite)
}

/// Deletes at most `limit` rows per table older than `cutoff`, never touching open
/// escalations (nor their history) or notifications still to deliver (nor their attempts).
pub fn prune(
    transaction: &Transaction<'_>,
    cutoff: &Timestamp,
    limit: usize,
) -> rusqlite::Result<PruneReport> {
    let cutoff = time_text(cutoff);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let delete = |sql: &str| transaction.execute(sql, params![cutoff, limit]);
    let report = PruneReport {
        events: delete(
            "DELETE FROM events WHERE id IN (
                 SELECT id FROM events WHERE handled_at < ?1 ORDER BY handled_at LIMIT ?2)",
        )?,
        escalation_changes: delete(
            "DELETE FROM escalation_changes WHERE id IN (
                 SELECT c.id FROM escalation_changes c WHERE c.at < ?1 AND NOT EXISTS (
                     SELECT 1 FROM escalations e
                     WHERE e.incident_id = c.incident_id AND e.closed_at IS NULL)
                 ORDER BY c.at LIMIT ?2)",
        )?,
        acknowledgements: delete(
            "DELETE FROM acknowledgements WHERE id IN (
                 SELECT a.id FROM acknowledgements a WHERE a.acknowledged_at < ?1 AND NOT EXISTS (
                     SELECT 1 FROM escalations e
                     WHERE e.incident_id = a.incident_id AND e.closed_at IS NULL)
                 ORDER BY a.acknowledged_at LIMIT ?2)",
        )?,
        escalations: delete(
            "DELETE FROM escalations WHERE incident_id IN (
                 SELECT incident_id FROM escalations
                 WHERE closed_at IS NOT NULL AND closed_at < ?1 LIMIT ?2)",
        )?,
        notification_attempts: delete(
            "DELETE FROM notification_attempts WHERE id IN (
                 SELECT a.id FROM notification_attempts a WHERE a.at < ?1 AND NOT EXISTS (
                     SELECT 1 FROM notifications n
                     WHERE n.dedup_key = a.dedup_key AND n.channel = a.channel
                         AND n.recipient = a.recipient AND n.state = 'pending')
                 ORDER BY a.at LIMIT ?2)",
        )?,
        notifications: delete(
            "DELETE FROM notifications WHERE id IN (
                 SELECT id FROM notifications
                 WHERE state != 'pending' AND finished_at < ?1 LIMIT ?2)",
        )?,
        more: false,
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    Ok(PruneReport {
        more: report.counts().iter().any(|&count| count >= limit),
        ..report
    })
}

pub fn schema_version(connection: &Connection, path: &Path) -> Result<i64, JournalError> {
    connection
        .query_row("SELECT max(version) FROM schema_version", [], |row| {
            row.get::<_, Option<i64>>(0)
        })
        .map(|version| version.unwrap_or(0))
        .map_err(|error| JournalError::from_sqlite(path, error))
}
