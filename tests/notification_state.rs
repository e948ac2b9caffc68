//! The notification state machine, as the journal and the notifier's claims keep it, under
//! random interleavings of decide, route, deliver, retry, fail, restart, prune and the clock
//! moving on (hours and days at a time, so the dedup window, the resume horizon and retention
//! are all crossed with the shipped settings). Whatever the order:
//! - a delivery is never sent twice within the dedup window (less the longest a delivery
//!   stays in flight, its give-up time);
//! - nothing is sent that the journal does not hold as pending, so an expired notification or
//!   delivery is never sent;
//! - what a restart resumes is never older than the resume horizon.
//!
//! The journal is the real one (SQLite, the writer's SQL); the notifier is played by a model
//! that follows the dispatcher and channel workers: claim, record queued and routed, then send.

mod journal_common;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use chrono::TimeDelta;
use incident_console::config::Config;
use incident_console::core::engine::Notification;
use incident_console::core::event::Timestamp;
use incident_console::journal::{Journal, JournalConfig, JournalRecord};
use incident_console::notify::{AttemptOutcome, Claims, Delivery, DeliveryChange, NotifyConfig};
use journal_common::{decided, delivery, notification, t};
use rand::{Rng, SeedableRng};

const RECIPIENTS: [&str; 2] = ["ana@example.com", "bo@example.com"];

struct Model {
    journal: Journal,
    claims: Claims,
    config: NotifyConfig,
    now: Timestamp,
    /// The notifier's queue: decided, not yet routed.
    queue: VecDeque<Notification>,
    /// In the channels: queued, not finished.
    in_flight: Vec<Delivery>,
    next_id: i64,
    /// Recently decided, for re-deliveries of their events.
    recent: Vec<(Notification, Timestamp)>,
    sends: BTreeMap<String, Vec<Timestamp>>,
    trace: Vec<String>,
}

impl Model {
    fn new(dir: &std::path::Path, config: NotifyConfig, retention_days: u32) -> Self {
        let journal = Journal::open(
            &dir.join("journal.sqlite3"),
            &JournalConfig {
                retention_days,
                ..JournalConfig::default()
            },
        )
        .unwrap();
        Self {
            journal,
            claims: Claims::new(window(&config), config.dedup.max_entries),
            config,
            now: t(0),
            queue: VecDeque::new(),
            in_flight: Vec::new(),
            next_id: 1,
            recent: Vec::new(),
            sends: BTreeMap::new(),
            trace: Vec::new(),
        }
    }

    fn write(&mut self, records: Vec<JournalRecord>) {
        self.journal.write(&records).unwrap();
    }

    fn decide(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        let key = format!("{id}/incident_created");
        self.write(vec![decided(&key, id, self.now)]);
        let notification = notification(&key, id);
        self.recent.push((notification.clone(), self.now));
        self.queue.push_back(notification);
    }

    /// A re-read Kafka message decides the same notification again, minutes later.
    fn redeliver(&mut self, rng: &mut impl Rng) {
        let horizon = TimeDelta::minutes(10);
        self.recent.retain(|(_, at)| *at > self.now - horizon);
        if self.recent.is_empty() {
            return;
        }
        let (notification, _) = self.recent[rng.random_range(0..self.recent.len())].clone();
        self.write(vec![decided(
            &notification.dedup_key,
            notification.incident_id,
            self.now,
        )]);
        self.queue.push_back(notification);
    }

    fn route(&mut self) {
        let Some(notification) = self.queue.pop_front() else {
            return;
        };
        let mut admitted = Vec::new();
        for recipient in RECIPIENTS {
            let delivery = delivery(
                &notification.dedup_key,
                recipient,
                notification.incident_id,
                self.now,
            );
            if self.claims.claim(&delivery.key, self.now) {
                admitted.push(delivery);
            }
        }
        let mut changes: Vec<JournalRecord> = admitted
            .iter()
            .map(|d| JournalRecord::Delivery(DeliveryChange::Queued(Box::new(d.clone()))))
            .collect();
        changes.push(JournalRecord::Delivery(DeliveryChange::Routed {
            dedup_key: notification.dedup_key.clone(),
            at: self.now,
        }));
        self.write(changes);
        self.in_flight.extend(admitted);
    }

    fn state_of(&self, delivery: &Delivery) -> (String, String) {
        let connection = journal_common::inspect(self.journal.path());
        let delivery_state: String = connection
            .query_row(
                "SELECT state FROM deliveries WHERE key = ?1",
                [&delivery.key],
                |row| row.get(0),
            )
            .unwrap();
        let notification_state: String = connection
            .query_row(
                "SELECT state FROM notifications WHERE dedup_key = ?1",
                [delivery.key.split('|').next().unwrap()],
                |row| row.get(0),
            )
            .unwrap_or_else(|_| "pruned".into());
        (delivery_state, notification_state)
    }

