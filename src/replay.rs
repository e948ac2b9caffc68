//! `replay FILE`: a recorded history through the same engine, on a virtual clock.
//!
//! The file holds one JSON object per line: either an event as the producer sends it, or this
//! tool's own headless output (`{"kind":"event", ..., "data": {...}}`, effect and dead-letter
//! records). The clock is the history's: an event happens at its `received_at` (headless lines)
//! or at the time the producer gave it (`created_at`, `updated_at` ...), and between two events
//! the engine is ticked at each escalation deadline that falls between them, so timeouts fire
//! exactly when the policy says, however long ago it was. Acknowledgements recorded in a
//! headless file (`"change": "acknowledged"`) are made again at the same moment after the
//! escalation opened, by the same person: a different policy is tried against the same people.
//!
//! `Replayer` is the deterministic part (no I/O, no clock); `run` reads the file, prints the
//! records and the summary, and sends the notifications unless `--dry-run`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::core::engine::{
    Audience, Effect, Engine, Input, Notification, NotificationKind, SourceRef,
};
use crate::core::escalation::EscalationChange;
use crate::core::event::{self, IncidentEvent, IncidentId, Timestamp};
use crate::notify::Notifier;
use crate::notify::routing::Router;
use crate::notify::template::TemplateSet;

/// Time-to-acknowledge and time-to-resolve samples kept for percentiles; beyond, they are
/// counted but not kept (a memory bound for very long histories).
const MAX_SAMPLES: usize = 1_000_000;

/// Distinct incident ids remembered for the count; beyond, `incidents` is a lower bound.
const MAX_INCIDENTS: usize = 1_000_000;

/// Ticks between two events at most: a policy cannot make a replay spin forever.
const MAX_TICKS_PER_STEP: usize = 100_000;

/// What one line of the file is.
#[derive(Debug)]
pub enum Line {
    Event {
        event: IncidentEvent,
        at: Timestamp,
        source: SourceRef,
        raw: Arc<str>,
    },
    /// An operator acknowledged this long after the escalation opened.
    Acknowledged {
        incident_id: IncidentId,
        by: String,
        after_secs: f64,
    },
    /// A dead-letter record of a headless file.
    DeadLetter,
    /// Something the replay computes again (effects) or that carries no input (a summary).
    Skip,
}

/// Reads one line. `origin` names the file for sources of producer-format lines.
pub fn parse_line(text: &str, origin: &str, line: u64, max_bytes: usize) -> Result<Line, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|error| format!("not a JSON object: {error}"))?;
    let Some(object) = value.as_object() else {
        return Err("not a JSON object".into());
    };
    let Some(kind) = object.get("kind") else {
        // The producer's format: the event itself, at the time it says it happened.
        let event = event::decode(Some(text.as_bytes()), max_bytes)
            .map_err(|error| format!("{}: {error}", error.reason()))?;
        return Ok(Line::Event {
            at: event.occurred_at(),
            event,
            source: SourceRef {
                topic: format!("file:{origin}").into(),
                partition: 0,
                offset: line as i64,
            },
            raw: text.into(),
        });
    };
    match kind.as_str() {
        Some("event") => {
            let data = object
                .get("data")
                .ok_or("an event record without `data`")?
                .to_string();
            let event = event::decode(Some(data.as_bytes()), max_bytes)
                .map_err(|error| format!("`data`: {}: {error}", error.reason()))?;
            let at = object
                .get("received_at")
                .and_then(Value::as_str)
                .ok_or("an event record without `received_at`")?;
            let at = chrono::DateTime::parse_from_rfc3339(at)
                .map_err(|error| format!("`received_at` {at:?}: {error}"))?
                .with_timezone(&chrono::Utc);
            let source = SourceRef {
                topic: object
                    .get("topic")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("file:{origin}").into(), Arc::from),
                partition: object
                    .get("partition")
                    .and_then(Value::as_i64)
                    .and_then(|p| i32::try_from(p).ok())
                    .unwrap_or(0),
                offset: object
                    .get("offset")
                    .and_then(Value::as_i64)
                    .unwrap_or(line as i64),
            };
            Ok(Line::Event {
                event,
                at,
                source,
                raw: data.into(),
            })
        }
        Some("effect") => {
            let acknowledged = object.get("effect").and_then(Value::as_str) == Some("escalation")
                && object.get("change").and_then(Value::as_str) == Some("acknowledged");
            if !acknowledged {
                return Ok(Line::Skip);
            }
            let incident_id = object
                .get("incident_id")
                .and_then(Value::as_i64)
                .ok_or("an acknowledgement without `incident_id`")?;
            let by = object
                .get("by")
                .and_then(Value::as_str)
                .ok_or("an acknowledgement without `by`")?
                .to_string();
            let after_secs = object
                .get("time_to_acknowledge_secs")
                .and_then(Value::as_f64)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or("an acknowledgement without `time_to_acknowledge_secs`")?;
            Ok(Line::Acknowledged {
                incident_id,
                by,
                after_secs,
            })
        }
        Some("dead_letter") => Ok(Line::DeadLetter),
        Some("summary") => Ok(Line::Skip),
        Some(other) => Err(format!("unknown record kind `{other}`")),
        None => Err("`kind` is not a string".into()),
    }
}

