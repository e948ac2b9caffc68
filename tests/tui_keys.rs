//! Keys, without a terminal: key -> `App::handle_key` -> `Command`, and where a command changes
//! the engine, the command fed to a real `Engine` and the result rendered again.

mod tui_support;

use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use incident_console::config::{Config, DEFAULT_CONFIG};
use incident_console::core::engine::{Engine, Input};
use incident_console::core::event::{IncidentId, Priority};
use incident_console::status::Command;
use incident_console::tui::{Action, App, Keymap, Overlay, Pane};
use tui_support::*;

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        assert_eq!(app.handle_key(ch(c)), None, "typing {c:?} sent a command");
    }
}

/// Runs a command against the engine as the runtime would.
fn apply(engine: &mut Engine, command: Command, at: i64) {
    match command {
        Command::Acknowledge { incident_id, by } => {
            engine.apply(Input::Acknowledge { incident_id, by }, t(at));
        }
        other => panic!("not an engine command: {other:?}"),
    }
}

fn acknowledged_by(engine: &Engine, incident_id: IncidentId) -> Option<String> {
    engine
        .escalations()
        .get(incident_id)
        .and_then(|e| e.acknowledged.as_ref())
        .map(|ack| ack.by.clone())
}

#[test]
fn acknowledge_asks_first_and_yes_acknowledges_in_the_engine() {
    let mut engine = story_engine();
    let mut app = app_for(snapshot_of(&engine, false));
    assert_eq!(app.handle_key(key(KeyCode::Tab)), None);
    assert_eq!(app.focus(), Pane::Escalations);
    // The queue's first entry: #1001, unacknowledged, at level 2.
    let target = app.selected_escalation().unwrap().escalation.incident_id;
    assert_eq!(target, 1001);

    assert_eq!(app.handle_key(ch('a')), None, "asks before acting");
    match app.overlay() {
        Some(Overlay::ConfirmAcknowledge {
            incident_id,
            question,
        }) => {
            assert_eq!(*incident_id, 1001);
            assert!(question.contains("as alice?"), "{question}");
        }
        other => panic!("expected the question, got {other:?}"),
    }
    // Keys that do not answer leave the question open and do nothing.
    for stray in [ch('p'), ch('q'), key(KeyCode::Tab), ch('j')] {
        assert_eq!(app.handle_key(stray), None);
        assert!(matches!(
            app.overlay(),
            Some(Overlay::ConfirmAcknowledge { .. })
        ));
    }
    let command = app.handle_key(ch('y')).expect("yes sends the command");
    assert_eq!(
        command,
        Command::Acknowledge {
            incident_id: 1001,
            by: OPERATOR.into()
        }
    );
    assert!(app.overlay().is_none());

    assert_eq!(acknowledged_by(&engine, 1001), None);
    apply(&mut engine, command, NOW);
    assert_eq!(acknowledged_by(&engine, 1001).as_deref(), Some(OPERATOR));

    // The next snapshot shows it below the unacknowledged ones; the selection, never moved
    // by the operator, stays on the most urgent escalation.
    app.set_snapshot(snapshot_of(&engine, false));
    assert_eq!(
        app.selected_escalation().unwrap().escalation.incident_id,
        1002
    );
    let terminal = render_pane(&mut app, Pane::Escalations, 120, 8);
    let row = row_with(terminal.backend().buffer(), "#1001");
    assert!(row.contains("✓ alice 03:01"), "{row}");
    // Asking again says who took it, without a question.
    app.handle_key(ch('j'));
    app.handle_key(ch('j'));
    assert_eq!(
        app.selected_escalation().unwrap().escalation.incident_id,
        1001
    );
    assert_eq!(app.handle_key(ch('a')), None);
    assert!(app.overlay().is_none());
    let message = app.message().expect("a message").text.clone();
    assert!(
        message.contains("already acknowledged by alice"),
        "{message}"
    );
}

