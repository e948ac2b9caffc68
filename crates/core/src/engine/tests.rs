use std::time::Duration;

use chrono::TimeZone;

use super::*;
use crate::escalation::EscalationLevel;
use crate::event::{
    AssignmentChanged, AttachmentUploaded, CommentAdded, EscalationTriggered, IncidentCreated,
    StatusUpdated,
};

fn t(seconds: i64) -> Timestamp {
    chrono::Utc
        .timestamp_opt(1_700_000_000 + seconds, 0)
        .unwrap()
}

fn engine() -> Engine {
    Engine::new(EngineConfig {
        policy: EscalationPolicy {
            levels: vec![
                EscalationLevel {
                    name: "on-call".into(),
                    timeout: Duration::from_secs(60),
                },
                EscalationLevel {
                    name: "manager".into(),
                    timeout: Duration::from_secs(60),
                },
            ],
            repeat_interval: Duration::from_secs(60),
            max_repeats: 1,
        },
        feed_capacity: 3,
        max_tracked_incidents: 100,
        max_raw_in_feed: 32,
        ..EngineConfig::default()
    })
}

fn created(id: IncidentId, priority: Priority) -> IncidentEvent {
    IncidentEvent::IncidentCreated(IncidentCreated {
        incident_id: id,
        title: format!("incident {id}"),
        priority,
        status: Status::Open,
        category: "hardware".into(),
        reported_by: "john.doe".into(),
        assigned_to: Some("jane.smith".into()),
        created_at: t(0),
    })
}

fn status(id: IncidentId, old: Status, new: Status, at: i64) -> IncidentEvent {
    IncidentEvent::StatusUpdated(StatusUpdated {
        incident_id: id,
        title: format!("incident {id}"),
        old_status: old,
        new_status: new,
        priority: Priority::High,
        assigned_to: Some("jane.smith".into()),
        updated_at: t(at),
    })
}

fn apply_event(engine: &mut Engine, event: IncidentEvent, now: i64) -> Vec<Effect> {
    engine.apply(
        Input::Event {
            event,
            source: None,
            raw: Arc::from("{}"),
        },
        t(now),
    )
}

/// A compact description of effects, so tables read like the workflow.
fn describe(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .map(|effect| match effect {
            Effect::Notify(n) => {
                let who = match &n.audience {
                    Audience::Administrators => "admins".to_string(),
                    Audience::User { name } => name.clone(),
                    Audience::EscalationLevel { level } => format!("level{level}"),
                };
                format!("notify {} {who}", n.kind.as_str())
            }
            Effect::Escalation(change) => match change {
                EscalationChange::Opened { level, .. } => format!("escalation opened L{level}"),
                EscalationChange::Raised { to_level, .. } => {
                    format!("escalation raised L{to_level}")
                }
                EscalationChange::Repeated { repeat, .. } => {
                    format!("escalation repeated #{repeat}")
                }
                EscalationChange::Exhausted { .. } => "escalation exhausted".into(),
                EscalationChange::Acknowledged { by, .. } => {
                    format!("escalation acknowledged by {by}")
                }
                EscalationChange::Closed { acknowledged, .. } => {
                    format!("escalation closed acknowledged={acknowledged}")
                }
                EscalationChange::Unacknowledged { level, .. } => {
                    format!("escalation unacknowledged L{level}")
                }
            },
            Effect::IncidentResolved {
                time_to_resolve_secs,
                ..
            } => format!("resolved ttr={time_to_resolve_secs:?}"),
            Effect::AcknowledgeRejected { .. } => "acknowledge rejected".into(),
            Effect::Held {
                notification,
                silence_id,
                ..
            } => format!("held {} by {silence_id}", notification.kind.as_str()),
            Effect::SilenceSet(view) => format!("silence set {}", view.id),
            Effect::SilenceEnded { id, by } => format!("silence ended {id} by {by:?}"),
            Effect::SilenceRejected { reason } => format!("silence rejected: {reason}"),
        })
        .collect()
}

