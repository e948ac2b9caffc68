//! Operator commands through Kafka: a console's acknowledgement becomes a record on
//! `<topic>.commands` (keyed by incident id), which the active worker applies.

use serde::{Deserialize, Serialize};

use crate::core::event::IncidentId;

pub fn commands_topic(topic: &str) -> String {
    format!("{topic}.commands")
}

/// One acknowledgement asked for by an operator at a console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckCommand {
    pub incident_id: IncidentId,
    pub by: String,
    /// When the operator asked, RFC 3339.
    pub at: String,
    /// Which console asked (for the record).
    pub console: String,
    /// The newest leader epoch the console had seen when it asked. The active worker applies
    /// an acknowledgement whatever its epoch: it is an operator's decision, not a leader's
    /// write, so it stays valid across a takeover (one made while no worker was active is
    /// applied by the next one); the epoch tells which leader the operator was looking at.
    #[serde(default)]
    pub epoch: u64,
}

impl AckCommand {
    /// A record from the commands topic; `None` for anything else (logged by the caller).
    pub fn decode(payload: Option<&[u8]>) -> Option<Self> {
        serde_json::from_slice(payload?).ok()
    }
}

/// `ack 1234` on a headless console's stdin: the incident id, or why the line is not one.
pub fn parse_stdin_line(line: &str) -> Result<Option<IncidentId>, String> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (None, _, _) => Ok(None),
        (Some("ack"), Some(id), None) => id
            .parse()
            .map(Some)
            .map_err(|_| format!("stdin: `{line}`: `{id}` is not an incident id")),
        _ => Err(format!("stdin: `{line}`: expected `ack INCIDENT_ID`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_lines() {
        assert_eq!(parse_stdin_line("ack 42"), Ok(Some(42)));
        assert_eq!(parse_stdin_line("  "), Ok(None));
        assert!(parse_stdin_line("ack x").unwrap_err().contains("`x`"));
        assert!(parse_stdin_line("nack 1").is_err());
        assert!(parse_stdin_line("ack 1 2").is_err());
    }

    #[test]
    fn commands_round_trip_and_junk_is_refused() {
        let ack = AckCommand {
            incident_id: 7,
            by: "alice".into(),
            at: "2026-01-01T00:00:00Z".into(),
            console: "console-1".into(),
            epoch: 4,
        };
        let bytes = serde_json::to_vec(&ack).unwrap();
        assert_eq!(AckCommand::decode(Some(&bytes)), Some(ack));
        assert_eq!(AckCommand::decode(Some(b"{}")), None);
        assert_eq!(AckCommand::decode(None), None);
    }
}
