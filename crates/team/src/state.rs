//! Escalation and notification state through Kafka. The active worker publishes to
//! `<topic>.state` everything a successor needs: each escalation as it stands after a change
//! (level, next step due, who acknowledged), each notification decided, and each delivery's
//! marks (queued before it is sent, delivered or given up after). A worker that becomes active
//! reads the topic to its end and restores all of it ([`Restorer`]) before it consumes an
//! incident. Consoles read it to show the queue as the worker holds it.
//!
//! Every record carries the publishing worker's **leader epoch**: one more than the highest
//! epoch on the topic when it became active, announced by a `lease` record before it acts.
//! Readers ignore a record whose epoch is older than the newest they have seen, so the writes
//! of a paused worker that wakes after a takeover count for nothing.
//!
//! Keys (the topic is compacted on a real cluster, so each key's newest record is its state):
//! the incident id for an escalation, `n|<dedup key>` for a notification, `d|<delivery key>`
//! for a delivery, `s|<silence id>` for an operator's silence, `p|<topic>|<partition>` for
//! progress, `leader` for the lease. What is done with is deleted by a tombstone (a record
//! with the key and no payload), so the topic holds only what a successor needs: a closed
//! escalation, a routed notification, a delivery given up, a delivered claim once it leaves
//! the dedup window, and a silence ended early or run out.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::config::team::state_topic;
pub use crate::core::changelog::EscalationChangeKind;
use crate::core::engine::Notification;
use crate::core::escalation::{Escalation, EscalationChange};
use crate::core::event::{IncidentId, Timestamp};
use crate::core::silence::{Matcher, Silence, SilenceOrigin, SilenceView};
use crate::notify::{Delivery, ResumedDeliveries, ResumedNotifications};

/// A record's key on the compacted topic: each key's newest record is its state. The one place
/// where keys are spelled, so writers, tombstones and the restoring fold cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateKey {
    /// `leader`: the active worker's lease.
    Leader,
    /// The incident id: its escalation.
    Escalation(IncidentId),
    /// `n|<dedup key>`: a notification decided and not yet routed.
    Notification(String),
    /// `d|<delivery key>`: a delivery queued, or its claim once delivered.
    Delivery(String),
    /// `p|<topic>|<partition>`: how far the partition was handled.
    Progress { topic: String, partition: i32 },
    /// `s|<silence id>`: a silence set by an operator, while it runs.
    Silence(String),
}

impl StateKey {
    /// The key as written on the topic.
    pub fn encode(&self) -> String {
        match self {
            Self::Leader => "leader".into(),
            Self::Escalation(incident_id) => incident_id.to_string(),
            Self::Notification(dedup_key) => format!("n|{dedup_key}"),
            Self::Delivery(key) => format!("d|{key}"),
            Self::Progress { topic, partition } => format!("p|{topic}|{partition}"),
            Self::Silence(id) => format!("s|{id}"),
        }
    }

    /// The key of a record read from the topic; `None` for one this version does not know.
    pub fn decode(key: &str) -> Option<Self> {
        if key == "leader" {
            Some(Self::Leader)
        } else if let Some(delivery) = key.strip_prefix("d|") {
            Some(Self::Delivery(delivery.into()))
        } else if let Some(dedup_key) = key.strip_prefix("n|") {
            Some(Self::Notification(dedup_key.into()))
        } else if let Some(id) = key.strip_prefix("s|") {
            Some(Self::Silence(id.into()))
        } else if let Some(progress) = key.strip_prefix("p|") {
            let (topic, partition) = progress.rsplit_once('|')?;
            Some(Self::Progress {
                topic: topic.into(),
                partition: partition.parse().ok()?,
            })
        } else {
            key.parse().ok().map(Self::Escalation)
        }
    }
}

/// How a delivery ended, as the state topic records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// Sent: its claim stands until it leaves the dedup window.
    Delivered,
    /// Given up: its claim is released.
    GaveUp,
}

