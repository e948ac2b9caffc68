//! The engine: every input (a decoded event, a rejected payload, an operator command, the
//! passing of time) goes through `Engine::apply`, which updates state and returns what should
//! happen as data. It never does I/O and never reads a clock.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use super::escalation::{
    AcknowledgeError, Escalation, EscalationBook, EscalationChange, EscalationPolicy, RaiseCause,
    UnacknowledgeCause,
};
use super::event::{
    DecodeError, EventType, IncidentEvent, IncidentId, Priority, Status, Timestamp,
};
use super::metrics::{Metrics, MetricsSnapshot};
use super::oncall::{OnCall, OnCallNow};
use super::silence::{Matcher, Silence, SilenceBook, SilenceView, Subject};

/// Where a message came from, so errors and records can name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SourceRef {
    /// One allocation per topic, shared by every message's reference and cloned by count:
    /// a message's source is cloned several times on its way (journal, output, offsets).
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

#[derive(Debug, Clone)]
pub enum Input {
    Event {
        event: IncidentEvent,
        source: Option<SourceRef>,
        /// The payload as received, for the detail view.
        raw: Arc<str>,
    },
    Rejected {
        error: DecodeError,
        source: Option<SourceRef>,
        raw: Arc<str>,
    },
    Acknowledge {
        incident_id: IncidentId,
        by: String,
    },
    /// Takes an acknowledgement back: the incident pages its level again at once.
    Unacknowledge {
        incident_id: IncidentId,
        by: String,
    },
    /// An operator's silence (snooze) from `start` to `end`.
    Silence {
        matcher: Matcher,
        start: Timestamp,
        end: Timestamp,
        reason: String,
        by: String,
    },
    EndSilence {
        id: String,
        by: String,
    },
    Tick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    IncidentCreated,
    StatusChanged,
    AssignmentChanged,
    Escalation,
    EscalationAcknowledged,
    Resolved,
    /// An alert about the console itself starting or clearing (not from the engine: the
    /// watch task in `observe` decides these and the runtime submits them).
    SelfAlert,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IncidentCreated => "incident_created",
            Self::StatusChanged => "status_changed",
            Self::AssignmentChanged => "assignment_changed",
            Self::Escalation => "escalation",
            Self::EscalationAcknowledged => "escalation_acknowledged",
            Self::Resolved => "resolved",
            Self::SelfAlert => "self_alert",
        }
    }
}

/// Who must be told; the notifier maps audiences to addresses and channels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Audience {
    Administrators,
    User { name: String },
    EscalationLevel { level: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    #[serde(rename = "notification")]
    pub kind: NotificationKind,
    pub audience: Audience,
    pub incident_id: IncidentId,
    pub title: String,
    pub priority: Option<Priority>,
    /// Same key, same notification: a re-delivered event must not notify twice.
    pub dedup_key: String,
    /// Template values (status, assignee, level, reason ...), raw as received.
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    Notify(Notification),
    Escalation(EscalationChange),
    IncidentResolved {
        incident_id: IncidentId,
        status: Status,
        time_to_resolve_secs: Option<f64>,
    },
    AcknowledgeRejected {
        incident_id: IncidentId,
        reason: String,
    },
    /// A notification a silence holds back: recorded, not sent. If its incident is still open
    /// and unacknowledged when the silence ends, it pages its level then, once.
    Held {
        notification: Notification,
        silence_id: String,
        until: Timestamp,
    },
    SilenceSet(Box<SilenceView>),
    SilenceEnded {
        id: String,
        /// Who ended it early; `None` when its time was up.
        by: Option<String>,
    },
    SilenceRejected {
        reason: String,
    },
}

/// One line of the live feed: a handled event or a rejected payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedEntry {
    /// Increases by one per entry for the life of the engine.
    pub seq: u64,
    pub received_at: Timestamp,
    pub event_type: Option<EventType>,
    pub incident_id: Option<IncidentId>,
    pub priority: Option<Priority>,
    pub title: String,
    pub summary: String,
    pub source: Option<SourceRef>,
    pub error: Option<String>,
    #[serde(skip)]
    pub raw: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationView {
    #[serde(flatten)]
    pub escalation: Escalation,
    pub level_name: String,
    /// The silence holding its notifications now, if any.
    pub silenced: Option<SilenceMark>,
}