#[test]
fn acknowledge_answered_no_changes_nothing() {
    let engine = story_engine();
    let mut app = app_for(snapshot_of(&engine, false));
    app.handle_key(key(KeyCode::Tab));
    app.handle_key(ch('a'));
    assert_eq!(app.handle_key(ch('n')), None);
    assert!(app.overlay().is_none());
    assert_eq!(acknowledged_by(&engine, 1001), None);
    // Esc is "no" too.
    app.handle_key(ch('a'));
    assert_eq!(app.handle_key(key(KeyCode::Esc)), None);
    assert!(app.overlay().is_none());
    // Ctrl-C still quits from inside the question.
    app.handle_key(ch('a'));
    assert_eq!(app.handle_key(ctrl('c')), Some(Command::Shutdown));
    assert!(app.is_quitting());
}

#[test]
fn acknowledge_from_the_feed_targets_the_selected_events_incident() {
    let mut engine = story_engine();
    let mut app = app_for(snapshot_of(&engine, false));
    // Newest first: #1006 (critical, escalated) is selected while live.
    assert_eq!(app.selected_feed_entry().unwrap().incident_id, Some(1006));
    app.handle_key(ch('a'));
    let command = app.handle_key(ch('y')).unwrap();
    apply(&mut engine, command, NOW);
    assert_eq!(acknowledged_by(&engine, 1006).as_deref(), Some(OPERATOR));
    // #1004 (low) has no escalation: no question, a message instead.
    app.set_snapshot(snapshot_of(&engine, false));
    app.handle_key(ch('j'));
    assert_eq!(app.selected_feed_entry().unwrap().incident_id, Some(1004));
    assert_eq!(app.handle_key(ch('a')), None);
    assert!(app.overlay().is_none());
    assert!(app.message().is_some());
}

#[test]
fn pause_key_toggles_consumption() {
    let mut app = story_app();
    assert_eq!(app.handle_key(ch('p')), Some(Command::TogglePause));
    assert_eq!(
        app.message().unwrap().text,
        "pausing consumption",
        "the footer says what was asked"
    );
    app.set_snapshot(snapshot_of(&story_engine(), true));
    assert_eq!(app.handle_key(ch('p')), Some(Command::TogglePause));
    assert_eq!(app.message().unwrap().text, "resuming consumption");
}

#[test]
fn quit_asks_for_shutdown_and_a_second_quit_is_passed_on() {
    let mut app = story_app();
    assert_eq!(app.handle_key(ch('q')), Some(Command::Shutdown));
    assert!(app.is_quitting());
    // While shutting down, other keys do nothing; quit again is passed on (exit at once).
    assert_eq!(app.handle_key(ch('p')), None);
    assert_eq!(app.handle_key(ctrl('c')), Some(Command::Shutdown));

    let mut app = story_app();
    assert_eq!(app.handle_key(ctrl('c')), Some(Command::Shutdown));
}

#[test]
fn key_releases_are_ignored() {
    let mut app = story_app();
    let mut release = ch('p');
    release.kind = KeyEventKind::Release;
    assert_eq!(app.handle_key(release), None);
}