#[test]
fn incident_created_notifies_admins_and_escalates_by_priority() {
    let table = [
        (Priority::Low, vec!["notify incident_created admins"]),
        (Priority::Medium, vec!["notify incident_created admins"]),
        (
            Priority::High,
            vec![
                "notify incident_created admins",
                "escalation opened L1",
                "notify escalation level1",
            ],
        ),
        (
            Priority::Critical,
            vec![
                "notify incident_created admins",
                "escalation opened L1",
                "notify escalation level1",
            ],
        ),
    ];
    for (priority, expected) in table {
        let mut engine = engine();
        let effects = apply_event(&mut engine, created(1, priority), 0);
        assert_eq!(describe(&effects), expected, "{priority}");
    }
}

#[test]
fn status_updates_notify_the_assignee_and_resolution_runs_the_workflow() {
    let table: Vec<(IncidentEvent, Vec<&str>)> = vec![
        (
            status(1, Status::Open, Status::InProgress, 30),
            vec!["notify status_changed jane.smith"],
        ),
        (
            status(1, Status::InProgress, Status::Resolved, 90),
            vec![
                "notify status_changed jane.smith",
                "escalation closed acknowledged=false",
                "resolved ttr=Some(90.0)",
                "notify resolved admins",
                "notify resolved level1",
            ],
        ),
        // Closing after resolving is not a second resolution.
        (
            status(1, Status::Resolved, Status::Closed, 120),
            vec!["notify status_changed jane.smith"],
        ),
    ];
    let mut engine = engine();
    apply_event(&mut engine, created(1, Priority::High), 0);
    for (event, expected) in table {
        assert_eq!(describe(&apply_event(&mut engine, event, 1)), expected);
    }
    assert!(engine.escalations().is_empty());
    let metrics = engine.snapshot(t(200)).metrics;
    assert_eq!(metrics.resolved, 1);
    assert_eq!(metrics.time_to_resolve.mean_secs, Some(90.0));
}

#[test]
fn resolution_of_an_unknown_incident_has_no_time_to_resolve() {
    let mut engine = engine();
    let effects = apply_event(&mut engine, status(5, Status::Open, Status::Closed, 10), 10);
    assert_eq!(
        describe(&effects),
        vec![
            "notify status_changed jane.smith",
            "resolved ttr=None",
            "notify resolved admins"
        ]
    );
}

#[test]
fn unassigned_status_change_notifies_nobody_in_particular() {
    let mut engine = engine();
    let IncidentEvent::StatusUpdated(mut update) = status(1, Status::Open, Status::InProgress, 1)
    else {
        unreachable!()
    };
    update.assigned_to = None;
    let effects = apply_event(&mut engine, IncidentEvent::StatusUpdated(update), 1);
    assert!(effects.is_empty());
}

#[test]
fn reopening_a_high_incident_pages_again() {
    let mut engine = engine();
    apply_event(&mut engine, created(1, Priority::High), 0);
    apply_event(
        &mut engine,
        status(1, Status::Open, Status::Resolved, 10),
        10,
    );
    let effects = apply_event(
        &mut engine,
        status(1, Status::Resolved, Status::Open, 20),
        20,
    );
    assert_eq!(
        describe(&effects),
        vec![
            "notify status_changed jane.smith",
            "escalation opened L1",
            "notify escalation level1"
        ]
    );
}

#[test]
fn assignment_comment_attachment_and_triggered_escalation() {
    let assignment = IncidentEvent::AssignmentChanged(AssignmentChanged {
        incident_id: 1,
        title: "t".into(),
        priority: Priority::Medium,
        old_assignee: None,
        new_assignee: "bob".into(),
        changed_by: "alice".into(),
        updated_at: t(5),
    });
    let comment = IncidentEvent::CommentAdded(CommentAdded {
        incident_id: 1,
        title: "t".into(),
        author: "bob".into(),
        comment: "looking".into(),
        created_at: t(6),
    });
    let attachment = IncidentEvent::AttachmentUploaded(AttachmentUploaded {
        incident_id: 1,
        title: "t".into(),
        filename: "trace.log".into(),
        size_bytes: 10,
        content_type: "text/plain".into(),
        uploaded_by: "bob".into(),
        uploaded_at: t(7),
    });
    let triggered = |level, priority| {
        IncidentEvent::EscalationTriggered(EscalationTriggered {
            incident_id: 1,
            title: "t".into(),
            priority,
            level,
            reason: "customer impact".into(),
            triggered_by: "alice".into(),
            triggered_at: t(8),
        })
    };
    let table: Vec<(IncidentEvent, Vec<&str>)> = vec![
        (assignment, vec!["notify assignment_changed bob"]),
        (comment, vec![]),
        (attachment, vec![]),
        (triggered(1, Priority::Low), vec![]),
        (
            triggered(2, Priority::Critical),
            vec!["escalation opened L2", "notify escalation level2"],
        ),
        (triggered(2, Priority::Critical), vec![]),
        (
            triggered(3, Priority::Critical),
            vec!["escalation raised L3", "notify escalation level3"],
        ),
    ];
    let mut engine = engine();
    for (event, expected) in table {
        let name = event.event_type();
        assert_eq!(
            describe(&apply_event(&mut engine, event, 8)),
            expected,
            "{name}"
        );
    }
}