/// One output line of a replay (the headless format, plus the virtual time `at`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Event {
        event_type: event::EventType,
        incident_id: IncidentId,
        topic: String,
        partition: i32,
        offset: i64,
        received_at: Timestamp,
        data: Box<IncidentEvent>,
    },
    Effect {
        at: Timestamp,
        topic: Option<String>,
        partition: Option<i32>,
        offset: Option<i64>,
        #[serde(flatten)]
        effect: Effect,
        /// For a notification: where it goes (channel and recipient) under this configuration.
        #[serde(skip_serializing_if = "Option::is_none")]
        would_send: Option<Vec<Target>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub channel: String,
    pub recipient: String,
}

/// p50 and max of a set of durations, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spread {
    pub count: u64,
    pub p50_secs: Option<f64>,
    pub max_secs: Option<f64>,
}

fn spread(samples: &mut [f64], count: u64) -> Spread {
    samples.sort_by(f64::total_cmp);
    Spread {
        count,
        p50_secs: (!samples.is_empty()).then(|| samples[(samples.len() - 1) / 2]),
        max_secs: samples.last().copied(),
    }
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

/// The final `{"kind":"summary", ...}` line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub file: String,
    pub dry_run: bool,
    pub lines: u64,
    pub events: u64,
    pub bad_lines: u64,
    pub dead_letters: u64,
    pub from: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Incidents seen (any event about them; counted up to a million).
    pub incidents: u64,
    /// Escalations opened.
    pub escalations: u64,
    /// Pages (escalation notifications, repeats included) per level.
    pub pages_per_level: BTreeMap<u32, u64>,
    /// Pages of schedule-driven levels per person on call when they fired (docs/oncall.md):
    /// under another schedule, who would have been woken.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pages_per_on_call: BTreeMap<String, u64>,
    /// Notifications silences held back (not sent).
    #[serde(skip_serializing_if = "is_zero")]
    pub held: u64,
    pub exhausted: u64,
    pub acknowledged: u64,
    pub time_to_acknowledge: Spread,
    pub time_to_resolve: Spread,
    pub notifications: BTreeMap<String, u64>,
    /// Dry run: deliveries the configuration routes to (before dedup and rate limit).
    /// Otherwise: deliveries the channels accepted.
    pub notifications_per_channel: BTreeMap<String, u64>,
    /// Not a dry run: deliveries that failed for good, per channel.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub failed_per_channel: BTreeMap<String, u64>,
}

/// The engine on a virtual clock, and the tallies for the summary. No I/O, no clock reads.
pub struct Replayer {
    engine: Engine,
    router: Router,
    now: Option<Timestamp>,
    incidents: BTreeSet<IncidentId>,
    ack_samples: Vec<f64>,
    resolve_samples: Vec<f64>,
    resolved: u64,
    pub summary: Summary,
}

