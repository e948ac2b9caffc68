//! What the runtime reports as it goes, one record per handled event, effect and dead letter,
//! plus the team's notices (roles, acknowledgements, silences) and self-alerts. The headless
//! face writes each as one JSON line (`headless::write_records`); a team console's runtime
//! follows the records a worker's runtime produces. Below the faces, so that the runtime, the
//! team and the self-alerts need no face to say what happened.

use std::sync::Arc;

use serde::Serialize;

use crate::core::engine::Effect;
use crate::core::event::{self, IncidentEvent};

/// One record of the runtime's output. Every record has a `kind`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutputRecord {
    Event {
        event_type: event::EventType,
        incident_id: event::IncidentId,
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        #[serde(serialize_with = "event::serialize_timestamp")]
        received_at: event::Timestamp,
        data: Box<IncidentEvent>,
    },
    Effect {
        topic: Option<Arc<str>>,
        partition: Option<i32>,
        offset: Option<i64>,
        #[serde(flatten)]
        effect: Effect,
    },
    DeadLetter {
        reason: &'static str,
        error: String,
        topic: Arc<str>,
        partition: i32,
        offset: i64,
        dead_letter_topic: String,
    },
    /// An alert about the console itself starting (`firing`) or clearing (`cleared`).
    SelfAlert {
        alert: String,
        state: &'static str,
        detail: String,
    },
    /// Team mode: a worker's role and whether it is the active one, whenever that changes.
    Role {
        role: &'static str,
        active: bool,
        /// The leader epoch this worker acts under while active; 0 otherwise.
        epoch: u64,
        worker: String,
        reason: String,
        lease_ms: u64,
        since_start_ms: u64,
    },
    /// Team mode: an acknowledgement took effect at the active worker (seen by a console).
    Acknowledged {
        incident_id: event::IncidentId,
        by: String,
        worker: String,
    },
    /// Team mode: an acknowledgement was taken back at the active worker (`u` at a console,
    /// or its time ran out): the incident pages its level again.
    Unacknowledged {
        incident_id: event::IncidentId,
        worker: String,
    },
    /// Team mode: the active worker holds an operator's silence (seen by a console).
    Silenced {
        id: String,
        /// The matcher in words ("incident 42").
        matches: String,
        by: String,
        reason: String,
        start: event::Timestamp,
        until: event::Timestamp,
        worker: String,
    },
    /// Team mode: a silence ended early or ran out at the active worker (seen by a console).
    SilenceEnded { id: String },
}

impl OutputRecord {
    /// Records the runtime emits for a message it handled, the ones its output gate waits
    /// for. Records from elsewhere on the same channel (self-alerts, roles) are not counted,
    /// so they cannot make the gate believe a message's lines were already written.
    pub fn is_gated(&self) -> bool {
        matches!(
            self,
            Self::Event { .. } | Self::Effect { .. } | Self::DeadLetter { .. }
        )
    }
}

/// Bound on records waiting for stdout; a slow reader slows consumption rather than memory.
pub const OUTPUT_CAPACITY: usize = 4096;
