//! The two status lines: where the console is connected and whether it is consuming.

use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::super::app::App;
use super::super::keymap::Action;
use super::super::sanitize::sanitize_with_limit;
use super::super::theme;
use crate::status::{ConnectionState, TeamView};

fn text(value: &str) -> String {
    sanitize_with_limit(value, 120).into_owned()
}

fn partitions(list: &[i32]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    let mut sorted = list.to_vec();
    sorted.sort_unstable();
    let shown: Vec<String> = sorted.iter().take(16).map(i32::to_string).collect();
    let more = if sorted.len() > 16 {
        format!(" +{}", sorted.len() - 16)
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(","))
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let snapshot = app.snapshot();
    let consumer = &snapshot.consumer;
    let sep = || Span::styled(" │ ", theme::dim());

    let connection = match &consumer.connection {
        ConnectionState::Connected => Span::styled("● connected", theme::ok()),
        ConnectionState::Connecting => Span::styled("◌ connecting", theme::warning()),
        ConnectionState::Disconnected { reason } => {
            Span::styled(format!("✖ disconnected: {}", text(reason)), theme::error())
        }
    };
    let mut first = vec![Span::raw(" "), connection, sep()];
    // Team mode: whether any worker is escalating and paging, and which.
    match &snapshot.team {
        Some(TeamView::Active { worker, epoch }) => {
            first.push(Span::styled(
                format!("◆ active {} · epoch {epoch}", text(worker)),
                theme::ok(),
            ));
            first.push(sep());
        }
        Some(TeamView::NoActiveWorker) => {
            first.push(Span::styled(
                "✖ no active worker: nothing escalates or pages",
                theme::error().add_modifier(ratatui::style::Modifier::REVERSED),
            ));
            first.push(sep());
        }
        None => {}
    }
    let self_alerts = app.self_alerts();
    if !self_alerts.is_empty() {
        first.push(Span::styled(
            format!("⚠ self-alert: {}", text(&self_alerts.join(", "))),
            theme::error().add_modifier(ratatui::style::Modifier::REVERSED),
        ));
        first.push(sep());
    }
    first.push(Span::styled("topic ", theme::dim()));
    first.push(Span::raw(text(&consumer.topic)));
    first.push(sep());
    first.push(Span::styled("partitions ", theme::dim()));
    first.push(Span::raw(partitions(&consumer.assigned_partitions)));
    first.push(sep());
    first.push(Span::styled("group ", theme::dim()));
    first.push(Span::raw(text(&consumer.group)));
    // The clock keeps the last ten columns of the first line.
    let first_area = Rect {
        width: area.width.saturating_sub(10),
        height: 1.min(area.height),
        ..area
    };
    frame.render_widget(Paragraph::new(Line::from(first)), first_area);

    let clock = theme::clock(snapshot.engine.at, app.zone());
    let right = Line::from(vec![Span::styled(
        format!(" {clock} "),
        Style::new().fg(Color::White),
    )]);
    let clock_area = Rect {
        height: 1.min(area.height),
        ..area
    };
    frame.render_widget(
        Paragraph::new(right).alignment(Alignment::Right),
        clock_area,
    );

    if area.height < 2 {
        return;
    }
    let state = if consumer.paused {
        Span::styled(" ❚❚ PAUSED ", theme::paused_style())
    } else {
        Span::styled(" ▶ CONSUMING ", theme::consuming_style())
    };
    let metrics = &snapshot.engine.metrics;
    let mut second = vec![Span::raw(" ")];
    // The cluster first: the one thing that must not be mistaken.
    second.extend(super::session::badges(app));
    second.extend([state, Span::raw(" ")]);
    if snapshot.demo {
        second.push(Span::styled(" DEMO ", theme::demo_style()));
        second.push(Span::raw(" "));
    }
    if app.is_replay() {
        second.push(Span::styled(
            " ⟲ REPLAY · read-only ",
            theme::replay_style(),
        ));
        second.push(Span::raw(" "));
    }
    second.push(Span::styled(
        format!("{:.1} ev/s", metrics.events_per_sec),
        Style::new().fg(Color::White),
    ));
    second.push(sep());
    second.push(Span::styled("lag ", theme::dim()));
    second.push(match consumer.lag {
        Some(lag) if lag > 1000 => Span::styled(lag.to_string(), theme::warning()),
        Some(lag) => Span::raw(lag.to_string()),
        None => Span::styled("?", theme::dim()),
    });
    second.push(sep());
    second.push(Span::raw(format!("{} events", metrics.total_events)));
    if metrics.dead_lettered > 0 {
        second.push(sep());
        second.push(Span::styled(
            format!("{} dead-lettered", metrics.dead_lettered),
            theme::error(),
        ));
    }
    second.push(sep());
    second.push(Span::styled("operator ", theme::dim()));
    second.push(Span::raw(text(&snapshot.operator)));
    if consumer.paused {
        second.push(sep());
        let key = app
            .keymap()
            .first(Action::Pause)
            .map(|k| k.to_string())
            .unwrap_or_else(|| "the pause key".into());
        second.push(Span::styled(
            format!("not consuming: press {key} to resume"),
            theme::warning(),
        ));
    }
    if let Some(error) = &consumer.last_error {
        second.push(sep());
        second.push(Span::styled(text(error), theme::error()));
    }
    let line_area = Rect {
        y: area.y + 1,
        height: 1,
        ..area
    };
    frame.render_widget(Paragraph::new(Line::from(second)), line_area);
}
