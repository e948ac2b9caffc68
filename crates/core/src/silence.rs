//! Silences and maintenance windows: matchers with a start, an end and a reason. While one
//! covers an incident, its notifications are held (the engine says so as an effect, nothing is
//! lost) and its escalation does not step; when it ends, a still-open unacknowledged incident
//! pages the level it reached, once. Pure: every question takes `now`.

use chrono::{Days, NaiveDateTime};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::event::{EventType, IncidentId, Priority, Timestamp};
use super::oncall::local_to_instant;

/// What a silence covers. Every condition given must hold; within one list any value will do;
/// an empty matcher covers everything (a blanket maintenance window).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Matcher {
    pub priorities: Vec<Priority>,
    /// Categories of the incident's `incident_created` event, compared without case.
    pub categories: Vec<String>,
    /// The event a notification follows; pages from the escalation timer count as
    /// `escalation_triggered`.
    pub event_types: Vec<EventType>,
    pub incident_ids: Vec<IncidentId>,
    /// Text the title must contain (without case).
    pub title_contains: Option<String>,
}

/// The facts a matcher looks at.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub incident_id: IncidentId,
    pub priority: Option<Priority>,
    pub category: Option<&'a str>,
    pub title: &'a str,
    pub event_type: Option<EventType>,
}

