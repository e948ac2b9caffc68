//! The synchronous journal: files and permissions, what is written, what a restart reads
//! back, and retention.

mod journal_common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use incident_console::core::escalation::{
    EscalationBook, EscalationLevel, EscalationPolicy, RaiseCause,
};
use incident_console::core::event::{self, Priority};
use incident_console::journal::{
    AttemptOutcome, EscalationRecord, EventOutcome, Journal, JournalConfig, JournalRecord,
    ProcessedEvent,
};
use journal_common::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn open_creates_a_private_directory_and_file_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/journal.sqlite3");
    let mut journal = Journal::open(&path, &JournalConfig::default()).unwrap();
    journal.write(&[handled(0, 1, t(0))]).unwrap();
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    assert_eq!(mode(&path), 0o600);
    // SQLite gives its side files the database's mode.
    assert_eq!(mode(&dir.path().join("a/b/journal.sqlite3-wal")), 0o600);
    assert_eq!(mode(&dir.path().join("a/b/journal.sqlite3.lock")), 0o600);
    assert_eq!(journal.schema_version().unwrap(), 2);
    let journal_mode: String = inspect(&path)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal_mode, "wal");
    let tables: Vec<String> = inspect(&path)
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "acknowledgements",
            "escalation_changes",
            "escalations",
            "events",
            "kafka_clusters",
            "notification_attempts",
            "notifications",
            "schema_version"
        ]
    );
}

#[test]
fn an_existing_file_that_others_can_read_is_made_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _journal = Journal::open(&path, &JournalConfig::default()).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn events_are_recorded_once_and_recognised_when_delivered_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path());
    let error = event::decode(Some(b"{oops"), 1024).unwrap_err();
    journal
        .write(&[
            handled(0, 10, t(1)),
            JournalRecord::Event(ProcessedEvent::dead_lettered(
                source(0, 11),
                &error,
                t(2),
                t(3),
            )),
        ])
        .unwrap();
    assert!(journal.contains_event(TOPIC, 0, 10).unwrap());
    assert!(journal.contains_event(TOPIC, 0, 11).unwrap());
    assert!(!journal.contains_event(TOPIC, 0, 12).unwrap());
    assert!(!journal.contains_event(TOPIC, 1, 10).unwrap());
    assert!(!journal.contains_event("other", 0, 10).unwrap());

    // The same offset again (a re-delivery) keeps the first record.
    let mut again = ProcessedEvent::handled(source(0, 11), &comment(5), t(9), t(9));
    again.summary = Some("second time".into());
    journal.write(&[JournalRecord::Event(again)]).unwrap();
    let path = journal_path(dir.path());
    assert_eq!(count(&path, "events"), 2);
    let (outcome, reason, received, handled_at): (String, String, String, String) = inspect(&path)
        .query_row(
            "SELECT outcome, reason, received_at, handled_at FROM events
                 WHERE kafka_offset = 11",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(outcome, "dead_lettered");
    assert_eq!(reason, "invalid_json");
    assert_eq!(received, "2023-11-14T22:13:22.000000Z");
    assert_eq!(handled_at, "2023-11-14T22:13:23.000000Z");
    let summary: String = inspect(&path)
        .query_row(
            "SELECT summary FROM events WHERE kafka_offset = 10",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(summary, "comment by ana");
}

#[test]
fn a_batch_is_written_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    let mut journal = open(dir.path());
    // A trigger stands in for a failure in the middle of a batch.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.kafka_offset = 666
             BEGIN SELECT RAISE(ABORT, 'refused by test'); END;",
        )
        .unwrap();
    let error = journal
        .write(&[
            handled(0, 1, t(0)),
            handled(0, 666, t(0)),
            handled(0, 2, t(0)),
        ])
        .unwrap_err();
    assert!(error.to_string().contains("refused by test"), "{error}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
    assert_eq!(count(&path, "events"), 0);
    journal.write(&[handled(0, 1, t(0))]).unwrap();
    assert_eq!(count(&path, "events"), 1);
}

fn policy() -> EscalationPolicy {
    EscalationPolicy {
        levels: vec![
            EscalationLevel {
                name: "on-call".into(),
                timeout: Duration::from_secs(60),
            },
            EscalationLevel {
                name: "secondary".into(),
                timeout: Duration::from_secs(120),
            },
        ],
        repeat_interval: Duration::from_secs(300),
        max_repeats: 2,
    }
}

