//! NO_COLOR and read-only profiles, through the real binary in tmux as a person would see it:
//! `capture-pane -e` gives the screen with its escape codes. With NO_COLOR there is not one
//! colour code, and priority, state, profile and read-only are still on the screen in words
//! and modifiers; without it, the same screen has colours (so the check can fail). A profile
//! with `read_only` refuses pause and acknowledge.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_incident-console");
/// The demo's broker and first rebalance take seconds; a loaded debug build needs more.
const FIRST_EVENTS: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_secs(15);

/// A tmux server of the test's own (its socket named after the process), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start() -> Self {
        Self {
            socket: format!("incident-console-test-{}", std::process::id()),
        }
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux is installed (scripts/setup)")
    }

    /// A detached window running `command` (a shell command line) at 120x36.
    fn window(&self, name: &str, command: &str) {
        let output = self.tmux(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "120",
            "-y",
            "36",
            command,
        ]);
        assert!(output.status.success(), "{output:?}");
    }

    /// The screen with its escape codes (`-e`).
    fn capture(&self, name: &str) -> String {
        let output = self.tmux(&["capture-pane", "-p", "-e", "-t", name]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn keys(&self, name: &str, keys: &str) {
        assert!(self.tmux(&["send-keys", "-t", name, keys]).status.success());
    }

    /// Polls the screen until `ready`; panics with the screen after `timeout`.
    fn wait(&self, name: &str, what: &str, timeout: Duration, ready: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture(name);
            if ready(&plain(&screen)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{}",
                plain(&screen)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The SGR parameter lists (`ESC [ ... m`) in `screen`.
fn sgr_codes(screen: &str) -> Vec<Vec<u16>> {
    let mut codes = Vec::new();
    let mut rest = screen;
    while let Some(start) = rest.find("\x1b[") {
        let tail = &rest[start + 2..];
        let end = tail
            .find(|c: char| !(c.is_ascii_digit() || c == ';' || c == ':'))
            .unwrap_or(tail.len());
        if tail[end..].starts_with('m') {
            codes.push(
                tail[..end]
                    .split([';', ':'])
                    .filter_map(|n| n.parse().ok())
                    .collect(),
            );
        }
        rest = &tail[end..];
    }
    codes
}

/// Whether any SGR sets a foreground or background colour (not the terminal's default).
fn has_colour(screen: &str) -> bool {
    sgr_codes(screen).iter().any(|params| {
        params
            .iter()
            .any(|&p| matches!(p, 30..=38 | 40..=48 | 90..=97 | 100..=107))
    })
}

fn plain(screen: &str) -> String {
    let mut out = String::new();
    let mut chars = screen.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC [ params final
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn events_in_feed(screen: &str) -> bool {
    ["Feed", "Escalations", "Metrics", "Logs"]
        .iter()
        .all(|pane| screen.contains(pane))
        && !screen.contains("waiting for events")
        && screen.contains("unacknowledged")
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn no_color_leaves_no_colour_escape_and_read_only_refuses_pause_and_acknowledge() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.ron");
    std::fs::write(
        &config,
        r#"(profiles: {"prod": (header_colour: Some("red"), read_only: true)})"#,
    )
    .unwrap();
    let tmux = Tmux::start();
    let console = |no_color: &str| {
        format!(
            "env -u RUST_LOG TERM=xterm-256color NO_COLOR={no_color} {} --config {} --demo \
             --demo-rate 30 --profile prod",
            shell_quote(Path::new(BINARY)),
            shell_quote(&config)
        )
    };
    tmux.window("mono", &console("1"));
    tmux.window("colour", &console(""));
    for name in ["mono", "colour"] {
        tmux.wait(name, "events in the feed", FIRST_EVENTS, events_in_feed);
    }
    // The same screen in colour has colour codes: the check below can fail.
    let coloured = tmux.capture("colour");
    assert!(
        has_colour(&coloured),
        "no colour without NO_COLOR:\n{coloured:?}"
    );

    let screen = tmux.capture("mono");
    assert!(
        !has_colour(&screen),
        "a colour code with NO_COLOR:\n{screen:?}"
    );
    let text = plain(&screen);
    // What colour said is in words: the profile, read-only, the state, the priorities.
    for words in ["◉ PROD", "READ-ONLY", "CONSUMING"] {
        assert!(text.contains(words), "{words} missing:\n{text}");
    }
    assert!(
        [
            "CRIT", "HIGH", "MED", "LOW", "critical", "high", "medium", "low"
        ]
        .iter()
        .any(|p| text.contains(p)),
        "no priority in words:\n{text}"
    );
    // ... and badges stand out in reverse video (SGR 7) instead of a background colour.
    assert!(
        sgr_codes(&screen).iter().any(|params| params.contains(&7)),
        "no reverse video:\n{screen:?}"
    );

    // Read-only: pause and acknowledge are refused, and consumption goes on.
    tmux.keys("mono", "p");
    tmux.wait("mono", "pause refused", STEP, |s| {
        s.contains("pausing is disabled: read-only")
    });
    assert!(plain(&tmux.capture("mono")).contains("CONSUMING"));
    tmux.keys("mono", "Tab");
    tmux.keys("mono", "a");
    tmux.wait("mono", "acknowledge refused", STEP, |s| {
        s.contains("acknowledging is disabled: read-only")
    });
    assert!(!plain(&tmux.capture("mono")).contains("Acknowledge incident"));
}

#[test]
fn the_escape_code_reader_sees_colours_and_modifiers() {
    assert!(has_colour("a\x1b[31mred"));
    assert!(has_colour("\x1b[1;38;5;196mx"));
    assert!(has_colour("\x1b[48:2:1:2:3mx"));
    assert!(!has_colour("\x1b[1m\x1b[7mx\x1b[0m\x1b[39;49m"));
    assert_eq!(plain("\x1b[1mbold\x1b[0m plain"), "bold plain");
}
