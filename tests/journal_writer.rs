//! The asynchronous writer: group commit, completions only after commit, isolation of a bad
//! submission, backpressure, and shutdown.

mod journal_common;

use std::time::Duration;

use futures::FutureExt;
use incident_console::core::engine::SourceRef;
use incident_console::journal::{
    Completion, Journal, JournalConfig, JournalError, JournalReader, JournalWriter,
};
use journal_common::*;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;

/// Every await in these tests is bounded: a hang fails instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(30);

async fn next<T>(completions: &mut UnboundedReceiver<Completion<T>>) -> Completion<T> {
    timeout(LIMIT, completions.recv())
        .await
        .expect("a completion in time")
        .expect("the writer is running")
}

/// The test records are dated 2023; retention would delete them as soon as the writer
/// starts, so these tests keep everything unless they say otherwise.
fn keep_all() -> JournalConfig {
    JournalConfig {
        retention_days: 0,
        ..JournalConfig::default()
    }
}

fn start(
    dir: &std::path::Path,
    config: JournalConfig,
) -> (
    JournalWriter<SourceRef>,
    UnboundedReceiver<Completion<SourceRef>>,
) {
    let journal = Journal::open(&journal_path(dir), &config).unwrap();
    JournalWriter::start(journal).unwrap()
}

#[tokio::test]
async fn submissions_are_committed_in_groups_and_completed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // A long delay and a small batch: the batches are exactly the record limit.
    let config = JournalConfig {
        max_batch_records: 100,
        max_batch_delay_ms: 1000,
        ..keep_all()
    };
    let (writer, mut completions) = start(dir.path(), config);
    for offset in 0..1000 {
        writer
            .submit(source(0, offset), vec![handled(0, offset, t(0))])
            .await
            .unwrap();
    }
    for offset in 0..1000 {
        let completion = next(&mut completions).await;
        assert_eq!(completion.token, source(0, offset));
        assert_eq!(completion.result, Ok(()));
    }
    let stats = writer.stats();
    assert_eq!(stats.committed_records, 1000);
    assert_eq!(stats.transactions, 10);
    assert_eq!(stats.failed_submissions, 0);
    assert_eq!(stats.queued, 0);
    timeout(LIMIT, writer.shutdown()).await.unwrap().unwrap();
    assert_eq!(count(&journal_path(dir.path()), "events"), 1000);
}

#[tokio::test]
async fn a_completion_means_the_records_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut completions) = start(dir.path(), keep_all());
    let reader = JournalReader::open(&journal_path(dir.path())).unwrap();
    for offset in 0..50 {
        writer
            .submit(source(2, offset), vec![handled(2, offset, t(0))])
            .await
            .unwrap();
    }
    for _ in 0..50 {
        let completion = next(&mut completions).await;
        completion.result.unwrap();
        // Another connection sees it: it is in the database, not in a buffer.
        assert!(
            reader
                .contains_event(TOPIC, 2, completion.token.offset)
                .unwrap(),
            "{} completed but is not visible",
            completion.token
        );
    }
    timeout(LIMIT, writer.shutdown()).await.unwrap().unwrap();
}

#[tokio::test]
async fn one_bad_submission_does_not_fail_the_others_in_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    let config = JournalConfig {
        max_batch_delay_ms: 500,
        ..keep_all()
    };
    let journal = Journal::open(&path, &config).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.kafka_offset = 13
             BEGIN SELECT RAISE(ABORT, 'refused by test'); END;",
        )
        .unwrap();
    let (writer, mut completions) = JournalWriter::start(journal).unwrap();
    for offset in 10..16 {
        writer
            .submit(offset, vec![handled(0, offset, t(0))])
            .await
            .unwrap();
    }
    let mut results = Vec::new();
    for _ in 10..16 {
        let completion = next(&mut completions).await;
        results.push((completion.token, completion.result.is_ok()));
    }
    assert_eq!(
        results,
        [
            (10, true),
            (11, true),
            (12, true),
            (13, false),
            (14, true),
            (15, true)
        ]
    );
    let stats = writer.stats();
    assert_eq!(stats.failed_submissions, 1);
    assert!(
        stats.last_error.unwrap().contains("refused by test"),
        "the last error is kept for a status line"
    );
    timeout(LIMIT, writer.shutdown()).await.unwrap().unwrap();
    assert_eq!(count(&path, "events"), 5);
}

