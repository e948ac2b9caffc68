//! Notification delivery. Effects arrive through `submit`, which never blocks or waits: it puts
//! the notification in a bounded outbox (or, when that is full, counts and logs it, and with a
//! journal the refill task queues it again from there once there is room: `refill`). Behind
//! the outbox a dispatcher task routes each notification to deliveries (channel + recipient),
//! drops duplicates (`Claims`), applies each channel's rate limit (held-back ones are
//! summarised in a digest) and hands the rest to one worker per channel, which retries with
//! backoff until a deadline. Channels: email (SMTP), Slack, PagerDuty Events v2, a webhook,
//! SMS (Twilio).
//!
//! - `config`: the `notifications:` settings; `template`: message templates;
//! - `routing`: audience and routes -> deliveries; `policy`: backoff, Retry-After, rate limit;
//! - `store`: the dedup claims in memory, and the delivery changes the journal records;
//! - `send`: one attempt on the wire;
//! - `worker`: the dispatcher and channel tasks; `refill`: the outbox refilled after an overflow.

pub mod config;
/// Builders for tests of the layers that keep notification state (here, the journal, the team).
pub mod fixtures;
pub mod policy;
pub mod refill;
pub mod routing;
pub mod send;
pub mod store;
pub mod template;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use config::{Channel, NotifyConfig};
pub use refill::{DecidedSource, Refill};
pub use store::{
    AttemptOutcome, Claims, Delivery, DeliveryChange, DeliveryRecorder, Payload, ResumedDeliveries,
    ResumedNotifications,
};

use incident_core::engine::Notification;
use incident_core::permit::SideEffects;
use serde::Serialize;

use worker::{ChannelWorker, Dispatcher, Shared};

/// A channel may have this many times its queue's capacity waiting in the dispatcher for room
/// (see `worker::Parked`) before a delivery is given up as `queue_full`.
const PARK_FACTOR: usize = 4;

/// Hands notifications to the delivery tasks.
pub struct Notifier {
    outbox: Option<mpsc::Sender<Notification>>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    channels_enabled: bool,
    /// With a journal: wakes the task that queues again what the full outbox refused.
    refill: Option<(Arc<tokio::sync::Notify>, JoinHandle<()>)>,
}

impl Notifier {
    /// Starts the delivery tasks on the current tokio runtime, keeping nothing across a
    /// restart. Fails on a template that does not parse or names an unknown variable, or a
    /// client that cannot be built.
    pub fn start(config: &NotifyConfig) -> anyhow::Result<Self> {
        Self::start_gated(
            config,
            None,
            ResumedDeliveries::default(),
            SideEffects::always(),
            None,
        )
    }

    /// As `start`, recording every delivery change through `recorder` (the journal), with the
    /// claims and pending deliveries the journal held at start: pending ones are sent first,
    /// claimed keys are not sent again.
    pub fn start_with_journal(
        config: &NotifyConfig,
        recorder: Arc<dyn DeliveryRecorder>,
        resumed: ResumedDeliveries,
    ) -> anyhow::Result<Self> {
        Self::start_gated(config, Some(recorder), resumed, SideEffects::always(), None)
    }