/// One record on `<topic>.state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    /// The leader epoch of the worker that published it.
    pub epoch: u64,
    /// The worker that published it.
    pub worker: String,
    /// When the worker published it.
    pub at: Timestamp,
    #[serde(flatten)]
    pub body: StateBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StateBody {
    /// The active worker of `epoch` is alive: published when it becomes active (before it
    /// acts) and then every second. Consoles show it in their header.
    Lease,
    /// An escalation changed; `current` is the escalation after it (`None` once closed).
    Escalation {
        incident_id: IncidentId,
        /// What happened to it (`opened`, `raised`, ... on the wire).
        change: EscalationChangeKind,
        level: Option<u32>,
        acknowledged_by: Option<String>,
        current: Option<Box<Escalation>>,
    },
    /// The engine decided on a notification: owed until it is routed.
    Decided { notification: Box<Notification> },
    /// The notifier dealt with the notification `dedup_key` (see `DeliveryChange::Routed`).
    Routed { dedup_key: String },
    /// A delivery was claimed and is about to be sent.
    Queued { delivery: Box<Delivery> },
    /// A delivery ended: delivered (its claim stands) or given up (its claim is released).
    Finished { key: String, outcome: Finish },
    /// The worker handled every message up to these offsets (topic, partition, offset), after
    /// publishing what they changed: a successor skips them rather than handling them again
    /// (which would page anew for an escalation since closed).
    Progress { offsets: Vec<(String, i32, i64)> },
    /// An operator's silence (a snooze from a console) as the active worker's engine holds
    /// it: consoles show it, a successor restores it. Deleted by a tombstone when it ends.
    Silence { silence: Box<SilenceState> },
}

/// An operator's silence on the state topic: what the engine needs to hold it again and what
/// a console shows (matcher, who, why, until when). Its own type, not the engine's view: the
/// record format belongs to the state topic and must read back whatever the view grows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceState {
    pub id: String,
    pub matcher: Matcher,
    pub reason: String,
    pub created_by: String,
    pub origin: SilenceOrigin,
    pub start: Timestamp,
    pub end: Timestamp,
}

impl SilenceState {
    /// Only operators' silences are published, and they have a single window (no
    /// recurrence), which the view carries whole.
    pub fn from_view(view: &SilenceView) -> Self {
        Self {
            id: view.id.clone(),
            matcher: view.matcher.clone(),
            reason: view.reason.clone(),
            created_by: view.created_by.clone(),
            origin: view.origin,
            start: view.start,
            end: view.end,
        }
    }

    /// As the engine holds it.
    pub fn silence(&self) -> Silence {
        Silence {
            id: self.id.clone(),
            matcher: self.matcher.clone(),
            reason: self.reason.clone(),
            created_by: self.created_by.clone(),
            origin: self.origin,
            start: self.start,
            end: self.end,
            recurrence: None,
        }
    }
}

impl StateBody {
    pub fn escalation(change: &EscalationChange, current: Option<&Escalation>) -> Self {
        use EscalationChange as C;
        let (level, by) = match change {
            C::Acknowledged { by, .. } => (None, Some(by.clone())),
            C::Closed { .. } => (None, None),
            _ => (Some(change.level()), None),
        };
        let current = match change {
            C::Closed { .. } => None,
            _ => current.cloned().map(Box::new),
        };
        Self::Escalation {
            incident_id: change.incident_id(),
            change: change.kind(),
            level,
            acknowledged_by: by,
            current,
        }
    }

    /// The record's key on the compacted topic.
    pub fn key(&self) -> StateKey {
        match self {
            Self::Lease => StateKey::Leader,
            Self::Escalation { incident_id, .. } => StateKey::Escalation(*incident_id),
            Self::Decided { notification } => {
                StateKey::Notification(notification.dedup_key.clone())
            }
            Self::Routed { dedup_key } => StateKey::Notification(dedup_key.clone()),
            Self::Queued { delivery } => StateKey::Delivery(delivery.key.clone()),
            Self::Finished { key, .. } => StateKey::Delivery(key.clone()),
            Self::Silence { silence } => StateKey::Silence(silence.id.clone()),
            Self::Progress { offsets } => match offsets.first() {
                Some((topic, partition, _)) => StateKey::Progress {
                    topic: topic.clone(),
                    partition: *partition,
                },
                None => StateKey::Progress {
                    topic: String::new(),
                    partition: 0,
                },
            },
        }
    }
}