/// Why an escalation is quiet: which silence, whose, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SilenceMark {
    pub id: String,
    pub by: String,
    pub until: Timestamp,
    pub reason: String,
}

/// A read-only picture of the engine for renderers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineSnapshot {
    pub at: Timestamp,
    /// Newest first.
    pub feed: Vec<Arc<FeedEntry>>,
    /// Entries ever added; the difference between two snapshots is how many arrived.
    pub feed_total: u64,
    /// Unacknowledged first (highest level, then oldest), then acknowledged.
    pub escalations: Vec<EscalationView>,
    pub metrics: MetricsSnapshot,
    pub tracked_incidents: usize,
    /// Current and coming silences.
    pub silences: Vec<SilenceView>,
    /// Who is on call now, per schedule.
    pub on_call: Vec<OnCallNow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub policy: EscalationPolicy,
    pub feed_capacity: usize,
    pub max_tracked_incidents: usize,
    /// Raw payloads longer than this are cut in the feed (the dead-letter topic keeps them whole).
    pub max_raw_in_feed: usize,
    pub oncall: OnCall,
    /// Maintenance windows from the configuration.
    pub planned_silences: Vec<Silence>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            policy: EscalationPolicy::default(),
            feed_capacity: 1000,
            max_tracked_incidents: 10_000,
            max_raw_in_feed: 16 * 1024,
            oncall: OnCall::default(),
            planned_silences: Vec::new(),
        }
    }
}

/// Operators' silences kept at most (planned windows come on top).
const MAX_SILENCES: usize = 1000;

/// What the console knows of one incident's life, for lifecycle figures.
#[derive(Debug, Clone)]
struct IncidentRecord {
    created_at: Option<Timestamp>,
    status: Option<Status>,
    assignee: Option<String>,
    /// For silences that match on it.
    category: Option<String>,
}

/// How many tracked incidents the tracker's map is sized for at once (see `IncidentTracker::new`).
const PRESIZE_UP_TO: usize = 100_000;

/// Incidents by id with first-in-first-out eviction, so memory stays bounded.
#[derive(Debug, Clone)]
struct IncidentTracker {
    records: HashMap<IncidentId, IncidentRecord>,
    order: VecDeque<IncidentId>,
    capacity: usize,
}

impl IncidentTracker {
    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            // Twice the bound, reserved at once. Once full, every new incident evicts one and
            // leaves a tombstone, and a map holding more than half of what its table can take
            // grows instead of cleaning up in place: sized for `capacity` (10,000: 16,384
            // buckets), it doubled once more some 4,000 incidents after it filled (~107,000
            // events of the simulated stream, +1.2 MB of RSS after the 100 k mark, measured
            // with scripts/bench-memory). At twice the bound it cleans in place and never
            // grows. That is the size it reached anyway (2.3 MB for 10,000), now reached while
            // the tracker fills (ids scatter over the table, so it is all resident by then);
            // until then only the pages written count. Above `PRESIZE_UP_TO` the map is left
            // to grow as it fills.
            records: HashMap::with_capacity(capacity.min(PRESIZE_UP_TO) * 2),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn entry(&mut self, id: IncidentId) -> &mut IncidentRecord {
        if !self.records.contains_key(&id) {
            while self.records.len() >= self.capacity {
                match self.order.pop_front() {
                    Some(old) => {
                        self.records.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(id);
            self.records.insert(
                id,
                IncidentRecord {
                    created_at: None,
                    status: None,
                    assignee: None,
                    category: None,
                },
            );
        }
        self.records.get_mut(&id).expect("inserted above")
    }
}

pub struct Engine {
    config: EngineConfig,
    escalations: EscalationBook,
    /// A team console's engine: its escalation book mirrors the active worker's (see
    /// `mirror_escalation`) and never changes on its own, so events and ticks leave it alone.
    follower: bool,
    incidents: IncidentTracker,
    metrics: Metrics,
    feed: VecDeque<Arc<FeedEntry>>,
    feed_total: u64,
    silences: SilenceBook,
    /// Incidents a silence held a page or a step for: released when no silence covers them.
    held: BTreeSet<IncidentId>,
}

fn fields<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
}

fn truncate_raw(raw: &Arc<str>, limit: usize) -> Arc<str> {
    if raw.len() <= limit {
        return raw.clone();
    }
    let mut end = limit;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &raw[..end], raw.len()).into()
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Self {
            escalations: EscalationBook::new(config.policy.clone(), config.max_tracked_incidents),
            incidents: IncidentTracker::new(config.max_tracked_incidents),
            metrics: Metrics::default(),
            feed: VecDeque::with_capacity(config.feed_capacity.min(4096)),
            feed_total: 0,
            follower: false,
            silences: SilenceBook::new(config.planned_silences.clone(), MAX_SILENCES),
            held: BTreeSet::new(),
            config,
        }
    }

