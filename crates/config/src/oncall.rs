//! The `oncall` section of the configuration (people, schedules, which escalation level pages
//! which schedule, planned maintenance windows) and the `oncall` command. The section is read
//! as text and checked here; `build` turns it into the core's pure types, or into an error
//! that names the text to point at, so the config loader can give a file:line.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use incident_core::event::Timestamp;
use incident_core::oncall::{self, Layer, OnCall, Override, Person, RotationLength, Schedule};
use incident_core::silence::{Matcher, Recurrence, Silence, SilenceOrigin};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnCallConfig {
    /// Everyone a schedule may name, with their contact methods, given once.
    pub people: BTreeMap<String, PersonConfig>,
    pub schedules: Vec<ScheduleConfig>,
    /// Escalation level to the schedule it pages.
    pub levels: BTreeMap<u32, String>,
    /// Planned maintenance windows.
    pub maintenance: Vec<WindowConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersonConfig {
    pub email: Option<String>,
    /// E.164, e.g. "+15551230001".
    pub sms: Option<String>,
    /// A Slack handle or member id, for templates (`{on_call_slack}`).
    pub slack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub name: String,
    /// IANA name, e.g. "Europe/Berlin".
    #[serde(default = "utc")]
    pub time_zone: String,
    pub layers: Vec<LayerConfig>,
    #[serde(default)]
    pub overrides: Vec<OverrideConfig>,
}

fn utc() -> String {
    "UTC".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthConfig {
    Daily,
    Weekly,
    Days(u32),
    Hours(u32),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerConfig {
    #[serde(default)]
    pub name: String,
    pub people: Vec<String>,
    /// The first handoff, local time in the schedule's zone: "2026-11-02T09:00".
    pub start: String,
    #[serde(default)]
    pub end: Option<String>,
    pub length: LengthConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    pub person: String,
    /// Local time in the schedule's zone, or RFC 3339 with an offset.
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub reason: String,
    /// Local time in `time_zone`, or RFC 3339 with an offset.
    pub start: String,
    pub end: String,
    #[serde(default = "utc")]
    pub time_zone: String,
    /// The window comes back every this many days (7: weekly), at the same local times.
    #[serde(default)]
    pub every_days: Option<u32>,
    /// What it covers; empty covers everything.
    #[serde(default)]
    pub matcher: Matcher,
}

/// What an operator asks of the on-call workflow; the runtime turns it into an engine input
/// at the time it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OncallCommand {
    /// Silence one incident from now for `minutes`.
    Snooze {
        incident_id: incident_core::event::IncidentId,
        minutes: u32,
        reason: String,
        by: String,
    },
    EndSilence {
        id: String,
        by: String,
    },
    Unacknowledge {
        incident_id: incident_core::event::IncidentId,
        by: String,
    },
}

impl OncallCommand {
    pub fn into_input(self, now: Timestamp) -> incident_core::engine::Input {
        use incident_core::engine::Input;
        match self {
            Self::Snooze {
                incident_id,
                minutes,
                reason,
                by,
            } => Input::Silence {
                matcher: Matcher {
                    incident_ids: vec![incident_id],
                    ..Matcher::default()
                },
                start: now,
                end: now + chrono::TimeDelta::minutes(i64::from(minutes)),
                reason,
                by,
            },
            Self::EndSilence { id, by } => Input::EndSilence { id, by },
            Self::Unacknowledge { incident_id, by } => Input::Unacknowledge { incident_id, by },
        }
    }
}

/// A mistake in the section: the field, the text in the file to point at, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCallError {
    pub field: String,
    /// Quoted text from the file (a name, a time) whose line is the place of the error.
    pub needle: String,
    /// Text to find first (the schedule's name), so the needle is found in the right place.
    pub within: Option<String>,
    pub message: String,
}

fn error(field: &str, needle: &str, within: Option<&str>, message: String) -> OnCallError {
    OnCallError {
        field: format!("oncall.{field}"),
        needle: format!("\"{needle}\""),
        within: within.map(|w| format!("\"{w}\"")),
        message,
    }
}

fn zone(name: &str, field: &str, within: Option<&str>) -> Result<Tz, OnCallError> {
    name.parse::<Tz>().map_err(|_| {
        error(
            field,
            name,
            within,
            format!(
                "unknown time zone `{name}` (an IANA name such as \"Europe/Berlin\" or \"UTC\")"
            ),
        )
    })
}

/// A local time ("2026-11-02T09:00", seconds optional) or an RFC 3339 instant.
fn parse_local(text: &str, zone: Tz) -> Option<NaiveDateTime> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&zone).naive_local());
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .ok()
}

