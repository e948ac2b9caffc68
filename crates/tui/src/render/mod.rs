//! Drawing: one file per pane, all reading the `App` (and through it the immutable snapshot).
//! Drawing never changes what the operator sees selected; it only records how many rows each
//! pane had, so paging moves by a screenful.

mod escalations;
mod feed;
mod header;
mod logs;
mod metrics;
mod popup;
mod session;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Paragraph};

use super::app::{App, Pane};
use super::keymap::Action;
use super::theme;

/// Where each part of the screen goes for a terminal of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenLayout {
    pub header: Rect,
    pub feed: Rect,
    pub escalations: Rect,
    pub metrics: Rect,
    pub logs: Rect,
    pub footer: Rect,
}

/// Wide screens get two rows of two panes; narrow ones stack the feed and the escalations
/// above the metrics and logs side by side.
pub fn layout(area: Rect) -> ScreenLayout {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    let (feed, escalations, metrics, logs);
    if body.width >= 120 {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(body);
        [feed, escalations] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(top);
        [metrics, logs] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(bottom);
    } else {
        let bottom;
        [feed, escalations, bottom] = Layout::vertical([
            Constraint::Fill(3),
            Constraint::Fill(2),
            Constraint::Fill(2),
        ])
        .areas(body);
        [metrics, logs] = if bottom.width >= 60 {
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(bottom)
        } else {
            Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom)
        };
    }
    ScreenLayout {
        header,
        feed,
        escalations,
        metrics,
        logs,
        footer,
    }
}

/// The whole screen.
pub fn draw(frame: &mut Frame, app: &mut App) {
    let areas = layout(frame.area());
    header::render(frame, areas.header, app);
    feed::render(frame, areas.feed, app);
    escalations::render(frame, areas.escalations, app);
    metrics::render(frame, areas.metrics, app);
    logs::render(frame, areas.logs, app);
    render_footer(frame, areas.footer, app);
    popup::render(frame, frame.area(), app);
}

/// Entry points for rendering one pane on its own (tests and benchmarks).
pub fn draw_pane(frame: &mut Frame, pane: Pane, app: &mut App) {
    let area = frame.area();
    match pane {
        Pane::Feed => feed::render(frame, area, app),
        Pane::Escalations => escalations::render(frame, area, app),
        Pane::Metrics => metrics::render(frame, area, app),
        Pane::Logs => logs::render(frame, area, app),
    }
}

pub fn draw_header(frame: &mut Frame, app: &App) {
    header::render(frame, frame.area(), app);
}

/// A pane's frame: a thick cyan border and a marker in the title when it has the focus.
fn pane_block<'a>(pane: Pane, app: &App, extra: Vec<Span<'a>>) -> Block<'a> {
    let focused = app.focus() == pane;
    let mut title = vec![if focused {
        Span::styled(format!(" ▶ {} ", pane.title()), theme::focused_border())
    } else {
        Span::styled(format!(" {} ", pane.title()), theme::label())
    }];
    title.extend(extra);
    Block::bordered()
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(if focused {
            theme::focused_border()
        } else {
            theme::unfocused_border()
        })
        .title(Line::from(title))
}

/// After the filter being typed: why a query cannot be read, in place; else what to type.
fn filter_hint(app: &App) -> Span<'static> {
    if let Some(error) = app.filter_error() {
        return Span::styled(
            format!("   query error: {}", super::sanitize::sanitize(error)),
            theme::error(),
        );
    }
    let saved: Vec<&str> = app
        .saved_filters()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    let saved = if saved.is_empty() {
        String::new()
    } else {
        format!(" · tab saved: {}", saved.join(", "))
    };
    Span::styled(
        format!("   enter keep · esc clear · words or a query: priority == \"high\"{saved}"),
        theme::dim(),
    )
}

fn render_footer(frame: &mut Frame, area: Rect, app: &App) {
    let keymap = app.keymap();
    let line = if app.is_quitting() {
        Line::from(vec![Span::styled(
            " Shutting down: finishing in-flight work and committing offsets… (quit again to exit at once)",
            theme::warning(),
        )])
    } else if app.is_filter_editing() {
        Line::from(vec![
            Span::styled(" filter: ", theme::label()),
            Span::raw(super::sanitize::sanitize(app.filter_text()).into_owned()),
            Span::styled("█", theme::label()),
            filter_hint(app),
        ])
    } else if let Some(message) = app.message() {
        Line::from(Span::styled(format!(" {}", message.text), message.style))
    } else {
        let hints = [
            (Action::Quit, "quit"),
            (Action::Help, "help"),
            (Action::Pause, "pause"),
            (Action::Filter, "filter"),
            (Action::Acknowledge, "ack"),
            (Action::Details, "details"),
            (Action::FocusNext, "focus"),
            (Action::Top, "live"),
        ];
        let mut spans = vec![Span::raw(" ")];
        for (action, label) in hints {
            if let Some(key) = keymap.first(action) {
                spans.push(Span::styled(key.to_string(), theme::label()));
                spans.push(Span::styled(format!(" {label}  "), theme::dim()));
            }
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}
