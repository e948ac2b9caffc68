//! The interactive console: renders the runtime's snapshots and turns keys into commands.
//!
//! One task runs a `select!` over terminal events (first, so a flood of snapshots never delays
//! a key), the runtime's end, termination signals, and snapshot changes. The screen is redrawn
//! only when a snapshot or the UI state changed, at most `console.max_frames_per_sec` (and at
//! most 30) times a second. The UI never mutates runtime state: it sends a `Command`.
//!
//! A crate of its own (`incident-tui`), the only one that depends on ratatui, crossterm and
//! tui-logger: it knows the faces' interface (`incident-status`), the configuration and the
//! domain, not the runtime, Kafka or the stores.

pub mod app;
pub mod detail;
pub mod export;
pub mod filter;
pub mod keymap;
pub mod logging;
pub mod monochrome;
pub mod mouse;
pub mod profile;
pub mod query;
pub mod render;
pub mod sanitize;
pub mod terminal;
pub mod theme;

// The layers below, under the names the main crate gives them.
use incident_config as config;
use incident_config::oncall;
use incident_core as core;
use incident_status as status;

use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::{Event, EventStream, KeyEventKind};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use app::{App, Overlay, Pane};
pub use keymap::{Action, KeyBinding, Keymap, KeymapError};
pub use sanitize::sanitize;

use crate::config::{Config, SectionCheck};
use crate::status::Command;
use crate::status::{RunSummary, RuntimeHandle};

/// Redraws per second never exceed this, whatever the configuration says.
pub const MAX_FPS: u32 = 30;

/// How long after a command snapshots are drawn without waiting for the frame cap, so the
/// operator sees the result of a key press at once.
const COMMAND_ECHO: Duration = Duration::from_millis(100);

/// Installs logging for the console: tracing events go to the log pane, never to the terminal.
pub fn init_logging(level: tracing::level_filters::LevelFilter) {
    logging::init(level);
}

/// Checks `console.keys`; the error names the action and key at fault.
pub fn keymap_from_config(config: &Config) -> Result<Keymap, KeymapError> {
    Keymap::with_overrides(&config.console.keys)
}

/// The console's checks of its own sections, made as the configuration loads
/// (`Config::load`), so that a typo in a key binding or a saved filter stops any start (headless
/// too) with the file and line. The configuration cannot make them itself: they need the
/// console's key and query parsers, which live up here.
pub const CONFIG_CHECKS: &[SectionCheck] = &[check_keys, check_filters];

fn check_keys(config: &Config) -> Result<(), (String, String)> {
    keymap_from_config(config)
        .map(|_| ())
        .map_err(|error| ("console.keys".to_string(), error.to_string()))
}

fn check_filters(config: &Config) -> Result<(), (String, String)> {
    query::validate_saved(&config.filters)
}

fn local_zone() -> chrono::FixedOffset {
    *chrono::Local::now().offset()
}

/// Runs the console until the operator quits (graceful shutdown: the runtime commits and
/// stops) or the runtime stops by itself.
pub async fn run(
    handle: RuntimeHandle,
    config: &Config,
    self_alerts: Option<tokio::sync::watch::Receiver<Vec<String>>>,
) -> anyhow::Result<RunSummary> {
    let RuntimeHandle {
        commands,
        snapshots,
        task,
        ..
    } = handle;
    let keymap = match keymap_from_config(config) {
        Ok(keymap) => keymap,
        Err(error) => {
            stop_runtime(&commands, task).await;
            return Err(anyhow::anyhow!("console.keys: {error}"));
        }
    };
    let app = App::new(keymap, snapshots.borrow().clone(), local_zone())
        .with_log_capture(logging::capture_level())
        .with_replay(config.kafka.range.is_active())
        .with_self_alerts(self_alerts)
        .with_session(
            config.session.clone(),
            monochrome::wanted(std::env::var_os("NO_COLOR")),
        )
        .with_saved_filters(
            config
                .filters
                .iter()
                .map(|(name, text)| (name.clone(), text.clone()))
                .collect(),
        );
    let fps = config.console.max_frames_per_sec.clamp(1, MAX_FPS);
    // Handlers first: a signal that lands just after the terminal is taken over must not
    // kill the process and leave the terminal raw.
    let signals = Signals::new();
    let guard = match terminal::enter() {
        Ok(guard) => guard,
        Err(error) => {
            stop_runtime(&commands, task).await;
            return Err(error).context("cannot take over the terminal (try --no-tui)");
        }
    };
    let result = event_loop(guard, app, commands, snapshots, task, fps, signals).await;
    terminal::restore();
    result
}

