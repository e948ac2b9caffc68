//! The SQL: writing records, the look-ups a restart needs, and retention. Shared by the
//! read-write `Journal` and the read-only `JournalReader`.

use std::path::Path;

use chrono::SecondsFormat;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::JournalError;
use super::record::{
    Decision, EscalationRecord, EventOutcome, JournalRecord, ProcessedEvent, ResumedNotifications,
};
use super::store::PruneReport;
use incident_core::engine::Notification;
use incident_core::escalation::{Acknowledgement, Escalation, EscalationChange};
use incident_core::event::{Priority, Timestamp};
use incident_notify::{AttemptOutcome, Delivery, DeliveryChange};

/// `at` as the journal stores times: RFC 3339, UTC, microseconds (`2024-01-01T10:00:00.000000Z`),
/// what `to_rfc3339_opts(SecondsFormat::Micros, true)` writes. Written digit by digit: every
/// event row has two, and chrono's general formatter took about 700 instructions for each (4 %
/// of a drain with the journal, docs/performance.md). Years outside 0-9999 and leap seconds,
/// which that layout does not cover, go through chrono.
pub fn time_text(at: &Timestamp) -> String {
    use chrono::{Datelike, Timelike};
    // The date and time once: each accessor of a `DateTime` works the local time out again.
    let naive = at.naive_utc();
    let (date, time) = (naive.date(), naive.time());
    let (year, nanos) = (date.year(), time.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return at.to_rfc3339_opts(SecondsFormat::Micros, true);
    }
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |end: usize, value: u32| {
        let mut value = value;
        for place in text[..end].iter_mut().rev() {
            if !place.is_ascii_digit() {
                break;
            }
            *place = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(4, year as u32);
    put(7, date.month());
    put(10, date.day());
    put(13, time.hour());
    put(16, time.minute());
    put(19, time.second());
    put(26, nanos / 1_000);
    String::from_utf8(text.to_vec()).expect("ASCII digits and separators")
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
    // Nearly every record is an event: its statement is taken from the cache once per call,
    // not once per row (each take hashed the statement's text, and each return reset it).
    let mut events = None;
    for record in records {
        match record {
            JournalRecord::Event(event) => {
                let statement = match &mut events {
                    Some(statement) => statement,
                    None => events.insert(transaction.prepare_cached(INSERT_EVENT)?),
                };
                write_event(statement, event)?
            }
            JournalRecord::Escalation(escalation) => write_escalation(transaction, escalation)?,
            JournalRecord::Decided(decision) => write_decision(transaction, decision)?,
            JournalRecord::Delivery(change) => write_delivery_change(transaction, change)?,
            JournalRecord::OnCall(record) => super::oncall::write(transaction, record)?,
        }
    }
    Ok(())
}

/// A re-delivered message keeps its first record: the journal says what happened first.
const INSERT_EVENT: &str = "INSERT INTO events (kafka_topic, kafka_partition, kafka_offset,
        incident_id, event_type, summary, received_at, handled_at, outcome, reason, error)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
    ON CONFLICT (kafka_topic, kafka_partition, kafka_offset) DO NOTHING";

fn write_event(
    statement: &mut rusqlite::Statement<'_>,
    event: &ProcessedEvent,
) -> rusqlite::Result<()> {
    let (reason, error) = match &event.outcome {
        EventOutcome::Handled => (None, None),
        EventOutcome::DeadLettered { reason, error } => (Some(reason), Some(error)),
    };
    statement.execute(params![
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
    (change.kind().as_str(), change.incident_id(), change.level())
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

fn to_json<T: serde::Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value)
        .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))
}

fn write_decision(transaction: &Transaction<'_>, decision: &Decision) -> rusqlite::Result<()> {
    let notification = &decision.notification;
    let at = time_text(&decision.at);
    // Deciding a key again (a re-delivered event) must not reset what happened to it.
    transaction
        .prepare_cached(
            "INSERT INTO notifications (dedup_key, incident_id, kind, payload, decided_at, state,
                 updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'decided', ?5)
             ON CONFLICT (dedup_key) DO NOTHING",
        )?
        .execute(params![
            notification.dedup_key,
            notification.incident_id,
            notification.kind.as_str(),
            to_json(notification)?,
            at,
        ])?;
    Ok(())
}

