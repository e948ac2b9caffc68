//! What goes into the journal, and what comes back out of it after a restart.

use crate::oncall::OnCallRecord;
use incident_core::changelog::{self, Change, ChangeSink, Changelog};
use incident_core::engine::{Effect, Notification, SourceRef};
use incident_core::escalation::{Escalation, EscalationBook, EscalationChange};
use incident_core::event::{DecodeError, IncidentEvent, IncidentId, Timestamp};
use incident_notify::DeliveryChange;
/// Read back at start by `Journal::resume_notifications`; the notifier's type, which a team
/// worker also restores from `<topic>.state`.
pub use incident_notify::ResumedNotifications;

/// One thing to write. A batch of these is written in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalRecord {
    /// A Kafka message was handled or dead-lettered.
    Event(ProcessedEvent),
    /// An escalation changed (acknowledgements are recorded from `Acknowledged` changes).
    Escalation(EscalationRecord),
    /// The engine decided on a notification (written with the event that caused it).
    /// Deciding the same dedup key again changes nothing.
    Decided(Decision),
    /// The notifier queued, attempted or finished a delivery, or routed a notification.
    Delivery(DeliveryChange),
    /// A silence set or ended, or a notification one held (docs/oncall.md).
    OnCall(super::oncall::OnCallRecord),
}

/// A notification the engine decided on, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub notification: Notification,
    pub at: Timestamp,
}

/// A Kafka message and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedEvent {
    pub source: SourceRef,
    pub incident_id: Option<IncidentId>,
    /// `incident_created` ...; `None` when the payload did not decode.
    pub event_type: Option<String>,
    /// One line for people reading the journal (`open → resolved`, `comment by x` ...).
    pub summary: Option<String>,
    pub received_at: Timestamp,
    pub handled_at: Timestamp,
    pub outcome: EventOutcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    Handled,
    /// Copied to the dead-letter topic. `reason` is `DecodeError::reason()`.
    DeadLettered {
        reason: String,
        error: String,
    },
}

impl EventOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Handled => "handled",
            Self::DeadLettered { .. } => "dead_lettered",
        }
    }
}

impl ProcessedEvent {
    /// A decoded event that went through the engine.
    pub fn handled(
        source: SourceRef,
        event: &IncidentEvent,
        received_at: Timestamp,
        handled_at: Timestamp,
    ) -> Self {
        Self {
            source,
            incident_id: Some(event.incident_id()),
            event_type: Some(event.event_type().as_str().to_string()),
            summary: Some(event.summary()),
            received_at,
            handled_at,
            outcome: EventOutcome::Handled,
        }
    }

    /// A payload that did not decode and was copied to the dead-letter topic.
    pub fn dead_lettered(
        source: SourceRef,
        error: &DecodeError,
        received_at: Timestamp,
        handled_at: Timestamp,
    ) -> Self {
        Self {
            source,
            incident_id: None,
            event_type: None,
            summary: None,
            received_at,
            handled_at,
            outcome: EventOutcome::DeadLettered {
                reason: error.reason().to_string(),
                error: error.to_string(),
            },
        }
    }
}

/// An escalation change, with the escalation as it stands after it.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationRecord {
    pub at: Timestamp,
    pub change: EscalationChange,
    /// The escalation after the change (`EscalationBook::get`), so that a restart can restore
    /// it. `None` once it is no longer tracked; a `Closed` change marks it closed either way.
    pub current: Option<Escalation>,
}

impl EscalationRecord {
    /// The change with the escalation's state in `book` after it (look it up after
    /// `Engine::apply`, from `Engine::escalations()`).
    pub fn from_book(change: EscalationChange, book: &EscalationBook, at: Timestamp) -> Self {
        let current = match &change {
            EscalationChange::Closed { .. } => None,
            _ => book.get(change.incident_id()).cloned(),
        };
        Self {
            at,
            change,
            current,
        }
    }
}

/// The escalation records for what one `Engine::apply` returned, each with the escalation's
/// state after the call (`Engine::escalations()`): the changelog's escalation entries.
pub fn escalation_records(
    effects: &[Effect],
    book: &EscalationBook,
    at: Timestamp,
) -> Vec<JournalRecord> {
    let log = changelog::of_effects(effects, book, at);
    log.changes
        .iter()
        .filter(|change| matches!(change, Change::Escalation { .. }))
        .map(|change| JournalRecord::from_change(change, at))
        .collect()
}

impl JournalRecord {
    /// The record the journal keeps for one changelog entry made at `at`.
    pub fn from_change(change: &Change, at: Timestamp) -> Self {
        match change {
            Change::Escalation { change, after } => Self::Escalation(EscalationRecord {
                at,
                change: change.clone(),
                current: after.clone(),
            }),
            Change::Decided(notification) => Self::Decided(Decision {
                notification: notification.clone(),
                at,
            }),
            Change::Held {
                notification,
                silence_id,
                until,
            } => Self::OnCall(OnCallRecord::Held {
                notification: notification.clone(),
                silence_id: silence_id.clone(),
                until: *until,
                at,
            }),
            Change::SilenceSet(view) => Self::OnCall(OnCallRecord::SilenceSet {
                silence: (**view).clone(),
                at,
            }),
            Change::SilenceEnded { id, by } => Self::OnCall(OnCallRecord::SilenceEnded {
                id: id.clone(),
                by: by.clone(),
                at,
            }),
        }
    }
}

/// The journal as a sink of the engine's changelog: each entry becomes a record added to
/// the records of what caused it (a message, a command, a tick), so that they commit in one
/// transaction with it: a decision is never lost while its message's offset is stored.
pub struct ToJournal<'a>(pub &'a mut Vec<JournalRecord>);

impl ChangeSink for ToJournal<'_> {
    fn record(&mut self, log: &Changelog) {
        self.0.extend(
            log.changes
                .iter()
                .map(|change| JournalRecord::from_change(change, log.at)),
        );
    }
}
