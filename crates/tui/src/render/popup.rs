//! Overlays: help (generated from the keymap), details, and the acknowledge question.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};

use super::super::app::{App, Overlay};
use super::super::keymap::{Action, Keymap};
use super::super::theme;

pub fn render(frame: &mut Frame, screen: Rect, app: &mut App) {
    let Some(overlay) = app.overlay() else {
        return;
    };
    match overlay {
        Overlay::Help { scroll } => {
            let lines = help_lines(app.keymap());
            let area = centered(screen, 92, lines.len() as u16 + 2);
            let title = format!(
                " Keys — {} or {} to close ",
                key(app.keymap(), Action::Help),
                key(app.keymap(), Action::Close)
            );
            let rows = render_scrolled(frame, area, &title, lines, *scroll, false);
            app.viewport.popup_rows = rows;
        }
        Overlay::Detail {
            title,
            lines,
            scroll,
        } => {
            let height = (lines.len() as u16)
                .saturating_add(2)
                .min(screen.height.saturating_sub(4))
                .max(3);
            let width = screen.width.saturating_sub(8).clamp(20, 120);
            let area = centered(screen, width, height);
            let title = format!(
                " {} — {} to close ",
                super::super::sanitize::sanitize(title),
                key(app.keymap(), Action::Close)
            );
            let rows = render_scrolled(frame, area, &title, lines.clone(), *scroll, true);
            app.viewport.popup_rows = rows;
        }
        Overlay::Snooze(form) => snooze(frame, screen, form),
        Overlay::ConfirmAcknowledge { question, .. } => {
            let area = centered(screen, 72, 7);
            frame.render_widget(Clear, area);
            let block = Block::bordered()
                .border_type(BorderType::Double)
                .border_style(theme::warning())
                .title(Line::styled(" Acknowledge escalation ", theme::warning()));
            let answer = Line::from(vec![
                Span::styled(
                    format!(" {} ", key(app.keymap(), Action::Confirm)),
                    theme::consuming_style(),
                ),
                Span::raw(" yes, acknowledge    "),
                Span::styled(
                    format!(" {} ", key(app.keymap(), Action::Cancel)),
                    theme::paused_style(),
                ),
                Span::raw(" no"),
            ]);
            let text = vec![Line::from(question.clone()), Line::default(), answer];
            frame.render_widget(
                Paragraph::new(text).block(block).wrap(Wrap { trim: false }),
                area,
            );
        }
    }
}

/// The snooze form: which incident, the length to pick, the reason being typed.
fn snooze(frame: &mut Frame, screen: Rect, form: &super::super::app::SnoozeForm) {
    use super::super::app::{SNOOZE_MINUTES, snooze_label};
    let area = centered(screen, 72, 8);
    frame.render_widget(Clear, area);
    let block = Block::bordered()
        .border_type(BorderType::Double)
        .border_style(theme::warning())
        .title(Line::styled(" Snooze escalation ", theme::warning()));
    let mut lengths = vec![Span::raw(" For: ")];
    for (index, minutes) in SNOOZE_MINUTES.iter().enumerate() {
        let label = format!(" {} ", snooze_label(*minutes));
        lengths.push(if index == form.choice {
            Span::styled(label, theme::consuming_style())
        } else {
            Span::raw(label)
        });
        lengths.push(Span::raw(" "));
    }
    lengths.push(Span::styled("(←/→)", theme::dim()));
    let text = vec![
        Line::from(format!(
            " Incident #{} \"{}\": notifications held, no steps",
            form.incident_id, form.title
        )),
        Line::from(lengths),
        Line::from(vec![
            Span::raw(" Reason: "),
            Span::styled(
                format!("{}▏", form.reason),
                Style::default().add_modifier(Modifier::BOLD),
            ),
        ]),
        Line::default(),
        Line::styled(" enter snooze · esc cancel", theme::dim()),
    ];
    frame.render_widget(
        Paragraph::new(text).block(block).wrap(Wrap { trim: false }),
        area,
    );
}

fn key(keymap: &Keymap, action: Action) -> String {
    keymap
        .first(action)
        .map(|k| k.to_string())
        .unwrap_or_else(|| "(unbound)".into())
}

/// A popup of `width` x `height` in the middle of `screen`, shrunk to fit.
fn centered(screen: Rect, width: u16, height: u16) -> Rect {
    screen.centered(
        Constraint::Length(width.min(screen.width)),
        Constraint::Length(height.min(screen.height)),
    )
}

/// Draws `lines` in a bordered box from line `scroll`; returns the rows it had.
fn render_scrolled(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    lines: Vec<Line<'static>>,
    scroll: usize,
    wrap: bool,
) -> usize {
    frame.render_widget(Clear, area);
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(theme::focused_border())
        .title(Line::styled(title.to_string(), theme::focused_border()));
    let inner = block.inner(area);
    let rows = inner.height as usize;
    let total = lines.len();
    let scroll = scroll.min(total.saturating_sub(1));
    let shown: Vec<Line<'static>> = lines.into_iter().skip(scroll).collect();
    let mut paragraph = Paragraph::new(shown).block(block);
    if wrap {
        paragraph = paragraph.wrap(Wrap { trim: false });
    }
    frame.render_widget(paragraph, area);
    if total > rows && area.height > 2 {
        let marker = format!(" {}/{} ", (scroll + rows).min(total), total);
        let width = marker.chars().count() as u16;
        if area.width > width + 2 {
            let spot = Rect {
                x: area.x + area.width - width - 2,
                y: area.y + area.height - 1,
                width,
                height: 1,
            };
            frame.render_widget(Paragraph::new(Line::styled(marker, theme::dim())), spot);
        }
    }
    rows
}

/// One line per action: its keys, its name (as written in config.ron) and what it does.
pub fn help_lines(keymap: &Keymap) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(vec![Span::styled(
        format!("{:<20} {:<14} {}", "keys", "action", "what it does"),
        theme::label().add_modifier(Modifier::UNDERLINED),
    )])];
    for (action, _) in keymap.iter() {
        lines.push(Line::from(vec![
            Span::styled(
                format!("{:<20} ", keymap.describe(action)),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::styled(format!("{:<14} ", action.name()), theme::dim()),
            Span::raw(action.description()),
        ]));
    }
    lines.push(Line::default());
    lines.push(Line::styled(
        "Filter words: a priority (critical, high, medium, low), an event type (status_updated…),",
        theme::dim(),
    ));
    lines.push(Line::styled(
        "dlq for rejected payloads, or any text (title, summary, #incident). All words must match.",
        theme::dim(),
    ));
    lines.push(Line::styled(
        "Or a field query (CEL): priority == \"critical\" && category == \"database\"; tab: saved.",
        theme::dim(),
    ));
    lines.push(Line::styled(
        "Rebind keys in config.ron under console.keys, e.g. keys: { \"pause\": [\"p\", \"space\"] }",
        theme::dim(),
    ));
    lines
}
