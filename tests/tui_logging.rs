//! The console's logging: tracing events (and `log` records, as librdkafka's arrive) reach the
//! tui-logger buffer behind the log pane, sanitised, at the capture level, which keys change.
//! Its own test binary, because it installs the process-wide subscriber.

mod tui_support;

use incident_console::tui::{Pane, logging};
use tracing::level_filters::LevelFilter;
use tui_support::*;

fn log_pane_text() -> String {
    // The mover thread runs every 10 ms; moving now makes the test independent of it.
    tui_logger::move_events();
    let mut app = story_app();
    let terminal = render_pane(&mut app, Pane::Logs, 140, 30);
    text(terminal.backend().buffer())
}

#[test]
fn events_reach_the_log_pane_sanitised_at_the_capture_level() {
    // SAFETY: set before any thread of this test binary reads the environment for logging.
    unsafe { std::env::remove_var("RUST_LOG") };
    incident_console::tui::init_logging(LevelFilter::INFO);
    assert_eq!(logging::capture_level(), LevelFilter::INFO);

    tracing::info!(
        incident_id = 42,
        "hostile \u{1b}[2Jtitle\u{07} \u{202E}reversed"
    );
    tracing::debug!("debug before raising the level");
    log::warn!(target: "librdkafka", "a record from the log crate");
    let screen = log_pane_text();
    assert!(
        screen.contains("hostile title\u{FFFD} reversed incident_id=42"),
        "{screen}"
    );
    assert!(screen.contains("a record from the log crate"), "{screen}");
    assert!(!screen.contains("debug before raising"), "{screen}");
    assert!(!screen.contains("[2J"), "{screen}");
    assert!(
        screen.chars().all(|c| !c.is_control() || c == '\n') && !screen.contains('\u{202E}'),
        "{screen:?}"
    );

    logging::set_capture_level(LevelFilter::DEBUG);
    assert_eq!(logging::capture_level(), LevelFilter::DEBUG);
    tracing::debug!("debug after raising the level");
    log::debug!(target: "librdkafka", "a debug record from the log crate");
    let screen = log_pane_text();
    assert!(screen.contains("debug after raising the level"), "{screen}");
    assert!(
        screen.contains("a debug record from the log crate"),
        "{screen}"
    );
    assert!(
        screen.contains("log pane now captures debug and above"),
        "{screen}"
    );

    logging::set_capture_level(LevelFilter::WARN);
    tracing::info!("info after lowering the level");
    let screen = log_pane_text();
    assert!(!screen.contains("info after lowering"), "{screen}");
}
