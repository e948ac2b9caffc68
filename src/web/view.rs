//! What one update to the page holds: the console's snapshot reduced to what the page draws,
//! every text from an event sanitised as the console sanitises it, and nothing secret (no
//! broker address, no channel configuration, no tokens). One view is built per update and
//! shared by every page.

use serde::Serialize;

use crate::core::event::{IncidentId, Timestamp};
use crate::status::{Snapshot, TeamView};
use crate::tui::detail::{age, next_step};
use crate::tui::sanitize::sanitize_with_limit;

/// Longest title or summary sent; the console cuts its cells shorter still.
const TEXT_LIMIT: usize = 300;

/// Escalations sent at most: an update stays a few hundred kilobytes even in a storm.
pub const MAX_ESCALATION_ROWS: usize = 500;

#[derive(Debug, Serialize)]
pub struct View {
    pub at: Timestamp,
    pub demo: bool,
    /// Whether the page offers acknowledgement (operators with tokens are configured).
    pub ack: bool,
    pub topic: String,
    pub connection: &'static str,
    pub paused: bool,
    pub lag: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Entries the console has ever added to its feed.
    pub feed_total: u64,
    /// Newest first, at most `web.feed_rows`.
    pub feed: Vec<FeedRow>,
    /// At most `MAX_ESCALATION_ROWS`, in the console's order; `escalations_total` counts all.
    pub escalations: Vec<EscalationRow>,
    pub escalations_total: usize,
    pub metrics: Metrics,
}

