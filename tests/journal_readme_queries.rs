//! The `sqlite3` queries in docs/journal.md, run against a journal written from
//! what the real engine decided, so that the documentation cannot drift from the schema.
//!
//! `JOURNAL_README_KEEP=/some/file.sqlite3 cargo test --test journal_readme_queries` keeps a
//! copy of the journal, to try the queries in the sqlite3 shell.

mod journal_common;

use std::sync::Arc;

use chrono::TimeDelta;
use incident_console::config::Config;
use incident_console::core::engine::{Audience, Effect, Engine, Input, SourceRef};
use incident_console::core::event::{self, DecodeError, Timestamp};
use incident_console::journal::{
    Decision, Journal, JournalConfig, JournalRecord, ProcessedEvent, escalation_records,
};
use incident_console::notify::{AttemptOutcome, Channel, Delivery, DeliveryChange, Payload};

/// Plays the runtime: handles inputs with the engine and journals what happened, with a
/// stand-in notifier that sends every notification on one channel per audience.
struct Console {
    engine: Engine,
    journal: Journal,
    offset: i64,
}

impl Console {
    fn handle(&mut self, json: &str, at: Timestamp) {
        let source = SourceRef {
            topic: "incidents-created".into(),
            partition: 0,
            offset: self.offset,
        };
        self.offset += 1;
        let (input, record) = match event::decode(Some(json.as_bytes()), 1 << 20) {
            Ok(event) => (
                Input::Event {
                    event: event.clone(),
                    source: Some(source.clone()),
                    raw: Arc::from(json),
                },
                ProcessedEvent::handled(source, &event, at, at),
            ),
            Err(error) => (
                Input::Rejected {
                    error: error.clone(),
                    source: Some(source.clone()),
                    raw: Arc::from(json),
                },
                ProcessedEvent::dead_lettered(source, &error, at, at),
            ),
        };
        self.apply(input, vec![JournalRecord::Event(record)], at);
    }

    fn tombstone(&mut self, at: Timestamp) {
        let source = SourceRef {
            topic: "incidents-created".into(),
            partition: 0,
            offset: self.offset,
        };
        self.offset += 1;
        let record = ProcessedEvent::dead_lettered(source, &DecodeError::Tombstone, at, at);
        self.journal.write(&[JournalRecord::Event(record)]).unwrap();
    }

    fn apply(&mut self, input: Input, mut records: Vec<JournalRecord>, at: Timestamp) {
        let effects = self.engine.apply(input, at);
        records.extend(escalation_records(&effects, self.engine.escalations(), at));
        let mut attempts = Vec::new();
        for effect in &effects {
            let Effect::Notify(notification) = effect else {
                continue;
            };
            let (channel, recipient) = match &notification.audience {
                Audience::Administrators => (Channel::Email, "admins@example.com".to_string()),
                Audience::User { name } => (Channel::Email, format!("{name}@example.com")),
                Audience::EscalationLevel { level } => {
                    (Channel::PagerDuty, format!("level-{level}"))
                }
            };
            let delivery = Delivery {
                key: Delivery::key_for(&notification.dedup_key, channel, &recipient),
                channel,
                recipient,
                incident_id: Some(notification.incident_id),
                kind: notification.kind.into(),
                payload: Payload::Json {
                    body: serde_json::to_value(notification).unwrap(),
                    idempotency_key: None,
                },
                accepted_at: at,
                give_up_at: at + TimeDelta::hours(1),
            };
            records.push(JournalRecord::Decided(Decision {
                notification: notification.clone(),
                at,
            }));
            records.push(JournalRecord::Delivery(DeliveryChange::Queued(Box::new(
                delivery.clone(),
            ))));
            records.push(JournalRecord::Delivery(DeliveryChange::Routed {
                dedup_key: notification.dedup_key.clone(),
                at,
            }));
            let attempted = |seconds: i64, outcome| {
                JournalRecord::Delivery(DeliveryChange::Attempted {
                    key: delivery.key.clone(),
                    at: at + TimeDelta::seconds(seconds),
                    outcome,
                })
            };
            // PagerDuty is unwell the first time; every send succeeds in the end.
            let mut attempt = 1;
            if channel == Channel::PagerDuty
                && notification.fields.get("level").map(String::as_str) == Some("1")
            {
                attempts.push(attempted(
                    2,
                    AttemptOutcome::Retrying {
                        error: "503 Service Unavailable".into(),
                    },
                ));
                attempt += 1;
            }
            attempts.push(attempted(attempt * 5, AttemptOutcome::Delivered));
        }
        self.journal.write(&records).unwrap();
        self.journal.write(&attempts).unwrap();
    }
}

fn created(id: i64, title: &str, priority: &str, at: Timestamp) -> String {
    format!(
        r#"{{"event_type":"incident_created","incident_id":{id},"title":"{title}","priority":"{priority}","status":"open","category":"software","reported_by":"monitoring","assigned_to":"jane.smith","created_at":"{}"}}"#,
        at.to_rfc3339()
    )
}

fn resolved(id: i64, title: &str, at: Timestamp) -> String {
    format!(
        r#"{{"event_type":"status_updated","incident_id":{id},"title":"{title}","old_status":"in_progress","new_status":"resolved","priority":"high","assigned_to":"jane.smith","updated_at":"{}"}}"#,
        at.to_rfc3339()
    )
}

