//! Frame render time at 160x48 with a full feed (1000 events), into ratatui's TestBackend:
//! building every pane's widgets, the buffer diff, and (for the "new snapshot" case) taking a
//! new snapshot and re-filtering the feed, as the console does on each frame.
//!
//!     cargo bench --bench tui_frame
//!
//! Without `--bench` (as under `cargo test --all-targets`) it renders a few frames and exits.

#[path = "../tests/tui_support/mod.rs"]
mod tui_support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use incident_console::core::event::{Priority, Status};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tui_support::*;

fn full_engine(extra: i64) -> incident_console::core::engine::Engine {
    let mut engine = story_engine();
    let priorities = [
        Priority::Low,
        Priority::Medium,
        Priority::High,
        Priority::Critical,
    ];
    for i in 0..(1200 + extra) {
        let id = 5000 + i % 300;
        let priority = priorities[(i % 4) as usize];
        let event = if i % 3 == 0 {
            created(
                id,
                priority,
                "Checkout API 5xx rate above 2% in eu-west",
                60,
            )
        } else {
            status(
                id,
                priority,
                "Primary database replication lag",
                Status::Open,
                Status::InProgress,
                60,
            )
        };
        feed(&mut engine, event, 60);
    }
    engine
}

fn measure(name: &str, frames: u32, mut frame: impl FnMut(u32)) -> Duration {
    for i in 0..frames.min(50) {
        frame(i);
    }
    let started = Instant::now();
    for i in 0..frames {
        frame(i);
    }
    let mean = started.elapsed() / frames;
    println!(
        "{name:<48} {frames:>6} frames, mean {:>8.1} µs/frame",
        mean.as_secs_f64() * 1e6
    );
    mean
}

fn main() {
    let benching = std::env::args().any(|arg| arg == "--bench");
    let frames = if benching { 2000 } else { 3 };
    let engines = [full_engine(0), full_engine(1)];
    let snapshots = [
        snapshot_of(&engines[0], false),
        snapshot_of(&engines[1], true),
    ];
    assert_eq!(snapshots[0].engine.feed.len(), 1000, "a full feed");

    let mut app = app_for(snapshots[0].clone());
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();
    measure("same snapshot, redraw (160x48)", frames, |_| {
        terminal
            .draw(|f| incident_console::tui::render::draw(f, &mut app))
            .unwrap();
        black_box(terminal.backend());
    });

    let mut app = app_for(snapshots[0].clone());
    measure("new snapshot every frame (160x48)", frames, |i| {
        app.set_snapshot(snapshots[(i % 2) as usize].clone());
        terminal
            .draw(|f| incident_console::tui::render::draw(f, &mut app))
            .unwrap();
        black_box(terminal.backend());
    });

    let mut app = app_for(snapshots[0].clone());
    app.handle_key(KeyEvent::new(KeyCode::Char('/'), KeyModifiers::NONE));
    for c in "critical eu-west".chars() {
        app.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }
    app.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    measure(
        "new snapshot every frame, text filter (160x48)",
        frames,
        |i| {
            app.set_snapshot(snapshots[(i % 2) as usize].clone());
            terminal
                .draw(|f| incident_console::tui::render::draw(f, &mut app))
                .unwrap();
            black_box(terminal.backend());
        },
    );

    let mut small = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut app = app_for(snapshots[0].clone());
    measure("new snapshot every frame (80x24)", frames, |i| {
        app.set_snapshot(snapshots[(i % 2) as usize].clone());
        small
            .draw(|f| incident_console::tui::render::draw(f, &mut app))
            .unwrap();
        black_box(small.backend());
    });
}