impl StateRecord {
    pub fn decode(payload: Option<&[u8]>) -> Option<Self> {
        serde_json::from_slice(payload?).ok()
    }
}

/// Keeps the newest leader epoch seen; a record from an older one is stale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EpochFilter {
    newest: u64,
}

impl EpochFilter {
    /// Whether `record` counts: its epoch is at least the newest seen (which it then is).
    pub fn admit(&mut self, record: &StateRecord) -> bool {
        if record.epoch < self.newest {
            return false;
        }
        self.newest = record.epoch;
        true
    }

    pub fn newest(&self) -> u64 {
        self.newest
    }
}

/// What a new active worker restores, read from `<topic>.state`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    /// The highest epoch on the topic: the new worker's is one more.
    pub epoch: u64,
    /// Open escalations as the last active worker held them.
    pub escalations: Vec<Escalation>,
    /// What the notifier resumes, in the type a standalone start resumes from its journal:
    /// decided and never routed (routed now), deliveries queued and not finished (sent now),
    /// the claims within the dedup window, and how many were too old to send.
    pub notifications: ResumedNotifications,
    /// The highest offset handled per (topic, partition): a successor skips up to there.
    pub handled: HashMap<(String, i32), i64>,
    /// Records ignored because an older epoch wrote them after a newer one.
    pub stale: u64,
    /// Operators' silences not yet ended or run out, oldest set first.
    pub silences: Vec<Silence>,
}

/// Folds the records of `<topic>.state`, oldest first, into what a new worker restores.
/// Pure: the caller reads the topic and passes the time.
#[derive(Debug, Default)]
pub struct Restorer {
    filter: EpochFilter,
    escalations: HashMap<IncidentId, Escalation>,
    decided: HashMap<String, (Timestamp, Notification)>,
    /// Delivery key -> (claimed at, the delivery while it is pending).
    deliveries: HashMap<String, (Timestamp, Option<Delivery>)>,
    handled: HashMap<(String, i32), i64>,
    stale: u64,
    /// Silence id -> (set at, the silence).
    silences: HashMap<String, (Timestamp, Silence)>,
}

impl Restorer {
    pub fn push(&mut self, record: StateRecord) {
        if !self.filter.admit(&record) {
            self.stale += 1;
            return;
        }
        match record.body {
            StateBody::Lease => {}
            StateBody::Silence { silence } => {
                self.silences
                    .insert(silence.id.clone(), (record.at, silence.silence()));
            }
            StateBody::Progress { offsets } => {
                for (topic, partition, offset) in offsets {
                    let highest = self.handled.entry((topic, partition)).or_insert(offset);
                    *highest = (*highest).max(offset);
                }
            }
            StateBody::Escalation {
                incident_id,
                current,
                ..
            } => match current {
                Some(escalation) => {
                    self.escalations.insert(incident_id, *escalation);
                }
                None => {
                    self.escalations.remove(&incident_id);
                }
            },
            StateBody::Decided { notification } => {
                self.decided
                    .insert(notification.dedup_key.clone(), (record.at, *notification));
            }
            StateBody::Routed { dedup_key } => {
                self.decided.remove(&dedup_key);
            }
            StateBody::Queued { delivery } => {
                self.deliveries
                    .insert(delivery.key.clone(), (record.at, Some(*delivery)));
            }
            StateBody::Finished { key, outcome } => {
                if outcome == Finish::Delivered {
                    // Claimed when queued; the record may be gone (compaction): then now.
                    let at = self.deliveries.get(&key).map_or(record.at, |(at, _)| *at);
                    self.deliveries.insert(key, (at, None));
                } else {
                    self.deliveries.remove(&key);
                }
            }
        }
    }

