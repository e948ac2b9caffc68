//! The loops each role runs around the runtime: a worker (active, or a warm standby) and an
//! operator's console. Above the runtime, which they start and stop; the team's Kafka-backed
//! parts they coordinate through (leadership, `<topic>.state`, `<topic>.commands`) are in
//! `team`, below the runtime.
//!
//! - `console`: an observer of every partition; never joins the workers' group, commits
//!   nothing, writes no journal and sends no notification.

pub mod console;
pub mod worker;

use crate::config::Config;
use crate::runtime::{self, RuntimeHandle, RuntimeOptions};
use crate::team::Role;

/// Starts the loop for the configured role. Standalone is the runtime as it always was.
pub fn spawn(config: &Config, options: RuntimeOptions) -> anyhow::Result<RuntimeHandle> {
    match config.team.role {
        Role::Standalone => runtime::spawn(config, options),
        Role::Console => console::spawn(config, options),
        Role::Worker => worker::spawn(config, options),
    }
}
