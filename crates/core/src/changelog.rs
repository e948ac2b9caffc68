//! What one `Engine::apply` changed that must outlive the process: the engine's changelog.
//!
//! The engine's effects say what to *do* (page, log, show); the changelog says what *changed*
//! in the state a restart or a successor must find again: an escalation with its state after
//! the change, a notification decided, one a silence held, a silence set or ended. The
//! runtime builds it once per `apply` (`Engine::changelog`) and hands the same entries to
//! every store of state through one interface, `ChangeSink`: the journal (SQLite) and, in
//! team mode, `<topic>.state`. Neither store decides for itself which effects matter.

use serde::Serialize;

use crate::engine::{Effect, Notification};
use crate::escalation::{Escalation, EscalationBook, EscalationChange};
use crate::event::{IncidentId, Timestamp};
use crate::silence::SilenceView;

/// One entry of the changelog.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An escalation changed; `after` is the escalation as it stands after the change, `None`
    /// once it is closed (a store then forgets it).
    Escalation {
        change: EscalationChange,
        after: Option<Escalation>,
    },
    /// The engine decided on a notification: owed until the notifier routes it.
    Decided(Notification),
    /// A notification a silence holds back until `until`.
    Held {
        notification: Notification,
        silence_id: String,
        until: Timestamp,
    },
    /// An operator's silence was set (or replaced).
    SilenceSet(Box<SilenceView>),
    /// A silence ended early (`by` someone) or ran out.
    SilenceEnded { id: String, by: Option<String> },
}

/// What one `Engine::apply` at `at` changed, in the order it happened.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Changelog {
    pub at: Timestamp,
    pub changes: Vec<Change>,
}

impl Changelog {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Whether a changelog carries the notifications decided. With no notification channel
/// configured nothing can be owed, so no store keeps them, and they are left out as the log is
/// made rather than cloned and dropped (a notification is a map of formatted strings, and a
/// drain decides one for most events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decisions {
    Kept,
    Left,
}

/// A store of state that takes the changelog: the journal and `<topic>.state` are the two.
/// It keeps what it stores, in order, and ignores the rest; it must not block (a store that
/// waits on I/O hands the entries to its own thread or task).
pub trait ChangeSink {
    fn record(&mut self, log: &Changelog);
}

/// The changelog of `effects`, which one `apply` returned at `at`, with each escalation's
/// state read from `book` after that call. Effects that change no stored state (a resolved
/// incident's figures, a refused acknowledgement or silence) have no entry.
pub fn of_effects(effects: &[Effect], book: &EscalationBook, at: Timestamp) -> Changelog {
    of_effects_with(effects, book, at, Decisions::Kept)
}

/// As `of_effects`, with the notifications decided only when `decisions` is `Kept`.
pub fn of_effects_with(
    effects: &[Effect],
    book: &EscalationBook,
    at: Timestamp,
    decisions: Decisions,
) -> Changelog {
    let changes = effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Escalation(change) => Some(Change::Escalation {
                after: match change {
                    EscalationChange::Closed { .. } => None,
                    _ => book.get(change.incident_id()).cloned(),
                },
                change: change.clone(),
            }),
            Effect::Notify(notification) => {
                (decisions == Decisions::Kept).then(|| Change::Decided(notification.clone()))
            }
            Effect::Held {
                notification,
                silence_id,
                until,
            } => Some(Change::Held {
                notification: notification.clone(),
                silence_id: silence_id.clone(),
                until: *until,
            }),
            Effect::SilenceSet(view) => Some(Change::SilenceSet(view.clone())),
            Effect::SilenceEnded { id, by } => Some(Change::SilenceEnded {
                id: id.clone(),
                by: by.clone(),
            }),
            Effect::IncidentResolved { .. }
            | Effect::AcknowledgeRejected { .. }
            | Effect::SilenceRejected { .. } => None,
        })
        .collect();
    Changelog { at, changes }
}

/// What kind of change an escalation went through: the name the journal's `change` column
/// and the state topic's `change` field carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationChangeKind {
    Opened,
    Raised,
    Repeated,
    Exhausted,
    Acknowledged,
    Closed,
    Unacknowledged,
}

impl EscalationChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Raised => "raised",
            Self::Repeated => "repeated",
            Self::Exhausted => "exhausted",
            Self::Acknowledged => "acknowledged",
            Self::Closed => "closed",
            Self::Unacknowledged => "unacknowledged",
        }
    }
}