/// The state a routed notification reaches once none of its deliveries is pending: failed if
/// one failed, expired if one expired, delivered otherwise (duplicates and digests included).
/// `?1` is the time; `WHERE` follows.
const SETTLE_NOTIFICATIONS: &str = "
    UPDATE notifications SET updated_at = ?1, state = CASE
        WHEN EXISTS (SELECT 1 FROM deliveries d
                     WHERE d.dedup_key = notifications.dedup_key AND d.state = 'failed')
            THEN 'failed'
        WHEN EXISTS (SELECT 1 FROM deliveries d
                     WHERE d.dedup_key = notifications.dedup_key AND d.state = 'expired')
            THEN 'expired'
        ELSE 'delivered' END
    WHERE state = 'routed' AND NOT EXISTS (
        SELECT 1 FROM deliveries d
        WHERE d.dedup_key = notifications.dedup_key AND d.state = 'pending')";

fn settle_notification(
    transaction: &Transaction<'_>,
    dedup_key: &str,
    at: &str,
) -> rusqlite::Result<()> {
    transaction
        .prepare_cached(&format!("{SETTLE_NOTIFICATIONS} AND dedup_key = ?2"))?
        .execute(params![at, dedup_key])?;
    Ok(())
}

/// The notification a delivery key belongs to: `<dedup_key>|<channel>|<recipient>`.
fn dedup_key_of(key: &str) -> &str {
    key.split('|').next().unwrap_or(key)
}

fn write_delivery_change(
    transaction: &Transaction<'_>,
    change: &DeliveryChange,
) -> rusqlite::Result<()> {
    match change {
        DeliveryChange::Routed { dedup_key, at } => {
            let at = time_text(at);
            transaction
                .prepare_cached(
                    "UPDATE notifications SET state = 'routed', updated_at = ?2
                     WHERE dedup_key = ?1 AND state = 'decided'",
                )?
                .execute(params![dedup_key, at])?;
            settle_notification(transaction, dedup_key, &at)?;
        }
        DeliveryChange::Queued(delivery) => write_queued(transaction, delivery)?,
        DeliveryChange::Attempted { key, at, outcome } => {
            let at = time_text(at);
            let error = outcome.error();
            transaction
                .prepare_cached(
                    "INSERT INTO delivery_attempts (dedup_key, channel, recipient, attempt, at,
                         outcome, error)
                     SELECT dedup_key, channel, recipient, attempts + 1, ?2, ?3, ?4
                     FROM deliveries WHERE key = ?1",
                )?
                .execute(params![key, at, outcome.as_str(), error])?;
            let state = match outcome {
                // A late success counts even after the notifier had given up.
                AttemptOutcome::Delivered => "'delivered'",
                AttemptOutcome::Retrying { .. } => "state",
                AttemptOutcome::Failed { .. } => {
                    "CASE state WHEN 'delivered' THEN 'delivered' ELSE 'failed' END"
                }
            };
            let finished = match outcome {
                AttemptOutcome::Retrying { .. } => "finished_at",
                _ => "?2",
            };
            transaction
                .prepare_cached(&format!(
                    "UPDATE deliveries SET attempts = attempts + 1,
                         last_error = coalesce(?3, last_error), state = {state},
                         finished_at = {finished}
                     WHERE key = ?1"
                ))?
                .execute(params![key, at, error])?;
            if !matches!(outcome, AttemptOutcome::Retrying { .. }) {
                settle_notification(transaction, dedup_key_of(key), &at)?;
            }
        }
    }
    Ok(())
}

