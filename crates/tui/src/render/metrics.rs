//! Counts and rates per event type with a one-minute sparkline, processing time, decode
//! failures, escalation figures and, when notifications are configured, the notifier.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::super::app::{App, Pane};
use super::super::sanitize::sanitize_with_limit;
use super::super::theme;
use super::pane_block;
use crate::core::engine::format_duration;
use crate::status::NotifierStatus;

pub fn render(frame: &mut Frame, area: Rect, app: &mut App) {
    let block = pane_block(Pane::Metrics, app, Vec::new());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    // Very short panes get the same figures packed into fewer lines.
    let compact = inner.height < 8;
    let lines = if compact {
        compact_lines(app, inner.width)
    } else {
        lines(app, inner.width)
    };
    let paragraph_wraps = compact;
    let scroll = app
        .metrics_scroll()
        .min(lines.len().saturating_sub(1))
        .min(u16::MAX as usize) as u16;
    let mut paragraph = Paragraph::new(lines).scroll((scroll, 0));
    if paragraph_wraps {
        paragraph = paragraph.wrap(Wrap { trim: true });
    }
    frame.render_widget(paragraph, inner);
}

fn compact_lines(app: &App, width: u16) -> Vec<Line<'static>> {
    let snapshot = app.snapshot();
    let metrics = &snapshot.engine.metrics;
    let escalations = &snapshot.engine.escalations;
    let open = escalations
        .iter()
        .filter(|e| e.escalation.acknowledged.is_none())
        .count();
    let mean = |summary: &crate::core::metrics::DurationSummary| {
        summary
            .mean_secs
            .map(format_duration)
            .unwrap_or_else(|| "-".into())
    };
    let mut out = vec![Line::from(vec![
        Span::styled(
            format!("open {open}"),
            if open > 0 {
                theme::error()
            } else {
                theme::ok()
            },
        ),
        Span::raw(format!(
            " · ack {} · MTTA {} · MTTR {}",
            escalations.len() - open,
            mean(&metrics.time_to_acknowledge),
            mean(&metrics.time_to_resolve)
        )),
    ])];
    let failures: u64 = metrics.decode_failures.values().sum();
    out.push(Line::from(vec![
        Span::styled("decode fails ", theme::label()),
        Span::styled(
            failures.to_string(),
            if failures > 0 {
                theme::error()
            } else {
                theme::ok()
            },
        ),
        Span::raw(format!(" · dead-lettered {}", metrics.dead_lettered)),
    ]));
    let head = format!(
        "events {} · {:.1}/s ",
        metrics.total_events, metrics.events_per_sec
    );
    let spark = (width as usize)
        .saturating_sub(head.chars().count())
        .min(60);
    out.push(Line::from(vec![
        Span::raw(head),
        Span::styled(
            theme::sparkline(&metrics.events_history, spark),
            Style::new().fg(Color::White),
        ),
    ]));
    out.push(Line::from(
        metrics
            .per_type
            .iter()
            .map(|t| {
                format!(
                    "{} {}",
                    theme::event_type_label(t.event_type, true),
                    t.count
                )
            })
            .collect::<Vec<_>>()
            .join(" · "),
    ));
    let p = &metrics.processing;
    out.push(Line::from(format!(
        "processing p50 {} · p99 {}",
        theme::short_seconds(p.p50_secs),
        theme::short_seconds(p.p99_secs)
    )));
    let notifier = &snapshot.notifier;
    if *notifier != NotifierStatus::default() {
        out.push(Line::from(vec![
            Span::raw(format!("notifier outbox {} · ", notifier.outbox_depth)),
            Span::styled(
                format!("failed {}", notifier.failed),
                if notifier.failed > 0 {
                    theme::error()
                } else {
                    Style::new()
                },
            ),
        ]));
    }
    out
}

fn label(text: &str) -> Span<'static> {
    Span::styled(format!("{text:<14}"), theme::label())
}

