//! Who is on call: rotations with layers and overrides, resolved as a pure function of the
//! schedule and an instant. Local times (handoffs, overrides written without an offset) are
//! turned into instants by chrono-tz, so DST shifts are the time-zone database's business.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Days, NaiveDateTime, TimeDelta, TimeZone};
use chrono_tz::Tz;
use serde::Serialize;

use super::event::Timestamp;

/// How long one person's shift lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationLength {
    /// Calendar days in the schedule's zone: the handoff stays at the same wall-clock time
    /// across a DST change (the shift is then 23 or 25 hours long).
    Days(u32),
    /// Exact hours, whatever the wall clock says.
    Hours(u32),
}

/// One rotation: `people` take turns, the first from `start` (local time in the schedule's
/// zone), each for one `length`.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub name: String,
    pub people: Vec<String>,
    pub start: NaiveDateTime,
    /// The layer stops covering at this local time; `None` is for ever.
    pub end: Option<NaiveDateTime>,
    pub length: RotationLength,
}

/// "bob covers from … to …": wins over every layer while it lasts.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub person: String,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// A named schedule. Layers stack as PagerDuty's do: where several cover an instant, the
/// last one listed decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub time_zone: Tz,
    pub layers: Vec<Layer>,
    pub overrides: Vec<Override>,
}

/// A person's contact methods, given once for every schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Person {
    pub email: Option<String>,
    pub sms: Option<String>,
    pub slack: Option<String>,
}

/// Everything on-call the engine needs: people, schedules, which escalation level pages
/// which schedule, and the acknowledgement timeout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnCall {
    pub people: BTreeMap<String, Person>,
    pub schedules: Vec<Schedule>,
    /// Escalation level to schedule name; a level not listed pages its fixed recipients.
    pub levels: BTreeMap<u32, String>,
    /// An acknowledged escalation still open this long becomes unacknowledged again.
    pub ack_timeout: Option<Duration>,
}

/// One line of `incident-console oncall`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnCallNow {
    pub schedule: String,
    pub on_call: Option<String>,
    /// When `on_call` stops being on call (`None`: not within the horizon searched).
    pub until: Option<Timestamp>,
    pub next: Option<String>,
}

/// How far ahead `until` is looked for; a schedule without change for longer says "no end".
const HORIZON_DAYS: i64 = 400;
/// Boundaries examined at most while looking for a change of person (bounded work per call).
const MAX_BOUNDARIES: usize = 20_000;

/// A local time as an instant in `zone`: the earlier of two in the hour repeated in autumn,
/// the first valid time after it for one skipped in spring.
pub fn local_to_instant(zone: Tz, local: NaiveDateTime) -> Timestamp {
    let mut candidate = local;
    for _ in 0..16 {
        if let Some(instant) = zone.from_local_datetime(&candidate).earliest() {
            return instant.with_timezone(&chrono::Utc);
        }
        candidate += TimeDelta::minutes(15);
    }
    // No zone skips four hours; fall back to reading it as UTC rather than failing.
    chrono::Utc.from_utc_datetime(&local)
}

impl Layer {
    /// The instant of the `k`-th handoff (0 is `start`).
    fn handoff(&self, zone: Tz, k: i64) -> Timestamp {
        match self.length {
            RotationLength::Days(days) => {
                let offset = k.saturating_mul(i64::from(days.max(1)));
                let local = if offset >= 0 {
                    self.start.checked_add_days(Days::new(offset as u64))
                } else {
                    self.start
                        .checked_sub_days(Days::new(offset.unsigned_abs()))
                };
                local_to_instant(zone, local.unwrap_or(self.start))
            }
            RotationLength::Hours(hours) => {
                let step = TimeDelta::hours(i64::from(hours.max(1)));
                local_to_instant(zone, self.start) + step * (k.clamp(-1_000_000, 1_000_000) as i32)
            }
        }
    }

    fn nominal_seconds(&self) -> i64 {
        match self.length {
            RotationLength::Days(days) => i64::from(days.max(1)) * 86_400,
            RotationLength::Hours(hours) => i64::from(hours.max(1)) * 3_600,
        }
    }

    /// The shift covering `at`: its index, or `None` before the start or after the end.
    fn shift(&self, zone: Tz, at: Timestamp) -> Option<i64> {
        if self.people.is_empty() {
            return None;
        }
        if at < self.handoff(zone, 0) {
            return None;
        }
        if let Some(end) = self.end
            && at >= local_to_instant(zone, end)
        {
            return None;
        }
        // An estimate from the nominal length, corrected by the true handoffs (DST).
        let elapsed = (at - self.handoff(zone, 0)).num_seconds();
        let mut k = elapsed / self.nominal_seconds();
        while k > 0 && self.handoff(zone, k) > at {
            k -= 1;
        }
        while self.handoff(zone, k + 1) <= at {
            k += 1;
        }
        Some(k)
    }

