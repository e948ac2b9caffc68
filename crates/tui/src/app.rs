//! The console's state, apart from the terminal: what is focused and selected, what overlay is
//! open, the feed filter. Keys go in through `handle_key`, which returns the `Command` (if any)
//! the runtime must carry out; snapshots go in through `set_snapshot`. Nothing here draws or
//! does I/O, so every key can be tested with plain values.

use std::sync::Arc;

use chrono::FixedOffset;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::style::Style;
use ratatui::text::Line;
use tracing::level_filters::LevelFilter;
use tui_logger::{TuiWidgetEvent, TuiWidgetState};

use super::detail;

mod oncall;
use super::filter::FeedFilter;
use super::keymap::{Action, Keymap};
use super::theme;
use crate::core::engine::{EscalationView, FeedEntry};
use crate::core::event::IncidentId;
use crate::status::{Command, Snapshot};
pub use oncall::{SNOOZE_MINUTES, SnoozeForm, snooze_label};

/// Characters a filter may hold (a field query is longer than words); more would not fit on
/// the footer's line anyway.
pub const MAX_FILTER_CHARS: usize = 160;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Feed,
    Escalations,
    Metrics,
    Logs,
}

impl Pane {
    pub const ORDER: [Pane; 4] = [Self::Feed, Self::Escalations, Self::Metrics, Self::Logs];

    fn next(self) -> Self {
        let i = Self::ORDER.iter().position(|p| *p == self).unwrap_or(0);
        Self::ORDER[(i + 1) % Self::ORDER.len()]
    }

    fn prev(self) -> Self {
        let i = Self::ORDER.iter().position(|p| *p == self).unwrap_or(0);
        Self::ORDER[(i + Self::ORDER.len() - 1) % Self::ORDER.len()]
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::Feed => "Feed",
            Self::Escalations => "Escalations",
            Self::Metrics => "Metrics",
            Self::Logs => "Logs",
        }
    }
}

/// What floats above the panes.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    Help {
        scroll: usize,
    },
    Detail {
        title: String,
        lines: Vec<Line<'static>>,
        scroll: usize,
    },
    /// "Acknowledge incident 1234 ...? y/n"
    ConfirmAcknowledge {
        incident_id: IncidentId,
        question: String,
    },
    /// "Snooze incident 1234 for [15 min] 1 h 4 h, reason: ..." (app/oncall.rs)
    Snooze(SnoozeForm),
}

/// Where the feed view stands when the operator has scrolled away from the newest event.
/// Positions are anchored on `FeedEntry::seq`, so new arrivals do not move what is on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frozen {
    selected_seq: u64,
    top_seq: u64,
    total_at_freeze: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusMessage {
    pub text: String,
    pub style: Style,
}

/// Rows available to each scrolling pane at the last draw, so paging moves by a screenful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    pub feed_rows: usize,
    pub escalation_rows: usize,
    pub popup_rows: usize,
}

impl Default for Viewport {
    fn default() -> Self {
        Self {
            feed_rows: 10,
            escalation_rows: 5,
            popup_rows: 10,
        }
    }
}

pub struct App {
    keymap: Keymap,
    snapshot: Arc<Snapshot>,
    zone: FixedOffset,
    focus: Pane,
    overlay: Option<Overlay>,
    frozen: Option<Frozen>,
    filter_text: String,
    filter: FeedFilter,
    filter_editing: bool,
    /// The feed after the filter, newest first; recomputed when the feed or filter changes.
    visible: Vec<Arc<FeedEntry>>,
    visible_key: (u64, String),
    selected_escalation: Option<IncidentId>,
    escalation_index: usize,
    metrics_scroll: usize,
    message: Option<StatusMessage>,
    quitting: bool,
    log_state: TuiWidgetState,
    log_capture: LevelFilter,
    log_capture_changed: bool,
    /// A replay from Kafka (`--from-*`/`--until-*`): marked in the header, read-only.
    replay: bool,
    /// Alerts about the console itself (with the metrics server on), shown in the header. The
    /// runtime publishes a snapshot at least every second, so the header follows within one.
    self_alerts: Option<tokio::sync::watch::Receiver<Vec<String>>>,
    pub viewport: Viewport,
    /// The profile in use and read-only (src/profile.rs).
    session: crate::profile::Session,
    /// `NO_COLOR`: every frame is drawn without colour (src/tui/monochrome.rs).
    monochrome: bool,
    saved_filters: Vec<(String, String)>,
    /// Where `e`/`E` write; `None`: the user's home directory.
    export_dir: Option<std::path::PathBuf>,
}

