//! `incident-console oncall` through the real binary: a weekly rotation with an override
//! (the docs/oncall.md example), DST in the printed handoff, and config mistakes named by
//! file and line.

use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_incident-console");

/// The worked example of docs/oncall.md, as a user writes it (only what differs).
const EXAMPLE: &str = r#"(
    oncall: (
        people: {
            "alice": (email: "alice@example.com", sms: "+15551230001", slack: "@alice"),
            "bob": (email: "bob@example.com", slack: "@bob"),
            "carol": (email: "carol@example.com"),
        },
        schedules: [
            (
                name: "primary",
                time_zone: "Europe/Berlin",
                layers: [(name: "weekly", people: ["alice", "bob"],
                          start: "2026-10-19T09:00", length: weekly)],
                overrides: [(person: "carol", start: "2026-11-03T09:00", end: "2026-11-04T09:00")],
            ),
            (
                name: "secondary",
                time_zone: "America/New_York",
                layers: [(people: ["carol", "bob"], start: "2026-10-19T09:00", length: daily)],
            ),
        ],
        levels: { 1: "primary", 2: "secondary" },
    ),
)
"#;

fn write(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn oncall(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BINARY)
        .arg("--config")
        .arg(config)
        .arg("oncall")
        .args(args)
        .output()
        .expect("binary runs")
}

fn json_lines(output: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

#[test]
fn oncall_json_says_who_until_when_and_who_is_next() {
    let (_dir, path) = write("config.ron", EXAMPLE);
    // Monday 2 November 12:00 UTC: week 3 of the rotation (alice), carol's override tomorrow.
    let lines = json_lines(&oncall(&path, &["--at", "2026-11-02T12:00:00Z", "--json"]));
    assert_eq!(
        lines,
        vec![
            serde_json::json!({"schedule": "primary", "on_call": "alice",
                               "until": "2026-11-03T08:00:00Z", "next": "carol"}),
            // New York: 09:00 EST (UTC-5) since the 1 November DST change.
            serde_json::json!({"schedule": "secondary", "on_call": "bob",
                               "until": "2026-11-02T14:00:00Z", "next": "carol"}),
        ]
    );
    // During the override, and the week after the handoff.
    let covered = json_lines(&oncall(&path, &["--at", "2026-11-03T10:00:00Z", "--json"]));
    assert_eq!(covered[0]["on_call"], "carol");
    assert_eq!(covered[0]["until"], "2026-11-04T08:00:00Z");
    assert_eq!(covered[0]["next"], "alice");
    let next_week = json_lines(&oncall(&path, &["--at", "2026-11-09T08:00:00Z", "--json"]));
    assert_eq!(next_week[0]["on_call"], "bob");
    // The first handoff was on 19 October at 09:00 summer time (07:00 UTC); that week
    // lasted 169 hours, to 09:00 winter time on the 26th (08:00 UTC).
    let first = json_lines(&oncall(&path, &["--at", "2026-10-19T06:59:59Z", "--json"]));
    assert_eq!(first[0]["on_call"], serde_json::Value::Null);
    assert_eq!(first[0]["until"], "2026-10-19T07:00:00Z");
    assert_eq!(first[0]["next"], "alice");
    let summer = json_lines(&oncall(&path, &["--at", "2026-10-20T12:00:00Z", "--json"]));
    assert_eq!(summer[0]["on_call"], "alice");
    assert_eq!(summer[0]["until"], "2026-10-26T08:00:00Z");
    assert_eq!(summer[0]["next"], "bob");
}

#[test]
fn oncall_prints_a_line_per_schedule_in_its_local_time() {
    let (_dir, path) = write("config.ron", EXAMPLE);
    let output = oncall(&path, &["--at", "2026-11-02T12:00:00Z"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        text,
        "primary: alice until Tue 2026-11-03 09:00 CET, then carol\n\
         secondary: bob until Mon 2026-11-02 09:00 EST, then carol\n"
    );
}

fn config_error(text: &str) -> String {
    let (_dir, path) = write("bad.ron", text);
    let output = oncall(&path, &["--json"]);
    assert!(!output.status.success(), "a bad config must not run");
    assert!(output.stdout.is_empty());
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn config_mistakes_are_named_by_file_and_line() {
    let unknown = config_error(&EXAMPLE.replace(
        r#"people: ["carol", "bob"]"#,
        r#"people: ["carol", "dave"]"#,
    ));
    assert!(
        unknown
            .contains("bad.ron:19: field `oncall.schedules.layers.people`: unknown person `dave`"),
        "{unknown}"
    );
    let zone = config_error(&EXAMPLE.replace("America/New_York", "America/Gotham"));
    assert!(
        zone.contains(
            "bad.ron:18: field `oncall.schedules.time_zone`: unknown time zone `America/Gotham`"
        ),
        "{zone}"
    );
    let overlapping = EXAMPLE.replace(
        r#"overrides: [(person: "carol", start: "2026-11-03T09:00", end: "2026-11-04T09:00")],"#,
        "overrides: [\n                    (person: \"carol\", start: \"2026-11-03T09:00\", end: \"2026-11-04T09:00\"),\n                    (person: \"bob\", start: \"2026-11-03T20:00\", end: \"2026-11-04T20:00\"),\n                ],",
    );
    let overlap = config_error(&overlapping);
    assert!(
        overlap.contains("bad.ron:16: field `oncall.schedules.overrides.start`: this override (bob from 2026-11-03T20:00) overlaps another (carol from 2026-11-03T09:00 to 2026-11-04T09:00)"),
        "{overlap}"
    );
    let window = config_error(
        "(\n    oncall: (\n        maintenance: [\n            (reason: \"failover\",\n             start: \"2026-12-06T03:00\",\n             end: \"2026-12-06T02:00\"),\n        ],\n    ),\n)\n",
    );
    assert!(
        window.contains(
            "bad.ron:6: field `oncall.maintenance.end`: the window ends before it starts"
        ),
        "{window}"
    );
}
