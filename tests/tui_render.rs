//! What the console draws, from a fixed snapshot: insta snapshots of every pane and of the
//! whole screen at 80x24 and 160x48, explicit colour checks, and hostile text.

mod tui_support;

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use incident_console::core::engine::Input;
use incident_console::core::event::{Priority, Status};
use incident_console::status::{ChannelStatus, ConnectionState, NotifierStatus};
use incident_console::tui::Pane;
use ratatui::style::{Color, Modifier};
use tui_support::*;

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn press(app: &mut incident_console::tui::App, code: KeyCode) {
    app.handle_key(KeyEvent::new(code, KeyModifiers::NONE));
}

#[test]
fn whole_screen_80x24() {
    let mut app = story_app();
    let terminal = render_screen(&mut app, 80, 24);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn whole_screen_160x48() {
    let mut app = story_app();
    let terminal = render_screen(&mut app, 160, 48);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn whole_screen_paused_with_escalations_focused_120x36() {
    let mut app = app_for(snapshot_of(&story_engine(), true));
    press(&mut app, KeyCode::Tab);
    let terminal = render_screen(&mut app, 120, 36);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn header_pane() {
    let app = story_app();
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 2)).unwrap();
    terminal
        .draw(|frame| incident_console::tui::render::draw_header(frame, &app))
        .unwrap();
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn feed_pane() {
    let mut app = story_app();
    let terminal = render_pane(&mut app, Pane::Feed, 110, 18);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn feed_pane_narrow() {
    let mut app = story_app();
    let terminal = render_pane(&mut app, Pane::Feed, 60, 10);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn escalations_pane() {
    let mut app = story_app();
    press(&mut app, KeyCode::Tab);
    let terminal = render_pane(&mut app, Pane::Escalations, 120, 8);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn escalations_pane_narrow() {
    let mut app = story_app();
    let terminal = render_pane(&mut app, Pane::Escalations, 60, 8);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn metrics_pane() {
    let mut app = story_app();
    let terminal = render_pane(&mut app, Pane::Metrics, 90, 14);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn metrics_pane_with_notifier() {
    let engine = story_engine();
    let mut snapshot = (*snapshot_of(&engine, false)).clone();
    snapshot.notifier = NotifierStatus {
        outbox_depth: 2,
        delivered: 17,
        failed: 1,
        deduplicated: 3,
        rate_limited: 0,
        channels: vec![ChannelStatus {
            name: "slack".into(),
            delivered: 17,
            failed: 1,
            retrying: 2,
            last_error: Some("HTTP 503 from hooks.slack.com".into()),
            ..ChannelStatus::default()
        }],
        ..NotifierStatus::default()
    };
    let mut app = app_for(Arc::new(snapshot));
    let terminal = render_pane(&mut app, Pane::Metrics, 90, 16);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn logs_pane_title_shows_the_capture_level_and_its_keys() {
    let mut app = story_app();
    let terminal = render_pane(&mut app, Pane::Logs, 70, 6);
    let screen = text(terminal.backend().buffer());
    assert!(screen.contains("Logs"), "{screen}");
    assert!(
        screen.contains("capture info (-/+) · targets t"),
        "{screen}"
    );
}

#[test]
fn help_overlay_lists_every_action_with_its_keys() {
    let mut app = story_app();
    app.handle_key(key('?'));
    let terminal = render_screen(&mut app, 120, 40);
    insta::assert_snapshot!(terminal.backend());
    let screen = text(terminal.backend().buffer());
    for (action, _) in app.keymap().iter() {
        assert!(screen.contains(action.name()), "{} missing", action.name());
    }
    assert!(screen.contains("q, ctrl-c"));
    assert!(screen.contains("shift-tab"));
}

#[test]
fn detail_popup_shows_fields_and_pretty_json() {
    let mut app = story_app();
    // The newest event is #1006's creation.
    press(&mut app, KeyCode::Enter);
    let terminal = render_screen(&mut app, 100, 40);
    insta::assert_snapshot!(terminal.backend());
    let screen = text(terminal.backend().buffer());
    assert!(screen.contains("\"incident_id\": 1006,"), "{screen}");
    assert!(screen.contains("Payment gateway timeouts"));
}

#[test]
fn detail_popup_of_a_rejected_payload() {
    let mut app = story_app();
    app.handle_key(key('/'));
    for c in "dlq".chars() {
        app.handle_key(key(c));
    }
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Enter);
    let terminal = render_screen(&mut app, 100, 30);
    let screen = text(terminal.backend().buffer());
    assert!(
        screen.contains("rejected payload (dead-lettered)"),
        "{screen}"
    );
    assert!(screen.contains("not json at all"), "{screen}");
    assert!(
        screen.contains("not valid JSON at line 1 column"),
        "{screen}"
    );
}

#[test]
fn escalation_detail_lists_its_events() {
    let mut app = story_app();
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Enter);
    let terminal = render_screen(&mut app, 100, 40);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn acknowledge_question_names_the_incident_and_operator() {
    let mut app = story_app();
    press(&mut app, KeyCode::Tab);
    app.handle_key(key('a'));
    let terminal = render_screen(&mut app, 100, 30);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn frozen_feed_says_how_many_events_arrived() {
    let mut engine = story_engine();
    let mut app = app_for(snapshot_of(&engine, false));
    app.handle_key(key('j'));
    app.handle_key(key('j'));
    for i in 0..5 {
        tui_support::feed(
            &mut engine,
            created(2000 + i, Priority::Low, "Late arrival", 60),
            60,
        );
    }
    app.set_snapshot(snapshot_of(&engine, false));
    let terminal = render_pane(&mut app, Pane::Feed, 110, 12);
    insta::assert_snapshot!(terminal.backend());
    let buffer = terminal.backend().buffer();
    assert!(find(buffer, "view frozen · 5 new · g for live").is_some());
    assert!(find(buffer, "Late arrival").is_none(), "the view moved");
}

#[test]
fn filter_shows_in_the_title_and_footer() {
    let mut app = story_app();
    app.handle_key(key('/'));
    for c in "critical".chars() {
        app.handle_key(key(c));
    }
    let terminal = render_screen(&mut app, 100, 30);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn priorities_have_their_colours_in_the_feed() {
    let mut app = story_app();
    let terminal = render_pane(&mut app, Pane::Feed, 140, 20);
    let buffer = terminal.backend().buffer();
    let table = [
        ("critical", Color::Red, true),
        ("high", Color::LightRed, false),
        ("medium", Color::Yellow, false),
        ("low", Color::Green, false),
    ];
    for (label, colour, bold) in table {
        // The priority column holds the label followed by spaces.
        let style = style_at(buffer, &format!(" {label} "));
        let (x, y) = find(buffer, &format!(" {label} ")).unwrap();
        let cell = &buffer[(x + 1, y)];
        assert_eq!(cell.fg, colour, "{label}: {style:?}");
        assert_eq!(cell.modifier.contains(Modifier::BOLD), bold, "{label} bold");
    }
    // Comments carry no priority: a grey dash.
    let comment_row = row_with(buffer, "comment_added");
    assert!(comment_row.contains(" - "), "{comment_row}");
}

#[test]
fn priorities_have_their_colours_in_the_escalation_queue() {
    let mut app = story_app();
    let terminal = render_pane(&mut app, Pane::Escalations, 120, 8);
    let buffer = terminal.backend().buffer();
    let (x, y) = find(buffer, "#1006").unwrap();
    let critical = &buffer[(x + 7, y)];
    assert_eq!(critical.symbol(), "c");
    assert_eq!(critical.fg, Color::Red);
    assert!(critical.modifier.contains(Modifier::BOLD));
    let (x, y) = find(buffer, "#1002").unwrap();
    assert_eq!(buffer[(x + 7, y)].fg, Color::LightRed);
    // Unacknowledged in red, acknowledged in green with the name.
    assert_eq!(style_at(buffer, "unacknowledged").fg, Some(Color::Red));
    assert_eq!(style_at(buffer, "✓ alice 03:00").fg, Some(Color::Green));
}

#[test]
fn dead_letters_are_marked_in_red() {
    let mut app = story_app();
    let terminal = render_pane(&mut app, Pane::Feed, 140, 20);
    let buffer = terminal.backend().buffer();
    let style = style_at(buffer, "DLQ");
    assert_eq!(style.bg, Some(Color::Red));
    assert_eq!(style.fg, Some(Color::White));
    assert_eq!(style_at(buffer, "not valid JSON").fg, Some(Color::Red));
}

#[test]
fn paused_is_a_yellow_block_and_consuming_a_green_one() {
    let mut paused = app_for(snapshot_of(&story_engine(), true));
    let terminal = render_screen(&mut paused, 160, 48);
    let buffer = terminal.backend().buffer();
    let (x, y) = find(buffer, "PAUSED").unwrap();
    assert_eq!(y, 1, "on the status line");
    for dx in 0..6 {
        let cell = &buffer[(x + dx, y)];
        assert_eq!(cell.bg, Color::Yellow);
        assert_eq!(cell.fg, Color::Black);
        assert!(cell.modifier.contains(Modifier::BOLD));
    }
    assert!(find(buffer, "not consuming: press p to resume").is_some());
    assert!(find(buffer, "CONSUMING").is_none());

    let mut consuming = story_app();
    let terminal = render_screen(&mut consuming, 160, 48);
    let buffer = terminal.backend().buffer();
    assert!(find(buffer, "PAUSED").is_none());
    assert_eq!(style_at(buffer, "CONSUMING").bg, Some(Color::Green));
    assert_eq!(style_at(buffer, "DEMO").bg, Some(Color::Magenta));
}

#[test]
fn connection_state_is_coloured() {
    let engine = story_engine();
    let mut snapshot = (*snapshot_of(&engine, false)).clone();
    snapshot.consumer.connection = ConnectionState::Disconnected {
        reason: "all brokers down".into(),
    };
    let mut app = app_for(Arc::new(snapshot));
    let terminal = render_screen(&mut app, 160, 48);
    let buffer = terminal.backend().buffer();
    let style = style_at(buffer, "✖ disconnected: all brokers down");
    assert_eq!(style.fg, Some(Color::Red));
    let mut app = story_app();
    let terminal = render_screen(&mut app, 160, 48);
    assert_eq!(
        style_at(terminal.backend().buffer(), "● connected").fg,
        Some(Color::Green)
    );
}

#[test]
fn a_console_header_names_the_active_worker_or_says_there_is_none_in_red() {
    use incident_console::status::TeamView;
    let engine = story_engine();
    let mut snapshot = (*snapshot_of(&engine, false)).clone();
    snapshot.team = Some(TeamView::Active {
        worker: "worker-4242".into(),
        epoch: 3,
    });
    let mut app = app_for(Arc::new(snapshot.clone()));
    let terminal = render_screen(&mut app, 160, 48);
    let buffer = terminal.backend().buffer();
    assert_eq!(
        style_at(buffer, "◆ active worker-4242 · epoch 3").fg,
        Some(Color::Green)
    );
    snapshot.team = Some(TeamView::NoActiveWorker);
    let mut app = app_for(Arc::new(snapshot));
    let terminal = render_screen(&mut app, 160, 48);
    let buffer = terminal.backend().buffer();
    let style = style_at(buffer, "✖ no active worker");
    assert_eq!(style.fg, Some(Color::Red));
    assert!(style.add_modifier.contains(Modifier::REVERSED));
    assert!(!row_with(buffer, "no active worker").contains("epoch"));
    // A standalone console says nothing about workers.
    let mut app = story_app();
    let terminal = render_screen(&mut app, 160, 48);
    let text = lines(terminal.backend().buffer()).join("\n");
    assert!(!text.contains("active worker"), "{text}");
}

#[test]
fn focused_pane_has_a_thick_border_and_marker() {
    let mut app = story_app();
    let terminal = render_screen(&mut app, 160, 48);
    let buffer = terminal.backend().buffer();
    assert!(find(buffer, "▶ Feed").is_some());
    assert_eq!(style_at(buffer, "▶ Feed").fg, Some(Color::Cyan));
    press(&mut app, KeyCode::Tab);
    let terminal = render_screen(&mut app, 160, 48);
    let buffer = terminal.backend().buffer();
    assert!(find(buffer, "▶ Feed").is_none());
    assert!(find(buffer, "▶ Escalations").is_some());
}

/// Every character a terminal would act on, in every field that reaches the screen.
const HOSTILE: &str = "evil\u{1b}[2J\u{1b}[31mred\u{07}bell\r\nnext\u{1b}]0;pwned\u{07}\u{202E}gnp.exe\u{9b}1;1H\u{7f}end";

#[test]
fn hostile_text_never_reaches_the_buffer_as_control_characters() {
    let mut engine = story_engine();
    let mut event = created(3001, Priority::Critical, HOSTILE, 59);
    if let incident_console::core::event::IncidentEvent::IncidentCreated(e) = &mut event {
        e.reported_by = HOSTILE.into();
    }
    tui_support::feed(&mut engine, event, 59);
    tui_support::feed(
        &mut engine,
        status(
            3001,
            Priority::Critical,
            HOSTILE,
            Status::Open,
            Status::InProgress,
            59,
        ),
        59,
    );
    engine.apply(
        Input::Acknowledge {
            incident_id: 3001,
            by: HOSTILE.into(),
        },
        t(60),
    );
    reject(
        &mut engine,
        &format!("{{\"event_type\": \"{HOSTILE}\", \"incident_id\": 1}}"),
        60,
    );
    reject(&mut engine, HOSTILE, 60);
    let mut snapshot = (*snapshot_of(&engine, false)).clone();
    snapshot.operator = HOSTILE.into();
    snapshot.consumer.topic = HOSTILE.into();
    snapshot.consumer.last_error = Some(HOSTILE.into());
    let mut app = app_for(Arc::new(snapshot));

    let mut screens = Vec::new();
    screens.push(render_screen(&mut app, 160, 48));
    // Every detail popup: each feed entry, then each escalation.
    for _ in 0..app.visible_feed().len() {
        press(&mut app, KeyCode::Enter);
        screens.push(render_screen(&mut app, 160, 48));
        press(&mut app, KeyCode::Esc);
        app.handle_key(key('j'));
    }
    press(&mut app, KeyCode::Tab);
    app.handle_key(key('g'));
    for _ in 0..app.snapshot().engine.escalations.len() {
        press(&mut app, KeyCode::Enter);
        screens.push(render_screen(&mut app, 160, 48));
        press(&mut app, KeyCode::Esc);
        app.handle_key(key('a'));
        screens.push(render_screen(&mut app, 160, 48));
        press(&mut app, KeyCode::Esc);
        app.handle_key(key('j'));
    }
    let mut saw_title = false;
    for terminal in &screens {
        let buffer = terminal.backend().buffer();
        for cell in buffer.content() {
            for c in cell.symbol().chars() {
                assert!(
                    !c.is_control() && !('\u{202A}'..='\u{202E}').contains(&c),
                    "control character {c:?} in a cell:\n{}",
                    text(buffer)
                );
            }
        }
        // The raw payload is shown as JSON, where serde_json has escaped ESC as the six
        // printable characters `\u001b`: harmless, and what the operator should see.
        let screen = text(buffer)
            .replace("\\u001b[2J", "")
            .replace("\\u001b]0;pwned", "");
        assert!(
            !screen.contains("[2J"),
            "escape sequence remnant:\n{screen}"
        );
        assert!(!screen.contains("]0;pwned"), "OSC remnant:\n{screen}");
        saw_title |= screen.contains("evilred\u{FFFD}bell  next");
    }
    assert!(saw_title, "the sanitised title is shown");
}

#[test]
fn any_size_renders_without_panicking() {
    let mut app = story_app();
    for (w, h) in [
        (1, 1),
        (10, 3),
        (20, 5),
        (40, 12),
        (79, 23),
        (80, 24),
        (119, 30),
        (120, 30),
        (200, 60),
        (300, 100),
    ] {
        let terminal = render_screen(&mut app, w, h);
        assert_eq!(terminal.backend().buffer().area.width, w);
    }
    for overlay_key in ['?', 'a'] {
        press(&mut app, KeyCode::Tab);
        app.handle_key(key(overlay_key));
        for (w, h) in [(1, 1), (10, 3), (30, 8), (80, 24)] {
            render_screen(&mut app, w, h);
        }
        press(&mut app, KeyCode::Esc);
    }
}

#[test]
fn at_80x24_every_pane_is_on_screen() {
    let mut app = story_app();
    let terminal = render_screen(&mut app, 80, 24);
    let buffer = terminal.backend().buffer();
    for title in ["Feed", "Escalations", "Metrics", "Logs"] {
        assert!(find(buffer, title).is_some(), "{title} missing");
    }
    assert!(find(buffer, "CONSUMING").is_some());
    assert!(find(buffer, "#1006").is_some(), "newest incident visible");
    assert!(find(buffer, "q quit").is_some(), "key hints visible");
}
