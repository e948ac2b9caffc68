//! `replay FILE` against a real run: a live pipeline on the embedded broker writes its headless
//! output to a file; replaying that file on the virtual clock must give the same escalation
//! sequence, and another policy a different page count. Also the command line: a dry run
//! through the real binary, with a bad line reported as file:line and counted.

mod common;
#[path = "support/notify_servers.rs"]
mod servers;
mod tui_support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command as Process;

use common::*;
use incident_console::config::{Config, LevelConfig};
use incident_console::core::engine::Effect;
use incident_console::core::escalation::EscalationChange;
use incident_console::output::OutputRecord;
use incident_console::replay::{self, ReplayOptions};
use incident_console::status::Command;

const BIN: &str = env!("CARGO_BIN_EXE_incident-console");

/// A policy fast enough to watch live: on-call 2 s, then secondary 8 s, one repeat after 2 s.
/// The live console ticks once a second, so a live step may come up to a second after its
/// deadline; the secondary's 8 s leave incident 2's resolution (sent as soon as its raise is
/// seen) well clear of its repeat, live and replayed.
fn quick_policy(config: &mut Config) {
    config.escalation.levels = vec![
        LevelConfig {
            name: "on-call".into(),
            timeout_secs: 2,
        },
        LevelConfig {
            name: "secondary".into(),
            timeout_secs: 8,
        },
    ];
    config.escalation.repeat_interval_secs = 2;
    config.escalation.max_repeats = 1;
}

fn created(id: i64, priority: &str) -> Vec<u8> {
    format!(
        r#"{{"incident_id":{id},"title":"Incident {id}","priority":"{priority}","status":"open","category":"hardware","reported_by":"john.doe","assigned_to":"jane.smith","created_at":"{}","event_type":"incident_created"}}"#,
        chrono::Utc::now().to_rfc3339()
    )
    .into_bytes()
}

fn resolved(id: i64) -> Vec<u8> {
    format!(
        r#"{{"incident_id":{id},"title":"Incident {id}","priority":"critical","old_status":"open","new_status":"resolved","assigned_to":"jane.smith","updated_at":"{}","event_type":"status_updated"}}"#,
        chrono::Utc::now().to_rfc3339()
    )
    .into_bytes()
}

fn comment(id: i64) -> Vec<u8> {
    format!(
        r#"{{"incident_id":{id},"title":"Incident {id}","author":"bob","comment":"done","created_at":"{}","event_type":"comment_added"}}"#,
        chrono::Utc::now().to_rfc3339()
    )
    .into_bytes()
}

/// An escalation change without its timing: what must match between live and replay.
fn shape(change: &EscalationChange) -> String {
    match change {
        EscalationChange::Acknowledged {
            incident_id,
            level,
            by,
            ..
        } => format!("{incident_id} acknowledged L{level} by {by}"),
        other => {
            let mut value = serde_json::to_value(other).unwrap();
            value.as_object_mut().unwrap().remove("incident_id");
            value.to_string()
        }
    }
}

fn incident_of(change: &EscalationChange) -> i64 {
    match change {
        EscalationChange::Opened { incident_id, .. }
        | EscalationChange::Raised { incident_id, .. }
        | EscalationChange::Repeated { incident_id, .. }
        | EscalationChange::Exhausted { incident_id, .. }
        | EscalationChange::Acknowledged { incident_id, .. }
        | EscalationChange::Closed { incident_id, .. }
        | EscalationChange::Unacknowledged { incident_id, .. } => *incident_id,
    }
}

/// Per incident, its escalation changes in order (incidents interleave differently when two
/// deadlines fall in the same live tick; each incident's own sequence may not differ).
fn sequences<'a>(
    changes: impl Iterator<Item = &'a EscalationChange>,
) -> BTreeMap<i64, Vec<String>> {
    let mut map: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for change in changes {
        map.entry(incident_of(change))
            .or_default()
            .push(shape(change));
    }
    map
}

fn live_changes(records: &[OutputRecord]) -> impl Iterator<Item = &EscalationChange> {
    records.iter().filter_map(|r| match r {
        OutputRecord::Effect {
            effect: Effect::Escalation(change),
            ..
        } => Some(change),
        _ => None,
    })
}

fn has_change(records: &[OutputRecord], wanted: impl Fn(&EscalationChange) -> bool) -> bool {
    live_changes(records).any(wanted)
}

