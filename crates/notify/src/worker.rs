//! The delivery tasks. One dispatcher takes notifications from the outbox, routes them,
//! drops duplicates, applies the per-channel rate limit and hands deliveries to one worker per
//! channel. A worker runs up to `concurrency` attempts at once and keeps failed ones in a
//! timer queue until their backoff has passed, so a dead channel holds up nothing but itself.

use std::cmp::Reverse;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::{ChannelStatus, NotifierStatus};
use incident_core::engine::{Notification, NotificationKind};

use super::config::{Channel, KINDS};
use super::policy::{Backoff, RateLimiter};
use super::routing::{Router, digest_sample};
use super::send::{Outcome, Senders};
use super::store::{
    AttemptOutcome, Claims, Delivery, DeliveryChange, DeliveryKind, DeliveryRecorder,
};

/// Counters behind `Notifier::status`.
#[derive(Debug, Default)]
pub struct Board {
    pub delivered: u64,
    pub failed: u64,
    pub deduplicated: u64,
    pub rate_limited: u64,
    pub channels: BTreeMap<Channel, ChannelStatus>,
    /// Deliveries handed to a channel and not yet finished.
    pub in_channels: usize,
}

impl Board {
    fn channel(&mut self, channel: Channel) -> &mut ChannelStatus {
        self.channels
            .entry(channel)
            .or_insert_with(|| ChannelStatus {
                name: channel.to_string(),
                ..ChannelStatus::default()
            })
    }

    pub fn fail(&mut self, channel: Channel, reason: &str, detail: &str) {
        self.failed += 1;
        let status = self.channel(channel);
        status.failed += 1;
        *status.failures.entry(reason.to_string()).or_default() += 1;
        status.last_error = Some(format!("{reason}: {detail}"));
    }
}

/// State shared by `Notifier` and its tasks.
pub struct Shared {
    pub board: Mutex<Board>,
    /// Held only for in-memory look-ups, never across I/O or an await.
    pub claims: Mutex<Claims>,
    /// The journal, when there is one: every delivery change is recorded there.
    pub recorder: Option<Arc<dyn DeliveryRecorder>>,
    /// Notifications refused because the outbox was full, by kind (index in `KINDS`).
    pub overflowed: [AtomicU64; KINDS.len()],
    /// Set by `submit` on the first overflow since the dispatcher last reported them.
    pub overflow_pending_report: AtomicBool,
    /// Notifications put in the outbox, and those the dispatcher has finished routing: the
    /// difference is what waits in (or is being taken from) the outbox.
    pub accepted: AtomicU64,
    pub routed: AtomicU64,
    /// When the outbox last refused a notification (the refill reads only older decisions).
    last_overflow: Mutex<Option<std::time::Instant>>,
}

impl Shared {
    pub fn new(
        claims: Claims,
        recorder: Option<Arc<dyn DeliveryRecorder>>,
        channels: &[Channel],
    ) -> Self {
        let mut board = Board::default();
        for channel in channels {
            board.channel(*channel);
        }
        Self {
            board: Mutex::new(board),
            claims: Mutex::new(claims),
            recorder,
            overflowed: Default::default(),
            overflow_pending_report: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            routed: AtomicU64::new(0),
            last_overflow: Mutex::new(None),
        }
    }

    /// A panicking task must not take the counters with it.
    pub fn board(&self) -> MutexGuard<'_, Board> {
        self.board
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn claims(&self) -> MutexGuard<'_, Claims> {
        self.claims
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands `changes` to the journal (waiting while its queue is full).
    pub async fn record(&self, changes: Vec<DeliveryChange>) {
        if let Some(recorder) = &self.recorder
            && !changes.is_empty()
        {
            recorder.record(changes).await;
        }
    }

    /// A delivery failed for good: its key is released and the failure recorded.
    pub fn failed_change(&self, key: &str, error: &str) -> DeliveryChange {
        self.claims().release(key);
        DeliveryChange::Attempted {
            key: key.to_string(),
            at: chrono::Utc::now(),
            outcome: AttemptOutcome::Failed {
                error: error.to_string(),
            },
        }
    }

    pub fn overflowed_now(&self) {
        *self
            .last_overflow
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(std::time::Instant::now());
    }

