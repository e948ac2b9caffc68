//! A realistic stream of incident events: incidents are opened, picked up, reassigned,
//! commented on, escalated and resolved, with a burst now and then. The generator is
//! deterministic for a seed; `produce` sends its output to any broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::TimeDelta;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::core::event::{
    AssignmentChanged, AttachmentUploaded, CommentAdded, EscalationTriggered, IncidentCreated,
    IncidentEvent, IncidentId, Priority, Status, StatusUpdated, Timestamp,
};

const TITLES: &[&str] = &[
    "Checkout API 5xx rate above 2%",
    "Primary database replication lag",
    "Payment gateway timeouts",
    "Login latency p99 over SLO",
    "Disk 95% full on kafka-broker-3",
    "TLS certificate expires in 48h",
    "Search cluster yellow",
    "Message queue consumer lag growing",
    "CDN cache hit ratio dropped",
    "Nightly billing job failed",
    "Server Down",
    "Memory leak in notification-service",
    "DNS resolution failures in eu-west",
    "Elevated 429s from partner API",
];
const CATEGORIES: &[&str] = &["hardware", "network", "database", "application", "security"];
const PEOPLE: &[&str] = &[
    "jane.smith",
    "john.doe",
    "amir.haddad",
    "li.wei",
    "maria.garcia",
    "sam.okafor",
    "priya.nair",
];
const COMMENTS: &[&str] = &[
    "Looking into it now.",
    "Rolled back the last deploy, watching graphs.",
    "Customer support reports impact in the EU.",
    "Root cause looks like connection pool exhaustion.",
    "Mitigation in place, keeping it open for an hour.",
];
const FILES: &[(&str, &str)] = &[
    ("heap-dump.hprof", "application/octet-stream"),
    ("grafana-latency.png", "image/png"),
    ("stacktrace.txt", "text/plain"),
    ("pg-stat-activity.csv", "text/csv"),
];

#[derive(Debug, Clone)]
struct OpenIncident {
    id: IncidentId,
    title: String,
    priority: Priority,
    status: Status,
    assignee: Option<String>,
    escalation_level: u32,
}

/// What the simulator emits: a valid event, or (now and then, when asked) a poison payload.
#[derive(Debug, Clone)]
pub enum Simulated {
    Event(Box<IncidentEvent>),
    Poison(Vec<u8>),
}

impl Simulated {
    pub fn key(&self) -> String {
        match self {
            Self::Event(event) => event.incident_id().to_string(),
            Self::Poison(_) => "poison".into(),
        }
    }

    pub fn payload(&self) -> Vec<u8> {
        match self {
            Self::Event(event) => serde_json::to_vec(event).expect("events serialise"),
            Self::Poison(bytes) => bytes.clone(),
        }
    }
}

pub struct Simulator {
    rng: ChaCha8Rng,
    next_id: IncidentId,
    open: Vec<OpenIncident>,
    clock: Timestamp,
    poison_ratio: f64,
}

/// Bounded so that a long run keeps a realistic working set rather than growing forever.
const MAX_OPEN: usize = 40;

