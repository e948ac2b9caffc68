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
    EscalationRecord, EventOutcome, Journal, JournalConfig, JournalRecord, ProcessedEvent,
};
use incident_console::notify::AttemptOutcome;
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
    assert_eq!(journal.schema_version().unwrap(), 6);
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
            "deliveries",
            "delivery_attempts",
            "escalation_changes",
            "escalations",
            "events",
            "held_notifications",
            "kafka_clusters",
            "notifications",
            "schema_version",
            "silences"
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

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn states(journal: &Journal, table: &str) -> Vec<(String, i64)> {
    journal.states(table).unwrap()
}

fn pairs(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

#[test]
fn a_notification_moves_from_decided_to_routed_to_delivered_or_failed() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    let mut journal = open(dir.path());
    let sent = delivery("7/incident_created", "admin@example.com", 7, t(0));
    let retried = delivery("7/incident_created", "oncall@example.com", 7, t(0));
    let abandoned = delivery("8/incident_created", "nobody@example.com", 8, t(1));
    let waiting = delivery("9/incident_created", "admin@example.com", 9, t(2));
    journal
        .write(&[
            decided("7/incident_created", 7, t(0)),
            decided("8/incident_created", 8, t(0)),
            decided("9/incident_created", 9, t(0)),
            decided("10/incident_created", 10, t(0)),
        ])
        .unwrap();
    assert_eq!(states(&journal, "notifications"), pairs(&[("decided", 4)]));
    journal
        .write(&[
            queued(&sent),
            queued(&retried),
            routed("7/incident_created", t(0)),
            queued(&abandoned),
            routed("8/incident_created", t(1)),
            queued(&waiting),
            routed("9/incident_created", t(2)),
            // Every delivery a duplicate (or no route): dealt with at once.
            routed("10/incident_created", t(2)),
        ])
        .unwrap();
    assert_eq!(
        states(&journal, "notifications"),
        pairs(&[("delivered", 1), ("routed", 3)])
    );
    let retry = |error: &str| AttemptOutcome::Retrying {
        error: error.into(),
    };
    journal
        .write(&[
            attempt(&sent, t(10), AttemptOutcome::Delivered),
            attempt(&retried, t(10), retry("421 try later")),
            attempt(
                &abandoned,
                t(10),
                AttemptOutcome::Failed {
                    error: "550 no such user".into(),
                },
            ),
        ])
        .unwrap();
    // 7 still waits for its retried delivery; 8 failed.
    assert_eq!(
        states(&journal, "notifications"),
        pairs(&[("delivered", 1), ("failed", 1), ("routed", 2)])
    );
    journal
        .write(&[attempt(&retried, t(40), AttemptOutcome::Delivered)])
        .unwrap();
    assert_eq!(
        states(&journal, "notifications"),
        pairs(&[("delivered", 2), ("failed", 1), ("routed", 1)])
    );
    assert_eq!(
        states(&journal, "deliveries"),
        pairs(&[("delivered", 2), ("failed", 1), ("pending", 1)])
    );
    // Decided again (the event was delivered again): nothing is reset.
    journal
        .write(&[decided("7/incident_created", 7, t(50))])
        .unwrap();
    assert_eq!(
        states(&journal, "notifications"),
        pairs(&[("delivered", 2), ("failed", 1), ("routed", 1)])
    );

    let attempts: Vec<(String, i64, String, Option<String>)> = inspect(&path)
        .prepare("SELECT recipient, attempt, outcome, error FROM delivery_attempts ORDER BY id")
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
}

