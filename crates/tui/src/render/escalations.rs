//! The escalation queue: unacknowledged first (highest level, then oldest), then those a
//! person has taken.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use super::super::app::{App, Pane};
use super::super::detail::{age, next_step};
use super::super::sanitize::sanitize_with_limit;
use super::super::theme;
use super::pane_block;

pub fn render(frame: &mut Frame, area: Rect, app: &mut App) {
    let list = &app.snapshot().engine.escalations;
    let open = list
        .iter()
        .filter(|e| e.escalation.acknowledged.is_none())
        .count();
    let extra = vec![
        Span::styled(
            format!("{open} open "),
            if open > 0 {
                theme::error()
            } else {
                theme::ok()
            },
        ),
        Span::styled(
            format!("· {} acknowledged ", list.len() - open),
            theme::dim(),
        ),
    ];
    let block = pane_block(Pane::Escalations, app, extra);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let show_header = inner.height >= 4;
    let rows_available = (inner.height as usize - usize::from(show_header)).max(1);
    app.viewport.escalation_rows = rows_available;

    let snapshot = app.snapshot();
    let list = &snapshot.engine.escalations;
    if list.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "no escalations: high and critical incidents page people here",
                theme::dim(),
            )),
            inner,
        );
        return;
    }
    let now = snapshot.engine.at;
    let zone = app.zone();
    // Full width shows level names and long labels; narrower panes shorten them, and the
    // title (already in the feed) goes when it would not get ten columns.
    let full = inner.width >= 100;
    let level_width: u16 = if full {
        22
    } else if inner.width >= 60 {
        14
    } else {
        3
    };
    let mut widths = vec![
        Constraint::Length(6),
        Constraint::Length(if full { 8 } else { 4 }),
        Constraint::Length(level_width),
        Constraint::Length(6),
        Constraint::Length(10),
        Constraint::Length(if full { 22 } else { 14 }),
    ];
    let fixed: u16 = widths
        .iter()
        .map(|w| match w {
            Constraint::Length(n) => n + 1,
            _ => 0,
        })
        .sum();
    let with_title = inner.width >= fixed + 10;
    let mut header = vec![
        "inc.",
        if full { "priority" } else { "prio" },
        "level",
        "age",
        "next",
        "acknowledged",
    ];
    if with_title {
        widths.push(Constraint::Fill(1));
        header.push("title");
    }

    // Only the rows on screen are built: the queue can hold thousands.
    let selected = app.selected_escalation_index().unwrap_or(0);
    let top = (selected + 1).saturating_sub(rows_available);
    let rows: Vec<Row> = list
        .iter()
        .skip(top)
        .take(rows_available)
        .map(|view| {
            let e = &view.escalation;
            let level = if level_width > 3 {
                format!("L{} {}", e.level, sanitize_with_limit(&view.level_name, 24))
            } else {
                format!("L{}", e.level)
            };
            let (ack_text, ack_style) = match &e.acknowledged {
                Some(ack) => (
                    format!(
                        "✓ {} {}",
                        sanitize_with_limit(&ack.by, 32),
                        theme::clock_short(ack.at, zone)
                    ),
                    theme::ok(),
                ),
                None => match &view.silenced {
                    // Still shown, with whose silence and until when (docs/oncall.md).
                    Some(mark) => (
                        format!(
                            // Narrow panes keep "silenced HH:MM"; the popup (o) says whose.
                            "silenced {} {}",
                            theme::clock_short(mark.until, zone),
                            sanitize_with_limit(&mark.by, 32)
                        ),
                        theme::warning(),
                    ),
                    None => ("unacknowledged".to_string(), theme::error()),
                },
            };
            let next = next_step(view, now);
            let next_style = match next.as_str() {
                "due" | "exhausted" => theme::error(),
                "—" => theme::dim(),
                _ => theme::warning(),
            };
            let mut cells = vec![
                Cell::from(format!("#{}", e.incident_id)),
                Cell::from(theme::priority_label(Some(e.priority), !full))
                    .style(theme::priority_style(Some(e.priority))),
                Cell::from(level),
                Cell::from(age(e.opened_at, now)),
                Cell::from(next).style(next_style),
                Cell::from(ack_text).style(ack_style),
            ];
            if with_title {
                cells.push(Cell::from(sanitize_with_limit(&e.title, 200).into_owned()));
            }
            let row = Row::new(cells);
            if e.acknowledged.is_some() {
                row.style(theme::dim().remove_modifier(Modifier::BOLD))
            } else {
                row
            }
        })
        .collect();

    let mut table = Table::new(rows, widths).column_spacing(1);
    if show_header {
        table = table.header(Row::new(header).style(theme::label()));
    }
    let mut state = TableState::default();
    if app.focus() == Pane::Escalations {
        table = table.row_highlight_style(theme::selected_row());
        state.select(Some(selected - top));
    }
    frame.render_stateful_widget(table, inner, &mut state);
}