impl Simulator {
    pub fn new(seed: u64, poison_ratio: f64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            next_id: 1000,
            open: Vec::new(),
            clock: Timestamp::MIN_UTC,
            poison_ratio,
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    fn person(&mut self) -> String {
        self.pick(PEOPLE).to_string()
    }

    /// The next message, stamped `now` (or just after the previous one if the clock is behind).
    pub fn next(&mut self, now: Timestamp) -> Simulated {
        self.clock = now.max(self.clock + TimeDelta::milliseconds(1));
        if self.poison_ratio > 0.0 && self.rng.random_bool(self.poison_ratio.min(1.0)) {
            let poison: &[&[u8]] = &[
                b"{\"incident_id\": 1, \"title\": \"truncated",
                b"not json at all",
                b"{\"event_type\":\"incident_deleted\",\"incident_id\":7}",
                b"{\"event_type\":\"comment_added\",\"incident_id\":\"seven\"}",
            ];
            return Simulated::Poison(self.pick(poison).to_vec());
        }
        let roll = self.rng.random_range(0..100);
        if self.open.len() < 3 || (roll < 22 && self.open.len() < MAX_OPEN) {
            return Simulated::Event(Box::new(self.create()));
        }
        let index = self.rng.random_range(0..self.open.len());
        let event = match roll {
            0..=44 => self.progress(index),
            45..=62 => self.comment(index),
            63..=72 => self.attachment(index),
            73..=86 => self.reassign(index),
            _ => self.escalate(index),
        };
        Simulated::Event(Box::new(event))
    }

    fn create(&mut self) -> IncidentEvent {
        let id = self.next_id;
        self.next_id += 1;
        let priority = match self.rng.random_range(0..100) {
            0..=29 => Priority::Low,
            30..=64 => Priority::Medium,
            65..=89 => Priority::High,
            _ => Priority::Critical,
        };
        let title = self.pick(TITLES).to_string();
        let assignee = self.rng.random_bool(0.7).then(|| self.person());
        self.open.push(OpenIncident {
            id,
            title: title.clone(),
            priority,
            status: Status::Open,
            assignee: assignee.clone(),
            escalation_level: 1,
        });
        IncidentEvent::IncidentCreated(IncidentCreated {
            incident_id: id,
            title,
            priority,
            status: Status::Open,
            category: self.pick(CATEGORIES).to_string(),
            reported_by: self.person(),
            assigned_to: assignee,
            created_at: self.clock,
        })
    }

    fn progress(&mut self, index: usize) -> IncidentEvent {
        let old_status = self.open[index].status;
        let new_status = match old_status {
            Status::Open => Status::InProgress,
            _ if self.rng.random_bool(0.85) => Status::Resolved,
            _ => Status::Open,
        };
        let incident = if new_status.is_terminal() {
            self.open.swap_remove(index)
        } else {
            self.open[index].status = new_status;
            self.open[index].clone()
        };
        IncidentEvent::StatusUpdated(StatusUpdated {
            incident_id: incident.id,
            title: incident.title,
            old_status,
            new_status,
            priority: incident.priority,
            assigned_to: incident.assignee,
            updated_at: self.clock,
        })
    }

    fn comment(&mut self, index: usize) -> IncidentEvent {
        let author = self.person();
        let comment = self.pick(COMMENTS).to_string();
        let incident = &self.open[index];
        IncidentEvent::CommentAdded(CommentAdded {
            incident_id: incident.id,
            title: incident.title.clone(),
            author,
            comment,
            created_at: self.clock,
        })
    }

    fn attachment(&mut self, index: usize) -> IncidentEvent {
        let (filename, content_type) = *self.pick(FILES);
        let uploaded_by = self.person();
        let size_bytes = self.rng.random_range(1_000..50_000_000);
        let incident = &self.open[index];
        IncidentEvent::AttachmentUploaded(AttachmentUploaded {
            incident_id: incident.id,
            title: incident.title.clone(),
            filename: filename.into(),
            size_bytes,
            content_type: content_type.into(),
            uploaded_by,
            uploaded_at: self.clock,
        })
    }

    fn reassign(&mut self, index: usize) -> IncidentEvent {
        let new_assignee = self.person();
        let changed_by = self.person();
        let incident = &mut self.open[index];
        let old_assignee = incident.assignee.replace(new_assignee.clone());
        IncidentEvent::AssignmentChanged(AssignmentChanged {
            incident_id: incident.id,
            title: incident.title.clone(),
            priority: incident.priority,
            old_assignee,
            new_assignee,
            changed_by,
            updated_at: self.clock,
        })
    }

    fn escalate(&mut self, index: usize) -> IncidentEvent {
        let triggered_by = self.person();
        let incident = &mut self.open[index];
        if !incident.priority.escalates() {
            incident.priority = Priority::High;
        }
        // Three levels, as the shipped policy has; a repeat at the top changes nothing.
        incident.escalation_level = (incident.escalation_level + 1).min(3);
        IncidentEvent::EscalationTriggered(EscalationTriggered {
            incident_id: incident.id,
            title: incident.title.clone(),
            priority: incident.priority,
            level: incident.escalation_level,
            reason: "customer impact confirmed".into(),
            triggered_by,
            triggered_at: self.clock,
        })
    }

    /// How many events to send in the next tick: usually one, sometimes a burst.
    pub fn burst_size(&mut self) -> u32 {
        if self.rng.random_bool(0.03) {
            self.rng.random_range(5..25)
        } else {
            1
        }
    }
}

/// Keeps a producer at most `max_ahead` events ahead of a consumer in the same process.
/// Until the consumer's counter is known, it counts as zero.
#[derive(Debug, Clone)]
pub struct Pace {
    pub consumed: tokio::sync::watch::Receiver<Option<Arc<AtomicU64>>>,
    pub max_ahead: u64,
}

impl Pace {
    fn consumed(&self) -> u64 {
        self.consumed
            .borrow()
            .as_ref()
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }

    /// Waits until fewer than `max_ahead` of the `sent` events are unread, or `stop` fires.
    /// Returns false on stop.
    async fn wait_for_room(
        &self,
        sent: u64,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        while sent.saturating_sub(self.consumed()) >= self.max_ahead {
            // The consumer's counter is a plain atomic bumped per message on its hot path; a
            // short poll here costs the flood nothing, where a wake-up per message would.
            tokio::select! {
                _ = stop.changed() => return false,
                _ = tokio::time::sleep(PACE_POLL) => {}
            }
        }
        true
    }
}

const PACE_POLL: Duration = Duration::from_millis(2);
const MIN_TICK: Duration = Duration::from_millis(1);

#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// Events per second; 0 sends as fast as the producer takes them.
    pub rate: f64,
    pub count: Option<u64>,
    pub seed: u64,
    pub poison_ratio: f64,
    /// `None` produces regardless of any reader (the `simulate` command).
    pub pace: Option<Pace>,
}

/// Sends the simulated stream to `topic` until `count` events are sent or `stop` fires.
/// Returns how many were sent.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    options: &ProduceOptions,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let mut simulator = Simulator::new(options.seed, options.poison_ratio);
    let mut sent = 0u64;
    // tokio's timer has a 1 ms resolution: above 1,000 events/s a tick sends several, so the
    // asked rate is kept rather than silently capped near 1,000/s.
    let interval = (options.rate > 0.0)
        .then(|| Duration::from_secs_f64((1.0 / options.rate).max(MIN_TICK.as_secs_f64())));
    let per_tick = interval.map_or(1.0, |period| options.rate * period.as_secs_f64());
    let mut owed = 0.0f64;
    let mut ticker = interval.map(|period| {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    let mut pending = Vec::new();
    'outer: loop {
        if let Some(ticker) = ticker.as_mut() {
            tokio::select! {
                _ = stop.changed() => break,
                _ = ticker.tick() => {}
            }
        } else if *stop.borrow() {
            break;
        }
        let burst = if ticker.is_some() {
            owed += per_tick;
            let due = owed.floor();
            owed -= due;
            (0..due as u64).map(|_| simulator.burst_size()).sum()
        } else {
            1
        };
        for _ in 0..burst {
            if options.count.is_some_and(|count| sent >= count) {
                break 'outer;
            }
            if let Some(pace) = &options.pace
                && !pace.wait_for_room(sent, &mut stop).await
            {
                break 'outer;
            }
            let item = simulator.next(chrono::Utc::now());
            let (key, payload) = (item.key(), item.payload());
            let record = FutureRecord::to(topic).key(&key).payload(&payload);
            // Queue without waiting for each delivery; librdkafka batches. When its queue is
            // full, wait for the oldest deliveries before sending more.
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((error, _)) => {
                    tracing::debug!(%error, "producer queue full; waiting for deliveries");
                    if !confirm(&mut pending, &mut stop).await? {
                        return Ok(stopped(sent, 0));
                    }
                    let record = FutureRecord::to(topic).key(&key).payload(&payload);
                    tokio::select! {
                        result = producer.send(record, Duration::from_secs(30)) => {
                            result.map_err(|(e, _)| anyhow::anyhow!("produce failed: {e}"))?;
                        }
                        _ = stopped_signal(&mut stop) => return Ok(stopped(sent, 1)),
                    }
                }
            }
            sent += 1;
            // A paced stream starts once its first event is delivered: until the broker hands
            // the idempotent producer its id (up to a second on a fresh Apache broker), every
            // event would wait in its queue and then arrive as one burst, which a reader sees
            // as latency that is the producer's, not its own (docs/performance.md).
            if sent == 1 && ticker.is_some() && !confirm(&mut pending, &mut stop).await? {
                return Ok(stopped(sent, 1));
            }
        }
        if pending.len() >= 10_000 && !confirm(&mut pending, &mut stop).await? {
            return Ok(stopped(sent, 0));
        }
    }
    let unconfirmed = pending.len();
    if !confirm(&mut pending, &mut stop).await? {
        return Ok(stopped(sent, unconfirmed as u64));
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(sent)
}

