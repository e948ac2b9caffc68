//! incident-console: a terminal operations console for incident events on Kafka.

pub mod core;
