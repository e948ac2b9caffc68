//! Colours and short labels, in one place so every pane says "critical" the same way.

use chrono::FixedOffset;
use ratatui::style::{Color, Modifier, Style};

use crate::core::event::{EventType, Priority, Timestamp};

pub fn priority_style(priority: Option<Priority>) -> Style {
    match priority {
        Some(Priority::Critical) => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        Some(Priority::High) => Style::new().fg(Color::LightRed),
        Some(Priority::Medium) => Style::new().fg(Color::Yellow),
        Some(Priority::Low) => Style::new().fg(Color::Green),
        None => Style::new().fg(Color::DarkGray),
    }
}

pub fn priority_label(priority: Option<Priority>, short: bool) -> &'static str {
    match (priority, short) {
        (Some(Priority::Critical), false) => "critical",
        (Some(Priority::High), false) => "high",
        (Some(Priority::Medium), false) => "medium",
        (Some(Priority::Low), false) => "low",
        (Some(Priority::Critical), true) => "CRIT",
        (Some(Priority::High), true) => "HIGH",
        (Some(Priority::Medium), true) => "MED",
        (Some(Priority::Low), true) => "LOW",
        (None, _) => "-",
    }
}

/// Short names for narrow screens.
pub fn event_type_label(event_type: EventType, short: bool) -> &'static str {
    if !short {
        return event_type.as_str();
    }
    match event_type {
        EventType::IncidentCreated => "created",
        EventType::StatusUpdated => "status",
        EventType::CommentAdded => "comment",
        EventType::AttachmentUploaded => "attach",
        EventType::AssignmentChanged => "assign",
        EventType::EscalationTriggered => "escalate",
    }
}

pub const DEAD_LETTER_LABEL: &str = "DLQ";

pub fn dead_letter_style() -> Style {
    Style::new()
        .fg(Color::White)
        .bg(Color::Red)
        .add_modifier(Modifier::BOLD)
}

pub fn paused_style() -> Style {
    Style::new()
        .fg(Color::Black)
        .bg(Color::Yellow)
        .add_modifier(Modifier::BOLD)
}

pub fn consuming_style() -> Style {
    Style::new()
        .fg(Color::Black)
        .bg(Color::Green)
        .add_modifier(Modifier::BOLD)
}

pub fn demo_style() -> Style {
    Style::new()
        .fg(Color::Black)
        .bg(Color::Magenta)
        .add_modifier(Modifier::BOLD)
}

/// A replay from Kafka: history, not the live stream.
pub fn replay_style() -> Style {
    Style::new()
        .fg(Color::Black)
        .bg(Color::Yellow)
        .add_modifier(Modifier::BOLD)
}

pub fn focused_border() -> Style {
    Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
}

pub fn unfocused_border() -> Style {
    Style::new().fg(Color::DarkGray)
}

pub fn selected_row() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}

pub fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

pub fn label() -> Style {
    Style::new().fg(Color::Cyan)
}

pub fn warning() -> Style {
    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
}

pub fn error() -> Style {
    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
}

pub fn ok() -> Style {
    Style::new().fg(Color::Green)
}

/// Wall-clock time of day in the operator's zone.
pub fn clock(at: Timestamp, zone: FixedOffset) -> String {
    at.with_timezone(&zone).format("%H:%M:%S").to_string()
}

pub fn clock_short(at: Timestamp, zone: FixedOffset) -> String {
    at.with_timezone(&zone).format("%H:%M").to_string()
}

pub fn full_time(at: Timestamp, zone: FixedOffset) -> String {
    at.with_timezone(&zone)
        .format("%Y-%m-%d %H:%M:%S%.3f %:z")
        .to_string()
}

/// "420 µs", "1.3 ms", "2.50 s": processing times span six orders of magnitude.
pub fn short_seconds(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 1e-3 => format!("{:.0} µs", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.1} ms", s * 1e3),
        Some(s) => format!("{s:.2} s"),
    }
}

/// Eight levels of block, for a sparkline drawn as text in a table cell.
pub fn sparkline(values: &[u64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let tail = &values[values.len().saturating_sub(width)..];
    let max = tail.iter().copied().max().unwrap_or(0);
    tail.iter()
        .map(|&v| {
            if v == 0 || max == 0 {
                ' '
            } else {
                let index = ((v as f64 / max as f64) * 7.0).round() as usize;
                BARS[index.min(7)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_scales_to_the_maximum_and_keeps_the_newest() {
        assert_eq!(sparkline(&[0, 1, 2, 4, 8], 5), " ▂▃▅█");
        assert_eq!(sparkline(&[9, 9, 0, 8], 2), " █");
        assert_eq!(sparkline(&[], 4), "");
        assert_eq!(sparkline(&[0, 0], 4), "  ");
    }

    #[test]
    fn seconds_are_shown_in_a_readable_unit() {
        assert_eq!(short_seconds(None), "-");
        assert_eq!(short_seconds(Some(0.000_42)), "420 µs");
        assert_eq!(short_seconds(Some(0.0013)), "1.3 ms");
        assert_eq!(short_seconds(Some(2.5)), "2.50 s");
    }
}