impl Matcher {
    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        let priority = self.priorities.is_empty()
            || subject
                .priority
                .is_some_and(|p| self.priorities.contains(&p));
        let category = self.categories.is_empty()
            || subject
                .category
                .is_some_and(|c| self.categories.iter().any(|m| m.eq_ignore_ascii_case(c)));
        let event_type = self.event_types.is_empty()
            || subject
                .event_type
                .is_some_and(|t| self.event_types.contains(&t));
        let incident =
            self.incident_ids.is_empty() || self.incident_ids.contains(&subject.incident_id);
        let title = self
            .title_contains
            .as_ref()
            .is_none_or(|text| subject.title.to_lowercase().contains(&text.to_lowercase()));
        priority && category && event_type && incident && title
    }

    /// One line for people: "priority high, incident 42" or "everything".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let list = |items: Vec<String>| items.join("|");
        if !self.incident_ids.is_empty() {
            parts.push(format!(
                "incident {}",
                list(self.incident_ids.iter().map(|i| i.to_string()).collect())
            ));
        }
        if !self.priorities.is_empty() {
            parts.push(format!(
                "priority {}",
                list(self.priorities.iter().map(|p| p.to_string()).collect())
            ));
        }
        if !self.categories.is_empty() {
            parts.push(format!("category {}", list(self.categories.clone())));
        }
        if !self.event_types.is_empty() {
            parts.push(format!(
                "event {}",
                list(
                    self.event_types
                        .iter()
                        .map(|t| t.as_str().to_string())
                        .collect()
                )
            ));
        }
        if let Some(text) = &self.title_contains {
            parts.push(format!("title ~ {text:?}"));
        }
        if parts.is_empty() {
            "everything".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A window that comes back every `every_days` days at the same local times.
#[derive(Debug, Clone, PartialEq)]
pub struct Recurrence {
    pub zone: Tz,
    pub local_start: NaiveDateTime,
    pub local_end: NaiveDateTime,
    pub every_days: u32,
}

impl Recurrence {
    fn occurrence(&self, k: u64) -> Option<(Timestamp, Timestamp)> {
        let days = Days::new(k.checked_mul(u64::from(self.every_days.max(1)))?);
        let start = self.local_start.checked_add_days(days)?;
        let end = self.local_end.checked_add_days(days)?;
        Some((
            local_to_instant(self.zone, start),
            local_to_instant(self.zone, end),
        ))
    }

    /// The occurrence covering `at`, or else the next one.
    fn around(&self, at: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let (first, _) = self.occurrence(0)?;
        if at < first {
            return self.occurrence(0);
        }
        let period = i64::from(self.every_days.max(1)) * 86_400;
        let estimate = ((at - first).num_seconds() / period).max(0) as u64;
        for k in estimate.saturating_sub(1)..estimate + 3 {
            let (start, end) = self.occurrence(k)?;
            if at < end {
                return Some((start, end));
            }
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceOrigin {
    /// A planned window from the configuration.
    Config,
    /// Set by an operator (console key, command).
    Operator,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    pub id: String,
    pub matcher: Matcher,
    pub reason: String,
    pub created_by: String,
    pub origin: SilenceOrigin,
    /// The first (or only) window.
    pub start: Timestamp,
    pub end: Timestamp,
    #[serde(skip)]
    pub recurrence: Option<Recurrence>,
}

impl Silence {
    /// The window covering `at`, or else the next one; `None` once none is left.
    pub fn window(&self, at: Timestamp) -> Option<(Timestamp, Timestamp)> {
        match &self.recurrence {
            Some(recurrence) => recurrence.around(at),
            None => (at < self.end).then_some((self.start, self.end)),
        }
    }

    pub fn active(&self, at: Timestamp) -> bool {
        self.window(at)
            .is_some_and(|(start, end)| start <= at && at < end)
    }

    fn finished(&self, at: Timestamp) -> bool {
        self.window(at).is_none()
    }
}

/// A silence as renderers and `--no-tui` lines show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SilenceView {
    pub id: String,
    pub matcher: Matcher,
    /// The matcher in words.
    pub matches: String,
    pub reason: String,
    pub created_by: String,
    pub origin: SilenceOrigin,
    pub active: bool,
    /// The current window, or else the next one.
    pub start: Timestamp,
    pub end: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("a silence must end after it starts")]
    EndsBeforeStart,
    #[error("{0} silences are set already; end some first")]
    Full(usize),
    #[error("no silence {0}")]
    Unknown(String),
}

/// Every silence the engine knows, bounded: operators' silences beyond `capacity` are refused
/// (planned windows from the configuration are always kept).
#[derive(Debug, Clone)]
pub struct SilenceBook {
    silences: Vec<Silence>,
    capacity: usize,
    next_id: u64,
}

impl Default for SilenceBook {
    fn default() -> Self {
        Self::new(Vec::new(), 1000)
    }
}

impl SilenceBook {
    pub fn new(planned: Vec<Silence>, capacity: usize) -> Self {
        Self {
            silences: planned,
            capacity,
            next_id: 1,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Silence> {
        self.silences.iter()
    }

    /// Adds an operator's silence and returns its id.
    pub fn add(
        &mut self,
        matcher: Matcher,
        start: Timestamp,
        end: Timestamp,
        reason: String,
        by: String,
    ) -> Result<Silence, SilenceError> {
        if end <= start {
            return Err(SilenceError::EndsBeforeStart);
        }
        let operators = self
            .silences
            .iter()
            .filter(|s| s.origin == SilenceOrigin::Operator)
            .count();
        if operators >= self.capacity {
            return Err(SilenceError::Full(self.capacity));
        }
        let id = loop {
            let id = format!("s{}", self.next_id);
            self.next_id += 1;
            if self.silences.iter().all(|s| s.id != id) {
                break id;
            }
        };
        let silence = Silence {
            id,
            matcher,
            reason,
            created_by: by,
            origin: SilenceOrigin::Operator,
            start,
            end,
            recurrence: None,
        };
        self.silences.push(silence.clone());
        Ok(silence)
    }

    /// Puts back a silence remembered from before a restart (same id).
    pub fn restore(&mut self, silence: Silence) {
        self.silences.retain(|s| s.id != silence.id);
        if let Some(number) = silence
            .id
            .strip_prefix('s')
            .and_then(|n| n.parse::<u64>().ok())
        {
            self.next_id = self.next_id.max(number + 1);
        }
        self.silences.push(silence);
    }

    /// Ends a silence now: it is removed (a planned recurring window too, until restart).
    pub fn end(&mut self, id: &str) -> Result<Silence, SilenceError> {
        let index = self
            .silences
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| SilenceError::Unknown(id.to_string()))?;
        Ok(self.silences.remove(index))
    }

    /// The active silence covering `subject` at `at`, if any (the one ending last).
    pub fn covering(&self, subject: &Subject<'_>, at: Timestamp) -> Option<&Silence> {
        self.silences
            .iter()
            .filter(|s| s.active(at) && s.matcher.matches(subject))
            .max_by_key(|s| s.window(at).map(|(_, end)| end))
    }

    /// Forgets silences with no window left; returns them.
    pub fn prune(&mut self, at: Timestamp) -> Vec<Silence> {
        let (gone, kept) = std::mem::take(&mut self.silences)
            .into_iter()
            .partition(|s| s.finished(at));
        self.silences = kept;
        gone
    }

    pub fn views(&self, at: Timestamp) -> Vec<SilenceView> {
        self.silences
            .iter()
            .filter_map(|s| {
                let (start, end) = s.window(at)?;
                Some(SilenceView {
                    id: s.id.clone(),
                    matcher: s.matcher.clone(),
                    matches: s.matcher.describe(),
                    reason: s.reason.clone(),
                    created_by: s.created_by.clone(),
                    origin: s.origin,
                    active: s.active(at),
                    start,
                    end,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn subject(id: IncidentId, priority: Priority, title: &str) -> Subject<'_> {
        Subject {
            incident_id: id,
            priority: Some(priority),
            category: Some("Database"),
            title,
            event_type: Some(EventType::IncidentCreated),
        }
    }

    #[test]
    fn matchers_need_every_condition_given() {
        let matcher = Matcher {
            priorities: vec![Priority::High, Priority::Critical],
            categories: vec!["database".into()],
            title_contains: Some("FAILOVER".into()),
            ..Matcher::default()
        };
        assert!(matcher.matches(&subject(1, Priority::High, "planned failover of db-1")));
        assert!(!matcher.matches(&subject(1, Priority::Low, "planned failover of db-1")));
        assert!(!matcher.matches(&subject(1, Priority::High, "disk full")));
        assert!(Matcher::default().matches(&subject(9, Priority::Low, "anything")));
        let by_id = Matcher {
            incident_ids: vec![7],
            ..Matcher::default()
        };
        assert!(by_id.matches(&subject(7, Priority::Low, "x")));
        assert!(!by_id.matches(&subject(8, Priority::Low, "x")));
        assert_eq!(
            matcher.describe(),
            "priority high|critical, category database, title ~ \"FAILOVER\""
        );
    }

    #[test]
    fn a_window_is_active_from_its_start_until_its_end() {
        let mut book = SilenceBook::default();
        let start = utc("2026-12-01T02:00:00Z");
        let end = utc("2026-12-01T03:00:00Z");
        let silence = book
            .add(
                Matcher::default(),
                start,
                end,
                "failover".into(),
                "alice".into(),
            )
            .unwrap();
        assert_eq!(silence.id, "s1");
        let any = subject(1, Priority::High, "x");
        assert!(book.covering(&any, utc("2026-12-01T01:59:59Z")).is_none());
        assert!(book.covering(&any, start).is_some());
        assert!(book.covering(&any, end).is_none());
        assert!(book.prune(utc("2026-12-01T02:30:00Z")).is_empty());
        assert_eq!(book.prune(end).len(), 1);
        assert_eq!(
            book.add(Matcher::default(), end, start, String::new(), String::new()),
            Err(SilenceError::EndsBeforeStart)
        );
    }

    #[test]
    fn recurring_windows_follow_local_time() {
        // Every Sunday 02:00-04:00 in New York; DST ends on Sunday 2026-11-01.
        let recurrence = Recurrence {
            zone: chrono_tz::America::New_York,
            local_start: NaiveDateTime::parse_from_str("2026-10-25T02:00", "%Y-%m-%dT%H:%M")
                .unwrap(),
            local_end: NaiveDateTime::parse_from_str("2026-10-25T04:00", "%Y-%m-%dT%H:%M").unwrap(),
            every_days: 7,
        };
        let silence = Silence {
            id: "weekly".into(),
            matcher: Matcher::default(),
            reason: "patching".into(),
            created_by: "config".into(),
            origin: SilenceOrigin::Config,
            start: utc("2026-10-25T06:00:00Z"),
            end: utc("2026-10-25T08:00:00Z"),
            recurrence: Some(recurrence),
        };
        // EDT (UTC-4) on 25 Oct, EST (UTC-5) from 1 Nov: 02:00 local is 07:00 UTC then.
        assert!(silence.active(utc("2026-10-25T06:00:00Z")));
        assert!(!silence.active(utc("2026-10-25T08:00:00Z")));
        assert!(!silence.active(utc("2026-11-01T06:30:00Z")));
        assert!(silence.active(utc("2026-11-01T07:00:00Z")));
        assert!(silence.active(utc("2026-11-08T08:59:00Z")));
        assert!(!silence.active(utc("2026-11-08T09:00:00Z")));
        assert_eq!(
            silence.window(utc("2026-11-02T00:00:00Z")),
            Some((utc("2026-11-08T07:00:00Z"), utc("2026-11-08T09:00:00Z")))
        );
    }
}
