//! The console's side of the on-call workflow: snooze the selected escalation (a form with a
//! duration and a reason), take an acknowledgement back, end a silence, and the on-call popup.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::text::{Line, Span};

use super::{App, Overlay, theme};
use crate::core::event::IncidentId;
use crate::core::silence::SilenceOrigin;
use crate::oncall::OncallCommand;
use crate::status::Command;

/// Snooze lengths offered, in minutes.
pub const SNOOZE_MINUTES: [u32; 3] = [15, 60, 240];
const MAX_REASON_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnoozeForm {
    pub incident_id: IncidentId,
    pub title: String,
    /// Index into `SNOOZE_MINUTES`.
    pub choice: usize,
    pub reason: String,
}

fn heading() -> ratatui::style::Style {
    ratatui::style::Style::default().add_modifier(ratatui::style::Modifier::BOLD)
}

pub fn snooze_label(minutes: u32) -> String {
    if minutes < 60 {
        format!("{minutes} min")
    } else {
        format!("{} h", minutes / 60)
    }
}

impl App {
    /// At a team console these are asked of the active worker on `<topic>.commands` and
    /// show once its state record comes back: say so, rather than suggest it is done.
    fn through_worker(&self) -> &'static str {
        if self.snapshot.team.is_some() {
            " (asked of the active worker)"
        } else {
            ""
        }
    }

    pub(super) fn ask_snooze(&mut self) {
        if self.replay {
            self.say("snoozing is disabled in a replay", theme::warning());
            return;
        }
        let Some(view) = self.acknowledge_target() else {
            self.say(
                "select an escalation to snooze (tab to the Escalations pane)",
                theme::dim(),
            );
            return;
        };
        let form = SnoozeForm {
            incident_id: view.escalation.incident_id,
            title: super::super::sanitize::sanitize_with_limit(&view.escalation.title, 60)
                .into_owned(),
            choice: 0,
            reason: String::new(),
        };
        self.overlay = Some(Overlay::Snooze(form));
    }

    /// Typing goes to the reason; left/right/tab pick the length; enter snoozes, esc cancels.
    pub(super) fn snooze_key(&mut self, key: KeyEvent, mut form: SnoozeForm) -> Option<Command> {
        if self.is_hard_quit(&key) {
            return self.quit();
        }
        let plain = !key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        match key.code {
            KeyCode::Esc => {
                self.say("not snoozed", theme::dim());
                return None;
            }
            KeyCode::Enter => {
                let minutes = SNOOZE_MINUTES[form.choice.min(SNOOZE_MINUTES.len() - 1)];
                let reason = match form.reason.trim() {
                    "" => "snoozed from the console".to_string(),
                    text => text.to_string(),
                };
                let by = self.snapshot.operator.clone();
                self.say(
                    &format!(
                        "snoozing incident {} for {} as {by}{}",
                        form.incident_id,
                        snooze_label(minutes),
                        self.through_worker()
                    ),
                    theme::ok(),
                );
                return Some(Command::Oncall(OncallCommand::Snooze {
                    incident_id: form.incident_id,
                    minutes,
                    reason,
                    by,
                }));
            }
            KeyCode::Right | KeyCode::Tab => {
                form.choice = (form.choice + 1) % SNOOZE_MINUTES.len();
            }
            KeyCode::Left | KeyCode::BackTab => {
                form.choice = (form.choice + SNOOZE_MINUTES.len() - 1) % SNOOZE_MINUTES.len();
            }
            KeyCode::Backspace => {
                form.reason.pop();
            }
            KeyCode::Char(c)
                if plain && !c.is_control() && form.reason.chars().count() < MAX_REASON_CHARS =>
            {
                form.reason.push(c);
            }
            _ => {}
        }
        self.overlay = Some(Overlay::Snooze(form));
        None
    }

    pub(super) fn unacknowledge(&mut self) -> Option<Command> {
        if self.replay {
            self.say("un-acknowledging is disabled in a replay", theme::warning());
            return None;
        }
        let Some(view) = self.acknowledge_target() else {
            self.say("no escalation selected", theme::dim());
            return None;
        };
        let incident_id = view.escalation.incident_id;
        if view.escalation.acknowledged.is_none() {
            self.say(
                &format!("incident {incident_id} is not acknowledged"),
                theme::dim(),
            );
            return None;
        }
        let by = self.snapshot.operator.clone();
        self.say(
            &format!(
                "un-acknowledging incident {incident_id}: its level is paged again{}",
                self.through_worker()
            ),
            theme::warning(),
        );
        Some(Command::Oncall(OncallCommand::Unacknowledge {
            incident_id,
            by,
        }))
    }

    pub(super) fn end_silence(&mut self) -> Option<Command> {
        let Some(view) = self.acknowledge_target() else {
            self.say("no escalation selected", theme::dim());
            return None;
        };
        let Some(mark) = view.silenced.clone() else {
            self.say(
                &format!(
                    "incident {} is not silenced (o lists the silences)",
                    view.escalation.incident_id
                ),
                theme::dim(),
            );
            return None;
        };
        let by = self.snapshot.operator.clone();
        self.say(
            &format!("ending silence {}{}", mark.id, self.through_worker()),
            theme::ok(),
        );
        Some(Command::Oncall(OncallCommand::EndSilence {
            id: mark.id,
            by,
        }))
    }

    pub(super) fn show_on_call(&mut self) {
        let engine = &self.snapshot.engine;
        let zone = self.zone;
        let clean = |text: &str| super::super::sanitize::sanitize_with_limit(text, 80).into_owned();
        let mut lines = vec![Line::styled("On call", heading())];
        if engine.on_call.is_empty() {
            lines.push(Line::styled(
                "  no schedules (oncall.schedules in the configuration)",
                theme::dim(),
            ));
        }
        for now in &engine.on_call {
            let until = now
                .until
                .map(|t| theme::full_time(t, zone))
                .unwrap_or_else(|| "no change ahead".into());
            lines.push(Line::from(vec![
                Span::styled(format!("  {:<16}", clean(&now.schedule)), heading()),
                Span::raw(format!(
                    "{} until {until}, then {}",
                    clean(now.on_call.as_deref().unwrap_or("nobody")),
                    clean(now.next.as_deref().unwrap_or("nobody")),
                )),
            ]));
        }
        lines.push(Line::default());
        lines.push(Line::styled("Silences", heading()));
        if engine.silences.is_empty() {
            lines.push(Line::styled(
                "  none (s snoozes the selected escalation)",
                theme::dim(),
            ));
        }
        for silence in &engine.silences {
            let state = if silence.active { "active" } else { "planned" };
            let origin = match silence.origin {
                SilenceOrigin::Config => "window",
                SilenceOrigin::Operator => "silence",
            };
            lines.push(Line::from(vec![
                Span::styled(
                    format!("  {} {origin} {state}", clean(&silence.id)),
                    if silence.active {
                        theme::warning()
                    } else {
                        theme::dim()
                    },
                ),
                Span::raw(format!(
                    ": {}, by {}: {}",
                    clean(&silence.matches),
                    clean(&silence.created_by),
                    clean(&silence.reason),
                )),
            ]));
            lines.push(Line::styled(
                format!(
                    "      from {} to {}",
                    theme::full_time(silence.start, zone),
                    theme::full_time(silence.end, zone),
                ),
                theme::dim(),
            ));
        }
        self.overlay = Some(Overlay::Detail {
            title: "On call and silences".into(),
            lines,
            scroll: 0,
        });
    }
}