    /// As `start_with_journal` (or `start`, without a recorder), sending only while
    /// `side_effects` allows it (a team worker passes its lease), and with `refill`, queueing
    /// again from the journal what its full outbox refused.
    pub fn start_gated(
        config: &NotifyConfig,
        recorder: Option<Arc<dyn DeliveryRecorder>>,
        resumed: ResumedDeliveries,
        side_effects: SideEffects,
        refill: Option<Refill>,
    ) -> anyhow::Result<Self> {
        config
            .validate()
            .map_err(|(field, message)| anyhow::anyhow!("notifications.{field}: {message}"))?;
        let templates = template::TemplateSet::load(config.templates_dir.as_deref())
            .map_err(|error| anyhow::anyhow!("notification template: {error}"))?;
        let senders = Arc::new(send::Senders::new(config)?.gated_by(side_effects));
        let enabled: Vec<Channel> = Channel::ALL
            .into_iter()
            .filter(|channel| config.enabled(*channel))
            .collect();
        let mut claims = Claims::new(
            Duration::from_secs(config.dedup.window_secs),
            config.dedup.max_entries,
        );
        for (key, at) in &resumed.claims {
            claims.restore(key, *at);
        }
        let shared = Arc::new(Shared::new(claims, recorder, &enabled));
        let mut tasks = Vec::new();
        let mut queues = HashMap::new();
        let mut limiters = HashMap::new();
        let now = Instant::now();
        for channel in &enabled {
            let (normal, receiver) = mpsc::channel(config.delivery.queue_capacity);
            let (urgent, urgent_receiver) = mpsc::channel(config.delivery.queue_capacity);
            queues.insert(*channel, worker::ChannelQueues { normal, urgent });
            limiters.insert(*channel, policy::RateLimiter::new(&config.rate_limit, now));
            let worker = ChannelWorker {
                channel: *channel,
                senders: senders.clone(),
                backoff: policy::Backoff::from_config(&config.delivery),
                concurrency: config.delivery.concurrency,
                capacity: config.delivery.queue_capacity,
                shared: shared.clone(),
            };
            tasks.push(tokio::spawn(worker.run(receiver, urgent_receiver)));
        }
        let mut not_resumed = Vec::new();
        for delivery in resumed.pending {
            let accepted = queues
                .get(&delivery.channel)
                .is_some_and(|queues| queues.offer(delivery.clone()).is_none());
            if accepted {
                shared.board().in_channels += 1;
            } else {
                tracing::warn!(
                    channel = %delivery.channel,
                    recipient = delivery.recipient,
                    "pending delivery from the store not resumed (channel off or queue full)"
                );
                shared
                    .board()
                    .fail(delivery.channel, "not_resumed", "channel off or queue full");
                not_resumed.push(
                    shared.failed_change(&delivery.key, "not resumed: channel off or queue full"),
                );
            }
        }
        if !not_resumed.is_empty() {
            let shared = shared.clone();
            tasks.push(tokio::spawn(
                async move { shared.record(not_resumed).await },
            ));
        }
        let (outbox, receiver) = mpsc::channel(config.outbox_capacity);
        let dispatcher = Dispatcher {
            router: routing::Router::new(config.clone(), templates),
            shared: shared.clone(),
            limiters,
            channels: queues,
            parked: HashMap::new(),
            park_capacity: config.delivery.queue_capacity * PARK_FACTOR,
        };
        tasks.push(tokio::spawn(dispatcher.run(receiver)));
        let refill = refill.map(|refill| {
            let wake = Arc::new(tokio::sync::Notify::new());
            let task = tokio::spawn(refill::run(
                refill,
                outbox.downgrade(),
                shared.clone(),
                wake.clone(),
            ));
            (wake, task)
        });
        // Like routes, self-alerts skip channels that are not configured: say so at start
        // rather than leave the administrators believing they will be told.
        for channel in &config.self_alerts.channels {
            if !config.enabled(*channel) {
                tracing::warn!(
                    channel = %channel,
                    "notifications.self_alerts.channels names a channel that is not configured: self-alerts are not sent on it"
                );
            }
        }
        if enabled.is_empty() {
            tracing::info!("notifications: no channel configured; notifications are only logged");
        } else {
            let names: Vec<&str> = enabled.iter().map(|c| c.as_str()).collect();
            tracing::info!(channels = names.join(","), "notifications: delivering");
        }
        Ok(Self {
            outbox: Some(outbox),
            shared,
            tasks,
            channels_enabled: !enabled.is_empty(),
            refill,
        })
    }

    /// Whether any channel is configured: without one, notifications are only logged.
    pub fn has_channels(&self) -> bool {
        self.channels_enabled
    }

    /// How many notifications the outbox holds at most.
    pub fn capacity(&self) -> usize {
        self.outbox
            .as_ref()
            .map_or(0, |outbox| outbox.max_capacity())
    }

    /// Queues a notification for delivery. Never blocks or waits: when the outbox is full the
    /// notification is counted (`outbox_overflowed`) and logged, and the dispatcher logs a
    /// summary by kind; with a journal the refill task queues it again once there is room.
    pub fn submit(&mut self, notification: Notification) {
        let Some(outbox) = &self.outbox else {
            tracing::warn!(
                kind = notification.kind.as_str(),
                incident_id = notification.incident_id,
                "notification after shutdown: not sent"
            );
            self.count_overflow(&notification);
            return;
        };
        // Counted before it can be taken out, so the outbox never looks emptier than it is.
        self.shared.accepted.fetch_add(1, Ordering::SeqCst);
        if let Err(error) = outbox.try_send(notification) {
            self.shared.accepted.fetch_sub(1, Ordering::SeqCst);
            let notification = match error {
                mpsc::error::TrySendError::Full(n) | mpsc::error::TrySendError::Closed(n) => n,
            };
            let first = !self
                .shared
                .overflow_pending_report
                .swap(true, Ordering::Relaxed);
            if first {
                tracing::warn!(
                    kind = notification.kind.as_str(),
                    incident_id = notification.incident_id,
                    "notification outbox full: notification not sent (a summary follows)"
                );
            } else {
                tracing::debug!(
                    kind = notification.kind.as_str(),
                    incident_id = notification.incident_id,
                    "notification outbox full: notification not sent"
                );
            }
            self.count_overflow(&notification);
        }
    }

