//! Team mode through the real binary on the embedded broker: consoles that observe every
//! partition without splitting the feed, and workers that share one leadership.

#[path = "support/notify_servers.rs"]
mod servers;

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

/// A worker configuration that mails every new incident to the administrators.
fn worker_config(dir: &std::path::Path, smtp_port: u16) -> std::path::PathBuf {
    let mut config = servers::mail_admins_config(smtp_port);
    config.notifications.delivery.initial_backoff_ms = 100;
    config.notifications.delivery.max_backoff_ms = 500;
    let path = dir.join("worker.ron");
    servers::write_private_config(&config, &path);
    path
}

/// A worker with its own journal, in the shipped group session.
fn worker(config: &std::path::Path, name: &str, bootstrap: &str, topic: &str) -> Running {
    let dir = config.parent().unwrap();
    let journal = dir.join(format!("{name}.sqlite3"));
    Running::start(
        &[
            "--role",
            "worker",
            "--no-tui",
            "--config",
            config.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
            "-b",
            bootstrap,
            "-t",
            topic,
            "--from-beginning",
            "-X",
            "auto.commit.interval.ms=200",
        ],
        &dir.join(format!("{name}.log")),
    )
}

/// What a worker printed, read as it comes.
#[derive(Default)]
struct Seen {
    events: usize,
    /// (active, reason, when) of each role record.
    roles: Vec<(bool, String, Instant)>,
}

impl Seen {
    fn active(&self) -> Option<bool> {
        self.roles.last().map(|(active, _, _)| *active)
    }
}

/// Reads what `process` printed so far (until `wait` passes without a line).
fn drain(process: &Running, seen: &mut Seen, wait: Duration) {
    while let Some(line) = process.line_before(Instant::now() + wait) {
        match field(&line, "kind")
            .and_then(|k| k.as_str().map(str::to_string))
            .as_deref()
        {
            Some("event") => seen.events += 1,
            Some("role") => seen.roles.push((
                field(&line, "active").and_then(|v| v.as_bool()).unwrap(),
                field(&line, "reason")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap(),
                Instant::now(),
            )),
            _ => {}
        }
    }
}

/// Reads both workers until `done` holds, bounded.
fn until(
    workers: [&Running; 2],
    seen: &mut [Seen; 2],
    what: &str,
    dir: &std::path::Path,
    done: impl Fn(&[Seen; 2]) -> bool,
) {
    let deadline = Instant::now() + LONG;
    while !done(seen) {
        if Instant::now() > deadline {
            let log =
                |n: &str| std::fs::read_to_string(dir.join(format!("{n}.log"))).unwrap_or_default();
            panic!(
                "timed out waiting for {what}; roles a={:?} b={:?}, events a={} b={}\nlog a:\n{}\nlog b:\n{}",
                seen[0].roles,
                seen[1].roles,
                seen[0].events,
                seen[1].events,
                log("a"),
                log("b")
            );
        }
        for (i, process) in workers.iter().enumerate() {
            drain(process, &mut seen[i], Duration::from_millis(20));
        }
    }
}

