//! Export from the real console in tmux: `/` filters the feed, `E` writes it as filtered and
//! `e` the selected event, each to a new JSON-lines file in $HOME that the footer names; the
//! file holds exactly the filtered events, and `replay FILE` reads it back.

#[path = "support/tmux.rs"]
mod tmux;

use std::path::{Path, PathBuf};
use std::process::Command;

use tmux::{BINARY, FIRST_EVENTS, STEP, Tmux, events_in_feed, plain, shell_quote};

fn exports(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn the_filtered_feed_and_one_event_export_to_files_that_replay() {
    let home = tempfile::tempdir().unwrap();
    let tmux = Tmux::start();
    tmux.window(
        "console",
        &format!(
            "env -u RUST_LOG HOME={} TERM=xterm-256color {} --config {} --demo --demo-rate 40",
            shell_quote(home.path()),
            shell_quote(Path::new(BINARY)),
            shell_quote(Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/config.ron"
            ))),
        ),
    );
    tmux.wait(
        "console",
        "events in the feed",
        FIRST_EVENTS,
        events_in_feed,
    );
    tmux.wait("console", "a critical event", FIRST_EVENTS, |s| {
        s.contains("CRIT")
    });
    // Freeze the feed (the view stops following), filter on critical, export it.
    tmux.keys("console", "/");
    tmux.keys("console", "critical");
    tmux.keys("console", "Enter");
    tmux.keys("console", "E");
    tmux.wait("console", "the export's path", STEP, |s| {
        s.contains("exported ")
    });
    let screen = plain(&tmux.capture("console"));
    let files = exports(home.path());
    assert_eq!(files.len(), 1, "{files:?}\n{screen}");
    let feed = &files[0];
    let lines = records(feed);
    let said = format!("exported {} events to {}", lines.len(), feed.display());
    assert!(
        screen.contains(&said),
        "`{said}` not on the screen:\n{screen}"
    );
    assert!(!lines.is_empty());
    for record in &lines {
        assert_eq!(record["kind"], "event", "{record}");
        assert_eq!(record["data"]["priority"], "critical", "{record}");
        assert!(record["offset"].is_i64() && record["topic"] == "incidents-created");
    }
    // Oldest first, as a history is read.
    let times: Vec<&str> = lines
        .iter()
        .map(|r| r["received_at"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // The selected event alone.
    tmux.keys("console", "e");
    tmux.wait("console", "the second export", STEP, |s| {
        s.contains("exported 1 event to")
    });
    let files = exports(home.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let single = files.iter().find(|f| *f != feed).unwrap();
    let one = records(single);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["data"]["priority"], "critical");

    // Both replay: every exported event is read back as an event.
    for (file, expected) in [(feed, lines.len()), (single, 1)] {
        let output = Command::new(BINARY)
            .args(["replay", "--dry-run", "--no-tui"])
            .arg(file)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let summary: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(summary["kind"], "summary", "{summary}");
        assert_eq!(summary["summary"]["events"], expected as u64, "{summary}");
        assert_eq!(summary["summary"]["bad_lines"], 0, "{summary}");
    }
}

fn urgent_created(record: &serde_json::Value) -> bool {
    ["critical", "high"].contains(&record["data"]["priority"].as_str().unwrap_or(""))
        && record["data"]["event_type"] == "incident_created"
}

fn place(record: &serde_json::Value) -> (String, i64, i64) {
    (
        record["topic"].as_str().unwrap().to_string(),
        record["partition"].as_i64().unwrap(),
        record["offset"].as_i64().unwrap(),
    )
}

#[test]
fn a_saved_field_query_selects_exactly_the_matching_events_and_bad_syntax_shows_in_place() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.ron");
    std::fs::write(
        &config,
        r#"(filters: {"urgent": "priority in [\"critical\", \"high\"] && event_type == \"incident_created\""})"#,
    )
    .unwrap();
    let tmux = Tmux::start();
    tmux.window(
        "console",
        &format!(
            "env -u RUST_LOG HOME={} TERM=xterm-256color {} --config {} --demo --demo-rate 40",
            shell_quote(home.path()),
            shell_quote(Path::new(BINARY)),
            shell_quote(&config),
        ),
    );
    tmux.wait(
        "console",
        "events in the feed",
        FIRST_EVENTS,
        events_in_feed,
    );
    tmux.wait("console", "urgent new incidents", FIRST_EVENTS, |s| {
        s.lines()
            .filter(|l| l.contains("created") && (l.contains("CRIT") || l.contains("HIGH")))
            .count()
            >= 2
    });
    // Bad syntax: the error in place, the console still running.
    tmux.keys("console", "/");
    tmux.keys("console", "-l");
    tmux.keys("console", "priority == ");
    tmux.wait("console", "the query error", STEP, |s| {
        s.contains("query error:")
    });
    tmux.keys("console", "Escape");
    tmux.wait("console", "the filter cleared", STEP, |s| {
        !s.contains("query error")
    });

    tmux.keys("console", "p");
    tmux.wait("console", "paused", STEP, |s| s.contains("PAUSED"));
    // The new file of each export (names of one second are told apart by a suffix).
    let export = |expected: usize| -> Vec<serde_json::Value> {
        let known = exports(home.path());
        tmux.keys("console", "E");
        tmux.wait("console", "the export", STEP, |_| {
            exports(home.path()).len() == expected
        });
        let new = exports(home.path())
            .into_iter()
            .find(|f| !known.contains(f))
            .unwrap();
        records(&new)
    };
    let before = export(1);
    // The saved filter, picked with tab while typing a filter.
    tmux.keys("console", "/");
    tmux.keys("console", "Tab");
    tmux.keys("console", "Enter");
    tmux.wait(
        "console",
        "the saved query in the feed's title",
        STEP,
        |s| s.contains("filter: priority in"),
    );
    let filtered = export(2);
    tmux.keys("console", "Escape");
    tmux.wait("console", "the filter cleared", STEP, |s| {
        !s.contains("filter: priority")
    });
    let after = export(3);

    // Exactly the matching events: all that matched before the filtered export, none that
    // did not, and nothing that was not in the feed after it.
    let matching = |records: &[serde_json::Value]| -> Vec<(String, i64, i64)> {
        records
            .iter()
            .filter(|r| urgent_created(r))
            .map(place)
            .collect()
    };
    let got: Vec<(String, i64, i64)> = filtered.iter().map(place).collect();
    assert!(filtered.iter().all(urgent_created), "{filtered:#?}");
    assert!(!got.is_empty());
    for place in matching(&before) {
        assert!(
            got.contains(&place),
            "{place:?} matched but was not selected"
        );
    }
    let later = matching(&after);
    for place in &got {
        assert!(
            later.contains(place),
            "{place:?} selected but not in the feed"
        );
    }
    assert!(
        before.iter().any(|r| !urgent_created(r)),
        "the feed had only matches"
    );
}