#[test]
fn filter_by_priority_type_and_text_then_clear() {
    let mut app = story_app();
    let all = app.visible_feed().len();
    assert_eq!(all, 13);

    assert_eq!(app.handle_key(ch('/')), None);
    assert!(app.is_filter_editing());
    // Keys bound to actions are text while typing: `q` does not quit, `p` does not pause.
    type_text(&mut app, "critical");
    assert!(
        app.visible_feed()
            .iter()
            .all(|e| e.priority == Some(Priority::Critical))
    );
    assert_eq!(app.visible_feed().len(), 3);
    app.handle_key(key(KeyCode::Enter));
    assert!(!app.is_filter_editing());
    assert_eq!(app.filter_text(), "critical");
    // Esc clears the filter.
    app.handle_key(key(KeyCode::Esc));
    assert_eq!(app.filter_text(), "");
    assert_eq!(app.visible_feed().len(), all);

    app.handle_key(ch('/'));
    type_text(&mut app, "status_updated");
    let kinds: Vec<_> = app
        .visible_feed()
        .iter()
        .map(|e| e.incident_id.unwrap())
        .collect();
    assert_eq!(kinds, vec![1004, 1003]);
    // Backspace edits; Esc while typing clears and stops typing.
    for _ in 0.."status_updated".len() {
        app.handle_key(key(KeyCode::Backspace));
    }
    type_text(&mut app, "quit pause");
    assert_eq!(app.filter_text(), "quit pause");
    assert!(!app.is_quitting());
    assert!(app.visible_feed().is_empty());
    app.handle_key(key(KeyCode::Esc));
    assert!(!app.is_filter_editing());
    assert_eq!(app.visible_feed().len(), all);

    app.handle_key(ch('/'));
    type_text(&mut app, "DATABASE");
    assert!(
        app.visible_feed()
            .iter()
            .all(|e| e.title == "Primary database down")
    );
    assert_eq!(app.visible_feed().len(), 3);
    // Ctrl-C quits even while typing.
    assert_eq!(app.handle_key(ctrl('c')), Some(Command::Shutdown));
}

#[test]
fn filter_length_is_bounded() {
    let mut app = story_app();
    app.handle_key(ch('/'));
    type_text(&mut app, &"x".repeat(500));
    assert_eq!(
        app.filter_text().chars().count(),
        incident_console::tui::app::MAX_FILTER_CHARS
    );
}

#[test]
fn scrolling_freezes_the_feed_and_top_returns_to_live() {
    let mut engine = story_engine();
    let mut app = app_for(snapshot_of(&engine, false));
    assert!(app.is_live());
    app.handle_key(ch('j'));
    app.handle_key(key(KeyCode::Down));
    assert!(!app.is_live());
    let selected = app.selected_feed_entry().unwrap().seq;
    assert_eq!(app.selected_feed_index(), Some(2));

    for i in 0..7 {
        tui_support::feed(
            &mut engine,
            created(4000 + i, Priority::Medium, "burst", 60),
            60,
        );
    }
    app.set_snapshot(snapshot_of(&engine, false));
    assert_eq!(app.new_since_frozen(), 7);
    assert_eq!(
        app.selected_feed_entry().unwrap().seq,
        selected,
        "the selection stays on the same event"
    );
    assert_eq!(app.feed_top_index(10), 7, "the view stays where it was");

    app.handle_key(ch('g'));
    assert!(app.is_live());
    assert_eq!(app.selected_feed_index(), Some(0));
    assert_eq!(app.new_since_frozen(), 0);

    // G goes to the oldest, `l` and Esc return to live, k back to the top does too.
    app.handle_key(ch('G'));
    assert_eq!(
        app.selected_feed_index(),
        Some(app.visible_feed().len() - 1)
    );
    app.handle_key(ch('l'));
    assert!(app.is_live());
    app.handle_key(key(KeyCode::End));
    app.handle_key(key(KeyCode::Esc));
    assert!(app.is_live());
    app.handle_key(ch('j'));
    app.handle_key(ch('k'));
    assert!(app.is_live());
    app.handle_key(key(KeyCode::PageDown));
    assert!(!app.is_live());
    app.handle_key(key(KeyCode::PageUp));
    assert!(app.is_live());
    app.handle_key(key(KeyCode::PageDown));
    app.handle_key(key(KeyCode::Home));
    assert!(app.is_live());
}

#[test]
fn frozen_view_survives_its_entry_being_evicted() {
    let mut engine = engine(5);
    for i in 0..5 {
        tui_support::feed(&mut engine, created(100 + i, Priority::Low, "x", i), i);
    }
    let mut app = app_for(snapshot_of(&engine, false));
    app.handle_key(ch('G'));
    assert_eq!(app.selected_feed_index(), Some(4));
    for i in 5..8 {
        tui_support::feed(&mut engine, created(100 + i, Priority::Low, "x", i), i);
    }
    app.set_snapshot(snapshot_of(&engine, false));
    // The selected entry dropped off the bounded feed: the oldest one left is selected.
    assert_eq!(app.selected_feed_index(), Some(4));
    assert_eq!(app.new_since_frozen(), 3);
}