impl App {
    pub fn new(keymap: Keymap, snapshot: Arc<Snapshot>, zone: FixedOffset) -> Self {
        let mut app = Self {
            keymap,
            snapshot,
            zone,
            focus: Pane::Feed,
            overlay: None,
            frozen: None,
            filter_text: String::new(),
            filter: FeedFilter::default(),
            filter_editing: false,
            visible: Vec::new(),
            visible_key: (u64::MAX, String::new()),
            selected_escalation: None,
            escalation_index: 0,
            metrics_scroll: 0,
            message: None,
            quitting: false,
            log_state: TuiWidgetState::new(),
            log_capture: LevelFilter::INFO,
            log_capture_changed: false,
            replay: false,
            self_alerts: None,
            viewport: Viewport::default(),
            session: crate::profile::Session::default(),
            monochrome: false,
            export_dir: None,
            saved_filters: Vec::new(),
        };
        app.refresh_visible();
        // The log pane starts with its target list hidden; the log key shows it.
        app.log_state.transition(TuiWidgetEvent::HideKey);
        app
    }

    /// A replay of history: acknowledging is disabled (nobody is paged by a replay, and an
    /// acknowledgement would be recorded against the past).
    pub fn with_replay(mut self, replay: bool) -> Self {
        self.replay = replay;
        self
    }

    pub fn is_replay(&self) -> bool {
        self.replay
    }

    pub fn with_session(mut self, session: crate::profile::Session, monochrome: bool) -> Self {
        self.session = session;
        self.monochrome = monochrome;
        self
    }