/// A writer on `path` that is stuck on the first batch it takes: another connection holds the
/// write lock until the returned connection rolls back (or the busy timeout refuses it).
fn stuck_writer(
    path: &std::path::Path,
    config: &JournalConfig,
) -> (
    JournalWriter<i64>,
    UnboundedReceiver<Completion<i64>>,
    rusqlite::Connection,
) {
    let journal = Journal::open(path, config).unwrap();
    let (writer, completions) = JournalWriter::<i64>::start(journal).unwrap();
    let blocker = rusqlite::Connection::open(path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    (writer, completions, blocker)
}

#[tokio::test]
async fn a_full_queue_makes_submit_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    let config = JournalConfig {
        queue_capacity: 2,
        max_batch_records: 1,
        max_batch_delay_ms: 0,
        ..keep_all()
    };
    let (writer, mut completions, blocker) = stuck_writer(&path, &config);
    writer.submit(1, vec![handled(0, 1, t(0))]).await.unwrap();
    // Wait until the writer has taken it off the queue.
    timeout(LIMIT, async {
        while writer.stats().queued > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the writer takes the first submission");
    writer.submit(2, vec![handled(0, 2, t(0))]).await.unwrap();
    writer.submit(3, vec![handled(0, 3, t(0))]).await.unwrap();
    assert_eq!(writer.stats().queued, 2);
    let mut fourth = Box::pin(writer.submit(4, vec![handled(0, 4, t(0))]));
    assert!(
        (&mut fourth).now_or_never().is_none(),
        "the fourth submission waits for room"
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    timeout(LIMIT, fourth).await.unwrap().unwrap();
    let first = next(&mut completions).await;
    assert_eq!(first.token, 1);
    // Written once the lock went, or (on a very slow machine) refused after waiting for it.
    assert!(
        matches!(first.result, Ok(()) | Err(JournalError::Busy { .. })),
        "{:?}",
        first.result
    );
    for token in 2..=4 {
        let completion = next(&mut completions).await;
        assert_eq!((completion.token, completion.result), (token, Ok(())));
    }
    timeout(LIMIT, writer.shutdown()).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_lock_held_too_long_fails_the_submission_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    let (writer, mut completions) = start(dir.path(), keep_all());
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    writer
        .submit(source(0, 1), vec![handled(0, 1, t(0))])
        .await
        .unwrap();
    let completion = next(&mut completions).await;
    let error = completion.result.unwrap_err();
    assert!(matches!(error, JournalError::Busy { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    // The writer goes on once the lock is gone.
    writer
        .submit(source(0, 2), vec![handled(0, 2, t(0))])
        .await
        .unwrap();
    assert_eq!(next(&mut completions).await.result, Ok(()));
    timeout(LIMIT, writer.shutdown()).await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_writes_what_was_submitted_and_releases_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    let (writer, mut completions) = start(dir.path(), keep_all());
    let other = writer.clone();
    for offset in 0..300 {
        writer
            .submit(source(0, offset), vec![handled(0, offset, t(0))])
            .await
            .unwrap();
    }
    // Fire and forget: no completion, still written.
    writer.record(vec![handled(1, 0, t(0))]).await.unwrap();
    timeout(LIMIT, writer.shutdown()).await.unwrap().unwrap();
    for offset in 0..300 {
        assert_eq!(next(&mut completions).await.token.offset, offset);
    }
    // The same file opens again at once: the lock went with the writer.
    let journal = Journal::open(&path, &JournalConfig::default()).unwrap();
    assert!(journal.contains_event(TOPIC, 0, 299).unwrap());
    assert!(journal.contains_event(TOPIC, 1, 0).unwrap());
    // The checkpoint at shutdown left the write-ahead log empty.
    let wal = dir.path().join("journal.sqlite3-wal");
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
    // A clone used after shutdown is told the writer has stopped.
    assert_eq!(
        other.submit(source(0, 999), Vec::new()).await,
        Err(JournalError::Closed)
    );
    assert!(
        timeout(LIMIT, completions.recv()).await.unwrap().is_none(),
        "no completion for a refused submission; the channel is closed"
    );
}

#[tokio::test]
async fn dropping_every_handle_stops_the_writer_after_writing_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    let (writer, mut completions) = start(dir.path(), keep_all());
    for offset in 0..20 {
        writer
            .submit(source(0, offset), vec![handled(0, offset, t(0))])
            .await
            .unwrap();
    }
    drop(writer);
    for offset in 0..20 {
        let completion = next(&mut completions).await;
        assert_eq!(
            (completion.token.offset, completion.result),
            (offset, Ok(()))
        );
    }
    assert!(timeout(LIMIT, completions.recv()).await.unwrap().is_none());
    // The thread has closed the journal: it can be opened again.
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match Journal::open(&path, &JournalConfig::default()) {
            Ok(journal) => {
                assert!(journal.contains_event(TOPIC, 0, 19).unwrap());
                break;
            }
            Err(JournalError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(error) => panic!("{error}"),
        }
    }
}

#[test]
fn blocking_submit_works_outside_async_code() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut completions) = start(dir.path(), keep_all());
    writer
        .blocking_submit(source(0, 7), vec![handled(0, 7, t(0))])
        .unwrap();
    let completion = completions.blocking_recv().unwrap();
    assert_eq!(completion.result, Ok(()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime
        .block_on(async { timeout(LIMIT, writer.shutdown()).await })
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_writer_applies_retention_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    let config = JournalConfig {
        retention_days: 30,
        ..JournalConfig::default()
    };
    let mut journal = Journal::open(&path, &config).unwrap();
    let now = chrono::Utc::now();
    let old = now - chrono::TimeDelta::days(31);
    journal
        .write(&[handled(0, 1, old), handled(0, 2, now)])
        .unwrap();
    let (writer, mut completions) = JournalWriter::<i64>::start(journal).unwrap();
    let reader = JournalReader::open(&path).unwrap();
    timeout(LIMIT, async {
        while reader.contains_event(TOPIC, 0, 1).unwrap() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the old event is pruned soon after start");
    assert!(reader.contains_event(TOPIC, 0, 2).unwrap());
    writer.submit(3, vec![handled(0, 3, now)]).await.unwrap();
    assert_eq!(next(&mut completions).await.result, Ok(()));
    timeout(LIMIT, writer.shutdown()).await.unwrap().unwrap();
    assert_eq!(count(&path, "events"), 2);
}

/// The queue's bound is in records, not submissions: a writer that stalls holds back
/// consumption after `queue_records` records, however they were batched.
#[tokio::test]
async fn the_queue_is_bounded_in_records_not_submissions() {
    assert_eq!(JournalConfig::default().queue_records, 20_000, "shipped");
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    // The shipped bound and batching.
    let config = keep_all();
    let room = config.queue_records as i64;
    let (writer, mut completions, blocker) = stuck_writer(&path, &config);
    let records = |from: i64, count: i64| -> Vec<_> {
        (from..from + count)
            .map(|offset| handled(0, offset, t(0)))
            .collect()
    };
    writer.submit(1, records(0, room - 2_000)).await.unwrap();
    writer
        .submit(2, records(room - 2_000, 2_000))
        .await
        .unwrap();
    assert_eq!(writer.queued_records(), config.queue_records);
    assert!(
        writer.stats().queued <= 2,
        "two submissions, far below queue_capacity"
    );
    let mut third = Box::pin(writer.submit(3, records(room, 1)));
    assert!(
        (&mut third).now_or_never().is_none(),
        "one more record waits for room"
    );
    assert!(
        !writer.try_record(records(room + 1, 1)),
        "and one that cannot wait is refused"
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    timeout(LIMIT, third).await.unwrap().unwrap();
    // Bigger than the whole room: it waits for all of it, and is taken.
    timeout(LIMIT, writer.submit(4, records(room + 2, room + 1)))
        .await
        .unwrap()
        .unwrap();
    for token in 1..=4 {
        let completion = next(&mut completions).await;
        assert_eq!(completion.token, token);
        // Written once the lock went, or (on a very slow machine) refused after waiting for it.
        assert!(
            matches!(completion.result, Ok(()) | Err(JournalError::Busy { .. })),
            "{:?}",
            completion.result
        );
    }
    assert_eq!(writer.queued_records(), 0, "all the room is given back");
    timeout(LIMIT, writer.shutdown()).await.unwrap().unwrap();
}