#[test]
fn tab_and_shift_tab_cycle_the_panes() {
    let mut app = story_app();
    let mut seen = vec![app.focus()];
    for _ in 0..4 {
        app.handle_key(key(KeyCode::Tab));
        seen.push(app.focus());
    }
    assert_eq!(
        seen,
        vec![
            Pane::Feed,
            Pane::Escalations,
            Pane::Metrics,
            Pane::Logs,
            Pane::Feed
        ]
    );
    app.handle_key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    assert_eq!(app.focus(), Pane::Logs);
}

#[test]
fn escalation_selection_moves_with_the_keys() {
    let mut app = story_app();
    app.handle_key(key(KeyCode::Tab));
    assert_eq!(app.selected_escalation_index(), Some(0));
    app.handle_key(ch('j'));
    app.handle_key(ch('j'));
    assert_eq!(
        app.selected_escalation().unwrap().escalation.incident_id,
        1006
    );
    app.handle_key(ch('G'));
    assert_eq!(app.selected_escalation_index(), Some(3));
    app.handle_key(ch('j'));
    assert_eq!(app.selected_escalation_index(), Some(3), "stops at the end");
    app.handle_key(ch('g'));
    assert_eq!(app.selected_escalation_index(), Some(0));
}

#[test]
fn help_opens_and_closes() {
    let mut app = story_app();
    app.handle_key(ch('?'));
    assert!(matches!(app.overlay(), Some(Overlay::Help { .. })));
    // Scrolling keys scroll the help, not the feed.
    app.handle_key(ch('j'));
    assert!(app.is_live());
    app.handle_key(ch('?'));
    assert!(app.overlay().is_none());
    app.handle_key(key(KeyCode::F(1)));
    assert!(app.overlay().is_some());
    app.handle_key(key(KeyCode::Esc));
    assert!(app.overlay().is_none());
    // q in help quits, like everywhere else.
    app.handle_key(ch('?'));
    assert_eq!(app.handle_key(ch('q')), Some(Command::Shutdown));
}

#[test]
fn details_open_for_events_and_escalations() {
    let mut app = story_app();
    app.handle_key(key(KeyCode::Enter));
    match app.overlay() {
        Some(Overlay::Detail { title, lines, .. }) => {
            assert_eq!(title, "incident_created · incident #1006");
            assert!(lines.len() > 10);
        }
        other => panic!("{other:?}"),
    }
    app.handle_key(ch('j'));
    match app.overlay() {
        Some(Overlay::Detail { scroll, .. }) => assert_eq!(*scroll, 1),
        other => panic!("{other:?}"),
    }
    app.handle_key(key(KeyCode::Enter));
    assert!(app.overlay().is_none(), "enter closes it again");

    app.handle_key(key(KeyCode::Tab));
    app.handle_key(key(KeyCode::Enter));
    match app.overlay() {
        Some(Overlay::Detail { title, .. }) => {
            assert_eq!(title, "escalation · incident #1001")
        }
        other => panic!("{other:?}"),
    }
    app.handle_key(key(KeyCode::Esc));
    assert!(app.overlay().is_none());
}

#[test]
fn log_capture_level_steps_and_stops_at_the_ends() {
    use tracing::level_filters::LevelFilter;
    let mut app = story_app();
    assert_eq!(app.log_capture(), LevelFilter::INFO);
    app.handle_key(ch('+'));
    assert_eq!(app.take_log_capture_change(), Some(LevelFilter::DEBUG));
    assert_eq!(app.take_log_capture_change(), None, "reported once");
    app.handle_key(ch('+'));
    app.handle_key(ch('+'));
    assert_eq!(app.log_capture(), LevelFilter::TRACE);
    for _ in 0..6 {
        app.handle_key(ch('-'));
    }
    assert_eq!(app.log_capture(), LevelFilter::ERROR);
}