    pub fn last_overflow(&self) -> Option<std::time::Instant> {
        *self
            .last_overflow
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn overflowed_total(&self) -> u64 {
        self.overflowed
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }

    pub fn status(&self) -> NotifierStatus {
        // Routed is read first: a notification counted in both `routed` and `in_channels`
        // can only make the depth seem larger for a moment, never zero while work is left.
        let routed = self.routed.load(Ordering::SeqCst);
        let board = self.board();
        let accepted = self.accepted.load(Ordering::SeqCst);
        let outbox_queued = accepted.saturating_sub(routed) as usize;
        NotifierStatus {
            outbox_depth: outbox_queued + board.in_channels,
            delivered: board.delivered,
            failed: board.failed,
            deduplicated: board.deduplicated,
            rate_limited: board.rate_limited,
            outbox_overflowed: self.overflowed_total(),
            channels: board.channels.values().cloned().collect(),
        }
    }
}

pub struct Dispatcher {
    pub router: Router,
    pub shared: Arc<Shared>,
    pub limiters: HashMap<Channel, RateLimiter>,
    pub channels: HashMap<Channel, ChannelQueues>,
    /// Per channel, what found its queue full and waits here for room.
    pub parked: HashMap<Channel, Parked>,
    /// How many deliveries one channel may have parked; beyond, they are given up.
    pub park_capacity: usize,
}

/// Deliveries that found their channel's queue full, waiting in the dispatcher for room, in
/// order. A burst (a worker catching up after a restart or a takeover decides hundreds of
/// pages at once) is absorbed instead of given up; only beyond `park_capacity` is a delivery
/// given up as `queue_full`.
#[derive(Default)]
pub struct Parked {
    deliveries: VecDeque<Delivery>,
    /// Parked deliveries per incident: an urgent one waits behind its incident's.
    incidents: HashMap<i64, usize>,
}

impl Parked {
    fn push(&mut self, delivery: Delivery) {
        if let Some(incident) = delivery.incident_id {
            *self.incidents.entry(incident).or_default() += 1;
        }
        self.deliveries.push_back(delivery);
    }

    fn left(&mut self, incident: Option<i64>) {
        if let Some(incident) = incident
            && let Some(count) = self.incidents.get_mut(&incident)
        {
            *count -= 1;
            if *count == 0 {
                self.incidents.remove(&incident);
            }
        }
    }

    /// Whether `delivery` must wait behind what is parked: everything does, but an urgent
    /// delivery none of whose incident's events are parked.
    fn holds_back(&self, delivery: &Delivery) -> bool {
        !self.deliveries.is_empty()
            && (!is_urgent(delivery)
                || delivery
                    .incident_id
                    .is_some_and(|incident| self.incidents.contains_key(&incident)))
    }
}

/// How often parked deliveries are offered to their channel again.
const PARK_RETRY: Duration = Duration::from_millis(20);

/// A channel's two queues, both bounded. Pages wait in `normal`; what closes an alert or
/// reports on the console itself goes in `urgent`, ahead of pages: when a flood of pages
/// fills a channel, an acknowledgement must still reach PagerDuty (a dropped one leaves the
/// alert paging people), and soon.
#[derive(Clone)]
pub struct ChannelQueues {
    pub normal: mpsc::Sender<Delivery>,
    pub urgent: mpsc::Sender<Delivery>,
}

impl ChannelQueues {
    /// Queues `delivery` in its lane without waiting; gives it back when that lane is full.
    pub fn offer(&self, delivery: Delivery) -> Option<Delivery> {
        let lane = if is_urgent(&delivery) {
            &self.urgent
        } else {
            &self.normal
        };
        lane.try_send(delivery).err().map(|error| match error {
            mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
        })
    }
}

/// PagerDuty's acknowledge and resolve close alerts; self-alerts are about the console itself
/// (often about the very flood that fills the queues) and are already limited per alert
/// (`self_alerts.min_interval_secs`). Neither is held back by the rate limiter, and both
/// jump the queue of pages.
pub fn is_urgent(delivery: &Delivery) -> bool {
    (delivery.channel == Channel::PagerDuty
        && delivery.kind != DeliveryKind::Notification(NotificationKind::Escalation))
        || delivery.kind == DeliveryKind::Notification(NotificationKind::SelfAlert)
}

const OVERFLOW_REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// Notifications routed together: their deliveries are recorded in one journal commit.
const DISPATCH_BATCH: usize = 256;

impl Dispatcher {
    pub async fn run(mut self, mut outbox: mpsc::Receiver<Notification>) {
        let mut reported_overflow = 0u64;
        let mut overflow_report = tokio::time::interval(OVERFLOW_REPORT_INTERVAL);
        overflow_report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(DISPATCH_BATCH);
        loop {
            let next_digest = self.limiters.values().filter_map(|l| l.next_due()).min();
            let parked = self.has_parked();
            tokio::select! {
                _ = tokio::time::sleep(PARK_RETRY), if parked => self.unpark(),
                count = outbox.recv_many(&mut batch, DISPATCH_BATCH) => {
                    if count == 0 {
                        break;
                    }
                    self.dispatch(std::mem::take(&mut batch)).await;
                    self.shared.routed.fetch_add(count as u64, Ordering::SeqCst);
                }
                _ = sleep_until(next_digest), if next_digest.is_some() => {
                    self.send_digests(false).await;
                }
                _ = overflow_report.tick() => {
                    reported_overflow = self.report_overflow(reported_overflow);
                }
            }
        }
        // Shutting down: what the limiter held back is summarised now rather than lost.
        self.send_digests(true).await;
        self.report_overflow(reported_overflow);
        // Parked deliveries are handed over as room appears (the notifier's shutdown bounds
        // the wait; what is left is pending in the journal, sent at the next start).
        while self.has_parked() {
            self.unpark();
            tokio::time::sleep(PARK_RETRY).await;
        }
    }

