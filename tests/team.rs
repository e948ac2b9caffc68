//! Team mode through the real binary on the embedded broker: consoles that observe every
//! partition without splitting the feed, and workers that share one leadership.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_incident-console");
/// Generous: the mock broker's first group join alone takes about 3 s.
const LONG: Duration = Duration::from_secs(90);

/// A child process whose stdout lines arrive on a channel, killed when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(args: &[&str], log: &std::path::Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = Command::new(BINARY)
            .args(args)
            .env_remove("INCIDENT_CONSOLE_CONFIG")
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("binary starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line, or `None` at the deadline or at the end of output.
    fn line_before(&self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines.recv_timeout(left).ok()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit by itself, bounded; returns its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + LONG;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The embedded broker in its own process, with `topics`; returns it and its address.
fn start_broker(partitions: u32, topics: &[&str], log: &std::path::Path) -> (Running, String) {
    let mut args = vec![
        "broker".to_string(),
        "--partitions".into(),
        partitions.to_string(),
    ];
    for topic in topics {
        args.extend(["-t".to_string(), topic.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let broker = Running::start(&args, log);
    let line = broker
        .line_before(Instant::now() + LONG)
        .expect("broker prints its address");
    let bootstrap = line
        .strip_prefix("bootstrap.servers=")
        .unwrap_or_else(|| panic!("broker said {line:?}"))
        .to_string();
    (broker, bootstrap)
}

fn simulate(bootstrap: &str, topic: &str, count: u64) {
    let status = Command::new(BINARY)
        .args(["simulate", "-b", bootstrap, "-t", topic, "--rate", "0"])
        .args([
            "--count",
            &count.to_string(),
            "--seed",
            "9",
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn field(line: &str, name: &str) -> Option<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get(name)
        .cloned()
}

/// (partition, offset) of every event record a process printed, until `count` distinct ones
/// or the deadline.
fn events(process: &Running, count: usize, deadline: Instant) -> BTreeSet<(i64, i64)> {
    let mut seen = BTreeSet::new();
    while seen.len() < count {
        let Some(line) = process.line_before(deadline) else {
            break;
        };
        if field(&line, "kind").is_some_and(|k| k == "event") {
            let place = (
                field(&line, "partition").and_then(|v| v.as_i64()).unwrap(),
                field(&line, "offset").and_then(|v| v.as_i64()).unwrap(),
            );
            assert!(seen.insert(place), "event {place:?} printed twice");
        }
    }
    seen
}

/// The committed offsets of `group` on `topic`, as `(partition, offset)` where one exists.
fn committed(bootstrap: &str, topic: &str, group: &str, partitions: i32) -> Vec<(i32, i64)> {
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
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            rdkafka::Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect()
}

#[test]
fn two_consoles_with_the_default_configuration_each_see_every_event_and_commit_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("processes.log");
    let topic = "team-consoles";
    let (_broker, bootstrap) = start_broker(3, &[topic], &log);
    const EVENTS: u64 = 600;
    simulate(&bootstrap, topic, EVENTS);
    // Same configuration for both, the default group included: before team mode, two such
    // consoles split the partitions between them.
    let console = || {
        Running::start(
            &[
                "--role",
                "console",
                "--no-tui",
                "-b",
                &bootstrap,
                "-t",
                topic,
                "--from-beginning",
            ],
            &log,
        )
    };
    let (mut alice, mut bob) = (console(), console());
    let deadline = Instant::now() + LONG;
    let seen_by_alice = events(&alice, EVENTS as usize, deadline);
    let seen_by_bob = events(&bob, EVENTS as usize, deadline);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        seen_by_alice.len(),
        EVENTS as usize,
        "alice; log:\n{}",
        log_text()
    );
    assert_eq!(
        seen_by_bob.len(),
        EVENTS as usize,
        "bob; log:\n{}",
        log_text()
    );
    assert_eq!(seen_by_alice, seen_by_bob);
    let partitions: BTreeSet<i64> = seen_by_alice.iter().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 3, "every partition observed");
    // Observers commit nothing, under the default group or any other.
    // Stopped the polite way, so that any shutdown commit would have happened.
    alice.signal("TERM");
    bob.signal("TERM");
    assert_eq!(alice.exit_code(), Some(0));
    assert_eq!(bob.exit_code(), Some(0));
    assert_eq!(
        committed(&bootstrap, topic, "incident-management-consumer", 3),
        vec![],
        "a console committed offsets for the workers' group"
    );
}