    /// An engine whose escalations are those another engine holds: a team console shows the
    /// queue as the active worker has it, not its own replay of the events.
    pub fn follower(config: EngineConfig) -> Self {
        Self {
            follower: true,
            ..Self::new(config)
        }
    }

    /// Follower: the active worker's escalation for `incident_id` after a change, `None` once
    /// it closed.
    pub fn mirror_escalation(&mut self, incident_id: IncidentId, current: Option<Escalation>) {
        match current {
            Some(escalation) if escalation.incident_id == incident_id => {
                self.escalations.restore(escalation)
            }
            Some(_) => {}
            None => {
                self.escalations.close(incident_id);
            }
        }
    }

    pub fn escalations(&self) -> &EscalationBook {
        &self.escalations
    }

    /// Escalations remembered by the journal from before a restart.
    pub fn restore_escalations(&mut self, escalations: impl IntoIterator<Item = Escalation>) {
        for escalation in escalations {
            self.escalations.restore(escalation);
        }
    }

    /// The runtime measures handling time (a clock read) and reports it here.
    pub fn record_processing(&mut self, duration: std::time::Duration) {
        self.metrics.record_processing(duration);
    }

    pub fn record_dead_lettered(&mut self) {
        self.metrics.record_dead_lettered();
    }

    pub fn silences(&self) -> &SilenceBook {
        &self.silences
    }

    /// Silences remembered from before a restart (or from the active worker).
    pub fn restore_silence(&mut self, silence: Silence) {
        self.silences.restore(silence);
    }

    pub fn apply(&mut self, input: Input, now: Timestamp) -> Vec<Effect> {
        let event_type = match &input {
            Input::Event { event, .. } => Some(event.event_type()),
            Input::Tick => Some(EventType::EscalationTriggered),
            _ => None,
        };
        let effects = self.apply_unsilenced(input, now);
        self.hold_silenced(effects, event_type, now)
    }

