//! The Kafka consumer: a task that fetches messages and hands them to the runtime through a
//! bounded channel, plus a control handle for pausing, storing offsets and committing.
//!
//! A positioned read (`ReadRange`: `--from-offset`, `--from-time`, `--until-*`) assigns the
//! partitions itself instead of joining the group, and never commits: a replay cannot move
//! the real group's offsets. With an end it stops by itself once every partition reached it.

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
pub use crate::config::range::ReadRange;
use crate::core::engine::SourceRef;
use crate::core::offsets::PartitionKey;
use crate::status::{ConnectionState, ConsumerStatus, PartitionLag};

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
    /// Why the brokers refused this console (credentials, certificates): retrying cannot
    /// help, so the fetch loop stops on it.
    refused: std::sync::Mutex<Option<String>>,
}

impl ClientContext for ConsoleContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::quiet::log(level, fac, log_message);
    }

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
        // Per partition, for the metrics endpoint; librdkafka reports -1 (or -1001) for unknown.
        let known = |offset: i64| (offset >= 0).then_some(offset);
        let mut partitions: Vec<PartitionLag> = statistics
            .topics
            .get(&self.topic)
            .map(|topic| {
                topic
                    .partitions
                    .values()
                    .filter(|p| p.partition >= 0 && p.desired)
                    .map(|p| PartitionLag {
                        partition: p.partition,
                        committed_offset: known(p.committed_offset),
                        high_watermark: known(p.hi_offset),
                        lag: known(p.consumer_lag),
                    })
                    .collect()
            })
            .unwrap_or_default();
        partitions.sort_by_key(|p| p.partition);
        self.status.send_modify(|status| {
            status.partitions = partitions;
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
        use rdkafka::types::RDKafkaErrorCode::{AllBrokersDown, Authentication, SSL};
        let brokers = self.status.borrow().brokers.clone();
        let refused = match error.rdkafka_error_code() {
            Some(Authentication) => Some(format!(
                "the brokers {brokers} refused this console's credentials ({reason}); check \
                 sasl.mechanism, sasl.username and sasl.password (-X, KAFKA_SASL_USERNAME, \
                 KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE)"
            )),
            Some(SSL) => Some(format!(
                "the TLS connection to the brokers {brokers} failed ({reason}); check \
                 ssl.ca.location (the CA that signed the brokers' certificates) and, for \
                 mutual TLS, ssl.certificate.location and ssl.key.location"
            )),
            _ => None,
        };
        if let Some(text) = refused {
            if let Ok(mut slot) = self.refused.lock() {
                slot.get_or_insert(text);
            }
        }
        let transport = super::is_transport(&error);
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
            } else if let Some(left_out) = super::quiet::admit(&format!("{error} {reason}")) {
                tracing::warn!(%error, %reason, left_out, "Kafka client error");
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

/// Why the consumer cannot go on, if it cannot: the brokers refused its credentials or
/// certificates, or librdkafka raised a fatal error (the one an operator can cause: two
/// consoles with the same static membership id), each with what to do.
fn fatal_text(consumer: &ConsoleConsumer) -> Option<String> {
    if let Some(refused) = consumer
        .context()
        .refused
        .lock()
        .ok()
        .and_then(|slot| slot.clone())
    {
        return Some(refused);
    }
    let (code, reason) = consumer.client().fatal_error()?;
    Some(
        if code == rdkafka::types::RDKafkaErrorCode::FencedInstanceId {
            format!(
                "another consumer joined the group with this console's group.instance.id \
                 and the broker fenced this one ({reason}); each copy needs its own: run \
                 each with its own journal (the id is derived from the host and the \
                 journal path), or set -X group.instance.id=... per copy"
            )
        } else {
            format!("the Kafka consumer stopped on a fatal error: {code}: {reason}")
        },
    )
}

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

/// How long librdkafka waits before it fetches again for a partition once its local queue is
/// over `queued.min.messages` (100,000, counted over all partitions of the consumer's one
/// queue) or `queued.max.messages.kbytes` (64 MiB); those bounds stay as shipped. librdkafka's
/// 1 s is longer than the console takes to work through the 100,000 queued (0.7 s at 150,000
/// events/s), so a backlog drained in bursts with the queue empty in between: 121,000 events/s
/// with the journal, 160,000 with 50 ms (docs/performance.md, 2026-12-08). At 50 ms the queue
/// never runs dry while it is refilled; `-X fetch.queue.backoff.ms=...` overrides it.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "50";

/// What both incident consumers (the group's and an observer's) take under the operator's `-X`.
const INCIDENT_CONSUMER_DEFAULTS: &[(&str, &str)] =
    &[("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)];

/// The shipped group session: see `start`.
pub const SESSION_TIMEOUT_MS: u32 = 6000;
pub const HEARTBEAT_INTERVAL_MS: u32 = 2000;

/// The base client properties (brokers, security, passthrough) for any client of ours.
pub fn client_config(config: &Config, for_consumer: bool) -> ClientConfig {
    client_config_under(config, for_consumer, &[])
}

/// A client with this use's own `defaults`, under the operator's `properties` / `-X`
/// settings, which win over them (a setting made with `.set` after `client_config` wins over
/// the operator's instead; that is for settings a part depends on, such as the lease's session).
pub fn client_config_under(
    config: &Config,
    for_consumer: bool,
    defaults: &[(&str, &str)],
) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.kafka.brokers);
    client.set("client.id", "incident-console");
    for (key, value) in defaults {
        client.set(*key, *value);
    }
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

/// `PARTITION:OFFSET`, e.g. `0:1500`; the error names `flag`.
pub fn parse_partition_offset(flag: &str, text: &str) -> Result<(i32, i64), String> {
    let bad = || format!("{flag} {text:?}: expected PARTITION:OFFSET, e.g. 0:1500");
    let (partition, offset) = text.split_once(':').ok_or_else(bad)?;
    let partition: i32 = partition.trim().parse().map_err(|_| bad())?;
    let offset: i64 = offset.trim().parse().map_err(|_| bad())?;
    if partition < 0 || offset < 0 {
        return Err(format!(
            "{flag} {text:?}: partition and offset must not be negative"
        ));
    }
    Ok((partition, offset))
}

/// How one partition of a positioned read goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionPlan {
    partition: i32,
    start: i64,
    /// Messages at or past this offset are not handed on.
    end: Option<i64>,
    /// Messages stamped before this (ms) are skipped until the first one that is not: the
    /// broker could not look the time up (the embedded broker cannot), so we scan.
    skip_before_ms: Option<i64>,
    /// A message stamped after this (ms) ends the partition.
    stop_after_ms: Option<i64>,
}

impl PartitionPlan {
    fn done_at_start(&self) -> bool {
        self.end.is_some_and(|end| self.start >= end)
    }

    fn bounded(&self) -> bool {
        self.end.is_some() || self.stop_after_ms.is_some()
    }
}

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the broker where `range` starts and ends in each partition of `topic`. Blocking.
fn plan_range(
    consumer: &impl Consumer<ConsoleContext>,
    topic: &str,
    range: &ReadRange,
) -> anyhow::Result<Vec<PartitionPlan>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), LOOKUP_TIMEOUT)
        .map_err(|error| anyhow::anyhow!("topic {topic}: cannot read its partitions: {error}"))?;
    let mut partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    partitions.sort_unstable();
    if partitions.is_empty() {
        anyhow::bail!("topic {topic}: no such topic, or it has no partitions");
    }
    for (flag, list) in [
        ("--from-offset", &range.from_offsets),
        ("--until-offset", &range.until_offsets),
    ] {
        if let Some((partition, _)) = list.iter().find(|(p, _)| !partitions.contains(p)) {
            anyhow::bail!(
                "{flag}: topic {topic} has no partition {partition} (it has {partitions:?})"
            );
        }
    }
    let selected: Vec<i32> = if range.from_offsets.is_empty() {
        partitions
    } else {
        range.from_offsets.iter().map(|(p, _)| *p).collect()
    };
    // offsets-for-times: the first offset whose timestamp is at or after `ms`, per partition.
    let lookup = |ms: i64| -> anyhow::Result<HashMap<i32, Option<i64>>> {
        let mut list = TopicPartitionList::new();
        for partition in &selected {
            list.add_partition_offset(topic, *partition, Offset::Offset(ms))?;
        }
        let found = consumer
            .offsets_for_times(list, LOOKUP_TIMEOUT)
            .map_err(|error| anyhow::anyhow!("topic {topic}: offsets for times: {error}"))?;
        Ok(found
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(offset) if offset >= 0 => (e.partition(), Some(offset)),
                _ => (e.partition(), None),
            })
            .collect())
    };
    let from_ms = range.from_time.map(|t| t.timestamp_millis());
    let until_ms = range.until_time.map(|t| t.timestamp_millis());
    let starts = from_ms.map(lookup).transpose()?;
    let ends = until_ms
        .map(|ms| lookup(ms.saturating_add(1)))
        .transpose()?;
    let mut plans = Vec::new();
    for partition in selected {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, LOOKUP_TIMEOUT)
            .map_err(|error| {
                anyhow::anyhow!("topic {topic} partition {partition}: watermarks: {error}")
            })?;
        let mut plan = PartitionPlan {
            partition,
            start: low,
            end: None,
            skip_before_ms: None,
            stop_after_ms: None,
        };
        if let Some((_, offset)) = range.from_offsets.iter().find(|(p, _)| *p == partition) {
            plan.start = (*offset).max(low);
        } else if let Some(starts) = &starts {
            match starts.get(&partition).copied().flatten() {
                Some(offset) => plan.start = offset.max(low),
                // "No message at or after that time", or a broker that cannot look times up:
                // read from the start and skip by timestamp, which is right in both cases.
                None if high > low => plan.skip_before_ms = from_ms,
                None => plan.start = high,
            }
        }
        if let Some(ends) = &ends {
            match ends.get(&partition).copied().flatten() {
                Some(offset) => plan.end = Some(offset),
                None => {
                    plan.end = Some(high);
                    plan.stop_after_ms = until_ms;
                }
            }
        }
        if let Some((_, offset)) = range.until_offsets.iter().find(|(p, _)| *p == partition) {
            plan.end = Some(plan.end.map_or(*offset, |end| end.min(*offset)));
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// Control side of the consumer, shared by the runtime.
#[derive(Clone)]
pub struct ConsumerControl {
    consumer: Arc<ConsoleConsumer>,
    paused: Arc<AtomicBool>,
    status: watch::Sender<ConsumerStatus>,
    topic: String,
    /// False for a positioned read: it must never move a group's offsets.
    commits: bool,
    /// Set when a positioned read has reached its end in every partition.
    finished: Arc<AtomicBool>,
    /// Messages handed on by the fetch task so far.
    fetched: Arc<AtomicU64>,
}

impl ConsumerControl {
    /// The cluster's id from the broker's metadata, `None` if unknown. Cached by librdkafka
    /// once metadata has arrived (as it has when a message has), so it rarely waits.
    pub fn cluster_id(&self) -> Option<String> {
        self.consumer
            .client()
            .fetch_cluster_id(Duration::from_secs(2))
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

    /// How many messages the fetch task has handed on since it started. The demo's simulator
    /// reads it to stay within what the embedded broker keeps.
    pub fn fetched(&self) -> Arc<AtomicU64> {
        self.fetched.clone()
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
    /// Commits what was stored and closes the consumer; the error says why the final commit
    /// did not happen (the messages since the last commit are then read again next start).
    pub async fn commit_and_close(self, timeout: Duration) -> Result<(), String> {
        let consumer = self.consumer;
        let commits = self.commits;
        let work = tokio::task::spawn_blocking(move || {
            let result = if !commits {
                Ok(())
            } else {
                match consumer.commit_consumer_state(CommitMode::Sync) {
                    Ok(()) => {
                        tracing::info!("final offsets committed");
                        Ok(())
                    }
                    Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {
                        tracing::info!("final offsets already committed");
                        Ok(())
                    }
                    Err(error) => Err(format!("the final offset commit failed: {error}")),
                }
            };
            drop(consumer);
            result
        });
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(result)) => result,
            Ok(Err(error)) => Err(format!("the final offset commit did not finish: {error}")),
            Err(_) => Err(format!(
                "the consumer did not commit and close within {timeout:?}"
            )),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// A positioned read reached `--until-*` everywhere: fetching ended on purpose.
    pub fn range_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// The error that made the consumer unusable, if one did, in words for the operator.
    pub fn fatal_error(&self) -> Option<String> {
        fatal_text(&self.consumer)
    }
}

pub struct KafkaSource {
    pub control: ConsumerControl,
    pub messages: mpsc::Receiver<Vec<FetchedMessage>>,
    pub task: JoinHandle<()>,
}

/// What a consumer and its fetch task share: its status, pause flag, assignment generation and
/// fetched count, and the librdkafka context that updates them.
struct Shared {
    status: watch::Sender<ConsumerStatus>,
    paused: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    fetched: Arc<AtomicU64>,
    context: ConsoleContext,
}

impl Shared {
    fn new(config: &Config, group: String) -> Self {
        let status = watch::Sender::new(ConsumerStatus {
            brokers: config.kafka.brokers.clone(),
            topic: config.kafka.topic.clone(),
            group,
            ..ConsumerStatus::default()
        });
        let paused = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let context = ConsoleContext {
            status: status.clone(),
            paused: paused.clone(),
            topic: config.kafka.topic.clone(),
            generation: generation.clone(),
            refused: std::sync::Mutex::new(None),
        };
        Self {
            status,
            paused,
            generation,
            fetched: Arc::new(AtomicU64::new(0)),
            context,
        }
    }
}

/// Creates the consumer, subscribes (or, for a positioned read, assigns), and starts the fetch
/// task. `stop` ends fetching.
pub fn start(config: &Config, stop: watch::Receiver<bool>) -> anyhow::Result<KafkaSource> {
    let range = &config.kafka.range;
    let Shared {
        status,
        paused,
        generation,
        fetched,
        context,
    } = Shared::new(config, config.kafka.group_id.clone());
    let mut client = client_config_under(config, true, INCIDENT_CONSUMER_DEFAULTS);
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
        // How long a fetch may wait at the broker for data. A real broker answers as soon as
        // data arrives, so this only paces idle polling; the embedded broker (librdkafka's mock)
        // always waits it out, which at librdkafka's 500 ms made a quiet stream's events
        // 250 ms late on average. 50 ms keeps that small for one request per broker per 50 ms.
        .set("fetch.wait.max.ms", "50");
    // The new consumer protocol (KIP-848) keeps the session at the broker
    // (`group.consumer.session.timeout.ms`) and refuses it on the client.
    if config
        .kafka
        .properties
        .get("group.protocol")
        .map(String::as_str)
        != Some("consumer")
    {
        client
            .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
            .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS.to_string());
    }
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
    if range.is_active() {
        client.set("enable.auto.commit", "false");
    } else if let Some(instance) = config
        .kafka
        .properties
        .get("group.instance.id")
        .filter(|id| !id.trim().is_empty())
    {
        // Static membership (opt-in, docs/kafka.md): a console restarted within its session
        // takes its partitions back at once instead of after a rebalance.
        tracing::info!(group_instance_id = %instance, "static group membership");
    }
    let consumer: ConsoleConsumer = client
        .create_with_context(context)
        .map_err(|error| super::settings::without_values(config, error))?;
    let mut limits = HashMap::new();
    if range.is_active() {
        let plans = plan_range(&consumer, &config.kafka.topic, range)?;
        let mut assignment = TopicPartitionList::new();
        for plan in &plans {
            tracing::info!(
                partition = plan.partition,
                start = plan.start,
                end = ?plan.end,
                scan_from_time = plan.skip_before_ms.is_some(),
                "replay: partition range"
            );
            if !plan.done_at_start() {
                assignment.add_partition_offset(
                    &config.kafka.topic,
                    plan.partition,
                    Offset::Offset(plan.start),
                )?;
            }
        }
        consumer.assign(&assignment)?;
        let mut assigned: Vec<i32> = plans.iter().map(|p| p.partition).collect();
        assigned.sort_unstable();
        status.send_modify(|s| s.assigned_partitions = assigned);
        limits = plans.into_iter().map(|p| (p.partition, p)).collect();
    } else {
        consumer.subscribe(&[&config.kafka.topic])?;
    }
    let consumer = Arc::new(consumer);
    let finished = Arc::new(AtomicBool::new(false));
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
        RangeState::new(limits, finished.clone()),
        OffsetGaps::default(),
    ));
    Ok(KafkaSource {
        control: ConsumerControl {
            consumer,
            paused,
            status,
            topic: config.kafka.topic.clone(),
            commits: !range.is_active(),
            finished,
            fetched,
        },
        messages,
        task,
    })
}

