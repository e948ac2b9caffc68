//! Key bindings: every action the console knows, its default keys, and the overrides from
//! `console.keys` in config.ron. The help overlay and the footer are generated from this, so
//! what the screen says is always what the keys do.

use std::collections::BTreeMap;
use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Quit,
    Help,
    FocusNext,
    FocusPrev,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Live,
    Details,
    Acknowledge,
    Pause,
    Filter,
    Close,
    Confirm,
    Cancel,
    LogMore,
    LogLess,
    LogShowMore,
    LogShowLess,
    LogTargets,
    Snooze,
    Unacknowledge,
    EndSilence,
    OnCall,
    ExportEvent,
    ExportFeed,
}

impl Action {
    pub const ALL: [Action; 29] = [
        Self::Quit,
        Self::Help,
        Self::FocusNext,
        Self::FocusPrev,
        Self::Up,
        Self::Down,
        Self::PageUp,
        Self::PageDown,
        Self::Top,
        Self::Bottom,
        Self::Live,
        Self::Details,
        Self::Acknowledge,
        Self::Pause,
        Self::Filter,
        Self::Close,
        Self::Confirm,
        Self::Cancel,
        Self::LogMore,
        Self::LogLess,
        Self::LogShowMore,
        Self::LogShowLess,
        Self::LogTargets,
        Self::Snooze,
        Self::Unacknowledge,
        Self::EndSilence,
        Self::OnCall,
        Self::ExportEvent,
        Self::ExportFeed,
    ];

    /// The name used in `console.keys`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Quit => "quit",
            Self::Help => "help",
            Self::FocusNext => "focus_next",
            Self::FocusPrev => "focus_prev",
            Self::Up => "up",
            Self::Down => "down",
            Self::PageUp => "page_up",
            Self::PageDown => "page_down",
            Self::Top => "top",
            Self::Bottom => "bottom",
            Self::Live => "live",
            Self::Details => "details",
            Self::Acknowledge => "acknowledge",
            Self::Pause => "pause",
            Self::Filter => "filter",
            Self::Close => "close",
            Self::Confirm => "confirm",
            Self::Cancel => "cancel",
            Self::LogMore => "log_more",
            Self::LogLess => "log_less",
            Self::LogShowMore => "log_show_more",
            Self::LogShowLess => "log_show_less",
            Self::LogTargets => "log_targets",
            Self::Snooze => "snooze",
            Self::Unacknowledge => "unacknowledge",
            Self::EndSilence => "end_silence",
            Self::OnCall => "oncall",
            Self::ExportEvent => "export_event",
            Self::ExportFeed => "export_feed",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::Quit => "quit: stop consuming, commit offsets, exit",
            Self::Help => "show or hide this help",
            Self::FocusNext => "focus the next pane",
            Self::FocusPrev => "focus the previous pane",
            Self::Up => "move up (logs: previous target)",
            Self::Down => "move down (logs: next target)",
            Self::PageUp => "page up",
            Self::PageDown => "page down",
            Self::Top => "go to the top; the feed follows new events again",
            Self::Bottom => "go to the bottom (the feed view freezes)",
            Self::Live => "feed: back to live (follow new events)",
            Self::Details => "details of the selected event or escalation",
            Self::Acknowledge => "acknowledge the selected escalation (asks first)",
            Self::Pause => "pause or resume consumption from Kafka",
            Self::Filter => "filter the feed: priority, event type or any text",
            Self::Close => "close a popup, clear the filter, or return to live",
            Self::Confirm => "answer yes to a question",
            Self::Cancel => "answer no to a question",
            Self::LogMore => "logs: capture more (info -> debug -> trace)",
            Self::LogLess => "logs: capture less (info -> warn -> error)",
            Self::LogShowMore => "logs: show more for the selected target",
            Self::LogShowLess => "logs: show less for the selected target",
            Self::LogTargets => "logs: show or hide the target list",
            Self::Snooze => "snooze the selected escalation: 15 min, 1 h or 4 h, with a reason",
            Self::Unacknowledge => "take back the selected acknowledgement: pages its level again",
            Self::EndSilence => "end the silence on the selected escalation now",
            Self::OnCall => "who is on call, and the silences",
            Self::ExportEvent => "export the selected event to a JSON-lines file (replayable)",
            Self::ExportFeed => "export the feed as filtered to a JSON-lines file (replayable)",
        }
    }

    pub fn default_keys(self) -> &'static [&'static str] {
        match self {
            Self::Quit => &["q", "ctrl-c"],
            Self::Help => &["?", "f1"],
            Self::FocusNext => &["tab"],
            Self::FocusPrev => &["shift-tab"],
            Self::Up => &["up", "k"],
            Self::Down => &["down", "j"],
            Self::PageUp => &["pageup"],
            Self::PageDown => &["pagedown"],
            Self::Top => &["g", "home"],
            Self::Bottom => &["G", "end"],
            Self::Live => &["l"],
            Self::Details => &["enter"],
            Self::Acknowledge => &["a"],
            Self::Pause => &["p"],
            Self::Filter => &["/"],
            Self::Close => &["esc"],
            Self::Confirm => &["y"],
            Self::Cancel => &["n"],
            Self::LogMore => &["+"],
            Self::LogLess => &["-"],
            Self::LogShowMore => &["right"],
            Self::LogShowLess => &["left"],
            Self::LogTargets => &["t"],
            Self::Snooze => &["s"],
            Self::Unacknowledge => &["u"],
            Self::EndSilence => &["x"],
            Self::OnCall => &["o"],
            Self::ExportEvent => &["e"],
            Self::ExportFeed => &["E"],
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.name() == name)
    }

    /// Actions offered while a yes/no question is open; the others are not.
    fn in_question(self) -> bool {
        matches!(self, Self::Confirm | Self::Cancel | Self::Close)
    }
}