    fn apply_unsilenced(&mut self, input: Input, now: Timestamp) -> Vec<Effect> {
        match input {
            Input::Event { event, source, raw } => {
                self.metrics.record_event(event.event_type(), now);
                self.push_feed(FeedEntry {
                    seq: 0,
                    received_at: now,
                    event_type: Some(event.event_type()),
                    incident_id: Some(event.incident_id()),
                    priority: event.priority(),
                    title: event.title().to_string(),
                    summary: event.summary(),
                    source,
                    error: None,
                    raw: truncate_raw(&raw, self.config.max_raw_in_feed),
                });
                self.handle_event(&event, now)
            }
            Input::Rejected { error, source, raw } => {
                self.metrics.record_decode_failure(error.reason());
                self.push_feed(FeedEntry {
                    seq: 0,
                    received_at: now,
                    event_type: None,
                    incident_id: None,
                    priority: None,
                    title: String::new(),
                    summary: format!("rejected: {}", error.reason()),
                    source,
                    error: Some(error.to_string()),
                    raw: truncate_raw(&raw, self.config.max_raw_in_feed),
                });
                Vec::new()
            }
            Input::Acknowledge { incident_id, by } => self.acknowledge(incident_id, &by, now),
            Input::Unacknowledge { incident_id, by } => {
                match self.escalations.unacknowledge(
                    incident_id,
                    UnacknowledgeCause::Operator { by },
                    now,
                ) {
                    Ok(change) => {
                        let mut effects = Vec::new();
                        self.escalation_effects(change, now, &mut effects);
                        effects
                    }
                    Err(error) => vec![Effect::AcknowledgeRejected {
                        incident_id,
                        reason: error.to_string(),
                    }],
                }
            }
            Input::Silence {
                matcher,
                start,
                end,
                reason,
                by,
            } => match self.silences.add(matcher, start, end, reason, by) {
                Ok(silence) => self
                    .silences
                    .views(now)
                    .into_iter()
                    .filter(|view| view.id == silence.id)
                    .map(|view| Effect::SilenceSet(Box::new(view)))
                    .collect(),
                Err(error) => vec![Effect::SilenceRejected {
                    reason: error.to_string(),
                }],
            },
            Input::EndSilence { id, by } => match self.silences.end(&id) {
                Ok(_) => {
                    let mut effects = vec![Effect::SilenceEnded { id, by: Some(by) }];
                    if !self.follower {
                        self.release_held(now, &mut effects);
                    }
                    effects
                }
                Err(error) => vec![Effect::SilenceRejected {
                    reason: error.to_string(),
                }],
            },
            Input::Tick if self.follower => Vec::new(),
            Input::Tick => {
                let mut effects = Vec::new();
                if let Some(timeout) = self.config.oncall.ack_timeout {
                    for id in self.escalations.ack_expired(timeout, now) {
                        if let Ok(change) =
                            self.escalations
                                .unacknowledge(id, UnacknowledgeCause::AckTimeout, now)
                        {
                            self.escalation_effects(change, now, &mut effects);
                        }
                    }
                }
                // Released first: a step that fell due during the silence is its one page.
                for silence in self.silences.prune(now) {
                    effects.push(Effect::SilenceEnded {
                        id: silence.id,
                        by: None,
                    });
                }
                self.release_held(now, &mut effects);
                // Steps due for silenced incidents wait (and are remembered for the release).
                let held_now: BTreeSet<IncidentId> = self
                    .escalations
                    .iter()
                    .filter(|e| e.next_step_at.is_some_and(|due| due <= now))
                    .filter(|e| self.escalation_silence(e, now).is_some())
                    .map(|e| e.incident_id)
                    .collect();
                self.remember_held(held_now.iter().copied());
                let changes = self
                    .escalations
                    .tick_except(now, |e| held_now.contains(&e.incident_id));
                for change in changes {
                    self.escalation_effects(change, now, &mut effects);
                }
                effects
            }
        }
    }

    /// When the next `Tick` can change something after `now`: an escalation step (for one a
    /// silence holds, the silence's end), an acknowledgement timing out, a held incident's
    /// release. A runtime on a virtual clock (replay) ticks exactly then.
    pub fn next_deadline(&self, now: Timestamp) -> Option<Timestamp> {
        let steps = self.escalations.iter().filter_map(|e| {
            let due = e.next_step_at?;
            Some(
                match self.escalation_silence(e, due).and_then(|s| s.window(due)) {
                    Some((_, end)) => end.max(due),
                    None => due,
                },
            )
        });
        let acks = self
            .config
            .oncall
            .ack_timeout
            .into_iter()
            .flat_map(|timeout| {
                let timeout = TimeDelta::from_std(timeout).unwrap_or(TimeDelta::MAX);
                self.escalations
                    .iter()
                    .filter_map(move |e| Some(e.acknowledged.as_ref()?.at + timeout))
            });
        let releases = self.held.iter().filter_map(|id| {
            let escalation = self.escalations.get(*id)?;
            Some(self.escalation_silence(escalation, now)?.window(now)?.1)
        });
        steps.chain(acks).chain(releases).min()
    }