#[test]
fn escalation_timeline_with_acknowledgement() {
    let mut engine = engine();
    apply_event(&mut engine, created(1, Priority::Critical), 0);
    let steps: Vec<(Input, i64, Vec<&str>)> = vec![
        (Input::Tick, 59, vec![]),
        (
            Input::Tick,
            60,
            vec!["escalation raised L2", "notify escalation level2"],
        ),
        (
            Input::Tick,
            120,
            vec!["escalation repeated #1", "notify escalation level2"],
        ),
        (
            Input::Acknowledge {
                incident_id: 1,
                by: "alice".into(),
            },
            150,
            vec![
                "escalation acknowledged by alice",
                "notify escalation_acknowledged level2",
            ],
        ),
        (Input::Tick, 1000, vec![]),
        (
            Input::Acknowledge {
                incident_id: 1,
                by: "bob".into(),
            },
            1001,
            vec!["acknowledge rejected"],
        ),
        (
            Input::Acknowledge {
                incident_id: 99,
                by: "bob".into(),
            },
            1002,
            vec!["acknowledge rejected"],
        ),
    ];
    for (input, at, expected) in steps {
        let label = format!("{input:?} at {at}");
        assert_eq!(describe(&engine.apply(input, t(at))), expected, "{label}");
    }
    let snapshot = engine.snapshot(t(1002));
    assert_eq!(snapshot.metrics.acknowledged, 1);
    assert_eq!(snapshot.metrics.time_to_acknowledge.mean_secs, Some(150.0));
    let ack = snapshot.escalations[0]
        .escalation
        .acknowledged
        .clone()
        .unwrap();
    assert_eq!((ack.by.as_str(), ack.at), ("alice", t(150)));
}

#[test]
fn unacknowledged_escalation_exhausts_after_repeats() {
    let mut engine = engine();
    apply_event(&mut engine, created(1, Priority::High), 0);
    let mut all = Vec::new();
    for at in [60, 120, 180, 240] {
        all.extend(describe(&engine.apply(Input::Tick, t(at))));
    }
    assert_eq!(
        all,
        vec![
            "escalation raised L2",
            "notify escalation level2",
            "escalation repeated #1",
            "notify escalation level2",
            "escalation exhausted"
        ]
    );
}

#[test]
fn dedup_keys_are_stable_for_redelivery_and_differ_per_state() {
    let mut first = engine();
    let mut second = engine();
    let keys = |effects: Vec<Effect>| -> Vec<String> {
        effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Notify(n) => Some(n.dedup_key),
                _ => None,
            })
            .collect()
    };
    let a = keys(apply_event(&mut first, created(1, Priority::High), 0));
    let b = keys(apply_event(&mut second, created(1, Priority::High), 0));
    assert_eq!(a, b);
    let progress = keys(apply_event(
        &mut first,
        status(1, Status::Open, Status::InProgress, 5),
        5,
    ));
    let back = keys(apply_event(
        &mut first,
        status(1, Status::InProgress, Status::Open, 6),
        6,
    ));
    let again = keys(apply_event(
        &mut first,
        status(1, Status::Open, Status::InProgress, 7),
        7,
    ));
    assert_ne!(progress[0], again[0]);
    assert_ne!(progress[0], back[0]);
}

