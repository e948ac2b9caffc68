//! NO_COLOR and read-only profiles, through the real binary in tmux as a person would see it:
//! `capture-pane -e` gives the screen with its escape codes. With NO_COLOR there is not one
//! colour code, and priority, state, profile and read-only are still on the screen in words
//! and modifiers; without it, the same screen has colours (so the check can fail). A profile
//! with `read_only` refuses pause and acknowledge.

#[path = "support/tmux.rs"]
mod tmux;

use std::path::Path;

use tmux::{BINARY, FIRST_EVENTS, STEP, Tmux, events_in_feed, plain, shell_quote};

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