fn parse_instant(text: &str, zone: Tz) -> Option<Timestamp> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&Utc));
    }
    parse_local(text, zone).map(|local| oncall::local_to_instant(zone, local))
}

fn time_error(field: &str, text: &str, within: Option<&str>) -> OnCallError {
    error(
        field,
        text,
        within,
        format!("`{text}` is not a time: write \"2026-11-02T09:00\" (local) or RFC 3339"),
    )
}

impl OnCallConfig {
    /// The section as the core's types, checked: every person named is defined, time zones
    /// and times read, overrides of one schedule do not overlap, windows end after they start.
    pub fn build(&self, ack_timeout: Option<std::time::Duration>) -> Result<OnCall, OnCallError> {
        let mut people = BTreeMap::new();
        for (name, person) in &self.people {
            if let Some(number) = &person.sms
                && !incident_notify::config::is_phone_number(number)
            {
                return Err(error(
                    "people.sms",
                    number,
                    Some(name),
                    format!("`{number}` is not an E.164 number (+ and 8 to 15 digits)"),
                ));
            }
            if let Some(address) = &person.email
                && !incident_notify::config::is_email_address(address)
            {
                return Err(error(
                    "people.email",
                    address,
                    Some(name),
                    format!("`{address}` is not an email address"),
                ));
            }
            people.insert(
                name.clone(),
                Person {
                    email: person.email.clone(),
                    sms: person.sms.clone(),
                    slack: person.slack.clone(),
                },
            );
        }
        let known = |name: &str, field: &str, within: &str| {
            if people.contains_key(name) {
                Ok(())
            } else {
                Err(error(
                    field,
                    name,
                    Some(within),
                    format!("unknown person `{name}`: add them to oncall.people"),
                ))
            }
        };
        let mut schedules: Vec<Schedule> = Vec::new();
        for schedule in &self.schedules {
            let name = schedule.name.as_str();
            if schedules.iter().any(|s| s.name == name) {
                return Err(error(
                    "schedules.name",
                    name,
                    None,
                    format!("schedule `{name}` is defined twice"),
                ));
            }
            let tz = zone(&schedule.time_zone, "schedules.time_zone", Some(name))?;
            let mut layers = Vec::new();
            for layer in &schedule.layers {
                if layer.people.is_empty() {
                    return Err(error(
                        "schedules.layers.people",
                        name,
                        None,
                        format!("a layer of schedule `{name}` names nobody"),
                    ));
                }
                for person in &layer.people {
                    known(person, "schedules.layers.people", name)?;
                }
                let start = parse_local(&layer.start, tz).ok_or_else(|| {
                    time_error("schedules.layers.start", &layer.start, Some(name))
                })?;
                let end = match &layer.end {
                    Some(text) => Some(
                        parse_local(text, tz)
                            .ok_or_else(|| time_error("schedules.layers.end", text, Some(name)))?,
                    ),
                    None => None,
                };
                if let (Some(end), Some(text)) = (end, &layer.end)
                    && end <= start
                {
                    return Err(error(
                        "schedules.layers.end",
                        text,
                        Some(name),
                        "the layer ends before it starts".into(),
                    ));
                }
                let length = match layer.length {
                    LengthConfig::Daily => RotationLength::Days(1),
                    LengthConfig::Weekly => RotationLength::Days(7),
                    LengthConfig::Days(0) | LengthConfig::Hours(0) => {
                        return Err(error(
                            "schedules.layers.length",
                            name,
                            None,
                            "a shift must be at least one day or one hour long".into(),
                        ));
                    }
                    LengthConfig::Days(days) => RotationLength::Days(days),
                    LengthConfig::Hours(hours) => RotationLength::Hours(hours),
                };
                layers.push(Layer {
                    name: layer.name.clone(),
                    people: layer.people.clone(),
                    start,
                    end,
                    length,
                });
            }
            let mut overrides: Vec<(Override, &OverrideConfig)> = Vec::new();
            for cover in &schedule.overrides {
                known(&cover.person, "schedules.overrides.person", name)?;
                let start = parse_instant(&cover.start, tz).ok_or_else(|| {
                    time_error("schedules.overrides.start", &cover.start, Some(name))
                })?;
                let end = parse_instant(&cover.end, tz)
                    .ok_or_else(|| time_error("schedules.overrides.end", &cover.end, Some(name)))?;
                if end <= start {
                    return Err(error(
                        "schedules.overrides.end",
                        &cover.end,
                        Some(name),
                        "the override ends before it starts".into(),
                    ));
                }
                if let Some((_, other)) = overrides
                    .iter()
                    .find(|(o, _)| o.start < end && start < o.end)
                {
                    return Err(error(
                        "schedules.overrides.start",
                        &cover.start,
                        Some(name),
                        format!(
                            "this override ({} from {}) overlaps another ({} from {} to {})",
                            cover.person, cover.start, other.person, other.start, other.end
                        ),
                    ));
                }
                overrides.push((
                    Override {
                        person: cover.person.clone(),
                        start,
                        end,
                    },
                    cover,
                ));
            }
            schedules.push(Schedule {
                name: name.to_string(),
                time_zone: tz,
                layers,
                overrides: overrides.into_iter().map(|(o, _)| o).collect(),
            });
        }
        for (level, name) in &self.levels {
            if *level == 0 {
                return Err(error("levels", name, None, "levels start at 1".into()));
            }
            if !schedules.iter().any(|s| &s.name == name) {
                return Err(error(
                    "levels",
                    name,
                    None,
                    format!("level {level} pages `{name}`, which is not a schedule"),
                ));
            }
        }
        Ok(OnCall {
            people,
            schedules,
            levels: self.levels.clone(),
            ack_timeout,
        })
    }

