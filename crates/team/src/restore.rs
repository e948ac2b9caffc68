//! Reading `<topic>.state` back: what a new active worker restores at a takeover, and what
//! `incident-console silences` lists in team mode.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;

use super::state::{Restored, Restorer, StateRecord, state_topic};
use crate::config::Config;
use crate::kafka::consumer::client_config;

/// How long reading `<topic>.state` to its end may take before the takeover is retried.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads `<topic>.state` from its start to its end and folds it into what a successor restores.
pub fn read_state(config: &Config) -> anyhow::Result<Restored> {
    use rdkafka::consumer::BaseConsumer;
    let topic = state_topic(&config.kafka.topic);
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    let mut client = client_config(config, true);
    client
        .set(
            "group.id",
            format!("{}.restore-{}", config.kafka.group_id, std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "20")
        // Only what committed: a fenced or killed writer's aborted records never count.
        .set("isolation.level", "read_committed")
        // The end is where the broker says it is: the log's last offset is usually a
        // transaction's commit marker, which no message carries.
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer = client.create()?;
    let (low, high) = consumer.fetch_watermarks(&topic, 0, RESTORE_TIMEOUT)?;
    let mut restorer = Restorer::default();
    let mut read = 0u64;
    if high > low {
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(low))?;
        consumer.assign(&list)?;
        drop(list);
        let mut next = low;
        while next < high {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{topic}: read to offset {next} of {high} in {RESTORE_TIMEOUT:?}"
            );
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = match message {
                Ok(message) => message,
                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => break,
                // A dropped connection is reopened by the client; the deadline still holds.
                Err(error) if crate::kafka::is_transport(&error) => {
                    tracing::debug!(%error, "{topic}: connection dropped while restoring; reading on");
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            next = message.offset() + 1;
            read += 1;
            if message.payload().is_none() {
                if let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    restorer.forget(key);
                }
                continue;
            }
            match StateRecord::decode(message.payload()) {
                Some(record) => restorer.push(record),
                None => tracing::warn!(
                    offset = message.offset(),
                    "{topic}: not a state record; skipped"
                ),
            }
        }
    }
    drop(consumer);
    tracing::info!(%topic, records = read, "state read to its end");
    let dedup = &config.notifications.dedup;
    Ok(restorer.finish(
        chrono::Utc::now(),
        Duration::from_secs(dedup.resume_horizon_secs),
        Duration::from_secs(dedup.window_secs),
        dedup.max_entries,
    ))
}
