//! The on-call workflow on a controlled clock: schedule-driven pages, silences, ack timeout.

use chrono::NaiveDateTime;

use super::*;
use crate::escalation::EscalationLevel;
use crate::oncall::{Layer, Person, RotationLength, Schedule};
use crate::silence::SilenceOrigin;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn people() -> BTreeMap<String, Person> {
    ["alice", "bob"]
        .into_iter()
        .map(|name| {
            (
                name.to_string(),
                Person {
                    email: Some(format!("{name}@example.com")),
                    sms: Some("+15550100".into()),
                    slack: Some(format!("@{name}")),
                },
            )
        })
        .collect()
}

/// One level paging the "primary" schedule (alice, then bob, daily at 09:00 UTC), repeated
/// every 10 minutes.
fn config(ack_timeout: Option<Duration>, planned: Vec<Silence>) -> EngineConfig {
    EngineConfig {
        policy: EscalationPolicy {
            levels: vec![EscalationLevel {
                name: "on-call".into(),
                timeout: Duration::from_secs(600),
            }],
            repeat_interval: Duration::from_secs(600),
            max_repeats: 10,
        },
        oncall: OnCall {
            people: people(),
            schedules: vec![Schedule {
                name: "primary".into(),
                time_zone: chrono_tz::UTC,
                layers: vec![Layer {
                    name: "daily".into(),
                    people: vec!["alice".into(), "bob".into()],
                    start: NaiveDateTime::parse_from_str("2026-12-01T09:00", "%Y-%m-%dT%H:%M")
                        .unwrap(),
                    end: None,
                    length: RotationLength::Days(1),
                }],
                overrides: Vec::new(),
            }],
            levels: [(1, "primary".to_string())].into_iter().collect(),
            ack_timeout,
        },
        planned_silences: planned,
        ..EngineConfig::default()
    }
}

fn created(id: IncidentId, priority: Priority, category: &str, when: &str) -> Input {
    Input::Event {
        event: IncidentEvent::IncidentCreated(crate::event::IncidentCreated {
            incident_id: id,
            title: format!("incident {id}"),
            priority,
            status: Status::Open,
            category: category.into(),
            reported_by: "john.doe".into(),
            assigned_to: None,
            created_at: at(when),
        }),
        source: None,
        raw: Arc::from("{}"),
    }
}

fn pages(effects: &[Effect]) -> Vec<(IncidentId, String)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Notify(n) if n.kind == NotificationKind::Escalation => Some((
                n.incident_id,
                n.fields.get("on_call").cloned().unwrap_or_default(),
            )),
            _ => None,
        })
        .collect()
}

fn held(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter(|e| matches!(e, Effect::Held { .. }))
        .count()
}

#[test]
fn a_page_goes_to_whoever_is_on_call_when_its_step_fires() {
    let mut engine = Engine::new(config(None, Vec::new()));
    // Day 2 of the rotation: bob until 09:00 on 3 December, then alice.
    let effects = engine.apply(
        created(1, Priority::High, "db", "2026-12-03T08:55:00Z"),
        at("2026-12-03T08:55:00Z"),
    );
    assert_eq!(pages(&effects), vec![(1, "bob".to_string())]);
    let page = effects
        .iter()
        .find_map(|e| match e {
            Effect::Notify(n) if n.kind == NotificationKind::Escalation => Some(n),
            _ => None,
        })
        .unwrap();
    assert_eq!(page.fields["schedule"], "primary");
    assert_eq!(page.fields["on_call_email"], "bob@example.com");
    assert_eq!(page.fields["on_call_slack"], "@bob");
    // The repeat falls due at 09:05, after the handoff: it pages alice.
    assert!(pages(&engine.apply(Input::Tick, at("2026-12-03T09:04:59Z"))).is_empty());
    let repeat = engine.apply(Input::Tick, at("2026-12-03T09:05:00Z"));
    assert_eq!(pages(&repeat), vec![(1, "alice".to_string())]);
    // The snapshot says who is on call, until when, and who is next.
    let snapshot = engine.snapshot(at("2026-12-03T09:05:00Z"));
    assert_eq!(snapshot.on_call.len(), 1);
    assert_eq!(snapshot.on_call[0].on_call.as_deref(), Some("alice"));
    assert_eq!(snapshot.on_call[0].until, Some(at("2026-12-04T09:00:00Z")));
    assert_eq!(snapshot.on_call[0].next.as_deref(), Some("bob"));
}

