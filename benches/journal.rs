//! Journal throughput on this machine's disk, as the runtime will use it.
//!
//! `cargo bench --bench journal` (or `scripts/bench-journal`) measures:
//! 1. `Journal::write`, 1000 records per transaction: the store's raw speed;
//! 2. `JournalWriter` flat out: one submission per handled event (the event, plus an
//!    escalation change or queued notification now and then), completions drained by another
//!    task, as the runtime's select loop does; with and without the batching delay;
//! 3. `JournalWriter` paced at a steady rate: the latency from submit to completion, which
//!    is how long an offset waits before it may be stored.
//!
//! Under `cargo test` (no `--bench` argument) it runs a small smoke version, so that the
//! suite checks it still works without spending time on it.
//!
//! `--size N` instead writes N handled events spread over 120 days, with the notification
//! state a console with one email route keeps (every third event decides a notification, which
//! is queued, routed and delivered), and prints the journal's size before and after retention
//! (90 days) prunes it: `cargo test --release --bench journal -- --size 1000000`.

use std::time::{Duration, Instant};

use chrono::Utc;
use incident_console::core::engine::SourceRef;
use incident_console::core::engine::{Audience, Notification, NotificationKind};
use incident_console::core::escalation::{Escalation, EscalationChange};
use incident_console::core::event::{self, IncidentEvent, Priority};
use incident_console::journal::{
    Decision, EscalationRecord, Journal, JournalConfig, JournalRecord, JournalWriter,
    ProcessedEvent,
};

fn event(incident_id: i64) -> IncidentEvent {
    let text = format!(
        r#"{{"event_type":"status_updated","incident_id":{incident_id},"title":"Database latency above 2s on eu-west","old_status":"open","new_status":"in_progress","priority":"high","assigned_to":"jane.smith","updated_at":"2024-01-01T10:05:00Z"}}"#
    );
    event::decode(Some(text.as_bytes()), event::DEFAULT_MAX_PAYLOAD_BYTES).unwrap()
}

/// What the runtime writes for one handled message: the event, and for some events an
/// escalation change (1 in 10) or a queued notification (1 in 3).
fn records_for(offset: i64) -> Vec<JournalRecord> {
    records_at(offset, Utc::now())
}

fn records_at(offset: i64, now: chrono::DateTime<Utc>) -> Vec<JournalRecord> {
    let incident_id = 1 + offset % 5000;
    let mut records = vec![JournalRecord::Event(ProcessedEvent::handled(
        SourceRef {
            topic: "incidents-created".into(),
            partition: (offset % 3) as i32,
            offset,
        },
        &event(incident_id),
        now,
        now,
    ))];
    if offset % 10 == 0 {
        records.push(JournalRecord::Escalation(EscalationRecord {
            at: now,
            change: EscalationChange::Opened {
                incident_id,
                level: 1,
                priority: Priority::High,
            },
            current: Some(Escalation {
                incident_id,
                title: "Database latency above 2s on eu-west".into(),
                priority: Priority::High,
                level: 1,
                opened_at: now,
                level_since: now,
                next_step_at: Some(now + chrono::TimeDelta::minutes(5)),
                repeats: 0,
                acknowledged: None,
            }),
        }));
    }
    if offset % 3 == 0 {
        // A decided notification, written with its event as the runtime does.
        records.push(JournalRecord::Decided(Decision {
            notification: Notification {
                kind: NotificationKind::StatusChanged,
                audience: Audience::User {
                    name: "jane.smith".into(),
                },
                incident_id,
                title: "Database latency above 2s on eu-west".into(),
                priority: Some(Priority::High),
                dedup_key: format!("{incident_id}/status/in_progress/{offset}"),
                fields: [("new_status".to_string(), "in_progress".to_string())].into(),
            },
            at: now,
        }));
    }
    records
}

fn config(delay_ms: u64) -> JournalConfig {
    JournalConfig {
        max_batch_delay_ms: delay_ms,
        ..JournalConfig::default()
    }
}

fn bench_sync(events: i64) {
    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let mut journal = Journal::open(&dir.path().join("journal.sqlite3"), &config(0)).unwrap();
    let batches: Vec<Vec<JournalRecord>> = (0..events)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(|chunk| {
            chunk
                .iter()
                .flat_map(|&offset| records_for(offset))
                .collect()
        })
        .collect();
    let records: usize = batches.iter().map(Vec::len).sum();
    let started = Instant::now();
    for batch in &batches {
        journal.write(batch).unwrap();
    }
    let elapsed = started.elapsed();
    assert!(journal.contains_event("incidents-created", 0, 0).unwrap());
    println!(
        "Journal::write, 1000 events per transaction: {records} records in {elapsed:.2?} = {:.0} records/s",
        records as f64 / elapsed.as_secs_f64()
    );
}

struct Run {
    events: i64,
    records: u64,
    elapsed: Duration,
    transactions: u64,
    latencies: Vec<Duration>,
}

