//! A planned maintenance window through the real binary, against the SMTP sink: matching
//! incidents' mails are held while the window lasts, the others go through, and when it ends
//! each matching incident still open and unacknowledged pages its level exactly once, to the
//! person on call on the schedule the level pages.

#[path = "support/processes.rs"]
mod processes;
#[path = "support/notify_servers.rs"]
mod servers;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use incident_console::notify::Channel;
use incident_console::notify::config::LevelRecipients;
use incident_console::oncall::{
    LayerConfig, LengthConfig, OnCallConfig, PersonConfig, ScheduleConfig, WindowConfig,
};
use processes::{BINARY, Process, lines_of, start_broker};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use servers::{Mail, SmtpSink};

const TOPIC: &str = "window-incidents";
const LONG: Duration = Duration::from_secs(90);
/// How long the window lasts from the console's start: long enough to consume the first
/// events inside it (the test fails, saying so, if they were not).
const WINDOW: Duration = Duration::from_secs(25);

fn created(id: i64, category: &str, priority: &str) -> String {
    serde_json::json!({
        "incident_id": id, "title": format!("incident {id}"), "priority": priority,
        "status": "open", "category": category, "reported_by": "john.doe",
        "assigned_to": null, "created_at": "2026-12-01T10:00:00Z",
        "event_type": "incident_created",
    })
    .to_string()
}

fn resolved(id: i64) -> String {
    serde_json::json!({
        "incident_id": id, "title": format!("incident {id}"), "old_status": "open",
        "new_status": "resolved", "priority": "high", "assigned_to": null,
        "updated_at": "2026-12-01T10:05:00Z", "event_type": "status_updated",
    })
    .to_string()
}

