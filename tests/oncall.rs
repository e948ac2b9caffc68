//! `incident-console oncall` through the real binary: a weekly rotation with an override
//! (the docs/oncall.md example), DST in the printed handoff, and config mistakes named by
//! file and line.

use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_incident-console");

const DOC: &str = include_str!("../docs/oncall.md");

/// The first block of `language` in docs/oncall.md after the line containing `after`.
fn doc_block(after: &str, language: &str) -> String {
    let start = DOC.find(after).expect("the doc has the section");
    let fence = format!("```{language}\n");
    let open = DOC[start..].find(&fence).expect("a block") + start + fence.len();
    let close = DOC[open..].find("```").expect("closed") + open;
    DOC[open..close].to_string()
}

/// The worked example of docs/oncall.md, as a user writes it (only what differs).
fn example() -> String {
    doc_block("## A weekly rotation with an override", "ron")
}

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
    let (_dir, path) = write("config.ron", &example());
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
    let (_dir, path) = write("config.ron", &example());
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
    let unknown = config_error(&example().replace(
        r#"people: ["carol", "bob"]"#,
        r#"people: ["carol", "dave"]"#,
    ));
    assert!(
        unknown
            .contains("bad.ron:19: field `oncall.schedules.layers.people`: unknown person `dave`"),
        "{unknown}"
    );
    let zone = config_error(&example().replace("America/New_York", "America/Gotham"));
    assert!(
        zone.contains(
            "bad.ron:18: field `oncall.schedules.time_zone`: unknown time zone `America/Gotham`"
        ),
        "{zone}"
    );
    let overlapping = example().replace(
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

#[test]
fn the_commands_in_docs_oncall_md_print_what_it_shows() {
    let (_dir, path) = write("config.ron", &example());
    let block = doc_block("Who is on call, until when", "sh");
    let mut runs: Vec<(Vec<String>, String)> = Vec::new();
    for line in block.lines() {
        match line.strip_prefix("$ incident-console oncall") {
            Some(args) => runs.push((
                args.split_whitespace().map(str::to_string).collect(),
                String::new(),
            )),
            None => {
                let (_, expected) = runs.last_mut().expect("a command first");
                expected.push_str(line);
                expected.push('\n');
            }
        }
    }
    assert_eq!(runs.len(), 2);
    for (args, expected) in runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = oncall(&path, &args);
        assert!(output.status.success());
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            expected,
            "{args:?}"
        );
    }
    // And the error it quotes, for the same file with a person nobody defined.
    let shown = doc_block("Mistakes stop the start", "text");
    let shown = shown.trim().strip_prefix("incident-console: ").unwrap();
    let error = config_error(&example().replace(
        r#"people: ["carol", "bob"]"#,
        r#"people: ["carol", "dave"]"#,
    ));
    assert!(error.contains(shown), "{error}\nvs the doc:\n{shown}");
}

#[test]
fn the_settings_shown_in_docs_oncall_md_are_valid_configurations() {
    use incident_console::config::Config;
    let parse = |section: &str| {
        let text = format!("(\n{}\n)", doc_block(section, "ron").trim_end());
        Config::parse(&text, "docs/oncall.md").unwrap_or_else(|e| panic!("{section}: {e}"))
    };
    let planned = parse("## A planned maintenance window");
    let windows = planned.oncall.windows().unwrap();
    assert_eq!(windows.len(), 2);
    // 02:00 in Berlin in December is 01:00 UTC; the weekly one comes back on the 13th.
    assert!(windows[0].active("2026-12-06T01:30:00Z".parse().unwrap()));
    assert!(!windows[0].active("2026-12-06T02:00:00Z".parse().unwrap()));
    assert!(windows[1].active("2026-12-13T03:30:00Z".parse().unwrap()));
    let ack = parse("## Acknowledgement timeout");
    assert_eq!(ack.escalation.ack_timeout_secs, Some(14_400));
    assert_eq!(
        ack.engine_config().oncall.ack_timeout,
        Some(std::time::Duration::from_secs(14_400))
    );
    let silent = parse("## A silent source");
    assert_eq!(silent.monitoring.alerts.source_silent_secs, Some(900));
    // Off unless written.
    let shipped = Config::built_in();
    assert_eq!(shipped.escalation.ack_timeout_secs, None);
    assert_eq!(shipped.monitoring.alerts.source_silent_secs, None);
    assert!(shipped.oncall.schedules.is_empty() && shipped.oncall.maintenance.is_empty());
}