#[test]
fn rebound_keys_replace_the_defaults() {
    let overrides = BTreeMap::from([
        ("pause".to_string(), vec!["space".to_string()]),
        ("quit".to_string(), vec!["ctrl-q".to_string()]),
    ]);
    let keymap = Keymap::with_overrides(&overrides).unwrap();
    let mut app = App::new(
        keymap,
        story_snapshot(),
        chrono::FixedOffset::east_opt(0).unwrap(),
    );
    assert_eq!(app.handle_key(ch('p')), None);
    assert_eq!(app.handle_key(ch('q')), None);
    assert_eq!(app.handle_key(ch(' ')), Some(Command::TogglePause));
    // The help shows the new bindings.
    app.handle_key(ch('?'));
    let terminal = render_screen(&mut app, 120, 40);
    let screen = text(terminal.backend().buffer());
    assert!(screen.contains("space"), "{screen}");
    assert!(screen.contains("ctrl-q"), "{screen}");
    assert_eq!(app.handle_key(ctrl('q')), Some(Command::Shutdown));
}

#[test]
fn bad_key_config_fails_at_start_up_naming_the_action_and_key() {
    let table = [
        (r#"keys: { "explode": ["x"] },"#, "unknown action `explode`"),
        (
            r#"keys: { "pause": ["ctrl-"] },"#,
            "action `pause`: cannot read key `ctrl-`",
        ),
        (
            r#"keys: { "pause": ["hyper-p"] },"#,
            "action `pause`: cannot read key `hyper-p`",
        ),
        (
            r#"keys: { "pause": ["q"] },"#,
            "key `q` is bound to both `quit` and `pause`",
        ),
    ];
    for (keys, expected) in table {
        let text = DEFAULT_CONFIG.replacen("keys: {},", keys, 1);
        assert_ne!(text, DEFAULT_CONFIG);
        let error = Config::parse_checked(&text, "my.ron", incident_console::tui::CONFIG_CHECKS)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("my.ron:"), "{error}");
        assert!(error.contains("field `console.keys`"), "{error}");
        assert!(error.contains(expected), "{error}");
    }
    let good = DEFAULT_CONFIG.replacen("keys: {},", r#"keys: { "pause": ["p", "space"] },"#, 1);
    let config = Config::parse(&good, "good.ron").unwrap();
    let keymap = incident_console::tui::keymap_from_config(&config).unwrap();
    assert_eq!(keymap.describe(Action::Pause), "p, space");
}

#[test]
fn config_ron_documents_every_action_with_its_default_keys() {
    for action in Action::ALL {
        let keys = action
            .default_keys()
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let documented = format!("{} [{keys}]", action.name());
        assert!(
            DEFAULT_CONFIG.contains(&documented),
            "config.ron does not document `{documented}`"
        );
    }
}

/// VHS `Type "..."` sends characters; named commands send keys. Every key demo.tape presses
/// must do something in the console, or the recorded tour would show a dead key.
#[test]
fn every_key_in_demo_tape_is_bound() {
    let tape = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/demo.tape"))
        .expect("demo.tape at the top of the repository");
    let keymap = Keymap::default();
    let bound = |key: &KeyEvent| Action::ALL.iter().any(|a| keymap.is(*a, key));
    let mut in_console = false;
    let mut filter_typing = false;
    let mut pressed = 0;
    for line in tape.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        // Strip a repeat count or speed: `Down 3`, `Type@100ms "x"`.
        let command = command.split('@').next().unwrap();
        let keys: Vec<KeyEvent> = match command {
            "Type" => {
                let text = rest.trim().trim_matches('"');
                if !in_console {
                    // The shell command that starts the console.
                    if text.contains("--demo") {
                        in_console = true;
                    }
                    continue;
                }
                text.chars().map(ch).collect()
            }
            "Enter" => vec![key(KeyCode::Enter)],
            "Tab" => vec![key(KeyCode::Tab)],
            "Escape" => vec![key(KeyCode::Esc)],
            "Up" => vec![key(KeyCode::Up)],
            "Down" => vec![key(KeyCode::Down)],
            "Left" => vec![key(KeyCode::Left)],
            "Right" => vec![key(KeyCode::Right)],
            "PageUp" => vec![key(KeyCode::PageUp)],
            "PageDown" => vec![key(KeyCode::PageDown)],
            "Space" => vec![ch(' ')],
            "Backspace" => vec![key(KeyCode::Backspace)],
            c if c.starts_with("Ctrl+") => {
                let letter = c.trim_start_matches("Ctrl+").to_ascii_lowercase();
                vec![ctrl(letter.chars().next().unwrap())]
            }
            _ => continue,
        };
        if !in_console {
            // Enter after the shell command, before the console is up.
            continue;
        }
        for k in keys {
            pressed += 1;
            if filter_typing {
                // Inside `/…`: text until Enter or Esc.
                if matches!(k.code, KeyCode::Enter | KeyCode::Esc) {
                    filter_typing = false;
                }
                continue;
            }
            assert!(bound(&k), "demo.tape presses {k:?}, which no action uses");
            if keymap.is(Action::Filter, &k) {
                filter_typing = true;
            }
        }
    }
    assert!(in_console, "demo.tape never starts the console with --demo");
    assert!(pressed >= 10, "demo.tape should tour the console");
}

