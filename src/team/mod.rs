//! Team mode: many consoles, one active worker among warm standbys, coordinated through Kafka
//! itself (no extra server). `standalone` is today's single process and stays the default.
//!
//! This module holds the team's Kafka-backed parts, below the runtime: the leadership
//! (`leader`), the state changelog `<topic>.state` (`state`, `publish`, `sink`, `restore`) and
//! the consoles' commands (`commands`). The loops each role runs around the runtime are in
//! `roles`.

pub mod commands;
pub mod leader;
pub mod publish;
pub mod restore;
pub mod sink;
pub mod state;

pub use crate::config::team::{Role, TeamConfig};