impl Replayer {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let templates = TemplateSet::load(config.notifications.templates_dir.as_deref())
            .map_err(|error| anyhow::anyhow!("notification template: {error}"))?;
        Ok(Self {
            engine: Engine::new(config.engine_config()),
            router: Router::new(config.notifications.clone(), templates),
            now: None,
            incidents: BTreeSet::new(),
            ack_samples: Vec::new(),
            resolve_samples: Vec::new(),
            resolved: 0,
            summary: Summary::default(),
        })
    }

    /// The virtual time: the latest moment the history has reached.
    pub fn now(&self) -> Option<Timestamp> {
        self.now
    }

    /// Moves the clock to `to`, ticking the engine at every escalation deadline on the way.
    /// Time never goes back: an event stamped before the clock happens now.
    fn advance(&mut self, to: Timestamp, out: &mut Vec<Record>) -> Timestamp {
        let Some(mut now) = self.now else {
            self.now = Some(to);
            self.summary.from = Some(to);
            return to;
        };
        for _ in 0..MAX_TICKS_PER_STEP {
            match self.engine.next_deadline(now) {
                Some(due) if due <= to => {
                    // A deadline already behind the clock (an event came late) fires now.
                    now = now.max(due);
                    let effects = self.engine.apply(Input::Tick, now);
                    if effects.is_empty() {
                        break;
                    }
                    self.record_effects(effects, now, None, out);
                }
                _ => break,
            }
        }
        now = now.max(to);
        self.now = Some(now);
        now
    }

    /// Feeds one line; what it caused is appended to `out`.
    pub fn feed(&mut self, line: Line, out: &mut Vec<Record>) {
        match line {
            Line::Event {
                event,
                at,
                source,
                raw,
            } => {
                let now = self.advance(at, out);
                self.summary.events += 1;
                if self.incidents.len() < MAX_INCIDENTS {
                    self.incidents.insert(event.incident_id());
                }
                out.push(Record::Event {
                    event_type: event.event_type(),
                    incident_id: event.incident_id(),
                    topic: source.topic.to_string(),
                    partition: source.partition,
                    offset: source.offset,
                    received_at: now,
                    data: Box::new(event.clone()),
                });
                let effects = self.engine.apply(
                    Input::Event {
                        event,
                        source: Some(source.clone()),
                        raw,
                    },
                    now,
                );
                self.record_effects(effects, now, Some(&source), out);
            }
            Line::Acknowledged {
                incident_id,
                by,
                after_secs,
            } => {
                let Some(opened_at) = self
                    .engine
                    .escalations()
                    .get(incident_id)
                    .map(|e| e.opened_at)
                else {
                    return;
                };
                let at = opened_at
                    + chrono::TimeDelta::milliseconds((after_secs * 1000.0).round() as i64);
                let now = self.advance(at, out);
                let effects = self
                    .engine
                    .apply(Input::Acknowledge { incident_id, by }, now);
                self.record_effects(effects, now, None, out);
            }
            Line::DeadLetter => self.summary.dead_letters += 1,
            Line::Skip => {}
        }
    }

    fn record_effects(
        &mut self,
        effects: Vec<Effect>,
        now: Timestamp,
        source: Option<&SourceRef>,
        out: &mut Vec<Record>,
    ) {
        for effect in effects {
            let would_send = match &effect {
                Effect::Notify(notification) => Some(self.tally_notification(notification, now)),
                _ => None,
            };
            match &effect {
                Effect::Escalation(EscalationChange::Opened { .. }) => {
                    self.summary.escalations += 1
                }
                Effect::Escalation(EscalationChange::Exhausted { .. }) => {
                    self.summary.exhausted += 1
                }
                Effect::Held { .. } => self.summary.held += 1,
                Effect::Escalation(EscalationChange::Acknowledged {
                    time_to_acknowledge_secs,
                    ..
                }) => {
                    self.summary.acknowledged += 1;
                    if self.ack_samples.len() < MAX_SAMPLES {
                        self.ack_samples.push(*time_to_acknowledge_secs);
                    }
                }
                Effect::IncidentResolved {
                    time_to_resolve_secs,
                    ..
                } => {
                    self.resolved += 1;
                    if let Some(secs) = time_to_resolve_secs
                        && self.resolve_samples.len() < MAX_SAMPLES
                    {
                        self.resolve_samples.push(*secs);
                    }
                }
                _ => {}
            }
            out.push(Record::Effect {
                at: now,
                topic: source.map(|s| s.topic.to_string()),
                partition: source.map(|s| s.partition),
                offset: source.map(|s| s.offset),
                effect,
                would_send,
            });
        }
    }

    fn tally_notification(&mut self, notification: &Notification, now: Timestamp) -> Vec<Target> {
        *self
            .summary
            .notifications
            .entry(notification.kind.as_str().to_string())
            .or_default() += 1;
        if notification.kind == NotificationKind::Escalation
            && let Audience::EscalationLevel { level } = notification.audience
        {
            *self.summary.pages_per_level.entry(level).or_default() += 1;
            if let Some(person) = notification.fields.get("on_call")
                && self.summary.pages_per_on_call.len() < 10_000
            {
                *self
                    .summary
                    .pages_per_on_call
                    .entry(person.clone())
                    .or_default() += 1;
            }
        }
        let routed = self.router.route(notification, now);
        routed
            .deliveries
            .iter()
            .map(|delivery| {
                *self
                    .summary
                    .notifications_per_channel
                    .entry(delivery.channel.as_str().to_string())
                    .or_default() += 1;
                Target {
                    channel: delivery.channel.as_str().to_string(),
                    recipient: delivery.recipient.clone(),
                }
            })
            .collect()
    }

    /// Counts a line that could not be used.
    pub fn bad_line(&mut self) {
        self.summary.bad_lines += 1;
    }

    /// The summary as it stands: call after the last line.
    pub fn finish(&mut self) -> Summary {
        let mut summary = self.summary.clone();
        summary.until = self.now;
        summary.incidents = self.incidents.len() as u64;
        summary.time_to_acknowledge = spread(&mut self.ack_samples, summary.acknowledged);
        summary.time_to_resolve = spread(&mut self.resolve_samples, self.resolved);
        summary
    }
}

