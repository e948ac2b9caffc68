//! A headless team console (`--role console --no-tui`) prints a line for every message it
//! observes: an `event` for what decodes and a `dead_letter` for what does not (the active
//! worker dead-letters it; the console only says so), as a standalone console does.

#[path = "support/processes.rs"]
mod processes;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use processes::{BINARY, Process, lines_of, start_broker};

#[test]
fn a_headless_team_console_prints_undecodable_messages_too() {
    let topic = "team-console-output";
    let (_broker, bootstrap) = start_broker(2, &[topic], Stdio::null());
    const COUNT: u64 = 60;
    let status = Command::new(BINARY)
        .args(["simulate", "-b", &bootstrap, "-t", topic, "--rate", "0"])
        .args([
            "--count",
            &COUNT.to_string(),
            "--seed",
            "5",
            "--poison",
            "0.3",
        ])
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = Command::new(BINARY)
        .args([
            "--role", "console", "--no-tui", "-b", &bootstrap, "-t", topic,
        ])
        .args(["--from-beginning", "--log-level", "warn"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let _console = Process(child);
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut events, mut dead_letters) = (0u64, Vec::new());
    while events + (dead_letters.len() as u64) < COUNT {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            panic!(
                "{events} events and {} dead letters in time",
                dead_letters.len()
            );
        };
        let record: serde_json::Value = serde_json::from_str(&line).unwrap();
        match record["kind"].as_str() {
            Some("event") => events += 1,
            Some("dead_letter") => dead_letters.push(record),
            _ => {}
        }
    }
    assert!(
        !dead_letters.is_empty(),
        "a 30 % poison ratio made no bad message"
    );
    for record in &dead_letters {
        assert_eq!(record["topic"], topic);
        assert_eq!(record["dead_letter_topic"], format!("{topic}.dlq"));
        assert!(
            record["offset"].is_i64() && record["reason"].is_string(),
            "{record}"
        );
    }
}