    fn person_at(&self, zone: Tz, at: Timestamp) -> Option<&str> {
        let k = self.shift(zone, at)?;
        let index = k.rem_euclid(self.people.len() as i64) as usize;
        Some(self.people[index].as_str())
    }

    /// The first instant after `at` where this layer may change hands (or start, or end).
    fn next_boundary(&self, zone: Tz, at: Timestamp) -> Option<Timestamp> {
        let start = self.handoff(zone, 0);
        let end = self.end.map(|end| local_to_instant(zone, end));
        if at < start {
            return Some(start);
        }
        if end.is_some_and(|end| at >= end) {
            return None;
        }
        let k = self.shift(zone, at)?;
        let next = self.handoff(zone, k + 1);
        Some(match end {
            Some(end) if end < next => end,
            _ => next,
        })
    }
}

impl Schedule {
    /// Who is on call at `at`: an override, else the last layer covering it.
    pub fn on_call_at(&self, at: Timestamp) -> Option<&str> {
        if let Some(cover) = self.overrides.iter().find(|o| o.start <= at && at < o.end) {
            return Some(cover.person.as_str());
        }
        self.layers
            .iter()
            .rev()
            .find_map(|layer| layer.person_at(self.time_zone, at))
    }

    fn next_boundary(&self, at: Timestamp) -> Option<Timestamp> {
        let overrides = self
            .overrides
            .iter()
            .flat_map(|o| [o.start, o.end])
            .filter(|t| *t > at);
        let layers = self
            .layers
            .iter()
            .filter_map(|layer| layer.next_boundary(self.time_zone, at));
        overrides.chain(layers).min()
    }

    /// Who is on call at `at`, until when, and who takes over then.
    pub fn resolve(&self, at: Timestamp) -> OnCallNow {
        let current = self.on_call_at(at);
        let horizon = at + TimeDelta::days(HORIZON_DAYS);
        let mut cursor = at;
        let mut change = None;
        for _ in 0..MAX_BOUNDARIES {
            let Some(boundary) = self.next_boundary(cursor) else {
                break;
            };
            if boundary > horizon {
                break;
            }
            if self.on_call_at(boundary) != current {
                change = Some(boundary);
                break;
            }
            cursor = boundary;
        }
        OnCallNow {
            schedule: self.name.clone(),
            on_call: current.map(str::to_string),
            until: change,
            next: change.and_then(|t| self.on_call_at(t).map(str::to_string)),
        }
    }
}