    fn has_parked(&self) -> bool {
        self.parked.values().any(|p| !p.deliveries.is_empty())
    }

    /// Offers parked deliveries to their channels again, in order, as far as there is room.
    fn unpark(&mut self) {
        for (channel, parked) in &mut self.parked {
            let Some(queues) = self.channels.get(channel) else {
                continue;
            };
            while let Some(delivery) = parked.deliveries.pop_front() {
                let incident = delivery.incident_id;
                if let Some(refused) = queues.offer(delivery) {
                    parked.deliveries.push_front(refused);
                    break;
                }
                parked.left(incident);
            }
        }
    }

    /// Logs a summary of notifications refused since the last summary.
    fn report_overflow(&self, reported: u64) -> u64 {
        let total = self.shared.overflowed_total();
        if total > reported {
            let by_kind: Vec<String> = KINDS
                .iter()
                .zip(&self.shared.overflowed)
                .filter(|(_, count)| count.load(Ordering::Relaxed) > 0)
                .map(|(kind, count)| format!("{}={}", kind.as_str(), count.load(Ordering::Relaxed)))
                .collect();
            tracing::warn!(
                dropped_since_last_report = total - reported,
                dropped_total = total,
                by_kind = by_kind.join(" "),
                "notification outbox was full: notifications were not sent"
            );
            self.shared
                .overflow_pending_report
                .store(false, Ordering::Relaxed);
        }
        total
    }

    /// Routes notifications: their deliveries are recorded as queued (durably: these are the
    /// claims that stop a second send after a crash), with the notifications as routed, before
    /// any of them reaches a channel.
    async fn dispatch(&mut self, notifications: Vec<Notification>) {
        let mut deliveries = Vec::new();
        let mut changes = Vec::new();
        for notification in &notifications {
            let admitted = self.route(notification);
            changes.extend(
                admitted
                    .iter()
                    .map(|delivery| DeliveryChange::Queued(Box::new(delivery.clone()))),
            );
            changes.push(DeliveryChange::Routed {
                dedup_key: notification.dedup_key.clone(),
                at: chrono::Utc::now(),
            });
            deliveries.extend(admitted);
        }
        self.shared.record(changes).await;
        self.forward_all(deliveries).await;
    }

