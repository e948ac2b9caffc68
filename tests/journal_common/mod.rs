//! Builders shared by the journal tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use chrono::TimeZone;
use incident_console::core::engine::{Audience, Notification, NotificationKind, SourceRef};
use incident_console::core::event::{self, IncidentEvent, Timestamp};
use incident_console::journal::{Decision, Journal, JournalConfig, JournalRecord, ProcessedEvent};
use incident_console::notify::{AttemptOutcome, Channel, Delivery, DeliveryChange, Payload};

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

pub fn notification(dedup_key: &str, incident_id: i64) -> Notification {
    Notification {
        kind: NotificationKind::IncidentCreated,
        audience: Audience::Administrators,
        incident_id,
        title: format!("incident {incident_id}"),
        priority: None,
        dedup_key: dedup_key.into(),
        fields: Default::default(),
    }
}

/// The engine decided on notification `dedup_key` at `at`.
pub fn decided(dedup_key: &str, incident_id: i64, at: Timestamp) -> JournalRecord {
    JournalRecord::Decided(Decision {
        notification: notification(dedup_key, incident_id),
        at,
    })
}

/// An email delivery of `dedup_key` to `recipient`, accepted at `at`.
pub fn delivery(dedup_key: &str, recipient: &str, incident_id: i64, at: Timestamp) -> Delivery {
    Delivery {
        key: Delivery::key_for(dedup_key, Channel::Email, recipient),
        channel: Channel::Email,
        recipient: recipient.into(),
        incident_id: Some(incident_id),
        kind: NotificationKind::IncidentCreated.into(),
        payload: Payload::Email {
            to: recipient.into(),
            subject: format!("incident {incident_id}"),
            body: "b".into(),
        },
        accepted_at: at,
        give_up_at: at + chrono::TimeDelta::hours(1),
    }
}

pub fn queued(delivery: &Delivery) -> JournalRecord {
    JournalRecord::Delivery(DeliveryChange::Queued(Box::new(delivery.clone())))
}

pub fn routed(dedup_key: &str, at: Timestamp) -> JournalRecord {
    JournalRecord::Delivery(DeliveryChange::Routed {
        dedup_key: dedup_key.into(),
        at,
    })
}

pub fn attempt(delivery: &Delivery, at: Timestamp, outcome: AttemptOutcome) -> JournalRecord {
    JournalRecord::Delivery(DeliveryChange::Attempted {
        key: delivery.key.clone(),
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
