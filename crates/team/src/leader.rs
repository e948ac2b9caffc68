//! Leadership from Kafka, and the lease that guards every side effect of the active worker.
//!
//! Every worker joins the consumer group `<group>.leader` on the one-partition topic
//! `<topic>.leader`; the member that holds partition 0 may become the active worker. Holding
//! it is not enough to act: a worker paused past its session (SIGSTOP, a long GC, a frozen
//! VM) still believes it holds the partition when it wakes up, although the coordinator gave
//! it to a standby meanwhile. So the active worker also holds a **lease**:
//!
//! - Every `RENEW_EVERY` it commits an offset on `<topic>.leader` synchronously. The group
//!   coordinator accepts an offset commit only from a current member of the current
//!   generation, so a successful commit confirms the membership (after the request was sent);
//!   so does `REBALANCE_IN_PROGRESS`, which it answers only after checking both.
//! - A new holder of partition 0 waits `wait` (session timeout minus one heartbeat interval,
//!   4 s shipped) after its assignment before it acts, unless the cluster fences: on Apache
//!   Kafka the first thing a new holder does is open the team's transactional state writer,
//!   which fences its predecessor's at the broker, and a claim commits through that writer
//!   before its send; a predecessor that wakes can then send and store nothing, so there is
//!   nothing to wait out. librdkafka's mock cluster (the embedded broker) does not fence
//!   transactional producers, so there the new holder waits as before.
//! - The lease then runs until the moment the request was *sent* plus `hold`, on the monotonic
//!   clock, which keeps running while the process is stopped. The coordinator heard from the
//!   member after that moment, so it expires the member no sooner than a session timeout
//!   later; only then can partition 0 go to a standby, which waits `wait` more. So the holder
//!   may act until sent + session + wait; `hold` keeps a heartbeat interval of that as margin
//!   (6 + 4 − 2 = 8 s shipped). It must also outlast a rebalance: when a standby joins, the
//!   coordinator holds every member's JoinGroup (the embedded broker for a session timeout
//!   less 1 s) and the commits queued behind it on the same connection get no answer
//!   meanwhile, so a 4 s lease fenced the active worker each time a standby started.
//! - The lease is the `SideEffects` permission handed to the worker's runtime, notifier and
//!   state publisher; it is checked before every notification send and offset store;
//!   once the lease lapses it refuses, and the worker reports that it was fenced.
//!
//! What this does not give yet: a fenced worker's notification already on the wire at the
//! moment of the pause still completes (as with a kill today), and a leader epoch on records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
pub use crate::config::team::{leader_topic, team_topics};
use crate::core::permit::{Authority, SideEffects};
use crate::kafka::consumer::{HEARTBEAT_INTERVAL_MS, SESSION_TIMEOUT_MS, client_config};

/// How often the active worker confirms its membership.
pub const RENEW_EVERY: Duration = Duration::from_millis(1000);

/// The worker's view of its leadership. Pure bookkeeping on instants passed in, so the
/// rules are tested without a broker or a clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseState {
    /// Since when this member holds partition 0 of the leader topic (monotonic).
    pub held_since: Option<Instant>,
    /// Until when the coordinator's last confirmation lets it act.
    pub confirmed_until: Option<Instant>,
}

impl LeaseState {
    pub fn assigned(&mut self, now: Instant) {
        self.held_since.get_or_insert(now);
    }

    /// Revoked or lost: nothing is allowed from now on.
    pub fn revoked(&mut self) {
        self.held_since = None;
        self.confirmed_until = None;
    }

    /// A commit sent at `sent_at` (while holding since `held_since`) succeeded.
    pub fn confirmed(&mut self, held_since: Instant, sent_at: Instant, length: Duration) {
        if self.held_since == Some(held_since) {
            self.confirmed_until = Some(sent_at + length);
        }
    }

    /// Active: holds the partition, waited out any previous holder's lease (`wait`), and was
    /// confirmed recently enough.
    pub fn active(&self, now: Instant, wait: Duration) -> bool {
        match (self.held_since, self.confirmed_until) {
            (Some(since), Some(until)) => now >= since + wait && now < until,
            _ => false,
        }
    }
}

