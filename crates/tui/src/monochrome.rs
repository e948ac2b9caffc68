//! `NO_COLOR` (https://no-color.org): the screen without a single colour, still readable.
//! Priority and state are already words on the screen (CRIT, PAUSED, DLQ, unacknowledged);
//! what colour added is carried over into modifiers, so a badge still stands out and a
//! critical line still shouts: a background becomes reverse video, red becomes bold, grey
//! becomes dim. Done on the finished frame, so no pane can forget it.

use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

/// Set and not empty, as no-color.org says.
pub fn wanted(no_color: Option<std::ffi::OsString>) -> bool {
    no_color.is_some_and(|value| !value.is_empty())
}

/// Replaces every colour in `buffer` by the modifier that says the same.
pub fn apply(buffer: &mut Buffer) {
    for cell in buffer.content.iter_mut() {
        let mut modifier = cell.modifier;
        if !matches!(cell.bg, Color::Reset) {
            modifier.insert(Modifier::REVERSED);
        }
        match cell.fg {
            Color::Red | Color::LightRed => modifier.insert(Modifier::BOLD),
            Color::DarkGray => modifier.insert(Modifier::DIM),
            _ => {}
        }
        cell.modifier = modifier;
        cell.fg = Color::Reset;
        cell.bg = Color::Reset;
        cell.underline_color = Color::Reset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::layout::Rect;
    use ratatui::style::Style;

    #[test]
    fn no_color_set_and_not_empty_turns_colour_off() {
        assert!(!wanted(None));
        assert!(!wanted(Some("".into())));
        assert!(wanted(Some("1".into())));
    }

    #[test]
    fn colours_become_modifiers() {
        let mut buffer = Buffer::empty(Rect::new(0, 0, 3, 1));
        buffer[(0, 0)].set_style(Style::new().fg(Color::Black).bg(Color::Yellow));
        buffer[(1, 0)].set_style(Style::new().fg(Color::LightRed));
        buffer[(2, 0)].set_style(Style::new().fg(Color::DarkGray));
        apply(&mut buffer);
        let modifiers: Vec<Modifier> = buffer.content.iter().map(|c| c.modifier).collect();
        assert_eq!(
            modifiers,
            [Modifier::REVERSED, Modifier::BOLD, Modifier::DIM]
        );
        assert!(
            buffer
                .content
                .iter()
                .all(|c| c.fg == Color::Reset && c.bg == Color::Reset)
        );
    }
}