#[test]
fn a_restart_resumes_what_is_owed_and_expires_what_is_too_old() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = open(dir.path());
    let old = delivery("1/incident_created", "a@example.com", 1, t(0));
    let recent = delivery("2/incident_created", "a@example.com", 2, t(day(3)));
    let sent = delivery("3/incident_created", "a@example.com", 3, t(day(3)));
    journal
        .write(&[
            // Day 0: decided and queued, never delivered; decided, never routed.
            decided("1/incident_created", 1, t(0)),
            queued(&old),
            routed("1/incident_created", t(0)),
            decided("4/incident_created", 4, t(0)),
            // Day 3: one owed, one sent, one decided and not yet routed.
            decided("2/incident_created", 2, t(day(3))),
            queued(&recent),
            routed("2/incident_created", t(day(3))),
            decided("3/incident_created", 3, t(day(3))),
            queued(&sent),
            routed("3/incident_created", t(day(3))),
            attempt(&sent, t(day(3) + 1), AttemptOutcome::Delivered),
            decided("5/incident_created", 5, t(day(3))),
        ])
        .unwrap();
    let resumed = journal
        .resume_notifications(t(day(3) + 60), HOUR, DAY, 1000)
        .unwrap();
    assert_eq!(resumed.expired_notifications, 1, "4, never routed");
    assert_eq!(resumed.expired_deliveries, 1, "1's delivery");
    let decided: Vec<_> = resumed
        .decided
        .iter()
        .map(|n| n.dedup_key.as_str())
        .collect();
    assert_eq!(decided, ["5/incident_created"]);
    assert_eq!(resumed.deliveries.pending, std::slice::from_ref(&recent));
    let claims: Vec<_> = resumed
        .deliveries
        .claims
        .iter()
        .map(|(key, _)| key.as_str())
        .collect();
    assert_eq!(claims, [recent.key.as_str(), sent.key.as_str()]);
    assert_eq!(
        states(&journal, "notifications"),
        pairs(&[
            ("decided", 1),
            ("delivered", 1),
            ("expired", 2),
            ("routed", 1)
        ])
    );
    // A second start changes nothing and sends nothing new.
    let again = journal
        .resume_notifications(t(day(3) + 120), HOUR, DAY, 1000)
        .unwrap();
    assert_eq!(again.expired_notifications + again.expired_deliveries, 0);
    assert_eq!(again.deliveries.pending, [recent]);
}

#[test]
fn what_was_written_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let waiting = delivery("1/incident_created", "a@example.com", 1, t(0));
    {
        let mut journal = open(dir.path());
        journal
            .write(&[
                handled(3, 42, t(0)),
                decided("1/incident_created", 1, t(0)),
                queued(&waiting),
            ])
            .unwrap();
    }
    let mut journal = open(dir.path());
    assert!(journal.contains_event(TOPIC, 3, 42).unwrap());
    let resumed = journal
        .resume_notifications(t(10), HOUR, DAY, 1000)
        .unwrap();
    assert_eq!(resumed.deliveries.pending, [waiting]);
    assert_eq!(resumed.decided.len(), 1);
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
    assert!(
        reader
            .decided_notifications(t(0), t(10), 10)
            .unwrap()
            .is_empty()
    );
    journal
        .write(&[
            decided("1/incident_created", 1, t(1)),
            decided("2/incident_created", 2, t(5)),
        ])
        .unwrap();
    let keys = |not_before, before| -> Vec<String> {
        reader
            .decided_notifications(not_before, before, 10)
            .unwrap()
            .into_iter()
            .map(|n| n.dedup_key)
            .collect()
    };
    assert_eq!(
        keys(t(0), t(10)),
        ["1/incident_created", "2/incident_created"]
    );
    assert_eq!(
        keys(t(2), t(10)),
        ["2/incident_created"],
        "older ones are past the horizon"
    );
    assert_eq!(
        keys(t(0), t(5)),
        ["1/incident_created"],
        "newer ones may be in flight"
    );
}

fn day(days: i64) -> i64 {
    days * 86_400
}

/// A journal in `dir` whose retention keeps `days` days.
fn keeping(days: u32, dir: &std::path::Path) -> (std::path::PathBuf, JournalConfig, Journal) {
    let path = journal_path(dir);
    let config = JournalConfig {
        retention_days: days,
        ..JournalConfig::default()
    };
    let journal = Journal::open(&path, &config).unwrap();
    (path, config, journal)
}