/// Runs the live pipeline: incident 1 (high) is never acknowledged and runs the policy to its
/// end; 2 (critical) is resolved after it reaches the secondary; 3 (high) is acknowledged by
/// the operator. Returns the headless output, one JSON line per record, as a file.
async fn live_run(
    config: &Config,
    dir: &std::path::Path,
) -> (std::path::PathBuf, Vec<OutputRecord>) {
    let producer = producer(config);
    let topic = config.kafka.topic.clone();
    let (handle, mut records) = spawn_runtime(config);
    let mut seen = Vec::new();
    send(&producer, &topic, "1", Some(&created(1, "high"))).await;
    send(&producer, &topic, "2", Some(&created(2, "critical"))).await;
    send(&producer, &topic, "3", Some(&created(3, "high"))).await;
    collect_until(&mut records, &mut seen, |seen| {
        has_change(seen, |c| {
            matches!(c, EscalationChange::Opened { incident_id: 3, .. })
        })
    })
    .await;
    handle
        .commands
        .send(Command::Acknowledge {
            incident_id: 3,
            by: "alice".into(),
        })
        .await
        .unwrap();
    collect_until(&mut records, &mut seen, |seen| {
        has_change(seen, |c| {
            matches!(
                c,
                EscalationChange::Raised {
                    incident_id: 2,
                    to_level: 2,
                    ..
                }
            )
        })
    })
    .await;
    send(&producer, &topic, "2", Some(&resolved(2))).await;
    collect_until(&mut records, &mut seen, |seen| {
        has_change(seen, |c| {
            matches!(c, EscalationChange::Exhausted { incident_id: 1, .. })
        })
    })
    .await;
    // A last event after everything settled: the replayed history reaches this far.
    send(&producer, &topic, "9", Some(&comment(9))).await;
    collect_until(&mut records, &mut seen, |seen| {
        seen.iter()
            .any(|r| matches!(r, OutputRecord::Event { incident_id: 9, .. }))
    })
    .await;
    handle.commands.send(Command::Shutdown).await.unwrap();
    handle.task.await.unwrap().unwrap();
    while let Some(record) = records.recv().await {
        seen.push(record);
    }
    // The headless writer's format, line by line.
    let path = dir.join("live.jsonl");
    let mut file = std::fs::File::create(&path).unwrap();
    for record in &seen {
        serde_json::to_writer(&mut file, record).unwrap();
        file.write_all(b"\n").unwrap();
    }
    (path, seen)
}

async fn replay_file(
    config: &Config,
    path: &std::path::Path,
) -> (Vec<serde_json::Value>, replay::Summary) {
    let mut out = Vec::new();
    let summary = replay::run(
        config,
        &ReplayOptions {
            file: path.to_path_buf(),
            dry_run: true,
            event_time: false,
        },
        &mut out,
    )
    .await
    .unwrap();
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, summary)
}