    /// The deliveries of `notification` to send now: claimed (not duplicates) and admitted by
    /// the rate limiter.
    fn route(&mut self, notification: &Notification) -> Vec<Delivery> {
        let now = chrono::Utc::now();
        let routed = self.router.route(notification, now);
        if routed.deliveries.is_empty() && routed.unroutable.is_empty() {
            tracing::debug!(
                kind = notification.kind.as_str(),
                incident_id = notification.incident_id,
                audience = super::template::audience_label(&notification.audience),
                "notification (no channels configured for it)"
            );
            return Vec::new();
        }
        for problem in routed.unroutable {
            tracing::warn!(
                channel = %problem.channel,
                recipient = problem.recipient,
                incident_id = notification.incident_id,
                kind = notification.kind.as_str(),
                reason = problem.reason,
                "notification not sent: no usable address"
            );
            self.shared
                .board()
                .fail(problem.channel, problem.reason, &problem.recipient);
        }
        let mut admitted = Vec::new();
        for delivery in routed.deliveries {
            if !self.shared.claims().claim(&delivery.key, now) {
                tracing::debug!(key = delivery.key, "duplicate notification not sent again");
                let mut board = self.shared.board();
                board.deduplicated += 1;
                board.channel(delivery.channel).deduplicated += 1;
                continue;
            }
            let exempt = is_urgent(&delivery);
            if let Some(limiter) = self.limiters.get_mut(&delivery.channel)
                && !exempt
                && !limiter.admit(Instant::now())
            {
                limiter.suppress(
                    &delivery.recipient,
                    digest_sample(&delivery, &notification.title),
                    Instant::now(),
                );
                tracing::debug!(
                    key = delivery.key,
                    "rate limited; will be in the next digest"
                );
                let mut board = self.shared.board();
                board.rate_limited += 1;
                board.channel(delivery.channel).rate_limited += 1;
                continue;
            }
            admitted.push(delivery);
        }
        admitted
    }

    async fn send_digests(&mut self, flush_all: bool) {
        let now = Instant::now();
        let mut digests = Vec::new();
        for (channel, limiter) in &mut self.limiters {
            for (recipient, suppressed) in limiter.take_due(now, flush_all) {
                digests.push(self.router.digest(
                    *channel,
                    &recipient,
                    &suppressed,
                    chrono::Utc::now(),
                ));
            }
            if limiter.unreported > 0 {
                tracing::warn!(
                    channel = %channel,
                    count = limiter.unreported,
                    "rate-limited notifications to too many recipients to digest"
                );
                limiter.unreported = 0;
            }
        }
        digests.retain(|digest| self.shared.claims().claim(&digest.key, chrono::Utc::now()));
        let queued = digests
            .iter()
            .map(|digest| DeliveryChange::Queued(Box::new(digest.clone())))
            .collect();
        self.shared.record(queued).await;
        self.forward_all(digests).await;
    }

    /// Hands recorded deliveries to their channels; those that cannot be taken are failed.
    async fn forward_all(&mut self, deliveries: Vec<Delivery>) {
        let failed: Vec<DeliveryChange> = deliveries
            .into_iter()
            .filter_map(|delivery| self.forward(delivery))
            .collect();
        self.shared.record(failed).await;
    }

    /// Hands one delivery to its channel (or parks it while the channel's queue is full), or
    /// returns its failure.
    fn forward(&mut self, delivery: Delivery) -> Option<DeliveryChange> {
        let Some(queues) = self.channels.get(&delivery.channel) else {
            self.shared.board().fail(
                delivery.channel,
                "channel_disabled",
                "channel not configured",
            );
            return Some(
                self.shared
                    .failed_change(&delivery.key, "channel not configured"),
            );
        };
        self.shared.board().in_channels += 1;
        let parked = self.parked.entry(delivery.channel).or_default();
        let refused = if parked.holds_back(&delivery) {
            Some(delivery)
        } else {
            queues.offer(delivery)
        };
        // Taken by its queue: nothing to record.
        let delivery = refused?;
        if parked.deliveries.len() < self.park_capacity {
            parked.push(delivery);
            return None;
        }
        tracing::warn!(
            channel = %delivery.channel,
            recipient = delivery.recipient,
            incident_id = delivery.incident_id,
            "channel queue full: delivery given up (the channel is down or too slow)"
        );
        let mut board = self.shared.board();
        board.in_channels -= 1;
        board.fail(delivery.channel, "queue_full", "channel queue full");
        drop(board);
        Some(
            self.shared
                .failed_change(&delivery.key, "channel queue full"),
        )
    }
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(tokio::time::Instant::from_std(when)).await,
        None => std::future::pending().await,
    }
}

/// A delivery between attempts.
struct Attempt {
    delivery: Delivery,
    /// Attempts made so far.
    attempts: u32,
    give_up_at: Instant,
}

