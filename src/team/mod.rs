//! Team mode: many consoles, one active worker among warm standbys, coordinated through Kafka
//! itself (no extra server). `standalone` is today's single process and stays the default.
//!
//! - `console`: an observer of every partition; never joins the workers' group, commits
//!   nothing, writes no journal and sends no notification.

pub mod commands;
pub mod console;
pub mod leader;
pub mod publish;
pub mod sink;
pub mod state;
pub mod worker;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::runtime::{self, RuntimeHandle, RuntimeOptions};

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

/// Starts the loop for the configured role. Standalone is the runtime as it always was.
pub fn spawn(config: &Config, options: RuntimeOptions) -> anyhow::Result<RuntimeHandle> {
    match config.team.role {
        Role::Standalone => runtime::spawn(config, options),
        Role::Console => console::spawn(config, options),
        Role::Worker => worker::spawn(config, options),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEFAULT_CONFIG};

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
