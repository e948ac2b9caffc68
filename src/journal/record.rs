//! What goes into the journal, and what comes back out of it after a restart.

use crate::core::engine::{Effect, SourceRef};
use crate::core::escalation::{Escalation, EscalationBook, EscalationChange};
use crate::core::event::{DecodeError, IncidentEvent, IncidentId, Timestamp};

/// One thing to write. A batch of these is written in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalRecord {
    /// A Kafka message was handled or dead-lettered.
    Event(ProcessedEvent),
    /// An escalation changed (acknowledgements are recorded from `Acknowledged` changes).
    Escalation(EscalationRecord),
    /// A notification entered the outbox for one channel and recipient.
    NotificationQueued(OutboxEntry),
    /// A delivery attempt finished.
    NotificationAttempt(DeliveryAttempt),
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
            _ => book.get(change_incident(&change)).cloned(),
        };
        Self {
            at,
            change,
            current,
        }
    }
}

/// The escalation records for what one `Engine::apply` returned, each with the escalation's
/// state after the call (`Engine::escalations()`). Other effects are not escalations: a
/// notification enters the journal when the notifier queues it for a channel and recipient.
pub fn escalation_records(
    effects: &[Effect],
    book: &EscalationBook,
    at: Timestamp,
) -> Vec<JournalRecord> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Escalation(change) => Some(JournalRecord::Escalation(
                EscalationRecord::from_book(change.clone(), book, at),
            )),
            _ => None,
        })
        .collect()
}

/// The incident an escalation change is about.
pub fn change_incident(change: &EscalationChange) -> IncidentId {
    match change {
        EscalationChange::Opened { incident_id, .. }
        | EscalationChange::Raised { incident_id, .. }
        | EscalationChange::Repeated { incident_id, .. }
        | EscalationChange::Exhausted { incident_id, .. }
        | EscalationChange::Acknowledged { incident_id, .. }
        | EscalationChange::Closed { incident_id, .. } => *incident_id,
    }
}

/// Which delivery: one notification (by its dedup key) to one recipient on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryKey {
    pub dedup_key: String,
    /// `email`, `slack`, `pagerduty`, `webhook` ...
    pub channel: String,
    pub recipient: String,
}

/// A notification waiting in the outbox. Queuing the same key again changes nothing, so a
/// re-delivered event does not reset a notification that was already sent.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub key: DeliveryKey,
    pub incident_id: Option<IncidentId>,
    /// Whatever the notifier needs to send it again after a restart.
    pub payload: serde_json::Value,
    pub queued_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    pub key: DeliveryKey,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub at: Timestamp,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    /// `will_retry: false` means the notifier gave up: the notification is marked failed and
    /// is no longer returned by `undelivered_notifications`.
    Failed {
        error: String,
        will_retry: bool,
    },
}

impl AttemptOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed {
                will_retry: true, ..
            } => "failed",
            Self::Failed {
                will_retry: false, ..
            } => "gave_up",
        }
    }
}

/// An outbox entry not yet delivered nor given up, as read back after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingNotification {
    pub entry: OutboxEntry,
    /// Attempts made so far.
    pub attempts: u32,
    pub last_error: Option<String>,
}
