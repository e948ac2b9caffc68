//! Operator commands through Kafka: what a console asks of the active worker becomes a record
//! on `<topic>.commands` (keyed by incident id, or silence id), which the active worker
//! applies through the same engine inputs as a standalone console's keys.
//!
//! The wire format: an acknowledgement is the untagged record every worker has read since
//! team mode began (`{"incident_id","by","at","console","epoch"}`), and it is still written
//! that way, so a console and a worker of different versions agree on acks. The other kinds
//! carry a tag and their fields under `args` (`{"command":"snooze","args":{...}}`): a worker
//! from before them finds no `incident_id` at the top and skips the record as junk, rather
//! than taking an un-acknowledge for an acknowledgement.

use serde::{Deserialize, Serialize};

pub use crate::config::team::commands_topic;
use crate::core::event::IncidentId;
use crate::oncall::OncallCommand;
use crate::status::Command;

/// Who asked, when and from where: on every command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asker {
    pub by: String,
    /// When the operator asked, RFC 3339.
    pub at: String,
    /// Which console asked (for the record).
    pub console: String,
    /// The newest leader epoch the console had seen when it asked. The active worker applies
    /// a command whatever its epoch: it is an operator's decision, not a leader's write, so it
    /// stays valid across a takeover (one made while no worker was active is applied by the
    /// next one); the epoch tells which leader the operator was looking at.
    #[serde(default)]
    pub epoch: u64,
}

/// One acknowledgement asked for by an operator at a console (the original record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckCommand {
    pub incident_id: IncidentId,
    #[serde(flatten)]
    pub asker: Asker,
}

/// Silence one incident for `minutes` from when the active worker applies it (`s`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnoozeCommand {
    pub incident_id: IncidentId,
    pub minutes: u32,
    pub reason: String,
    #[serde(flatten)]
    pub asker: Asker,
}

/// End a silence now (`x`, or `incident-console silences end ID`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndSilenceCommand {
    pub silence_id: String,
    #[serde(flatten)]
    pub asker: Asker,
}

/// Take an acknowledgement back (`u`): the incident pages its level again at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnacknowledgeCommand {
    pub incident_id: IncidentId,
    #[serde(flatten)]
    pub asker: Asker,
}

/// Every kind of record on `<topic>.commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", content = "args", rename_all = "snake_case")]
pub enum TeamCommand {
    Ack(AckCommand),
    Snooze(SnoozeCommand),
    EndSilence(EndSilenceCommand),
    Unacknowledge(UnacknowledgeCommand),
}

impl TeamCommand {
    /// The record's payload (an acknowledgement in its original, untagged form).
    pub fn encode(&self) -> Vec<u8> {
        let encoded = match self {
            Self::Ack(ack) => serde_json::to_vec(ack),
            other => serde_json::to_vec(other),
        };
        // Plain structs of strings and numbers: serialising them cannot fail.
        encoded.unwrap_or_default()
    }

    /// A record from the commands topic, or why it is not one (the caller logs it with its
    /// place and skips it).
    pub fn decode(payload: Option<&[u8]>) -> Result<Self, String> {
        let payload = payload.ok_or("a record with no payload")?;
        let value: serde_json::Value =
            serde_json::from_slice(payload).map_err(|error| format!("not JSON: {error}"))?;
        let decoded = if value.get("command").is_some() {
            serde_json::from_value(value)
        } else {
            // Written by every console before the tag existed: an acknowledgement.
            serde_json::from_value(value).map(Self::Ack)
        };
        decoded.map_err(|error| format!("not a command: {error}"))
    }

    /// The record's key: commands about one incident stay in order (one partition anyway).
    pub fn key(&self) -> String {
        match self {
            Self::Ack(AckCommand { incident_id, .. })
            | Self::Snooze(SnoozeCommand { incident_id, .. })
            | Self::Unacknowledge(UnacknowledgeCommand { incident_id, .. }) => {
                incident_id.to_string()
            }
            Self::EndSilence(end) => format!("s|{}", end.silence_id),
        }
    }

    pub fn asker(&self) -> &Asker {
        match self {
            Self::Ack(c) => &c.asker,
            Self::Snooze(c) => &c.asker,
            Self::EndSilence(c) => &c.asker,
            Self::Unacknowledge(c) => &c.asker,
        }
    }

