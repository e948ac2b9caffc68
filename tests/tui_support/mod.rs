//! Fixtures for the console tests: a real `Engine` fed a fixed story with fixed timestamps, a
//! `Snapshot` around it, and helpers to render into a `TestBackend` and look at the cells.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{FixedOffset, TimeZone};
use incident_console::core::engine::{Engine, EngineConfig, Input};
use incident_console::core::escalation::{EscalationLevel, EscalationPolicy};
use incident_console::core::event::{
    self, AssignmentChanged, AttachmentUploaded, CommentAdded, EscalationTriggered,
    IncidentCreated, IncidentEvent, IncidentId, Priority, Status, StatusUpdated, Timestamp,
};
use incident_console::status::{ConnectionState, ConsumerStatus, NotifierStatus, Snapshot};
use incident_console::tui::{App, Keymap};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Style;

pub const OPERATOR: &str = "alice";

/// 03:00:00 UTC on a night shift, plus `seconds`.
pub fn t(seconds: i64) -> Timestamp {
    chrono::Utc
        .with_ymd_and_hms(2024, 3, 5, 3, 0, 0)
        .unwrap()
        .checked_add_signed(chrono::TimeDelta::seconds(seconds))
        .unwrap()
}

/// The moment the fixture snapshot is taken.
pub const NOW: i64 = 62;

pub fn policy() -> EscalationPolicy {
    let level = |name: &str, secs: u64| EscalationLevel {
        name: name.into(),
        timeout: Duration::from_secs(secs),
    };
    EscalationPolicy {
        levels: vec![
            level("on-call", 60),
            level("secondary", 120),
            level("engineering-manager", 300),
        ],
        repeat_interval: Duration::from_secs(300),
        max_repeats: 1,
    }
}

pub fn engine(feed_capacity: usize) -> Engine {
    Engine::new(EngineConfig {
        policy: policy(),
        feed_capacity,
        max_tracked_incidents: 10_000,
        max_raw_in_feed: 16 * 1024,
        ..EngineConfig::default()
    })
}

pub fn created(id: IncidentId, priority: Priority, title: &str, at: i64) -> IncidentEvent {
    IncidentEvent::IncidentCreated(IncidentCreated {
        incident_id: id,
        title: title.into(),
        priority,
        status: Status::Open,
        category: "application".into(),
        reported_by: "john.doe".into(),
        assigned_to: Some("jane.smith".into()),
        created_at: t(at),
    })
}

pub fn status(
    id: IncidentId,
    priority: Priority,
    title: &str,
    old: Status,
    new: Status,
    at: i64,
) -> IncidentEvent {
    IncidentEvent::StatusUpdated(StatusUpdated {
        incident_id: id,
        title: title.into(),
        old_status: old,
        new_status: new,
        priority,
        assigned_to: Some("jane.smith".into()),
        updated_at: t(at),
    })
}

/// Applies an event as the runtime does: with its JSON as the raw payload.
pub fn feed(engine: &mut Engine, event: IncidentEvent, at: i64) {
    let raw: Arc<str> = serde_json::to_string(&event).unwrap().into();
    engine.apply(
        Input::Event {
            event,
            source: Some(incident_console::core::engine::SourceRef {
                topic: "incidents-created".into(),
                partition: (at % 3) as i32,
                offset: at,
            }),
            raw,
        },
        t(at),
    );
    engine.record_processing(Duration::from_micros(40 + (at as u64 % 7) * 15));
}

pub fn reject(engine: &mut Engine, payload: &str, at: i64) {
    let error = event::decode(Some(payload.as_bytes()), 1 << 20).unwrap_err();
    engine.apply(
        Input::Rejected {
            error,
            source: None,
            raw: payload.into(),
        },
        t(at),
    );
    engine.record_dead_lettered();
}

