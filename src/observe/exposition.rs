//! `/metrics`: the Prometheus text exposition, written with `prometheus-client` from the
//! latest published snapshot and consumer status at scrape time. Nothing is counted twice:
//! the runtime already keeps these figures for the console, and reading its snapshot adds no
//! work to the message path.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::core::metrics::{DURATION_BUCKETS, DurationSummary};
use crate::status::ConnectionState;

use super::Sources;

pub const PREFIX: &str = "incident_console";

/// A registry holding the one collector that reads `sources` at each scrape.
pub fn registry(sources: Sources) -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(SnapshotCollector { sources }));
    registry
}

/// The exposition text for `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::prometheus_text::encode(&mut text, registry) {
        // Only a formatter error can get here; writing to a String does not fail.
        tracing::error!(%error, "cannot encode metrics");
    }
    text
}

#[derive(Debug)]
struct SnapshotCollector {
    sources: Sources,
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(enc.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(enc.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, i64)>,
) -> fmt::Result {
    let mut metric = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        let sample = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value.max(0) as u64).encode(sample)?,
            _ => ConstGauge::new(value).encode(sample)?,
        }
    }
    Ok(())
}

fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    summary: &DurationSummary,
) -> fmt::Result {
    let buckets: Vec<(f64, u64)> = DURATION_BUCKETS
        .iter()
        .copied()
        .zip(summary.buckets.iter().copied())
        .collect();
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<NoLabelSet>(summary.sum_secs, summary.count, &buckets, None)
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let snapshot = self.sources.snapshots.borrow().clone();
        let consumer = self.sources.consumer.borrow().clone();
        let metrics = &snapshot.engine.metrics;
        let enc = &mut enc;

        family(
            enc,
            "events_handled",
            "Incident events decoded and handled, by event type.",
            MetricType::Counter,
            metrics
                .per_type
                .iter()
                .map(|t| ([("event_type", t.event_type.as_str())], t.count as i64)),
        )?;
        family(
            enc,
            "dead_letters",
            "Messages that did not decode and were copied to the dead-letter topic, by reason.",
            MetricType::Counter,
            metrics
                .decode_failures
                .iter()
                .map(|(reason, count)| ([("reason", *reason)], *count as i64)),
        )?;
        counter(
            enc,
            "decode_failures",
            "Messages that did not decode (all reasons).",
            metrics.decode_failures.values().sum(),
        )?;
        histogram(
            enc,
            "processing_seconds",
            "Time to handle one message, from fetch to effects decided.",
            &metrics.processing,
        )?;

        let topic = consumer.topic.as_str();
        let partitions = self.sources.partitions();
        let partition_gauge = |enc: &mut DescriptorEncoder,
                               name: &str,
                               help: &str,
                               value: fn(&crate::status::PartitionLag) -> Option<i64>|
         -> fmt::Result {
            family(
                enc,
                name,
                help,
                MetricType::Gauge,
                partitions.iter().filter_map(|p| {
                    value(p).map(|v| {
                        (
                            [
                                ("topic", topic.to_string()),
                                ("partition", p.partition.to_string()),
                            ],
                            v,
                        )
                    })
                }),
            )
        };
        partition_gauge(
            enc,
            "consumer_lag",
            "Messages behind: high watermark minus committed offset, per assigned partition.",
            |p| p.lag,
        )?;
        partition_gauge(
            enc,
            "consumer_committed_offset",
            "Offset the consumer group has committed, per assigned partition.",
            |p| p.committed_offset,
        )?;
        partition_gauge(
            enc,
            "consumer_high_watermark",
            "High watermark (next offset to be written), per assigned partition.",
            |p| p.high_watermark,
        )?;
        family(
            enc,
            "broker_connection_state",
            "Connection to the Kafka brokers: 1 for the current state, 0 for the others.",
            MetricType::Gauge,
            ["connecting", "connected", "disconnected"].map(|state| {
                (
                    [("state", state)],
                    i64::from(consumer.connection.label() == state),
                )
            }),
        )?;
        gauge(
            enc,
            "broker_connected",
            "1 while the Kafka brokers are reachable.",
            i64::from(consumer.connection == ConnectionState::Connected),
        )?;
        gauge(
            enc,
            "consumer_assigned_partitions",
            "Partitions assigned to this consumer.",
            consumer.assigned_partitions.len() as i64,
        )?;
        gauge(
            enc,
            "consumer_paused",
            "1 while consumption is paused by an operator.",
            i64::from(consumer.paused),
        )?;

        let mut open_by_level = std::collections::BTreeMap::<(u32, String), i64>::new();
        for view in &snapshot.engine.escalations {
            if view.escalation.acknowledged.is_none() {
                *open_by_level
                    .entry((view.escalation.level, view.level_name.clone()))
                    .or_default() += 1;
            }
        }
        family(
            enc,
            "escalations_open",
            "Escalations not yet acknowledged, by level.",
            MetricType::Gauge,
            open_by_level.into_iter().map(|((level, name), count)| {
                ([("level", level.to_string()), ("level_name", name)], count)
            }),
        )?;
        gauge(
            enc,
            "escalations_acknowledged_unresolved",
            "Escalations acknowledged whose incident is not yet resolved.",
            snapshot
                .engine
                .escalations
                .iter()
                .filter(|view| view.escalation.acknowledged.is_some())
                .count() as i64,
        )?;
        counter(
            enc,
            "escalations_opened",
            "Escalations opened.",
            metrics.escalations_opened,
        )?;
        counter(
            enc,
            "escalations_raised",
            "Escalations raised to a higher level.",
            metrics.escalations_raised,
        )?;
        counter(
            enc,
            "acknowledgements",
            "Escalations acknowledged.",
            metrics.acknowledged,
        )?;
        counter(
            enc,
            "incidents_resolved",
            "Incidents resolved or closed.",
            metrics.resolved,
        )?;
        histogram(
            enc,
            "time_to_acknowledge_seconds",
            "Time from an escalation's opening to its acknowledgement.",
            &metrics.time_to_acknowledge,
        )?;
        histogram(
            enc,
            "time_to_resolve_seconds",
            "Time from an incident's creation to its resolution.",
            &metrics.time_to_resolve,
        )?;

        let notifier = &snapshot.notifier;
        let per_channel = |value: fn(&crate::status::ChannelStatus) -> u64| {
            notifier
                .channels
                .iter()
                .map(move |c| ([("channel", c.name.clone())], value(c) as i64))
                .collect::<Vec<_>>()
        };
        family(
            enc,
            "notifications_delivered",
            "Notifications delivered, by channel.",
            MetricType::Counter,
            per_channel(|c| c.delivered),
        )?;
        family(
            enc,
            "notifications_failed",
            "Notifications given up, by channel and reason.",
            MetricType::Counter,
            notifier.channels.iter().flat_map(|c| {
                c.failures.iter().map(|(reason, count)| {
                    (
                        [("channel", c.name.clone()), ("reason", reason.clone())],
                        *count as i64,
                    )
                })
            }),
        )?;
        family(
            enc,
            "notifications_deduplicated",
            "Notifications not sent because the same one was sent within the window, by channel.",
            MetricType::Counter,
            per_channel(|c| c.deduplicated),
        )?;
        family(
            enc,
            "notifications_rate_limited",
            "Notifications held back by the rate limit (summarised in digests), by channel.",
            MetricType::Counter,
            per_channel(|c| c.rate_limited),
        )?;
        family(
            enc,
            "notifications_retrying",
            "Deliveries waiting to be retried, by channel.",
            MetricType::Gauge,
            per_channel(|c| c.retrying),
        )?;
        gauge(
            enc,
            "notification_outbox_depth",
            "Notifications accepted and not yet routed.",
            notifier.outbox_depth as i64,
        )?;
        counter(
            enc,
            "notification_outbox_overflowed",
            "Notifications refused because the outbox was full.",
            notifier.outbox_overflowed,
        )?;

        if let Some(journal) = self.sources.journal.as_ref().map(|stats| stats()) {
            gauge(
                enc,
                "journal_queue_depth",
                "Journal submissions waiting for the writer.",
                journal.queued as i64,
            )?;
            counter(
                enc,
                "journal_committed_records",
                "Records committed to the journal.",
                journal.committed_records,
            )?;
            counter(
                enc,
                "journal_transactions",
                "Journal transactions committed.",
                journal.transactions,
            )?;
            counter(
                enc,
                "journal_failed_submissions",
                "Journal submissions that failed to commit.",
                journal.failed_submissions,
            )?;
            histogram(
                enc,
                "journal_write_seconds",
                "Time to write and commit one journal transaction.",
                &journal.write_seconds,
            )?;
        }
        family(
            enc,
            "self_alert_firing",
            "1 for each of the console's alerts about itself that is firing now.",
            MetricType::Gauge,
            self.sources
                .firing()
                .into_iter()
                .map(|alert| ([("alert", alert)], 1)),
        )?;
        let readiness = self.sources.readiness();
        gauge(
            enc,
            "ready",
            "1 while /readyz answers ready (connected, assigned, journal writable, not stuck).",
            i64::from(readiness.ready),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::watch;

    use super::*;
    use crate::core::engine::{Engine, EngineConfig};
    use crate::status::{ConsumerStatus, NotifierStatus, PartitionLag, Snapshot};

    #[test]
    fn the_exposition_carries_the_snapshot_with_conventional_names() {
        let mut engine = Engine::new(EngineConfig::default());
        engine.record_processing(std::time::Duration::from_millis(3));
        let now = chrono::Utc::now();
        let snapshot = Arc::new(Snapshot {
            engine: engine.snapshot(now),
            consumer: ConsumerStatus::default(),
            notifier: NotifierStatus::default(),
            operator: "tester".into(),
            demo: false,
            team: None,
        });
        let (_snapshot_tx, snapshots) = watch::channel(snapshot);
        let (_status_tx, consumer) = watch::channel(ConsumerStatus {
            topic: "incidents".into(),
            connection: ConnectionState::Connected,
            assigned_partitions: vec![0],
            partitions: vec![PartitionLag {
                partition: 0,
                committed_offset: Some(40),
                high_watermark: Some(42),
                lag: Some(2),
            }],
            ..ConsumerStatus::default()
        });
        let text = encode(&registry(Sources::new(snapshots, consumer, None)));
        for line in [
            "# TYPE incident_console_events_handled_total counter",
            "incident_console_events_handled_total{event_type=\"incident_created\"} 0",
            "incident_console_consumer_lag{topic=\"incidents\",partition=\"0\"} 2",
            "incident_console_consumer_high_watermark{topic=\"incidents\",partition=\"0\"} 42",
            "incident_console_broker_connection_state{state=\"connected\"} 1",
            "incident_console_processing_seconds_bucket{le=\"0.0025\"} 0",
            "incident_console_processing_seconds_bucket{le=\"0.005\"} 1",
            "incident_console_processing_seconds_count 1",
            "incident_console_ready 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        // Without a journal, no journal metrics rather than zeros that would mislead.
        assert!(!text.contains("journal_"), "{text}");
    }
}
