//! The escalation state machine: which incidents are paging whom, at which level, and when the
//! next step is due. Pure: every transition takes `now` and returns what changed.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use super::event::{IncidentId, Priority, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationLevel {
    pub name: String,
    /// How long this level has to acknowledge before the next level is paged.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationPolicy {
    pub levels: Vec<EscalationLevel>,
    /// Once the last level is reached it is paged again this often...
    pub repeat_interval: Duration,
    /// ...this many times, then the escalation waits for a person.
    pub max_repeats: u32,
}

impl Default for EscalationPolicy {
    fn default() -> Self {
        let level = |name: &str, minutes: u64| EscalationLevel {
            name: name.into(),
            timeout: Duration::from_secs(60 * minutes),
        };
        Self {
            levels: vec![
                level("on-call", 5),
                level("secondary", 10),
                level("engineering-manager", 15),
            ],
            repeat_interval: Duration::from_secs(15 * 60),
            max_repeats: 3,
        }
    }
}

impl EscalationPolicy {
    pub fn top_level(&self) -> u32 {
        self.levels.len().max(1) as u32
    }

    /// Levels beyond the configured ones reuse the last timeout.
    pub fn timeout(&self, level: u32) -> Duration {
        let index = (level.max(1) as usize - 1).min(self.levels.len().saturating_sub(1));
        self.levels
            .get(index)
            .map(|l| l.timeout)
            .unwrap_or(Duration::from_secs(300))
    }

