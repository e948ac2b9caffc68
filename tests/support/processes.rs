//! The real binary's processes, for the tests that run it: killed when dropped, the embedded
//! broker in a process of its own, a process's output line by line, and what a group committed.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

// A test binary may load both this and the other support module.
#[allow(clippy::duplicate_mod)]
#[path = "apache_kafka.rs"]
pub mod apache_kafka;

pub const BINARY: &str = env!("CARGO_BIN_EXE_incident-console");

/// A child process, killed (and reaped) when dropped, also when a test fails.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test's broker: the embedded one in a process of its own, or a topic set on the Apache
/// Kafka cluster of the environment (`INCIDENT_CONSOLE_TEST_KAFKA`, set by `scripts/test`).
pub enum Broker {
    Embedded(Process),
    Apache,
}

/// The embedded broker in its own process with `topics` (each with `partitions`), its log to
/// `log`, or those topics on the environment's Apache Kafka cluster (where team topics and
/// dead letters are left for the console to create, as on a production cluster); returns it
/// and its bootstrap address.
pub fn start_broker(partitions: i32, topics: &[&str], log: Stdio) -> (Broker, String) {
    if let Some(bootstrap) = apache_kafka::from_env() {
        apache_kafka::create_topics_blocking(&bootstrap, topics, partitions);
        return (Broker::Apache, bootstrap);
    }
    let (process, bootstrap) = start_embedded_broker(partitions, topics, log);
    (Broker::Embedded(process), bootstrap)
}

/// The embedded broker in its own process, whatever the environment says.
pub fn start_embedded_broker(partitions: i32, topics: &[&str], log: Stdio) -> (Process, String) {
    let mut command = Command::new(BINARY);
    command.args(["broker", "--partitions", &partitions.to_string()]);
    for topic in topics {
        command.args(["-t", topic]);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("the broker starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the broker prints its address");
    let bootstrap = line
        .trim()
        .strip_prefix("bootstrap.servers=")
        .unwrap_or_else(|| panic!("broker said {line:?}"))
        .to_string();
    (Process(child), bootstrap)
}

/// The lines of `stream`, as they come, on a channel (closed at the end of the stream).
pub fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    forward_lines(stream, |line| line)
}

/// As `lines_of`, each line with the moment it was read: a test that is busy elsewhere for a
/// while still knows when a process printed what it reads later.
pub fn stamped_lines_of(
    stream: impl Read + Send + 'static,
) -> mpsc::Receiver<(std::time::Instant, String)> {
    forward_lines(stream, |line| (std::time::Instant::now(), line))
}

/// A thread that reads `stream` line by line and sends `wrap(line)` for each.
fn forward_lines<T: Send + 'static>(
    stream: impl Read + Send + 'static,
    wrap: impl Fn(String) -> T + Send + 'static,
) -> mpsc::Receiver<T> {
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(wrap(line)).is_err() {
                break;
            }
        }
    });
    lines
}

/// What `group` committed on each partition of `topic`, in partition order (`None`: nothing).
pub fn committed(bootstrap: &str, topic: &str, group: &str, partitions: i32) -> Vec<Option<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let reader: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let list = reader
        .committed_offsets(list, Duration::from_secs(30))
        .unwrap();
    (0..partitions)
        .map(|p| match list.find_partition(topic, p).unwrap().offset() {
            rdkafka::Offset::Offset(offset) => Some(offset),
            _ => None,
        })
        .collect()
}

/// (events, distinct places) in a console's journal; (0, 0) before it exists.
pub fn journal_counts(journal: &std::path::Path) -> (u64, u64) {
    let connection =
        rusqlite::Connection::open_with_flags(journal, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    connection
        .query_row(
            "SELECT count(*), count(DISTINCT kafka_topic || '/' || kafka_partition || '/' || kafka_offset) FROM events",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap_or((0, 0))
}

/// The incidents whose creation the console handled, as the journal records them.
pub fn incidents_created(journal: &std::path::Path) -> std::collections::BTreeSet<i64> {
    let connection =
        rusqlite::Connection::open_with_flags(journal, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut statement = connection
        .prepare("SELECT incident_id FROM events WHERE event_type = 'incident_created'")
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}