/// Reads lines of at most `limit` bytes; a longer one is skipped to its end and reported.
fn read_bounded_line(
    reader: &mut impl BufRead,
    buffer: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<bool>> {
    buffer.clear();
    let read = (&mut *reader)
        .take(limit as u64 + 1)
        .read_until(b'\n', buffer)?;
    if read == 0 {
        return Ok(None);
    }
    if buffer.last() == Some(&b'\n') || buffer.len() <= limit {
        return Ok(Some(true));
    }
    // Too long: drop the rest of the line without holding it.
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        match available.iter().position(|b| *b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                break;
            }
            None => {
                let n = available.len();
                reader.consume(n);
            }
        }
    }
    Ok(Some(false))
}

pub struct ReplayOptions {
    pub file: PathBuf,
    pub dry_run: bool,
    /// Headless lines too happen at the time the producer gave the event, not `received_at`:
    /// for output recorded from a replay (whose `received_at` is when it was replayed).
    pub event_time: bool,
}

/// Replays `options.file` with `config`, writing JSON lines to `out`. Returns the summary.
pub async fn run(
    config: &Config,
    options: &ReplayOptions,
    out: &mut impl Write,
) -> anyhow::Result<Summary> {
    let file = std::fs::File::open(&options.file)
        .map_err(|error| anyhow::anyhow!("{}: {error}", options.file.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let origin = options.file.display().to_string();
    let mut replayer = Replayer::new(config)?;
    replayer.summary.file = origin.clone();
    replayer.summary.dry_run = options.dry_run;
    let mut notifier = if options.dry_run {
        None
    } else {
        Some(Notifier::start(&config.notifications)?)
    };
    // A headless record wraps the event: room for it and its envelope.
    let limit = config.kafka.max_message_bytes.saturating_mul(2) + 4096;
    let mut buffer = Vec::new();
    let mut records = Vec::new();
    let mut number = 0u64;
    let mut writing = true;
    while let Some(whole) = read_bounded_line(&mut reader, &mut buffer, limit)
        .map_err(|error| anyhow::anyhow!("{origin}: {error}"))?
    {
        number += 1;
        replayer.summary.lines += 1;
        let parsed = if !whole {
            Err(format!("line longer than {limit} bytes"))
        } else {
            match std::str::from_utf8(&buffer) {
                Err(error) => Err(format!("not UTF-8: {error}")),
                Ok(text) if text.trim().is_empty() => Ok(Line::Skip),
                Ok(text) => parse_line(
                    text.trim_end_matches(['\n', '\r']),
                    &origin,
                    number,
                    config.kafka.max_message_bytes,
                ),
            }
        };
        let line = match parsed {
            Ok(Line::Event {
                event, source, raw, ..
            }) if options.event_time => Line::Event {
                at: event.occurred_at(),
                event,
                source,
                raw,
            },
            Ok(line) => line,
            Err(error) => {
                tracing::warn!("{origin}:{number}: {error}");
                replayer.bad_line();
                continue;
            }
        };
        replayer.feed(line, &mut records);
        for record in records.drain(..) {
            if let (Some(notifier), Record::Effect { effect, .. }) = (&mut notifier, &record)
                && let Effect::Notify(notification) = effect
            {
                notifier.submit(notification.clone());
                // The outbox is bounded: let the dispatcher take what was submitted.
                tokio::task::yield_now().await;
            }
            if writing && let Err(error) = write_record(out, &record) {
                if error.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(error.into());
                }
                writing = false;
            }
        }
    }
    let mut summary = replayer.finish();
    if let Some(notifier) = &mut notifier {
        notifier.shutdown(Duration::from_secs(30)).await;
        summary.notifications_per_channel.clear();
        for channel in notifier.status().channels {
            summary
                .notifications_per_channel
                .insert(channel.name.clone(), channel.delivered);
            if channel.failed > 0 {
                summary
                    .failed_per_channel
                    .insert(channel.name.clone(), channel.failed);
            }
        }
    }
    if writing {
        let line = serde_json::json!({ "kind": "summary", "summary": &summary });
        let written = serde_json::to_writer(&mut *out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if let Err(error) = written
            && error.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(error.into());
        }
    }
    Ok(summary)
}

fn write_record(out: &mut impl Write, record: &Record) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, record).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::built_in()
    }

    fn created(id: i64, at: &str, priority: &str) -> String {
        format!(
            r#"{{"incident_id":{id},"title":"Server Down","priority":"{priority}","status":"open","category":"hardware","reported_by":"john.doe","assigned_to":"jane.smith","created_at":"{at}","event_type":"incident_created"}}"#
        )
    }

    fn resolved(id: i64, at: &str) -> String {
        format!(
            r#"{{"incident_id":{id},"title":"Server Down","priority":"high","old_status":"open","new_status":"resolved","assigned_to":"jane.smith","updated_at":"{at}","event_type":"status_updated"}}"#
        )
    }

    fn replay(config: &Config, lines: &[String]) -> (Vec<Record>, Summary) {
        let mut replayer = Replayer::new(config).unwrap();
        let mut out = Vec::new();
        for (i, text) in lines.iter().enumerate() {
            match parse_line(text, "t.jsonl", i as u64 + 1, 1 << 20) {
                Ok(line) => replayer.feed(line, &mut out),
                Err(_) => replayer.bad_line(),
            }
        }
        let summary = replayer.finish();
        (out, summary)
    }

    fn raises(records: &[Record]) -> Vec<(Timestamp, u32)> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Effect {
                    at,
                    effect: Effect::Escalation(EscalationChange::Raised { to_level, .. }),
                    ..
                } => Some((*at, *to_level)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn timeouts_fire_at_their_virtual_time_between_events() {
        // Shipped policy: on-call 5 min, secondary 10 min, then the manager.
        let lines = [
            created(1, "2024-01-01T10:00:00Z", "high"),
            resolved(1, "2024-01-01T10:20:00Z"),
        ];
        let (records, summary) = replay(&config(), &lines);
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(
            raises(&records),
            [
                (t("2024-01-01T10:05:00Z"), 2),
                (t("2024-01-01T10:15:00Z"), 3)
            ]
        );
        assert_eq!(
            summary.pages_per_level,
            BTreeMap::from([(1, 1), (2, 1), (3, 1)])
        );
        assert_eq!(summary.incidents, 1);
        assert_eq!(summary.time_to_resolve.p50_secs, Some(1200.0));
        assert_eq!(summary.until, Some(t("2024-01-01T10:20:00Z")));
    }

    #[test]
    fn another_policy_pages_differently_on_the_same_history() {
        let lines = [
            created(1, "2024-01-01T10:00:00Z", "high"),
            created(2, "2024-01-01T10:01:00Z", "critical"),
            resolved(1, "2024-01-01T10:08:00Z"),
            resolved(2, "2024-01-01T10:09:00Z"),
        ];
        let (_, shipped) = replay(&config(), &lines);
        assert_eq!(shipped.pages_per_level.get(&2), Some(&2));
        let mut patient = config();
        patient.escalation.levels[0].timeout_secs = 600;
        let (_, what_if) = replay(&patient, &lines);
        assert_eq!(what_if.pages_per_level.get(&2), None);
        assert_eq!(what_if.pages_per_level.get(&1), Some(&2));
    }

    #[test]
    fn recorded_acknowledgements_are_made_again_at_the_same_delay() {
        let ack = r#"{"kind":"effect","topic":null,"partition":null,"offset":null,"effect":"escalation","change":"acknowledged","incident_id":1,"level":1,"by":"alice","time_to_acknowledge_secs":120.0}"#;
        let lines = [
            created(1, "2024-01-01T10:00:00Z", "high"),
            ack.to_string(),
            resolved(1, "2024-01-01T10:30:00Z"),
        ];
        let (records, summary) = replay(&config(), &lines);
        assert!(
            raises(&records).is_empty(),
            "acknowledged before the timeout"
        );
        assert_eq!(summary.acknowledged, 1);
        assert_eq!(summary.time_to_acknowledge.p50_secs, Some(120.0));
    }

    #[test]
    fn bad_lines_are_counted_with_their_reason() {
        let lines = [
            "not json".to_string(),
            r#"{"kind":"event","data":{"incident_id":1}}"#.to_string(),
            r#"{"kind":"mystery"}"#.to_string(),
            created(1, "2024-01-01T10:00:00Z", "urgent"),
        ];
        let errors: Vec<String> = lines
            .iter()
            .map(|l| parse_line(l, "f", 1, 1 << 20).unwrap_err())
            .collect();
        assert!(errors[0].starts_with("not a JSON object"), "{errors:?}");
        assert!(errors[1].starts_with("`data`:"), "{errors:?}");
        assert!(
            errors[2].contains("unknown record kind `mystery`"),
            "{errors:?}"
        );
        assert!(errors[3].contains("urgent"), "{errors:?}");
        let (_, summary) = replay(&config(), &lines);
        assert_eq!(summary.bad_lines, 4);
        assert_eq!(summary.events, 0);
    }

    #[test]
    fn an_overlong_line_is_skipped_without_holding_it() {
        let text = format!("{}\nshort\n", "x".repeat(10_000));
        let mut reader = std::io::BufReader::with_capacity(64, text.as_bytes());
        let mut buffer = Vec::new();
        assert_eq!(
            read_bounded_line(&mut reader, &mut buffer, 100).unwrap(),
            Some(false)
        );
        assert!(buffer.len() <= 101);
        assert_eq!(
            read_bounded_line(&mut reader, &mut buffer, 100).unwrap(),
            Some(true)
        );
        assert_eq!(buffer, b"short\n");
        assert_eq!(
            read_bounded_line(&mut reader, &mut buffer, 100).unwrap(),
            None
        );
    }
}
