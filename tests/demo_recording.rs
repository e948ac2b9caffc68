//! The committed recording (assets/demo.cast, made by scripts/record-demo from demo.tape) is
//! a real asciicast v2 of the console: a terminal emulator replaying it shows the four panes,
//! every key it pressed is bound in the console's keymap, and it pressed the tape's keys.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use incident_console::tui::{Action, Keymap};

const CAST: &str = include_str!("../assets/demo.cast");
const TAPE: &str = include_str!("../demo.tape");

fn events() -> (serde_json::Value, Vec<(f64, String, String)>) {
    let mut lines = CAST.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let events = lines
        .map(|line| {
            let event: (f64, String, String) = serde_json::from_str(line).unwrap();
            event
        })
        .collect();
    (header, events)
}

/// The keys one "i" event sent, as the console reads them.
fn keys_of(input: &str) -> Vec<KeyEvent> {
    let plain = |code| KeyEvent::new(code, KeyModifiers::NONE);
    match input {
        "\r" => vec![plain(KeyCode::Enter)],
        "\x1b" => vec![plain(KeyCode::Esc)],
        "\t" => vec![plain(KeyCode::Tab)],
        "\x7f" => vec![plain(KeyCode::Backspace)],
        "\x1b[A" => vec![plain(KeyCode::Up)],
        "\x1b[B" => vec![plain(KeyCode::Down)],
        "\x1b[C" => vec![plain(KeyCode::Right)],
        "\x1b[D" => vec![plain(KeyCode::Left)],
        "\x1b[5~" => vec![plain(KeyCode::PageUp)],
        "\x1b[6~" => vec![plain(KeyCode::PageDown)],
        text => text
            .chars()
            .map(|c| {
                if (c as u32) < 0x20 {
                    let letter = char::from(b'a' + (c as u8) - 1);
                    KeyEvent::new(KeyCode::Char(letter), KeyModifiers::CONTROL)
                } else {
                    plain(KeyCode::Char(c))
                }
            })
            .collect(),
    }
}

#[test]
fn the_recording_shows_the_four_panes() {
    let (header, events) = events();
    assert_eq!(header["version"], 2);
    let (cols, rows) = (
        header["width"].as_u64().unwrap() as u16,
        header["height"].as_u64().unwrap() as u16,
    );
    let mut terminal = vt100::Parser::new(rows, cols, 0);
    let mut all_four = false;
    let mut last = 0.0;
    for (at, kind, data) in &events {
        assert!(*at >= last, "events out of order at {at}");
        last = *at;
        if kind == "o" {
            terminal.process(data.as_bytes());
            let screen = terminal.screen().contents();
            all_four |= ["Feed", "Escalations", "Metrics", "Logs"]
                .iter()
                .all(|title| screen.contains(title));
        }
    }
    assert!(
        all_four,
        "no frame shows Feed, Escalations, Metrics and Logs"
    );
    assert!(last > 20.0, "the tour lasts {last} s");
}

#[test]
fn every_key_the_recording_pressed_is_bound_and_comes_from_the_tape() {
    let (_, events) = events();
    let keymap = Keymap::default();
    let bound = |key: &KeyEvent| Action::ALL.iter().any(|a| keymap.is(*a, key));
    let mut filter_typing = false;
    let mut pressed = 0;
    let mut typed = String::new();
    for (_, kind, data) in &events {
        if kind != "i" {
            continue;
        }
        for key in keys_of(data) {
            pressed += 1;
            if let KeyCode::Char(c) = key.code {
                typed.push(c);
            }
            if filter_typing {
                if matches!(key.code, KeyCode::Enter | KeyCode::Esc) {
                    filter_typing = false;
                }
                continue;
            }
            assert!(
                bound(&key),
                "the recording pressed {key:?}, which no action uses"
            );
            if keymap.is(Action::Filter, &key) {
                filter_typing = true;
            }
        }
    }
    assert!(pressed >= 10, "only {pressed} keys recorded");
    // The characters typed are the tape's `Type` texts after the command line, in order.
    let from_tape: String = TAPE
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("Type "))
        .skip(1)
        .map(|t| t.trim().trim_matches('"'))
        .collect();
    assert_eq!(typed, from_tape);
}
