//! incident-console: a terminal operations console for incident events on Kafka.
//!
//! `core` is the pure domain; `runtime` owns it and connects it to Kafka (`kafka`),
//! notifications (`notify`) and the two faces, the console (`tui`) and `headless`.

pub mod app;
pub mod cli;
/// A crate of its own (`crates/config`): every section's type and the loader; it knows the
/// domain, notifications and the journal's settings, nothing above them.
pub use incident_config as config;
/// The domain, a crate of its own (`crates/core`) so that it cannot import the layers above.
pub use incident_core as core;
pub mod demo;
pub mod doctor;
pub mod headless;
/// Crates of their own (`crates/journal`, `crates/notify`): they know the domain, not Kafka,
/// the runtime or a face.
pub use incident_journal as journal;
/// A crate of its own (`crates/kafka`): the Kafka clients; it knows the domain and the
/// configuration, not the runtime or a face.
pub use incident_kafka as kafka;
pub use incident_notify as notify;
pub mod observe;
pub use incident_config::oncall;
pub mod output;
pub mod release;
pub mod replay;
pub mod roles;
pub mod runtime;
pub mod silences;
pub mod simulate;
/// A crate of its own (`crates/status`): the snapshot a face reads and the command it sends.
pub use incident_status as status;
/// A crate of its own (`crates/team`): leadership, `<topic>.state` and `<topic>.commands`;
/// it knows Kafka and the stores, not the runtime or a face.
pub use incident_team as team;
/// A crate of its own (`crates/tui`), the only one with ratatui and crossterm: it knows the
/// faces' interface, the configuration and the domain.
pub use incident_tui as tui;
pub use incident_tui::profile;
pub mod web;