fn replayed_changes(lines: &[serde_json::Value]) -> Vec<EscalationChange> {
    // Only records the engine produced; parse them back through the live types' shape.
    lines
        .iter()
        .filter(|l| l["kind"] == "effect" && l["effect"] == "escalation")
        .map(|l| {
            let id = l["incident_id"].as_i64().unwrap();
            let level = l["level"].as_u64().unwrap_or(0) as u32;
            match l["change"].as_str().unwrap() {
                "opened" => EscalationChange::Opened {
                    incident_id: id,
                    level,
                    priority: serde_json::from_value(l["priority"].clone()).unwrap(),
                },
                "raised" => EscalationChange::Raised {
                    incident_id: id,
                    from_level: l["from_level"].as_u64().unwrap() as u32,
                    to_level: l["to_level"].as_u64().unwrap() as u32,
                    cause: match l["cause"].as_str().unwrap() {
                        "timeout" => incident_console::core::escalation::RaiseCause::Timeout,
                        _ => incident_console::core::escalation::RaiseCause::Triggered,
                    },
                },
                "repeated" => EscalationChange::Repeated {
                    incident_id: id,
                    level,
                    repeat: l["repeat"].as_u64().unwrap() as u32,
                },
                "exhausted" => EscalationChange::Exhausted {
                    incident_id: id,
                    level,
                },
                "acknowledged" => EscalationChange::Acknowledged {
                    incident_id: id,
                    level,
                    by: l["by"].as_str().unwrap().into(),
                    time_to_acknowledge_secs: l["time_to_acknowledge_secs"].as_f64().unwrap(),
                },
                "closed" => EscalationChange::Closed {
                    incident_id: id,
                    level,
                    acknowledged: l["acknowledged"].as_bool().unwrap(),
                },
                other => panic!("unknown change {other}"),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_a_live_run_escalates_the_same_way_and_another_policy_differently() {
    let Setup {
        broker: _broker,
        mut config,
        journal_dir,
    } = setup(1);
    quick_policy(&mut config);
    config.journal.enabled = false;
    let (path, live) = live_run(&config, journal_dir.path()).await;

    let live_sequences = sequences(live_changes(&live));
    assert_eq!(
        live_sequences[&1].len(),
        4,
        "opened, raised, repeated, exhausted: {live_sequences:?}"
    );

    let (lines, summary) = replay_file(&config, &path).await;
    let replayed = replayed_changes(&lines);
    assert_eq!(sequences(replayed.iter()), live_sequences);

    // The virtual clock: incident 1's raise is exactly one level-1 timeout after it opened.
    let at = |change: &str, id: i64| -> chrono::DateTime<chrono::Utc> {
        let line = lines
            .iter()
            .find(|l| l["change"] == change && l["incident_id"] == id)
            .unwrap_or_else(|| panic!("no {change} for {id}"));
        line["at"].as_str().unwrap().parse().unwrap()
    };
    assert_eq!(
        at("raised", 1) - at("opened", 1),
        chrono::TimeDelta::seconds(2)
    );
    assert_eq!(
        at("repeated", 1) - at("raised", 1),
        chrono::TimeDelta::seconds(8)
    );

    // The summary counts what happened.
    assert_eq!(summary.events, 5);
    assert_eq!(summary.incidents, 4);
    assert_eq!(summary.escalations, 3);
    assert_eq!(summary.acknowledged, 1);
    assert_eq!(summary.exhausted, 1);
    assert_eq!(summary.pages_per_level.get(&1), Some(&3));
    // Incident 1 raised and repeated, incident 2 raised: three pages to the secondary.
    assert_eq!(summary.pages_per_level.get(&2), Some(&3));
    assert_eq!(summary.time_to_resolve.count, 1);
    let live_ack = live_changes(&live)
        .find_map(|c| match c {
            EscalationChange::Acknowledged {
                time_to_acknowledge_secs,
                ..
            } => Some(*time_to_acknowledge_secs),
            _ => None,
        })
        .unwrap();
    let replay_ack = summary.time_to_acknowledge.p50_secs.unwrap();
    assert!(
        (replay_ack - live_ack).abs() < 0.002,
        "{replay_ack} vs {live_ack}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["kind"], "summary");
    assert_eq!(last["summary"]["pages_per_level"]["2"], 3);

    // What if level 1 had a minute? Nothing lasted that long: the secondary is never paged.
    let mut patient = config.clone();
    patient.escalation.levels[0].timeout_secs = 60;
    let (_, what_if) = replay_file(&patient, &path).await;
    assert_eq!(what_if.pages_per_level.get(&2), None, "{what_if:?}");
    assert_eq!(what_if.pages_per_level.get(&1), Some(&3));
    assert_eq!(what_if.exhausted, 0);
}

fn write(path: &std::path::Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn producer_line(id: i64, priority: &str, at: &str) -> String {
    format!(
        r#"{{"incident_id":{id},"title":"Disk full on db-{id}","priority":"{priority}","status":"open","category":"storage","reported_by":"monitoring","assigned_to":null,"created_at":"{at}","event_type":"incident_created"}}"#
    )
}

fn resolve_line(id: i64, at: &str) -> String {
    format!(
        r#"{{"incident_id":{id},"title":"Disk full on db-{id}","priority":"high","old_status":"open","new_status":"resolved","assigned_to":"jane.smith","updated_at":"{at}","event_type":"status_updated"}}"#
    )
}

#[test]
fn the_command_line_dry_run_prints_notifications_and_a_summary_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("night.jsonl");
    write(
        &history,
        &[
            producer_line(1, "high", "2024-03-01T02:00:00Z"),
            "{\"incident_id\": 2, \"event_type\": \"incident_created\"".into(),
            producer_line(2, "critical", "2024-03-01T02:10:00Z"),
            resolve_line(1, "2024-03-01T02:12:00Z"),
            resolve_line(2, "2024-03-01T02:14:00Z"),
        ],
    );
    let config = dir.path().join("config.ron");
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.ron")).unwrap();
    let edit = |text: &str, from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        text.replacen(from, to, 1)
    };
    let text = edit(&shipped, "smtp_host: None,", "smtp_host: \"127.0.0.1\",");
    let text = edit(
        &text,
        "administrators: [],",
        "administrators: [\"ops@example.com\"],",
    );
    let text = edit(
        &text,
        "(level: 1, users: [], emails: [], channels: [email, slack, pagerduty, webhook, sms]),",
        "(level: 1, users: [], emails: [\"oncall@example.com\"], channels: [email]),",
    );
    std::fs::write(&config, text).unwrap();
    let run = |extra: &[&str]| {
        let output = Process::new(BIN)
            .args(["replay", history.to_str().unwrap(), "--dry-run"])
            .args(extra)
            .env_remove("INCIDENT_CONSOLE_CONFIG")
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, String::from_utf8(output.stderr).unwrap())
    };

    let (lines, stderr) = run(&["--config", config.to_str().unwrap()]);
    assert!(
        stderr.contains(&format!("{}:2:", history.display())),
        "{stderr}"
    );
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["bad_lines"], 1);
    assert_eq!(summary["events"], 4);
    // Incident 1 (high) opened at 02:00, reached level 2 at 02:05 and was resolved at 02:12;
    // incident 2 (critical) opened at 02:10 and was resolved before its 02:15 timeout.
    assert_eq!(summary["pages_per_level"]["1"], 2);
    assert_eq!(summary["pages_per_level"]["2"], 1);
    assert_eq!(summary["time_to_resolve"]["max_secs"], 720.0);
    let notify: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["kind"] == "effect" && l["effect"] == "notify")
        .collect();
    let page = notify
        .iter()
        .find(|n| n["notification"] == "escalation" && n["incident_id"] == 1)
        .unwrap();
    assert_eq!(page["at"], "2024-03-01T02:00:00Z");
    assert_eq!(
        page["would_send"],
        serde_json::json!([{"channel": "email", "recipient": "oncall@example.com"}])
    );
    assert!(
        summary["notifications_per_channel"]["email"]
            .as_u64()
            .unwrap()
            >= 4
    );

    // The same history with a 15-minute first level: nobody beyond level 1.
    let patient = dir.path().join("patient.ron");
    std::fs::write(
        &patient,
        edit(
            &shipped,
            "(name: \"on-call\", timeout_secs: 300)",
            "(name: \"on-call\", timeout_secs: 900)",
        ),
    )
    .unwrap();
    let (lines, _) = run(&["--config", patient.to_str().unwrap()]);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["pages_per_level"]["1"], 2);
    assert!(summary["pages_per_level"].get("2").is_none(), "{summary}");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let output = Process::new(BIN)
        .args(["replay", "/nonexistent/history.jsonl", "--dry-run"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("/nonexistent/history.jsonl"), "{stderr}");
}

/// Ten comments per partition, stamped a second apart from `base` (milliseconds).
async fn produce_stamped(config: &Config, partitions: i32, base: i64) {
    use rdkafka::producer::FutureRecord;
    let producer = producer(config);
    for partition in 0..partitions {
        for i in 0..10i64 {
            let at = chrono::DateTime::from_timestamp_millis(base + i * 1000).unwrap();
            let payload = format!(
                r#"{{"incident_id":{},"title":"Incident","author":"bob","comment":"note {i}","created_at":"{}","event_type":"comment_added"}}"#,
                100 + i64::from(partition),
                at.to_rfc3339()
            );
            let record = FutureRecord::to(&config.kafka.topic)
                .partition(partition)
                .key("k")
                .timestamp(base + i * 1000)
                .payload(payload.as_bytes());
            let (p, offset) = producer
                .send(record, std::time::Duration::from_secs(10))
                .await
                .map(|d| (d.partition, d.offset))
                .expect("delivered");
            assert_eq!((p, offset), (partition, i));
        }
    }
}

/// Runs the binary headless against the embedded broker; returns (partition, offset) of each
/// handled event and stderr. The run must end by itself, with status 0.
fn run_range(config: &Config, home: &std::path::Path, args: &[&str]) -> (Vec<(i64, i64)>, String) {
    let mut child = Process::new(BIN)
        .args([
            "--no-tui",
            "-b",
            &config.kafka.brokers,
            "-t",
            &config.kafka.topic,
            "-g",
            &config.kafka.group_id,
        ])
        .args(args)
        .env_remove("INCIDENT_CONSOLE_CONFIG")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("XDG_DATA_HOME", home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!(
                "the replay did not stop by itself: {:?}",
                child.wait_with_output()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    let places = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["kind"] == "event")
        .map(|l| {
            (
                l["partition"].as_i64().unwrap(),
                l["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    (places, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_from_kafka_starts_at_the_time_stops_at_the_end_and_commits_nothing() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let Setup {
        broker: _broker,
        config,
        journal_dir,
    } = setup(2);
    // An hour ago: a real broker deletes segments stamped past its retention (7 days).
    let base = (chrono::Utc::now().timestamp() - 3600) * 1000;
    produce_stamped(&config, 2, base).await;
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(base + ms)
            .unwrap()
            .to_rfc3339()
    };
    let home = journal_dir.path().to_path_buf();
    let (from_time, until_time) = (time(5_500), time(7_500));
    let config_for_thread = config.clone();
    let (places, stderr) = tokio::task::spawn_blocking(move || {
        run_range(
            &config_for_thread,
            &home,
            &["--from-time", &from_time, "--until-time", &until_time],
        )
    })
    .await
    .unwrap();
    let mut sorted = places.clone();
    sorted.sort_unstable();
    // Stamped +6 s and +7 s: offsets 6 and 7 in each partition, nothing before or after.
    assert_eq!(sorted, [(0, 6), (0, 7), (1, 6), (1, 7)], "{stderr}");
    // Apache Kafka finds the first offset at the time itself (ListOffsets by timestamp); the
    // embedded broker cannot, and the consumer reads from the start and skips by timestamp.
    let looked_up = stderr.matches("start=6").count() == 2
        && stderr.matches("scan_from_time=false").count() == 2;
    let scanned = stderr.matches("scan_from_time=true").count() == 2;
    if common::apache_kafka::from_env().is_some() {
        assert!(looked_up, "{stderr}");
    } else {
        assert!(scanned, "{stderr}");
    }

    // Offsets: until the end of partition 0, and from an offset in partition 1 only.
    let home = journal_dir.path().to_path_buf();
    let config_for_thread = config.clone();
    let (places, _) = tokio::task::spawn_blocking(move || {
        run_range(
            &config_for_thread,
            &home,
            &["--from-offset", "1:8", "--until-offset", "1:10"],
        )
    })
    .await
    .unwrap();
    assert_eq!(places, [(1, 8), (1, 9)]);

    // Neither the real group nor the replay's own group has a committed offset.
    for group in [
        config.kafka.group_id.clone(),
        format!("{}-replay", config.kafka.group_id),
    ] {
        let consumer: BaseConsumer =
            incident_console::kafka::consumer::client_config(&config, true)
                .set("group.id", &group)
                .create()
                .unwrap();
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition(&config.kafka.topic, 0);
        list.add_partition(&config.kafka.topic, 1);
        let committed = consumer
            .committed_offsets(list, std::time::Duration::from_secs(10))
            .unwrap();
        for element in committed.elements() {
            assert_eq!(element.offset(), rdkafka::Offset::Invalid, "{group}");
        }
    }
}

#[test]
fn bad_range_flags_name_the_flag() {
    for (args, needle) in [
        (vec!["--from-offset", "zero:1"], "--from-offset \"zero:1\""),
        (
            vec!["--from-time", "yesterday"],
            "--from-time \"yesterday\"",
        ),
        (
            vec!["--until-offset", "0:5", "--until-offset", "0:6"],
            "partition 0 given twice",
        ),
    ] {
        let output = Process::new(BIN)
            .arg("--no-tui")
            .args(&args)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// The README's worked postmortem: these figures are printed there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_postmortem_figures_hold() {
    let root = env!("CARGO_MANIFEST_DIR");
    let history =
        std::path::PathBuf::from(format!("{root}/assets/examples/night-2024-03-01.jsonl"));
    let load = |name: &str| {
        let path = format!("{root}/assets/examples/{name}");
        Config::load(
            Some(std::path::Path::new(&path)),
            incident_console::tui::CONFIG_CHECKS,
        )
        .unwrap()
        .0
    };
    let (_, summary) = replay_file(&load("postmortem.ron"), &history).await;
    assert_eq!(summary.pages_per_level, BTreeMap::from([(1, 4), (2, 3)]));
    assert_eq!(summary.acknowledged, 4);
    assert_eq!(summary.time_to_acknowledge.p50_secs, Some(360.0));
    assert_eq!(summary.time_to_resolve.max_secs, Some(3300.0));
    assert_eq!(summary.notifications_per_channel.get("email"), Some(&35));
    assert_eq!(summary.bad_lines, 0);
    let (_, what_if) = replay_file(&load("what-if.ron"), &history).await;
    assert_eq!(what_if.pages_per_level, BTreeMap::from([(1, 4), (2, 1)]));

    // The same history's events as a replay of Kafka would print them: received when
    // replayed, all at once, and no operator acknowledging. With --event-time the producer's
    // clock drives it again.
    let dir = tempfile::tempdir().unwrap();
    let recorded = dir.path().join("recorded.jsonl");
    let now = chrono::Utc::now().to_rfc3339();
    let events = |text: &str| -> Vec<String> {
        text.lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|value| value.get("kind").is_none())
            .map(|value| {
                serde_json::json!({"kind": "event", "topic": "t", "partition": 0, "offset": 0,
                    "received_at": now, "data": value})
                .to_string()
            })
            .collect()
    };
    let lines = events(&std::fs::read_to_string(&history).unwrap());
    write(&recorded, &lines);
    let config = load("postmortem.ron");
    let (_, squashed) = replay_file(&config, &recorded).await;
    assert_eq!(squashed.pages_per_level.get(&2), None, "no time passed");
    assert_eq!(squashed.pages_per_level.get(&1), Some(&4));
    let mut out = Vec::new();
    let by_event_time = replay::run(
        &config,
        &ReplayOptions {
            file: recorded,
            dry_run: true,
            event_time: true,
        },
        &mut out,
    )
    .await
    .unwrap();
    // Nobody acknowledges in this history: every escalation climbs until its resolution.
    assert_eq!(
        by_event_time.pages_per_level,
        BTreeMap::from([(1, 4), (2, 4), (3, 8)])
    );
}

/// Without --dry-run the notifications go out through the configured channels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dry_run_the_notifications_are_sent() {
    let mut receiver = servers::HttpReceiver::start().await;
    let mut config = Config::built_in();
    config.notifications.webhook.url = Some(receiver.url("/hook"));
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("h.jsonl");
    write(
        &history,
        &[
            producer_line(1, "high", "2024-03-01T02:00:00Z"),
            resolve_line(1, "2024-03-01T02:07:00Z"),
        ],
    );
    let mut out = Vec::new();
    let summary = replay::run(
        &config,
        &ReplayOptions {
            file: history,
            dry_run: false,
            event_time: false,
        },
        &mut out,
    )
    .await
    .unwrap();
    // The shipped routes and levels put everything on the webhook: created, the level 1 and
    // level 2 pages, the status change to the assignee, and the resolution to administrators
    // and to the paged level, which the webhook gets once (one dedup key per channel).
    assert_eq!(
        summary.notifications.values().sum::<u64>(),
        6,
        "{summary:?}"
    );
    let received = receiver.wait_ok("/hook", 5).await;
    let kinds: Vec<&str> = received
        .iter()
        .map(|r| r.body["notification"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "escalation").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(summary.notifications_per_channel.get("webhook"), Some(&5));
    assert_eq!(receiver.drain().len(), 5, "nothing sent twice");
    assert!(summary.failed_per_channel.is_empty());
}

/// In the console a replay from Kafka is marked in the header and cannot acknowledge.
#[test]
fn the_console_marks_a_replay_and_refuses_to_acknowledge() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use incident_console::tui::{Overlay, Pane};
    let press = |app: &mut incident_console::tui::App, code| {
        app.handle_key(KeyEvent::new(code, KeyModifiers::NONE))
    };
    for replay in [false, true] {
        let mut app = tui_support::story_app().with_replay(replay);
        while app.focus() != Pane::Escalations {
            press(&mut app, KeyCode::Tab);
        }
        let command = press(&mut app, KeyCode::Char('a'));
        assert!(command.is_none());
        let asked = matches!(app.overlay(), Some(Overlay::ConfirmAcknowledge { .. }));
        assert_eq!(asked, !replay, "replay {replay}");
        let screen = tui_support::text(
            tui_support::render_screen(&mut app, 120, 34)
                .backend()
                .buffer(),
        );
        assert_eq!(screen.contains("REPLAY · read-only"), replay);
        if replay {
            let message = app.message().map(|m| m.text.clone()).unwrap_or_default();
            assert!(message.contains("disabled in a replay"), "{message}");
        }
    }
}