    fn finish(&mut self, index: usize, rng: &mut impl Rng) {
        if self.in_flight.is_empty() {
            return;
        }
        let delivery = self.in_flight.remove(index % self.in_flight.len());
        let give_up = TimeDelta::seconds(self.config.delivery.give_up_after_secs as i64);
        let outcome = if self.now - delivery.accepted_at > give_up || rng.random_bool(0.2) {
            self.claims.release(&delivery.key);
            AttemptOutcome::Failed {
                error: "550".into(),
            }
        } else {
            let (delivery_state, notification_state) = self.state_of(&delivery);
            assert_eq!(
                delivery_state,
                "pending",
                "sent {} while the journal holds it {delivery_state}\n{}",
                delivery.key,
                self.trace.join("\n")
            );
            assert_ne!(notification_state, "expired", "{}", self.trace.join("\n"));
            let sends = self.sends.entry(delivery.key.clone()).or_default();
            if let Some(last) = sends.last() {
                let gap = self.now - *last;
                let least = TimeDelta::from_std(window(&self.config)).unwrap() - give_up;
                assert!(
                    gap >= least,
                    "{} sent twice {gap} apart\n{}",
                    delivery.key,
                    self.trace.join("\n")
                );
            }
            sends.push(self.now);
            AttemptOutcome::Delivered
        };
        self.write(vec![JournalRecord::Delivery(DeliveryChange::Attempted {
            key: delivery.key.clone(),
            at: self.now,
            outcome,
        })]);
    }

    fn retry(&mut self, index: usize) {
        if let Some(delivery) = self.in_flight.get(index % self.in_flight.len().max(1)) {
            let key = delivery.key.clone();
            self.write(vec![JournalRecord::Delivery(DeliveryChange::Attempted {
                key,
                at: self.now,
                outcome: AttemptOutcome::Retrying {
                    error: "421".into(),
                },
            })]);
        }
    }

    /// The process stops (or dies) and starts again: memory is gone, the journal is not.
    fn restart(&mut self) {
        let dedup = &self.config.dedup;
        let horizon = Duration::from_secs(dedup.resume_horizon_secs);
        let resumed = self
            .journal
            .resume_notifications(self.now, horizon, window(&self.config), dedup.max_entries)
            .unwrap();
        let oldest = self.now - TimeDelta::from_std(horizon).unwrap();
        for delivery in &resumed.deliveries.pending {
            assert!(
                delivery.accepted_at >= oldest,
                "resumed a delivery older than the horizon"
            );
        }
        self.claims = Claims::new(window(&self.config), dedup.max_entries);
        for (key, at) in &resumed.deliveries.claims {
            self.claims.restore(key, *at);
        }
        self.queue = resumed.decided.into();
        self.in_flight = resumed.deliveries.pending;
    }
}

fn window(config: &NotifyConfig) -> Duration {
    Duration::from_secs(config.dedup.window_secs)
}

fn run(seed: u64, steps: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    // The shipped notification and journal settings, but for retention: two days, so that
    // pruning happens within a run (it must still cover the dedup window, as validated).
    let config = Config::built_in().notifications;
    let mut model = Model::new(dir.path(), config, 2);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..steps {
        let roll = rng.random_range(0..100);
        let index = rng.random_range(0..64);
        model
            .trace
            .push(format!("{} roll {roll} index {index}", model.now));
        match roll {
            0..=19 => model.decide(),
            20..=24 => model.redeliver(&mut rng),
            25..=44 => model.route(),
            45..=64 => model.finish(index, &mut rng),
            65..=69 => model.retry(index),
            70..=77 => model.restart(),
            78..=80 => {
                model.journal.prune(model.now).unwrap();
            }
            81..=93 => model.now += TimeDelta::seconds(rng.random_range(1..600)),
            _ => model.now += TimeDelta::seconds(rng.random_range(600..3 * 86_400)),
        }
    }
    model.sends.values().map(Vec::len).sum()
}

#[test]
fn no_interleaving_sends_twice_or_sends_what_expired() {
    let mut sent = 0;
    for seed in 0..40 {
        sent += run(seed, 150);
    }
    // The runs do send: the invariants were checked on real sends.
    assert!(sent > 400, "only {sent} sends");
}

#[test]
fn the_shipped_horizon_fits_the_shipped_window_and_retention() {
    let config = Config::built_in();
    let dedup = &config.notifications.dedup;
    assert!(dedup.resume_horizon_secs <= dedup.window_secs);
    assert!(u64::from(config.journal.retention_days) * 86_400 >= dedup.window_secs);
    assert_eq!(dedup.resume_horizon_secs, 3600);
}