fn records(
    book: &EscalationBook,
    changes: Vec<incident_console::core::escalation::EscalationChange>,
    at: i64,
) -> Vec<JournalRecord> {
    changes
        .into_iter()
        .map(|change| JournalRecord::Escalation(EscalationRecord::from_book(change, book, t(at))))
        .collect()
}

#[test]
fn open_escalations_come_back_as_the_book_held_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    let mut journal = open(dir.path());
    let mut book = EscalationBook::new(policy(), 100);
    let write = |journal: &mut Journal, book: &EscalationBook, changes, at| {
        journal.write(&records(book, changes, at)).unwrap()
    };
    let changes = book.escalate(
        1,
        "Disk full",
        Priority::High,
        1,
        RaiseCause::Triggered,
        t(0),
    );
    write(&mut journal, &book, changes, 0);
    let changes = book.escalate(
        2,
        "DB down",
        Priority::Critical,
        1,
        RaiseCause::Triggered,
        t(5),
    );
    write(&mut journal, &book, changes, 5);
    let changes = book.escalate(3, "Printer", Priority::High, 1, RaiseCause::Triggered, t(6));
    write(&mut journal, &book, changes, 6);
    let changes = book.tick(t(60));
    assert_eq!(changes.len(), 1, "incident 1 times out to level 2");
    write(&mut journal, &book, changes, 60);
    let change = book.acknowledge(2, "ana", t(70)).unwrap();
    write(&mut journal, &book, vec![change], 70);
    let change = book.close(3).unwrap();
    write(&mut journal, &book, vec![change], 80);

    let restored = journal.open_escalations().unwrap();
    let expected: Vec<_> = book.iter().cloned().collect();
    assert_eq!(restored, expected);
    assert_eq!(restored[0].level, 2);
    assert_eq!(restored[1].acknowledged.as_ref().unwrap().by, "ana");

    // And the same after closing and reopening.
    drop(journal);
    let journal = open(dir.path());
    assert_eq!(journal.open_escalations().unwrap(), expected);

    let changes: Vec<(i64, String, i64)> = inspect(&path)
        .prepare("SELECT incident_id, change, level FROM escalation_changes ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        changes,
        [
            (1, "opened".into(), 1),
            (2, "opened".into(), 1),
            (3, "opened".into(), 1),
            (1, "raised".into(), 2),
            (2, "acknowledged".into(), 1),
            (3, "closed".into(), 1),
        ]
    );
    let ack: (i64, String, String, f64) = inspect(&path)
        .query_row(
            "SELECT incident_id, acknowledged_by, acknowledged_at, time_to_acknowledge_secs
             FROM acknowledgements",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        ack,
        (2, "ana".into(), "2023-11-14T22:14:30.000000Z".into(), 65.0)
    );
    let closed: Option<String> = inspect(&path)
        .query_row(
            "SELECT closed_at FROM escalations WHERE incident_id = 3",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(closed.as_deref(), Some("2023-11-14T22:14:40.000000Z"));
}

#[test]
fn a_reopened_incident_escalates_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path());
    let mut book = EscalationBook::new(policy(), 100);
    let changes = book.escalate(1, "t", Priority::High, 1, RaiseCause::Triggered, t(0));
    journal.write(&records(&book, changes, 0)).unwrap();
    let change = book.close(1).unwrap();
    journal.write(&records(&book, vec![change], 1)).unwrap();
    assert!(journal.open_escalations().unwrap().is_empty());
    let changes = book.escalate(1, "t", Priority::Critical, 1, RaiseCause::Triggered, t(2));
    journal.write(&records(&book, changes, 2)).unwrap();
    let open = journal.open_escalations().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].priority, Priority::Critical);
    assert_eq!(open[0].opened_at, t(2));
}