/// Waits for every pending delivery, unless a stop comes first (an unreachable broker keeps
/// deliveries pending for `message.timeout.ms`, five minutes by default, and SIGINT must not
/// wait that long). Returns false when stopped.
async fn confirm(
    pending: &mut Vec<rdkafka::producer::DeliveryFuture>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<bool> {
    for delivery in pending.drain(..) {
        tokio::select! {
            result = delivery => check_delivery(result)?,
            _ = stopped_signal(stop) => return Ok(false),
        }
    }
    Ok(true)
}

/// Resolves once a stop has been asked (at once if it already was).
async fn stopped_signal(stop: &mut tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        // The stop sender is gone: nobody can ask any more.
        std::future::pending::<()>().await;
    }
}

fn stopped(sent: u64, unconfirmed: u64) -> u64 {
    tracing::warn!(
        sent,
        unconfirmed,
        "stopped by a signal; messages the broker had not confirmed may not have been sent"
    );
    sent
}

fn check_delivery(
    result: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> anyhow::Result<()> {
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(anyhow::anyhow!("delivery failed: {error}")),
        Err(_) => Err(anyhow::anyhow!("delivery was cancelled")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{DEFAULT_MAX_PAYLOAD_BYTES, EventType, decode};
    use chrono::TimeZone;

    fn at(step: i64) -> Timestamp {
        chrono::Utc.timestamp_opt(1_700_000_000 + step, 0).unwrap()
    }

    #[test]
    fn same_seed_same_stream() {
        let mut a = Simulator::new(7, 0.0);
        let mut b = Simulator::new(7, 0.0);
        for step in 0..200 {
            assert_eq!(a.next(at(step)).payload(), b.next(at(step)).payload());
        }
    }

    #[test]
    fn stream_covers_all_six_types_and_decodes() {
        let mut simulator = Simulator::new(1, 0.0);
        let mut seen = std::collections::BTreeSet::new();
        for step in 0..500 {
            let payload = simulator.next(at(step)).payload();
            let event = decode(Some(&payload), DEFAULT_MAX_PAYLOAD_BYTES).expect("valid event");
            seen.insert(event.event_type());
        }
        assert_eq!(seen.len(), EventType::ALL.len(), "{seen:?}");
        assert!(simulator.open.len() <= MAX_OPEN);
    }

    #[test]
    fn poison_ratio_produces_undecodable_payloads() {
        let mut simulator = Simulator::new(3, 0.5);
        let rejected = (0..200)
            .filter(|&step| {
                decode(
                    Some(&simulator.next(at(step)).payload()),
                    DEFAULT_MAX_PAYLOAD_BYTES,
                )
                .is_err()
            })
            .count();
        assert!((50..150).contains(&rejected), "{rejected}");
    }
}