/// The figures an operator acts on first, then the per-type table; what does not fit scrolls.
fn lines(app: &App, width: u16) -> Vec<Line<'static>> {
    let snapshot = app.snapshot();
    let metrics = &snapshot.engine.metrics;
    let mut out = Vec::new();

    let escalations = &snapshot.engine.escalations;
    let open = escalations
        .iter()
        .filter(|e| e.escalation.acknowledged.is_none())
        .count();
    out.push(Line::from(vec![
        label("escalations"),
        Span::styled(
            format!("open {open}"),
            if open > 0 {
                theme::error()
            } else {
                theme::ok()
            },
        ),
        Span::raw(format!(
            " · acknowledged {} · opened {} · raised {} · resolved {}",
            escalations.len() - open,
            metrics.escalations_opened,
            metrics.escalations_raised,
            metrics.resolved
        )),
    ]));
    let mean = |summary: &crate::core::metrics::DurationSummary| {
        summary
            .mean_secs
            .map(format_duration)
            .unwrap_or_else(|| "-".into())
    };
    out.push(Line::from(vec![
        label("mean time to"),
        Span::raw(format!(
            "acknowledge {} · resolve {}",
            mean(&metrics.time_to_acknowledge),
            mean(&metrics.time_to_resolve)
        )),
    ]));

    let failures: u64 = metrics.decode_failures.values().sum();
    let mut failure_spans = vec![label("decode fails")];
    if failures == 0 {
        failure_spans.push(Span::styled("none", theme::ok()));
    } else {
        let by_reason = metrics
            .decode_failures
            .iter()
            .map(|(reason, count)| format!("{reason} {count}"))
            .collect::<Vec<_>>()
            .join(" · ");
        failure_spans.push(Span::styled(by_reason, theme::error()));
    }
    failure_spans.push(Span::styled(
        format!(" (dead-lettered {})", metrics.dead_lettered),
        theme::dim(),
    ));
    out.push(Line::from(failure_spans));

    let p = &metrics.processing;
    out.push(Line::from(vec![
        label("processing"),
        Span::raw(format!(
            "p50 {} · p99 {} · max {}",
            theme::short_seconds(p.p50_secs),
            theme::short_seconds(p.p99_secs),
            theme::short_seconds(p.max_secs)
        )),
    ]));
    if snapshot.notifier != NotifierStatus::default() {
        out.extend(notifier_lines(&snapshot.notifier));
    }

    let short = width < 60;
    let type_width = if short { 9 } else { 21 };
    // type, count (7), rate (7), then the sparkline takes what is left.
    let spark_width = (width as usize)
        .saturating_sub(type_width + 7 + 7 + 3)
        .min(60);
    out.push(Line::from(vec![Span::styled(
        format!(
            "{:<type_width$} {:>7} {:>7}  last {}s",
            "type", "count", "/s", spark_width
        ),
        theme::label(),
    )]));
    for t in &metrics.per_type {
        out.push(Line::from(vec![
            Span::raw(format!(
                "{:<type_width$} {:>7} {:>7.1}  ",
                theme::event_type_label(t.event_type, short),
                t.count,
                t.rate_per_sec
            )),
            Span::styled(
                theme::sparkline(&t.history, spark_width),
                Style::new().fg(Color::Cyan),
            ),
        ]));
    }
    out.push(Line::from(vec![
        Span::raw(format!(
            "{:<type_width$} {:>7} {:>7.1}  ",
            "all", metrics.total_events, metrics.events_per_sec
        )),
        Span::styled(
            theme::sparkline(&metrics.events_history, spark_width),
            Style::new().fg(Color::White),
        ),
    ]));
    out
}

fn notifier_lines(status: &NotifierStatus) -> Vec<Line<'static>> {
    let mut out = vec![Line::from(vec![
        label("notifier"),
        Span::raw(format!(
            "outbox {} · delivered {} · ",
            status.outbox_depth, status.delivered
        )),
        Span::styled(
            format!("failed {}", status.failed),
            if status.failed > 0 {
                theme::error()
            } else {
                Style::new()
            },
        ),
        Span::raw(format!(
            " · deduplicated {} · rate-limited {}",
            status.deduplicated, status.rate_limited
        )),
    ])];
    for channel in status.channels.iter().take(8) {
        let mut spans = vec![
            Span::raw(format!("  {:<12}", sanitize_with_limit(&channel.name, 12))),
            Span::raw(format!(
                "delivered {} · retrying {} · ",
                channel.delivered, channel.retrying
            )),
            Span::styled(
                format!("failed {}", channel.failed),
                if channel.failed > 0 {
                    theme::error()
                } else {
                    Style::new()
                },
            ),
        ];
        if let Some(error) = &channel.last_error {
            spans.push(Span::styled(
                format!(" · {}", sanitize_with_limit(error, 120)),
                theme::error(),
            ));
        }
        out.push(Line::from(spans));
    }
    out
}