    /// A tombstone for `key` (a record with no payload): what it deleted is not restored.
    pub fn forget(&mut self, key: &str) {
        match StateKey::decode(key) {
            Some(StateKey::Delivery(delivery)) => {
                self.deliveries.remove(&delivery);
            }
            Some(StateKey::Notification(dedup_key)) => {
                self.decided.remove(&dedup_key);
            }
            Some(StateKey::Escalation(incident_id)) => {
                self.escalations.remove(&incident_id);
            }
            Some(StateKey::Silence(id)) => {
                self.silences.remove(&id);
            }
            Some(StateKey::Leader | StateKey::Progress { .. }) | None => {}
        }
    }

    /// What to restore at `now`: older notifications than `horizon` are not sent, claims
    /// older than `window` are forgotten, at most `max_claims` (the newest).
    pub fn finish(
        self,
        now: Timestamp,
        horizon: Duration,
        window: Duration,
        max_claims: usize,
    ) -> Restored {
        let since = |age: Duration| now - chrono::TimeDelta::from_std(age).unwrap_or_default();
        let (horizon, window) = (since(horizon), since(window));
        let mut escalations: Vec<Escalation> = self.escalations.into_values().collect();
        escalations.sort_by_key(|e| (e.opened_at, e.incident_id));
        let total_decided = self.decided.len();
        let mut decided: Vec<(Timestamp, Notification)> = self
            .decided
            .into_values()
            .filter(|(at, _)| *at >= horizon)
            .collect();
        decided.sort_by_key(|a| a.0);
        let mut pending = Vec::new();
        let mut expired_deliveries = 0;
        let mut claims = Vec::new();
        for (key, (at, delivery)) in self.deliveries {
            match delivery {
                Some(delivery) if delivery.accepted_at >= horizon => pending.push(delivery),
                Some(_) => expired_deliveries += 1,
                None => {}
            }
            if at >= window {
                claims.push((key, at));
            }
        }
        pending.sort_by(|a, b| (a.accepted_at, &a.key).cmp(&(b.accepted_at, &b.key)));
        claims.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        let skip = claims.len().saturating_sub(max_claims);
        // One that ran out while no worker was active (so no tombstone) is over all the same.
        let mut silences: Vec<(Timestamp, Silence)> = self
            .silences
            .into_values()
            .filter(|(_, silence)| silence.end > now)
            .collect();
        silences.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
        Restored {
            silences: silences.into_iter().map(|(_, s)| s).collect(),
            epoch: self.filter.newest(),
            escalations,
            notifications: ResumedNotifications {
                expired_notifications: total_decided - decided.len(),
                expired_deliveries,
                decided: decided.into_iter().map(|(_, n)| n).collect(),
                deliveries: ResumedDeliveries {
                    pending,
                    claims: claims.into_iter().skip(skip).collect(),
                },
            },
            handled: self.handled,
            stale: self.stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_written_as_they_always_were_and_read_back() {
        let keys = [
            (StateKey::Leader, "leader"),
            (StateKey::Escalation(42), "42"),
            (StateKey::Silence("s1".into()), "s|s1"),
            (
                StateKey::Notification("7/escalation/L1/0".into()),
                "n|7/escalation/L1/0",
            ),
            (
                StateKey::Delivery("k|webhook|webhook".into()),
                "d|k|webhook|webhook",
            ),
            (
                StateKey::Progress {
                    topic: "incidents-created".into(),
                    partition: 3,
                },
                "p|incidents-created|3",
            ),
        ];
        for (key, written) in keys {
            assert_eq!(key.encode(), written);
            assert_eq!(StateKey::decode(written), Some(key));
        }
        assert_eq!(StateKey::decode("x|unknown"), None);
        assert_eq!(StateKey::decode("p|no-partition"), None);
    }

    fn at(seconds: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn record(epoch: u64, seconds: i64, body: StateBody) -> StateRecord {
        StateRecord {
            epoch,
            worker: format!("worker-{epoch}"),
            at: at(seconds),
            body,
        }
    }

    fn escalation(id: IncidentId, level: u32, due: i64) -> Escalation {
        Escalation {
            incident_id: id,
            title: format!("incident {id}"),
            priority: crate::core::event::Priority::Critical,
            level,
            opened_at: at(0),
            level_since: at(0),
            next_step_at: Some(at(due)),
            repeats: 0,
            acknowledged: None,
        }
    }

    use crate::notify::fixtures::notification;

    fn claim_keys(restored: &Restored) -> Vec<&str> {
        let claims = &restored.notifications.deliveries.claims;
        claims.iter().map(|(key, _)| key.as_str()).collect()
    }

    fn delivery(key: &str, seconds: i64) -> Delivery {
        crate::notify::fixtures::webhook_delivery(key, at(seconds))
    }

    #[test]
    fn an_acknowledgement_names_who_and_round_trips() {
        let change = EscalationChange::Acknowledged {
            incident_id: 9,
            level: 2,
            by: "alice".into(),
            time_to_acknowledge_secs: 3.0,
        };
        let current = escalation(9, 2, 100);
        let record = record(3, 1, StateBody::escalation(&change, Some(&current)));
        let StateBody::Escalation {
            change,
            acknowledged_by,
            ..
        } = &record.body
        else {
            panic!("{record:?}")
        };
        assert_eq!(*change, EscalationChangeKind::Acknowledged);
        assert_eq!(acknowledged_by.as_deref(), Some("alice"));
        assert_eq!(record.body.key().encode(), "9");
        let bytes = serde_json::to_vec(&record).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""kind":"escalation""#), "{text}");
        assert!(text.contains(r#""epoch":3"#), "{text}");
        assert_eq!(StateRecord::decode(Some(&bytes)), Some(record));
        assert_eq!(StateRecord::decode(Some(b"not json")), None);
    }

    #[test]
    fn escalations_notifications_and_deliveries_are_restored_as_last_published() {
        let mut restorer = Restorer::default();
        let opened = EscalationChange::Opened {
            incident_id: 1,
            level: 1,
            priority: crate::core::event::Priority::Critical,
        };
        let closed = EscalationChange::Closed {
            incident_id: 2,
            level: 1,
            acknowledged: false,
        };
        for body in [
            StateBody::Lease,
            StateBody::escalation(&opened, Some(&escalation(1, 1, 50))),
            StateBody::escalation(&opened, Some(&escalation(2, 1, 50))),
            StateBody::escalation(&opened, Some(&escalation(1, 2, 80))),
            StateBody::escalation(&closed, None),
            StateBody::Decided {
                notification: Box::new(notification("routed")),
            },
            StateBody::Decided {
                notification: Box::new(notification("owed")),
            },
            StateBody::Routed {
                dedup_key: "routed".into(),
            },
            StateBody::Queued {
                delivery: Box::new(delivery("sent", 10)),
            },
            StateBody::Queued {
                delivery: Box::new(delivery("in-flight", 11)),
            },
            StateBody::Queued {
                delivery: Box::new(delivery("gave-up", 12)),
            },
            StateBody::Finished {
                key: "sent".into(),
                outcome: Finish::Delivered,
            },
            StateBody::Finished {
                key: "gave-up".into(),
                outcome: Finish::GaveUp,
            },
            StateBody::Progress {
                offsets: vec![("t".into(), 0, 40), ("t".into(), 1, 7)],
            },
            StateBody::Progress {
                offsets: vec![("t".into(), 0, 41)],
            },
        ] {
            restorer.push(record(1, 10, body));
        }
        let hour = Duration::from_secs(3600);
        let restored = restorer.finish(at(20), hour, hour, 100);
        assert_eq!(restored.epoch, 1);
        assert_eq!(restored.escalations, vec![escalation(1, 2, 80)]);
        assert_eq!(restored.notifications.decided, vec![notification("owed")]);
        assert_eq!(
            restored.notifications.deliveries.pending,
            vec![delivery("in-flight", 11)]
        );
        let claims = claim_keys(&restored);
        assert_eq!(claims.len(), 2);
        assert!(claims.contains(&"sent") && claims.contains(&"in-flight"));
        assert_eq!(restored.handled[&("t".to_string(), 0)], 41);
        assert_eq!(restored.handled[&("t".to_string(), 1)], 7);
        assert_eq!(restored.stale, 0);
    }

    /// The scenario test shortens the escalation levels to see steps within a test run; this
    /// follows the shipped policy through a clock passed in: an escalation the predecessor
    /// opened, restored from its state record, steps once at the successor's first tick after
    /// it fell due during the failover, and not again.
    #[test]
    fn a_step_due_during_a_takeover_fires_once_under_the_shipped_policy() {
        use crate::core::engine::{Effect, Engine, Input};
        let config = crate::config::Config::built_in();
        let first_level = Duration::from_secs(config.escalation.levels[0].timeout_secs);
        let json = include_str!("../../../tests/fixtures/events/incident_created.json");
        let event = crate::core::event::decode(Some(json.as_bytes()), 1 << 20).unwrap();
        let opened_at = at(0);
        let mut predecessor = Engine::new(config.engine_config());
        let input = Input::Event {
            event,
            source: None,
            raw: json.into(),
        };
        let mut restorer = Restorer::default();
        for effect in predecessor.apply(input, opened_at) {
            if let Effect::Escalation(change) = effect {
                let current = predecessor.escalations().get(123);
                restorer.push(record(1, 0, StateBody::escalation(&change, current)));
            }
        }
        let hour = Duration::from_secs(3600);
        let restored = restorer.finish(at(1), hour, hour, 100);
        assert_eq!(restored.escalations.len(), 1, "the predecessor opened one");

        let mut successor = Engine::new(config.engine_config());
        successor.restore_escalations(restored.escalations);
        let raised = |effects: Vec<Effect>| {
            effects
                .iter()
                .filter(|e| matches!(e, Effect::Escalation(EscalationChange::Raised { .. })))
                .count()
        };
        let due = opened_at + chrono::TimeDelta::from_std(first_level).unwrap();
        let before = due - chrono::TimeDelta::seconds(1);
        assert_eq!(
            raised(successor.apply(Input::Tick, before)),
            0,
            "not yet due"
        );
        // The failover took the step's moment and 20 s more: it fires at the first tick.
        let first_tick = due + chrono::TimeDelta::seconds(20);
        assert_eq!(raised(successor.apply(Input::Tick, first_tick)), 1);
        assert_eq!(raised(successor.apply(Input::Tick, first_tick)), 0, "once");
        assert_eq!(successor.escalations().get(123).unwrap().level, 2);
    }

    #[test]
    fn silences_are_restored_until_a_tombstone_or_their_end() {
        use crate::core::silence::{Matcher, SilenceOrigin};
        let silence = |id: &str, end: i64| StateBody::Silence {
            silence: Box::new(SilenceState {
                id: id.into(),
                matcher: Matcher {
                    incident_ids: vec![7],
                    ..Matcher::default()
                },
                reason: "db failover".into(),
                created_by: "alice".into(),
                origin: SilenceOrigin::Operator,
                start: at(0),
                end: at(end),
            }),
        };
        let record = record(1, 5, silence("s1", 3600));
        assert_eq!(record.body.key().encode(), "s|s1");
        let bytes = serde_json::to_vec(&record).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""kind":"silence""#), "{text}");
        assert_eq!(StateRecord::decode(Some(&bytes)), Some(record.clone()));

        let mut restorer = Restorer::default();
        restorer.push(record);
        restorer.push(self::record(1, 6, silence("s2", 3600)));
        restorer.push(self::record(1, 7, silence("s3", 3600)));
        // Ran out while no worker was active: no tombstone, over all the same.
        restorer.push(self::record(1, 8, silence("s4", 15)));
        restorer.forget("s|s2");
        let hour = Duration::from_secs(3600);
        let restored = restorer.finish(at(20), hour, hour, 100);
        let ids: Vec<&str> = restored.silences.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["s1", "s3"], "oldest set first");
        let s1 = &restored.silences[0];
        assert_eq!(
            (s1.created_by.as_str(), s1.reason.as_str(), s1.end),
            ("alice", "db failover", at(3600))
        );
        assert_eq!(s1.matcher.incident_ids, [7]);
        assert!(s1.recurrence.is_none());
    }

    #[test]
    fn tombstones_delete_what_they_name() {
        let mut restorer = Restorer::default();
        let opened = |incident_id| EscalationChange::Opened {
            incident_id,
            level: 1,
            priority: crate::core::event::Priority::Critical,
        };
        for body in [
            StateBody::escalation(&opened(3), Some(&escalation(3, 1, 50))),
            StateBody::escalation(&opened(4), Some(&escalation(4, 1, 50))),
            StateBody::Decided {
                notification: Box::new(notification("owed")),
            },
            StateBody::Queued {
                delivery: Box::new(delivery("sent", 10)),
            },
            StateBody::Queued {
                delivery: Box::new(delivery("in-flight", 11)),
            },
        ] {
            restorer.push(record(1, 10, body));
        }
        // Closed, routed, and a claim that left its window.
        for key in ["3", "n|owed", "d|sent"] {
            restorer.forget(key);
        }
        let hour = Duration::from_secs(3600);
        let restored = restorer.finish(at(20), hour, hour, 100);
        assert_eq!(restored.escalations, vec![escalation(4, 1, 50)]);
        assert!(restored.notifications.decided.is_empty());
        assert_eq!(
            restored.notifications.deliveries.pending,
            vec![delivery("in-flight", 11)]
        );
        let claims = claim_keys(&restored);
        assert_eq!(claims, ["in-flight"]);
    }

    #[test]
    fn a_stale_leaders_records_after_a_newer_epoch_are_ignored() {
        let mut restorer = Restorer::default();
        restorer.push(record(
            1,
            0,
            StateBody::Queued {
                delivery: Box::new(delivery("old-leader", 0)),
            },
        ));
        // The new leader announces epoch 2; then the paused old one wakes and writes.
        restorer.push(record(2, 5, StateBody::Lease));
        restorer.push(record(
            1,
            6,
            StateBody::Finished {
                key: "old-leader".into(),
                outcome: Finish::GaveUp,
            },
        ));
        let opened = EscalationChange::Opened {
            incident_id: 7,
            level: 1,
            priority: crate::core::event::Priority::Critical,
        };
        restorer.push(record(
            1,
            6,
            StateBody::escalation(&opened, Some(&escalation(7, 1, 60))),
        ));
        let hour = Duration::from_secs(3600);
        let restored = restorer.finish(at(10), hour, hour, 100);
        assert_eq!(restored.epoch, 2);
        assert_eq!(restored.stale, 2);
        assert!(restored.escalations.is_empty(), "stale escalation restored");
        assert_eq!(
            restored.notifications.deliveries.pending,
            vec![delivery("old-leader", 0)],
            "the stale leader's mark counted"
        );
        let mut filter = EpochFilter::default();
        assert!(filter.admit(&record(2, 0, StateBody::Lease)));
        assert!(!filter.admit(&record(1, 0, StateBody::Lease)));
        assert!(filter.admit(&record(3, 0, StateBody::Lease)));
        assert_eq!(filter.newest(), 3);
    }

    #[test]
    fn old_notifications_are_not_resent_and_claims_are_bounded() {
        let mut restorer = Restorer::default();
        restorer.push(record(
            1,
            0,
            StateBody::Decided {
                notification: Box::new(notification("ancient")),
            },
        ));
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            restorer.push(record(
                1,
                100 + i as i64,
                StateBody::Queued {
                    delivery: Box::new(delivery(key, 100 + i as i64)),
                },
            ));
        }
        let restored = restorer.finish(
            at(200),
            Duration::from_secs(150),
            Duration::from_secs(3600),
            2,
        );
        assert!(
            restored.notifications.decided.is_empty(),
            "older than the horizon"
        );
        // Counted, as a standalone start counts what its journal marks expired.
        assert_eq!(restored.notifications.expired_notifications, 1);
        assert_eq!(restored.notifications.expired_deliveries, 0);
        assert_eq!(restored.notifications.deliveries.pending.len(), 3);
        let claims = claim_keys(&restored);
        assert_eq!(claims, ["b", "c"], "the newest, oldest first");
    }
}
