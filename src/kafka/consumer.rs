//! The Kafka consumer: a task that fetches messages and hands them to the runtime through a
//! bounded channel, plus a control handle for pausing, storing offsets and committing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::core::engine::SourceRef;
use crate::core::offsets::PartitionKey;
use crate::status::{ConnectionState, ConsumerStatus};

/// One fetched message, copied out of librdkafka's buffers.
#[derive(Debug, Clone)]
pub struct FetchedMessage {
    pub source: SourceRef,
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone.
    pub payload: Option<Vec<u8>>,
    pub fetched_at: Instant,
    /// The Kafka message timestamp (ms since the epoch), for produce-to-handled latency.
    pub timestamp_ms: Option<i64>,
}

/// Messages cross from the fetch task to the runtime in batches of at most this many: one
/// hand-off (and one wake-up) per batch instead of per message. A batch takes only what
/// librdkafka already has queued, so at low rates it is one message and adds no delay.
pub const MAX_BATCH: usize = 512;

/// librdkafka calls these from inside `recv()`; they only update shared state.
pub struct ConsoleContext {
    status: watch::Sender<ConsumerStatus>,
    paused: Arc<AtomicBool>,
    topic: String,
    /// Bumped on every assignment change, so the fetch loop forgets where each partition was:
    /// a partition given back may resume where another member left it.
    generation: Arc<AtomicU64>,
}

impl ClientContext for ConsoleContext {
    fn stats(&self, statistics: Statistics) {
        let any_broker_up = statistics
            .brokers
            .values()
            .any(|broker| broker.nodeid >= 0 && broker.state == "UP");
        let lag = statistics.topics.get(&self.topic).map(|topic| {
            topic
                .partitions
                .values()
                .filter(|p| p.partition >= 0 && p.desired && p.consumer_lag >= 0)
                .map(|p| p.consumer_lag)
                .sum::<i64>()
        });
        self.status.send_modify(|status| {
            if any_broker_up {
                if status.connection != ConnectionState::Connected {
                    tracing::info!(brokers = %status.brokers, "connected to Kafka");
                }
                status.connection = ConnectionState::Connected;
            }
            if lag.is_some() {
                status.lag = lag;
            }
        });
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode::{AllBrokersDown, BrokerTransportFailure, Resolve};
        let transport = matches!(
            error.rdkafka_error_code(),
            Some(AllBrokersDown | BrokerTransportFailure | Resolve)
        );
        self.status.send_modify(|status| {
            if transport && error.rdkafka_error_code() == Some(AllBrokersDown) {
                if status.connection
                    != (ConnectionState::Disconnected {
                        reason: reason.to_string(),
                    })
                {
                    tracing::warn!(%reason, "all Kafka brokers are down; retrying");
                }
                status.connection = ConnectionState::Disconnected {
                    reason: reason.to_string(),
                };
            } else if transport {
                tracing::debug!(%error, %reason, "Kafka transport error");
            } else {
                tracing::warn!(%error, %reason, "Kafka client error");
            }
            status.last_error = Some(format!("{error}: {reason}"));
        });
    }
}

impl ConsumerContext for ConsoleContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let partitions = match rebalance {
            Rebalance::Assign(list) => {
                // Partitions that arrive in a rebalance must honour the operator's pause.
                if self.paused.load(Ordering::SeqCst)
                    && let Err(error) = consumer.pause(list)
                {
                    tracing::warn!(%error, "could not pause newly assigned partitions");
                }
                let mut partitions: Vec<i32> =
                    list.elements().iter().map(|e| e.partition()).collect();
                partitions.sort_unstable();
                tracing::info!(?partitions, "partitions assigned");
                partitions
            }
            Rebalance::Revoke(list) => {
                tracing::info!(count = list.count(), "partitions revoked");
                Vec::new()
            }
            Rebalance::Error(error) => {
                tracing::warn!(%error, "rebalance failed");
                return;
            }
        };
        self.status
            .send_modify(|status| status.assigned_partitions = partitions);
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = result
            && !matches!(
                error,
                KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)
            )
        {
            tracing::warn!(%error, "offset commit failed; it will be retried");
        }
    }
}

pub type ConsoleConsumer = StreamConsumer<ConsoleContext>;

