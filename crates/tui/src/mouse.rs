//! The mouse, where the terminal reports it: the wheel scrolls the pane under the pointer
//! (focusing it), a click focuses a pane and, in the feed, selects the row clicked. The keys
//! stay as they are. Positions are mapped with the same layout the screen is drawn with.

use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use super::{App, Pane};

/// Rows one wheel notch moves.
const WHEEL_ROWS: isize = 3;

/// What a mouse event asks of the app; pure, so it is tested without a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gesture {
    Scroll {
        pane: Pane,
        rows: isize,
    },
    /// A click on a pane; in the feed, `row` is the index in the visible feed, if on a row.
    Click {
        pane: Pane,
        row: Option<usize>,
    },
}

pub fn gesture(app: &App, mouse: MouseEvent, screen: Rect) -> Option<Gesture> {
    let layout = super::render::layout(screen);
    let at = Position::new(mouse.column, mouse.row);
    let pane = [
        (layout.feed, Pane::Feed),
        (layout.escalations, Pane::Escalations),
        (layout.metrics, Pane::Metrics),
        (layout.logs, Pane::Logs),
    ]
    .into_iter()
    .find(|(area, _)| area.contains(at))
    .map(|(_, pane)| pane)?;
    match mouse.kind {
        MouseEventKind::ScrollUp => Some(Gesture::Scroll {
            pane,
            rows: -WHEEL_ROWS,
        }),
        MouseEventKind::ScrollDown => Some(Gesture::Scroll {
            pane,
            rows: WHEEL_ROWS,
        }),
        MouseEventKind::Down(MouseButton::Left) => {
            let row = (pane == Pane::Feed)
                .then(|| feed_row(app, layout.feed, mouse.row))
                .flatten();
            Some(Gesture::Click { pane, row })
        }
        _ => None,
    }
}

/// The visible feed's index at screen row `y`, as the feed pane draws it: inside the border,
/// below the column header (drawn from four rows up), from the first row shown.
fn feed_row(app: &App, area: Rect, y: u16) -> Option<usize> {
    let inner = Rect {
        x: area.x + 1,
        y: area.y + 1,
        width: area.width.saturating_sub(2),
        height: area.height.saturating_sub(2),
    };
    let header = u16::from(inner.height >= 4);
    let first = inner.y + header;
    if y < first || y >= inner.y + inner.height {
        return None;
    }
    let rows = usize::from(inner.height - header).max(1);
    let index = app.feed_top_index(rows) + usize::from(y - first);
    (index < app.visible_feed().len()).then_some(index)
}