/// What a positioned read still has to fetch, partition by partition.
struct RangeState {
    plans: HashMap<i32, PartitionPlan>,
    /// Partitions not yet at their end; the read is over when none is left (if all have one).
    open: std::collections::BTreeSet<i32>,
    bounded: bool,
    finished: Arc<AtomicBool>,
}

/// What to do with one fetched message.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Forward,
    Skip,
    /// Past the end of its partition: not handed on; the partition is done.
    PastEnd,
}

impl RangeState {
    fn new(plans: HashMap<i32, PartitionPlan>, finished: Arc<AtomicBool>) -> Self {
        let bounded = !plans.is_empty() && plans.values().all(PartitionPlan::bounded);
        let open = plans
            .values()
            .filter(|p| !p.done_at_start())
            .map(|p| p.partition)
            .collect();
        Self {
            plans,
            open,
            bounded,
            finished,
        }
    }

    fn judge(&mut self, partition: i32, offset: i64, timestamp_ms: Option<i64>) -> Verdict {
        let Some(plan) = self.plans.get_mut(&partition) else {
            return Verdict::Forward;
        };
        if plan.end.is_some_and(|end| offset >= end)
            || plan
                .stop_after_ms
                .zip(timestamp_ms)
                .is_some_and(|(stop, ts)| ts > stop)
        {
            return Verdict::PastEnd;
        }
        if let Some(from) = plan.skip_before_ms {
            if timestamp_ms.is_some_and(|ts| ts < from) {
                return Verdict::Skip;
            }
            plan.skip_before_ms = None;
        }
        Verdict::Forward
    }

