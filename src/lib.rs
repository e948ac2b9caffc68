//! incident-console: a terminal operations console for incident events on Kafka.
//!
//! `core` is the pure domain; `runtime` owns it and connects it to Kafka (`kafka`),
//! notifications (`notify`) and the two faces, the console (`tui`) and `headless`.

pub mod app;
pub mod cli;
pub mod config;
pub mod core;
pub mod demo;
pub mod doctor;
pub mod headless;
pub mod journal;
pub mod kafka;
pub mod notify;
pub mod observe;
pub mod oncall;
pub mod profile;
pub mod release;
pub mod replay;
pub mod runtime;
pub mod simulate;
pub mod status;
pub mod team;
pub mod tui;
pub mod web;