/// Consumer-only properties that a producer would warn about.
const CONSUMER_ONLY_PREFIXES: [&str; 9] = [
    "group.",
    "auto.",
    "enable.auto",
    "session.",
    "heartbeat.",
    "max.poll",
    "partition.assignment",
    "isolation.",
    "fetch.",
];

/// The shipped group session: see `start`.
pub const SESSION_TIMEOUT_MS: u32 = 6000;
pub const HEARTBEAT_INTERVAL_MS: u32 = 2000;

/// The base client properties (brokers, security, passthrough) for any client of ours.
pub fn client_config(config: &Config, for_consumer: bool) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.kafka.brokers);
    client.set("client.id", "incident-console");
    apply_passthrough(&mut client, config, for_consumer);
    client
}

/// The operator's `properties` / `-X` settings win over our defaults, so they go last.
fn apply_passthrough(client: &mut ClientConfig, config: &Config, for_consumer: bool) {
    for (key, value) in &config.kafka.properties {
        if !for_consumer && CONSUMER_ONLY_PREFIXES.iter().any(|p| key.starts_with(p)) {
            continue;
        }
        client.set(key, value);
    }
}

/// Control side of the consumer, shared by the runtime.
#[derive(Clone)]
pub struct ConsumerControl {
    consumer: Arc<ConsoleConsumer>,
    paused: Arc<AtomicBool>,
    status: watch::Sender<ConsumerStatus>,
    topic: String,
    fetched: Arc<AtomicU64>,
}

impl ConsumerControl {
    /// How many messages the fetch task has handed on since it started. The demo's simulator
    /// reads it to stay within what the embedded broker keeps.
    pub fn fetched(&self) -> Arc<AtomicU64> {
        self.fetched.clone()
    }

    pub fn status(&self) -> watch::Receiver<ConsumerStatus> {
        self.status.subscribe()
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Pauses or resumes every assigned partition. While paused nothing is fetched; polling
    /// goes on so that rebalances and statistics are still served.
    pub fn set_paused(&self, paused: bool) -> KafkaResult<()> {
        self.paused.store(paused, Ordering::SeqCst);
        let result = {
            let assignment = self.consumer.assignment()?;
            if paused {
                self.consumer.pause(&assignment)
            } else {
                self.consumer.resume(&assignment)
            }
        };
        self.status.send_modify(|status| status.paused = paused);
        tracing::info!(
            paused,
            "consumption {}",
            if paused { "paused" } else { "resumed" }
        );
        result
    }

    /// Records that everything below `next_offset` in the partition is handled; auto-commit
    /// sends it to the broker.
    pub fn store(&self, key: &PartitionKey, next_offset: i64) {
        self.store_many(std::iter::once((key, next_offset)));
    }

    /// `store` for several partitions in one call to librdkafka.
    pub fn store_many<'a>(&self, offsets: impl IntoIterator<Item = (&'a PartitionKey, i64)>) {
        let mut list = TopicPartitionList::new();
        for (key, next_offset) in offsets {
            if let Err(error) =
                list.add_partition_offset(&key.topic, key.partition, Offset::Offset(next_offset))
            {
                tracing::warn!(%error, "bad offset {next_offset} for {}/{}", key.topic, key.partition);
            }
        }
        if list.count() == 0 {
            return;
        }
        if let Err(error) = self.consumer.store_offsets(&list) {
            // A partition revoked meanwhile: its new owner re-reads from the last commit.
            tracing::debug!(%error, "offsets not stored");
        }
    }

    /// Commits stored offsets synchronously, then closes the consumer. Blocking work runs off
    /// the async threads, and is bounded so an unreachable broker cannot hang shutdown.
    pub async fn commit_and_close(self, timeout: Duration) {
        let consumer = self.consumer;
        let work = tokio::task::spawn_blocking(move || {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => tracing::info!("final offsets committed"),
                Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {
                    tracing::info!("final offsets already committed")
                }
                Err(error) => tracing::warn!(%error, "final commit failed"),
            }
            drop(consumer);
        });
        if tokio::time::timeout(timeout, work).await.is_err() {
            tracing::warn!("consumer did not close within {timeout:?}; exiting anyway");
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
}