    pub fn level_name(&self, level: u32) -> String {
        self.levels
            .get(level.max(1) as usize - 1)
            .map(|l| l.name.clone())
            .unwrap_or_else(|| format!("level-{level}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub by: String,
    pub at: Timestamp,
}

/// Serializable both ways: team mode carries it on `<topic>.state` for a new active worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub incident_id: IncidentId,
    pub title: String,
    pub priority: Priority,
    /// 1 is the first level.
    pub level: u32,
    pub opened_at: Timestamp,
    pub level_since: Timestamp,
    /// When the next automatic step happens; `None` once acknowledged or exhausted.
    pub next_step_at: Option<Timestamp>,
    /// How many times the top level has been paged again.
    pub repeats: u32,
    pub acknowledged: Option<Acknowledgement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RaiseCause {
    /// Nobody acknowledged in time.
    Timeout,
    /// The producer sent `escalation_triggered`.
    Triggered,
}

/// What happened to an escalation; the engine turns these into effects.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum EscalationChange {
    Opened {
        incident_id: IncidentId,
        level: u32,
        priority: Priority,
    },
    Raised {
        incident_id: IncidentId,
        from_level: u32,
        to_level: u32,
        cause: RaiseCause,
    },
    Repeated {
        incident_id: IncidentId,
        level: u32,
        repeat: u32,
    },
    Exhausted {
        incident_id: IncidentId,
        level: u32,
    },
    Acknowledged {
        incident_id: IncidentId,
        level: u32,
        by: String,
        time_to_acknowledge_secs: f64,
    },
    Closed {
        incident_id: IncidentId,
        level: u32,
        acknowledged: bool,
    },
    /// The acknowledgement no longer holds: it timed out, or an operator took it back.
    Unacknowledged {
        incident_id: IncidentId,
        level: u32,
        cause: UnacknowledgeCause,
        /// Who had acknowledged it.
        was_acknowledged_by: String,
        acknowledged_at: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UnacknowledgeCause {
    /// Open for `escalation.ack_timeout_secs` after the acknowledgement.
    AckTimeout,
    Operator {
        by: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcknowledgeError {
    #[error("incident {0} has no open escalation")]
    NotEscalated(IncidentId),
    #[error("incident {incident_id} was already acknowledged by {by}")]
    AlreadyAcknowledged { incident_id: IncidentId, by: String },
    #[error("incident {0} is not acknowledged")]
    NotAcknowledged(IncidentId),
}

/// Every escalation the console is tracking, keyed by incident.
#[derive(Debug, Clone)]
pub struct EscalationBook {
    policy: EscalationPolicy,
    escalations: BTreeMap<IncidentId, Escalation>,
    capacity: usize,
}

fn after(at: Timestamp, duration: Duration) -> Timestamp {
    at + TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

impl EscalationBook {
    pub fn new(policy: EscalationPolicy, capacity: usize) -> Self {
        Self {
            policy,
            escalations: BTreeMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn policy(&self) -> &EscalationPolicy {
        &self.policy
    }

    pub fn get(&self, incident_id: IncidentId) -> Option<&Escalation> {
        self.escalations.get(&incident_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Escalation> {
        self.escalations.values()
    }

    pub fn len(&self) -> usize {
        self.escalations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.escalations.is_empty()
    }

    pub fn open_count(&self) -> usize {
        self.iter().filter(|e| e.acknowledged.is_none()).count()
    }

    /// Opens an escalation at `level`, or raises an existing one to it. Lower or equal levels
    /// are a no-op, so a re-delivered event changes nothing.
    pub fn escalate(
        &mut self,
        incident_id: IncidentId,
        title: &str,
        priority: Priority,
        level: u32,
        cause: RaiseCause,
        now: Timestamp,
    ) -> Vec<EscalationChange> {
        if !priority.escalates() {
            return Vec::new();
        }
        let level = level.max(1);
        let timeout = self.policy.timeout(level);
        if let Some(existing) = self.escalations.get_mut(&incident_id) {
            if level <= existing.level {
                return Vec::new();
            }
            let from_level = existing.level;
            existing.level = level;
            existing.level_since = now;
            existing.next_step_at = Some(after(now, timeout));
            existing.repeats = 0;
            // A person raising it further means the earlier acknowledgement no longer covers it.
            existing.acknowledged = None;
            existing.priority = existing.priority.max(priority);
            return vec![EscalationChange::Raised {
                incident_id,
                from_level,
                to_level: level,
                cause,
            }];
        }
        self.make_room();
        self.escalations.insert(
            incident_id,
            Escalation {
                incident_id,
                title: title.to_string(),
                priority,
                level,
                opened_at: now,
                level_since: now,
                next_step_at: Some(after(now, timeout)),
                repeats: 0,
                acknowledged: None,
            },
        );
        vec![EscalationChange::Opened {
            incident_id,
            level,
            priority,
        }]
    }

    /// Keeps the book bounded: acknowledged escalations go first, oldest first.
    fn make_room(&mut self) {
        while self.escalations.len() >= self.capacity {
            let victim = self
                .escalations
                .values()
                .filter(|e| e.acknowledged.is_some())
                .min_by_key(|e| e.opened_at)
                .or_else(|| self.escalations.values().min_by_key(|e| e.opened_at))
                .map(|e| e.incident_id);
            match victim {
                Some(id) => {
                    self.escalations.remove(&id);
                }
                None => break,
            }
        }
    }

    /// Puts back an escalation remembered from before a restart, as it was. Its deadline may
    /// have passed meanwhile; the next `tick` takes the step that is due.
    pub fn restore(&mut self, escalation: Escalation) {
        if !self.escalations.contains_key(&escalation.incident_id) {
            self.make_room();
        }
        self.escalations.insert(escalation.incident_id, escalation);
    }

    pub fn update_title(&mut self, incident_id: IncidentId, title: &str) {
        if let Some(escalation) = self.escalations.get_mut(&incident_id)
            && escalation.title != title
        {
            escalation.title = title.to_string();
        }
    }

    pub fn acknowledge(
        &mut self,
        incident_id: IncidentId,
        by: &str,
        now: Timestamp,
    ) -> Result<EscalationChange, AcknowledgeError> {
        let escalation = self
            .escalations
            .get_mut(&incident_id)
            .ok_or(AcknowledgeError::NotEscalated(incident_id))?;
        if let Some(ack) = &escalation.acknowledged {
            return Err(AcknowledgeError::AlreadyAcknowledged {
                incident_id,
                by: ack.by.clone(),
            });
        }
        escalation.acknowledged = Some(Acknowledgement {
            by: by.to_string(),
            at: now,
        });
        escalation.next_step_at = None;
        let waited = (now - escalation.opened_at).max(TimeDelta::zero());
        Ok(EscalationChange::Acknowledged {
            incident_id,
            level: escalation.level,
            by: by.to_string(),
            time_to_acknowledge_secs: waited.as_seconds_f64(),
        })
    }

    pub fn close(&mut self, incident_id: IncidentId) -> Option<EscalationChange> {
        self.escalations
            .remove(&incident_id)
            .map(|e| EscalationChange::Closed {
                incident_id,
                level: e.level,
                acknowledged: e.acknowledged.is_some(),
            })
    }

    /// Takes an acknowledgement back: the escalation pages again at its level from `now`, its
    /// next step one level timeout later.
    pub fn unacknowledge(
        &mut self,
        incident_id: IncidentId,
        cause: UnacknowledgeCause,
        now: Timestamp,
    ) -> Result<EscalationChange, AcknowledgeError> {
        let escalation = self
            .escalations
            .get_mut(&incident_id)
            .ok_or(AcknowledgeError::NotEscalated(incident_id))?;
        let ack = escalation
            .acknowledged
            .take()
            .ok_or(AcknowledgeError::NotAcknowledged(incident_id))?;
        escalation.level_since = now;
        escalation.next_step_at = Some(after(now, self.policy.timeout(escalation.level)));
        Ok(EscalationChange::Unacknowledged {
            incident_id,
            level: escalation.level,
            cause,
            was_acknowledged_by: ack.by,
            acknowledged_at: ack.at,
        })
    }

    /// Acknowledged escalations whose acknowledgement is `timeout` old at `now`.
    pub fn ack_expired(&self, timeout: Duration, now: Timestamp) -> Vec<IncidentId> {
        self.iter()
            .filter(|e| {
                e.acknowledged
                    .as_ref()
                    .is_some_and(|a| after(a.at, timeout) <= now)
            })
            .map(|e| e.incident_id)
            .collect()
    }

    /// After a silence: a step that fell due while it held gives the level a fresh timeout
    /// from `now` (the page itself is the engine's), instead of stepping at once.
    pub fn rearm(&mut self, incident_id: IncidentId, now: Timestamp) {
        if let Some(escalation) = self.escalations.get_mut(&incident_id)
            && escalation.acknowledged.is_none()
            && escalation.next_step_at.is_some_and(|due| due <= now)
        {
            escalation.next_step_at = Some(after(now, self.policy.timeout(escalation.level)));
        }
    }

    /// Steps every escalation whose deadline has passed. One step per escalation per call:
    /// after a long pause the console pages one level at a time rather than all at once.
    pub fn tick(&mut self, now: Timestamp) -> Vec<EscalationChange> {
        self.tick_except(now, |_| false)
    }

    /// As `tick`, leaving alone the escalations `held` says are held (silenced): their due
    /// steps wait, so a window that starts stops the repeats already scheduled.
    pub fn tick_except(
        &mut self,
        now: Timestamp,
        held: impl Fn(&Escalation) -> bool,
    ) -> Vec<EscalationChange> {
        let top = self.policy.top_level();
        let mut changes = Vec::new();
        for escalation in self.escalations.values_mut() {
            let Some(due) = escalation.next_step_at else {
                continue;
            };
            if due > now || held(escalation) {
                continue;
            }
            let incident_id = escalation.incident_id;
            if escalation.level < top {
                let from_level = escalation.level;
                escalation.level += 1;
                escalation.level_since = now;
                escalation.next_step_at = Some(after(now, self.policy.timeout(escalation.level)));
                changes.push(EscalationChange::Raised {
                    incident_id,
                    from_level,
                    to_level: escalation.level,
                    cause: RaiseCause::Timeout,
                });
            } else if escalation.repeats < self.policy.max_repeats {
                escalation.repeats += 1;
                escalation.next_step_at = Some(after(now, self.policy.repeat_interval));
                changes.push(EscalationChange::Repeated {
                    incident_id,
                    level: escalation.level,
                    repeat: escalation.repeats,
                });
            } else {
                escalation.next_step_at = None;
                changes.push(EscalationChange::Exhausted {
                    incident_id,
                    level: escalation.level,
                });
            }
        }
        changes
    }

    /// The earliest pending deadline, so a runtime can sleep exactly until it.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.iter().filter_map(|e| e.next_step_at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(seconds: i64) -> Timestamp {
        chrono::Utc
            .timestamp_opt(1_700_000_000 + seconds, 0)
            .unwrap()
    }

    fn policy() -> EscalationPolicy {
        EscalationPolicy {
            levels: vec![
                EscalationLevel {
                    name: "one".into(),
                    timeout: Duration::from_secs(60),
                },
                EscalationLevel {
                    name: "two".into(),
                    timeout: Duration::from_secs(120),
                },
            ],
            repeat_interval: Duration::from_secs(300),
            max_repeats: 2,
        }
    }

    fn book() -> EscalationBook {
        EscalationBook::new(policy(), 100)
    }

    fn open(
        book: &mut EscalationBook,
        id: IncidentId,
        priority: Priority,
    ) -> Vec<EscalationChange> {
        book.escalate(id, "title", priority, 1, RaiseCause::Triggered, t(0))
    }

    #[test]
    fn only_high_and_critical_open_escalations() {
        let cases = [
            (Priority::Low, false),
            (Priority::Medium, false),
            (Priority::High, true),
            (Priority::Critical, true),
        ];
        for (priority, opens) in cases {
            let mut book = book();
            let changes = open(&mut book, 1, priority);
            assert_eq!(!changes.is_empty(), opens, "{priority}");
            assert_eq!(book.len(), usize::from(opens));
        }
    }

    #[test]
    fn opening_sets_the_first_deadline() {
        let mut book = book();
        let changes = open(&mut book, 7, Priority::High);
        assert_eq!(
            changes,
            vec![EscalationChange::Opened {
                incident_id: 7,
                level: 1,
                priority: Priority::High
            }]
        );
        assert_eq!(book.get(7).unwrap().next_step_at, Some(t(60)));
        assert_eq!(book.next_deadline(), Some(t(60)));
    }

    #[test]
    fn unacknowledged_escalation_walks_levels_then_repeats_then_stops() {
        let mut book = book();
        open(&mut book, 1, Priority::Critical);
        let table = [
            (59, vec![]),
            (
                60,
                vec![EscalationChange::Raised {
                    incident_id: 1,
                    from_level: 1,
                    to_level: 2,
                    cause: RaiseCause::Timeout,
                }],
            ),
            (179, vec![]),
            (
                180,
                vec![EscalationChange::Repeated {
                    incident_id: 1,
                    level: 2,
                    repeat: 1,
                }],
            ),
            (
                480,
                vec![EscalationChange::Repeated {
                    incident_id: 1,
                    level: 2,
                    repeat: 2,
                }],
            ),
            (
                780,
                vec![EscalationChange::Exhausted {
                    incident_id: 1,
                    level: 2,
                }],
            ),
            (10_000, vec![]),
        ];
        for (at, expected) in table {
            assert_eq!(book.tick(t(at)), expected, "at {at}s");
        }
        assert_eq!(book.get(1).unwrap().next_step_at, None);
    }

    #[test]
    fn a_late_tick_takes_one_step_at_a_time() {
        let mut book = book();
        open(&mut book, 1, Priority::High);
        let changes = book.tick(t(10_000));
        assert_eq!(changes.len(), 1);
        assert_eq!(book.get(1).unwrap().level, 2);
        assert_eq!(book.get(1).unwrap().next_step_at, Some(t(10_120)));
    }

    #[test]
    fn acknowledging_stops_the_clock_and_records_who_and_when() {
        let mut book = book();
        open(&mut book, 1, Priority::High);
        let change = book.acknowledge(1, "alice", t(45)).unwrap();
        assert_eq!(
            change,
            EscalationChange::Acknowledged {
                incident_id: 1,
                level: 1,
                by: "alice".into(),
                time_to_acknowledge_secs: 45.0
            }
        );
        assert_eq!(book.tick(t(10_000)), vec![]);
        let ack = book.get(1).unwrap().acknowledged.clone().unwrap();
        assert_eq!((ack.by.as_str(), ack.at), ("alice", t(45)));
        assert_eq!(book.open_count(), 0);
    }

    #[test]
    fn acknowledge_errors() {
        let mut book = book();
        assert_eq!(
            book.acknowledge(9, "a", t(0)),
            Err(AcknowledgeError::NotEscalated(9))
        );
        open(&mut book, 9, Priority::High);
        book.acknowledge(9, "a", t(1)).unwrap();
        assert_eq!(
            book.acknowledge(9, "b", t(2)),
            Err(AcknowledgeError::AlreadyAcknowledged {
                incident_id: 9,
                by: "a".into()
            })
        );
    }

    #[test]
    fn triggering_a_higher_level_raises_and_clears_the_acknowledgement() {
        let mut book = book();
        open(&mut book, 1, Priority::High);
        book.acknowledge(1, "a", t(5)).unwrap();
        let changes = book.escalate(
            1,
            "title",
            Priority::Critical,
            2,
            RaiseCause::Triggered,
            t(10),
        );
        assert_eq!(
            changes,
            vec![EscalationChange::Raised {
                incident_id: 1,
                from_level: 1,
                to_level: 2,
                cause: RaiseCause::Triggered
            }]
        );
        let escalation = book.get(1).unwrap();
        assert_eq!(escalation.acknowledged, None);
        assert_eq!(escalation.priority, Priority::Critical);
        assert_eq!(escalation.next_step_at, Some(t(130)));
    }

    #[test]
    fn triggering_the_same_or_lower_level_is_idempotent() {
        let mut book = book();
        book.escalate(1, "t", Priority::High, 2, RaiseCause::Triggered, t(0));
        for level in [1, 2] {
            assert_eq!(
                book.escalate(1, "t", Priority::High, level, RaiseCause::Triggered, t(1)),
                vec![]
            );
        }
    }

    #[test]
    fn closing_removes_and_reports_acknowledgement() {
        let mut book = book();
        open(&mut book, 1, Priority::High);
        open(&mut book, 2, Priority::High);
        book.acknowledge(2, "a", t(1)).unwrap();
        assert_eq!(
            book.close(1),
            Some(EscalationChange::Closed {
                incident_id: 1,
                level: 1,
                acknowledged: false
            })
        );
        assert_eq!(
            book.close(2),
            Some(EscalationChange::Closed {
                incident_id: 2,
                level: 1,
                acknowledged: true
            })
        );
        assert_eq!(book.close(2), None);
        assert!(book.is_empty());
    }

    #[test]
    fn the_book_is_bounded_and_evicts_acknowledged_first() {
        let mut book = EscalationBook::new(policy(), 2);
        book.escalate(1, "t", Priority::High, 1, RaiseCause::Triggered, t(0));
        book.escalate(2, "t", Priority::High, 1, RaiseCause::Triggered, t(1));
        book.acknowledge(2, "a", t(2)).unwrap();
        book.escalate(3, "t", Priority::High, 1, RaiseCause::Triggered, t(3));
        let ids: Vec<_> = book.iter().map(|e| e.incident_id).collect();
        assert_eq!(ids, vec![1, 3]);
    }

    #[test]
    fn a_restored_escalation_keeps_its_state_and_steps_when_due() {
        let mut original = book();
        open(&mut original, 4, Priority::High);
        let saved = original.get(4).unwrap().clone();
        let mut restarted = book();
        restarted.restore(saved.clone());
        assert_eq!(restarted.get(4), Some(&saved));
        assert_eq!(restarted.tick(t(30)), vec![]);
        assert_eq!(restarted.tick(t(61)).len(), 1);
        assert_eq!(restarted.get(4).unwrap().level, 2);
    }

    #[test]
    fn levels_beyond_the_policy_reuse_the_last_timeout() {
        let policy = policy();
        assert_eq!(policy.timeout(5), Duration::from_secs(120));
        assert_eq!(policy.level_name(5), "level-5");
        assert_eq!(policy.level_name(1), "one");
    }
}