#[test]
fn rejected_payloads_count_by_reason_and_enter_the_feed() {
    let mut engine = engine();
    let effects = engine.apply(
        Input::Rejected {
            error: DecodeError::Empty,
            source: Some(SourceRef {
                topic: "t".into(),
                partition: 0,
                offset: 4,
            }),
            raw: Arc::from(""),
        },
        t(0),
    );
    assert!(effects.is_empty());
    let snapshot = engine.snapshot(t(0));
    assert_eq!(snapshot.metrics.decode_failures.get("empty"), Some(&1));
    assert_eq!(snapshot.feed[0].error.as_deref(), Some("empty payload"));
    assert_eq!(snapshot.feed[0].source.as_ref().unwrap().offset, 4);
}

#[test]
fn feed_is_bounded_newest_first_and_raw_is_truncated() {
    let mut engine = engine();
    for id in 1..=5 {
        engine.apply(
            Input::Event {
                event: created(id, Priority::Low),
                source: None,
                raw: Arc::from("x".repeat(100)),
            },
            t(id),
        );
    }
    let snapshot = engine.snapshot(t(10));
    let ids: Vec<_> = snapshot
        .feed
        .iter()
        .map(|e| e.incident_id.unwrap())
        .collect();
    assert_eq!(ids, vec![5, 4, 3]);
    assert_eq!(snapshot.feed_total, 5);
    assert_eq!(snapshot.feed[0].seq, 5);
    assert!(snapshot.feed[0].raw.starts_with(&"x".repeat(32)));
    assert!(snapshot.feed[0].raw.ends_with("(100 bytes in all)"));
}

#[test]
fn snapshot_orders_unacknowledged_first() {
    let mut engine = engine();
    apply_event(&mut engine, created(1, Priority::High), 0);
    apply_event(&mut engine, created(2, Priority::Critical), 1);
    apply_event(&mut engine, created(3, Priority::High), 2);
    engine.apply(
        Input::Acknowledge {
            incident_id: 2,
            by: "a".into(),
        },
        t(3),
    );
    let order: Vec<_> = engine
        .snapshot(t(4))
        .escalations
        .iter()
        .map(|e| e.escalation.incident_id)
        .collect();
    assert_eq!(order, vec![1, 3, 2]);
}

#[test]
fn tracked_incidents_are_bounded() {
    let mut engine = Engine::new(EngineConfig {
        max_tracked_incidents: 10,
        ..EngineConfig::default()
    });
    for id in 1..=50 {
        apply_event(&mut engine, created(id, Priority::Low), 0);
    }
    assert_eq!(engine.snapshot(t(0)).tracked_incidents, 10);
}

#[test]
fn durations_format_compactly() {
    assert_eq!(format_duration(42.0), "42s");
    assert_eq!(format_duration(303.0), "5m 03s");
    assert_eq!(format_duration(3720.0), "1h 02m");
    assert_eq!(format_duration(-1.0), "0s");
}

/// A team console's engine shows the active worker's escalations: events and ticks leave its
/// book alone (it would otherwise page on its own clock), mirrored changes set and close them.
#[test]
fn a_follower_mirrors_escalations_and_never_steps_them_itself() {
    let mut worker = engine();
    apply_event(&mut worker, created(1, Priority::High), 0);
    let held = worker.escalations().get(1).cloned().unwrap();

    let mut console = Engine::follower(engine().config.clone());
    let effects = apply_event(&mut console, created(1, Priority::High), 0);
    assert!(
        !describe(&effects)
            .iter()
            .any(|e| e.starts_with("escalation")),
        "{effects:?}"
    );
    assert!(console.escalations().is_empty());

    console.mirror_escalation(1, Some(held.clone()));
    assert_eq!(console.escalations().get(1), Some(&held));
    // Past the level's timeout: the worker raises it, the follower waits to be told.
    assert!(console.apply(Input::Tick, t(120)).is_empty());
    assert_eq!(console.escalations().get(1).map(|e| e.level), Some(1));
    worker.apply(Input::Tick, t(120));
    let raised = worker.escalations().get(1).cloned();
    console.mirror_escalation(1, raised);
    assert_eq!(console.escalations().get(1).map(|e| e.level), Some(2));

    // A resolution closes it only when the worker's close arrives.
    apply_event(
        &mut console,
        status(1, Status::Open, Status::Resolved, 130),
        130,
    );
    assert_eq!(console.escalations().len(), 1);
    console.mirror_escalation(1, None);
    assert!(console.escalations().is_empty());
}

#[path = "oncall_tests.rs"]
mod oncall_tests;
