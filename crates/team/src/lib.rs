//! Team mode: many consoles, one active worker among warm standbys, coordinated through Kafka
//! itself (no extra server). `standalone` is today's single process and stays the default.
//!
//! This crate holds the team's Kafka-backed parts, below the runtime: the leadership
//! (`leader`), the state changelog `<topic>.state` (`state`, `publish`, `sink`, `restore`) and
//! the consoles' commands (`commands`). The loops each role runs around the runtime are in
//! `roles` of the main crate. A crate of its own, so that the compiler keeps it below the
//! runtime and the faces.

use incident_config as config;
use incident_config::oncall;
use incident_core as core;
use incident_kafka as kafka;
use incident_notify as notify;
use incident_status as status;

pub mod commands;
pub mod leader;
pub mod publish;
pub mod restore;
pub mod sink;
pub mod state;

pub use crate::config::team::{Role, TeamConfig};
