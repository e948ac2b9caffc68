//! A console whose terminal goes away (the tmux server killed, the ssh link dropped, the
//! terminal window closed) ends: it must not stay behind, spinning on a dead terminal or
//! waiting for ever on a final commit, as one did after a test's tmux server was killed.

#[path = "support/tmux.rs"]
mod tmux;

use std::path::Path;
use std::time::{Duration, Instant};

use tmux::{BINARY, FIRST_EVENTS, Tmux, events_in_feed, shell_quote};

/// The console in a window, run by a shell that ignores the hang-up and writes the console's
/// exit status to `status` when it ends (the console installs its own SIGHUP handler).
fn start(tmux: &Tmux, name: &str, status: &Path) {
    let command = format!(
        "trap '' HUP; env -u RUST_LOG TERM=xterm-256color {} --config {} --demo --demo-rate 30 \
         --operator {}; echo $? > {}",
        shell_quote(Path::new(BINARY)),
        shell_quote(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config.ron"
        ))),
        operator(name),
        shell_quote(status)
    );
    tmux.window(name, &command);
}

/// Names this test's console on its command line, so a failure can kill it.
fn operator(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// The exit status, once the console has ended; `None` if it has not by `within`.
fn exit_status(status: &Path, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(text) = std::fs::read_to_string(status)
            && text.ends_with('\n')
        {
            return Some(text.trim().to_string());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Killed while it starts (before the group is joined) and again while events flow: each
/// time the process ends on its own within the shutdown's bound (the final commit's 10 s,
/// with room for a loaded machine), and is then killed by the test if not, so a failure
/// leaves nothing running.
#[test]
fn a_console_whose_terminal_goes_away_ends() {
    let dir = tempfile::tempdir().unwrap();
    for (round, wait_for_events) in [false, true, false, true].into_iter().enumerate() {
        let tmux = Tmux::start();
        let name = format!("hangup{round}");
        let status = dir.path().join(format!("status{round}"));
        start(&tmux, &name, &status);
        if wait_for_events {
            tmux.wait(&name, "events in the feed", FIRST_EVENTS, events_in_feed);
        } else {
            // Its first frame, before the group is joined.
            tmux.wait(&name, "the console on screen", FIRST_EVENTS, |s| {
                s.contains("Feed") && s.contains("Escalations")
            });
        }
        drop(tmux);
        let code = exit_status(&status, Duration::from_secs(30));
        if code.is_none() {
            // Leave nothing running behind a failure.
            let _ = std::process::Command::new("pkill")
                .args(["-KILL", "-f", &format!("--operator {}", operator(&name))])
                .status();
        }
        // A hang-up is a way to quit: a graceful shutdown, exit 0 (101 was the panic).
        assert_eq!(
            code.as_deref(),
            Some("0"),
            "round {round} (events flowing: {wait_for_events}): the exit status 30 s after \
             the terminal went away"
        );
    }
}
