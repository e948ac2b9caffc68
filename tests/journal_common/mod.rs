//! Builders shared by the journal tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use chrono::TimeZone;
use incident_console::core::engine::SourceRef;
use incident_console::core::event::{self, IncidentEvent, Timestamp};
use incident_console::journal::{
    AttemptOutcome, DeliveryAttempt, DeliveryKey, Journal, JournalConfig, JournalRecord,
    OutboxEntry, ProcessedEvent,
};

/// A fixed instant plus `seconds`, so that times compare exactly after a round trip.
pub fn t(seconds: i64) -> Timestamp {
    chrono::Utc
        .timestamp_opt(1_700_000_000 + seconds, 0)
        .unwrap()
}

pub const TOPIC: &str = "incidents-created";

pub fn source(partition: i32, offset: i64) -> SourceRef {
    SourceRef {
        topic: TOPIC.into(),
        partition,
        offset,
    }
}

pub fn comment(incident_id: i64) -> IncidentEvent {
    let text = format!(
        r#"{{"event_type":"comment_added","incident_id":{incident_id},"title":"Disk full","author":"ana","comment":"looking","created_at":"2024-01-01T10:00:00Z"}}"#
    );
    event::decode(Some(text.as_bytes()), event::DEFAULT_MAX_PAYLOAD_BYTES).unwrap()
}

pub fn handled(partition: i32, offset: i64, at: Timestamp) -> JournalRecord {
    JournalRecord::Event(ProcessedEvent::handled(
        source(partition, offset),
        &comment(100 + offset),
        at,
        at,
    ))
}

pub fn key(dedup_key: &str, recipient: &str) -> DeliveryKey {
    DeliveryKey {
        dedup_key: dedup_key.into(),
        channel: "email".into(),
        recipient: recipient.into(),
    }
}

pub fn queued(key: &DeliveryKey, incident_id: i64, at: Timestamp) -> JournalRecord {
    JournalRecord::NotificationQueued(OutboxEntry {
        key: key.clone(),
        incident_id: Some(incident_id),
        payload: serde_json::json!({"subject": format!("incident {incident_id}"), "to": key.recipient}),
        queued_at: at,
    })
}

pub fn attempt(
    key: &DeliveryKey,
    attempt: u32,
    at: Timestamp,
    outcome: AttemptOutcome,
) -> JournalRecord {
    JournalRecord::NotificationAttempt(DeliveryAttempt {
        key: key.clone(),
        attempt,
        at,
        outcome,
    })
}

pub fn journal_path(dir: &Path) -> PathBuf {
    dir.join("journal.sqlite3")
}

pub fn open(dir: &Path) -> Journal {
    Journal::open(&journal_path(dir), &JournalConfig::default()).expect("open journal")
}

/// A plain connection for looking at what the journal wrote.
pub fn inspect(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

pub fn count(path: &Path, table: &str) -> i64 {
    inspect(path)
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}