#[test]
fn prune_deletes_old_records_but_keeps_open_escalations() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, mut journal) = keeping(30, dir.path());
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
    let delivered = delivery("1/incident_created", "a@example.com", 1, t(0));
    let stuck = delivery("2/incident_created", "b@example.com", 2, t(0));
    old.extend([
        decided("1/incident_created", 1, t(0)),
        decided("2/incident_created", 2, t(0)),
        queued(&delivered),
        queued(&stuck),
        attempt(&delivered, t(1), AttemptOutcome::Delivered),
        attempt(
            &stuck,
            t(1),
            AttemptOutcome::Retrying {
                error: "timeout".into(),
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
    // Notification state older than retention is older than any resume horizon: it can
    // neither be sent nor stop a send any more, whatever its state.
    assert_eq!(report.notifications, 2);
    assert_eq!(report.deliveries, 2);
    assert_eq!(report.delivery_attempts, 2);
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
    assert_eq!(count(&path, "notifications"), 0);
    assert_eq!(count(&path, "deliveries"), 0);
    assert_eq!(count(&path, "delivery_attempts"), 0);
}

/// The first column of every row `sql` returns.
fn names(path: &std::path::Path, sql: &str) -> Vec<String> {
    inspect(path)
        .prepare(sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The indexes of `events` a journal has (SQLite's own for UNIQUE left out).
fn event_indexes(path: &std::path::Path) -> Vec<String> {
    names(
        path,
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'
         AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
}

/// Retention takes events in the order they were journaled, up to the first one inside it,
/// so `events` needs no index by time (schema version 5 drops it, also from a version 4
/// journal); one journaled after a clock stepped back goes with the rows after it.
#[test]
fn prune_takes_events_in_journal_order_without_an_index_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let (path, config, mut journal) = keeping(1, dir.path());
    assert_eq!(event_indexes(&path), ["events_by_incident"]);
    journal
        .write(&[
            handled(0, 0, t(0)),
            handled(0, 1, t(day(5))),
            // The clock stepped back a few days.
            handled(0, 2, t(0)),
        ])
        .unwrap();
    let report = journal.prune(t(day(3))).unwrap();
    assert_eq!(report.events, 1);
    assert!(!journal.contains_event(TOPIC, 0, 0).unwrap());
    assert!(journal.contains_event(TOPIC, 0, 1).unwrap());
    assert!(journal.contains_event(TOPIC, 0, 2).unwrap());
    // Once the row before it is old too, both go.
    let report = journal.prune(t(day(7))).unwrap();
    assert_eq!(report.events, 2);
    assert_eq!(count(&path, "events"), 0);
    drop(journal);

    // A version 4 journal, as a release before this one left it.
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "CREATE INDEX events_by_time ON events (handled_at);
                 DELETE FROM schema_version WHERE version >= 5;",
            )
            .unwrap();
    }
    assert_eq!(
        event_indexes(&path),
        ["events_by_incident", "events_by_time"]
    );
    let journal = Journal::open(&path, &config).unwrap();
    assert_eq!(journal.schema_version().unwrap(), 6);
    assert_eq!(event_indexes(&path), ["events_by_incident"]);
}

/// The columns of index `name`, in order.
fn index_columns(path: &std::path::Path, name: &str) -> Vec<String> {
    names(
        path,
        &format!("SELECT name FROM pragma_index_info('{name}') ORDER BY seqno"),
    )
}

/// An incident's events are found by their incident alone (schema version 6): the time in
/// the index made every entry four times as large, for an order the row id already gives. A
/// version 5 journal gets the smaller index at its next open, and its rows stay found.
#[test]
fn events_are_indexed_by_incident_alone_also_in_a_migrated_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (path, config, mut journal) = keeping(1, dir.path());
    assert_eq!(index_columns(&path, "events_by_incident"), ["incident_id"]);
    journal
        .write(&[handled(0, 0, t(0)), handled(0, 1, t(1))])
        .unwrap();
    drop(journal);

    // A version 5 journal, as the release before this one left it.
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "DROP INDEX events_by_incident;
                 CREATE INDEX events_by_incident ON events (incident_id, handled_at);
                 DELETE FROM schema_version WHERE version = 6;",
            )
            .unwrap();
    }
    assert_eq!(
        index_columns(&path, "events_by_incident"),
        ["incident_id", "handled_at"]
    );
    let journal = Journal::open(&path, &config).unwrap();
    assert_eq!(journal.schema_version().unwrap(), 6);
    assert_eq!(index_columns(&path, "events_by_incident"), ["incident_id"]);
    assert!(journal.contains_event(TOPIC, 0, 0).unwrap());
    assert!(journal.contains_event(TOPIC, 0, 1).unwrap());
    // The documented query of an incident's events uses it (docs/journal.md).
    let plan: String = inspect(&path)
        .query_row(
            "EXPLAIN QUERY PLAN SELECT handled_at FROM events WHERE incident_id = 42",
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("events_by_incident"), "{plan}");
}

#[test]
fn prune_is_bounded_per_call_and_retention_zero_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, mut journal) = keeping(1, dir.path());
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