    /// Marks the partition done if `offset` was its last; true when the whole read is over.
    fn close(&mut self, partition: i32, offset: Option<i64>) -> bool {
        let last = match offset {
            None => true,
            Some(offset) => self
                .plans
                .get(&partition)
                .and_then(|p| p.end)
                .is_some_and(|end| offset + 1 >= end),
        };
        if last {
            self.open.remove(&partition);
        }
        self.over()
    }

    fn over(&self) -> bool {
        let over = self.bounded && self.open.is_empty();
        if over {
            self.finished.store(true, Ordering::SeqCst);
        }
        over
    }
}

fn pause_partition(consumer: &ConsoleConsumer, topic: &str, partition: i32) {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    if let Err(error) = consumer.pause(&list) {
        tracing::debug!(%error, partition, "could not pause a finished partition");
    }
}

/// Copies a message out of librdkafka's buffers, noting any offsets skipped before it.
fn copy_message(
    message: &rdkafka::message::BorrowedMessage<'_>,
    gaps: &mut OffsetGaps,
    topics: &mut TopicNames,
    status: &watch::Sender<ConsumerStatus>,
) -> FetchedMessage {
    let skipped = gaps.observe(message.partition(), message.offset());
    if skipped > 0 && gaps.expected {
        tracing::trace!(
            partition = message.partition(),
            offset = message.offset(),
            skipped,
            "offsets skipped (transaction markers)"
        );
    } else if skipped > 0 {
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
            topic: topics.name(message.topic()),
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

/// The topic names of fetched messages, one shared copy of each: a consumer reads one topic
/// (a replay a few), so every message of a run refers to the same name instead of a copy.
#[derive(Debug, Default)]
struct TopicNames(Vec<Arc<str>>);

impl TopicNames {
    fn name(&mut self, topic: &str) -> Arc<str> {
        if let Some(known) = self.0.iter().find(|known| &***known == topic) {
            return Arc::clone(known);
        }
        let name: Arc<str> = topic.into();
        self.0.push(Arc::clone(&name));
        name
    }
}

/// Notices offsets that were never delivered: within one assignment, each partition's next
/// message should carry the offset after the previous one.
#[derive(Debug, Default)]
pub struct OffsetGaps {
    next: HashMap<i32, i64>,
    /// Gaps are the rule (a transactional topic's commit markers): neither warned nor counted.
    expected: bool,
}

impl OffsetGaps {
    pub fn expected(expected: bool) -> Self {
        Self {
            next: HashMap::new(),
            expected,
        }
    }

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

/// Fetches messages and hands them on in batches: the first waits, the rest are whatever
/// librdkafka already holds (at most `MAX_BATCH`). A positioned read (`range`) skips what is
/// before its start and stops each partition at its end.
async fn fetch_loop(
    consumer: Arc<ConsoleConsumer>,
    sender: mpsc::Sender<Vec<FetchedMessage>>,
    mut stop: watch::Receiver<bool>,
    poll_timeout: Duration,
    counters: FetchCounters,
    mut range: RangeState,
    mut gaps: OffsetGaps,
) {
    let FetchCounters {
        status,
        fetched,
        generation,
    } = counters;
    let mut seen_generation = generation.load(Ordering::SeqCst);
    let mut consecutive_errors = 0u32;
    let mut topics = TopicNames::default();
    if range.over() {
        tracing::info!("replay: nothing to read in the requested range");
        return;
    }
    loop {
        if *stop.borrow() {
            break;
        }
        let received = tokio::select! {
            _ = stop.changed() => break,
            received = tokio::time::timeout(poll_timeout, consumer.recv()) => received,
        };
        let first = match received {
            Err(_idle) => continue,
            Ok(Err(error)) => {
                if let Some(text) = fatal_text(&consumer) {
                    // Nothing more can be fetched with this consumer: stop, and let the
                    // runtime say why.
                    tracing::error!("{text}");
                    status.send_modify(|s| s.last_error = Some(text.clone()));
                    break;
                }
                consecutive_errors += 1;
                if let Some(left_out) = super::quiet::admit(&format!("fetch {error}")) {
                    tracing::warn!(%error, left_out, "fetch error; retrying");
                }
                status.send_modify(|s| s.last_error = Some(error.to_string()));
                // Back off a little on repeated errors so a broken broker is not hammered.
                let pause = Duration::from_millis(50 * u64::from(consecutive_errors.min(20)));
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
            Ok(Ok(message)) => message,
        };
        consecutive_errors = 0;
        let current = generation.load(Ordering::SeqCst);
        if current != seen_generation {
            seen_generation = current;
            gaps.forget();
        }
        let mut batch = Vec::with_capacity(MAX_BATCH.min(64));
        let mut over = false;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            let (partition, offset) = (message.partition(), message.offset());
            match range.judge(partition, offset, message.timestamp().to_millis()) {
                Verdict::Forward => {
                    batch.push(copy_message(&message, &mut gaps, &mut topics, &status));
                    if range.open.contains(&partition) {
                        let before = range.open.len();
                        over = range.close(partition, Some(offset));
                        if range.open.len() < before {
                            pause_partition(&consumer, message.topic(), partition);
                        }
                    }
                }
                // Not handed on, but read: no gap before the next one.
                Verdict::Skip => {
                    gaps.observe(partition, offset);
                }
                Verdict::PastEnd => {
                    pause_partition(&consumer, message.topic(), partition);
                    over = range.close(partition, None);
                }
            }
            drop(message);
            if over || batch.len() >= MAX_BATCH {
                break;
            }
            // Whatever else is already queued joins the batch, without waiting.
            match consumer.recv().now_or_never() {
                Some(Ok(message)) => next = Some(message),
                Some(Err(error)) => {
                    tracing::warn!(%error, "fetch error; retrying");
                    status.send_modify(|s| s.last_error = Some(error.to_string()));
                }
                None => {}
            }
        }
        fetched.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if !batch.is_empty() {
            // Waiting here when the runtime is behind is the backpressure.
            tokio::select! {
                _ = stop.changed() => break,
                sent = sender.send(batch) => if sent.is_err() { break },
            }
        }
        if over {
            tracing::info!("replay: every partition reached its end");
            break;
        }
    }
    tracing::debug!("fetch loop stopped");
}

/// Where an observer starts reading each partition: `earliest` (or `--from-beginning`) reads
/// the retained history, anything else only what arrives from now on.
fn observer_start(auto_offset_reset: &str) -> Offset {
    match auto_offset_reset {
        "earliest" | "smallest" | "beginning" => Offset::Beginning,
        _ => Offset::End,
    }
}

/// An observer of every partition of the topic, for a team console. It joins no consumer
/// group (`assign`, not `subscribe`): the workers' group keeps all its partitions, any number
/// of consoles each see every event, and there is no group join to wait for. It commits
/// nothing (`enable.auto.commit=false`, and no `group.id` to commit under), so it can never
/// move the workers' offsets. The partitions are those the topic has at start-up.
/// How an observed topic is written, which decides what a reader of it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Plain produce requests (the incident topic): a gap in the offsets is a message lost
    /// to retention, warned about and counted.
    Plain,
    /// Transactions (`<topic>.state`): only committed records are read, so a fenced worker's
    /// aborted ones never show; every commit leaves a marker in the log, so gaps are the rule.
    Transactional,
}

pub fn start_observer(
    config: &Config,
    stop: watch::Receiver<bool>,
    writes: Writes,
) -> KafkaResult<KafkaSource> {
    let Shared {
        status,
        paused,
        generation,
        fetched,
        context,
    } = Shared::new(config, "(none: observer)".into());
    let mut client = client_config_under(config, true, INCIDENT_CONSUMER_DEFAULTS);
    client
        .set(
            "statistics.interval.ms",
            config.kafka.statistics_interval_ms.to_string(),
        )
        .set("enable.partition.eof", "false");
    apply_passthrough(&mut client, config, true);
    // After the passthrough: an observer must never commit, whatever `-X` says. librdkafka
    // wants a `group.id` even for `assign`; one unique to this process is never joined and,
    // with no commits, never written, so it cannot touch the workers' group.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    client
        .set(
            "group.id",
            format!("incident-console-observer-{}-{nanos}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    if writes == Writes::Transactional {
        client.set("isolation.level", "read_committed");
    }
    let consumer: ConsoleConsumer = client.create_with_context(context)?;
    let consumer = Arc::new(consumer);
    // `channel_capacity` counts messages; the channel carries batches of up to MAX_BATCH.
    let (sender, messages) = mpsc::channel(config.kafka.channel_capacity.div_ceil(MAX_BATCH));
    let poll_timeout = Duration::from_millis(config.kafka.poll_timeout_ms);
    let topic = config.kafka.topic.clone();
    let start = observer_start(&config.kafka.auto_offset_reset);
    let observed = fetched.clone();
    let task = {
        let consumer = consumer.clone();
        let status = status.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            // The partition count is a broker round trip: retried until the topic exists.
            let partitions = loop {
                let probe = consumer.clone();
                let name = topic.clone();
                let found = tokio::task::spawn_blocking(move || {
                    probe
                        .fetch_metadata(Some(&name), Duration::from_secs(5))
                        .map(|metadata| {
                            metadata
                                .topics()
                                .iter()
                                .filter(|t| t.name() == name && t.error().is_none())
                                .map(|t| t.partitions().len() as i32)
                                .sum::<i32>()
                        })
                })
                .await;
                match found {
                    Ok(Ok(count)) if count > 0 => break count,
                    Ok(Ok(_)) => tracing::warn!(%topic, "topic not found yet; retrying"),
                    Ok(Err(error)) => tracing::warn!(%error, %topic, "no metadata yet; retrying"),
                    Err(_) => return,
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            };
            let mut list = TopicPartitionList::new();
            for partition in 0..partitions {
                if let Err(error) = list.add_partition_offset(&topic, partition, start) {
                    tracing::error!(%error, partition, "cannot observe partition");
                }
            }
            if let Err(error) = consumer.assign(&list) {
                tracing::error!(%error, %topic, "cannot assign the topic's partitions");
                return;
            }
            drop(list);
            tracing::info!(%topic, partitions, "observing every partition (no group, no commits)");
            status.send_modify(|s| s.assigned_partitions = (0..partitions).collect());
            let range = RangeState::new(HashMap::new(), Arc::new(AtomicBool::new(false)));
            let counters = FetchCounters {
                status,
                fetched,
                generation,
            };
            let gaps = OffsetGaps::expected(writes == Writes::Transactional);
            fetch_loop(consumer, sender, stop, poll_timeout, counters, range, gaps).await;
        })
    };
    Ok(KafkaSource {
        control: ConsumerControl {
            consumer,
            paused,
            status,
            topic: config.kafka.topic.clone(),
            // An observer never moves a group's offsets.
            commits: false,
            finished: Arc::new(AtomicBool::new(false)),
            fetched: observed,
        },
        messages,
        task,
    })
}

impl ConsumerControl {
    /// Closes the consumer without committing anything (an observer's end). Off the async
    /// threads and bounded, like `commit_and_close`.
    pub async fn close_without_commit(self, timeout: Duration) {
        let consumer = self.consumer;
        let work = tokio::task::spawn_blocking(move || drop(consumer));
        if tokio::time::timeout(timeout, work).await.is_err() {
            tracing::warn!("consumer did not close within {timeout:?}; exiting anyway");
        }
    }
}

#[cfg(test)]
mod range_tests {
    use super::*;

    #[test]
    fn the_operators_settings_win_over_a_uses_own_defaults() {
        let mut config = Config::default();
        config
            .kafka
            .properties
            .insert("linger.ms".to_string(), "50".to_string());
        let client = client_config_under(
            &config,
            false,
            &[("linger.ms", "5"), ("enable.idempotence", "false")],
        );
        assert_eq!(client.get("linger.ms"), Some("50"), "-X wins");
        assert_eq!(
            client.get("enable.idempotence"),
            Some("false"),
            "a default the operator left alone is kept"
        );
    }

    fn plan(partition: i32, start: i64, end: Option<i64>) -> PartitionPlan {
        PartitionPlan {
            partition,
            start,
            end,
            skip_before_ms: None,
            stop_after_ms: None,
        }
    }

    #[test]
    fn partition_offsets_parse_or_name_the_flag() {
        assert_eq!(
            parse_partition_offset("--from-offset", "2:150"),
            Ok((2, 150))
        );
        for bad in ["2", "x:1", "1:y", "-1:5", "1:-5", ""] {
            let error = parse_partition_offset("--from-offset", bad).unwrap_err();
            assert!(error.starts_with("--from-offset"), "{error}");
        }
    }

    #[test]
    fn a_bounded_read_ends_when_every_partition_reached_its_end() {
        let finished = Arc::new(AtomicBool::new(false));
        let plans = HashMap::from([(0, plan(0, 5, Some(7))), (1, plan(1, 3, Some(3)))]);
        let mut state = RangeState::new(plans, finished.clone());
        assert!(!state.over(), "partition 1 is empty, 0 is not");
        assert_eq!(state.judge(0, 5, None), Verdict::Forward);
        assert!(!state.close(0, Some(5)));
        assert_eq!(state.judge(0, 6, None), Verdict::Forward);
        assert!(state.close(0, Some(6)));
        assert!(finished.load(Ordering::SeqCst));
    }

    #[test]
    fn times_skip_before_the_start_and_end_after_the_stop() {
        let finished = Arc::new(AtomicBool::new(false));
        let mut timed = plan(0, 0, Some(100));
        timed.skip_before_ms = Some(1_000);
        timed.stop_after_ms = Some(2_000);
        let mut state = RangeState::new(HashMap::from([(0, timed)]), finished);
        assert_eq!(state.judge(0, 0, Some(500)), Verdict::Skip);
        assert_eq!(state.judge(0, 1, Some(1_000)), Verdict::Forward);
        // Once started, an older timestamp (producer clocks differ) is not skipped.
        assert_eq!(state.judge(0, 2, Some(900)), Verdict::Forward);
        assert_eq!(state.judge(0, 3, Some(2_001)), Verdict::PastEnd);
        assert!(state.close(0, None));
    }

    #[test]
    fn an_unbounded_partition_keeps_the_read_going() {
        let finished = Arc::new(AtomicBool::new(false));
        let plans = HashMap::from([(0, plan(0, 0, Some(1))), (1, plan(1, 0, None))]);
        let mut state = RangeState::new(plans, finished);
        assert!(!state.close(0, Some(0)));
        assert!(!state.over());
    }
}

#[cfg(test)]
mod gap_tests {
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