/// One key with its modifiers, as written in config.ron ("ctrl-c", "shift-tab", "G", "f1").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyBinding {
    code: KeyCode,
    modifiers: KeyModifiers,
}

/// Shift is part of the character for printable keys ("G" is shift-g, "?" is shift-/ on most
/// layouts) and terminals disagree on whether they report it, so it is folded into the key.
fn normalize(code: KeyCode, modifiers: KeyModifiers) -> (KeyCode, KeyModifiers) {
    let modifiers = modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
    match code {
        KeyCode::Char(c) if modifiers.contains(KeyModifiers::SHIFT) => (
            KeyCode::Char(c.to_ascii_uppercase()),
            modifiers - KeyModifiers::SHIFT,
        ),
        // "ctrl-C" in a config file means ctrl-c, which is what terminals send for it.
        KeyCode::Char(c) if modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => {
            (KeyCode::Char(c.to_ascii_lowercase()), modifiers)
        }
        KeyCode::Tab if modifiers.contains(KeyModifiers::SHIFT) => {
            (KeyCode::BackTab, modifiers - KeyModifiers::SHIFT)
        }
        KeyCode::BackTab => (KeyCode::BackTab, modifiers - KeyModifiers::SHIFT),
        code => (code, modifiers),
    }
}