fn write_queued(transaction: &Transaction<'_>, delivery: &Delivery) -> rusqlite::Result<()> {
    // Queued again (after its window passed, or after it failed): a new delivery.
    transaction
        .prepare_cached(
            "INSERT INTO deliveries (key, dedup_key, channel, recipient, incident_id, payload,
                 queued_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending')
             ON CONFLICT (key) DO UPDATE SET payload = excluded.payload,
                 queued_at = excluded.queued_at, state = 'pending', attempts = 0,
                 last_error = NULL, finished_at = NULL",
        )?
        .execute(params![
            delivery.key,
            dedup_key_of(&delivery.key),
            delivery.channel.as_str(),
            delivery.recipient,
            delivery.incident_id,
            to_json(delivery)?,
            time_text(&delivery.accepted_at),
        ])?;
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

/// Expires what is older than `horizon` and not finished, settles routed notifications whose
/// deliveries are all finished, and reads back what a start needs: decided notifications
/// never routed, pending deliveries, and the claims made since `window` (at most
/// `max_claims`, the newest).
pub fn resume_notifications(
    transaction: &Transaction<'_>,
    path: &Path,
    now: &Timestamp,
    horizon: &Timestamp,
    window: &Timestamp,
    max_claims: usize,
) -> Result<ResumedNotifications, JournalError> {
    let sqlite = |error| JournalError::from_sqlite(path, error);
    let (now, horizon, window) = (time_text(now), time_text(horizon), time_text(window));
    let expired_notifications = transaction
        .execute(
            "UPDATE notifications SET state = 'expired', updated_at = ?1
             WHERE state = 'decided' AND decided_at < ?2",
            params![now, horizon],
        )
        .map_err(sqlite)?;
    let expired_deliveries = transaction
        .execute(
            "UPDATE deliveries SET state = 'expired', finished_at = ?1,
                 last_error = 'older than the resume horizon at a restart'
             WHERE state = 'pending' AND queued_at < ?2",
            params![now, horizon],
        )
        .map_err(sqlite)?;
    transaction
        .execute(SETTLE_NOTIFICATIONS, params![now])
        .map_err(sqlite)?;
    let decided: Vec<(i64, String)> = read_rows(
        transaction,
        "SELECT id, payload FROM notifications WHERE state = 'decided' ORDER BY id",
        params![],
    )
    .map_err(sqlite)?;
    let pending: Vec<(i64, String)> = read_rows(
        transaction,
        "SELECT id, payload FROM deliveries WHERE state = 'pending' ORDER BY queued_at, id",
        params![],
    )
    .map_err(sqlite)?;
    let claims: Vec<(String, String)> = read_rows(
        transaction,
        "SELECT key, queued_at FROM (
             SELECT id, key, queued_at FROM deliveries
             WHERE state != 'failed' AND queued_at >= ?1
             ORDER BY queued_at DESC, id DESC LIMIT ?2)
         ORDER BY queued_at, id",
        params![window, i64::try_from(max_claims).unwrap_or(i64::MAX)],
    )
    .map_err(sqlite)?;
    let mut resumed = ResumedNotifications {
        decided: parse_payloads(path, "notifications", decided),
        expired_notifications,
        expired_deliveries,
        ..ResumedNotifications::default()
    };
    resumed.deliveries.pending = parse_payloads(path, "deliveries", pending);
    for (key, at) in claims {
        resumed
            .deliveries
            .claims
            .push((key, parse_time(path, &at)?));
    }
    Ok(resumed)
}