    fn count_overflow(&self, notification: &Notification) {
        let index = config::KINDS
            .iter()
            .position(|kind| *kind == notification.kind)
            .unwrap_or(0);
        self.shared.overflowed[index].fetch_add(1, Ordering::Relaxed);
        self.shared.overflowed_now();
        if let Some((wake, _)) = &self.refill {
            wake.notify_one();
        }
    }

    pub fn status(&self) -> NotifierStatus {
        self.shared.status()
    }

    /// Stops taking notifications and lets the tasks finish what they hold (including retries)
    /// for at most `timeout`; what is left is logged and, with a persistent store, resumed at
    /// the next start.
    pub async fn shutdown(&mut self, timeout: Duration) {
        // First the refill, which may hold a sender: what it has not queued stays decided in
        // the journal and is resumed at the next start.
        if let Some((_, task)) = self.refill.take() {
            task.abort();
            let _ = task.await;
        }
        self.outbox = None;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut unfinished = false;
        for task in &mut self.tasks {
            if tokio::time::timeout_at(deadline, &mut *task).await.is_err() {
                unfinished = true;
                task.abort();
            }
        }
        self.tasks.clear();
        let status = self.shared.status();
        let pending = status.outbox_depth;
        if unfinished || pending > 0 {
            tracing::warn!(
                pending,
                delivered = status.delivered,
                failed = status.failed,
                "notifications unfinished at shutdown"
            );
        } else {
            tracing::info!(
                delivered = status.delivered,
                failed = status.failed,
                deduplicated = status.deduplicated,
                rate_limited = status.rate_limited,
                outbox_overflowed = status.outbox_overflowed,
                "notifications: all delivered or settled"
            );
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.refill {
            task.abort();
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_template_stops_the_start_and_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("email")).unwrap();
        std::fs::write(
            dir.path().join("email/escalation.txt"),
            "Subject: page {{ level }}\n\nGo: {{ levle_name }}\n",
        )
        .unwrap();
        let config = NotifyConfig {
            templates_dir: Some(dir.path().to_path_buf()),
            ..NotifyConfig::default()
        };
        let error = Notifier::start(&config).err().expect("refused").to_string();
        assert!(error.contains("email/escalation.txt:3:"), "{error}");
        assert!(error.contains("unknown variable `levle_name`"), "{error}");

        // A good override starts.
        std::fs::write(
            dir.path().join("email/escalation.txt"),
            "Subject: page {{ level }}\n\nGo: {{ level_name }}\n",
        )
        .unwrap();
        let mut notifier = Notifier::start(&config).unwrap();
        notifier.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn an_invalid_configuration_does_not_start() {
        let config = NotifyConfig {
            outbox_capacity: 0,
            ..NotifyConfig::default()
        };
        let error = Notifier::start(&config).err().expect("refused").to_string();
        assert_eq!(error, "notifications.outbox_capacity: must be more than 0");
    }
}

/// Delivery state of outgoing notifications, per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct NotifierStatus {
    pub outbox_depth: usize,
    pub delivered: u64,
    pub failed: u64,
    pub deduplicated: u64,
    pub rate_limited: u64,
    /// Notifications refused because the outbox was full (counted and logged, not sent).
    pub outbox_overflowed: u64,
    pub channels: Vec<ChannelStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ChannelStatus {
    pub name: String,
    pub delivered: u64,
    pub failed: u64,
    /// Deliveries currently waiting to be retried.
    pub retrying: u64,
    pub deduplicated: u64,
    pub rate_limited: u64,
    /// Final failures by reason (`http_400`, `smtp_550`, `timeout`, `no_address`, ...).
    pub failures: std::collections::BTreeMap<String, u64>,
    pub last_error: Option<String>,
}