impl KeyBinding {
    pub fn new(code: KeyCode, modifiers: KeyModifiers) -> Self {
        let (code, modifiers) = normalize(code, modifiers);
        Self { code, modifiers }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("empty key".into());
        }
        let mut modifiers = KeyModifiers::NONE;
        let mut rest = text;
        loop {
            let lower = rest.to_ascii_lowercase();
            let prefix = ["ctrl-", "control-", "alt-", "shift-"]
                .into_iter()
                .find(|p| lower.starts_with(p) && rest.len() > p.len());
            match prefix {
                Some(p) => {
                    modifiers |= match p {
                        "alt-" => KeyModifiers::ALT,
                        "shift-" => KeyModifiers::SHIFT,
                        _ => KeyModifiers::CONTROL,
                    };
                    rest = &rest[p.len()..];
                }
                None => break,
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) if !c.is_control() => KeyCode::Char(c),
            _ => match rest.to_ascii_lowercase().as_str() {
                "enter" | "return" => KeyCode::Enter,
                "esc" | "escape" => KeyCode::Esc,
                "tab" => KeyCode::Tab,
                "backtab" => KeyCode::BackTab,
                "backspace" => KeyCode::Backspace,
                "delete" | "del" => KeyCode::Delete,
                "insert" | "ins" => KeyCode::Insert,
                "up" => KeyCode::Up,
                "down" => KeyCode::Down,
                "left" => KeyCode::Left,
                "right" => KeyCode::Right,
                "home" => KeyCode::Home,
                "end" => KeyCode::End,
                "pageup" | "pgup" => KeyCode::PageUp,
                "pagedown" | "pgdn" => KeyCode::PageDown,
                "space" => KeyCode::Char(' '),
                name => match name.strip_prefix('f').and_then(|n| n.parse::<u8>().ok()) {
                    Some(n @ 1..=24) => KeyCode::F(n),
                    _ => {
                        return Err(format!(
                            "unknown key name `{rest}` (expected a single character, or one of \
                             enter, esc, tab, backspace, delete, insert, up, down, left, right, \
                             home, end, pageup, pagedown, space, f1..f24, with optional ctrl-, \
                             alt-, shift- prefixes)"
                        ));
                    }
                },
            },
        };
        Ok(Self::new(code, modifiers))
    }

    pub fn matches(&self, key: &KeyEvent) -> bool {
        *self == Self::new(key.code, key.modifiers)
    }

    pub fn has_control(&self) -> bool {
        self.modifiers.contains(KeyModifiers::CONTROL)
    }
}