async fn send(producer: &FutureProducer, payload: &str) {
    producer
        .send(
            FutureRecord::to(TOPIC).key("k").payload(payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

fn about(mails: &[Mail], id: i64, subject_part: &str) -> Vec<Mail> {
    mails
        .iter()
        .filter(|m| m.subject().contains(&format!("incident #{id}:")))
        .filter(|m| m.subject().contains(subject_part))
        .cloned()
        .collect()
}

fn rcpts(mails: &[Mail]) -> Vec<String> {
    let mut all: Vec<String> = mails.iter().flat_map(|m| m.rcpt_tos.clone()).collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_holds_matching_mail_and_releases_one_page_per_open_incident() {
    let sink = SmtpSink::start().await;
    let (_broker, bootstrap) = start_broker(1, &[TOPIC], Stdio::null());
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    let window_end = now + chrono::TimeDelta::from_std(WINDOW).unwrap();

    let mut config = servers::mail_admins_config(sink.port);
    config.notifications.escalation_levels = vec![LevelRecipients {
        level: 1,
        users: Vec::new(),
        emails: vec!["level1@example.com".into()],
        channels: vec![Channel::Email],
    }];
    config.oncall = OnCallConfig {
        people: [(
            "alice".to_string(),
            PersonConfig {
                email: Some("alice@example.com".into()),
                ..PersonConfig::default()
            },
        )]
        .into_iter()
        .collect(),
        schedules: vec![ScheduleConfig {
            name: "primary".into(),
            time_zone: "UTC".into(),
            layers: vec![LayerConfig {
                name: "weekly".into(),
                people: vec!["alice".into()],
                start: "2026-01-05T09:00".into(),
                end: None,
                length: LengthConfig::Weekly,
            }],
            overrides: Vec::new(),
        }],
        levels: [(1, "primary".to_string())].into_iter().collect(),
        maintenance: vec![WindowConfig {
            reason: "planned database failover".into(),
            start: (now - chrono::TimeDelta::minutes(1)).to_rfc3339(),
            end: window_end.to_rfc3339(),
            time_zone: "UTC".into(),
            every_days: None,
            matcher: incident_console::core::silence::Matcher {
                categories: vec!["database".into()],
                ..Default::default()
            },
        }],
    };
    let config_path = dir.path().join("config.ron");
    servers::write_private_config(&config, &config_path);

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    // 1: database, stays open. 2: hardware, not covered. 3: database, resolved in the window.
    send(&producer, &created(1, "Database", "critical")).await;
    send(&producer, &created(2, "hardware", "high")).await;
    send(&producer, &created(3, "database", "high")).await;
    send(&producer, &resolved(3)).await;

    let mut child = Command::new(BINARY)
        .args(["--no-tui", "--config", config_path.to_str().unwrap()])
        .args([
            "--journal",
            dir.path().join("journal.sqlite3").to_str().unwrap(),
        ])
        .args(["-b", &bootstrap, "-t", TOPIC, "-g", "window-group"])
        .args(["-X", "auto.offset.reset=earliest", "--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let _console = Process(child);

    // Inside the window: incident 2 is mailed (admins, and a page to level 1 and alice);
    // 1 and 3 are held: a `held` line each for their new-incident mail, page, and (3) the
    // resolution notices to the administrators and to the level.
    let deadline = Instant::now() + LONG;
    let mut held = Vec::new();
    while held.len() < 6 {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("held notifications in the output");
        if line.contains("\"effect\":\"held\"") {
            let record: serde_json::Value = serde_json::from_str(&line).unwrap();
            held.push((
                record["notification"]["incident_id"].as_i64().unwrap(),
                record["notification"]["notification"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ));
        }
    }
    held.sort();
    assert_eq!(
        held,
        vec![
            (1, "escalation".into()),
            (1, "incident_created".into()),
            (3, "escalation".into()),
            (3, "incident_created".into()),
            (3, "resolved".into()),
            (3, "resolved".into()),
        ]
    );
    assert!(
        chrono::Utc::now() < window_end,
        "the events were handled after the window ended: the test says nothing"
    );
    let through = sink.wait_for(3).await;
    assert!(chrono::Utc::now() < window_end);
    assert_eq!(
        rcpts(&about(&through, 2, "New incident")),
        vec!["admins@example.com"]
    );
    assert_eq!(
        rcpts(&about(&through, 2, "ESCALATION")),
        vec!["alice@example.com", "level1@example.com"]
    );
    for id in [1, 3] {
        assert!(
            about(&through, id, "").is_empty(),
            "incident {id} mailed in the window"
        );
    }

    // The end: incident 1 pages its level once (to the level and to alice, on call);
    // incident 3 was resolved, so nothing.
    let released = servers::eventually(LONG, "the page released at the window's end", || {
        let mails = sink.mails();
        (!about(&mails, 1, "ESCALATION").is_empty()).then_some(mails)
    })
    .await;
    assert!(chrono::Utc::now() >= window_end);
    let _ = released;
    // One more incident after the release, to know the console has moved on, then count.
    send(&producer, &created(4, "hardware", "low")).await;
    let mails = servers::eventually(LONG, "incident 4's mail", || {
        let mails = sink.mails();
        (!about(&mails, 4, "New incident").is_empty()).then_some(mails)
    })
    .await;
    let page = about(&mails, 1, "ESCALATION");
    assert_eq!(
        rcpts(&page),
        vec!["alice@example.com", "level1@example.com"],
        "exactly one page for incident 1"
    );
    assert!(
        page[0].body().contains("silence ended"),
        "{}",
        page[0].body()
    );
    assert!(
        about(&mails, 1, "New incident").is_empty(),
        "held, not sent"
    );
    assert!(
        about(&mails, 3, "").is_empty(),
        "resolved inside the window"
    );

    // The journal has what was held, under the window's id, and when the window ended.
    let journal = rusqlite::Connection::open_with_flags(
        dir.path().join("journal.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let held_rows: i64 = journal
        .query_row(
            "SELECT count(*) FROM held_notifications WHERE silence_id = 'planned-1'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(held_rows, 6);
    let ended: Option<String> = journal
        .query_row(
            "SELECT ended_at FROM silences WHERE id = 'planned-1'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(ended.is_some());
}