impl EscalationChange {
    pub fn incident_id(&self) -> IncidentId {
        match self {
            Self::Opened { incident_id, .. }
            | Self::Raised { incident_id, .. }
            | Self::Repeated { incident_id, .. }
            | Self::Exhausted { incident_id, .. }
            | Self::Acknowledged { incident_id, .. }
            | Self::Closed { incident_id, .. }
            | Self::Unacknowledged { incident_id, .. } => *incident_id,
        }
    }

    pub fn kind(&self) -> EscalationChangeKind {
        use EscalationChangeKind as K;
        match self {
            Self::Opened { .. } => K::Opened,
            Self::Raised { .. } => K::Raised,
            Self::Repeated { .. } => K::Repeated,
            Self::Exhausted { .. } => K::Exhausted,
            Self::Acknowledged { .. } => K::Acknowledged,
            Self::Closed { .. } => K::Closed,
            Self::Unacknowledged { .. } => K::Unacknowledged,
        }
    }

    /// The level the escalation is at after the change.
    pub fn level(&self) -> u32 {
        match self {
            Self::Raised { to_level, .. } => *to_level,
            Self::Opened { level, .. }
            | Self::Repeated { level, .. }
            | Self::Exhausted { level, .. }
            | Self::Acknowledged { level, .. }
            | Self::Closed { level, .. }
            | Self::Unacknowledged { level, .. } => *level,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, EngineConfig, Input};
    use crate::event::{IncidentCreated, IncidentEvent, Priority, Status};

    fn at(seconds: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn created(id: IncidentId) -> Input {
        Input::Event {
            event: IncidentEvent::IncidentCreated(IncidentCreated {
                incident_id: id,
                title: format!("incident {id}"),
                priority: Priority::Critical,
                status: Status::Open,
                category: "hardware".into(),
                reported_by: "john.doe".into(),
                assigned_to: None,
                created_at: at(0),
            }),
            source: None,
            raw: "{}".into(),
        }
    }

    #[test]
    fn an_opened_escalation_is_logged_with_its_state_after_and_a_closed_one_without() {
        let mut engine = Engine::new(EngineConfig::default());
        let effects = engine.apply(created(7), at(0));
        let log = of_effects(&effects, engine.escalations(), at(0));
        let opened = log
            .changes
            .iter()
            .find_map(|c| match c {
                Change::Escalation { change, after } => Some((change, after)),
                _ => None,
            })
            .expect("a critical incident opens an escalation");
        assert_eq!(opened.0.kind(), EscalationChangeKind::Opened);
        assert_eq!(opened.0.incident_id(), 7);
        let after = opened.1.as_ref().expect("the state after the change");
        assert_eq!(after.incident_id, 7);
        assert_eq!(after.level, opened.0.level());
        // Every notification the engine decided is in the log, in the effects' order.
        let decided: Vec<_> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Notify(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        let logged: Vec<_> = log
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Decided(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(logged, decided);
        let left = of_effects_with(&effects, engine.escalations(), at(0), Decisions::Left);
        assert!(!left.changes.iter().any(|c| matches!(c, Change::Decided(_))));
        assert_eq!(
            left.changes.len(),
            log.changes.len() - decided.len(),
            "only the decisions are left out"
        );

        let closed = of_effects(
            &[Effect::Escalation(EscalationChange::Closed {
                incident_id: 7,
                level: 1,
                acknowledged: false,
            })],
            engine.escalations(),
            at(1),
        );
        assert!(matches!(
            &closed.changes[..],
            [Change::Escalation { after: None, .. }]
        ));
    }

    #[test]
    fn effects_that_change_no_stored_state_have_no_entry() {
        let engine = Engine::new(EngineConfig::default());
        let log = of_effects(
            &[
                Effect::AcknowledgeRejected {
                    incident_id: 1,
                    reason: "no".into(),
                },
                Effect::SilenceRejected {
                    reason: "no".into(),
                },
            ],
            engine.escalations(),
            at(0),
        );
        assert!(log.is_empty());
    }

    #[test]
    fn change_kinds_are_named_as_stored() {
        let kinds = [
            (EscalationChangeKind::Opened, "opened"),
            (EscalationChangeKind::Raised, "raised"),
            (EscalationChangeKind::Repeated, "repeated"),
            (EscalationChangeKind::Exhausted, "exhausted"),
            (EscalationChangeKind::Acknowledged, "acknowledged"),
            (EscalationChangeKind::Closed, "closed"),
            (EscalationChangeKind::Unacknowledged, "unacknowledged"),
        ];
        for (kind, name) in kinds {
            assert_eq!(kind.as_str(), name);
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{name}\""));
        }
    }
}
