//! A restart must never page again. A console with a journal and an email route handles
//! incidents and mails them; a few more are owed when the mail server is down at the stop.
//! Then the journal's times are moved three days back (what a quiet weekend does) and the
//! console is started three times with the shipped deduplication window and resume horizon,
//! one new incident each time. The mail server gets exactly one mail per new incident and
//! nothing old: not the ones already sent (their claims are past the window), and not the
//! owed ones (past the resume horizon, so expired). The journal says so.

#[path = "support/notify_servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use incident_console::config::Config;
use incident_console::journal::JournalReader;
use incident_console::kafka::embedded::EmbeddedBroker;
use incident_console::output::OutputRecord;
use incident_console::runtime::{self, RuntimeOptions};
use incident_console::status::Command;
use rdkafka::producer::{FutureProducer, FutureRecord};
use servers::SmtpSink;

const LONG: Duration = Duration::from_secs(120);
const TOPIC: &str = "restart-incidents";

fn config(broker: &EmbeddedBroker, smtp_port: u16, journal: &Path) -> Config {
    let mut config = servers::mail_admins_config(smtp_port);
    config.kafka.brokers = broker.bootstrap_servers().to_string();
    config.kafka.topic = TOPIC.into();
    config.kafka.auto_offset_reset = "earliest".into();
    config.journal.path = Some(journal.to_path_buf());
    config
}

async fn produce(producer: &FutureProducer, ids: impl IntoIterator<Item = i64>) {
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/events/incident_created.json"
    ))
    .unwrap();
    for id in ids {
        let payload = template.replace("123", &id.to_string());
        producer
            .send(
                FutureRecord::to(TOPIC).key("k").payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
}

fn states(journal: &Path, table: &str) -> BTreeMap<String, i64> {
    JournalReader::open(journal)
        .and_then(|reader| reader.states(table))
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn counts(list: &[(&str, i64)]) -> BTreeMap<String, i64> {
    list.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

async fn wait_for_states(journal: &Path, table: &str, expected: &[(&str, i64)]) {
    let deadline = Instant::now() + LONG;
    while states(journal, table) != counts(expected) {
        assert!(
            Instant::now() < deadline,
            "{table}: {:?}, expected {expected:?}",
            states(journal, table)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the console until `events` events were handled and the journal's deliveries reach
/// `expected`, then stops it.
async fn run_until(config: &Config, events: usize, expected: &[(&str, i64)]) {
    let (sender, mut records) = tokio::sync::mpsc::channel::<OutputRecord>(10_000);
    let handle = runtime::spawn(
        config,
        RuntimeOptions {
            operator: "tester".into(),
            demo: false,
            output: Some(sender),
            output_flushed: None,
            shutdown_timeout: Duration::from_secs(5),
            side_effects: incident_console::core::permit::SideEffects::always(),
        },
    )
    .unwrap();
    let mut seen = 0;
    while seen < events {
        let record = tokio::time::timeout(LONG, records.recv())
            .await
            .expect("events in time")
            .expect("runtime alive");
        if matches!(record, OutputRecord::Event { .. }) {
            seen += 1;
        }
    }
    let journal = config.journal.path.clone().unwrap();
    wait_for_states(&journal, "deliveries", expected).await;
    handle.commands.send(Command::Shutdown).await.unwrap();
    handle.task.await.unwrap().unwrap();
}

/// Moves every time the journal keeps about notifications `days` back.
fn age(journal: &Path, days: i64) {
    let connection = rusqlite::Connection::open(journal).unwrap();
    let shift = |column: &str| {
        format!(
            "{column} = strftime('%Y-%m-%dT%H:%M:%S', {column}, '-{days} days') || substr({column}, 20)"
        )
    };
    connection
        .execute_batch(&format!(
            "UPDATE notifications SET {}, {};
             UPDATE deliveries SET {}, {};
             UPDATE delivery_attempts SET {};
             UPDATE events SET {}, {};",
            shift("decided_at"),
            shift("updated_at"),
            shift("queued_at"),
            shift("finished_at"),
            shift("at"),
            shift("received_at"),
            shift("handled_at"),
        ))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_quiet_weekend_sends_nothing_old() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.sqlite3");
    let mut smtp = SmtpSink::start().await;
    let broker = EmbeddedBroker::start(1, &[TOPIC, &format!("{TOPIC}.dlq")], 3).unwrap();
    let config = config(&broker, smtp.port, &journal);
    let producer: FutureProducer = incident_console::kafka::consumer::client_config(&config, false)
        .create()
        .unwrap();

    // Friday: 20 incidents, 20 mails.
    produce(&producer, 1..=20).await;
    run_until(&config, 20, &[("delivered", 20)]).await;
    assert_eq!(smtp.wait_for(20).await.len(), 20);

    // Friday night: the mail server is down; 5 more incidents, their mails owed at the stop.
    smtp.stop();
    produce(&producer, 21..=25).await;
    run_until(&config, 5, &[("delivered", 20), ("pending", 5)]).await;
    smtp.restart().await;

    // Monday: three days later, three restarts, one new incident each.
    age(&journal, 3);
    for (round, id) in (101..=103).enumerate() {
        produce(&producer, [id]).await;
        let delivered = 20 + round as i64 + 1;
        run_until(&config, 1, &[("delivered", delivered), ("expired", 5)]).await;
        let mails = smtp.mails();
        assert_eq!(
            mails.len(),
            20 + round + 1,
            "restart {}: only the new incident is mailed",
            round + 1
        );
    }
    let mut subjects: Vec<String> = smtp.mails().iter().map(|m| m.subject()).collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 23, "no mail twice");
    for owed in 21..=25 {
        assert!(
            !subjects.iter().any(|s| s.contains(&format!("#{owed}:"))),
            "incident {owed}'s mail expired, never sent: {subjects:?}"
        );
    }
    // Escalation notifications (no route here) are dealt with at once; the mailed kind:
    let connection = rusqlite::Connection::open(&journal).unwrap();
    let mut statement = connection
        .prepare(
            "SELECT state, count(*) FROM notifications WHERE kind = 'incident_created'
             GROUP BY state",
        )
        .unwrap();
    let created: BTreeMap<String, i64> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(created, counts(&[("delivered", 23), ("expired", 5)]));
}