    /// The planned maintenance windows as silences (checked by `windows_checked`).
    pub fn windows(&self) -> Result<Vec<Silence>, OnCallError> {
        let mut silences = Vec::new();
        for (index, window) in self.maintenance.iter().enumerate() {
            let tz = zone(&window.time_zone, "maintenance.time_zone", None)?;
            let start_local = parse_local(&window.start, tz)
                .ok_or_else(|| time_error("maintenance.start", &window.start, None))?;
            let end_local = parse_local(&window.end, tz)
                .ok_or_else(|| time_error("maintenance.end", &window.end, None))?;
            let start = oncall::local_to_instant(tz, start_local);
            let end = oncall::local_to_instant(tz, end_local);
            if end <= start {
                return Err(error(
                    "maintenance.end",
                    &window.end,
                    None,
                    format!(
                        "the window ends before it starts ({} to {})",
                        window.start, window.end
                    ),
                ));
            }
            let recurrence = match window.every_days {
                Some(0) => {
                    return Err(error(
                        "maintenance.every_days",
                        &window.reason,
                        None,
                        "every_days must be 1 or more (or None)".into(),
                    ));
                }
                Some(days) if (end - start).num_seconds() > i64::from(days) * 86_400 => {
                    return Err(error(
                        "maintenance.every_days",
                        &window.reason,
                        None,
                        "a recurring window must be shorter than its period".into(),
                    ));
                }
                Some(days) => Some(Recurrence {
                    zone: tz,
                    local_start: start_local,
                    local_end: end_local,
                    every_days: days,
                }),
                None => None,
            };
            silences.push(Silence {
                id: format!("planned-{}", index + 1),
                matcher: window.matcher.clone(),
                reason: window.reason.clone(),
                created_by: "config".into(),
                origin: SilenceOrigin::Config,
                start,
                end,
                recurrence,
            });
        }
        Ok(silences)
    }
}

/// The 1-based line of `needle`, searched from the `oncall:` section and after `within`.
pub fn line_of(text: &str, within: Option<&str>, needle: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let code = |line: &str| line.split("//").next().unwrap_or("").to_string();
    let find_from = |from: usize, what: &str| {
        (from..lines.len()).find(|&index| code(lines[index]).contains(what))
    };
    let section = (0..lines.len())
        .find(|&index| code(lines[index]).trim_start().starts_with("oncall:"))
        .unwrap_or(0);
    let from = within
        .and_then(|within| find_from(section, within))
        .unwrap_or(section);
    find_from(from, needle)
        .or_else(|| find_from(section, needle))
        .map_or(section + 1, |index| index + 1)
}

/// `incident-console silences`: one line per silence, current and coming.
pub fn print_silences(
    silences: Vec<Silence>,
    at: Timestamp,
    json: bool,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let book = incident_core::silence::SilenceBook::new(silences, usize::MAX);
    let views = book.views(at);
    if views.is_empty() && !json {
        writeln!(out, "no silences")?;
    }
    for view in views {
        if json {
            let text = serde_json::to_string(&view).map_err(std::io::Error::other)?;
            writeln!(out, "{text}")?;
            continue;
        }
        let time = |t: Timestamp| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        writeln!(
            out,
            "{} {} from {} to {}: {}, by {}: {}",
            view.id,
            if view.active { "active" } else { "planned" },
            time(view.start),
            time(view.end),
            view.matches,
            view.created_by,
            view.reason,
        )?;
    }
    Ok(())
}