#[test]
fn the_outbox_tracks_each_delivery_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    let mut journal = open(dir.path());
    let sent = key("7/incident_created", "admin@example.com");
    let retried = key("7/incident_created", "oncall@example.com");
    let abandoned = key("8/incident_created", "nobody@example.com");
    let waiting = key("9/incident_created", "admin@example.com");
    journal
        .write(&[
            queued(&sent, 7, t(0)),
            queued(&retried, 7, t(0)),
            queued(&abandoned, 8, t(1)),
            queued(&waiting, 9, t(2)),
        ])
        .unwrap();
    assert_eq!(journal.undelivered_notifications().unwrap().len(), 4);
    let failed = |error: &str, will_retry| AttemptOutcome::Failed {
        error: error.into(),
        will_retry,
    };
    journal
        .write(&[
            attempt(&sent, 1, t(10), AttemptOutcome::Delivered),
            attempt(&retried, 1, t(10), failed("421 try later", true)),
            attempt(&abandoned, 1, t(10), failed("550 no such user", false)),
        ])
        .unwrap();
    let pending = journal.undelivered_notifications().unwrap();
    let keys: Vec<_> = pending.iter().map(|p| p.entry.key.clone()).collect();
    assert_eq!(keys, [retried.clone(), waiting.clone()]);
    assert_eq!(pending[0].attempts, 1);
    assert_eq!(pending[0].last_error.as_deref(), Some("421 try later"));
    assert_eq!(pending[0].entry.incident_id, Some(7));
    assert_eq!(
        pending[0].entry.payload,
        serde_json::json!({"subject": "incident 7", "to": "oncall@example.com"})
    );
    assert_eq!(pending[0].entry.queued_at, t(0));
    assert_eq!(pending[1].attempts, 0);

    journal
        .write(&[attempt(&retried, 2, t(40), AttemptOutcome::Delivered)])
        .unwrap();
    assert_eq!(
        journal.delivered_since(t(0)).unwrap(),
        [sent.clone(), retried.clone()]
    );
    assert_eq!(
        journal.delivered_since(t(11)).unwrap(),
        [retried.clone()].as_slice()
    );
    assert_eq!(
        journal.delivered_keys_since(t(0)).unwrap(),
        ["7/incident_created"]
    );
    assert!(journal.delivered_keys_since(t(41)).unwrap().is_empty());

    // Queued again (the event was delivered again): nothing is reset.
    journal.write(&[queued(&sent, 7, t(50))]).unwrap();
    assert_eq!(journal.delivered_since(t(0)).unwrap().len(), 2);
    assert_eq!(journal.undelivered_notifications().unwrap().len(), 1);

    let attempts: Vec<(String, i64, String, Option<String>)> = inspect(&path)
        .prepare("SELECT recipient, attempt, outcome, error FROM notification_attempts ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        attempts,
        [
            ("admin@example.com".into(), 1, "delivered".into(), None),
            (
                "oncall@example.com".into(),
                1,
                "failed".into(),
                Some("421 try later".into())
            ),
            (
                "nobody@example.com".into(),
                1,
                "gave_up".into(),
                Some("550 no such user".into())
            ),
            ("oncall@example.com".into(), 2, "delivered".into(), None),
        ]
    );
    let states: Vec<(String, String, i64)> = inspect(&path)
        .prepare("SELECT recipient, state, attempts FROM notifications ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        states,
        [
            ("admin@example.com".into(), "delivered".into(), 1),
            ("oncall@example.com".into(), "delivered".into(), 2),
            ("nobody@example.com".into(), "failed".into(), 1),
            ("admin@example.com".into(), "pending".into(), 0),
        ]
    );
}

#[test]
fn what_was_written_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let waiting = key("1/incident_created", "a@example.com");
    {
        let mut journal = open(dir.path());
        journal
            .write(&[handled(3, 42, t(0)), queued(&waiting, 1, t(0))])
            .unwrap();
    }
    let journal = open(dir.path());
    assert!(journal.contains_event(TOPIC, 3, 42).unwrap());
    assert_eq!(journal.undelivered_notifications().unwrap().len(), 1);
}

#[test]
fn a_reader_sees_what_was_committed_while_the_journal_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path());
    let reader = journal.reader().unwrap();
    assert!(!reader.contains_event(TOPIC, 0, 1).unwrap());
    journal.write(&[handled(0, 1, t(0))]).unwrap();
    assert!(reader.contains_event(TOPIC, 0, 1).unwrap());
    assert!(reader.open_escalations().unwrap().is_empty());
    assert!(reader.undelivered_notifications().unwrap().is_empty());
    assert!(reader.delivered_keys_since(t(0)).unwrap().is_empty());
}

fn day(days: i64) -> i64 {
    days * 86_400
}

