//! Shared fixtures for the Kafka integration tests: a broker (the embedded one, or the Apache
//! Kafka cluster that `INCIDENT_CONSOLE_TEST_KAFKA` names), a producer, a config pointed at
//! them, and bounded waits on the runtime's output.

#![allow(dead_code)]

// A test binary may load both this and the other support module.
#[allow(clippy::duplicate_mod)]
#[path = "../support/apache_kafka.rs"]
pub mod apache_kafka;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use incident_console::config::Config;
use incident_console::kafka::consumer::client_config;
use incident_console::kafka::embedded::EmbeddedBroker;
use incident_console::output::OutputRecord;
use incident_console::runtime::{self, RuntimeHandle, RuntimeOptions};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::mpsc;

/// Generous: the mock broker's first group join alone takes about 3 s.
pub const DEADLINE: Duration = Duration::from_secs(60);

static NEXT: AtomicU32 = AtomicU32::new(0);

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/events/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Where a test's topics live.
pub enum Broker {
    Embedded(EmbeddedBroker),
    /// A cluster started outside the test (by `scripts/test`).
    Apache(String),
}

impl Broker {
    /// The embedded broker, for a test that injects its faults: the mock has them, a real
    /// cluster does not.
    pub fn embedded(&self) -> &EmbeddedBroker {
        match self {
            Self::Embedded(broker) => broker,
            Self::Apache(_) => panic!("this test injects the embedded broker's faults"),
        }
    }

    pub fn bootstrap_servers(&self) -> &str {
        match self {
            Self::Embedded(broker) => broker.bootstrap_servers(),
            Self::Apache(bootstrap) => bootstrap,
        }
    }

    /// The embedded broker, or the Apache Kafka cluster of the environment, with `topics`.
    pub fn with_topics(topics: &[&str], partitions: i32) -> Self {
        match apache_kafka::from_env() {
            Some(bootstrap) => {
                apache_kafka::create_topics_blocking(&bootstrap, topics, partitions);
                Self::Apache(bootstrap)
            }
            None => Self::Embedded(
                EmbeddedBroker::start(1, topics, partitions).expect("embedded broker"),
            ),
        }
    }
}

pub struct Setup {
    pub broker: Broker,
    pub config: Config,
    /// The journal lives here for the test's lifetime.
    pub journal_dir: tempfile::TempDir,
}

/// A broker with a fresh topic (and its dead-letter topic) and a config that reads it from the
/// start with fast statistics and commits.
pub fn setup(partitions: i32) -> Setup {
    let mut config = Config::built_in();
    config.kafka.topic = unique("incidents");
    config.kafka.group_id = unique("group");
    config.kafka.auto_offset_reset = "earliest".into();
    config.kafka.statistics_interval_ms = 100;
    config
        .kafka
        .properties
        .insert("auto.commit.interval.ms".into(), "100".into());
    let broker = Broker::with_topics(
        &[&config.kafka.topic, &config.dead_letter_topic()],
        partitions,
    );
    config.kafka.brokers = broker.bootstrap_servers().to_string();
    let journal_dir = tempfile::tempdir().expect("temp dir");
    config.journal.path = Some(journal_dir.path().join("journal.sqlite3"));
    Setup {
        broker,
        config,
        journal_dir,
    }
}

pub fn producer(config: &Config) -> FutureProducer {
    client_config(config, false)
        .set("linger.ms", "0")
        .create()
        .expect("producer")
}

/// Sends and waits for the broker's acknowledgement; returns (partition, offset).
pub async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: Option<&[u8]>,
) -> (i32, i64) {
    let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(key);
    if let Some(payload) = payload {
        record = record.payload(payload);
    }
    let delivery = producer
        .send(record, Duration::from_secs(10))
        .await
        .expect("delivered");
    (delivery.partition, delivery.offset)
}

pub fn spawn_runtime(config: &Config) -> (RuntimeHandle, mpsc::Receiver<OutputRecord>) {
    let (sender, records) = mpsc::channel(100_000);
    let handle = runtime::spawn(
        config,
        RuntimeOptions {
            operator: "tester".into(),
            demo: false,
            output: Some(sender),
            output_flushed: None,
            shutdown_timeout: Duration::from_secs(10),
            side_effects: incident_console::core::permit::SideEffects::always(),
        },
    )
    .expect("runtime");
    (handle, records)
}

/// Collects records until `done` says so, failing the test at the deadline.
pub async fn collect_until(
    records: &mut mpsc::Receiver<OutputRecord>,
    seen: &mut Vec<OutputRecord>,
    mut done: impl FnMut(&[OutputRecord]) -> bool,
) {
    let wait = async {
        while !done(seen) {
            match records.recv().await {
                Some(record) => seen.push(record),
                None => panic!("runtime output closed early"),
            }
        }
    };
    if tokio::time::timeout(DEADLINE, wait).await.is_err() {
        panic!(
            "timed out after {DEADLINE:?}; saw {} records: {:#?}",
            seen.len(),
            seen.iter().rev().take(5).collect::<Vec<_>>()
        );
    }
}

pub fn count_events(records: &[OutputRecord]) -> usize {
    records
        .iter()
        .filter(|r| matches!(r, OutputRecord::Event { .. }))
        .count()
}

pub fn count_dead_letters(records: &[OutputRecord]) -> usize {
    records
        .iter()
        .filter(|r| matches!(r, OutputRecord::DeadLetter { .. }))
        .count()
}

/// Waits until a watched value satisfies `ready`, bounded.
pub async fn wait_for<T: Clone>(
    receiver: &mut tokio::sync::watch::Receiver<T>,
    what: &str,
    mut ready: impl FnMut(&T) -> bool,
) -> T {
    let wait = async {
        loop {
            {
                let value = receiver.borrow_and_update();
                if ready(&value) {
                    return value.clone();
                }
            }
            receiver.changed().await.expect("sender alive");
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Where each handled event came from, (partition, offset), in handling order.
pub fn event_places(records: &[OutputRecord]) -> Vec<(i32, i64)> {
    records
        .iter()
        .filter_map(|r| match r {
            OutputRecord::Event {
                partition, offset, ..
            } => Some((*partition, *offset)),
            _ => None,
        })
        .collect()
}
