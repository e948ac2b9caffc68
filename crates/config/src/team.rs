//! The `team` section: which part this process plays in a team (`roles::spawn` acts on it).

use serde::{Deserialize, Serialize};

/// What this process is in a team.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// One process consumes, escalates, notifies and draws (today's behaviour).
    #[default]
    Standalone,
    /// Handles events and sends notifications while it holds the leadership; otherwise a
    /// warm standby.
    Worker,
    /// An operator's terminal: shows every event, acts only through Kafka.
    Console,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Worker => "worker",
            Self::Console => "console",
        }
    }
}

/// The `team` section of the configuration. Every omitted setting keeps its default, and a
/// configuration without the section is a standalone console.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeamConfig {
    pub role: Role,
}

/// The coordination topic of an incident topic.
pub fn leader_topic(topic: &str) -> String {
    format!("{topic}.leader")
}

/// The changelog of the active worker's state (compacted).
pub fn state_topic(topic: &str) -> String {
    format!("{topic}.state")
}

/// Where consoles send the active worker their commands.
pub fn commands_topic(topic: &str) -> String {
    format!("{topic}.commands")
}

/// The topics team mode uses besides the incident topic. On a real cluster the operator
/// creates them; the embedded broker creates them with one partition each.
pub fn team_topics(topic: &str) -> [String; 3] {
    [
        leader_topic(topic),
        state_topic(topic),
        commands_topic(topic),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, DEFAULT_CONFIG};

    #[test]
    fn no_team_section_is_standalone() {
        let start = DEFAULT_CONFIG
            .find("    team: (")
            .expect("team section shipped");
        let end = start + DEFAULT_CONFIG[start..].find("    ),\n").unwrap() + "    ),\n".len();
        let text = format!("{}{}", &DEFAULT_CONFIG[..start], &DEFAULT_CONFIG[end..]);
        let config = Config::parse(&text, "no-team.ron").unwrap();
        assert_eq!(config.team, TeamConfig::default());
        assert_eq!(config.team.role, Role::Standalone);
        assert_eq!(Config::built_in().team.role, Role::Standalone);
    }

    #[test]
    fn an_empty_team_section_keeps_the_defaults_and_a_role_can_be_set() {
        let empty = DEFAULT_CONFIG.replacen("role: standalone,", "", 1);
        assert_eq!(
            Config::parse(&empty, "empty.ron").unwrap().team.role,
            Role::Standalone
        );
        let worker = DEFAULT_CONFIG.replacen("role: standalone,", "role: worker,", 1);
        assert_eq!(
            Config::parse(&worker, "worker.ron").unwrap().team.role,
            Role::Worker
        );
    }

    #[test]
    fn an_unknown_role_names_the_file_and_line() {
        let text = DEFAULT_CONFIG.replacen("role: standalone,", "role: leader,", 1);
        let line = text
            .lines()
            .position(|l| l.contains("role: leader"))
            .unwrap()
            + 1;
        let error = Config::parse(&text, "bad.ron").unwrap_err().to_string();
        assert!(error.starts_with(&format!("bad.ron:{line}:")), "{error}");
        assert!(error.contains("leader"), "{error}");
    }
}