/// Shared between the leader consumer's callbacks, the renewal task and the gate.
#[derive(Clone)]
pub struct Lease {
    state: Arc<Mutex<LeaseState>>,
    /// How long a new holder waits before it acts.
    wait: Duration,
    /// How long a confirmation lets the holder act, from when its request was sent.
    hold: Duration,
    /// Set once a refusal was logged, so a fenced worker logs it once.
    refusal_logged: Arc<AtomicBool>,
    /// Whether the cluster fences a predecessor's transactional writer when a new one opens
    /// (every Kafka broker; not librdkafka's mock cluster). Unknown counts as no.
    cluster_fences: Arc<AtomicBool>,
    /// Set when the broker fenced this worker's state writer (another worker opened one with
    /// the team's `transactional.id`): whatever the lease says, this worker is no longer the
    /// active one. Cleared when this worker opens a writer of its own again.
    broker_fenced: Arc<AtomicBool>,
}

impl Lease {
    /// The lease of a group with this session timeout and heartbeat interval (see the module
    /// comment for why these lengths).
    pub fn new(session: Duration, heartbeat: Duration) -> Self {
        let wait = session - heartbeat;
        Self {
            state: Arc::default(),
            wait,
            hold: session + wait - heartbeat,
            refusal_logged: Arc::default(),
            broker_fenced: Arc::default(),
            cluster_fences: Arc::default(),
        }
    }

    /// The cluster's id is known: a new holder acts without waiting when the cluster fences.
    pub fn cluster_known(&self, cluster_id: &str) {
        self.cluster_fences
            .store(cluster_fences(cluster_id), Ordering::SeqCst);
    }

    /// How long a new holder waits before it acts on this cluster.
    pub fn wait_before_acting(&self) -> Duration {
        if self.cluster_fences.load(Ordering::SeqCst) {
            Duration::ZERO
        } else {
            self.wait
        }
    }

    /// Closes the gate: the broker fenced this worker's state writer (`why`). Refuses every
    /// side effect from now on, before anyone learns that the writer's last batch failed.
    pub fn fence_by_broker(&self, why: &str) {
        if !self.broker_fenced.swap(true, Ordering::SeqCst) {
            tracing::warn!("fenced by the broker ({why}): sending and storing nothing more");
        }
    }

    /// This worker opened a new state writer, fencing every other: its gate is the lease again.
    pub fn writer_opened(&self) {
        self.broker_fenced.store(false, Ordering::SeqCst);
    }

    /// Whether the broker fenced this worker's state writer since it last opened one.
    pub fn is_broker_fenced(&self) -> bool {
        self.broker_fenced.load(Ordering::SeqCst)
    }

    /// How long a new holder waits before it acts on a cluster that does not fence; also
    /// how long a console waits for a lease record before it says no worker is active.
    pub fn length(&self) -> Duration {
        self.wait
    }

    pub fn is_active(&self) -> bool {
        self.lock()
            .active(Instant::now(), self.wait_before_acting())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        // The state is a pair of instants: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A lapsed lease refuses every side effect; the refusal is logged once per lapse, not per
/// message.
impl Authority for Lease {
    fn allows(&self, what: &str) -> bool {
        if self.is_broker_fenced() {
            if !self.refusal_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "fenced by the broker: another worker opened the team's state writer; {what} refused"
                );
            }
            return false;
        }
        let allowed = self.is_active();
        if allowed {
            self.refusal_logged.store(false, Ordering::Relaxed);
        } else if !self.refusal_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!("fenced: the leadership lease has lapsed; {what} refused");
        }
        allowed
    }
}

struct LeaderContext {
    lease: Lease,
    topic: String,
}

impl ClientContext for LeaderContext {}

impl ConsumerContext for LeaderContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Revocation takes effect before librdkafka gives the partition up.
        match rebalance {
            Rebalance::Revoke(list) if holds_zero(list, &self.topic) => {
                self.lease.lock().revoked();
                tracing::info!("leadership partition revoked");
            }
            Rebalance::Error(error) => {
                self.lease.lock().revoked();
                tracing::warn!(%error, "leader group rebalance failed; not active");
            }
            _ => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance
            && holds_zero(list, &self.topic)
        {
            self.lease.lock().assigned(Instant::now());
            let wait = self.lease.wait_before_acting();
            if wait.is_zero() {
                tracing::info!(
                    "leadership partition assigned; the broker fences the previous holder's writer"
                );
            } else {
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "leadership partition assigned; waiting out any previous holder's lease"
                );
            }
        }
    }
}

/// Whether a cluster of this id fences a transactional producer when another opens with its
/// `transactional.id`. librdkafka's mock cluster names itself `mockCluster<hex>` and does not.
pub fn cluster_fences(cluster_id: &str) -> bool {
    !cluster_id.starts_with("mockCluster")
}