pub struct KafkaSource {
    pub control: ConsumerControl,
    pub messages: mpsc::Receiver<Vec<FetchedMessage>>,
    pub task: JoinHandle<()>,
}

/// Creates the consumer, subscribes, and starts the fetch task. `stop` ends fetching.
pub fn start(config: &Config, stop: watch::Receiver<bool>) -> KafkaResult<KafkaSource> {
    let status = watch::Sender::new(ConsumerStatus {
        brokers: config.kafka.brokers.clone(),
        topic: config.kafka.topic.clone(),
        group: config.kafka.group_id.clone(),
        ..ConsumerStatus::default()
    });
    let paused = Arc::new(AtomicBool::new(false));
    let generation = Arc::new(AtomicU64::new(0));
    let fetched = Arc::new(AtomicU64::new(0));
    let context = ConsoleContext {
        status: status.clone(),
        paused: paused.clone(),
        topic: config.kafka.topic.clone(),
        generation: generation.clone(),
    };
    let mut client = client_config(config, true);
    client
        .set("group.id", &config.kafka.group_id)
        .set("auto.offset.reset", &config.kafka.auto_offset_reset)
        .set("enable.auto.commit", "true")
        .set(
            "statistics.interval.ms",
            config.kafka.statistics_interval_ms.to_string(),
        )
        .set("enable.partition.eof", "false")
        // A member that dies without leaving (kill -9, a crash, a lost VM) keeps its partitions
        // until its session times out: nobody reads them meanwhile, a console restarted by
        // systemd included. librdkafka's 45 s would be a 45 s blind spell; 6 s (heartbeats
        // every 2 s) brings a restarted console back within about 10 s. The price: a broker
        // unreachable for more than 6 s costs a rebalance. Only the background heartbeat
        // thread keeps a session alive, so a slow handler never loses it (that is
        // `max.poll.interval.ms`, 5 min). `-X session.timeout.ms=...` overrides it.
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS.to_string())
        // How long a fetch may wait at the broker for data. A real broker answers as soon as
        // data arrives, so this only paces idle polling; the embedded broker (librdkafka's mock)
        // always waits it out, which at librdkafka's 500 ms made a quiet stream's events
        // 250 ms late on average. 50 ms keeps that small for one request per broker per 50 ms.
        .set("fetch.wait.max.ms", "50");
    apply_passthrough(&mut client, config, true);
    if config
        .kafka
        .properties
        .get("enable.auto.offset.store")
        .map(String::as_str)
        == Some("true")
    {
        tracing::warn!(
            "ignoring enable.auto.offset.store=true: offsets are stored only after handling"
        );
    }
    // At-least-once: an offset is stored only once its event has been handled.
    client.set("enable.auto.offset.store", "false");
    let consumer: ConsoleConsumer = client.create_with_context(context)?;
    consumer.subscribe(&[&config.kafka.topic])?;
    let consumer = Arc::new(consumer);
    // `channel_capacity` counts messages; the channel carries batches of up to MAX_BATCH.
    let (sender, messages) = mpsc::channel(config.kafka.channel_capacity.div_ceil(MAX_BATCH));
    let poll_timeout = Duration::from_millis(config.kafka.poll_timeout_ms);
    let task = tokio::spawn(fetch_loop(
        consumer.clone(),
        sender,
        stop,
        poll_timeout,
        FetchCounters {
            status: status.clone(),
            fetched: fetched.clone(),
            generation,
        },
    ));
    Ok(KafkaSource {
        control: ConsumerControl {
            consumer,
            paused,
            status,
            topic: config.kafka.topic.clone(),
            fetched,
        },
        messages,
        task,
    })
}

/// Copies a message out of librdkafka's buffers, noting any offsets skipped before it.
fn copy_message(
    message: &rdkafka::message::BorrowedMessage<'_>,
    gaps: &mut OffsetGaps,
    status: &watch::Sender<ConsumerStatus>,
) -> FetchedMessage {
    let skipped = gaps.observe(message.partition(), message.offset());
    if skipped > 0 {
        tracing::warn!(
            partition = message.partition(),
            offset = message.offset(),
            skipped,
            "offsets skipped: messages before this one were never delivered (dropped by the \
             broker's retention before they were read, or compaction / transaction markers)"
        );
        status.send_modify(|s| s.offsets_skipped += skipped);
    }
    FetchedMessage {
        source: SourceRef {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
        },
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        fetched_at: Instant::now(),
        timestamp_ms: message.timestamp().to_millis(),
    }
}