#[derive(Debug, Serialize)]
pub struct FeedRow {
    pub seq: u64,
    pub at: Timestamp,
    pub event_type: &'static str,
    pub incident_id: Option<IncidentId>,
    pub priority: Option<&'static str>,
    pub title: String,
    pub summary: String,
    /// `partition/offset`, where the event came from.
    pub place: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct EscalationRow {
    pub incident_id: IncidentId,
    pub title: String,
    pub priority: &'static str,
    pub level: u32,
    pub level_name: String,
    pub age: String,
    /// As the console says it: "in 42s", "due", "exhausted", or "—" once acknowledged.
    pub next: String,
    pub repeats: u32,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<Timestamp>,
}

#[derive(Debug, Serialize)]
pub struct Metrics {
    pub total_events: u64,
    pub events_per_sec: f64,
    pub per_type: Vec<TypeRow>,
    pub dead_lettered: u64,
    pub escalations_opened: u64,
    pub escalations_raised: u64,
    pub acknowledged: u64,
    pub resolved: u64,
    pub time_to_acknowledge_p50: Option<String>,
    pub time_to_resolve_p50: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TypeRow {
    pub event_type: &'static str,
    pub count: u64,
    pub rate_per_sec: f64,
}

fn text(value: &str) -> String {
    sanitize_with_limit(value, TEXT_LIMIT).into_owned()
}

/// The view of `snapshot` at `now` (the countdowns move on between snapshots).
pub fn build(snapshot: &Snapshot, now: Timestamp, feed_rows: usize, ack: bool) -> View {
    let engine = &snapshot.engine;
    let now = now.max(engine.at);
    let feed = engine
        .feed
        .iter()
        .take(feed_rows)
        .map(|entry| FeedRow {
            seq: entry.seq,
            at: entry.received_at,
            event_type: entry.event_type.map_or("undecodable", |t| t.as_str()),
            incident_id: entry.incident_id,
            priority: entry.priority.map(|p| p.as_str()),
            title: text(&entry.title),
            summary: text(&entry.summary),
            place: entry
                .source
                .as_ref()
                .map(|s| format!("{}/{}", s.partition, s.offset)),
            error: entry.error.as_deref().map(text),
        })
        .collect();
    let escalations = engine
        .escalations
        .iter()
        .take(MAX_ESCALATION_ROWS)
        .map(|view| {
            let e = &view.escalation;
            EscalationRow {
                incident_id: e.incident_id,
                title: text(&e.title),
                priority: e.priority.as_str(),
                level: e.level,
                level_name: text(&view.level_name),
                age: age(e.opened_at, now),
                next: next_step(view, now),
                repeats: e.repeats,
                acknowledged_by: e.acknowledged.as_ref().map(|a| text(&a.by)),
                acknowledged_at: e.acknowledged.as_ref().map(|a| a.at),
            }
        })
        .collect();
    let m = &engine.metrics;
    let p50 = |s: &crate::core::metrics::DurationSummary| {
        s.p50_secs.map(crate::core::engine::format_duration)
    };
    View {
        at: now,
        demo: snapshot.demo,
        ack,
        topic: text(&snapshot.consumer.topic),
        connection: snapshot.consumer.connection.label(),
        paused: snapshot.consumer.paused,
        lag: snapshot.consumer.lag,
        team: snapshot.team.as_ref().map(|team| match team {
            TeamView::Active { worker, epoch } => {
                format!("active worker {} (epoch {epoch})", text(worker))
            }
            TeamView::NoActiveWorker => "no active worker: nothing escalates or pages".into(),
        }),
        feed_total: engine.feed_total,
        feed,
        escalations,
        escalations_total: engine.escalations.len(),
        metrics: Metrics {
            total_events: m.total_events,
            events_per_sec: m.events_per_sec,
            per_type: m
                .per_type
                .iter()
                .map(|t| TypeRow {
                    event_type: t.event_type.as_str(),
                    count: t.count,
                    rate_per_sec: t.rate_per_sec,
                })
                .collect(),
            dead_lettered: m.dead_lettered,
            escalations_opened: m.escalations_opened,
            escalations_raised: m.escalations_raised,
            acknowledged: m.acknowledged,
            resolved: m.resolved,
            time_to_acknowledge_p50: p50(&m.time_to_acknowledge),
            time_to_resolve_p50: p50(&m.time_to_resolve),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::core::engine::{Engine, EngineConfig, Input};
    use crate::core::event::decode;
    use crate::status::{ConsumerStatus, NotifierStatus};

    fn snapshot(titles: &[&str]) -> Snapshot {
        let mut engine = Engine::new(EngineConfig::default());
        let now = chrono::Utc::now();
        for (n, title) in titles.iter().enumerate() {
            let payload = serde_json::json!({
                "event_type": "incident_created", "incident_id": n + 1, "title": title,
                "priority": "critical", "status": "open", "category": "application",
                "reported_by": "r", "assigned_to": null, "created_at": "2026-01-01T00:00:00Z",
            })
            .to_string();
            let event = decode(Some(payload.as_bytes()), 1 << 20).expect("a valid event");
            engine.apply(
                Input::Event {
                    event,
                    source: None,
                    raw: Arc::from(payload.as_str()),
                },
                now,
            );
        }
        Snapshot {
            engine: engine.snapshot(now),
            consumer: ConsumerStatus {
                brokers: "secret-broker.internal:9092".into(),
                ..ConsumerStatus::default()
            },
            notifier: NotifierStatus::default(),
            operator: "alice".into(),
            demo: false,
            team: None,
        }
    }

    #[test]
    fn event_text_is_sanitised_cut_and_rows_are_bounded() {
        let long = "y".repeat(5000);
        let snapshot = snapshot(&["\u{1b}[2Jclear\u{202e}evil", &long, "three"]);
        let view = build(&snapshot, snapshot.engine.at, 2, false);
        assert_eq!(view.feed.len(), 2, "feed_rows");
        assert_eq!(view.feed_total, 3);
        let first = view
            .escalations
            .iter()
            .find(|e| e.incident_id == 1)
            .unwrap();
        assert_eq!(first.title, "clearevil");
        let long_row = view
            .escalations
            .iter()
            .find(|e| e.incident_id == 2)
            .unwrap();
        assert_eq!(
            long_row.title.chars().count(),
            TEXT_LIMIT + 1,
            "cut, with an ellipsis"
        );
        assert!(first.next.starts_with("in "), "{}", first.next);
        let json = serde_json::to_string(&view).unwrap();
        assert!(
            !json.contains("secret-broker"),
            "no broker address on the page"
        );
        assert!(!json.contains('\u{1b}'));
    }
}