fn holds_zero(list: &TopicPartitionList, topic: &str) -> bool {
    list.elements()
        .iter()
        .any(|e| e.topic() == topic && e.partition() == 0)
}

/// Session timeout and heartbeat interval of the leader group, from the configuration.
fn session_and_heartbeat(config: &Config) -> anyhow::Result<(u64, u64)> {
    let property = |name: &str, default: u32| {
        config
            .kafka
            .properties
            .get(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(u64::from(default))
    };
    let session = property("session.timeout.ms", SESSION_TIMEOUT_MS);
    let heartbeat = property("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS);
    anyhow::ensure!(
        session > heartbeat + RENEW_EVERY.as_millis() as u64,
        "session.timeout.ms ({session}) must exceed heartbeat.interval.ms ({heartbeat}) \
         plus {} ms for a worker's lease",
        RENEW_EVERY.as_millis()
    );
    Ok((session, heartbeat))
}

/// How long a new holder of the leadership waits before it acts (session timeout minus one
/// heartbeat interval): also how long a console waits for a lease record before it says no
/// worker is active.
pub fn lease_length(config: &Config) -> anyhow::Result<Duration> {
    Ok(lease(config)?.length())
}

/// The lease of this configuration's leader group (not yet held).
fn lease(config: &Config) -> anyhow::Result<Lease> {
    let (session, heartbeat) = session_and_heartbeat(config)?;
    Ok(Lease::new(
        Duration::from_millis(session),
        Duration::from_millis(heartbeat),
    ))
}

/// The running leader election: its consumer is polled on a thread of its own (rebalance
/// callbacks run inside the poll), and the lease is renewed from there too.
pub struct Leader {
    pub lease: Lease,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Leader {
    pub fn start(config: &Config) -> anyhow::Result<Self> {
        let (session, heartbeat) = session_and_heartbeat(config)?;
        let lease = lease(config)?;
        let topic = leader_topic(&config.kafka.topic);
        let mut client = client_config(config, true);
        client
            .set("group.id", format!("{}.leader", config.kafka.group_id))
            // The lease is computed from the classic protocol's client-side session, whatever
            // protocol the incident consumer uses.
            .set("group.protocol", "classic")
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", heartbeat.to_string())
            // Sticky: a worker joining or leaving does not move the leadership from a
            // healthy holder.
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest");
        let context = LeaderContext {
            lease: lease.clone(),
            topic: topic.clone(),
        };
        let consumer: BaseConsumer<LeaderContext> = client.create_with_context(context)?;
        consumer.subscribe(&[&topic])?;
        let (stop, stop_rx) = watch::channel(false);
        let renewing = lease.clone();
        let thread =
            tokio::task::spawn_blocking(move || poll_and_renew(consumer, renewing, topic, stop_rx));
        Ok(Self {
            lease,
            stop,
            thread: Some(thread),
        })
    }

    /// The permission this worker's side effects are given: granted while the lease holds.
    pub fn side_effects(&self) -> SideEffects {
        SideEffects::guarded_by(Arc::new(self.lease.clone()))
    }

    /// Leaves the group (a standby takes over at once rather than after the session).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), thread).await;
        }
    }
}

fn poll_and_renew(
    consumer: BaseConsumer<LeaderContext>,
    lease: Lease,
    topic: String,
    stop: watch::Receiver<bool>,
) {
    let mut last_renewal = Instant::now() - RENEW_EVERY;
    let mut failures_logged = false;
    // Asked before the first assignment can come, so a first holder knows whether to wait.
    match consumer.client().fetch_cluster_id(Duration::from_secs(5)) {
        Some(id) => lease.cluster_known(&id),
        None => tracing::warn!(
            "the cluster's id is unknown: a new leader waits out its predecessor's lease"
        ),
    }
    // The holding last confirmed: a new holding is confirmed at once, not a renewal later.
    let mut renewed_for = None;
    while !*stop.borrow() {
        // Rebalance callbacks run inside the poll; the topic's records are not used.
        let _ = consumer.poll(Duration::from_millis(100));
        let held = lease.lock().held_since;
        if last_renewal.elapsed() < RENEW_EVERY && (held.is_none() || held == renewed_for) {
            continue;
        }
        last_renewal = Instant::now();
        let Some(held_since) = held else {
            continue;
        };
        renewed_for = Some(held_since);
        let mut list = TopicPartitionList::new();
        if list
            .add_partition_offset(&topic, 0, Offset::Offset(0))
            .is_err()
        {
            continue;
        }
        let sent_at = Instant::now();
        match consumer.commit(&list, CommitMode::Sync) {
            // The coordinator checks member id and generation before the group's state, so
            // "rebalance in progress" also confirms the membership. Without this a worker
            // joining the group fenced the active one for the length of the rebalance.
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress)) => {
                lease.lock().confirmed(held_since, sent_at, lease.hold);
                failures_logged = false;
            }
            Err(error) => {
                if !failures_logged {
                    tracing::warn!(%error, "the coordinator did not confirm the leadership");
                    failures_logged = true;
                }
            }
        }
    }
    consumer.unsubscribe();
    drop(consumer);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LENGTH: Duration = Duration::from_secs(4);

    #[test]
    fn a_new_holder_waits_out_the_previous_lease_then_acts_while_confirmed() {
        let start = Instant::now();
        let mut state = LeaseState::default();
        assert!(!state.active(start, LENGTH), "nothing held");
        state.assigned(start);
        state.confirmed(start, start, LENGTH);
        assert!(
            !state.active(start + Duration::from_secs(3), LENGTH),
            "waiting out"
        );
        // Renewed at 3 s: active from 4 s (held + length) to 7 s (sent + length).
        state.confirmed(start, start + Duration::from_secs(3), LENGTH);
        assert!(state.active(start + LENGTH, LENGTH));
        assert!(state.active(start + Duration::from_millis(6999), LENGTH));
        assert!(
            !state.active(start + Duration::from_secs(7), LENGTH),
            "lapsed"
        );
    }

    #[test]
    fn a_paused_worker_is_not_active_when_it_wakes_and_revocation_is_immediate() {
        let start = Instant::now();
        let mut state = LeaseState::default();
        state.assigned(start);
        state.confirmed(start, start + Duration::from_secs(5), LENGTH);
        assert!(state.active(start + Duration::from_secs(6), LENGTH));
        // Stopped for 30 s: still "held" as far as it knows, but the lease is long gone.
        assert!(!state.active(start + Duration::from_secs(36), LENGTH));
        state.revoked();
        assert!(!state.active(start + Duration::from_secs(6), LENGTH));
        // A confirmation from before the revocation does not revive it.
        state.assigned(start + Duration::from_secs(40));
        state.confirmed(start, start + Duration::from_secs(41), LENGTH);
        assert_eq!(state.confirmed_until, None);
    }

    #[test]
    fn a_confirmation_outlasts_a_rebalance_and_ends_before_any_successor_acts() {
        let (session, heartbeat) = (Duration::from_secs(6), Duration::from_secs(2));
        let lease = Lease::new(session, heartbeat);
        assert_eq!(lease.length(), Duration::from_secs(4), "a new holder waits");
        let start = Instant::now();
        let mut state = LeaseState::default();
        state.assigned(start);
        // Confirmed at 5 s, then a standby joins: the next answer comes back 6.5 s later.
        let sent = start + Duration::from_secs(5);
        state.confirmed(start, sent, lease.hold);
        assert!(
            state.active(sent + Duration::from_millis(6500), lease.wait),
            "still active through the embedded broker's rebalance"
        );
        // Expired by the coordinator a session after the request at the earliest; the
        // successor then waits. The lease has run out before it acts, by a heartbeat.
        let successor_acts = sent + session + lease.wait;
        assert!(!state.active(successor_acts - heartbeat, lease.wait));
    }

    #[test]
    fn on_a_cluster_that_fences_a_new_holder_acts_at_its_first_confirmation() {
        let lease = Lease::new(Duration::from_secs(6), Duration::from_secs(2));
        assert_eq!(
            lease.wait_before_acting(),
            lease.length(),
            "unknown cluster: waits"
        );
        lease.cluster_known("mockCluster7f3a2c");
        assert_eq!(
            lease.wait_before_acting(),
            Duration::from_secs(4),
            "the embedded broker does not fence"
        );
        {
            let now = Instant::now();
            let mut state = lease.lock();
            state.assigned(now);
            state.confirmed(now, now, lease.hold);
        }
        assert!(!lease.is_active(), "waiting out the predecessor's lease");
        lease.cluster_known("r2bTrG2mQ2uQ9W3xkXh1Yw");
        assert_eq!(lease.wait_before_acting(), Duration::ZERO);
        assert!(lease.is_active(), "the broker fences the predecessor");
        assert_eq!(
            lease.length(),
            Duration::from_secs(4),
            "consoles still wait a lease length for a heartbeat"
        );
    }
}