/// An attempt waiting for its backoff, ordered by due time (then arrival).
struct Waiting {
    due: Instant,
    seq: u64,
    attempt: Attempt,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

pub struct ChannelWorker {
    pub channel: Channel,
    pub senders: Arc<Senders>,
    pub backoff: Backoff,
    pub concurrency: usize,
    pub capacity: usize,
    pub shared: Arc<Shared>,
}

impl ChannelWorker {
    pub async fn run(
        self,
        mut queue: mpsc::Receiver<Delivery>,
        mut urgent: mpsc::Receiver<Delivery>,
    ) {
        let mut ready: VecDeque<Attempt> = VecDeque::new();
        let mut waiting: BinaryHeap<Reverse<Waiting>> = BinaryHeap::new();
        let mut in_flight: JoinSet<(Attempt, Outcome)> = JoinSet::new();
        let mut seq = 0u64;
        let mut closed = false;
        // Incidents with a PagerDuty event in flight or waiting for a retry.
        let mut busy: HashMap<i64, usize> = HashMap::new();
        loop {
            let mut index = 0;
            while in_flight.len() < self.concurrency && index < ready.len() {
                // An incident's PagerDuty events go out in order (trigger before acknowledge
                // before resolve): a first attempt waits while an earlier one is unfinished.
                if let Some(incident) = self.ordering_key(&ready[index])
                    && ready[index].attempts == 0
                    && busy.contains_key(&incident)
                {
                    index += 1;
                    continue;
                }
                let Some(attempt) = ready.remove(index) else {
                    break;
                };
                if let Some(incident) = self.ordering_key(&attempt)
                    && attempt.attempts == 0
                {
                    *busy.entry(incident).or_default() += 1;
                }
                let senders = self.senders.clone();
                let shared = self.shared.clone();
                in_flight.spawn(async move {
                    // A bug in one send must not lose the delivery's bookkeeping.
                    let outcome = AssertUnwindSafe(senders.send(&attempt.delivery))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Outcome::Failed {
                            reason: "panic".into(),
                            detail: "the send panicked".into(),
                        });
                    // Durable before the slot is free: at most `concurrency` sends per channel
                    // can be out without their mark, and so repeated after a crash.
                    if matches!(outcome, Outcome::Delivered) {
                        shared
                            .record(vec![DeliveryChange::Attempted {
                                key: attempt.delivery.key.clone(),
                                at: chrono::Utc::now(),
                                outcome: AttemptOutcome::Delivered,
                            }])
                            .await;
                    }
                    (attempt, outcome)
                });
            }
            let held = ready.len() + waiting.len() + in_flight.len();
            if closed && held == 0 && urgent.is_empty() {
                break;
            }
            let next_due = waiting.peek().map(|Reverse(w)| w.due);
            tokio::select! {
                biased;
                Some(delivery) = urgent.recv(), if held < 2 * self.capacity => {
                    // Whatever the dispatcher queued before it (an incident's trigger before
                    // its acknowledge) is in `queue` by now: taken too (bounded by that
                    // queue's capacity), so the urgent one can go after it, never before.
                    while let Ok(earlier) = queue.try_recv() {
                        ready.push_back(self.first_attempt(earlier));
                    }
                    // To the front, after its own incident's earlier events, which come along
                    // in their order (pages of other incidents wait behind them).
                    let attempt = self.first_attempt(delivery);
                    let mut front = Vec::new();
                    if let Some(incident) = self.ordering_key(&attempt) {
                        let mut index = 0;
                        while index < ready.len() {
                            if self.ordering_key(&ready[index]) == Some(incident) {
                                front.extend(ready.remove(index));
                            } else {
                                index += 1;
                            }
                        }
                    }
                    front.push(attempt);
                    for attempt in front.into_iter().rev() {
                        ready.push_front(attempt);
                    }
                }
                delivery = queue.recv(), if !closed && held < self.capacity => match delivery {
                    Some(delivery) => ready.push_back(self.first_attempt(delivery)),
                    None => closed = true,
                },
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => match joined {
                    Ok((attempt, outcome)) => {
                        let incident = self.ordering_key(&attempt);
                        let (again, change) = self.settle(attempt, outcome);
                        self.shared.record(change.into_iter().collect()).await;
                        if again.is_none()
                            && let Some(incident) = incident
                            && let Some(count) = busy.get_mut(&incident)
                        {
                            *count -= 1;
                            if *count == 0 {
                                busy.remove(&incident);
                            }
                        }
                        if let Some(again) = again {
                            seq += 1;
                            waiting.push(Reverse(Waiting { due: again.0, seq, attempt: again.1 }));
                            self.shared.board().channel(self.channel).retrying = waiting.len() as u64;
                        }
                    }
                    Err(error) => tracing::error!(channel = %self.channel, %error, "delivery task failed"),
                },
                _ = sleep_until(next_due), if next_due.is_some() => {
                    let now = Instant::now();
                    while let Some(Reverse(first)) = waiting.peek() {
                        if first.due > now {
                            break;
                        }
                        let Some(Reverse(due)) = waiting.pop() else { break };
                        // An urgent delivery waiting for this one (its incident's earlier
                        // event) is at the front: so is this retry.
                        let incident = self.ordering_key(&due.attempt);
                        let holds_up_urgent = incident.is_some() && ready.iter().any(|a| {
                            is_urgent(&a.delivery) && self.ordering_key(a) == incident
                        });
                        if holds_up_urgent {
                            ready.push_front(due.attempt);
                        } else {
                            ready.push_back(due.attempt);
                        }
                    }
                    self.shared.board().channel(self.channel).retrying = waiting.len() as u64;
                }
            }
        }
    }

