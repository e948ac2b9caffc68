//! The detail popup's content: every field of an event or escalation, and the raw payload
//! pretty-printed. Built once when the popup opens, sanitised line by line.

use std::sync::Arc;

use chrono::FixedOffset;
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::sanitize::{sanitize, sanitize_lines};
use super::theme;
use crate::core::engine::{EscalationView, FeedEntry, format_duration};
use crate::core::event::Timestamp;

/// Bound on the payload lines kept for the popup (the engine already cuts payloads at 16 KiB).
const MAX_RAW_LINES: usize = 2000;

fn field(name: &str, value: impl Into<String>, style: Style) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{name:>14}  "), theme::label()),
        Span::styled(sanitize(&value.into()).into_owned(), style),
    ])
}

/// The payload as it arrived: pretty JSON when it parses, the text as is otherwise.
pub fn pretty_payload(raw: &str) -> Vec<String> {
    let text = match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_else(|_| raw.to_string()),
        Err(_) => raw.to_string(),
    };
    let mut lines = sanitize_lines(&text);
    if lines.len() > MAX_RAW_LINES {
        let hidden = lines.len() - MAX_RAW_LINES;
        lines.truncate(MAX_RAW_LINES);
        lines.push(format!("… {hidden} more lines"));
    }
    lines
}

pub fn feed_entry(
    entry: &FeedEntry,
    escalation: Option<&EscalationView>,
    now: Timestamp,
    zone: FixedOffset,
) -> (String, Vec<Line<'static>>) {
    let plain = Style::new();
    let mut lines = Vec::new();
    let title = match (entry.event_type, entry.incident_id) {
        (Some(t), Some(id)) => format!("{t} · incident #{id}"),
        _ => "rejected payload (dead-lettered)".to_string(),
    };
    lines.push(field("feed #", entry.seq.to_string(), theme::dim()));
    lines.push(field(
        "received",
        theme::full_time(entry.received_at, zone),
        plain,
    ));
    match entry.event_type {
        Some(t) => lines.push(field("type", t.as_str(), plain)),
        None => lines.push(field("type", theme::DEAD_LETTER_LABEL, theme::error())),
    }
    if let Some(id) = entry.incident_id {
        lines.push(field("incident", format!("#{id}"), plain));
    }
    if entry.priority.is_some() {
        lines.push(field(
            "priority",
            theme::priority_label(entry.priority, false),
            theme::priority_style(entry.priority),
        ));
    }
    if !entry.title.is_empty() {
        lines.push(field("title", entry.title.as_str(), plain));
    }
    lines.push(field("summary", entry.summary.as_str(), plain));
    if let Some(error) = &entry.error {
        lines.push(field("error", error.as_str(), theme::error()));
    }
    if let Some(source) = &entry.source {
        lines.push(field(
            "source",
            format!(
                "{} partition {} offset {}",
                source.topic, source.partition, source.offset
            ),
            plain,
        ));
    }
    if let Some(view) = escalation {
        lines.push(field(
            "escalation",
            escalation_state(view, now, zone),
            theme::warning(),
        ));
    }
    lines.push(Line::default());
    lines.push(Line::styled("raw payload", theme::label()));
    lines.extend(pretty_payload(&entry.raw).into_iter().map(Line::from));
    (title, lines)
}

fn escalation_state(view: &EscalationView, now: Timestamp, zone: FixedOffset) -> String {
    let e = &view.escalation;
    match &e.acknowledged {
        Some(ack) => format!(
            "level {} {}, acknowledged by {} at {}",
            e.level,
            view.level_name,
            ack.by,
            theme::clock(ack.at, zone)
        ),
        None => format!(
            "level {} {}, unacknowledged, next step {}",
            e.level,
            view.level_name,
            next_step(view, now)
        ),
    }
}

/// "in 4m 10s", "due", "exhausted" or "—" once acknowledged.
pub fn next_step(view: &EscalationView, now: Timestamp) -> String {
    let e = &view.escalation;
    if e.acknowledged.is_some() {
        return "—".into();
    }
    match e.next_step_at {
        None => "exhausted".into(),
        Some(at) => {
            let seconds = (at - now).as_seconds_f64();
            if seconds <= 0.0 {
                "due".into()
            } else {
                format!("in {}", format_duration(seconds))
            }
        }
    }
}

pub fn age(since: Timestamp, now: Timestamp) -> String {
    format_duration((now - since).as_seconds_f64())
}

pub fn escalation(
    view: &EscalationView,
    feed: &[Arc<FeedEntry>],
    now: Timestamp,
    zone: FixedOffset,
) -> (String, Vec<Line<'static>>) {
    let e = &view.escalation;
    let plain = Style::new();
    let title = format!("escalation · incident #{}", e.incident_id);
    let mut lines = vec![
        field("incident", format!("#{}", e.incident_id), plain),
        field("title", e.title.as_str(), plain),
        field(
            "priority",
            e.priority.as_str(),
            theme::priority_style(Some(e.priority)),
        ),
        field("level", format!("{} {}", e.level, view.level_name), plain),
        field(
            "opened",
            format!(
                "{} ({} ago)",
                theme::full_time(e.opened_at, zone),
                age(e.opened_at, now)
            ),
            plain,
        ),
        field(
            "at this level",
            format!(
                "since {} ({})",
                theme::full_time(e.level_since, zone),
                age(e.level_since, now)
            ),
            plain,
        ),
        field("next step", next_step(view, now), theme::warning()),
        field("repeats", e.repeats.to_string(), plain),
    ];
    match &e.acknowledged {
        Some(ack) => lines.push(field(
            "acknowledged",
            format!(
                "by {} at {} (after {})",
                ack.by,
                theme::full_time(ack.at, zone),
                age(e.opened_at, ack.at)
            ),
            theme::ok(),
        )),
        None => lines.push(field("acknowledged", "no", theme::error())),
    }
    let related: Vec<&Arc<FeedEntry>> = feed
        .iter()
        .filter(|entry| entry.incident_id == Some(e.incident_id))
        .take(20)
        .collect();
    if !related.is_empty() {
        lines.push(Line::default());
        lines.push(Line::styled(
            "recent events for this incident",
            theme::label(),
        ));
        for entry in related {
            let kind = entry.event_type.map(|t| t.as_str()).unwrap_or("?");
            lines.push(Line::from(vec![
                Span::styled(theme::clock(entry.received_at, zone), theme::dim()),
                Span::raw("  "),
                Span::raw(format!("{kind:<20} ")),
                Span::raw(sanitize(&entry.summary).into_owned()),
            ]));
        }
    }
    (title, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_are_pretty_printed_and_other_text_kept() {
        assert_eq!(
            pretty_payload(r#"{"a":1,"b":"x"}"#),
            vec!["{", "  \"a\": 1,", "  \"b\": \"x\"", "}"]
        );
        assert_eq!(pretty_payload("not json at all"), vec!["not json at all"]);
        assert_eq!(
            pretty_payload("line one\n\u{1b}[2Jline two"),
            vec!["line one", "line two"]
        );
    }
}