async fn stop_runtime(
    commands: &mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<anyhow::Result<RunSummary>>,
) {
    let _ = commands.send(Command::Shutdown).await;
    let _ = task.await;
}

/// Sends without waiting: the runtime handles commands first, so a full queue means it is
/// stuck, and the UI must stay responsive regardless. A shutdown is never dropped: if the
/// queue is full it is handed to a task that waits for room.
fn send(commands: &mpsc::Sender<Command>, command: Command, app: &mut App) -> bool {
    if command == Command::Shutdown {
        if let Err(mpsc::error::TrySendError::Full(command)) = commands.try_send(command) {
            let commands = commands.clone();
            tokio::spawn(async move {
                let _ = commands.send(command).await;
            });
        }
        return true;
    }
    match commands.try_send(command) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(command)) => {
            tracing::warn!(?command, "the runtime is not taking commands; dropped");
            app.set_message("the runtime is busy: command dropped, try again");
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

async fn event_loop(
    mut guard: terminal::TerminalGuard,
    mut app: App,
    commands: mpsc::Sender<Command>,
    mut snapshots: tokio::sync::watch::Receiver<crate::status::SharedSnapshot>,
    mut task: tokio::task::JoinHandle<anyhow::Result<RunSummary>>,
    fps: u32,
    mut signals: Signals,
) -> anyhow::Result<RunSummary> {
    let mut events = EventStream::new();
    let frame_gap = Duration::from_secs_f64(1.0 / f64::from(fps));
    let mut last_draw: Option<Instant> = None;
    let mut dirty = true;
    let mut snapshots_open = true;

    // After a key sends a command, the runtime publishes the result at once; drawing it should
    // not wait for the frame cap. For a short while after a command, snapshots draw at once.
    let mut uncapped_until: Option<Instant> = None;
    // A key press is drawn at once, not at the next frame: under a drain, snapshots keep the
    // last draw recent, and waiting for the frame cap added up to a frame to every key.
    // Keys come at human speed, so this cannot raise the frame rate for long.
    let mut key_pressed = false;

    loop {
        let now = Instant::now();
        let uncapped = key_pressed || uncapped_until.is_some_and(|until| now < until);
        let due = match last_draw {
            Some(t) if !uncapped => t + frame_gap,
            _ => now,
        };
        if dirty && now >= due {
            if let Err(error) = draw(&mut guard.terminal, &mut app) {
                // The terminal went away (EIO once its pseudo-terminal is closed); the
                // hang-up signal may come later or never. Shut down as if asked, without
                // drawing again, so the last batch is still journaled and committed.
                tracing::warn!("{error:#}: shutting down");
                return without_terminal(events, &commands, &mut app, task).await;
            }
            last_draw = Some(now);
            dirty = false;
            key_pressed = false;
        }
        tokio::select! {
            biased;
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                    let was_quitting = app.is_quitting();
                    if let Some(command) = app.handle_key(key) {
                        if command == Command::Shutdown && was_quitting {
                            // Asked twice: leave now, without waiting for the commit.
                            terminal::restore();
                            use std::io::Write as _;
                            let _ = writeln!(
                                std::io::stderr(),
                                "incident-console: exiting without waiting for shutdown"
                            );
                            std::process::exit(130);
                        }
                        if send(&commands, command, &mut app) {
                            uncapped_until = Some(Instant::now() + COMMAND_ECHO);
                        }
                    }
                    if let Some(level) = app.take_log_capture_change() {
                        logging::set_capture_level(level);
                    }
                    dirty = true;
                    key_pressed = true;
                }
                Some(Ok(Event::Mouse(event))) => {
                    let Ok(size) = guard.terminal.size() else {
                        continue;
                    };
                    let screen = ratatui::layout::Rect::new(0, 0, size.width, size.height);
                    if let Some(gesture) = mouse::gesture(&app, event, screen) {
                        app.apply_gesture(gesture);
                        dirty = true;
                        key_pressed = true;
                    }
                }
                Some(Ok(Event::Paste(text))) => {
                    paste(&mut app, &text);
                    dirty = true;
                }
                Some(Ok(Event::Resize(_, _))) => {
                    // A size that cannot be read is the next draw's failure to report.
                    let _ = guard.terminal.autoresize();
                    dirty = true;
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::error!(%error, "cannot read the terminal; shutting down");
                    return without_terminal(events, &commands, &mut app, task).await;
                }
                None => {
                    // The terminal went away: shut down as if asked.
                    return without_terminal(events, &commands, &mut app, task).await;
                }
            },
            result = &mut task => return finish(result),
            () = signals.next() => {
                if !app.is_quitting() {
                    tracing::info!("signal received: shutting down");
                    app.begin_quit();
                    send(&commands, Command::Shutdown, &mut app);
                    dirty = true;
                }
            }
            changed = snapshots.changed(), if snapshots_open => match changed {
                Ok(()) => {
                    let snapshot = snapshots.borrow_and_update().clone();
                    app.set_snapshot(snapshot);
                    dirty = true;
                }
                Err(_) => snapshots_open = false,
            },
            () = tokio::time::sleep_until(due), if dirty => {}
        }
    }
}

