//! The application's own log (the `tracing` output headless mode writes to stderr), through
//! tui-logger's smart widget: the log view, and a target list shown on demand where the level
//! shown per target can be changed.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{BorderType, Widget};
use tui_logger::{TuiLoggerLevelOutput, TuiLoggerSmartWidget};

use super::super::app::{App, Pane};
use super::super::keymap::Action;
use super::super::theme;

pub fn render(frame: &mut Frame, area: Rect, app: &mut App) {
    if area.width < 16 || area.height < 3 {
        return;
    }
    let focused = app.focus() == Pane::Logs;
    let keymap = app.keymap();
    let key = |action| {
        keymap
            .first(action)
            .map(|k| k.to_string())
            .unwrap_or_default()
    };
    let title = Line::from(vec![
        if focused {
            Span::styled(" ▶ Logs ", theme::focused_border())
        } else {
            Span::styled(" Logs ", theme::label())
        },
        Span::styled(
            format!(
                "capture {} ({}/{}) · targets {}",
                app.log_capture().to_string().to_lowercase(),
                key(Action::LogLess),
                key(Action::LogMore),
                key(Action::LogTargets),
            ),
            theme::dim(),
        ),
    ]);
    TuiLoggerSmartWidget::default()
        .title_log(title)
        .title_target(Line::from(" targets "))
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
        .style(Style::new())
        .style_error(theme::error())
        .style_warn(Style::new().fg(Color::Yellow))
        .style_info(Style::new().fg(Color::Gray))
        .style_debug(Style::new().fg(Color::DarkGray))
        .style_trace(Style::new().fg(Color::DarkGray))
        .highlight_style(theme::selected_row())
        .output_separator(' ')
        .output_timestamp(Some("%H:%M:%S".into()))
        .output_level(Some(TuiLoggerLevelOutput::Abbreviated))
        .output_target(false)
        .output_file(false)
        .output_line(false)
        .state(app.log_state())
        .render(area, frame.buffer_mut());
}