#[test]
fn the_documented_key_table_matches_the_default_keymap() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/console.md"))
        .expect("docs/console.md");
    let start = readme
        .find("<!-- console:start -->")
        .expect("console section");
    let end = readme
        .find("<!-- console:end -->")
        .expect("console section end");
    let section = &readme[start..end];
    for action in Action::ALL {
        let keys = action
            .default_keys()
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let row = format!(
            "| {keys} | `{}` | {} |",
            action.name(),
            action.description()
        );
        assert!(
            section.contains(&row),
            "docs/console.md lacks the row {row}"
        );
    }
}

#[test]
fn at_a_team_console_snooze_and_unacknowledge_are_asked_of_the_active_worker() {
    use incident_console::oncall::OncallCommand;
    use incident_console::status::TeamView;
    let mut engine = story_engine();
    let mut snapshot = (*snapshot_of(&engine, false)).clone();
    snapshot.team = Some(TeamView::Active {
        worker: "worker-4242".into(),
        epoch: 3,
    });
    let mut app = app_for(std::sync::Arc::new(snapshot));
    assert_eq!(app.handle_key(key(KeyCode::Tab)), None);
    assert_eq!(app.handle_key(ch('s')), None, "the form opens");
    let snooze = app.handle_key(key(KeyCode::Enter));
    assert_eq!(
        snooze,
        Some(Command::Oncall(OncallCommand::Snooze {
            incident_id: 1001,
            minutes: 15,
            reason: "snoozed from the console".into(),
            by: OPERATOR.into(),
        }))
    );
    let said = &app.message().unwrap().text;
    assert!(said.ends_with("(asked of the active worker)"), "{said}");

    // An acknowledged one: `u` asks for it back.
    engine.apply(
        Input::Acknowledge {
            incident_id: 1001,
            by: "bob".into(),
        },
        t(NOW),
    );
    let mut snapshot = (*snapshot_of(&engine, false)).clone();
    snapshot.team = Some(TeamView::NoActiveWorker);
    let mut app = app_for(std::sync::Arc::new(snapshot));
    assert_eq!(app.handle_key(key(KeyCode::Tab)), None);
    // Acknowledged ones are listed after the others.
    for _ in 0..10 {
        if app
            .selected_escalation()
            .unwrap()
            .escalation
            .acknowledged
            .is_some()
        {
            break;
        }
        assert_eq!(app.handle_key(key(KeyCode::Down)), None);
    }
    let target = app.selected_escalation().unwrap().escalation.clone();
    assert_eq!(target.incident_id, 1001);
    assert_eq!(
        app.handle_key(ch('u')),
        Some(Command::Oncall(OncallCommand::Unacknowledge {
            incident_id: target.incident_id,
            by: OPERATOR.into(),
        }))
    );
}