    /// What a console's key press asked for, as a record for the active worker; `None` for
    /// commands that are not the team's business (pause, notify, shutdown).
    pub fn from_console(command: &Command, console: &str, epoch: u64) -> Option<Self> {
        let asker = |by: &str| Asker {
            by: by.to_string(),
            at: chrono::Utc::now().to_rfc3339(),
            console: console.to_string(),
            epoch,
        };
        Some(match command {
            Command::Acknowledge { incident_id, by } => Self::Ack(AckCommand {
                incident_id: *incident_id,
                asker: asker(by),
            }),
            Command::Oncall(OncallCommand::Snooze {
                incident_id,
                minutes,
                reason,
                by,
            }) => Self::Snooze(SnoozeCommand {
                incident_id: *incident_id,
                minutes: *minutes,
                reason: reason.clone(),
                asker: asker(by),
            }),
            Command::Oncall(OncallCommand::EndSilence { id, by }) => {
                Self::EndSilence(EndSilenceCommand {
                    silence_id: id.clone(),
                    asker: asker(by),
                })
            }
            Command::Oncall(OncallCommand::Unacknowledge { incident_id, by }) => {
                Self::Unacknowledge(UnacknowledgeCommand {
                    incident_id: *incident_id,
                    asker: asker(by),
                })
            }
            Command::Pause
            | Command::Resume
            | Command::TogglePause
            | Command::Notify(_)
            | Command::Shutdown => return None,
        })
    }

    /// The runtime command the active worker applies: the one a standalone console's key
    /// sends, so the engine, the journal and the state topic see the same thing.
    pub fn into_runtime(self) -> Command {
        match self {
            Self::Ack(ack) => Command::Acknowledge {
                incident_id: ack.incident_id,
                by: ack.asker.by,
            },
            Self::Snooze(snooze) => Command::Oncall(OncallCommand::Snooze {
                incident_id: snooze.incident_id,
                minutes: snooze.minutes,
                reason: snooze.reason,
                by: snooze.asker.by,
            }),
            Self::EndSilence(end) => Command::Oncall(OncallCommand::EndSilence {
                id: end.silence_id,
                by: end.asker.by,
            }),
            Self::Unacknowledge(unack) => Command::Oncall(OncallCommand::Unacknowledge {
                incident_id: unack.incident_id,
                by: unack.asker.by,
            }),
        }
    }
}

/// A line on a headless console's stdin (for scripts and tests), as a console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdinCommand {
    /// `ack INCIDENT_ID`
    Ack(IncidentId),
    /// `snooze INCIDENT_ID MINUTES [REASON...]`
    Snooze {
        incident_id: IncidentId,
        minutes: u32,
        reason: String,
    },
    /// `unack INCIDENT_ID`
    Unacknowledge(IncidentId),
    /// `end-silence SILENCE_ID`
    EndSilence(String),
}

impl StdinCommand {
    pub fn into_command(self, by: String) -> Command {
        match self {
            Self::Ack(incident_id) => Command::Acknowledge { incident_id, by },
            Self::Snooze {
                incident_id,
                minutes,
                reason,
            } => Command::Oncall(OncallCommand::Snooze {
                incident_id,
                minutes,
                reason,
                by,
            }),
            Self::Unacknowledge(incident_id) => {
                Command::Oncall(OncallCommand::Unacknowledge { incident_id, by })
            }
            Self::EndSilence(id) => Command::Oncall(OncallCommand::EndSilence { id, by }),
        }
    }
}

const STDIN_USAGE: &str = "expected `ack INCIDENT_ID`, `unack INCIDENT_ID`, \
                           `snooze INCIDENT_ID MINUTES [REASON]` or `end-silence SILENCE_ID`";