/// What the fetch loop reports besides the messages themselves.
struct FetchCounters {
    status: watch::Sender<ConsumerStatus>,
    fetched: Arc<AtomicU64>,
    generation: Arc<AtomicU64>,
}

/// Notices offsets that were never delivered: within one assignment, each partition's next
/// message should carry the offset after the previous one.
#[derive(Debug, Default)]
pub struct OffsetGaps {
    next: HashMap<i32, i64>,
}

impl OffsetGaps {
    /// Records `offset` of `partition`; returns how many offsets before it were skipped.
    pub fn observe(&mut self, partition: i32, offset: i64) -> u64 {
        let skipped = match self.next.get(&partition) {
            Some(&expected) if offset > expected => (offset - expected) as u64,
            _ => 0,
        };
        self.next.insert(partition, offset + 1);
        skipped
    }

    pub fn forget(&mut self) {
        self.next.clear();
    }
}

async fn fetch_loop(
    consumer: Arc<ConsoleConsumer>,
    sender: mpsc::Sender<Vec<FetchedMessage>>,
    mut stop: watch::Receiver<bool>,
    poll_timeout: Duration,
    counters: FetchCounters,
) {
    let FetchCounters {
        status,
        fetched,
        generation,
    } = counters;
    let mut gaps = OffsetGaps::default();
    let mut seen_generation = generation.load(Ordering::SeqCst);
    let mut consecutive_errors = 0u32;
    loop {
        if *stop.borrow() {
            break;
        }
        let received = tokio::select! {
            _ = stop.changed() => break,
            received = tokio::time::timeout(poll_timeout, consumer.recv()) => received,
        };
        let batch = match received {
            Err(_idle) => continue,
            Ok(Err(error)) => {
                consecutive_errors += 1;
                tracing::warn!(%error, "fetch error; retrying");
                status.send_modify(|s| s.last_error = Some(error.to_string()));
                // Back off a little on repeated errors so a broken broker is not hammered.
                let pause = Duration::from_millis(50 * u64::from(consecutive_errors.min(20)));
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
            Ok(Ok(message)) => {
                consecutive_errors = 0;
                let current = generation.load(Ordering::SeqCst);
                if current != seen_generation {
                    seen_generation = current;
                    gaps.forget();
                }
                let mut batch = Vec::with_capacity(MAX_BATCH.min(64));
                batch.push(copy_message(&message, &mut gaps, &status));
                drop(message);
                // Whatever else is already queued joins the batch, without waiting.
                while batch.len() < MAX_BATCH {
                    match consumer.recv().now_or_never() {
                        Some(Ok(message)) => batch.push(copy_message(&message, &mut gaps, &status)),
                        Some(Err(error)) => {
                            tracing::warn!(%error, "fetch error; retrying");
                            status.send_modify(|s| s.last_error = Some(error.to_string()));
                            break;
                        }
                        None => break,
                    }
                }
                fetched.fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch
            }
        };
        // Waiting here when the runtime is behind is the backpressure.
        tokio::select! {
            _ = stop.changed() => break,
            sent = sender.send(batch) => if sent.is_err() { break },
        }
    }
    tracing::debug!("fetch loop stopped");
}

#[cfg(test)]
mod tests {
    use super::OffsetGaps;

    #[test]
    fn gaps_count_missing_offsets_per_partition_and_reset_on_forget() {
        let mut gaps = OffsetGaps::default();
        assert_eq!(
            gaps.observe(0, 10),
            0,
            "the first offset seen is where reading starts"
        );
        assert_eq!(gaps.observe(0, 11), 0);
        assert_eq!(gaps.observe(1, 500), 0);
        assert_eq!(gaps.observe(0, 15), 3, "12, 13 and 14 never arrived");
        assert_eq!(gaps.observe(0, 15), 0, "a re-delivery is not a gap");
        gaps.forget();
        assert_eq!(gaps.observe(0, 40), 0, "a new assignment starts afresh");
    }
}
