//! The real console in tmux, as a person sees it: a tmux server of the test's own, windows
//! started with a command line, keys sent, the screen captured with or without its escape
//! codes. Every wait polls the screen with a deadline.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_incident-console");
/// The demo's broker and first rebalance take seconds; a loaded debug build needs more.
pub const FIRST_EVENTS: Duration = Duration::from_secs(60);
pub const STEP: Duration = Duration::from_secs(15);

/// Each test's own server, also among the tests of one process.
static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A tmux server of the test's own (its socket named after the process), killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start() -> Self {
        Self {
            socket: format!(
                "incident-console-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
        }
    }

    pub fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux is installed (scripts/setup)")
    }

    /// A detached window running `command` (a shell command line) at 120x36.
    pub fn window(&self, name: &str, command: &str) {
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
    pub fn capture(&self, name: &str) -> String {
        let output = self.tmux(&["capture-pane", "-p", "-e", "-t", name]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn keys(&self, name: &str, keys: &str) {
        assert!(self.tmux(&["send-keys", "-t", name, keys]).status.success());
    }

    /// Polls the screen until `ready`; panics with the screen after `timeout`.
    pub fn wait(&self, name: &str, what: &str, timeout: Duration, ready: impl Fn(&str) -> bool) {
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

pub fn plain(screen: &str) -> String {
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

pub fn events_in_feed(screen: &str) -> bool {
    ["Feed", "Escalations", "Metrics", "Logs"]
        .iter()
        .all(|pane| screen.contains(pane))
        && !screen.contains("waiting for events")
        && screen.contains("unacknowledged")
}

pub fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