#[test]
fn replay_honours_schedules_and_windows_on_the_historys_clock() {
    let config = r#"(
    oncall: (
        people: { "alice": (email: "alice@example.com") },
        schedules: [(name: "primary",
                     layers: [(people: ["alice"], start: "2026-01-05T09:00", length: weekly)])],
        levels: { 1: "primary" },
        maintenance: [(reason: "failover", start: "2026-12-06T02:00", end: "2026-12-06T03:00",
                       matcher: (categories: ["database"]))],
    ),
)
"#;
    let history = [
        r#"{"incident_id": 1, "title": "db down", "priority": "critical", "status": "open", "category": "database", "reported_by": "x", "assigned_to": null, "created_at": "2026-12-06T02:10:00Z", "event_type": "incident_created"}"#,
        r#"{"incident_id": 2, "title": "disk", "priority": "high", "status": "open", "category": "hardware", "reported_by": "x", "assigned_to": null, "created_at": "2026-12-06T02:11:00Z", "event_type": "incident_created"}"#,
        r#"{"incident_id": 2, "title": "disk", "old_status": "open", "new_status": "in_progress", "priority": "high", "assigned_to": null, "updated_at": "2026-12-06T03:01:00Z", "event_type": "status_updated"}"#,
    ];
    let (dir, path) = write("config.ron", config);
    let file = dir.path().join("history.jsonl");
    std::fs::write(&file, history.join("\n") + "\n").unwrap();
    let output = Command::new(BINARY)
        .arg("--config")
        .arg(&path)
        .arg("replay")
        .arg(&file)
        .arg("--dry-run")
        .output()
        .unwrap();
    let lines = json_lines(&output);
    // (time, effect, incident, reason) of what concerns the pages.
    let pages: Vec<(String, String, i64, String)> = lines
        .iter()
        .filter(|r| r["kind"] == "effect")
        .filter_map(|r| {
            let (notification, effect) = match r["effect"].as_str()? {
                "notify" => (r, "notify"),
                "held" => (&r["notification"], "held"),
                _ => return None,
            };
            (notification["notification"] == "escalation").then(|| {
                if notification["fields"]["level"] == "1" {
                    assert_eq!(notification["fields"]["on_call"], "alice");
                }
                (
                    r["at"].as_str().unwrap().to_string(),
                    effect.to_string(),
                    notification["incident_id"].as_i64().unwrap(),
                    notification["fields"]["reason"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
        })
        .filter(|(at, ..)| at.as_str() <= "2026-12-06T03:00:00Z")
        .collect();
    let of = |id| {
        pages
            .iter()
            .filter(|p| p.2 == id)
            .map(|(at, effect, _, reason)| format!("{at} {effect} {reason}"))
            .collect::<Vec<_>>()
    };
    // Held in the window, its steps waiting, then one page when it ends.
    assert_eq!(
        of(1),
        [
            "2026-12-06T02:10:00Z held new incident",
            "2026-12-06T03:00:00Z notify silence ended, still not acknowledged",
        ]
    );
    // The summary counts what was held, and who was woken: under another schedule, another
    // name (the what-if of `replay --config OTHER.ron`).
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(
        summary["held"], 2,
        "incident 1's new-incident mail and first page"
    );
    // Level 1 pages alice twice: incident 2's first page, incident 1's release.
    assert_eq!(summary["pages_per_on_call"]["alice"], 2);
    let other = config
        .replace(r#"people: ["alice"]"#, r#"people: ["bob"]"#)
        .replace(
            r#""alice": (email: "alice@example.com")"#,
            r#""alice": (), "bob": ()"#,
        );
    let (_other_dir, other_path) = write("other.ron", &other);
    let what_if = Command::new(BINARY)
        .arg("--config")
        .arg(&other_path)
        .arg("replay")
        .arg(&file)
        .arg("--dry-run")
        .output()
        .unwrap();
    let what_if = json_lines(&what_if);
    let what_if = &what_if.last().unwrap()["summary"];
    assert_eq!(
        what_if["pages_per_on_call"]["bob"],
        summary["pages_per_on_call"]["alice"]
    );
    assert!(what_if["pages_per_on_call"].get("alice").is_none());
    // The other incident pages and steps as usual meanwhile.
    assert_eq!(of(2)[0], "2026-12-06T02:11:00Z notify new incident");
    assert_eq!(
        of(2)[1],
        "2026-12-06T02:16:00Z notify level 1 did not acknowledge in time"
    );
}

#[test]
fn silences_lists_planned_windows_and_the_consoles_silences_from_the_journal() {
    use incident_console::journal::{Journal, JournalConfig, JournalRecord, OnCallRecord};
    let config = r#"(
    oncall: (
        maintenance: [
            (reason: "done", start: "2020-01-01T02:00", end: "2020-01-01T03:00"),
            (reason: "failover", start: "2099-12-06T02:00", end: "2099-12-06T03:00",
             matcher: (categories: ["database"])),
        ],
    ),
)
"#;
    let (dir, path) = write("config.ron", config);
    let journal_path = dir.path().join("journal.sqlite3");
    let now = chrono::Utc::now();
    let snooze = |id: &str, end| alices_snooze(id, now, end);
    Journal::open(&journal_path, &JournalConfig::default())
        .unwrap()
        .write(&[
            JournalRecord::OnCall(OnCallRecord::SilenceSet {
                silence: snooze("s1", now + chrono::TimeDelta::hours(1)),
                at: now,
            }),
            JournalRecord::OnCall(OnCallRecord::SilenceSet {
                silence: snooze("s2", now - chrono::TimeDelta::minutes(1)),
                at: now,
            }),
        ])
        .unwrap();
    let output = Command::new(BINARY)
        .arg("--config")
        .arg(&path)
        .arg("--journal")
        .arg(&journal_path)
        .args(["silences", "--json"])
        .output()
        .unwrap();
    let lines = json_lines(&output);
    let ids: Vec<(&str, bool)> = lines
        .iter()
        .map(|l| (l["id"].as_str().unwrap(), l["active"].as_bool().unwrap()))
        .collect();
    // The past window and the snooze that is over are gone.
    assert_eq!(ids, [("planned-2", false), ("s1", true)]);
    assert_eq!(lines[0]["matches"], "category database");
    assert_eq!(lines[1]["created_by"], "alice");
    assert_eq!(lines[1]["matcher"]["incident_ids"][0], 42);
    let plain = Command::new(BINARY)
        .arg("--config")
        .arg(&path)
        .arg("--no-journal")
        .arg("silences")
        .output()
        .unwrap();
    let text = String::from_utf8(plain.stdout).unwrap();
    assert_eq!(
        text,
        "planned-2 planned from 2099-12-06T02:00:00Z to 2099-12-06T03:00:00Z: category database, by config: failover\n"
    );
}

#[test]
fn silences_end_ends_a_consoles_silence_in_the_journal_and_refuses_while_a_console_runs() {
    use incident_console::journal::{Journal, JournalConfig, JournalRecord, OnCallRecord};
    let config = r#"(
    oncall: (
        maintenance: [
            (reason: "failover", start: "2099-12-06T02:00", end: "2099-12-06T03:00"),
        ],
    ),
)
"#;
    let (dir, path) = write("config.ron", config);
    let journal_path = dir.path().join("journal.sqlite3");
    let now = chrono::Utc::now();
    let snooze = |id: &str| alices_snooze(id, now, now + chrono::TimeDelta::hours(1));
    let records: Vec<JournalRecord> = ["s1", "s2"]
        .into_iter()
        .map(|id| {
            JournalRecord::OnCall(OnCallRecord::SilenceSet {
                silence: snooze(id),
                at: now,
            })
        })
        .collect();
    let journal = {
        let mut journal = Journal::open(&journal_path, &JournalConfig::default()).unwrap();
        journal.write(&records).unwrap();
        journal
    };
    let silences = |args: &[&str]| {
        Command::new(BINARY)
            .arg("--config")
            .arg(&path)
            .arg("--journal")
            .arg(&journal_path)
            .args(["--operator", "bob", "silences"])
            .args(args)
            .output()
            .unwrap()
    };
    let listed = |output: std::process::Output| -> Vec<String> {
        json_lines(&output)
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_string())
            .collect()
    };

    // The journal open (as a running console holds it): refused, and told what to do.
    let refused = silences(&["end", "s1"]);
    assert_eq!(refused.status.code(), Some(1));
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("a console"), "{error}");
    assert!(error.contains("press x"), "{error}");
    drop(journal);
    assert_eq!(listed(silences(&["--json"])), ["planned-1", "s1", "s2"]);

    // No console on it: ended in the journal, by whom, and the next start leaves it out.
    let ended = silences(&["end", "s1"]);
    assert!(ended.status.success(), "{ended:?}");
    let text = String::from_utf8(ended.stdout).unwrap();
    assert!(
        text.starts_with("silence s1 ended in the journal"),
        "{text}"
    );
    assert_eq!(listed(silences(&["--json"])), ["planned-1", "s2"]);
    let journal = Journal::open(&journal_path, &JournalConfig::default()).unwrap();
    let open: Vec<String> = journal
        .open_silences(chrono::Utc::now())
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(open, ["s2"], "what a start restores");
    drop(journal);
    let ended_by = rusqlite::Connection::open(&journal_path)
        .unwrap()
        .query_row("SELECT ended_by FROM silences WHERE id = 's1'", [], |row| {
            row.get::<_, String>(0)
        })
        .unwrap();
    assert_eq!(ended_by, "bob");

    // Mistakes: ended already, unknown, a planned window (it would come back at the start).
    for (id, says) in [
        ("s1", "no running silence s1"),
        ("s9", "no running silence s9"),
        ("planned-1", "planned window of the configuration"),
    ] {
        let output = silences(&["end", id]);
        assert_eq!(output.status.code(), Some(1), "{id}");
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(error.contains(says), "{id}: {error}");
    }
}

use incident_console::core::silence::{Matcher, SilenceOrigin, SilenceView};

/// alice's snooze of incident 42, set 5 minutes before `now`, until `end`: a silence as the
/// journal records one set from the console.
fn alices_snooze(
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> SilenceView {
    SilenceView {
        id: id.into(),
        matcher: Matcher {
            incident_ids: vec![42],
            ..Matcher::default()
        },
        matches: "incident 42".into(),
        reason: "looking into it".into(),
        created_by: "alice".into(),
        origin: SilenceOrigin::Operator,
        active: true,
        start: now - chrono::TimeDelta::minutes(5),
        end,
    }
}