impl fmt::Display for KeyBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.modifiers.contains(KeyModifiers::CONTROL) {
            f.write_str("ctrl-")?;
        }
        if self.modifiers.contains(KeyModifiers::ALT) {
            f.write_str("alt-")?;
        }
        if self.modifiers.contains(KeyModifiers::SHIFT) {
            f.write_str("shift-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Enter => f.write_str("enter"),
            KeyCode::Esc => f.write_str("esc"),
            KeyCode::Tab => f.write_str("tab"),
            KeyCode::BackTab => f.write_str("shift-tab"),
            KeyCode::Backspace => f.write_str("backspace"),
            KeyCode::Delete => f.write_str("delete"),
            KeyCode::Insert => f.write_str("insert"),
            KeyCode::Up => f.write_str("up"),
            KeyCode::Down => f.write_str("down"),
            KeyCode::Left => f.write_str("left"),
            KeyCode::Right => f.write_str("right"),
            KeyCode::Home => f.write_str("home"),
            KeyCode::End => f.write_str("end"),
            KeyCode::PageUp => f.write_str("pageup"),
            KeyCode::PageDown => f.write_str("pagedown"),
            KeyCode::F(n) => write!(f, "f{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeymapError {
    #[error("unknown action `{action}`; the actions are: {known}")]
    UnknownAction { action: String, known: String },
    #[error("action `{action}`: cannot read key `{key}`: {reason}")]
    BadKey {
        action: String,
        key: String,
        reason: String,
    },
    #[error("action `{action}` needs at least one key, or the console could not be left")]
    Unbound { action: String },
    #[error("key `{key}` is bound to both `{first}` and `{second}`")]
    Conflict {
        key: String,
        first: String,
        second: String,
    },
}

impl KeymapError {
    /// The action the error is about, to name `console.keys.<action>` in messages.
    pub fn action(&self) -> &str {
        match self {
            Self::UnknownAction { action, .. }
            | Self::BadKey { action, .. }
            | Self::Unbound { action } => action,
            Self::Conflict { second, .. } => second,
        }
    }
}

/// Every action with its keys, in `Action::ALL` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keymap {
    bindings: Vec<(Action, Vec<KeyBinding>)>,
}

impl Default for Keymap {
    fn default() -> Self {
        Self {
            bindings: Action::ALL
                .into_iter()
                .map(|action| {
                    let keys = action
                        .default_keys()
                        .iter()
                        .map(|key| KeyBinding::parse(key).expect("default keys parse"))
                        .collect();
                    (action, keys)
                })
                .collect(),
        }
    }
}

impl Keymap {
    /// The defaults with `console.keys` applied: each listed action gets exactly the keys
    /// given. Unknown actions, unreadable keys and one key on two actions are errors.
    pub fn with_overrides(overrides: &BTreeMap<String, Vec<String>>) -> Result<Self, KeymapError> {
        let mut keymap = Self::default();
        for (name, keys) in overrides {
            let action = Action::parse(name).ok_or_else(|| KeymapError::UnknownAction {
                action: name.clone(),
                known: Action::ALL.map(Action::name).join(", "),
            })?;
            let parsed = keys
                .iter()
                .map(|key| {
                    KeyBinding::parse(key).map_err(|reason| KeymapError::BadKey {
                        action: name.clone(),
                        key: key.clone(),
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if parsed.is_empty() && action == Action::Quit {
                return Err(KeymapError::Unbound {
                    action: name.clone(),
                });
            }
            keymap.slot(action).1 = parsed;
        }
        keymap.check_conflicts()?;
        Ok(keymap)
    }

    fn slot(&mut self, action: Action) -> &mut (Action, Vec<KeyBinding>) {
        self.bindings
            .iter_mut()
            .find(|(a, _)| *a == action)
            .expect("every action has a slot")
    }

    /// A key may serve two actions only if they never apply at the same moment: the answers
    /// to a question (yes/no) are separate from the main screen's actions.
    fn check_conflicts(&self) -> Result<(), KeymapError> {
        for (i, (first, first_keys)) in self.bindings.iter().enumerate() {
            for (second, second_keys) in &self.bindings[i + 1..] {
                let together = first.in_question() == second.in_question()
                    || *first == Action::Close
                    || *second == Action::Close;
                if !together {
                    continue;
                }
                if let Some(key) = first_keys.iter().find(|k| second_keys.contains(k)) {
                    return Err(KeymapError::Conflict {
                        key: key.to_string(),
                        first: first.name().into(),
                        second: second.name().into(),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn keys(&self, action: Action) -> &[KeyBinding] {
        self.bindings
            .iter()
            .find(|(a, _)| *a == action)
            .map(|(_, keys)| keys.as_slice())
            .unwrap_or_default()
    }

    pub fn is(&self, action: Action, key: &KeyEvent) -> bool {
        self.keys(action).iter().any(|binding| binding.matches(key))
    }

    /// The first of `candidates` that `key` is bound to.
    pub fn action_for(&self, key: &KeyEvent, candidates: &[Action]) -> Option<Action> {
        candidates
            .iter()
            .copied()
            .find(|&action| self.is(action, key))
    }

    /// All keys of an action for display: "q, ctrl-c".
    pub fn describe(&self, action: Action) -> String {
        let keys = self.keys(action);
        if keys.is_empty() {
            return "(unbound)".into();
        }
        keys.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The first key of an action, for short hints; `None` when unbound.
    pub fn first(&self, action: Action) -> Option<KeyBinding> {
        self.keys(action).first().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Action, &[KeyBinding])> {
        self.bindings
            .iter()
            .map(|(action, keys)| (*action, keys.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn key_strings_parse_and_print_back() {
        for text in [
            "q",
            "ctrl-c",
            "tab",
            "shift-tab",
            "enter",
            "esc",
            "up",
            "pagedown",
            "home",
            "f1",
            "G",
            "?",
            "/",
            "+",
            "-",
            "space",
            "alt-x",
            "ctrl--",
        ] {
            let binding = KeyBinding::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(binding.to_string(), text);
        }
        assert_eq!(KeyBinding::parse("Ctrl-C").unwrap().to_string(), "ctrl-c");
        assert_eq!(KeyBinding::parse("shift-g").unwrap().to_string(), "G");
        assert_eq!(KeyBinding::parse("PgDn").unwrap().to_string(), "pagedown");
    }

    #[test]
    fn bad_key_strings_are_refused() {
        for text in ["", "ctrl-", "hyper-x", "f25", "f0", "enterr", "\u{1b}"] {
            assert!(KeyBinding::parse(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn shift_is_folded_into_printable_keys() {
        let keymap = Keymap::default();
        let upper_g = key(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert!(keymap.is(Action::Bottom, &upper_g));
        assert!(keymap.is(Action::Bottom, &key(KeyCode::Char('G'), KeyModifiers::NONE)));
        assert!(!keymap.is(Action::Top, &upper_g));
        assert!(keymap.is(
            Action::FocusPrev,
            &key(KeyCode::BackTab, KeyModifiers::SHIFT)
        ));
        assert!(keymap.is(Action::Help, &key(KeyCode::Char('?'), KeyModifiers::SHIFT)));
        assert!(keymap.is(
            Action::Quit,
            &key(KeyCode::Char('c'), KeyModifiers::CONTROL)
        ));
        assert!(!keymap.is(Action::Quit, &key(KeyCode::Char('c'), KeyModifiers::NONE)));
    }

    #[test]
    fn overrides_replace_an_actions_keys() {
        let overrides = BTreeMap::from([("pause".to_string(), vec!["space".into(), "f5".into()])]);
        let keymap = Keymap::with_overrides(&overrides).unwrap();
        assert_eq!(keymap.describe(Action::Pause), "space, f5");
        assert!(!keymap.is(Action::Pause, &key(KeyCode::Char('p'), KeyModifiers::NONE)));
        assert_eq!(keymap.describe(Action::Quit), "q, ctrl-c");
    }

    #[test]
    fn errors_name_the_action_and_the_key() {
        let unknown = BTreeMap::from([("explode".to_string(), vec!["x".into()])]);
        let error = Keymap::with_overrides(&unknown).unwrap_err();
        assert_eq!(error.action(), "explode");
        assert!(
            error.to_string().contains("unknown action `explode`"),
            "{error}"
        );
        assert!(error.to_string().contains("acknowledge"), "{error}");

        let bad = BTreeMap::from([("pause".to_string(), vec!["ctrl-".into()])]);
        let error = Keymap::with_overrides(&bad).unwrap_err().to_string();
        assert!(
            error.contains("`pause`") && error.contains("`ctrl-`"),
            "{error}"
        );

        let conflict = BTreeMap::from([("pause".to_string(), vec!["q".into()])]);
        let error = Keymap::with_overrides(&conflict).unwrap_err().to_string();
        assert_eq!(error, "key `q` is bound to both `quit` and `pause`");

        let unbound = BTreeMap::from([("quit".to_string(), vec![])]);
        assert!(Keymap::with_overrides(&unbound).is_err());
    }

    #[test]
    fn question_answers_may_reuse_main_screen_keys_but_not_esc() {
        let reuse = BTreeMap::from([("confirm".to_string(), vec!["enter".into()])]);
        assert!(Keymap::with_overrides(&reuse).is_ok());
        let clash = BTreeMap::from([("confirm".to_string(), vec!["esc".into()])]);
        assert!(Keymap::with_overrides(&clash).is_err());
    }

    #[test]
    fn defaults_have_no_conflicts() {
        Keymap::default().check_conflicts().unwrap();
    }
}
