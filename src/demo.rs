//! `--demo`: an embedded broker, a topic, and the simulator producing a realistic stream into
//! it, so the whole console runs with no Kafka installed.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use rdkafka::producer::FutureProducer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::kafka::consumer::client_config;
use crate::kafka::embedded::EmbeddedBroker;
use crate::simulate::{self, Pace, ProduceOptions};

pub const DEMO_PARTITIONS: i32 = 6;

/// How many produced events may wait unread. The embedded broker keeps about 5 MiB per
/// partition and silently drops older data, so a simulator at full speed would otherwise run
/// so far ahead that the consumer finds its next offsets gone and stalls. 10,000 events of
/// about 300 bytes (plus batch overhead) stay under 5 MiB even if keys put them all on one
/// partition, and are still a fifth of a second of work at 50,000 events/s.
pub const MAX_UNREAD: u64 = 10_000;

/// Keeps the demo's broker and simulator alive; dropping it stops both.
pub struct Demo {
    pub broker: EmbeddedBroker,
    stop: watch::Sender<bool>,
    consumed: watch::Sender<Option<Arc<AtomicU64>>>,
    pub producer_task: JoinHandle<anyhow::Result<u64>>,
}

/// Starts the broker and the simulator, and points `config` at them.
pub fn start(config: &mut Config, mut options: ProduceOptions) -> anyhow::Result<Demo> {
    let topic = config.kafka.topic.clone();
    let dead_letter_topic = config.dead_letter_topic();
    let broker = EmbeddedBroker::start(1, &[&topic, &dead_letter_topic], DEMO_PARTITIONS)
        .map_err(anyhow::Error::msg)?;
    config.kafka.brokers = broker.bootstrap_servers().to_string();
    // The simulator may start before the consumer joins: read the topic from its start.
    config.kafka.auto_offset_reset = "earliest".into();
    config.kafka.properties.remove("security.protocol");
    tracing::info!(bootstrap = %config.kafka.brokers, %topic, "embedded broker started");
    let producer: FutureProducer = client_config(config, false)
        .set("linger.ms", "5")
        .create()?;
    let (stop, stop_rx) = watch::channel(false);
    let (consumed, consumed_rx) = watch::channel(None);
    options.pace = Some(Pace {
        consumed: consumed_rx,
        max_ahead: MAX_UNREAD,
    });
    let producer_task = tokio::spawn(async move {
        let sent = simulate::produce(&producer, &topic, &options, stop_rx).await?;
        tracing::info!(sent, "simulator finished");
        Ok(sent)
    });
    Ok(Demo {
        broker,
        stop,
        consumed,
        producer_task,
    })
}

impl Demo {
    /// The simulator stays at most `MAX_UNREAD` events ahead of this counter of fetched
    /// messages; until it is given, it waits after the first `MAX_UNREAD`.
    pub fn pace_by(&self, fetched: Arc<AtomicU64>) {
        let _ = self.consumed.send(Some(fetched));
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops the simulator and waits for its producer to close before the broker goes, so no
    /// client is left talking to a vanished broker.
    pub async fn shutdown(self) {
        self.stop();
        let Demo {
            broker,
            stop,
            producer_task,
            ..
        } = self;
        match producer_task.await {
            Ok(Err(error)) => tracing::warn!(%error, "simulator stopped with an error"),
            Err(error) => tracing::warn!(%error, "simulator task failed"),
            Ok(Ok(_)) => {}
        }
        drop(stop);
        drop(broker);
    }
}
