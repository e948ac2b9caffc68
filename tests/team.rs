//! Team mode through the real binary on the embedded broker: consoles that observe every
//! partition without splitting the feed, and workers that share one leadership.

#[path = "support/processes.rs"]
mod processes;
#[path = "support/notify_servers.rs"]
mod servers;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use processes::{BINARY, lines_of, stamped_lines_of};
/// Generous: the mock broker's first group join alone takes about 3 s.
const LONG: Duration = Duration::from_secs(90);

/// A child process whose stdout lines arrive on a channel, killed when dropped.
struct Running {
    child: Child,
    /// Each line with when it was printed (read from the pipe).
    lines: mpsc::Receiver<(Instant, String)>,
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
        let lines = stamped_lines_of(child.stdout.take().unwrap());
        Self { child, lines }
    }

    /// The next line, or `None` at the deadline or at the end of output.
    fn line_before(&self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines.recv_timeout(left).ok().map(|(_, line)| line)
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

/// The embedded broker in its own process, with `topics`, logging to `log`; returns it and its
/// address.
fn start_broker(
    partitions: i32,
    topics: &[&str],
    log: &std::path::Path,
) -> (processes::Broker, String) {
    let log = std::fs::File::create(log).unwrap();
    processes::start_broker(partitions, topics, Stdio::from(log))
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
    let offsets = processes::committed(bootstrap, topic, group, partitions);
    (0..partitions)
        .zip(offsets)
        .filter_map(|(partition, offset)| Some((partition, offset?)))
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
    let console = || console(&bootstrap, topic, &["--from-beginning"], &log);
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

/// A headless console observing every partition of `topic`, with `extra` arguments.
fn console(bootstrap: &str, topic: &str, extra: &[&str], log: &std::path::Path) -> Running {
    let mut args = vec![
        "--role", "console", "--no-tui", "-b", bootstrap, "-t", topic,
    ];
    args.extend_from_slice(extra);
    Running::start(&args, log)
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
    // Events that arrive while nobody is active wait for the successor, which reads on
    // from the committed offsets; when it handles the first is what a user waits for.
    simulate(&bootstrap, topic, 100);
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
    let deadline = Instant::now() + LONG;
    while seen[other].events == 0 {
        assert!(Instant::now() < deadline, "no event after the takeover");
        drain(standby, &mut seen[other], Duration::from_millis(20));
    }
    eprintln!(
        "first event handled after kill -9: {:?} (active after {takeover:?})",
        killed.elapsed()
    );
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
    // Fenced by its lease, or first by the broker (its writer's transaction refused).
    while seen[first].active() != Some(false)
        || !seen[first].roles.last().unwrap().1.starts_with("fenced")
    {
        assert!(
            Instant::now() < deadline,
            "not fenced; roles {:?}",
            seen[first].roles
        );
        drain(&workers[first], &mut seen[first], Duration::from_millis(20));
    }
    // Each owed mail ends refused. Only a send that had passed the gate when the pause came
    // may still complete once awake ("a message already on the wire at the pause still
    // completes, as with a kill": docs/team.md), at most one per delivery slot.
    let slots = incident_console::config::Config::built_in()
        .notifications
        .delivery
        .concurrency as i64;
    let deadline = Instant::now() + LONG;
    let completed_after_wake = loop {
        let states = deliveries(dir.path(), names[first]);
        let count = |state: &str| states.get(state).copied().unwrap_or(0);
        if count("failed") + count("delivered") == owed && !states.contains_key("pending") {
            assert!(
                count("delivered") <= slots,
                "the woken worker sent more than was in flight: {states:?}"
            );
            break count("delivered");
        }
        assert!(
            Instant::now() < deadline,
            "old worker's deliveries: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("sends in flight at the pause that completed after it: {completed_after_wake}");
    let log = std::fs::read_to_string(dir.path().join(format!("{}.log", names[first]))).unwrap();
    assert!(
        log.contains("fenced"),
        "the old worker logs that it was fenced"
    );
    // On the state topic: epoch 1 for the first worker, 2 from the takeover on. Whatever the
    // woken worker wrote after that (nothing, its gate being closed) a reader ignores.
    let records = state_records(&bootstrap, topic);
    let takeover = records
        .iter()
        .position(|r| r.epoch == 2)
        .expect("the new active worker's epoch");
    assert!(records[..takeover].iter().all(|r| r.epoch == 1));
    let late: Vec<_> = records[takeover..].iter().filter(|r| r.epoch < 2).collect();
    let mut restorer = incident_console::team::state::Restorer::default();
    for record in records.iter().cloned() {
        restorer.push(record);
    }
    let restored = restorer.finish(
        chrono::Utc::now(),
        Duration::from_secs(3600),
        Duration::from_secs(3600),
        10_000,
    );
    assert_eq!(restored.epoch, 2);
    assert_eq!(restored.stale as usize, late.len(), "stale records ignored");
    // A record the paused worker had queued before the stop may still go out when it wakes.
    eprintln!(
        "records of the fenced worker after the takeover, ignored: {}",
        late.len()
    );
    // The new active worker restored what the fenced one owed from the state topic and sent
    // it, once each (the repeated incidents of the second stream are deduplicated by the
    // restored claims); the fenced worker sent nothing. Waited for until the new worker has
    // marked all of them delivered there, as it does once the server took each.
    let deadline = Instant::now() + LONG;
    loop {
        let delivered = state_records(&bootstrap, topic)
            .iter()
            .filter(|r| {
                r.epoch == 2
                    && matches!(&r.body, incident_console::team::state::StateBody::Finished { outcome, .. } if *outcome == incident_console::team::state::Finish::Delivered)
            })
            .count() as i64;
        let mails = smtp.mails();
        if delivered >= owed {
            let subjects: BTreeSet<String> = mails.iter().map(|m| m.subject()).collect();
            assert_eq!(delivered, owed);
            // Those the woken worker completed are the only ones sent twice (with one
            // Message-ID, so a mail client shows them once).
            assert_eq!(
                mails.len() as i64,
                owed + completed_after_wake,
                "mails {subjects:?}"
            );
            assert_eq!(subjects.len() as i64, owed, "a mail twice: {subjects:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{delivered} of {owed} owed mails delivered by the new worker; mails {}",
            mails.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Reads `<topic>.state` as a restoring successor does (`read_committed`), from its start,
/// keeping its place between calls.
struct CommittedState(rdkafka::consumer::BaseConsumer);

impl CommittedState {
    fn new(bootstrap: &str, topic: &str) -> Self {
        use rdkafka::consumer::Consumer;
        let reader: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "committed-state-reader")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition_offset(&format!("{topic}.state"), 0, rdkafka::Offset::Beginning)
            .unwrap();
        reader.assign(&list).unwrap();
        Self(reader)
    }

    /// Reads on until a committed record with `key`; false if none came within `limit`.
    fn until_key(
        &mut self,
        key: &incident_console::team::state::StateKey,
        limit: Duration,
    ) -> bool {
        use rdkafka::message::Message;
        let key = key.encode();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(Ok(message)) = self.0.poll(Duration::from_millis(100))
                && message.key() == Some(key.as_bytes())
            {
                return true;
            }
        }
        false
    }
    /// Waits for `key` on the state topic while the `active` worker holds the leadership.
    fn until_key_or(
        &mut self,
        key: &incident_console::team::state::StateKey,
        team: &mut Team,
        active: usize,
    ) -> Commit {
        const LIMIT: Duration = Duration::from_secs(8);
        // A stall that lapses the group session (6 s) shows as a lapsed lease (4 s) after it.
        const GRACE: Duration = Duration::from_secs(6 + 4);
        let started = Instant::now();
        loop {
            if self.until_key(key, Duration::from_millis(200)) {
                let after = started.elapsed();
                return if after < LIMIT {
                    Commit::Within(after)
                } else {
                    Commit::Late
                };
            }
            // Keeps every process's output read while waiting.
            team.until("outputs read", |_| true);
            if !team.outputs[active].active() {
                return Commit::Lost;
            }
            if started.elapsed() > LIMIT + GRACE {
                return Commit::Late;
            }
        }
    }
}

/// How the test's own escalation record reached the state topic.
enum Commit {
    /// Committed this long after it opened, within the 8 s allowed.
    Within(Duration),
    /// The worker that opened it lost the leadership first.
    Lost,
    /// Not committed within 8 s though its worker kept the leadership.
    Late,
}

/// The leadership moved on its own (`unforced`) before the kill: the scenario goes on with the
/// successor, at most twice.
fn lost_before_the_kill(team: &mut Team, round: usize, active: usize, unforced: &mut usize) {
    *unforced += 1;
    eprintln!(
        "round {round}: {} lost the leadership before the kill (its group session lapsed); \
         going on with its successor",
        team.processes[active].0
    );
    assert!(
        *unforced <= 2,
        "the leadership moved on its own {unforced} times"
    );
    team.until("a successor", |t| t.active_worker().is_some());
}

/// Every record on `<topic>.state`, oldest first.
fn state_records(bootstrap: &str, topic: &str) -> Vec<incident_console::team::state::StateRecord> {
    state_topic(bootstrap, topic).0
}

/// Every record on `<topic>.state`, oldest first, and the keys its tombstones deleted.
fn state_topic(
    bootstrap: &str,
    topic: &str,
) -> (Vec<incident_console::team::state::StateRecord>, Vec<String>) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let topic = format!("{topic}.state");
    let reader: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "state-reader")
        // The embedded broker keeps about 5 MiB per partition: when it drops the oldest
        // records under the reader, it reads on from the oldest left, not from the end.
        .set("auto.offset.reset", "earliest")
        // The log usually ends with a transaction marker, which no message carries.
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let (low, high) = reader
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .unwrap();
    eprintln!("{topic}: offsets {low} to {high}");
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(low))
        .unwrap();
    reader.assign(&list).unwrap();
    let mut records = Vec::new();
    let mut tombstones = Vec::new();
    let mut next = low;
    let deadline = Instant::now() + LONG;
    while next < high {
        assert!(Instant::now() < deadline, "state read to {next} of {high}");
        if let Some(message) = reader.poll(Duration::from_millis(100)) {
            let message = match message {
                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => break,
                // A dropped connection is reopened by the client, as the product's reader does.
                Err(error) if incident_console::kafka::is_transport(&error) => continue,
                message => message.unwrap(),
            };
            next = message.offset() + 1;
            if message.payload().is_none() {
                tombstones.extend(
                    message
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                );
            }
            records.extend(incident_console::team::state::StateRecord::decode(
                message.payload(),
            ));
        }
    }
    (records, tombstones)
}

/// Reads the active worker's output until it handled `events` events; returns the
/// escalations it holds open then (opened, neither acknowledged nor closed).
fn open_escalations(active: &Running, events: usize) -> BTreeSet<i64> {
    let mut open = BTreeSet::new();
    let mut handled = 0;
    let deadline = Instant::now() + LONG;
    while handled < events {
        let line = active
            .line_before(deadline)
            .unwrap_or_else(|| panic!("the worker handled {handled} of {events} events"));
        let text = |name: &str| field(&line, name).and_then(|v| v.as_str().map(str::to_string));
        match text("kind").as_deref() {
            Some("event") => handled += 1,
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
    }
    open
}

/// The next line `process` prints that `wanted` accepts (as JSON), bounded; `refused` lines
/// fail the test at once (what must not happen instead).
fn line_where(
    process: &Running,
    what: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
    refused: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + LONG;
    loop {
        let line = process
            .line_before(deadline)
            .unwrap_or_else(|| panic!("never printed: {what}"));
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        assert!(!refused(&record), "instead of {what}: {line}");
        if wanted(&record) {
            return record;
        }
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
        let log = dir.path().join(format!("{operator}.log"));
        console(&bootstrap, topic, &["--operator", operator], &log)
    };
    let mut alice = console("alice");
    let bob = console("bob");
    let deadline = Instant::now() + LONG;
    loop {
        let line = active
            .line_before(deadline)
            .expect("the worker becomes active");
        if field(&line, "kind").is_some_and(|k| k == "role")
            && field(&line, "active") == Some(true.into())
        {
            break;
        }
    }
    simulate(&bootstrap, topic, 300);
    let open = open_escalations(&active, 300);
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

/// `incident-console silences ARGS` in team mode against `topic`, as `operator`.
fn team_silences(
    bootstrap: &str,
    topic: &str,
    operator: &str,
    args: &[&str],
) -> std::process::Output {
    Command::new(BINARY)
        .args(["--role", "console", "-b", bootstrap, "-t", topic])
        .args(["--operator", operator, "--log-level", "warn", "silences"])
        .args(args)
        .env_remove("INCIDENT_CONSOLE_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .unwrap()
}

/// The ids `silences --json` lists, with who set each.
fn listed_silences(output: &std::process::Output) -> Vec<(String, String)> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let silence: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = |name: &str| silence[name].as_str().unwrap().to_string();
            (text("id"), text("created_by"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_set_at_one_console_shows_at_another_and_survives_a_kill_nine_takeover() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let topic = "team-silences";
    let (_broker, bootstrap) = start_broker(3, &[topic], &dir.path().join("broker.log"));
    let smtp = servers::SmtpSink::start().await;
    let config = worker_config(dir.path(), smtp.port);
    let mut workers = [
        worker(&config, "a", &bootstrap, topic),
        worker(&config, "b", &bootstrap, topic),
    ];
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
    let console = |operator: &str| {
        let log = dir.path().join(format!("{operator}.log"));
        console(&bootstrap, topic, &["--operator", operator], &log)
    };
    let mut alice = console("alice");
    let bob = console("bob");
    simulate(&bootstrap, topic, 300);
    let open = open_escalations(&workers[first], 300);
    let mut open = open.into_iter();
    let (snoozed, unacked) = (
        open.next().expect("the stream leaves escalations open"),
        open.next().expect("two open escalations"),
    );
    let mut ask = |line: String| {
        let stdin = alice.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    };
    let kind = |record: &serde_json::Value, kind: &str| record["kind"] == kind;

    // Alice snoozes one for an hour: bob sees it silenced, by alice, until when.
    let asked = chrono::Utc::now();
    ask(format!("snooze {snoozed} 60 database failover"));
    let silenced = line_where(
        &bob,
        "the silence at bob's console",
        |r| kind(r, "silenced") && r["matches"] == format!("incident {snoozed}"),
        |_| false,
    );
    assert_eq!(silenced["by"], "alice");
    assert_eq!(silenced["reason"], "database failover");
    let until: chrono::DateTime<chrono::Utc> = silenced["until"].as_str().unwrap().parse().unwrap();
    let minutes = (until - asked).num_seconds() as f64 / 60.0;
    assert!(
        (59.0..61.0).contains(&minutes),
        "silenced for {minutes} min"
    );
    let id = silenced["id"].as_str().unwrap().to_string();
    // The active worker holds it: journaled as set, as a standalone console journals it.
    line_where(
        &workers[first],
        "the silence set at the worker",
        |r| r["effect"] == "silence_set" && r["id"] == id.as_str(),
        |r| r["effect"] == "silence_rejected",
    );

    // Alice acknowledges another and takes it back: bob sees both.
    ask(format!("ack {unacked}"));
    line_where(
        &bob,
        "the ack at bob's console",
        |r| kind(r, "acknowledged") && r["incident_id"] == unacked,
        |_| false,
    );
    ask(format!("unack {unacked}"));
    line_where(
        &bob,
        "the un-acknowledgement at bob's console",
        |r| kind(r, "unacknowledged") && r["incident_id"] == unacked,
        |_| false,
    );
    // Junk on the commands topic is skipped, and what comes after it still applies (below).
    {
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        let commands = format!("{topic}.commands");
        for junk in [&b"not json"[..], br#"{"command":"reboot","args":{}}"#] {
            producer
                .send(
                    FutureRecord::<str, [u8]>::to(&commands).payload(junk),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    }

    // Every console's listing: from the state topic.
    let listed = listed_silences(&team_silences(&bootstrap, topic, "carol", &["--json"]));
    assert!(listed.contains(&(id.clone(), "alice".into())), "{listed:?}");

    // kill -9 the active worker: the standby takes over from the state topic.
    workers[first].child.kill().unwrap();
    workers[first].child.wait().unwrap();
    let deadline = Instant::now() + LONG;
    while seen[other].active() != Some(true) {
        assert!(
            Instant::now() < deadline,
            "no takeover; roles {:?}",
            seen[other].roles
        );
        drain(&workers[other], &mut seen[other], Duration::from_millis(20));
    }

    // An id the team does not hold is refused at once, nothing sent.
    let unknown = team_silences(&bootstrap, topic, "carol", &["end", "s99"]);
    assert_eq!(unknown.status.code(), Some(1));
    let error = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        error.contains(&format!("no silence s99 on {topic}.state")),
        "{error}"
    );

    // Carol ends it from the command line. The successor knows it only from the state topic:
    // a worker that had not restored it would refuse ("no silence").
    let ended = team_silences(&bootstrap, topic, "carol", &["end", &id]);
    assert!(
        ended.status.success(),
        "{}",
        String::from_utf8_lossy(&ended.stderr)
    );
    let said = String::from_utf8_lossy(&ended.stdout);
    assert!(
        said.starts_with(&format!("end of silence {id} sent on {topic}.commands")),
        "{said}"
    );
    let end = line_where(
        &workers[other],
        "the silence ended by the successor",
        |r| r["effect"] == "silence_ended" && r["id"] == id.as_str(),
        |r| r["effect"] == "silence_rejected",
    );
    assert_eq!(end["by"], "carol");
    line_where(
        &bob,
        "the end at bob's console",
        |r| kind(r, "silence_ended") && r["id"] == id.as_str(),
        |_| false,
    );
    // Deleted from the state topic (a tombstone), so no later worker restores it, and gone
    // from the listing.
    let (records, tombstones) = state_topic(&bootstrap, topic);
    assert!(tombstones.contains(&format!("s|{id}")), "{tombstones:?}");
    assert!(records.iter().any(|r| r.epoch == 1
        && matches!(&r.body, incident_console::team::state::StateBody::Silence { silence } if silence.id == id)));
    let listed = listed_silences(&team_silences(&bootstrap, topic, "carol", &["--json"]));
    assert!(
        !listed.iter().any(|(listed, _)| *listed == id),
        "{listed:?}"
    );
    // The junk was logged with its place and skipped by the first worker.
    let log =
        std::fs::read_to_string(dir.path().join(format!("{}.log", ["a", "b"][first]))).unwrap();
    assert!(
        log.contains("not a command record; skipped"),
        "junk not reported"
    );
    assert!(
        log.contains(&format!("{topic}.commands")),
        "junk's topic not named"
    );
}

/// Deliveries in flight per channel in the scenario: a debug build on a shared machine keeps
/// up with the stream's pages only with more than the shipped 4.
const CONCURRENCY: usize = 8;

/// Workers paging PagerDuty and a webhook (the receiver) at every escalation level, with
/// level timeouts short enough for escalations to step during the test (the escalation
/// policy is configuration; the group session and the lease keep their shipped lengths).
fn paging_config(dir: &std::path::Path, receiver: &servers::HttpReceiver) -> std::path::PathBuf {
    let mut config = incident_console::config::Config::built_in();
    for level in &mut config.escalation.levels {
        level.timeout_secs = 10;
    }
    config.escalation.repeat_interval_secs = 10;
    let notify = &mut config.notifications;
    // Only escalations page: nothing else has a channel.
    notify.routes.clear();
    notify.administrators.clear();
    notify.pagerduty.routing_key = Some("team-routing-key".into());
    notify.pagerduty.events_url = receiver.url("/pagerduty");
    notify.webhook.url = Some(receiver.url("/webhook"));
    notify.rate_limit.burst = 1_000_000;
    notify.rate_limit.per_minute = 1_000_000;
    notify.delivery.initial_backoff_ms = 100;
    notify.delivery.max_backoff_ms = 500;
    notify.delivery.concurrency = CONCURRENCY;
    let path = dir.join("paging.ron");
    servers::write_private_config(&config, &path);
    path
}

/// What one process of the team printed, as far as the scenario needs it.
#[derive(Default)]
struct Output {
    /// (partition, offset) of each event it printed.
    events: Vec<(i64, i64)>,
    /// (active, epoch, when) of each role record.
    roles: Vec<(bool, u64, Instant)>,
    /// (incident, change, level, caused by a message, when) of each escalation change.
    escalations: Vec<(i64, String, Option<i64>, bool, Instant)>,
    /// (incident, by, when) of each acknowledgement a console printed.
    acknowledged: Vec<(i64, String, Instant)>,
}

impl Output {
    fn read(&mut self, process: &Running) {
        while let Ok((now, line)) = process.lines.try_recv() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let int = |name: &str| value.get(name).and_then(|v| v.as_i64());
            let text = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
            match text("kind").as_deref() {
                Some("event") => self
                    .events
                    .push((int("partition").unwrap(), int("offset").unwrap())),
                Some("role") => self.roles.push((
                    value["active"].as_bool().unwrap(),
                    value["epoch"].as_u64().unwrap(),
                    now,
                )),
                Some("effect") if text("effect").as_deref() == Some("escalation") => {
                    self.escalations.push((
                        int("incident_id").unwrap(),
                        text("change").unwrap(),
                        int("to_level").or(int("level")),
                        int("offset").is_some(),
                        now,
                    ))
                }
                Some("acknowledged") => {
                    self.acknowledged
                        .push((int("incident_id").unwrap(), text("by").unwrap(), now))
                }
                _ => {}
            }
        }
    }

    fn active(&self) -> bool {
        self.roles.last().is_some_and(|(active, _, _)| *active)
    }
}

/// The team: workers (the killed ones stay in the list, dead) and two consoles.
struct Team {
    processes: Vec<(String, Running)>,
    outputs: Vec<Output>,
    receiver: servers::HttpReceiver,
    dir: std::path::PathBuf,
}

impl Team {
    /// Reads every process and the HTTP receiver until `done` holds, bounded.
    fn until(&mut self, what: &str, done: impl Fn(&Team) -> bool) {
        let deadline = Instant::now() + LONG * 2;
        loop {
            for ((_, process), output) in self.processes.iter().zip(&mut self.outputs) {
                output.read(process);
            }
            // The receiver's queue is bounded: emptied as the test goes.
            self.receiver.drain();
            if done(self) {
                return;
            }
            if Instant::now() > deadline {
                let mut report = format!("timed out waiting for {what}\n");
                for ((name, _), output) in self.processes.iter().zip(&self.outputs) {
                    report += &format!(
                        "{name}: {} events, roles {:?}\n",
                        output.events.len(),
                        output.roles
                    );
                    let log = std::fs::read_to_string(self.dir.join(format!("{name}.log")))
                        .unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    report += &format!("log tail:\n{}\n", tail.join("\n"));
                }
                panic!("{report}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn index(&self, name: &str) -> usize {
        self.processes.iter().position(|(n, _)| n == name).unwrap()
    }

    fn active_worker(&self) -> Option<usize> {
        (0..self.processes.len())
            .find(|i| self.processes[*i].0.starts_with("worker") && self.outputs[*i].active())
    }

    fn kill(&mut self, index: usize) -> Instant {
        let process = &mut self.processes[index].1;
        process.child.kill().unwrap();
        process.child.wait().unwrap();
        let killed = Instant::now();
        // Whatever it printed before it died still counts.
        self.outputs[index].read(&self.processes[index].1);
        self.outputs[index].roles.push((false, 0, killed));
        killed
    }

    /// The webhook requests by Idempotency-Key (the notification's dedup key).
    fn webhook_keys(&mut self) -> std::collections::BTreeMap<String, Vec<Instant>> {
        let mut keys = std::collections::BTreeMap::<String, Vec<Instant>>::new();
        for request in self.receiver.on("/webhook") {
            if request.answered == Some(200) {
                let key = request.headers["idempotency-key"].clone();
                keys.entry(key).or_default().push(request.at);
            }
        }
        keys
    }
}

/// A scenario's directory (logs, journals), kept for a look when the test fails.
struct KeptOnFailure(Option<tempfile::TempDir>);

impl KeptOnFailure {
    fn path(&self) -> &std::path::Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for KeptOnFailure {
    fn drop(&mut self) {
        // INCIDENT_CONSOLE_TEST_KEEP keeps them after a pass too, for reading.
        if (std::thread::panicking() || std::env::var_os("INCIDENT_CONSOLE_TEST_KEEP").is_some())
            && let Some(dir) = self.0.take()
        {
            eprintln!(
                "the scenario's logs and journals are kept in {}",
                dir.keep().display()
            );
        }
    }
}

// It failed 4 of 7 runs on 2026-11-30 before three faults it found were mended: a standby
// joining fenced the active worker for the rebalance; the fenced worker's runtime then hung
// in its shutdown (its records unread) while it held the leadership, so nobody took over; and
// a flood of pages that filled PagerDuty's queue dropped the acknowledge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_of_two_workers_and_two_consoles_survives_two_kills_without_paging_twice() {
    use std::io::Write;
    const EVENTS: usize = 20_000;
    let dir = KeptOnFailure(Some(tempfile::tempdir().unwrap()));
    let topic = "team-scenario";
    let (_broker, bootstrap) = start_broker(3, &[topic], &dir.path().join("broker.log"));
    let receiver = servers::HttpReceiver::start().await;
    let config = paging_config(dir.path(), &receiver);
    let console = |operator: &str| {
        let log = dir.path().join(format!("{operator}.log"));
        console(
            &bootstrap,
            topic,
            &["--from-beginning", "--operator", operator],
            &log,
        )
    };
    let mut team = Team {
        processes: vec![
            ("alice".into(), console("alice")),
            ("bob".into(), console("bob")),
            (
                "worker-a".into(),
                worker(&config, "worker-a", &bootstrap, topic),
            ),
            (
                "worker-b".into(),
                worker(&config, "worker-b", &bootstrap, topic),
            ),
        ],
        outputs: (0..4).map(|_| Output::default()).collect(),
        receiver,
        dir: dir.path().to_path_buf(),
    };
    team.until("an active worker", |t| t.active_worker().is_some());

    // The web app's stream, 400 events a second for 50 s, while the workers are killed.
    let mut stream = Command::new(BINARY)
        .args(["simulate", "-b", &bootstrap, "-t", topic, "--rate", "400"])
        .args(["--count", &EVENTS.to_string(), "--seed", "9"])
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let mut takeovers = Vec::new();
    // (the worker that took over, when it became active) for each kill.
    let mut successors = Vec::new();
    // Before each kill, an escalation of the test's own: (incident, when the killed worker
    // opened it). Its first step falls due (10 s later) while no worker is active.
    let mut own = Vec::new();
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let mut committed = CommittedState::new(&bootstrap, topic);
    // Handovers before a kill: a broker stalled past the 6 s group session (three brokers,
    // four consoles and the stream on two loaded cores did that once in CI) moves the
    // leadership on its own, also while the test's escalation waits to commit (CI, stop 30:
    // both workers' sessions lapsed together, 6 s after the first became active). The
    // scenario then goes on with the successor; that handover is a takeover like the others,
    // checked by everything below but the takeover times.
    let mut unforced = 0;
    // The test's own escalations sent: one per round, and one more for each round begun
    // again because the leadership moved on its own before the escalation had committed.
    let mut sent = 0;
    for round in 0..2 {
        let (active, incident, opened_at) = loop {
            let active = team.active_worker().unwrap();
            let before = team.outputs[active].events.len();
            team.until("events handled before the kill", |t| {
                t.outputs[active].events.len() >= before + 2_000 || !t.outputs[active].active()
            });
            if !team.outputs[active].active() {
                lost_before_the_kill(&mut team, round, active, &mut unforced);
                continue;
            }
            // Far above the simulated ones.
            let incident = 9_000_000 + sent;
            sent += 1;
            let event = incident_console::core::event::IncidentEvent::EscalationTriggered(
                incident_console::core::event::EscalationTriggered {
                    incident_id: incident,
                    title: "the test's own escalation".into(),
                    priority: incident_console::core::event::Priority::Critical,
                    level: 1,
                    reason: "opened just before a kill".into(),
                    triggered_by: "team-test".into(),
                    triggered_at: chrono::Utc::now(),
                },
            );
            producer
                .send(
                    rdkafka::producer::FutureRecord::<str, [u8]>::to(topic)
                        .payload(&serde_json::to_vec(&event).unwrap()),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
            let opened = |t: &Team| {
                t.outputs[active]
                    .escalations
                    .iter()
                    .find(|(id, change, ..)| *id == incident && change == "opened")
                    .map(|(.., at)| *at)
            };
            team.until("the test's escalation opened", |t| {
                opened(t).is_some() || !t.outputs[active].active()
            });
            let Some(opened_at) = opened(&team) else {
                lost_before_the_kill(&mut team, round, active, &mut unforced);
                continue;
            };
            // Killed once a successor would restore it: its record has committed.
            let key = incident_console::team::state::StateKey::Escalation(incident);
            match committed.until_key_or(&key, &mut team, active) {
                Commit::Within(after) => {
                    eprintln!("incident {incident}: opened, committed {after:?} later");
                    break (active, incident, opened_at);
                }
                // Its successor handles the event again and opens the escalation itself:
                // this round begins again with a new one.
                Commit::Lost => {
                    lost_before_the_kill(&mut team, round, active, &mut unforced);
                    continue;
                }
                Commit::Late => panic!(
                    "the escalation of incident {incident} not committed to the state topic \
                     within 8 s, and {} still active",
                    team.processes[active].0
                ),
            }
        };
        let killed_epoch = team.outputs[active].roles.last().unwrap().1;
        own.push((incident, opened_at));
        let killed = team.kill(active);
        team.until("a takeover", |t| t.active_worker().is_some());
        let successor = team.active_worker().unwrap();
        let became_active = team.outputs[successor].roles.last().unwrap().2;
        takeovers.push(became_active - killed);
        successors.push((successor, became_active, killed));
        // The leader epoch grows at every takeover.
        let epoch = team.outputs[successor].roles.last().unwrap().1;
        assert!(epoch > killed_epoch, "epoch {epoch} after {killed_epoch}");
        if successors.len() == 1 {
            // A new standby replaces the killed worker, for the second kill.
            let name = "worker-c".to_string();
            let process = worker(&config, &name, &bootstrap, topic);
            team.processes.push((name, process));
            team.outputs.push(Output::default());
            let standby = team.outputs.len() - 1;
            team.until("the new standby", |t| !t.outputs[standby].roles.is_empty());
        }
    }
    assert!(stream.wait().unwrap().success());
    eprintln!("takeovers after kill -9: {takeovers:?}");
    for ((name, _), output) in team.processes.iter().zip(&team.outputs) {
        let roles: Vec<(bool, u64)> = output.roles.iter().map(|(a, e, _)| (*a, *e)).collect();
        eprintln!("{name}: roles (active, epoch) {roles:?}");
    }
    // A standby joining (worker-c, started while the first successor was active) makes the
    // leader group rebalance: the active worker keeps acting through it, never fenced.
    for (successor, became_active, _) in &successors {
        let roles = &team.outputs[*successor].roles;
        // From its takeover on (it may have been active once before, in an unforced handover).
        let activations = roles
            .iter()
            .filter(|(active, _, at)| *active && at >= became_active)
            .count();
        assert_eq!(
            activations, 1,
            "{}: {roles:?}",
            team.processes[*successor].0
        );
    }
    for takeover in &takeovers {
        // The stated bound: session (6 s) + rebalance + lease wait (4 s) + restore.
        assert!(*takeover < Duration::from_secs(30), "{takeovers:?}");
    }

    // Every event handled by an active worker: printed by one, or (a killed worker's last
    // lines may be lost in its stdout buffer) covered by the progress it published on the
    // state topic, which its successor skips. Again by a successor only the ones the killed
    // worker had handled and not yet covered by a progress record at the kill.
    let workers: Vec<usize> = (0..team.processes.len())
        .filter(|i| team.processes[*i].0.starts_with("worker"))
        .collect();
    let last_epoch = team.outputs[team.active_worker().unwrap()]
        .roles
        .last()
        .unwrap()
        .1;
    let mut covered = std::collections::BTreeMap::<i64, i64>::new();
    for record in state_records(&bootstrap, topic) {
        if let incident_console::team::state::StateBody::Progress { offsets } = record.body
            && record.epoch < last_epoch
        {
            for (t, partition, offset) in offsets {
                if t == topic {
                    let entry = covered.entry(i64::from(partition)).or_insert(offset);
                    *entry = (*entry).max(offset);
                }
            }
        }
    }
    let handled = |t: &Team| -> BTreeSet<(i64, i64)> {
        let mut handled: BTreeSet<(i64, i64)> = workers
            .iter()
            .flat_map(|i| t.outputs[*i].events.iter().copied())
            .collect();
        for (partition, highest) in &covered {
            handled.extend((0..=*highest).map(|offset| (*partition, offset)));
        }
        handled
    };
    let events = EVENTS + usize::try_from(sent).unwrap();
    team.until("every event handled", |t| handled(t).len() >= events);
    assert_eq!(handled(&team).len(), events);
    let mut handled_by = std::collections::BTreeMap::<(i64, i64), Vec<usize>>::new();
    for i in &workers {
        for place in &team.outputs[*i].events {
            handled_by.entry(*place).or_default().push(*i);
        }
    }
    let again: Vec<_> = handled_by.iter().filter(|(_, w)| w.len() > 1).collect();
    for (place, by) in &again {
        // At least once: each kill can leave one more handler of an event, no more. A worker
        // killed just after taking over a backlog can be killed before the transaction that
        // holds its progress commits, so the next one handles from the same place again.
        assert!(by.len() <= 3, "{place:?} handled by {by:?}");
        for earlier in &by[..by.len() - 1] {
            let output = &team.outputs[*earlier];
            assert!(
                !output.active() && output.roles.last().unwrap().1 == 0,
                "{place:?} handled again though worker {earlier} was not killed ({by:?})"
            );
        }
    }
    eprintln!("{} events handled twice across the two kills", again.len());
    // Both consoles saw every event, each once.
    for name in ["alice", "bob"] {
        let index = team.index(name);
        team.until("the consoles' events", |t| {
            t.outputs[index].events.len() >= events
        });
        let seen: BTreeSet<(i64, i64)> = team.outputs[index].events.iter().copied().collect();
        assert_eq!(seen.len(), events, "{name}");
        assert_eq!(team.outputs[index].events.len(), events, "{name}: twice");
        // `<topic>.state` is written in transactions, so on Apache Kafka every commit leaves a
        // marker in its log: those gaps are no loss, and warned of once a second they were
        // noise in every console's log.
        let log = std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap();
        assert!(
            !log.contains("offsets skipped"),
            "{name} warned of gaps: {}",
            log.lines().find(|l| l.contains("offsets skipped")).unwrap()
        );
    }

    // An escalation step that fell due during a failover fires once, after the takeover:
    // the successor's first clock tick raises what the killed worker had opened.
    let raised_to_2 = |i: usize, incident: i64| -> Vec<(bool, Instant)> {
        team.outputs[i]
            .escalations
            .iter()
            .filter(|(id, change, level, ..)| {
                *id == incident && change == "raised" && *level == Some(2)
            })
            .map(|(_, _, _, by_message, at)| (*by_message, *at))
            .collect()
    };
    // (incident, level, kill) of each step that fell due during a failover: paged (below).
    let mut stepped = Vec::new();
    for ((incident, opened_at), (successor, became_active, killed)) in own.iter().zip(&successors) {
        stepped.push((*incident, Some(2), *killed));
        let due = *opened_at + Duration::from_secs(10);
        let by: Vec<(usize, Vec<(bool, Instant)>)> = workers
            .iter()
            .map(|i| (*i, raised_to_2(*i, *incident)))
            .filter(|(_, raised)| !raised.is_empty())
            .collect();
        let name = &team.processes[*successor].0;
        assert!(
            by.len() == 1 && by[0].0 == *successor && by[0].1.len() == 1,
            "incident {incident}: level 2 raised by {by:?}, not once by the successor {name}"
        );
        let (by_message, at) = by[0].1[0];
        assert!(
            !by_message,
            "incident {incident}: raised by a message, not the clock"
        );
        // Its first tick, once it is active and the step is due.
        let expected = (*became_active).max(due);
        assert!(
            at < expected + Duration::from_secs(2),
            "incident {incident}: raised {:?} after it was due and {name} active",
            at.saturating_duration_since(expected)
        );
        eprintln!(
            "incident {incident}: raised by {name} {:?} after it was active, {:?} after due",
            at.saturating_duration_since(*became_active),
            at.saturating_duration_since(due)
        );
    }

    // Acknowledged at alice's console: bob's shows it, PagerDuty gets one acknowledge.
    let open: Vec<i64> = {
        let mut state = std::collections::BTreeMap::<i64, bool>::new();
        // As the active worker printed them (a killed worker's last lines may be lost in
        // its stdout buffer).
        let active = team.active_worker().unwrap();
        for (incident, change, ..) in team.outputs[active].escalations.iter().cloned() {
            let open = !matches!(change.as_str(), "acknowledged" | "closed");
            state.insert(incident, open);
        }
        state
            .into_iter()
            .filter(|(_, open)| *open)
            .map(|(id, _)| id)
            .take(10)
            .collect()
    };
    assert!(!open.is_empty(), "the stream leaves escalations open");
    let (alice, bob) = (team.index("alice"), team.index("bob"));
    let mut propagation = Vec::new();
    for incident in &open {
        let asked = Instant::now();
        let stdin = team.processes[alice].1.child.stdin.as_mut().unwrap();
        writeln!(stdin, "ack {incident}").unwrap();
        stdin.flush().unwrap();
        team.until("bob sees the acknowledgement", |t| {
            t.outputs[bob]
                .acknowledged
                .iter()
                .any(|(id, by, _)| id == incident && by == "alice")
        });
        let (_, _, seen) = team.outputs[bob]
            .acknowledged
            .iter()
            .find(|(id, _, _)| id == incident)
            .unwrap();
        propagation.push(*seen - asked);
    }
    propagation.sort();
    eprintln!(
        "ack propagation alice -> worker -> bob over {} acks: median {:?}, worst {:?}",
        propagation.len(),
        propagation[propagation.len() / 2],
        propagation.last().unwrap()
    );
    // Counted in place: thousands of pages have arrived by now, and copying them every 20 ms
    // would take the CPU the workers need to send the rest.
    let acknowledges = |t: &mut Team, incident: i64| {
        let key = format!("incident-{incident}");
        t.receiver
            .drain()
            .iter()
            .filter(|r| {
                r.path == "/pagerduty"
                    && r.body["event_action"] == "acknowledge"
                    && r.body["dedup_key"] == key.as_str()
            })
            .count()
    };
    team.until("PagerDuty acknowledges", |_| true);
    for incident in &open {
        // Behind the pages the stream left queued (a debug build drains them slowly).
        let deadline = Instant::now() + LONG * 3;
        while acknowledges(&mut team, *incident) == 0 {
            let pages = team.receiver.drain().len();
            assert!(
                Instant::now() < deadline,
                "no acknowledge for {incident} ({pages} HTTP requests so far)"
            );
            // Keeps every process's output read while waiting.
            team.until("outputs read", |_| true);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // No notification twice: each dedup key reached the webhook once, except deliveries on
    // the wire (or sent and not yet marked) when their worker was killed or fenced, which the
    // successor sends again: at most `CONCURRENCY` per channel each time.
    // The last pages are in when the active worker's journal owes no delivery any more (it
    // marks one delivered after the webhook has answered).
    let last = team.processes[team.active_worker().unwrap()].0.clone();
    let deadline = Instant::now() + LONG;
    while deliveries(&team.dir, &last).contains_key("pending") {
        assert!(
            Instant::now() < deadline,
            "{last} still owes {:?}",
            deliveries(&team.dir, &last)
        );
        team.until("the last pages", |_| true);
        std::thread::sleep(Duration::from_millis(20));
    }
    let keys = team.webhook_keys();
    let twice: Vec<_> = keys.iter().filter(|(_, at)| at.len() > 1).collect();
    eprintln!(
        "{} notifications at the webhook, {} of them twice: {twice:?}",
        keys.len(),
        twice.len()
    );
    // When an active worker stopped acting: killed, or fenced.
    let interruptions: Vec<Instant> = workers
        .iter()
        .flat_map(|i| {
            let roles = &team.outputs[*i].roles;
            roles
                .windows(2)
                .filter(|w| w[0].0 && !w[1].0)
                .map(|w| w[1].2)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        twice.len() <= CONCURRENCY * interruptions.len(),
        "{} interruptions: {twice:?}",
        interruptions.len()
    );
    for (key, at) in &twice {
        for pair in at.windows(2) {
            // The interruption is seen here a little after it happened: a successor's first
            // send may come before the test read the killed or fenced worker's last line.
            assert!(
                interruptions
                    .iter()
                    .any(|i| pair[0] < *i + Duration::from_secs(1) && pair[1] > *i),
                "{key} sent again, not across a kill or fence: {at:?} {interruptions:?}"
            );
        }
    }
    for (incident, level, killed) in &stepped {
        let mine: Vec<(&String, &Vec<Instant>)> = keys
            .iter()
            .filter(|(key, _)| {
                key.starts_with(&format!("{incident}/escalation/"))
                    && level.is_some_and(|l| key.contains(&format!("/L{l}/")))
            })
            .collect();
        assert!(
            mine.iter().any(|(_, at)| at.iter().any(|a| a > killed)),
            "the step of {incident} to level {level:?} was not paged after the takeover: {mine:?}"
        );
    }
    for incident in &open {
        assert_eq!(
            acknowledges(&mut team, *incident),
            1,
            "PagerDuty acknowledges of incident {incident}"
        );
    }

    // What the active worker is done with is deleted from the state topic (compaction then
    // drops it on a real cluster): each escalation it closed, and the notifications it routed.
    let (records, tombstones) = state_topic(&bootstrap, topic);
    let deleted: BTreeSet<&str> = tombstones.iter().map(String::as_str).collect();
    let closed: Vec<String> = records
        .iter()
        .filter(|r| r.epoch == last_epoch)
        .filter_map(|r| match &r.body {
            incident_console::team::state::StateBody::Escalation {
                incident_id,
                current: None,
                ..
            } => Some(incident_id.to_string()),
            _ => None,
        })
        .collect();
    assert!(!closed.is_empty(), "the last worker closed escalations");
    let kept: Vec<&String> = closed
        .iter()
        .filter(|id| !deleted.contains(id.as_str()))
        .collect();
    assert!(kept.is_empty(), "closed and not deleted: {kept:?}");
    assert!(deleted.iter().any(|key| key.starts_with("n|")));
    eprintln!(
        "state topic: {} records, {} tombstones",
        records.len(),
        tombstones.len()
    );
}

/// `scripts/team-demo`, as the README shows it (here with a headless console): a broker, two
/// workers of which one becomes active, a stream, and a console that shows it; Ctrl-C stops
/// all of it.
#[test]
fn the_team_demo_script_starts_a_team_that_shows_events_and_stops_on_ctrl_c() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/team-demo");
    let mut child = Command::new(script)
        .arg("--no-tui")
        .env("INCIDENT_CONSOLE_BIN", BINARY)
        .env("TMPDIR", dir.path())
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .env_remove("INCIDENT_CONSOLE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group, as a terminal's foreground job: Ctrl-C reaches all of it.
        .process_group(0)
        .spawn()
        .unwrap();
    let group = child.id();
    let lines = lines_of(child.stdout.take().unwrap());
    let deadline = Instant::now() + LONG;
    let mut events = 0;
    let logs = dir.path().join("incident-console-team-demo");
    let active = || {
        ["worker-1", "worker-2"].iter().any(|name| {
            std::fs::read_to_string(logs.join(format!("{name}.jsonl")))
                .unwrap_or_default()
                .lines()
                .any(|line| line.contains(r#""kind":"role""#) && line.contains(r#""active":true"#))
        })
    };
    while events < 5 || !active() {
        assert!(
            Instant::now() < deadline,
            "{events} events at the console; an active worker: {}",
            active()
        );
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100))
            && field(&line, "kind").is_some_and(|k| k == "event")
        {
            events += 1;
        }
    }
    let status = Command::new("kill")
        .args(["-s", "INT", "--", &format!("-{group}")])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + LONG;
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Nothing of it is left running.
    let left = Command::new("pgrep")
        .args(["-g", &group.to_string()])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    eprintln!("team demo: {events} events shown, exit {exit:?}");
}