    pub fn with_export_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.export_dir = Some(dir);
        self
    }

    pub fn session(&self) -> &crate::profile::Session {
        &self.session
    }

    pub fn is_monochrome(&self) -> bool {
        self.monochrome
    }

    /// The level logs are captured at when the console starts (see `logging`).
    pub fn with_log_capture(mut self, level: LevelFilter) -> Self {
        self.log_capture = level;
        self
    }

    pub fn with_self_alerts(
        mut self,
        self_alerts: Option<tokio::sync::watch::Receiver<Vec<String>>>,
    ) -> Self {
        self.self_alerts = self_alerts;
        self
    }

    /// Names of the console's own alerts firing now.
    pub fn self_alerts(&self) -> Vec<String> {
        self.self_alerts
            .as_ref()
            .map(|alerts| alerts.borrow().clone())
            .unwrap_or_default()
    }

    pub fn set_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.snapshot = snapshot;
        self.refresh_visible();
        self.resolve_escalation_selection();
    }

    // ---- read access for rendering and tests ----

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn keymap(&self) -> &Keymap {
        &self.keymap
    }

    pub fn zone(&self) -> FixedOffset {
        self.zone
    }

    pub fn focus(&self) -> Pane {
        self.focus
    }

    pub fn overlay(&self) -> Option<&Overlay> {
        self.overlay.as_ref()
    }

    pub fn message(&self) -> Option<&StatusMessage> {
        self.message.as_ref()
    }

    pub fn is_quitting(&self) -> bool {
        self.quitting
    }

    pub fn filter_text(&self) -> &str {
        &self.filter_text
    }

    /// Why the filter (a query) cannot be read, shown where the filter is.
    pub fn filter_error(&self) -> Option<&str> {
        self.filter.error()
    }

    /// Saved filters by name (config `filters`); tab while typing a filter steps through them.
    pub fn saved_filters(&self) -> &[(String, String)] {
        &self.saved_filters
    }

    pub fn with_saved_filters(mut self, filters: Vec<(String, String)>) -> Self {
        self.saved_filters = filters;
        self
    }

    pub fn is_filter_editing(&self) -> bool {
        self.filter_editing
    }

    pub fn log_state(&self) -> &TuiWidgetState {
        &self.log_state
    }

    pub fn log_capture(&self) -> LevelFilter {
        self.log_capture
    }

    /// A new capture level chosen with the keys, once; the caller applies it to the logger.
    pub fn take_log_capture_change(&mut self) -> Option<LevelFilter> {
        std::mem::take(&mut self.log_capture_changed).then_some(self.log_capture)
    }

    /// Feed entries that pass the filter, newest first.
    pub fn visible_feed(&self) -> &[Arc<FeedEntry>] {
        &self.visible
    }

    /// True when the feed follows new events; false when the operator scrolled away.
    pub fn is_live(&self) -> bool {
        self.frozen.is_none()
    }

    /// Events that arrived since the view froze.
    pub fn new_since_frozen(&self) -> u64 {
        self.frozen
            .map(|f| {
                self.snapshot
                    .engine
                    .feed_total
                    .saturating_sub(f.total_at_freeze)
            })
            .unwrap_or(0)
    }

    pub fn selected_feed_index(&self) -> Option<usize> {
        if self.visible.is_empty() {
            return None;
        }
        Some(match self.frozen {
            None => 0,
            Some(f) => self.index_of_seq(f.selected_seq),
        })
    }

    pub fn selected_feed_entry(&self) -> Option<&Arc<FeedEntry>> {
        self.selected_feed_index().map(|i| &self.visible[i])
    }

    /// The first feed row to draw in a viewport of `rows` rows, keeping the selection visible.
    pub fn feed_top_index(&self, rows: usize) -> usize {
        let Some(selected) = self.selected_feed_index() else {
            return 0;
        };
        let rows = rows.max(1);
        let top = match self.frozen {
            None => 0,
            Some(f) => self.index_of_seq(f.top_seq),
        };
        if selected < top {
            selected
        } else if selected >= top + rows {
            selected + 1 - rows
        } else {
            top
        }
    }

    pub fn selected_escalation_index(&self) -> Option<usize> {
        let list = &self.snapshot.engine.escalations;
        if list.is_empty() {
            None
        } else {
            Some(self.escalation_index.min(list.len() - 1))
        }
    }

    pub fn selected_escalation(&self) -> Option<&EscalationView> {
        self.selected_escalation_index()
            .map(|i| &self.snapshot.engine.escalations[i])
    }

    pub fn metrics_scroll(&self) -> usize {
        self.metrics_scroll
    }

    // ---- keys ----

    /// Applies one key press; returns what the runtime must do, if anything.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        self.message = None;
        if self.quitting {
            // A second quit while shutting down: the caller exits without waiting.
            return self
                .keymap
                .is(Action::Quit, &key)
                .then_some(Command::Shutdown);
        }
        if self.filter_editing {
            return self.filter_key(key);
        }
        match self.overlay.take() {
            None => self.main_key(key),
            Some(Overlay::ConfirmAcknowledge {
                incident_id,
                question,
            }) => self.confirm_key(key, incident_id, question),
            Some(Overlay::Help { scroll }) => self.help_key(key, scroll),
            Some(Overlay::Detail {
                title,
                lines,
                scroll,
            }) => self.detail_key(key, title, lines, scroll),
            Some(Overlay::Snooze(form)) => self.snooze_key(key, form),
        }
    }

    /// Quit bindings with ctrl work everywhere, even while typing a filter or answering.
    fn is_hard_quit(&self, key: &KeyEvent) -> bool {
        self.keymap
            .keys(Action::Quit)
            .iter()
            .any(|binding| binding.has_control() && binding.matches(key))
    }

    fn quit(&mut self) -> Option<Command> {
        self.begin_quit();
        Some(Command::Shutdown)
    }

    /// Shutting down (quit key or signal): overlays close and keys other than quit are ignored.
    pub fn begin_quit(&mut self) {
        self.quitting = true;
        self.overlay = None;
        self.filter_editing = false;
    }

    /// A line for the footer, until the next key.
    pub fn set_message(&mut self, text: &str) {
        self.say(text, theme::warning());
    }

    fn main_key(&mut self, key: KeyEvent) -> Option<Command> {
        use Action::*;
        // Everything but the answers to a question, which only mean something when asked.
        let candidates: Vec<Action> = Action::ALL
            .into_iter()
            .filter(|action| !matches!(action, Confirm | Cancel))
            .collect();
        let action = self.keymap.action_for(&key, &candidates)?;
        match action {
            Quit => return self.quit(),
            Help => self.overlay = Some(Overlay::Help { scroll: 0 }),
            FocusNext => self.focus = self.focus.next(),
            FocusPrev => self.focus = self.focus.prev(),
            Up => self.move_selection(-1),
            Down => self.move_selection(1),
            PageUp => self.page(-1),
            PageDown => self.page(1),
            Top => self.move_selection(isize::MIN / 2),
            Bottom => self.move_selection(isize::MAX / 2),
            Live => self.go_live(),
            Details => self.open_details(),
            Acknowledge => self.ask_acknowledge(),
            Pause if self.session.read_only => {
                self.say("pausing is disabled: read-only", theme::warning());
            }
            Pause => {
                let paused = self.snapshot.consumer.paused;
                self.say(
                    if paused {
                        "resuming consumption"
                    } else {
                        "pausing consumption"
                    },
                    theme::warning(),
                );
                return Some(Command::TogglePause);
            }
            Filter => {
                self.focus = Pane::Feed;
                self.filter_editing = true;
            }
            Close => self.close(),
            LogMore => self.step_log_capture(true),
            LogLess => self.step_log_capture(false),
            LogShowMore => self.log_state.transition(TuiWidgetEvent::RightKey),
            LogShowLess => self.log_state.transition(TuiWidgetEvent::LeftKey),
            LogTargets => self.log_state.transition(TuiWidgetEvent::HideKey),
            Snooze => self.ask_snooze(),
            Unacknowledge => return self.unacknowledge(),
            EndSilence => return self.end_silence(),
            OnCall => self.show_on_call(),
            ExportEvent => match self.selected_feed_entry().cloned() {
                Some(entry) => self.export(&[entry], "event"),
                None => self.say("no event selected", theme::dim()),
            },
            ExportFeed => {
                let entries = self.visible.clone();
                self.export(&entries, "events");
            }
            Confirm | Cancel => {}
        }
        None
    }

    fn confirm_key(
        &mut self,
        key: KeyEvent,
        incident_id: IncidentId,
        question: String,
    ) -> Option<Command> {
        if self.is_hard_quit(&key) {
            return self.quit();
        }
        match self
            .keymap
            .action_for(&key, &[Action::Confirm, Action::Cancel, Action::Close])
        {
            Some(Action::Confirm) => {
                let by = self.snapshot.operator.clone();
                self.say(
                    &format!("acknowledging incident {incident_id} as {by}"),
                    theme::ok(),
                );
                Some(Command::Acknowledge { incident_id, by })
            }
            Some(_) => {
                self.say("not acknowledged", theme::dim());
                None
            }
            None => {
                // Any other key leaves the question open: a stray key must not answer it.
                self.overlay = Some(Overlay::ConfirmAcknowledge {
                    incident_id,
                    question,
                });
                None
            }
        }
    }

    fn help_key(&mut self, key: KeyEvent, mut scroll: usize) -> Option<Command> {
        use Action::*;
        let action = self.keymap.action_for(
            &key,
            &[Quit, Help, Close, Up, Down, PageUp, PageDown, Top, Bottom],
        );
        let page = self.viewport.popup_rows.max(1);
        match action {
            Some(Quit) => return self.quit(),
            Some(Help | Close) => return None,
            Some(Up) => scroll = scroll.saturating_sub(1),
            Some(Down) => scroll += 1,
            Some(PageUp) => scroll = scroll.saturating_sub(page),
            Some(PageDown) => scroll += page,
            Some(Top) => scroll = 0,
            Some(Bottom) => scroll = usize::MAX / 2,
            _ => {}
        }
        let max = Action::ALL.len();
        self.overlay = Some(Overlay::Help {
            scroll: scroll.min(max),
        });
        None
    }

    fn detail_key(
        &mut self,
        key: KeyEvent,
        title: String,
        lines: Vec<Line<'static>>,
        mut scroll: usize,
    ) -> Option<Command> {
        use Action::*;
        let action = self.keymap.action_for(
            &key,
            &[
                Quit, Close, Details, Up, Down, PageUp, PageDown, Top, Bottom,
            ],
        );
        let page = self.viewport.popup_rows.max(1);
        match action {
            Some(Quit) => return self.quit(),
            Some(Close | Details) => return None,
            Some(Up) => scroll = scroll.saturating_sub(1),
            Some(Down) => scroll += 1,
            Some(PageUp) => scroll = scroll.saturating_sub(page),
            Some(PageDown) => scroll += page,
            Some(Top) => scroll = 0,
            Some(Bottom) => scroll = lines.len(),
            _ => {}
        }
        let scroll = scroll.min(lines.len().saturating_sub(1));
        self.overlay = Some(Overlay::Detail {
            title,
            lines,
            scroll,
        });
        None
    }

    fn filter_key(&mut self, key: KeyEvent) -> Option<Command> {
        if self.is_hard_quit(&key) {
            return self.quit();
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Enter => self.filter_editing = false,
            KeyCode::Esc => {
                self.filter_editing = false;
                self.set_filter(String::new());
            }
            KeyCode::Backspace => {
                let mut text = self.filter_text.clone();
                text.pop();
                self.set_filter(text);
            }
            KeyCode::Char('u') if ctrl => self.set_filter(String::new()),
            KeyCode::Tab | KeyCode::BackTab if !self.saved_filters.is_empty() => {
                let count = self.saved_filters.len();
                let current = self
                    .saved_filters
                    .iter()
                    .position(|(_, text)| *text == self.filter_text);
                let next = match (current, key.code == KeyCode::BackTab) {
                    (None, false) => 0,
                    (None, true) => count - 1,
                    (Some(i), false) => (i + 1) % count,
                    (Some(i), true) => (i + count - 1) % count,
                };
                let text = self.saved_filters[next].1.clone();
                self.set_filter(text);
            }
            KeyCode::Char(c)
                if !ctrl
                    && !key.modifiers.contains(KeyModifiers::ALT)
                    && !c.is_control()
                    && self.filter_text.chars().count() < MAX_FILTER_CHARS =>
            {
                let mut text = self.filter_text.clone();
                text.push(c);
                self.set_filter(text);
            }
            _ => {}
        }
        None
    }

    // ---- actions ----

    fn say(&mut self, text: &str, style: Style) {
        // Messages quote names from the snapshot (the operator's, the acknowledger's).
        self.message = Some(StatusMessage {
            text: super::sanitize::sanitize(text).into_owned(),
            style,
        });
    }

    fn set_filter(&mut self, text: String) {
        self.filter = FeedFilter::parse(&text);
        self.filter_text = text;
        self.frozen = None;
        self.refresh_visible();
    }

    fn close(&mut self) {
        if !self.filter_text.is_empty() {
            self.set_filter(String::new());
        } else if self.focus == Pane::Logs {
            self.log_state.transition(TuiWidgetEvent::EscapeKey);
        } else if self.frozen.is_some() {
            self.go_live();
        }
    }

    fn go_live(&mut self) {
        self.frozen = None;
    }

    fn page(&mut self, direction: isize) {
        let rows = match self.focus {
            Pane::Feed => self.viewport.feed_rows,
            Pane::Escalations => self.viewport.escalation_rows,
            Pane::Metrics => 5,
            Pane::Logs => {
                self.log_state.transition(if direction < 0 {
                    TuiWidgetEvent::PrevPageKey
                } else {
                    TuiWidgetEvent::NextPageKey
                });
                return;
            }
        };
        let step = rows.saturating_sub(1).max(1) as isize;
        self.move_selection(direction * step);
    }

    fn move_selection(&mut self, delta: isize) {
        match self.focus {
            Pane::Feed => self.move_feed(delta),
            Pane::Escalations => {
                let len = self.snapshot.engine.escalations.len();
                if len == 0 {
                    return;
                }
                let current = self.selected_escalation_index().unwrap_or(0) as isize;
                let next = current.saturating_add(delta).clamp(0, len as isize - 1) as usize;
                self.escalation_index = next;
                self.selected_escalation = Some(
                    self.snapshot.engine.escalations[next]
                        .escalation
                        .incident_id,
                );
            }
            Pane::Metrics => {
                self.metrics_scroll = (self.metrics_scroll as isize)
                    .saturating_add(delta)
                    .clamp(0, 64) as usize;
            }
            Pane::Logs => {
                // One step at a time through the target list; top/bottom are not meaningful.
                if delta == -1 {
                    self.log_state.transition(TuiWidgetEvent::UpKey);
                } else if delta == 1 {
                    self.log_state.transition(TuiWidgetEvent::DownKey);
                }
            }
        }
    }

    fn move_feed(&mut self, delta: isize) {
        let len = self.visible.len();
        if len == 0 {
            return;
        }
        let current = self.selected_feed_index().unwrap_or(0) as isize;
        let next = current.saturating_add(delta).clamp(0, len as isize - 1) as usize;
        if next == 0 {
            // Back at the newest event: follow the stream again.
            self.frozen = None;
            return;
        }
        let rows = self.viewport.feed_rows.max(1);
        let frozen = self.frozen.unwrap_or(Frozen {
            selected_seq: self.visible[0].seq,
            top_seq: self.visible[0].seq,
            total_at_freeze: self.snapshot.engine.feed_total,
        });
        let mut top = self.index_of_seq(frozen.top_seq);
        if next < top {
            top = next;
        } else if next >= top + rows {
            top = next + 1 - rows;
        }
        self.frozen = Some(Frozen {
            selected_seq: self.visible[next].seq,
            top_seq: self.visible[top].seq,
            ..frozen
        });
    }

    /// Position of the entry with `seq`, or of the next older one if it has gone (evicted or
    /// filtered out); the last entry if everything older has gone.
    fn index_of_seq(&self, seq: u64) -> usize {
        let index = self.visible.partition_point(|entry| entry.seq > seq);
        index.min(self.visible.len().saturating_sub(1))
    }

    fn refresh_visible(&mut self) {
        let key = (self.snapshot.engine.feed_total, self.filter_text.clone());
        if key == self.visible_key {
            return;
        }
        self.visible = self
            .snapshot
            .engine
            .feed
            .iter()
            .filter(|entry| self.filter.matches(entry))
            .cloned()
            .collect();
        self.visible_key = key;
    }

    fn resolve_escalation_selection(&mut self) {
        let list = &self.snapshot.engine.escalations;
        if list.is_empty() {
            self.escalation_index = 0;
            return;
        }
        if let Some(id) = self.selected_escalation
            && let Some(index) = list.iter().position(|e| e.escalation.incident_id == id)
        {
            self.escalation_index = index;
            return;
        }
        // The selected escalation has gone (resolved): select what now stands in its place.
        self.escalation_index = self.escalation_index.min(list.len() - 1);
        if self.selected_escalation.is_some() {
            self.selected_escalation = Some(list[self.escalation_index].escalation.incident_id);
        }
    }

    fn open_details(&mut self) {
        let now = self.snapshot.engine.at;
        match self.focus {
            Pane::Feed => {
                if let Some(entry) = self.selected_feed_entry().cloned() {
                    let escalation = entry.incident_id.and_then(|id| {
                        self.snapshot
                            .engine
                            .escalations
                            .iter()
                            .find(|e| e.escalation.incident_id == id)
                    });
                    let (title, lines) = detail::feed_entry(&entry, escalation, now, self.zone);
                    self.overlay = Some(Overlay::Detail {
                        title,
                        lines,
                        scroll: 0,
                    });
                } else {
                    self.say("no event selected", theme::dim());
                }
            }
            Pane::Escalations => {
                if let Some(view) = self.selected_escalation().cloned() {
                    let (title, lines) =
                        detail::escalation(&view, &self.snapshot.engine.feed, now, self.zone);
                    self.overlay = Some(Overlay::Detail {
                        title,
                        lines,
                        scroll: 0,
                    });
                } else {
                    self.say("no escalation selected", theme::dim());
                }
            }
            Pane::Metrics | Pane::Logs => {}
        }
    }

    /// The escalation the acknowledge key applies to: the selected one, or in the feed the
    /// selected event's incident.
    fn acknowledge_target(&self) -> Option<&EscalationView> {
        match self.focus {
            Pane::Escalations => self.selected_escalation(),
            Pane::Feed => {
                let id = self.selected_feed_entry()?.incident_id?;
                self.snapshot
                    .engine
                    .escalations
                    .iter()
                    .find(|e| e.escalation.incident_id == id)
            }
            Pane::Metrics | Pane::Logs => None,
        }
    }

    /// A mouse gesture (src/tui/mouse.rs): scrolling or clicking focuses the pane under the
    /// pointer; a click on a feed row selects it. Ignored while a popup or question is open
    /// or a filter is typed, where keys decide.
    pub fn apply_gesture(&mut self, gesture: super::mouse::Gesture) {
        use super::mouse::Gesture;
        if self.overlay.is_some() || self.filter_editing || self.quitting {
            return;
        }
        match gesture {
            Gesture::Scroll { pane, rows } => {
                self.focus = pane;
                self.move_selection(rows);
            }
            Gesture::Click { pane, row } => {
                self.focus = pane;
                if let (Some(row), Some(current)) = (row, self.selected_feed_index()) {
                    self.move_feed(row as isize - current as isize);
                }
            }
        }
    }

    /// Writes an export and says where (or why not) in the footer.
    fn export(&mut self, entries: &[Arc<FeedEntry>], what: &str) {
        if entries.is_empty() {
            self.say("nothing to export: the feed is empty", theme::dim());
            return;
        }
        let dir = self
            .export_dir
            .clone()
            .unwrap_or_else(super::export::default_dir);
        match super::export::write(entries, &dir, self.snapshot.engine.at) {
            Ok(path) => {
                let text = format!("exported {} {what} to {}", entries.len(), path.display());
                self.say(&text, theme::ok());
            }
            Err(error) => self.say(&format!("export failed: {error}"), theme::error()),
        }
    }

    fn ask_acknowledge(&mut self) {
        if self.replay {
            self.say("acknowledging is disabled in a replay", theme::warning());
            return;
        }
        if self.session.read_only {
            self.say("acknowledging is disabled: read-only", theme::warning());
            return;
        }
        let Some(view) = self.acknowledge_target() else {
            let text = match self.focus {
                Pane::Escalations => "no escalation selected",
                Pane::Feed => "the selected event's incident has no escalation",
                _ => "select an escalation first (tab to the Escalations pane)",
            };
            self.say(text, theme::dim());
            return;
        };
        let escalation = &view.escalation;
        if let Some(ack) = &escalation.acknowledged {
            let text = format!(
                "incident {} was already acknowledged by {} at {}",
                escalation.incident_id,
                super::sanitize::sanitize(&ack.by),
                theme::clock(ack.at, self.zone)
            );
            self.say(&text, theme::dim());
            return;
        }
        let question = format!(
            "Acknowledge incident #{} \"{}\" ({}, level {} {}) as {}?",
            escalation.incident_id,
            super::sanitize::sanitize_with_limit(&escalation.title, 80),
            escalation.priority,
            escalation.level,
            super::sanitize::sanitize(&view.level_name),
            super::sanitize::sanitize(&self.snapshot.operator),
        );
        self.overlay = Some(Overlay::ConfirmAcknowledge {
            incident_id: escalation.incident_id,
            question,
        });
    }

    fn step_log_capture(&mut self, more: bool) {
        const LEVELS: [LevelFilter; 5] = [
            LevelFilter::ERROR,
            LevelFilter::WARN,
            LevelFilter::INFO,
            LevelFilter::DEBUG,
            LevelFilter::TRACE,
        ];
        let index = LEVELS
            .iter()
            .position(|l| *l == self.log_capture)
            .unwrap_or(2);
        let next = if more {
            (index + 1).min(LEVELS.len() - 1)
        } else {
            index.saturating_sub(1)
        };
        if LEVELS[next] != self.log_capture {
            self.log_capture = LEVELS[next];
            self.log_capture_changed = true;
        }
        self.say(
            &format!(
                "logs: capturing {} and above",
                self.log_capture.to_string().to_lowercase()
            ),
            theme::dim(),
        );
    }
}
