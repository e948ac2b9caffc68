//! The command-line contract, exercised through the real binary: `broker`, `simulate`,
//! headless consumption with JSON lines, `--demo --no-tui`, signals, and config errors.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_incident-console");
const DEADLINE: Duration = Duration::from_secs(90);

/// A child process whose stdout lines arrive on a channel, killed if the test fails.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BINARY)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("binary starts");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    fn next_line(&self, deadline: Instant) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no output line in time: {e}"))
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Remaining stdout after the process exited.
    fn rest(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[test]
fn broker_simulate_and_headless_consume_over_real_tcp() {
    let mut broker = Running::start(&["broker", "--partitions", "2", "-t", "cli-topic"]);
    let first = broker.next_line(Instant::now() + DEADLINE);
    let bootstrap = first
        .strip_prefix("bootstrap.servers=")
        .unwrap_or_else(|| panic!("first line was {first:?}"))
        .to_string();
    assert!(bootstrap.starts_with("127.0.0.1:"), "{bootstrap}");

    let simulate = Command::new(BINARY)
        .args(["simulate", "-b", &bootstrap, "-t", "cli-topic"])
        .args([
            "--rate", "0", "--count", "40", "--seed", "3", "--poison", "0.1",
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(simulate.success());
    let journal_dir = tempfile::tempdir().unwrap();
    let journal = journal_dir.path().join("journal.sqlite3");

    let mut consumer = Running::start(&[
        "--no-tui",
        "-b",
        &bootstrap,
        "-t",
        "cli-topic",
        "-g",
        "cli-group",
        "-X",
        "auto.offset.reset=earliest",
        "--log-level",
        "warn",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    let deadline = Instant::now() + DEADLINE;
    let mut handled = 0;
    let mut dead = 0;
    while handled + dead < 40 {
        let record = json(&consumer.next_line(deadline));
        match record["kind"].as_str() {
            Some("event") => {
                handled += 1;
                assert!(record["event_type"].is_string());
                assert!(record["incident_id"].is_i64());
                assert!(record["partition"].is_i64());
                assert!(record["offset"].is_i64());
            }
            Some("dead_letter") => {
                dead += 1;
                assert!(record["reason"].is_string());
                assert!(record["offset"].is_i64());
            }
            Some("effect") => assert!(record["effect"].is_string()),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    assert!(dead > 0, "the simulator was asked for poison messages");
    consumer.signal("TERM");
    let status = consumer.wait();
    assert_eq!(status.code(), Some(0), "SIGTERM is a graceful exit");

    broker.signal("INT");
    assert_eq!(broker.wait().code(), Some(0));
}

#[test]
fn demo_headless_shows_all_six_types_and_exits_zero_on_ctrl_c() {
    let mut demo = Running::start(&[
        "--demo",
        "--no-tui",
        "--demo-rate",
        "300",
        "--demo-poison",
        "0.02",
    ]);
    let deadline = Instant::now() + DEADLINE;
    let mut types = std::collections::BTreeSet::new();
    let mut effects = std::collections::BTreeSet::new();
    let mut dead_letters = 0;
    while types.len() < 6 || dead_letters == 0 || effects.len() < 3 {
        let record = json(&demo.next_line(deadline));
        match record["kind"].as_str().unwrap() {
            "event" => {
                types.insert(record["event_type"].as_str().unwrap().to_string());
            }
            "effect" => {
                effects.insert(record["effect"].as_str().unwrap().to_string());
            }
            "dead_letter" => dead_letters += 1,
            other => panic!("unexpected kind {other}"),
        }
    }
    demo.signal("INT");
    let status = demo.wait();
    assert_eq!(status.code(), Some(0));
    for line in demo.rest() {
        json(&line);
    }
}

#[test]
fn a_bad_config_fails_fast_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.ron");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.ron"))
        .unwrap()
        .replace("poll_timeout_ms: 1000", "poll_timeout_ms: 0");
    std::fs::write(&path, &text).unwrap();
    let output = Command::new(BINARY)
        .args(["--no-tui", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = text
        .lines()
        .position(|l| l.contains("poll_timeout_ms: 0"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!(
            "bad.ron:{line}: field `kafka.poll_timeout_ms`: must be more than 0"
        )),
        "{stderr}"
    );
}

#[test]
fn print_config_redacts_secrets_from_the_environment() {
    let output = Command::new(BINARY)
        .args(["--print-config", "-X", "sasl.username=svc"])
        .env("KAFKA_SASL_PASSWORD", "hunter2-secret")
        .env("INCIDENT_CONSOLE_BROKERS", "kafka-9:9092")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("hunter2-secret"), "{stdout}");
    assert!(stdout.contains("<redacted>"));
    assert!(stdout.contains("kafka-9:9092"));
    assert!(stdout.contains("\"sasl.username\": \"svc\""), "{stdout}");
}

#[test]
fn role_flag_overrides_the_config_and_bad_roles_are_refused() {
    let printed = |args: &[&str]| {
        let output = Command::new(BINARY)
            .args(args)
            .arg("--print-config")
            .env_remove("INCIDENT_CONSOLE_CONFIG")
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(printed(&[]).contains("role: standalone"));
    assert!(printed(&["--role", "worker"]).contains("role: worker"));
    assert!(printed(&["--role", "console"]).contains("role: console"));
    let refused = Command::new(BINARY)
        .args(["--role", "leader", "--print-config"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--role"));
}

/// `--demo --demo-rate 0`: the simulator at full speed must not outrun what the embedded broker
/// keeps. Every offset of every partition arrives, in order, with none skipped.
#[test]
fn demo_at_full_rate_delivers_every_offset() {
    const COUNT: u64 = 150_000;
    let count = COUNT.to_string();
    let mut demo = Running::start(&[
        "--demo",
        "--no-tui",
        "--demo-rate",
        "0",
        "--demo-count",
        &count,
    ]);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut next: std::collections::BTreeMap<i64, i64> = Default::default();
    let mut seen = 0u64;
    while seen < COUNT {
        let line = demo.next_line(deadline);
        // Only the per-message records; effects repeat their source's offset.
        if !(line.starts_with(r#"{"kind":"event""#) || line.starts_with(r#"{"kind":"dead_letter""#))
        {
            continue;
        }
        let record = json(&line);
        let partition = record["partition"].as_i64().unwrap();
        let offset = record["offset"].as_i64().unwrap();
        let expected = next.entry(partition).or_insert(0);
        assert_eq!(
            offset, *expected,
            "partition {partition}: offset {offset} after {seen} messages, expected {expected}"
        );
        *expected += 1;
        seen += 1;
    }
    assert_eq!(next.values().sum::<i64>() as u64, COUNT);
    demo.signal("INT");
    assert_eq!(demo.wait().code(), Some(0));
}
