//! Escalation state through Kafka: the active worker publishes each escalation change to
//! `<topic>.state`, keyed by incident id (compacted on a real cluster: the newest record per
//! incident is its state); consoles read it to show the queue as the worker holds it.

use serde::{Deserialize, Serialize};

use crate::core::escalation::EscalationChange;
use crate::core::event::IncidentId;

pub fn state_topic(topic: &str) -> String {
    format!("{topic}.state")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    pub incident_id: IncidentId,
    /// `opened`, `raised`, `repeated`, `exhausted`, `acknowledged`, `closed`.
    pub change: String,
    pub level: Option<u32>,
    pub acknowledged_by: Option<String>,
    /// When the worker published it, RFC 3339.
    pub at: String,
    /// The worker that published it.
    pub worker: String,
}

impl StateRecord {
    pub fn from_change(change: &EscalationChange, worker: &str, at: String) -> Self {
        use EscalationChange as C;
        let (incident_id, name, level, by) = match change {
            C::Opened {
                incident_id, level, ..
            } => (*incident_id, "opened", Some(*level), None),
            C::Raised {
                incident_id,
                to_level,
                ..
            } => (*incident_id, "raised", Some(*to_level), None),
            C::Repeated {
                incident_id, level, ..
            } => (*incident_id, "repeated", Some(*level), None),
            C::Exhausted { incident_id, level } => (*incident_id, "exhausted", Some(*level), None),
            C::Acknowledged {
                incident_id, by, ..
            } => (*incident_id, "acknowledged", None, Some(by.clone())),
            C::Closed { incident_id, .. } => (*incident_id, "closed", None, None),
        };
        Self {
            incident_id,
            change: name.into(),
            level,
            acknowledged_by: by,
            at,
            worker: worker.to_string(),
        }
    }

    pub fn decode(payload: Option<&[u8]>) -> Option<Self> {
        serde_json::from_slice(payload?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acknowledgement_names_who_and_round_trips() {
        let change = EscalationChange::Acknowledged {
            incident_id: 9,
            level: 2,
            by: "alice".into(),
            time_to_acknowledge_secs: 3.0,
        };
        let record = StateRecord::from_change(&change, "worker-1", "t".into());
        assert_eq!(record.change, "acknowledged");
        assert_eq!(record.acknowledged_by.as_deref(), Some("alice"));
        let bytes = serde_json::to_vec(&record).unwrap();
        assert_eq!(StateRecord::decode(Some(&bytes)), Some(record));
        assert_eq!(StateRecord::decode(Some(b"not json")), None);
    }
}