impl OnCall {
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|s| s.name == name)
    }

    /// The schedule escalation `level` pages and who is on it at `at`, if the level pages a
    /// schedule. The person is `None` when the schedule has a gap then.
    pub fn for_level(&self, level: u32, at: Timestamp) -> Option<(&Schedule, Option<&str>)> {
        let name = self.levels.get(&level)?;
        let schedule = self.schedule(name)?;
        Some((schedule, schedule.on_call_at(at)))
    }

    pub fn person(&self, name: &str) -> Option<&Person> {
        self.people.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").unwrap()
    }

    fn utc(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn weekly(zone: Tz, people: &[&str], start: &str) -> Schedule {
        Schedule {
            name: "primary".into(),
            time_zone: zone,
            layers: vec![Layer {
                name: "weekly".into(),
                people: people.iter().map(|p| p.to_string()).collect(),
                start: local(start),
                end: None,
                length: RotationLength::Days(7),
            }],
            overrides: Vec::new(),
        }
    }

    #[test]
    fn a_weekly_rotation_hands_off_at_the_local_time() {
        // Monday 2026-11-02 09:00 in Berlin (CET, UTC+1) is 08:00 UTC.
        let schedule = weekly(
            chrono_tz::Europe::Berlin,
            &["alice", "bob"],
            "2026-11-02T09:00",
        );
        assert_eq!(schedule.on_call_at(utc("2026-11-02T07:59:59Z")), None);
        assert_eq!(
            schedule.on_call_at(utc("2026-11-02T08:00:00Z")),
            Some("alice")
        );
        assert_eq!(
            schedule.on_call_at(utc("2026-11-09T07:59:59Z")),
            Some("alice")
        );
        assert_eq!(
            schedule.on_call_at(utc("2026-11-09T08:00:00Z")),
            Some("bob")
        );
        assert_eq!(
            schedule.on_call_at(utc("2026-11-16T08:00:00Z")),
            Some("alice")
        );
        let now = schedule.resolve(utc("2026-11-04T12:00:00Z"));
        assert_eq!(now.on_call.as_deref(), Some("alice"));
        assert_eq!(now.until, Some(utc("2026-11-09T08:00:00Z")));
        assert_eq!(now.next.as_deref(), Some("bob"));
    }

    #[test]
    fn handoffs_keep_the_wall_clock_across_dst_changes() {
        // Europe/Berlin leaves summer time on 2026-10-25 (03:00 CEST -> 02:00 CET) and
        // enters it on 2027-03-28 (02:00 CET -> 03:00 CEST).
        let zone = chrono_tz::Europe::Berlin;
        let daily = Schedule {
            layers: vec![Layer {
                length: RotationLength::Days(1),
                ..weekly(zone, &["alice", "bob"], "2026-10-24T09:00").layers[0].clone()
            }],
            ..weekly(zone, &[], "2026-10-24T09:00")
        };
        // 24 Oct 09:00 CEST = 07:00 UTC; 25 Oct 09:00 CET = 08:00 UTC: a 25-hour shift.
        assert_eq!(daily.on_call_at(utc("2026-10-24T07:00:00Z")), Some("alice"));
        assert_eq!(daily.on_call_at(utc("2026-10-25T07:59:59Z")), Some("alice"));
        assert_eq!(daily.on_call_at(utc("2026-10-25T08:00:00Z")), Some("bob"));
        let before = daily.resolve(utc("2026-10-24T20:00:00Z"));
        assert_eq!(before.until, Some(utc("2026-10-25T08:00:00Z")));
        // Spring: 27 Mar 09:00 CET = 08:00 UTC, 28 Mar 09:00 CEST = 07:00 UTC (23 hours).
        let spring = daily.resolve(utc("2027-03-27T12:00:00Z"));
        assert_eq!(spring.until, Some(utc("2027-03-28T07:00:00Z")));
        // A handoff inside the skipped hour moves to the first valid time after it.
        let zone_gap = weekly(zone, &["alice", "bob"], "2027-03-21T02:30");
        let gap = zone_gap.resolve(utc("2027-03-22T12:00:00Z"));
        // 28 Mar 02:30 does not exist in Berlin; 03:00 CEST is 01:00 UTC.
        assert_eq!(gap.until, Some(utc("2027-03-28T01:00:00Z")));
        assert_eq!(gap.next.as_deref(), Some("bob"));
    }

    #[test]
    fn an_override_wins_and_ends_where_it_says() {
        let mut schedule = weekly(chrono_tz::UTC, &["alice", "bob"], "2026-11-02T09:00");
        schedule.overrides.push(Override {
            person: "carol".into(),
            start: utc("2026-11-03T12:00:00Z"),
            end: utc("2026-11-04T12:00:00Z"),
        });
        assert_eq!(
            schedule.on_call_at(utc("2026-11-03T11:59:59Z")),
            Some("alice")
        );
        let covered = schedule.resolve(utc("2026-11-03T12:00:00Z"));
        assert_eq!(covered.on_call.as_deref(), Some("carol"));
        assert_eq!(covered.until, Some(utc("2026-11-04T12:00:00Z")));
        assert_eq!(covered.next.as_deref(), Some("alice"));
        let before = schedule.resolve(utc("2026-11-02T10:00:00Z"));
        assert_eq!(before.until, Some(utc("2026-11-03T12:00:00Z")));
        assert_eq!(before.next.as_deref(), Some("carol"));
    }

    #[test]
    fn later_layers_cover_the_time_they_are_active() {
        let mut schedule = weekly(chrono_tz::UTC, &["alice", "bob"], "2026-11-02T09:00");
        schedule.layers.push(Layer {
            name: "holidays".into(),
            people: vec!["dave".into()],
            start: local("2026-12-24T00:00"),
            end: Some(local("2026-12-27T00:00")),
            length: RotationLength::Hours(24),
        });
        assert_eq!(
            schedule.on_call_at(utc("2026-12-23T23:00:00Z")),
            Some("bob")
        );
        assert_eq!(
            schedule.on_call_at(utc("2026-12-25T10:00:00Z")),
            Some("dave")
        );
        let holiday = schedule.resolve(utc("2026-12-25T10:00:00Z"));
        // dave's consecutive shifts are one stretch; the next change is the layer's end.
        assert_eq!(holiday.until, Some(utc("2026-12-27T00:00:00Z")));
        assert_eq!(holiday.next.as_deref(), Some("bob"));
    }

    #[test]
    fn a_single_person_rotation_has_no_end_within_the_horizon() {
        let schedule = weekly(chrono_tz::UTC, &["alice"], "2026-11-02T09:00");
        let now = schedule.resolve(utc("2026-11-05T00:00:00Z"));
        assert_eq!(now.on_call.as_deref(), Some("alice"));
        assert_eq!(now.until, None);
        assert_eq!(now.next, None);
    }
}