/// `ack 1234` on a headless console's stdin: the command, or why the line is not one.
pub fn parse_stdin_line(line: &str) -> Result<Option<StdinCommand>, String> {
    let incident = |id: &str| {
        id.parse::<IncidentId>()
            .map_err(|_| format!("stdin: `{line}`: `{id}` is not an incident id"))
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => Ok(None),
        ["ack", id] => incident(id).map(|id| Some(StdinCommand::Ack(id))),
        ["unack", id] => incident(id).map(|id| Some(StdinCommand::Unacknowledge(id))),
        ["end-silence", id] => Ok(Some(StdinCommand::EndSilence(id.to_string()))),
        ["snooze", id, minutes, reason @ ..] => {
            let incident_id = incident(id)?;
            let minutes = minutes
                .parse::<u32>()
                .ok()
                .filter(|m| *m > 0)
                .ok_or_else(|| {
                    format!("stdin: `{line}`: `{minutes}` is not a number of minutes")
                })?;
            Ok(Some(StdinCommand::Snooze {
                incident_id,
                minutes,
                reason: reason.join(" "),
            }))
        }
        _ => Err(format!("stdin: `{line}`: {STDIN_USAGE}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asker() -> Asker {
        Asker {
            by: "alice".into(),
            at: "2026-01-01T00:00:00Z".into(),
            console: "console-1".into(),
            epoch: 4,
        }
    }

    #[test]
    fn stdin_lines() {
        assert_eq!(parse_stdin_line("ack 42"), Ok(Some(StdinCommand::Ack(42))));
        assert_eq!(parse_stdin_line("  "), Ok(None));
        assert!(parse_stdin_line("ack x").unwrap_err().contains("`x`"));
        assert!(parse_stdin_line("nack 1").is_err());
        assert!(parse_stdin_line("ack 1 2").is_err());
        assert_eq!(
            parse_stdin_line("snooze 7 15 db failover"),
            Ok(Some(StdinCommand::Snooze {
                incident_id: 7,
                minutes: 15,
                reason: "db failover".into()
            }))
        );
        assert!(parse_stdin_line("snooze 7 0").unwrap_err().contains("`0`"));
        assert!(parse_stdin_line("snooze 7").is_err());
        assert_eq!(
            parse_stdin_line("unack 7"),
            Ok(Some(StdinCommand::Unacknowledge(7)))
        );
        assert_eq!(
            parse_stdin_line("end-silence s3"),
            Ok(Some(StdinCommand::EndSilence("s3".into())))
        );
    }

    #[test]
    fn an_ack_is_written_and_read_exactly_as_before_the_other_kinds() {
        // A record as consoles before this change wrote it, byte for byte.
        let old = br#"{"incident_id":7,"by":"alice","at":"2026-01-01T00:00:00Z","console":"console-1","epoch":4}"#;
        let ack = TeamCommand::Ack(AckCommand {
            incident_id: 7,
            asker: asker(),
        });
        assert_eq!(TeamCommand::decode(Some(old)), Ok(ack.clone()));
        assert_eq!(ack.encode(), old.to_vec(), "still written the old way");
        // Older still: no epoch.
        let no_epoch = br#"{"incident_id":7,"by":"alice","at":"x","console":"c"}"#;
        assert!(matches!(
            TeamCommand::decode(Some(no_epoch)),
            Ok(TeamCommand::Ack(AckCommand {
                asker: Asker { epoch: 0, .. },
                ..
            }))
        ));
        // And with the tag, as the enum would write it.
        let tagged = serde_json::to_vec(&ack).unwrap();
        assert_eq!(TeamCommand::decode(Some(&tagged)), Ok(ack));
    }

    #[test]
    fn every_kind_round_trips_and_an_old_worker_would_not_take_one_for_an_ack() {
        let kinds = [
            TeamCommand::Snooze(SnoozeCommand {
                incident_id: 7,
                minutes: 60,
                reason: "db failover".into(),
                asker: asker(),
            }),
            TeamCommand::EndSilence(EndSilenceCommand {
                silence_id: "s3".into(),
                asker: asker(),
            }),
            TeamCommand::Unacknowledge(UnacknowledgeCommand {
                incident_id: 7,
                asker: asker(),
            }),
        ];
        for command in kinds {
            let bytes = command.encode();
            assert_eq!(TeamCommand::decode(Some(&bytes)), Ok(command.clone()));
            // What a worker from before the tag does with it: refuses it as junk.
            let old: Result<AckCommand, _> = serde_json::from_slice(&bytes);
            assert!(old.is_err(), "{}", String::from_utf8_lossy(&bytes));
            assert_eq!(command.asker(), &asker());
        }
        let text = String::from_utf8(
            TeamCommand::Unacknowledge(UnacknowledgeCommand {
                incident_id: 7,
                asker: asker(),
            })
            .encode(),
        )
        .unwrap();
        assert!(
            text.starts_with(r#"{"command":"unacknowledge","args":{"#),
            "{text}"
        );
    }

    #[test]
    fn junk_is_refused_with_a_reason() {
        for junk in [
            &b""[..],
            b"not json",
            b"{}",
            b"[1,2]",
            b"null",
            br#"{"command":"reboot","args":{}}"#,
            br#"{"command":"snooze","args":{"incident_id":7}}"#,
            br#"{"command":"snooze","args":{"incident_id":7,"minutes":-5,"reason":"","by":"a","at":"x","console":"c"}}"#,
            br#"{"incident_id":"seven","by":"a","at":"x","console":"c"}"#,
            b"\xff\xfe",
        ] {
            let error = TeamCommand::decode(Some(junk)).unwrap_err();
            assert!(!error.is_empty(), "{}", String::from_utf8_lossy(junk));
        }
        assert_eq!(
            TeamCommand::decode(None),
            Err("a record with no payload".into())
        );
    }

    #[test]
    fn console_keys_become_records_and_records_the_runtime_commands_they_came_from() {
        let keys = [
            Command::Acknowledge {
                incident_id: 1,
                by: "bob".into(),
            },
            Command::Oncall(OncallCommand::Snooze {
                incident_id: 2,
                minutes: 15,
                reason: "r".into(),
                by: "bob".into(),
            }),
            Command::Oncall(OncallCommand::EndSilence {
                id: "s1".into(),
                by: "bob".into(),
            }),
            Command::Oncall(OncallCommand::Unacknowledge {
                incident_id: 3,
                by: "bob".into(),
            }),
        ];
        for key in keys {
            let record = TeamCommand::from_console(&key, "console-9", 2).unwrap();
            assert_eq!(record.asker().console, "console-9");
            let decoded = TeamCommand::decode(Some(&record.encode())).unwrap();
            assert_eq!(decoded.into_runtime(), key);
        }
        assert_eq!(
            TeamCommand::from_console(&Command::Pause, "c", 0),
            None,
            "pausing is a console's own business"
        );
    }
}