/// `incident-console oncall`: one line per schedule, for people or (`json`) for scripts.
pub fn print(
    oncall: &OnCall,
    at: Timestamp,
    json: bool,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    if oncall.schedules.is_empty() && !json {
        writeln!(
            out,
            "no schedules configured (oncall.schedules in the configuration)"
        )?;
    }
    for schedule in &oncall.schedules {
        let now = schedule.resolve(at);
        if json {
            // In this order: the contract `--json` documents.
            #[derive(Serialize)]
            struct Line<'a> {
                schedule: &'a str,
                on_call: Option<&'a str>,
                until: Option<String>,
                next: Option<&'a str>,
            }
            let line = Line {
                schedule: &now.schedule,
                on_call: now.on_call.as_deref(),
                until: now
                    .until
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                next: now.next.as_deref(),
            };
            let text = serde_json::to_string(&line).map_err(std::io::Error::other)?;
            writeln!(out, "{text}")?;
            continue;
        }
        let until = now
            .until
            .map(|t| {
                t.with_timezone(&schedule.time_zone)
                    .format("%a %Y-%m-%d %H:%M %Z")
                    .to_string()
            })
            .unwrap_or_else(|| "no change ahead".into());
        writeln!(
            out,
            "{}: {} until {until}, then {}",
            now.schedule,
            now.on_call.as_deref().unwrap_or("nobody"),
            now.next.as_deref().unwrap_or("nobody"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> OnCallConfig {
        ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
            .from_str(text)
            .unwrap()
    }

    #[test]
    fn a_weekly_rotation_with_an_override_builds() {
        let config = section(
            r#"(
                people: { "alice": (email: "alice@example.com"), "bob": (sms: "+15551230002") },
                schedules: [(
                    name: "primary",
                    time_zone: "Europe/Berlin",
                    layers: [(people: ["alice", "bob"], start: "2026-11-02T09:00", length: weekly)],
                    overrides: [(person: "bob", start: "2026-11-03T09:00", end: "2026-11-04T09:00")],
                )],
                levels: { 1: "primary" },
            )"#,
        );
        let oncall = config.build(None).unwrap();
        let schedule = oncall.schedule("primary").unwrap();
        // 3 Nov 09:00 CET is 08:00 UTC.
        let covered: Timestamp = "2026-11-03T08:00:00Z".parse().unwrap();
        assert_eq!(schedule.on_call_at(covered), Some("bob"));
        assert_eq!(
            schedule.on_call_at(covered - chrono::TimeDelta::seconds(1)),
            Some("alice")
        );
    }

    #[test]
    fn mistakes_name_the_text_to_point_at() {
        let base = |schedule: &str| {
            section(&format!(
                r#"(people: {{ "alice": (), "bob": () }}, schedules: [{schedule}])"#
            ))
        };
        let unknown = base(
            r#"(name: "p", layers: [(people: ["alice", "carol"], start: "2026-11-02T09:00", length: daily)])"#,
        )
        .build(None)
        .unwrap_err();
        assert_eq!(unknown.needle, "\"carol\"");
        assert!(unknown.message.contains("unknown person `carol`"));
        let zone = base(r#"(name: "p", time_zone: "Mars/Olympus", layers: [])"#)
            .build(None)
            .unwrap_err();
        assert!(zone.message.contains("unknown time zone `Mars/Olympus`"));
        let overlap = base(
            r#"(name: "p", layers: [], overrides: [
                (person: "bob", start: "2026-11-03T09:00", end: "2026-11-04T09:00"),
                (person: "alice", start: "2026-11-03T18:00", end: "2026-11-05T09:00"),
            ])"#,
        )
        .build(None)
        .unwrap_err();
        assert_eq!(overlap.needle, "\"2026-11-03T18:00\"");
        assert!(overlap.message.contains("overlaps"), "{}", overlap.message);
        let window = section(
            r#"(maintenance: [(reason: "failover", start: "2026-12-06T03:00", end: "2026-12-06T02:00")])"#,
        )
        .windows()
        .unwrap_err();
        assert_eq!(window.needle, "\"2026-12-06T02:00\"");
        assert!(window.message.contains("ends before it starts"));
    }

    #[test]
    fn lines_are_found_after_the_schedule_named() {
        let text = "(\n  oncall: (\n    schedules: [\n      (name: \"a\", people: [\"carol\"]),\n      (name: \"b\",\n        people: [\"carol\"]),\n";
        assert_eq!(line_of(text, Some("\"b\""), "\"carol\""), 6);
        assert_eq!(line_of(text, None, "\"carol\""), 4);
    }
}