    fn subject<'a>(
        &'a self,
        incident_id: IncidentId,
        priority: Option<Priority>,
        title: &'a str,
        event_type: Option<EventType>,
    ) -> Subject<'a> {
        Subject {
            incident_id,
            priority,
            category: self
                .incidents
                .records
                .get(&incident_id)
                .and_then(|r| r.category.as_deref()),
            title,
            event_type,
        }
    }

    fn escalation_silence(&self, escalation: &Escalation, now: Timestamp) -> Option<&Silence> {
        let subject = self.subject(
            escalation.incident_id,
            Some(escalation.priority),
            &escalation.title,
            Some(EventType::EscalationTriggered),
        );
        self.silences.covering(&subject, now)
    }

    fn remember_held(&mut self, ids: impl IntoIterator<Item = IncidentId>) {
        for id in ids {
            // Bounded like the escalation book: only escalated incidents are ever released.
            if self.held.len() < self.config.max_tracked_incidents.max(1) {
                self.held.insert(id);
            }
        }
    }

    /// Notifications a silence covers become `Held` effects.
    fn hold_silenced(
        &mut self,
        effects: Vec<Effect>,
        event_type: Option<EventType>,
        now: Timestamp,
    ) -> Vec<Effect> {
        if self.follower || self.silences.iter().next().is_none() {
            return effects;
        }
        let mut held = Vec::new();
        let effects = effects
            .into_iter()
            .map(|effect| match effect {
                Effect::Notify(notification) => {
                    let subject = self.subject(
                        notification.incident_id,
                        notification.priority,
                        &notification.title,
                        event_type,
                    );
                    let covering = self
                        .silences
                        .covering(&subject, now)
                        .and_then(|s| Some((s.id.clone(), s.window(now)?.1)));
                    match covering {
                        Some((silence_id, until)) => {
                            if notification.kind == NotificationKind::Escalation {
                                held.push(notification.incident_id);
                            }
                            Effect::Held {
                                notification,
                                silence_id,
                                until,
                            }
                        }
                        None => Effect::Notify(notification),
                    }
                }
                other => other,
            })
            .collect();
        self.remember_held(held);
        effects
    }

    /// Incidents no silence covers any more: a still-open unacknowledged one pages its level,
    /// once, and its next step is due one level timeout from now.
    fn release_held(&mut self, now: Timestamp, effects: &mut Vec<Effect>) {
        let held: Vec<IncidentId> = self.held.iter().copied().collect();
        for id in held {
            let Some(escalation) = self.escalations.get(id) else {
                self.held.remove(&id);
                continue;
            };
            if self.escalation_silence(escalation, now).is_some() {
                continue;
            }
            self.held.remove(&id);
            if escalation.acknowledged.is_some() {
                continue;
            }
            let level = escalation.level;
            self.escalations.rearm(id, now);
            effects.extend(self.page(
                id,
                level,
                format!("S{}", now.timestamp_millis()),
                "silence ended, still not acknowledged".into(),
                now,
            ));
        }
    }

    fn push_feed(&mut self, mut entry: FeedEntry) {
        self.feed_total += 1;
        entry.seq = self.feed_total;
        if self.feed.len() >= self.config.feed_capacity.max(1) {
            self.feed.pop_back();
        }
        self.feed.push_front(Arc::new(entry));
    }

    fn handle_event(&mut self, event: &IncidentEvent, now: Timestamp) -> Vec<Effect> {
        let mut effects = Vec::new();
        let id = event.incident_id();
        self.escalations.update_title(id, event.title());
        match event {
            IncidentEvent::IncidentCreated(e) => {
                let record = self.incidents.entry(id);
                record.created_at = Some(e.created_at);
                record.status = Some(e.status);
                record.assignee = e.assigned_to.clone();
                record.category = Some(e.category.clone());
                effects.push(Effect::Notify(Notification {
                    kind: NotificationKind::IncidentCreated,
                    audience: Audience::Administrators,
                    incident_id: id,
                    title: e.title.clone(),
                    priority: Some(e.priority),
                    dedup_key: format!("{id}/incident_created"),
                    fields: fields([
                        ("status", e.status.to_string()),
                        ("category", e.category.clone()),
                        ("reported_by", e.reported_by.clone()),
                        (
                            "assignee",
                            e.assigned_to.clone().unwrap_or_else(|| "unassigned".into()),
                        ),
                        ("created_at", e.created_at.to_rfc3339()),
                    ]),
                }));
                if !e.status.is_terminal() {
                    self.escalate(
                        id,
                        &e.title,
                        e.priority,
                        1,
                        RaiseCause::Triggered,
                        now,
                        &mut effects,
                    );
                }
            }
            IncidentEvent::StatusUpdated(e) => {
                let record = self.incidents.entry(id);
                let was_resolved =
                    e.old_status.is_terminal() || record.status.is_some_and(Status::is_terminal);
                record.status = Some(e.new_status);
                if e.assigned_to.is_some() {
                    record.assignee = e.assigned_to.clone();
                }
                let created_at = record.created_at;
                if let Some(assignee) = &e.assigned_to {
                    effects.push(Effect::Notify(Notification {
                        kind: NotificationKind::StatusChanged,
                        audience: Audience::User {
                            name: assignee.clone(),
                        },
                        incident_id: id,
                        title: e.title.clone(),
                        priority: Some(e.priority),
                        dedup_key: format!(
                            "{id}/status/{}/{}",
                            e.new_status,
                            e.updated_at.timestamp_millis()
                        ),
                        fields: fields([
                            ("old_status", e.old_status.to_string()),
                            ("new_status", e.new_status.to_string()),
                            ("assignee", assignee.clone()),
                            ("updated_at", e.updated_at.to_rfc3339()),
                        ]),
                    }));
                }
                if e.new_status.is_terminal() {
                    let escalation_level = self.escalations.get(id).map(|esc| esc.level);
                    if !self.follower
                        && let Some(change) = self.escalations.close(id)
                    {
                        effects.push(Effect::Escalation(change));
                    }
                    if !was_resolved {
                        self.resolve(e, created_at, escalation_level, now, &mut effects);
                    }
                } else if e.new_status == Status::Open {
                    // Reopened, or raised in priority while open: page like a new incident.
                    self.escalate(
                        id,
                        &e.title,
                        e.priority,
                        1,
                        RaiseCause::Triggered,
                        now,
                        &mut effects,
                    );
                }
            }
            IncidentEvent::AssignmentChanged(e) => {
                self.incidents.entry(id).assignee = Some(e.new_assignee.clone());
                effects.push(Effect::Notify(Notification {
                    kind: NotificationKind::AssignmentChanged,
                    audience: Audience::User {
                        name: e.new_assignee.clone(),
                    },
                    incident_id: id,
                    title: e.title.clone(),
                    priority: Some(e.priority),
                    dedup_key: format!(
                        "{id}/assigned/{}/{}",
                        e.new_assignee,
                        e.updated_at.timestamp_millis()
                    ),
                    fields: fields([
                        (
                            "old_assignee",
                            e.old_assignee
                                .clone()
                                .unwrap_or_else(|| "unassigned".into()),
                        ),
                        ("new_assignee", e.new_assignee.clone()),
                        ("changed_by", e.changed_by.clone()),
                        ("updated_at", e.updated_at.to_rfc3339()),
                    ]),
                }));
            }
            IncidentEvent::EscalationTriggered(e) => {
                let resolved = self
                    .incidents
                    .records
                    .get(&id)
                    .and_then(|r| r.status)
                    .is_some_and(Status::is_terminal);
                if !resolved {
                    self.escalate(
                        id,
                        &e.title,
                        e.priority,
                        e.level,
                        RaiseCause::Triggered,
                        now,
                        &mut effects,
                    );
                }
            }
            IncidentEvent::CommentAdded(_) | IncidentEvent::AttachmentUploaded(_) => {}
        }
        effects
    }

    #[allow(clippy::too_many_arguments)]
    fn escalate(
        &mut self,
        id: IncidentId,
        title: &str,
        priority: Priority,
        level: u32,
        cause: RaiseCause,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        if self.follower {
            return;
        }
        for change in self
            .escalations
            .escalate(id, title, priority, level, cause, now)
        {
            self.escalation_effects(change, now, effects);
        }
    }

    fn resolve(
        &mut self,
        e: &super::event::StatusUpdated,
        created_at: Option<Timestamp>,
        escalation_level: Option<u32>,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let id = e.incident_id;
        let time_to_resolve_secs = created_at
            .map(|created| e.updated_at - created)
            .filter(|elapsed| *elapsed >= TimeDelta::zero())
            .map(|elapsed| elapsed.as_seconds_f64());
        self.metrics.record_resolution(time_to_resolve_secs);
        effects.push(Effect::IncidentResolved {
            incident_id: id,
            status: e.new_status,
            time_to_resolve_secs,
        });
        let mut audiences = vec![Audience::Administrators];
        if let Some(level) = escalation_level {
            // The people who were paged should know they can stand down.
            audiences.push(Audience::EscalationLevel { level });
        }
        for audience in audiences {
            let mut values = fields([
                ("new_status", e.new_status.to_string()),
                (
                    "assignee",
                    e.assigned_to.clone().unwrap_or_else(|| "unassigned".into()),
                ),
                (
                    "time_to_resolve",
                    time_to_resolve_secs
                        .map(format_duration)
                        .unwrap_or_else(|| "unknown".into()),
                ),
                ("updated_at", e.updated_at.to_rfc3339()),
            ]);
            if let Audience::EscalationLevel { level } = audience {
                self.add_on_call(level, now, &mut values);
            }
            effects.push(Effect::Notify(Notification {
                kind: NotificationKind::Resolved,
                audience,
                incident_id: id,
                title: e.title.clone(),
                priority: Some(e.priority),
                dedup_key: format!("{id}/resolved/{}", e.updated_at.timestamp_millis()),
                fields: values,
            }));
        }
    }

    fn acknowledge(&mut self, incident_id: IncidentId, by: &str, now: Timestamp) -> Vec<Effect> {
        match self.escalations.acknowledge(incident_id, by, now) {
            Ok(change) => {
                let mut effects = Vec::new();
                self.escalation_effects(change, now, &mut effects);
                effects
            }
            Err(
                error @ (AcknowledgeError::NotEscalated(_)
                | AcknowledgeError::AlreadyAcknowledged { .. }
                | AcknowledgeError::NotAcknowledged(_)),
            ) => {
                vec![Effect::AcknowledgeRejected {
                    incident_id,
                    reason: error.to_string(),
                }]
            }
        }
    }

    /// Fills in who a schedule-driven level reaches at `now`: the schedule, the person on
    /// call and their contact methods (the router sends to them; templates may show them).
    fn add_on_call(&self, level: u32, now: Timestamp, fields: &mut BTreeMap<String, String>) {
        let Some((schedule, person)) = self.config.oncall.for_level(level, now) else {
            return;
        };
        fields.insert("schedule".into(), schedule.name.clone());
        fields.insert("on_call".into(), person.unwrap_or("nobody").to_string());
        let Some(contact) = person.and_then(|name| self.config.oncall.person(name)) else {
            return;
        };
        for (name, value) in [
            ("on_call_email", &contact.email),
            ("on_call_sms", &contact.sms),
            ("on_call_slack", &contact.slack),
        ] {
            if let Some(value) = value {
                fields.insert(name.into(), value.clone());
            }
        }
    }

    /// A page to `level` about the incident's escalation. `key` tells pages of one level
    /// apart (`R<repeat>`, an un-acknowledgement, a silence's release).
    fn page(
        &self,
        incident_id: IncidentId,
        level: u32,
        key: String,
        reason: String,
        now: Timestamp,
    ) -> Option<Effect> {
        let escalation = self.escalations.get(incident_id)?;
        let mut fields = fields([
            ("level", level.to_string()),
            ("level_name", self.escalations.policy().level_name(level)),
            ("repeat", escalation.repeats.to_string()),
            ("reason", reason),
            ("opened_at", escalation.opened_at.to_rfc3339()),
        ]);
        self.add_on_call(level, now, &mut fields);
        Some(Effect::Notify(Notification {
            kind: NotificationKind::Escalation,
            audience: Audience::EscalationLevel { level },
            incident_id,
            title: escalation.title.clone(),
            priority: Some(escalation.priority),
            dedup_key: format!(
                "{incident_id}/escalation/{}/L{level}/{key}",
                escalation.opened_at.timestamp_millis()
            ),
            fields,
        }))
    }

    /// Turns an escalation change into the effects it implies: metrics, and who to page.
    fn escalation_effects(
        &mut self,
        change: EscalationChange,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let page = |engine: &Self, incident_id: IncidentId, level: u32, repeat: u32, reason| {
            engine.page(incident_id, level, format!("R{repeat}"), reason, now)
        };
        let notification = match &change {
            EscalationChange::Opened {
                incident_id, level, ..
            } => {
                self.metrics.record_escalation_opened();
                page(self, *incident_id, *level, 0, "new incident".into())
            }
            EscalationChange::Raised {
                incident_id,
                from_level,
                to_level,
                cause,
            } => {
                self.metrics.record_escalation_raised();
                let reason = match cause {
                    RaiseCause::Timeout => {
                        format!("level {from_level} did not acknowledge in time")
                    }
                    RaiseCause::Triggered => "escalated by the incident system".into(),
                };
                page(self, *incident_id, *to_level, 0, reason)
            }
            EscalationChange::Repeated {
                incident_id,
                level,
                repeat,
            } => page(
                self,
                *incident_id,
                *level,
                *repeat,
                "still not acknowledged".into(),
            ),
            EscalationChange::Acknowledged {
                incident_id,
                level,
                by,
                time_to_acknowledge_secs,
            } => {
                self.metrics
                    .record_time_to_acknowledge(*time_to_acknowledge_secs);
                self.escalations.get(*incident_id).map(|escalation| {
                    let mut values = fields([
                        ("level", level.to_string()),
                        ("by", by.clone()),
                        ("acknowledged_at", now.to_rfc3339()),
                        (
                            "time_to_acknowledge",
                            format_duration(*time_to_acknowledge_secs),
                        ),
                    ]);
                    self.add_on_call(*level, now, &mut values);
                    Effect::Notify(Notification {
                        kind: NotificationKind::EscalationAcknowledged,
                        audience: Audience::EscalationLevel { level: *level },
                        incident_id: *incident_id,
                        title: escalation.title.clone(),
                        priority: Some(escalation.priority),
                        dedup_key: format!(
                            "{incident_id}/acknowledged/{}",
                            escalation.opened_at.timestamp_millis()
                        ),
                        fields: values,
                    })
                })
            }
            EscalationChange::Unacknowledged {
                incident_id,
                level,
                cause,
                acknowledged_at,
                ..
            } => {
                let reason = match cause {
                    UnacknowledgeCause::AckTimeout => {
                        "acknowledged but still open: the acknowledgement timed out".to_string()
                    }
                    UnacknowledgeCause::Operator { by } => format!("unacknowledged by {by}"),
                };
                self.page(
                    *incident_id,
                    *level,
                    format!("U{}", acknowledged_at.timestamp_millis()),
                    reason,
                    now,
                )
            }
            EscalationChange::Exhausted { .. } | EscalationChange::Closed { .. } => None,
        };
        effects.push(Effect::Escalation(change));
        effects.extend(notification);
    }

    pub fn snapshot(&self, now: Timestamp) -> EngineSnapshot {
        let mut escalations: Vec<EscalationView> = self
            .escalations
            .iter()
            .map(|escalation| EscalationView {
                level_name: self.escalations.policy().level_name(escalation.level),
                silenced: self.escalation_silence(escalation, now).and_then(|s| {
                    Some(SilenceMark {
                        id: s.id.clone(),
                        by: s.created_by.clone(),
                        until: s.window(now)?.1,
                        reason: s.reason.clone(),
                    })
                }),
                escalation: escalation.clone(),
            })
            .collect();
        escalations.sort_by(|a, b| {
            let (a, b) = (&a.escalation, &b.escalation);
            a.acknowledged
                .is_some()
                .cmp(&b.acknowledged.is_some())
                .then(b.level.cmp(&a.level))
                .then(b.priority.cmp(&a.priority))
                .then(a.opened_at.cmp(&b.opened_at))
                .then(a.incident_id.cmp(&b.incident_id))
        });
        EngineSnapshot {
            at: now,
            feed: self.feed.iter().cloned().collect(),
            feed_total: self.feed_total,
            escalations,
            metrics: self.metrics.snapshot(now),
            tracked_incidents: self.incidents.records.len(),
            silences: self.silences.views(now),
            on_call: self
                .config
                .oncall
                .schedules
                .iter()
                .map(|schedule| schedule.resolve(now))
                .collect(),
        }
    }
}

/// "1h 02m", "5m 03s", "42s": compact enough for a table cell and an email line.
pub fn format_duration(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (hours, minutes, secs) = (total / 3600, (total % 3600) / 60, total % 60);
    if hours > 0 {
        format!("{hours}h {minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m {secs:02}s")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests;