    fn ordering_key(&self, attempt: &Attempt) -> Option<i64> {
        (self.channel == Channel::PagerDuty)
            .then_some(attempt.delivery.incident_id)
            .flatten()
    }

    fn first_attempt(&self, delivery: Delivery) -> Attempt {
        let left = (delivery.give_up_at - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        let now = Instant::now();
        Attempt {
            delivery,
            attempts: 0,
            // A deadline beyond the clock's range (a store's odd record) means "much later".
            give_up_at: now
                .checked_add(left)
                .unwrap_or(now + Duration::from_secs(30 * 24 * 3600)),
        }
    }

    /// Counts an attempt's outcome; returns when to try again, if it should be, and the
    /// change to record (a success was recorded by the attempt itself).
    fn settle(
        &self,
        mut attempt: Attempt,
        outcome: Outcome,
    ) -> (Option<(Instant, Attempt)>, Option<DeliveryChange>) {
        attempt.attempts += 1;
        let delivery = &attempt.delivery;
        let attempted = |outcome| DeliveryChange::Attempted {
            key: delivery.key.clone(),
            at: chrono::Utc::now(),
            outcome,
        };
        match outcome {
            Outcome::Delivered => {
                let mut board = self.shared.board();
                board.delivered += 1;
                board.in_channels = board.in_channels.saturating_sub(1);
                board.channel(self.channel).delivered += 1;
                tracing::debug!(
                    channel = %self.channel,
                    recipient = delivery.recipient,
                    kind = delivery.kind.as_str(),
                    incident_id = delivery.incident_id,
                    attempts = attempt.attempts,
                    "notification delivered"
                );
                (None, None)
            }
            Outcome::Retry {
                reason,
                detail,
                after,
            } => {
                let now = Instant::now();
                let delay = after
                    .unwrap_or_else(|| self.backoff.delay(attempt.attempts, rand::random::<f64>()));
                if now + delay > attempt.give_up_at {
                    let change =
                        self.give_up(&attempt, &reason, &format!("gave up retrying: {detail}"));
                    return (None, Some(change));
                }
                let change = attempted(AttemptOutcome::Retrying {
                    error: format!("{reason}: {detail}"),
                });
                tracing::info!(
                    channel = %self.channel,
                    recipient = delivery.recipient,
                    incident_id = delivery.incident_id,
                    attempt = attempt.attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    reason,
                    "delivery failed, will retry: {detail}"
                );
                self.shared.board().channel(self.channel).last_error =
                    Some(format!("{reason}: {detail}"));
                (Some((now + delay, attempt)), Some(change))
            }
            Outcome::Failed { reason, detail } => {
                let change = self.give_up(&attempt, &reason, &detail);
                (None, Some(change))
            }
        }
    }

    fn give_up(&self, attempt: &Attempt, reason: &str, detail: &str) -> DeliveryChange {
        let delivery = &attempt.delivery;
        tracing::warn!(
            channel = %self.channel,
            recipient = delivery.recipient,
            kind = delivery.kind.as_str(),
            incident_id = delivery.incident_id,
            attempts = attempt.attempts,
            reason,
            "notification not delivered: {detail}"
        );
        let mut board = self.shared.board();
        board.in_channels = board.in_channels.saturating_sub(1);
        board.fail(self.channel, reason, detail);
        drop(board);
        self.shared
            .failed_change(&delivery.key, &format!("{reason}: {detail}"))
    }
}