/// Decided notifications never routed, decided in `[not_before, before)`, oldest first, at
/// most `limit`: those the notifier's full queue refused.
pub fn decided_notifications(
    connection: &Connection,
    path: &Path,
    not_before: &Timestamp,
    before: &Timestamp,
    limit: usize,
) -> Result<Vec<Notification>, JournalError> {
    let rows = read_rows(
        connection,
        "SELECT id, payload FROM notifications
         WHERE state = 'decided' AND decided_at >= ?1 AND decided_at < ?2
         ORDER BY id LIMIT ?3",
        params![
            time_text(not_before),
            time_text(before),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
    )
    .map_err(|error| JournalError::from_sqlite(path, error))?;
    Ok(parse_payloads(path, "notifications", rows))
}

fn read_rows<A, B>(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<(A, B)>>
where
    A: rusqlite::types::FromSql,
    B: rusqlite::types::FromSql,
{
    let mut statement = connection.prepare_cached(sql)?;
    let rows = statement.query_map(params, |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}

/// Payloads that no longer parse (written by a newer release, or edited by hand) are skipped
/// with a warning that names the row: one bad row must not stop a start.
fn parse_payloads<T: serde::de::DeserializeOwned>(
    path: &Path,
    table: &str,
    rows: Vec<(i64, String)>,
) -> Vec<T> {
    rows.into_iter()
        .filter_map(|(id, payload)| match serde_json::from_str(&payload) {
            Ok(value) => Some(value),
            Err(error) => {
                tracing::warn!(
                    journal = %path.display(),
                    table,
                    id,
                    %error,
                    "unreadable notification state skipped"
                );
                None
            }
        })
        .collect()
}

/// The number of rows in each state of `table` (`notifications` or `deliveries`).
pub fn states(
    connection: &Connection,
    path: &Path,
    table: &str,
) -> Result<Vec<(String, i64)>, JournalError> {
    let table = match table {
        "notifications" => "notifications",
        _ => "deliveries",
    };
    read_rows(
        connection,
        &format!("SELECT state, count(*) FROM {table} GROUP BY state ORDER BY state"),
        params![],
    )
    .map_err(|error| JournalError::from_sqlite(path, error))
}

/// The highest journaled offset of each partition.
pub fn highest_offsets(
    connection: &Connection,
    path: &Path,
) -> Result<Vec<(String, i32, i64)>, JournalError> {
    let sqlite = |error| JournalError::from_sqlite(path, error);
    let mut statement = connection
        .prepare_cached(
            "SELECT kafka_topic, kafka_partition, max(kafka_offset) FROM events
             GROUP BY kafka_topic, kafka_partition",
        )
        .map_err(sqlite)?;
    let rows = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .map_err(sqlite)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sqlite)
}

/// Deletes at most `limit` rows per table older than `cutoff`, never touching open
/// escalations (nor their history).
pub fn prune(
    transaction: &Transaction<'_>,
    cutoff: &Timestamp,
    limit: usize,
) -> rusqlite::Result<PruneReport> {
    let cutoff = time_text(cutoff);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let delete = |sql: &str| transaction.execute(sql, params![cutoff, limit]);
    let report = PruneReport {
        // In id order, the order they were journaled (and handled), up to the first row
        // inside retention: that row is found by reading from the oldest, so a call reads
        // only the rows it deletes and one more, without an index by time. A row whose time
        // went backwards (a clock step) goes when the rows before it have gone.
        events: delete(
            "DELETE FROM events WHERE id IN (
                 SELECT id FROM events
                 WHERE id < coalesce(
                     (SELECT id FROM events WHERE handled_at >= ?1 ORDER BY id LIMIT 1),
                     9223372036854775807)
                 ORDER BY id LIMIT ?2)",
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
        // Notification state older than retention (longer than the dedup window and the
        // resume horizon, see `Config::validate`) can never be sent or stop a send again.
        delivery_attempts: delete(
            "DELETE FROM delivery_attempts WHERE id IN (
                 SELECT id FROM delivery_attempts WHERE at < ?1 ORDER BY at LIMIT ?2)",
        )?,
        deliveries: delete(
            "DELETE FROM deliveries WHERE id IN (
                 SELECT id FROM deliveries WHERE queued_at < ?1 ORDER BY queued_at LIMIT ?2)",
        )?,
        notifications: delete(
            "DELETE FROM notifications WHERE id IN (
                 SELECT id FROM notifications WHERE decided_at < ?1 ORDER BY decided_at LIMIT ?2)",
        )?,
        held_notifications: delete(
            "DELETE FROM held_notifications WHERE id IN (
                 SELECT id FROM held_notifications WHERE held_at < ?1 ORDER BY held_at LIMIT ?2)",
        )?,
        // A silence still running is kept, however old its start.
        silences: delete(
            "DELETE FROM silences WHERE id IN (
                 SELECT id FROM silences WHERE ends_at < ?1 ORDER BY ends_at LIMIT ?2)",
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    /// The hand-written layout is chrono's, for any time a journal can hold.
    #[test]
    fn time_text_writes_what_chrono_writes() {
        let chrono_text = |at: &Timestamp| at.to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut times = vec![
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap()
                + chrono::TimeDelta::nanoseconds(999_999_999),
            Utc.with_ymd_and_hms(2024, 2, 29, 12, 34, 56).unwrap()
                + chrono::TimeDelta::nanoseconds(1_999),
            // Outside the four-digit years: chrono's own text.
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 1, 0, 0, 0).unwrap(),
            Utc::now(),
        ];
        // A leap second, which chrono writes as second 60.
        times.push(
            chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
                .unwrap()
                .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
                .unwrap()
                .and_utc(),
        );
        // Spread over 0000-9999, down to the nanosecond (a fixed sequence, so it repeats).
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let first = Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap().timestamp();
        let last = Utc
            .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
            .unwrap()
            .timestamp();
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let seconds = first + (state >> 11) as i64 % (last - first);
            let nanos = (state % 1_000_000_000) as u32;
            times.push(Utc.timestamp_opt(seconds, nanos).unwrap());
        }
        for at in &times {
            assert_eq!(time_text(at), chrono_text(at), "{at:?}");
        }
        assert_eq!(
            time_text(&times[2]),
            "2024-02-29T12:34:56.000001Z",
            "microseconds are cut, not rounded"
        );
    }
}