/// Deliveries in a worker's journal by state, e.g. `{"pending": 3}`.
fn deliveries(dir: &std::path::Path, name: &str) -> std::collections::BTreeMap<String, i64> {
    incident_console::journal::JournalReader::open(&dir.join(format!("{name}.sqlite3")))
        .and_then(|reader| reader.states("deliveries"))
        .unwrap_or_default()
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_is_active_and_a_standby_takes_over_after_kill_nine() {
    let dir = tempfile::tempdir().unwrap();
    let topic = "team-workers";
    let (_broker, bootstrap) = start_broker(3, &[topic], &dir.path().join("broker.log"));
    let smtp = servers::SmtpSink::start().await;
    let config = worker_config(dir.path(), smtp.port);
    let started = Instant::now();
    let a = worker(&config, "a", &bootstrap, topic);
    let b = worker(&config, "b", &bootstrap, topic);
    let mut seen = [Seen::default(), Seen::default()];
    until([&a, &b], &mut seen, "an active worker", dir.path(), |s| {
        s.iter().any(|w| w.active() == Some(true))
    });
    let first = if seen[0].active() == Some(true) { 0 } else { 1 };
    let other = 1 - first;
    eprintln!(
        "first active worker {:?} after the workers started",
        seen[first].roles.last().unwrap().2 - started
    );

    // The active one handles the whole stream; the standby nothing.
    simulate(&bootstrap, topic, 300);
    until([&a, &b], &mut seen, "300 events", dir.path(), |s| {
        s[first].events >= 300
    });
    assert_eq!(seen[first].events, 300);
    assert_eq!(seen[other].events, 0, "the standby handled events");
    assert_eq!(seen[other].active(), Some(false));
    let mails = smtp.wait_for(1).await;
    assert!(!mails.is_empty(), "the active worker mails");

    // kill -9 the active worker: the standby takes over.
    let mut workers = [a, b];
    let killed = Instant::now();
    workers[first].child.kill().unwrap();
    workers[first].child.wait().unwrap();
    let standby = &workers[other];
    let deadline = Instant::now() + LONG;
    while seen[other].active() != Some(true) {
        assert!(
            Instant::now() < deadline,
            "no takeover; roles {:?}",
            seen[other].roles
        );
        drain(standby, &mut seen[other], Duration::from_millis(20));
    }
    let takeover = seen[other].roles.last().unwrap().2 - killed;
    // The stated bound: session timeout (6 s) + rebalance + lease wait (4 s) + renewal.
    eprintln!("takeover after kill -9: {takeover:?}");
    assert!(
        takeover < Duration::from_secs(30),
        "takeover took {takeover:?}"
    );
    simulate(&bootstrap, topic, 100);
    let deadline = Instant::now() + LONG;
    // The new active worker reads on from the committed offsets: the new 100 at least.
    while seen[other].events < 100 {
        assert!(
            Instant::now() < deadline,
            "events after takeover: {}",
            seen[other].events
        );
        drain(standby, &mut seen[other], Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_past_its_session_is_fenced_and_sends_nothing_when_it_wakes() {
    let dir = tempfile::tempdir().unwrap();
    let topic = "team-sigstop";
    let (_broker, bootstrap) = start_broker(3, &[topic], &dir.path().join("broker.log"));
    let mut smtp = servers::SmtpSink::start().await;
    let config = worker_config(dir.path(), smtp.port);
    let workers = [
        worker(&config, "a", &bootstrap, topic),
        worker(&config, "b", &bootstrap, topic),
    ];
    let names = ["a", "b"];
    let mut seen = [Seen::default(), Seen::default()];
    until(
        [&workers[0], &workers[1]],
        &mut seen,
        "an active worker",
        dir.path(),
        |s| s.iter().any(|w| w.active() == Some(true)),
    );
    let first = if seen[0].active() == Some(true) { 0 } else { 1 };
    let other = 1 - first;

    // The mail server is down: the active worker handles 50 events and owes their mails.
    smtp.stop();
    simulate(&bootstrap, topic, 50);
    until(
        [&workers[0], &workers[1]],
        &mut seen,
        "50 events",
        dir.path(),
        |s| s[first].events >= 50,
    );
    let deadline = Instant::now() + LONG;
    loop {
        let handled: i64 = committed(&bootstrap, topic, "incident-management-consumer", 3)
            .iter()
            .map(|(_, offset)| offset)
            .sum();
        let owed = deliveries(dir.path(), names[first]);
        if handled == 50 && owed.get("pending").is_some_and(|n| *n > 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed {handled}, deliveries {owed:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let owed = deliveries(dir.path(), names[first])["pending"];

    // Stopped past its session: the standby takes over.
    let stopped = Instant::now();
    workers[first].signal("STOP");
    let deadline = Instant::now() + LONG;
    while seen[other].active() != Some(true) {
        assert!(
            Instant::now() < deadline,
            "no takeover; roles {:?}",
            seen[other].roles
        );
        drain(&workers[other], &mut seen[other], Duration::from_millis(20));
    }
    eprintln!(
        "takeover after SIGSTOP: {:?}",
        seen[other].roles.last().unwrap().2 - stopped
    );
    // The mail server is back and the new active worker mails new incidents.
    smtp.restart().await;
    simulate(&bootstrap, topic, 20);
    let deadline = Instant::now() + LONG;
    while seen[other].events < 20 {
        assert!(
            Instant::now() < deadline,
            "events after takeover: {}",
            seen[other].events
        );
        drain(&workers[other], &mut seen[other], Duration::from_millis(20));
    }
    assert_eq!(
        seen[other].events, 20,
        "the new active worker re-read nothing handled"
    );
    smtp.wait_for(1).await;

    // Woken up: the old one reports that it was fenced, and what it owed is refused, not sent.
    workers[first].signal("CONT");
    let deadline = Instant::now() + LONG;
    while seen[first].active() != Some(false) || seen[first].roles.last().unwrap().1 != "fenced" {
        assert!(
            Instant::now() < deadline,
            "not fenced; roles {:?}",
            seen[first].roles
        );
        drain(&workers[first], &mut seen[first], Duration::from_millis(20));
    }
    let deadline = Instant::now() + LONG;
    loop {
        let states = deliveries(dir.path(), names[first]);
        if states.get("failed") == Some(&owed) && !states.contains_key("pending") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "old worker's deliveries: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.path().join(format!("{}.log", names[first]))).unwrap();
    assert!(
        log.contains("fenced"),
        "the old worker logs that it was fenced"
    );
    // Every mail the server got is one the new active worker recorded as delivered (the
    // server sees a mail before the worker records it: waited for until they agree).
    let deadline = Instant::now() + LONG;
    loop {
        let states = deliveries(dir.path(), names[other]);
        let delivered_by_new = states.get("delivered").copied().unwrap_or(0);
        let mails = smtp.mails();
        if delivered_by_new > 0
            && !states.contains_key("pending")
            && mails.len() as i64 == delivered_by_new
        {
            break;
        }
        if Instant::now() > deadline {
            let subjects: Vec<String> = mails.iter().map(|m| m.subject()).collect();
            panic!(
                "a mail came from the fenced worker? new worker's deliveries {states:?}, \
                 old worker's {:?}, mails {subjects:?}",
                deliveries(dir.path(), names[first])
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_at_one_console_reaches_the_worker_and_shows_at_another_console() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let topic = "team-acks";
    let (_broker, bootstrap) = start_broker(3, &[topic], &dir.path().join("broker.log"));
    let smtp = servers::SmtpSink::start().await;
    let config = worker_config(dir.path(), smtp.port);
    let active = worker(&config, "a", &bootstrap, topic);
    let console = |operator: &str| {
        Running::start(
            &[
                "--role",
                "console",
                "--no-tui",
                "-b",
                &bootstrap,
                "-t",
                topic,
                "--operator",
                operator,
            ],
            &dir.path().join(format!("{operator}.log")),
        )
    };
    let mut alice = console("alice");
    let bob = console("bob");
    // Escalations the active worker holds open: opened, neither acknowledged nor closed.
    let mut open = BTreeSet::new();
    let mut worker_active = false;
    let mut events = 0;
    let deadline = Instant::now() + LONG;
    let mut simulated = false;
    while !(simulated && events >= 300) {
        assert!(
            Instant::now() < deadline,
            "worker active {worker_active}, events {events}"
        );
        let Some(line) = active.line_before(Instant::now() + Duration::from_millis(50)) else {
            continue;
        };
        let text = |name: &str| field(&line, name).and_then(|v| v.as_str().map(str::to_string));
        match text("kind").as_deref() {
            Some("role") => worker_active = field(&line, "active") == Some(true.into()),
            Some("event") => events += 1,
            Some("effect") if text("effect").as_deref() == Some("escalation") => {
                let id = field(&line, "incident_id")
                    .and_then(|v| v.as_i64())
                    .unwrap();
                match text("change").as_deref() {
                    Some("opened") => {
                        open.insert(id);
                    }
                    Some("acknowledged" | "closed") => {
                        open.remove(&id);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        if worker_active && !simulated {
            simulate(&bootstrap, topic, 300);
            simulated = true;
        }
    }
    assert!(!open.is_empty(), "the stream leaves escalations open");

    let mut propagation = Vec::new();
    for incident in open.iter().take(20) {
        let asked = Instant::now();
        writeln!(alice.child.stdin.as_mut().unwrap(), "ack {incident}").unwrap();
        alice.child.stdin.as_mut().unwrap().flush().unwrap();
        let deadline = Instant::now() + LONG;
        loop {
            let line = bob
                .line_before(deadline)
                .unwrap_or_else(|| panic!("bob never saw the ack of {incident}"));
            if field(&line, "kind").is_some_and(|k| k == "acknowledged")
                && field(&line, "incident_id").and_then(|v| v.as_i64()) == Some(*incident)
            {
                assert_eq!(field(&line, "by"), Some("alice".into()));
                propagation.push(asked.elapsed());
                break;
            }
        }
    }
    propagation.sort();
    eprintln!(
        "ack propagation alice -> worker -> bob over {} acks: median {:?}, worst {:?}",
        propagation.len(),
        propagation[propagation.len() / 2],
        propagation.last().unwrap()
    );
    // The worker applied it once each: its output says acknowledged by alice.
    let mut acknowledged = BTreeSet::new();
    let deadline = Instant::now() + LONG;
    while acknowledged.len() < propagation.len() {
        let line = active
            .line_before(deadline)
            .expect("worker acknowledgements");
        if field(&line, "change").is_some_and(|c| c == "acknowledged") {
            assert_eq!(field(&line, "by"), Some("alice".into()));
            let id = field(&line, "incident_id")
                .and_then(|v| v.as_i64())
                .unwrap();
            assert!(acknowledged.insert(id), "acknowledged twice");
        }
    }
}