/// A night's first minute: every event type, every priority, an escalation raised by the
/// producer, one raised by timeout, one acknowledged, one incident resolved, a rejected payload.
pub fn story_engine() -> Engine {
    let mut engine = engine(1000);
    let db = "Primary database down";
    let checkout = "Checkout API 5xx rate above 2%";
    feed(&mut engine, created(1001, Priority::Critical, db, 0), 0);
    feed(&mut engine, created(1002, Priority::High, checkout, 5), 5);
    feed(
        &mut engine,
        created(1003, Priority::Medium, "Search cluster yellow", 10),
        10,
    );
    feed(
        &mut engine,
        created(1004, Priority::Low, "TLS certificate expires in 48h", 15),
        15,
    );
    feed(
        &mut engine,
        status(
            1003,
            Priority::Medium,
            "Search cluster yellow",
            Status::Open,
            Status::InProgress,
            20,
        ),
        20,
    );
    feed(
        &mut engine,
        IncidentEvent::CommentAdded(CommentAdded {
            incident_id: 1001,
            title: db.into(),
            author: "jane.smith".into(),
            comment: "Failing over to the replica.".into(),
            created_at: t(25),
        }),
        25,
    );
    feed(
        &mut engine,
        IncidentEvent::AttachmentUploaded(AttachmentUploaded {
            incident_id: 1002,
            title: checkout.into(),
            filename: "grafana-latency.png".into(),
            size_bytes: 48213,
            content_type: "image/png".into(),
            uploaded_by: "li.wei".into(),
            uploaded_at: t(30),
        }),
        30,
    );
    feed(
        &mut engine,
        IncidentEvent::AssignmentChanged(AssignmentChanged {
            incident_id: 1001,
            title: db.into(),
            priority: Priority::Critical,
            old_assignee: Some("jane.smith".into()),
            new_assignee: "li.wei".into(),
            changed_by: "maria.garcia".into(),
            updated_at: t(35),
        }),
        35,
    );
    feed(
        &mut engine,
        IncidentEvent::EscalationTriggered(EscalationTriggered {
            incident_id: 1002,
            title: checkout.into(),
            priority: Priority::High,
            level: 2,
            reason: "error budget burning".into(),
            triggered_by: "slo-bot".into(),
            triggered_at: t(40),
        }),
        40,
    );
    reject(&mut engine, "not json at all", 45);
    feed(
        &mut engine,
        created(
            1005,
            Priority::High,
            "Memory leak in notification-service",
            50,
        ),
        50,
    );
    engine.apply(
        Input::Acknowledge {
            incident_id: 1005,
            by: OPERATOR.into(),
        },
        t(55),
    );
    feed(
        &mut engine,
        status(
            1004,
            Priority::Low,
            "TLS certificate expires in 48h",
            Status::Open,
            Status::Resolved,
            57,
        ),
        57,
    );
    feed(
        &mut engine,
        created(1006, Priority::Critical, "Payment gateway timeouts", 58),
        58,
    );
    // #1001 has waited past its 60 s: the tick pages level 2.
    engine.apply(Input::Tick, t(61));
    engine
}

pub fn consumer(paused: bool) -> ConsumerStatus {
    ConsumerStatus {
        brokers: "127.0.0.1:9092".into(),
        topic: "incidents-created".into(),
        group: "incident-management-consumer".into(),
        connection: ConnectionState::Connected,
        assigned_partitions: vec![2, 0, 1],
        paused,
        lag: Some(12),
        offsets_skipped: 0,
        last_error: None,
        partitions: Vec::new(),
    }
}

pub fn snapshot_of(engine: &Engine, paused: bool) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        engine: engine.snapshot(t(NOW)),
        consumer: consumer(paused),
        notifier: NotifierStatus::default(),
        operator: OPERATOR.into(),
        demo: true,
        team: None,
    })
}

pub fn story_snapshot() -> Arc<Snapshot> {
    snapshot_of(&story_engine(), false)
}

pub fn app_for(snapshot: Arc<Snapshot>) -> App {
    App::new(
        Keymap::default(),
        snapshot,
        FixedOffset::east_opt(0).unwrap(),
    )
}

pub fn story_app() -> App {
    app_for(story_snapshot())
}

/// The whole screen at `width` x `height`.
pub fn render_screen(app: &mut App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| incident_console::tui::render::draw(frame, app))
        .unwrap();
    terminal
}

/// One pane alone at `width` x `height`.
pub fn render_pane(
    app: &mut App,
    pane: incident_console::tui::Pane,
    width: u16,
    height: u16,
) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| incident_console::tui::render::draw_pane(frame, pane, app))
        .unwrap();
    terminal
}

/// The buffer as lines of text.
pub fn lines(buffer: &Buffer) -> Vec<String> {
    let area = buffer.area;
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

pub fn text(buffer: &Buffer) -> String {
    lines(buffer).join("\n")
}

/// Where `needle` starts in the buffer (column, row), scanning rows top to bottom.
pub fn find(buffer: &Buffer, needle: &str) -> Option<(u16, u16)> {
    let area = buffer.area;
    for y in 0..area.height {
        let cells: Vec<&str> = (0..area.width).map(|x| buffer[(x, y)].symbol()).collect();
        let row: String = cells.concat();
        if let Some(byte) = row.find(needle) {
            // Map the byte offset back to a column.
            let mut offset = 0;
            for (x, symbol) in cells.iter().enumerate() {
                if offset == byte {
                    return Some((x as u16, y));
                }
                offset += symbol.len();
            }
        }
    }
    None
}

/// The style of the cell where `needle` starts.
pub fn style_at(buffer: &Buffer, needle: &str) -> Style {
    let (x, y) = find(buffer, needle)
        .unwrap_or_else(|| panic!("`{needle}` is not on screen:\n{}", text(buffer)));
    buffer[(x, y)].style()
}

/// The row of text containing `needle`.
pub fn row_with(buffer: &Buffer, needle: &str) -> String {
    let (_, y) = find(buffer, needle)
        .unwrap_or_else(|| panic!("`{needle}` is not on screen:\n{}", text(buffer)));
    lines(buffer)[y as usize].clone()
}