/// The ```sql blocks of docs/journal.md, in order.
fn readme_queries() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/journal.md")).unwrap();
    let start = readme.find("<!-- journal:start -->").unwrap();
    let end = readme.find("<!-- journal:end -->").unwrap();
    readme[start..end]
        .split("```sql\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().to_string())
        .collect()
}

/// Runs a query and returns its rows as text, columns joined by " | ".
fn run(connection: &rusqlite::Connection, sql: &str) -> Vec<String> {
    let mut statement = connection
        .prepare(sql)
        .unwrap_or_else(|error| panic!("{error}\n{sql}"));
    let columns = statement.column_count();
    statement
        .query_map([], |row| {
            let cells: Vec<String> = (0..columns)
                .map(|index| match row.get_ref(index).unwrap() {
                    rusqlite::types::ValueRef::Null => "".to_string(),
                    rusqlite::types::ValueRef::Integer(value) => value.to_string(),
                    rusqlite::types::ValueRef::Real(value) => value.to_string(),
                    rusqlite::types::ValueRef::Text(text) => String::from_utf8_lossy(text).into(),
                    rusqlite::types::ValueRef::Blob(_) => "<blob>".to_string(),
                })
                .collect();
            Ok(cells.join(" | "))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn the_readme_queries_answer_from_a_real_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite3");
    let config = Config::built_in();
    let mut console = Console {
        engine: Engine::new(config.engine_config()),
        journal: Journal::open(&path, &JournalConfig::default()).unwrap(),
        offset: 0,
    };
    // Whole seconds, two days ago, so that dates and the "last 24 hours" are predictable.
    let now = chrono::Utc::now();
    let day_one =
        now - TimeDelta::days(2) - TimeDelta::nanoseconds(i64::from(now.timestamp_subsec_nanos()));
    let minutes = |m: i64| day_one + TimeDelta::minutes(m);

    // Incident 42: opened, not acknowledged in time (level 2 paged), acknowledged, resolved.
    console.handle(
        &created(42, "Checkout API returns 502", "high", minutes(0)),
        minutes(0),
    );
    console.apply(Input::Tick, Vec::new(), minutes(5));
    console.apply(
        Input::Acknowledge {
            incident_id: 42,
            by: "ana".into(),
        },
        Vec::new(),
        minutes(7),
    );
    console.handle(
        &resolved(42, "Checkout API returns 502", minutes(60)),
        minutes(60),
    );
    // Incident 43, the next day: acknowledged after 2 minutes.
    let day_two = day_one + TimeDelta::days(1);
    console.handle(
        &created(43, "Disk full on db-3", "critical", day_two),
        day_two,
    );
    console.apply(
        Input::Acknowledge {
            incident_id: 43,
            by: "bo".into(),
        },
        Vec::new(),
        day_two + TimeDelta::minutes(2),
    );
    // An hour ago: two messages that could not be decoded.
    let recent = now - TimeDelta::hours(1);
    console.handle(
        "{\"event_type\": \"incident_created\", \"incident_id\": 44,",
        recent,
    );
    console.tombstone(recent);
    console.handle("{not json at all", recent);
    console.journal.checkpoint().unwrap();
    let connection = journal_common::inspect(&path);

    let queries = readme_queries();
    assert_eq!(queries.len(), 4, "docs/journal.md shows four queries");

    let history = run(&connection, &queries[0]);
    let what: Vec<&str> = history
        .iter()
        .map(|row| row.split(" | ").nth(1).unwrap())
        .collect();
    assert_eq!(what.first(), Some(&"event"), "{history:#?}");
    assert_eq!(
        what.iter().filter(|w| **w == "event").count(),
        2,
        "{history:#?}"
    );
    let details: Vec<&str> = history
        .iter()
        .map(|row| row.split(" | ").nth(2).unwrap())
        .collect();
    for expected in [
        "incident_created: opened (open) by monitoring",
        "opened at level 1",
        "raised at level 2",
        "acknowledged at level 2",
        "closed at level 2",
        "status_updated: in_progress → resolved",
        "pagerduty to level-1: failed",
        "pagerduty to level-1: delivered",
        "pagerduty to level-2: delivered",
        "email to admins@example.com: delivered",
    ] {
        assert!(
            details.contains(&expected),
            "no `{expected}` in {history:#?}"
        );
    }
    let times: Vec<&str> = history
        .iter()
        .map(|row| row.split(" | ").next().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] <= pair[1]),
        "in time order"
    );

    let per_day = run(&connection, &queries[1]);
    assert_eq!(
        per_day,
        [
            format!("{} | 1 | 7 | 7", minutes(7).date_naive()),
            format!(
                "{} | 1 | 2 | 2",
                (day_two + TimeDelta::minutes(2)).date_naive()
            ),
        ]
    );

    let attempts = run(&connection, &queries[2]);
    assert!(
        attempts
            .iter()
            .any(|row| row.contains("pagerduty | level-1")
                && row.ends_with("| 1 | failed | 503 Service Unavailable")),
        "{attempts:#?}"
    );
    assert!(
        attempts
            .iter()
            .any(|row| row.contains("pagerduty | level-1") && row.ends_with("| 2 | delivered | ")),
        "{attempts:#?}"
    );
    assert!(
        attempts.iter().all(|row| row.contains("42/")),
        "{attempts:#?}"
    );

    let dead = run(&connection, &queries[3]);
    assert_eq!(dead, ["invalid_json | 2 | 3", "tombstone | 1 | 4"]);

    if let Some(keep) = std::env::var_os("JOURNAL_README_KEEP") {
        drop(console);
        std::fs::copy(&path, keep).unwrap();
    }
}
