//! The header's badges for the session: which cluster profile (in its colour), and read-only.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;

use crate::App;
use crate::sanitize::sanitize;

pub fn badges(app: &App) -> Vec<Span<'static>> {
    let session = app.session();
    let mut spans = Vec::new();
    if let Some((name, colour)) = &session.profile {
        let background = colour.unwrap_or(Color::Blue);
        spans.push(Span::styled(
            format!(" ◉ {} ", sanitize(name).to_uppercase()),
            Style::new()
                .fg(readable_on(background))
                .bg(background)
                .add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::raw(" "));
    }
    if session.read_only {
        spans.push(Span::styled(
            " READ-ONLY ",
            Style::new()
                .fg(Color::Black)
                .bg(Color::Gray)
                .add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::raw(" "));
    }
    spans
}

/// Black on light backgrounds, white on dark ones.
fn readable_on(background: Color) -> Color {
    match background {
        Color::Rgb(r, g, b)
            if (u32::from(r) * 299 + u32::from(g) * 587 + u32::from(b) * 114) / 1000 > 140 =>
        {
            Color::Black
        }
        Color::Rgb(..) => Color::White,
        Color::Black | Color::Red | Color::Blue | Color::Magenta | Color::DarkGray => Color::White,
        _ => Color::Black,
    }
}
