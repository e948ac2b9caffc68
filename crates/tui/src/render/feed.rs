//! The live event feed, newest first. Columns drop out as the pane narrows; the time, type,
//! priority and title stay.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use super::super::app::{App, Pane};
use super::super::keymap::Action;
use super::super::sanitize::sanitize_with_limit;
use super::super::theme;
use super::pane_block;
use crate::core::engine::FeedEntry;

/// Columns of text kept per cell; nothing wider fits on a screen.
const CELL_CHARS: usize = 300;

pub fn render(frame: &mut Frame, area: Rect, app: &mut App) {
    let total_in_feed = app.snapshot().engine.feed.len();
    let visible_count = app.visible_feed().len();
    let mut extra = vec![Span::styled(
        if app.filter_text().is_empty() {
            format!("{total_in_feed} ")
        } else {
            format!("{visible_count} of {total_in_feed} ")
        },
        theme::dim(),
    )];
    if !app.filter_text().is_empty() {
        extra.push(Span::styled(
            format!(" filter: {} ", sanitize_with_limit(app.filter_text(), 64)),
            theme::warning(),
        ));
    }
    if !app.is_live() {
        let key = app
            .keymap()
            .first(Action::Top)
            .map(|k| k.to_string())
            .unwrap_or_default();
        extra.push(Span::styled(
            format!(
                " ❚❚ view frozen · {} new · {key} for live ",
                app.new_since_frozen()
            ),
            theme::paused_style(),
        ));
    }
    let block = pane_block(Pane::Feed, app, extra);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }

    let wide = inner.width >= 110;
    let short_labels = inner.width < 100;
    let with_summary = inner.width >= 84;
    let with_incident = inner.width >= 50;
    let show_header = inner.height >= 4;
    let rows_available = inner.height as usize - usize::from(show_header);
    app.viewport.feed_rows = rows_available.max(1);

    if app.visible_feed().is_empty() {
        let text = if app.filter_text().is_empty() {
            format!(
                "waiting for events on {} …",
                sanitize_with_limit(&app.snapshot().consumer.topic, 80)
            )
        } else if let Some(error) = app.filter_error() {
            let text = format!(
                "query error: {} (esc clears the filter)",
                sanitize_with_limit(error, 200)
            );
            frame.render_widget(Paragraph::new(Line::styled(text, theme::error())), inner);
            return;
        } else {
            "no event in the feed matches the filter (esc clears it)".to_string()
        };
        frame.render_widget(Paragraph::new(Line::styled(text, theme::dim())), inner);
        return;
    }

    let top = app.feed_top_index(rows_available);
    let selected = app.selected_feed_index().unwrap_or(0);
    let zone = app.zone();
    let rows: Vec<Row> = app
        .visible_feed()
        .iter()
        .skip(top)
        .take(rows_available)
        .map(|entry| {
            let mut cells = vec![
                Cell::from(theme::clock(entry.received_at, zone)).style(theme::dim()),
                type_cell(entry, short_labels),
            ];
            if with_incident {
                cells.push(Cell::from(
                    entry
                        .incident_id
                        .map(|id| format!("#{id}"))
                        .unwrap_or_default(),
                ));
            }
            cells.push(
                Cell::from(theme::priority_label(entry.priority, short_labels))
                    .style(theme::priority_style(entry.priority)),
            );
            cells.push(title_cell(entry));
            if with_summary {
                cells.push(Cell::from(
                    sanitize_with_limit(&entry.summary, CELL_CHARS).into_owned(),
                ));
            }
            Row::new(cells)
        })
        .collect();

    let mut widths = vec![
        Constraint::Length(8),
        Constraint::Length(if short_labels { 8 } else { 20 }),
    ];
    let mut header = vec!["time", "type"];
    if with_incident {
        widths.push(Constraint::Length(6));
        header.push("inc.");
    }
    widths.push(Constraint::Length(if short_labels { 4 } else { 8 }));
    header.push(if short_labels { "prio" } else { "priority" });
    widths.push(Constraint::Fill(if wide { 3 } else { 2 }));
    header.push("title");
    if with_summary {
        widths.push(Constraint::Fill(2));
        header.push("summary");
    }

    let mut table = Table::new(rows, widths).column_spacing(1);
    if show_header {
        table = table.header(Row::new(header).style(theme::label()));
    }
    let mut state = TableState::default();
    if app.focus() == Pane::Feed {
        table = table.row_highlight_style(theme::selected_row());
        state.select(Some(selected.saturating_sub(top)));
    }
    frame.render_stateful_widget(table, inner, &mut state);
}

fn type_cell(entry: &FeedEntry, short: bool) -> Cell<'static> {
    match entry.event_type {
        Some(t) => Cell::from(theme::event_type_label(t, short)),
        None => Cell::from(Line::from(Span::styled(
            theme::DEAD_LETTER_LABEL,
            theme::dead_letter_style(),
        ))),
    }
}

fn title_cell(entry: &FeedEntry) -> Cell<'static> {
    match &entry.error {
        Some(error) if entry.event_type.is_none() => {
            Cell::from(sanitize_with_limit(error, CELL_CHARS).into_owned()).style(theme::error())
        }
        _ => Cell::from(sanitize_with_limit(&entry.title, CELL_CHARS).into_owned()),
    }
}