/// Submits `events` handled events, at `rate` per second or flat out, and waits for every
/// completion. Latency is from submit to completion.
fn run_writer(events: i64, delay_ms: u64, rate: Option<u64>) -> Run {
    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let journal = Journal::open(&dir.path().join("journal.sqlite3"), &config(delay_ms)).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (writer, mut completions) = JournalWriter::<(i64, Instant)>::start(journal).unwrap();
        let drain = tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(events as usize);
            while let Some(completion) = completions.recv().await {
                completion.result.expect("committed");
                latencies.push(completion.token.1.elapsed());
                if latencies.len() == events as usize {
                    break;
                }
            }
            latencies
        });
        let started = Instant::now();
        let mut records = 0u64;
        let mut pace = rate.map(|rate| {
            let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            interval
        });
        for offset in 0..events {
            if let Some(pace) = pace.as_mut() {
                pace.tick().await;
            }
            let batch = records_for(offset);
            records += batch.len() as u64;
            writer
                .submit((offset, Instant::now()), batch)
                .await
                .unwrap();
        }
        let latencies = drain.await.unwrap();
        let elapsed = started.elapsed();
        let stats = writer.stats();
        assert_eq!(stats.committed_records, records);
        writer.shutdown().await.unwrap();
        Run {
            events,
            records,
            elapsed,
            transactions: stats.transactions,
            latencies,
        }
    })
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn report(label: &str, mut run: Run) {
    run.latencies.sort();
    println!(
        "{label}: {} events ({} records) in {:.2?} = {:.0} events/s, {:.0} records/s; \
         {} transactions ({:.1} records each); submit-to-commit p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        run.events,
        run.records,
        run.elapsed,
        run.events as f64 / run.elapsed.as_secs_f64(),
        run.records as f64 / run.elapsed.as_secs_f64(),
        run.transactions,
        run.records as f64 / run.transactions.max(1) as f64,
        percentile(&run.latencies, 0.5),
        percentile(&run.latencies, 0.99),
        run.latencies.last().copied().unwrap_or_default(),
    );
}

/// Where the journals go: `BENCH_JOURNAL_DIR`, else the system temp directory.
fn bench_dir() -> std::path::PathBuf {
    std::env::var_os("BENCH_JOURNAL_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir)
}

/// See the module comment: the journal's size after `events` events, before and after
/// retention.
fn bench_size(events: i64) {
    use incident_console::notify::{AttemptOutcome, Channel, Delivery, DeliveryChange, Payload};
    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let path = dir.path().join("journal.sqlite3");
    let mut journal = Journal::open(&path, &JournalConfig::default()).unwrap();
    let end = Utc::now();
    let span = chrono::TimeDelta::days(120);
    let step = span / i32::try_from(events.max(1)).unwrap_or(i32::MAX);
    let started = Instant::now();
    for chunk in (0..events).collect::<Vec<_>>().chunks(1000) {
        let mut batch = Vec::new();
        for &offset in chunk {
            let at = end - span + step * i32::try_from(offset).unwrap_or(i32::MAX);
            let records = records_at(offset, at);
            let mut notified = Vec::new();
            for record in &records {
                if let JournalRecord::Decided(decision) = record {
                    let key = &decision.notification.dedup_key;
                    let recipient = "jane.smith@example.com";
                    let delivery = Delivery {
                        key: Delivery::key_for(key, Channel::Email, recipient),
                        channel: Channel::Email,
                        recipient: recipient.into(),
                        incident_id: Some(decision.notification.incident_id),
                        kind: NotificationKind::StatusChanged.into(),
                        payload: Payload::Email {
                            to: recipient.into(),
                            subject: "[HIGH] Database latency above 2s on eu-west: in_progress"
                                .into(),
                            body: "Status changed from open to in_progress. Assignee: jane.smith."
                                .into(),
                        },
                        accepted_at: at,
                        give_up_at: at + chrono::TimeDelta::hours(1),
                    };
                    notified.push(JournalRecord::Delivery(DeliveryChange::Queued(Box::new(
                        delivery.clone(),
                    ))));
                    notified.push(JournalRecord::Delivery(DeliveryChange::Routed {
                        dedup_key: key.clone(),
                        at,
                    }));
                    notified.push(JournalRecord::Delivery(DeliveryChange::Attempted {
                        key: delivery.key,
                        at,
                        outcome: AttemptOutcome::Delivered,
                    }));
                }
            }
            batch.extend(records);
            batch.extend(notified);
        }
        journal.write(&batch).unwrap();
    }
    journal.checkpoint().unwrap();
    let size = |path: &std::path::Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let before = size(&path);
    let written = started.elapsed();
    let mut pruned = 0;
    loop {
        let report = journal.prune(end).unwrap();
        pruned += report.total();
        if !report.more {
            break;
        }
    }
    journal.checkpoint().unwrap();
    let states = journal.states("notifications").unwrap();
    println!(
        "{events} events over 120 days written in {written:.1?}: journal {:.1} MiB; retention \
         (90 days) deleted {pruned} rows; notifications by state {states:?}; file {:.1} MiB \
         (SQLite reuses the freed pages)",
        before as f64 / 1_048_576.0,
        size(&path) as f64 / 1_048_576.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|arg| arg == "--size") {
        let events = args
            .get(position + 1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000_000);
        bench_size(events);
        return;
    }
    let full = std::env::args().any(|arg| arg == "--bench");
    if !full {
        // cargo test: a small run that proves the benchmark still works.
        bench_sync(2_000);
        report("smoke: JournalWriter", run_writer(2_000, 2, None));
        return;
    }
    println!("journal directory: {}", bench_dir().display());
    bench_sync(100_000);
    for delay_ms in [0, 2] {
        report(
            &format!("JournalWriter flat out, max_batch_delay_ms {delay_ms}"),
            run_writer(100_000, delay_ms, None),
        );
    }
    for rate in [1_000, 5_000] {
        for delay_ms in [0, 2] {
            report(
                &format!("JournalWriter paced at {rate} events/s, max_batch_delay_ms {delay_ms}"),
                run_writer(rate as i64 * 5, delay_ms, Some(rate)),
            );
        }
    }
}