#[test]
fn an_acknowledgement_times_out_and_pages_its_level_again() {
    let mut engine = Engine::new(config(Some(Duration::from_secs(1800)), Vec::new()));
    engine.apply(
        created(1, Priority::Critical, "db", "2026-12-01T10:00:00Z"),
        at("2026-12-01T10:00:00Z"),
    );
    engine.apply(
        Input::Acknowledge {
            incident_id: 1,
            by: "alice".into(),
        },
        at("2026-12-01T10:01:00Z"),
    );
    assert!(
        engine
            .apply(Input::Tick, at("2026-12-01T10:30:59Z"))
            .is_empty()
    );
    let timed_out = engine.apply(Input::Tick, at("2026-12-01T10:31:00Z"));
    assert!(timed_out.iter().any(|e| matches!(
        e,
        Effect::Escalation(EscalationChange::Unacknowledged {
            cause: UnacknowledgeCause::AckTimeout,
            level: 1,
            ..
        })
    )));
    assert_eq!(pages(&timed_out), vec![(1, "alice".to_string())]);
    assert!(engine.escalations().get(1).unwrap().acknowledged.is_none());
    // Once: the next tick does nothing; the level's timeout then runs as for any page.
    assert!(
        engine
            .apply(Input::Tick, at("2026-12-01T10:31:01Z"))
            .is_empty()
    );
    let repeat = engine.apply(Input::Tick, at("2026-12-01T10:41:00Z"));
    assert_eq!(pages(&repeat), vec![(1, "alice".to_string())]);
}

#[test]
fn ack_timeout_is_off_by_default() {
    let mut engine = Engine::new(config(None, Vec::new()));
    engine.apply(
        created(1, Priority::Critical, "db", "2026-12-01T10:00:00Z"),
        at("2026-12-01T10:00:00Z"),
    );
    engine.apply(
        Input::Acknowledge {
            incident_id: 1,
            by: "alice".into(),
        },
        at("2026-12-01T10:01:00Z"),
    );
    assert!(
        engine
            .apply(Input::Tick, at("2027-01-01T00:00:00Z"))
            .is_empty()
    );
}

#[test]
fn unacknowledging_from_the_console_pages_at_once() {
    let mut engine = Engine::new(config(None, Vec::new()));
    engine.apply(
        created(1, Priority::High, "db", "2026-12-01T10:00:00Z"),
        at("2026-12-01T10:00:00Z"),
    );
    let unack = Input::Unacknowledge {
        incident_id: 1,
        by: "carol".into(),
    };
    let refused = engine.apply(unack.clone(), at("2026-12-01T10:00:30Z"));
    assert!(matches!(refused[..], [Effect::AcknowledgeRejected { .. }]));
    engine.apply(
        Input::Acknowledge {
            incident_id: 1,
            by: "alice".into(),
        },
        at("2026-12-01T10:01:00Z"),
    );
    let effects = engine.apply(unack, at("2026-12-01T10:02:00Z"));
    assert_eq!(pages(&effects), vec![(1, "alice".to_string())]);
    let page = effects
        .iter()
        .find_map(|e| match e {
            Effect::Notify(n) if n.kind == NotificationKind::Escalation => Some(n),
            _ => None,
        })
        .unwrap();
    assert_eq!(page.fields["reason"], "unacknowledged by carol");
    assert_eq!(
        engine.escalations().get(1).unwrap().next_step_at,
        Some(at("2026-12-01T10:12:00Z"))
    );
}

fn window(start: &str, end: &str, matcher: Matcher) -> Silence {
    Silence {
        id: "failover".into(),
        matcher,
        reason: "planned database failover".into(),
        created_by: "config".into(),
        origin: SilenceOrigin::Config,
        start: at(start),
        end: at(end),
        recurrence: None,
    }
}