#[test]
fn prune_deletes_old_records_but_keeps_open_escalations_and_undelivered_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    let config = JournalConfig {
        retention_days: 30,
        ..JournalConfig::default()
    };
    let mut journal = Journal::open(&path, &config).unwrap();
    let mut book = EscalationBook::new(policy(), 100);
    // Day 0: incident 1 escalates and is closed; incident 2 escalates and stays open.
    let mut old = vec![handled(0, 1, t(0)), handled(0, 2, t(0))];
    let changes = book.escalate(1, "old", Priority::High, 1, RaiseCause::Triggered, t(0));
    old.extend(records(&book, changes, 0));
    let changes = book.escalate(
        2,
        "still open",
        Priority::High,
        1,
        RaiseCause::Triggered,
        t(0),
    );
    old.extend(records(&book, changes, 0));
    let change = book.acknowledge(1, "ana", t(10)).unwrap();
    old.extend(records(&book, vec![change], 10));
    let change = book.close(1).unwrap();
    old.extend(records(&book, vec![change], 20));
    let delivered = key("1/incident_created", "a@example.com");
    let stuck = key("2/incident_created", "b@example.com");
    old.extend([
        queued(&delivered, 1, t(0)),
        queued(&stuck, 2, t(0)),
        attempt(&delivered, 1, t(1), AttemptOutcome::Delivered),
        attempt(
            &stuck,
            1,
            t(1),
            AttemptOutcome::Failed {
                error: "timeout".into(),
                will_retry: true,
            },
        ),
    ]);
    journal.write(&old).unwrap();
    // Day 40: something recent.
    journal.write(&[handled(0, 3, t(day(40)))]).unwrap();

    // Day 20: nothing is older than 30 days yet.
    assert_eq!(journal.prune(t(day(20))).unwrap().total(), 0);

    let report = journal.prune(t(day(41))).unwrap();
    assert_eq!(report.events, 2);
    assert_eq!(report.escalations, 1, "the closed escalation");
    assert_eq!(
        report.escalation_changes, 3,
        "opened, acknowledged, closed of incident 1"
    );
    assert_eq!(report.acknowledgements, 1);
    assert_eq!(report.notifications, 1, "the delivered one");
    assert_eq!(
        report.notification_attempts, 1,
        "the delivered one's attempt"
    );
    assert!(!report.more);

    assert!(journal.contains_event(TOPIC, 0, 3).unwrap());
    assert!(!journal.contains_event(TOPIC, 0, 1).unwrap());
    let open = journal.open_escalations().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].incident_id, 2);
    assert_eq!(
        count(&path, "escalation_changes"),
        1,
        "incident 2's history stays"
    );
    let pending = journal.undelivered_notifications().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].entry.key, stuck);
    assert_eq!(
        count(&path, "notification_attempts"),
        1,
        "the stuck one's attempt stays"
    );
}

#[test]
fn prune_is_bounded_per_call_and_retention_zero_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    let config = JournalConfig {
        retention_days: 1,
        ..JournalConfig::default()
    };
    let mut journal = Journal::open(&path, &config).unwrap();
    let old: Vec<_> = (0..25).map(|offset| handled(0, offset, t(0))).collect();
    journal.write(&old).unwrap();
    let mut calls = Vec::new();
    loop {
        let report = journal.prune_bounded(t(day(2)), 10).unwrap();
        calls.push(report.events);
        if !report.more {
            break;
        }
    }
    assert_eq!(calls, [10, 10, 5]);
    assert_eq!(count(&path, "events"), 0);
    drop(journal);

    let keep = JournalConfig {
        retention_days: 0,
        ..JournalConfig::default()
    };
    let mut journal = Journal::open(&path, &keep).unwrap();
    journal.write(&[handled(0, 1, t(0))]).unwrap();
    assert_eq!(journal.prune(t(day(10_000))).unwrap().total(), 0);
    assert_eq!(count(&path, "events"), 1);
}

#[test]
fn dead_lettered_events_keep_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path());
    let error = event::decode(None, 10).unwrap_err();
    let record = ProcessedEvent::dead_lettered(source(1, 5), &error, t(0), t(1));
    assert_eq!(
        record.outcome,
        EventOutcome::DeadLettered {
            reason: "tombstone".into(),
            error: "payload is a tombstone (null value)".into()
        }
    );
    journal.write(&[JournalRecord::Event(record)]).unwrap();
    assert!(journal.contains_event(TOPIC, 1, 5).unwrap());
}