/// Characters of one paste taken into the filter; the rest is dropped.
const MAX_PASTE_CHARS: usize = 256;

/// A paste is text, never a burst of commands: it goes into the filter being edited (its
/// printable characters, up to `MAX_PASTE_CHARS`) and is otherwise ignored, with a word.
fn paste(app: &mut App, text: &str) {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    if !app.is_filter_editing() {
        app.set_message("paste ignored: open the filter (/) to paste into it");
        return;
    }
    for c in text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_PASTE_CHARS)
    {
        app.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }
}

/// The terminal is gone: the runtime shuts down as if asked, and the console waits for it
/// without drawing or reading again.
async fn without_terminal(
    events: EventStream,
    commands: &mpsc::Sender<Command>,
    app: &mut App,
    task: tokio::task::JoinHandle<anyhow::Result<RunSummary>>,
) -> anyhow::Result<RunSummary> {
    // crossterm's reader spins on a closed terminal until its stream is dropped.
    drop(events);
    send(commands, Command::Shutdown, app);
    finish(task.await)
}

fn finish(
    result: Result<anyhow::Result<RunSummary>, tokio::task::JoinError>,
) -> anyhow::Result<RunSummary> {
    result.context("the runtime task failed")?
}

fn draw(terminal: &mut terminal::ConsoleTerminal, app: &mut App) -> anyhow::Result<()> {
    use crossterm::terminal::{BeginSynchronizedUpdate, EndSynchronizedUpdate};
    // A frame is written as one synchronized update: a terminal that knows the mode (tmux,
    // kitty, WezTerm, foot, ...) shows it whole, never half old and half new; others ignore it.
    let mut draw = || {
        crossterm::queue!(terminal.backend_mut(), BeginSynchronizedUpdate)?;
        terminal.draw(|frame| {
            render::draw(frame, app);
            if app.is_monochrome() {
                monochrome::apply(frame.buffer_mut());
            }
        })?;
        crossterm::execute!(terminal.backend_mut(), EndSynchronizedUpdate)
    };
    // Writing to a slow terminal blocks; let tokio move other work off this thread meanwhile.
    let result = match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(draw),
        _ => draw(),
    };
    result.context("cannot draw to the terminal")
}

/// SIGINT (from `kill -INT` or a process manager: the console's own ctrl-c is a key in raw
/// mode), SIGTERM and SIGHUP (the terminal closed) shut down gracefully, like the quit key.
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
                hangup: signal(SignalKind::hangup()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                () = wait(&mut self.interrupt) => {}
                () = wait(&mut self.terminate) => {}
                () = wait(&mut self.hangup) => {}
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    }
}

/// Waits for one delivery of a signal; if the signal stream has closed, waits forever rather
/// than returning at once in a loop.
#[cfg(unix)]
async fn wait(slot: &mut Option<tokio::signal::unix::Signal>) {
    if let Some(signal) = slot.as_mut()
        && signal.recv().await.is_some()
    {
        return;
    }
    *slot = None;
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_CONFIG;

    #[test]
    fn the_shipped_configuration_passes_the_consoles_checks() {
        Config::parse_checked(DEFAULT_CONFIG, "config.ron", CONFIG_CHECKS).unwrap();
    }

    #[test]
    fn a_saved_filter_that_does_not_compile_stops_the_load_at_its_line() {
        let text = DEFAULT_CONFIG.replacen(
            "    filters: {},",
            "    filters: {\n        \"db\": \"priority == (\",\n    },",
            1,
        );
        assert_ne!(text, DEFAULT_CONFIG);
        let line = text.lines().position(|l| l.contains("\"db\":")).unwrap() + 1;
        let error = Config::parse_checked(&text, "my.ron", CONFIG_CHECKS)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(&format!("my.ron:{line}:")), "{error}");
        assert!(error.contains("filters.db"), "{error}");
        assert!(error.contains("query error"), "{error}");
        // The configuration's own checks know nothing of the console's query language.
        assert!(Config::parse(&text, "my.ron").is_ok());
    }
}