#[test]
fn a_window_holds_matching_notifications_and_releases_one_page_when_it_ends() {
    let matcher = Matcher {
        categories: vec!["database".into()],
        ..Matcher::default()
    };
    let planned = window("2026-12-02T02:00:00Z", "2026-12-02T03:00:00Z", matcher);
    let mut engine = Engine::new(config(None, vec![planned]));
    // Incident 1 opened before the window: paged; its repeats fall due inside the window.
    let before = engine.apply(
        created(1, Priority::High, "Database", "2026-12-02T01:55:00Z"),
        at("2026-12-02T01:55:00Z"),
    );
    assert_eq!(pages(&before).len(), 1);
    // Inside: incident 2 (database) is held entirely, incident 3 (network) goes through.
    let matching = engine.apply(
        created(2, Priority::Critical, "database", "2026-12-02T02:10:00Z"),
        at("2026-12-02T02:10:00Z"),
    );
    assert_eq!(pages(&matching), vec![]);
    assert_eq!(held(&matching), 2, "the admin mail and the page");
    assert!(matching.iter().any(|e| matches!(e, Effect::Escalation(_))));
    let other = engine.apply(
        created(3, Priority::High, "network", "2026-12-02T02:10:00Z"),
        at("2026-12-02T02:10:00Z"),
    );
    assert_eq!(pages(&other).len(), 1);
    assert_eq!(held(&other), 0);
    engine.apply(
        Input::Acknowledge {
            incident_id: 3,
            by: "bob".into(),
        },
        at("2026-12-02T02:11:00Z"),
    );
    // Ticks inside the window: 1's repeat (due 02:05) and 2's (due 02:20) do not happen.
    for minute in 0..60 {
        let now = at("2026-12-02T02:00:00Z") + TimeDelta::minutes(minute);
        let effects = engine.apply(Input::Tick, now);
        assert!(pages(&effects).is_empty(), "{now}: {effects:?}");
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::Escalation(_))),
            "{now}"
        );
    }
    let snapshot = engine.snapshot(at("2026-12-02T02:30:00Z"));
    let mark = snapshot
        .escalations
        .iter()
        .find(|e| e.escalation.incident_id == 2)
        .and_then(|e| e.silenced.clone())
        .expect("shown, marked silenced");
    assert_eq!(mark.by, "config");
    assert_eq!(mark.until, at("2026-12-02T03:00:00Z"));
    // The end: one page each for 1 and 2 (still open, unacknowledged), none for 3.
    let released = engine.apply(Input::Tick, at("2026-12-02T03:00:00Z"));
    let mut paged = pages(&released);
    paged.sort();
    assert_eq!(
        paged,
        vec![(1, "alice".to_string()), (2, "alice".to_string())],
        "{released:?}"
    );
    assert!(
        released
            .iter()
            .any(|e| matches!(e, Effect::SilenceEnded { by: None, .. }))
    );
    assert!(pages(&engine.apply(Input::Tick, at("2026-12-02T03:00:01Z"))).is_empty());
    // Then the level's timeout runs again from the release.
    let next = engine.apply(Input::Tick, at("2026-12-02T03:10:00Z"));
    assert_eq!(pages(&next).len(), 2);
}

#[test]
fn an_incident_acknowledged_during_its_silence_is_not_paged_at_the_end() {
    let mut engine = Engine::new(config(None, Vec::new()));
    engine.apply(
        created(1, Priority::High, "db", "2026-12-01T10:00:00Z"),
        at("2026-12-01T10:00:00Z"),
    );
    let set = engine.apply(
        Input::Silence {
            matcher: Matcher {
                incident_ids: vec![1],
                ..Matcher::default()
            },
            start: at("2026-12-01T10:01:00Z"),
            end: at("2026-12-01T10:16:00Z"),
            reason: "looking into it".into(),
            by: "alice".into(),
        },
        at("2026-12-01T10:01:00Z"),
    );
    assert!(matches!(&set[..], [Effect::SilenceSet(view)] if view.id == "s1" && view.active));
    assert!(pages(&engine.apply(Input::Tick, at("2026-12-01T10:10:00Z"))).is_empty());
    let ack = engine.apply(
        Input::Acknowledge {
            incident_id: 1,
            by: "alice".into(),
        },
        at("2026-12-01T10:12:00Z"),
    );
    assert_eq!(held(&ack), 1, "the acknowledgement notice is held too");
    assert!(pages(&engine.apply(Input::Tick, at("2026-12-01T10:16:00Z"))).is_empty());
}

#[test]
fn ending_a_silence_early_releases_at_once() {
    let mut engine = Engine::new(config(None, Vec::new()));
    engine.apply(
        Input::Silence {
            matcher: Matcher::default(),
            start: at("2026-12-01T10:00:00Z"),
            end: at("2026-12-01T14:00:00Z"),
            reason: "deploy".into(),
            by: "alice".into(),
        },
        at("2026-12-01T10:00:00Z"),
    );
    let quiet = engine.apply(
        created(1, Priority::High, "db", "2026-12-01T10:05:00Z"),
        at("2026-12-01T10:05:00Z"),
    );
    assert!(pages(&quiet).is_empty());
    let unknown = engine.apply(
        Input::EndSilence {
            id: "s9".into(),
            by: "alice".into(),
        },
        at("2026-12-01T10:06:00Z"),
    );
    assert!(matches!(unknown[..], [Effect::SilenceRejected { .. }]));
    let ended = engine.apply(
        Input::EndSilence {
            id: "s1".into(),
            by: "alice".into(),
        },
        at("2026-12-01T10:30:00Z"),
    );
    assert_eq!(pages(&ended), vec![(1, "alice".to_string())]);
    assert!(
        engine
            .snapshot(at("2026-12-01T10:30:00Z"))
            .silences
            .is_empty()
    );
}
