//! Watching the watcher: a small HTTP server with `/metrics` (Prometheus text format),
//! `/healthz` (the process runs) and `/readyz` (connected, assigned, journal writable, not
//! stuck). Everything is read from what the runtime already publishes (snapshots on a watch
//! channel, the consumer status, the journal's counters), so the message path does no extra
//! work for it. Off unless `--metrics-addr` or `monitoring.metrics_addr` is set.

pub mod alerts;
pub mod exposition;
pub mod health;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
pub use crate::config::monitoring::{MonitoringConfig, check_listen_addr};
use crate::output::OutputRecord;
use crate::status::{Command, ConnectionState, ConsumerStatus, PartitionLag, SharedSnapshot};

use health::{Observation, ProgressWatch, Readiness};

pub use crate::status::JournalStatsFn;

/// High watermarks this module asks the broker for, by partition. librdkafka's statistics
/// only learn a partition's high watermark from fetch responses, so while consumption is
/// paused (or held back) its lag would read as stale; these keep it true.
type Watermarks = Arc<Mutex<BTreeMap<i32, i64>>>;

/// What the endpoints read: the runtime's published state, and the readiness verdict kept
/// up to date by the watch task.
#[derive(Clone)]
pub struct Sources {
    pub snapshots: watch::Receiver<SharedSnapshot>,
    pub consumer: watch::Receiver<ConsumerStatus>,
    pub journal: Option<JournalStatsFn>,
    readiness: Arc<Mutex<Readiness>>,
    watermarks: Watermarks,
    /// Self-alerts firing now, for the metrics and the console header.
    firing: Arc<watch::Sender<Vec<String>>>,
    /// Where self-alert records go in headless mode.
    output: Option<mpsc::WeakSender<OutputRecord>>,
    /// The runtime's commands: self-alert notifications go through its notifier. Weak, so
    /// the runtime still sees every face gone when the console and headless writer are.
    commands: Option<mpsc::WeakSender<Command>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

impl Sources {
    pub fn new(
        snapshots: watch::Receiver<SharedSnapshot>,
        consumer: watch::Receiver<ConsumerStatus>,
        journal: Option<JournalStatsFn>,
    ) -> Self {
        Self {
            snapshots,
            consumer,
            journal,
            readiness: Arc::new(Mutex::new(Readiness {
                ready: false,
                reason: "starting".into(),
            })),
            watermarks: Watermarks::default(),
            firing: Arc::new(watch::Sender::new(Vec::new())),
            output: None,
            commands: None,
        }
    }

    /// Self-alerts are notified (to `notifications.self_alerts`) through the runtime that
    /// `commands` reaches.
    pub fn with_commands(mut self, commands: &mpsc::Sender<Command>) -> Self {
        self.commands = Some(commands.downgrade());
        self
    }

    /// Headless mode: self-alerts also go out as `self_alert` records.
    pub fn with_output(mut self, output: Option<mpsc::WeakSender<OutputRecord>>) -> Self {
        self.output = output;
        self
    }

    /// Names of the self-alerts firing now.
    pub fn firing(&self) -> Vec<String> {
        self.firing.borrow().clone()
    }

    /// Per assigned partition: committed offset from the statistics, high watermark the
    /// larger of the statistics' and the one asked for (watermarks only grow), and the lag.
    pub fn partitions(&self) -> Vec<PartitionLag> {
        let consumer = self.consumer.borrow();
        let polled = self
            .watermarks
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default();
        consumer
            .partitions
            .iter()
            .map(|p| {
                let high = p.high_watermark.max(polled.get(&p.partition).copied());
                PartitionLag {
                    partition: p.partition,
                    committed_offset: p.committed_offset,
                    high_watermark: high,
                    lag: match (high, p.committed_offset) {
                        (Some(high), Some(committed)) => Some((high - committed).max(0)),
                        _ => p.lag,
                    },
                }
            })
            .collect()
    }

    /// Summed lag over the assigned partitions; `None` until any is known.
    pub fn lag(&self) -> Option<i64> {
        let partitions = self.partitions();
        let known: Vec<i64> = partitions.iter().filter_map(|p| p.lag).collect();
        if known.is_empty() {
            self.consumer.borrow().lag
        } else {
            Some(known.iter().sum())
        }
    }

    pub fn readiness(&self) -> Readiness {
        self.readiness
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// What the health checks look at now.
    pub fn observation(&self) -> Observation {
        let snapshot = self.snapshots.borrow().clone();
        let metrics = &snapshot.engine.metrics;
        let handled = metrics.total_events + metrics.dead_lettered;
        let journal_failures = self
            .journal
            .as_ref()
            .map(|stats| stats().failed_submissions);
        let mut observation = Observation::new(&self.consumer.borrow(), handled, journal_failures);
        observation.lag = self.lag();
        observation
    }
}

/// The running server and its watch task; dropping it does not stop them, `shutdown` does.
pub struct Observer {
    pub addr: SocketAddr,
    /// Names of the self-alerts firing now, for the console header.
    pub self_alerts: watch::Receiver<Vec<String>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Observer {
    pub fn shutdown(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// How often readiness is re-evaluated: the granularity of "stuck for N s".
const EVALUATE_EVERY: Duration = Duration::from_secs(1);

/// Binds `addr` and serves the endpoints on the current tokio runtime.
pub async fn start(addr: &str, config: &Config, sources: Sources) -> anyhow::Result<Observer> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| anyhow::anyhow!("--metrics-addr {addr}: cannot listen: {error}"))?;
    let bound = listener.local_addr()?;
    let mut progress = ProgressWatch::new(Duration::from_secs(config.monitoring.stuck_after_secs));
    let poller = watermark_poller(config, &sources)?;
    let mut self_alerts = alerts::SelfAlerts::new(config.monitoring.alerts.clone());
    let mut notices = Notices::new(config, &sources);
    let watched = sources.clone();
    let watch_task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(EVALUATE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_ready = None;
        loop {
            ticker.tick().await;
            let now = Instant::now();
            let observation = watched.observation();
            let readiness = progress.observe(now, &observation);
            let inputs = {
                let snapshot = watched.snapshots.borrow().clone();
                alerts::AlertInputs {
                    connection: observation.connection.clone(),
                    lag: observation.lag,
                    stalled_for: progress.stalled_for(now),
                    dead_letters: snapshot.engine.metrics.dead_lettered,
                    notifier: snapshot.notifier.clone(),
                    events_total: snapshot.engine.metrics.total_events,
                }
            };
            let transitions = self_alerts.evaluate(now, &inputs);
            if let Some(notices) = &mut notices {
                notices.update(now, &transitions);
            }
            for transition in transitions {
                report(&watched, transition);
            }
            let firing = self_alerts.firing();
            watched.firing.send_if_modified(|shown| {
                let changed = *shown != firing;
                *shown = firing;
                changed
            });
            if last_ready != Some(readiness.ready) {
                tracing::info!(ready = readiness.ready, "readiness: {}", readiness.reason);
                last_ready = Some(readiness.ready);
            }
            if let Ok(mut shared) = watched.readiness.lock() {
                *shared = readiness;
            }
        }
    });
    let self_alerts = sources.firing.subscribe();
    let state = Arc::new(AppState {
        registry: exposition::registry(sources.clone()),
        sources,
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    let server = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics endpoint stopped");
        }
    });
    tracing::info!("metrics on http://{bound}/metrics (health: /healthz, /readyz)");
    Ok(Observer {
        addr: bound,
        self_alerts,
        tasks: vec![watch_task, server, poller],
    })
}

/// Logs a self-alert starting or clearing and, in headless mode, writes a record for it.
fn report(sources: &Sources, transition: alerts::Transition) {
    if transition.firing {
        tracing::error!(alert = %transition.alert, "self-alert: {}", transition.detail);
    } else {
        tracing::info!(alert = %transition.alert, "self-alert cleared");
    }
    if let Some(output) = sources.output.as_ref().and_then(mpsc::WeakSender::upgrade) {
        let record = OutputRecord::SelfAlert {
            alert: transition.alert,
            state: if transition.firing {
                "firing"
            } else {
                "cleared"
            },
            detail: transition.detail,
        };
        // Never waits: a slow stdout reader must not hold up the health checks.
        if output.try_send(record).is_err() {
            tracing::warn!("headless output full or closed: self-alert record dropped");
        }
    }
}

/// Self-alert notifications on their way to the runtime: the gate decides which transitions
/// are notified, and what the runtime's command queue cannot take now waits here for the next
/// evaluation (bounded: at most a start and a clear per alert are ever owed at once).
struct Notices {
    gate: alerts::NotifyGate,
    commands: mpsc::WeakSender<Command>,
    waiting: std::collections::VecDeque<crate::core::engine::Notification>,
    console: String,
}

const NOTICES_WAITING: usize = 64;

impl Notices {
    /// `None` when nobody is to be told (no channel in `notifications.self_alerts`) or there
    /// is no runtime to tell them through.
    fn new(config: &Config, sources: &Sources) -> Option<Self> {
        let wanted = &config.notifications.self_alerts;
        if wanted.channels.is_empty() || !config.monitoring.alerts.enabled {
            return None;
        }
        Some(Self {
            gate: alerts::NotifyGate::new(Duration::from_secs(wanted.min_interval_secs)),
            commands: sources.commands.clone()?,
            waiting: std::collections::VecDeque::new(),
            console: format!(
                "group {} on topic {}",
                config.kafka.group_id, config.kafka.topic
            ),
        })
    }

    fn update(&mut self, now: Instant, transitions: &[alerts::Transition]) {
        let wall_ms = chrono::Utc::now().timestamp_millis();
        for notice in self.gate.update(now, wall_ms, transitions) {
            if self.waiting.len() >= NOTICES_WAITING {
                tracing::error!(
                    alert = notice.alert,
                    "self-alert notification dropped: too many waiting"
                );
                continue;
            }
            self.waiting
                .push_back(alerts::notification(&notice, &self.console));
        }
        let Some(commands) = self.commands.upgrade() else {
            if !self.waiting.is_empty() {
                tracing::warn!(
                    count = self.waiting.len(),
                    "runtime gone: self-alert notifications not sent"
                );
                self.waiting.clear();
            }
            return;
        };
        while let Some(notification) = self.waiting.pop_front() {
            // Never waits: a busy runtime must not hold up the health checks.
            match commands.try_send(Command::Notify(Box::new(notification))) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(Command::Notify(notification))) => {
                    self.waiting.push_front(*notification);
                    break;
                }
                Err(_) => {
                    self.waiting.clear();
                    break;
                }
            }
        }
    }
}

/// How long one watermark request may take; a down broker must not hold the poller long.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks the broker for the high watermark of each assigned partition once per statistics
/// interval, with a client of its own (no group), so lag stays true while paused.
fn watermark_poller(config: &Config, sources: &Sources) -> anyhow::Result<JoinHandle<()>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = crate::kafka::consumer::client_config(config, false)
        .set("client.id", "incident-console-metrics")
        .create()?;
    let client = Arc::new(client);
    let topic = config.kafka.topic.clone();
    let every = Duration::from_millis(config.kafka.statistics_interval_ms.max(100));
    let sources = sources.clone();
    Ok(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticker.tick().await;
            let (connected, partitions) = {
                let status = sources.consumer.borrow();
                (
                    status.connection == ConnectionState::Connected,
                    status.assigned_partitions.clone(),
                )
            };
            if !connected {
                continue;
            }
            let client = client.clone();
            let topic = topic.clone();
            let found = tokio::task::spawn_blocking(move || {
                partitions
                    .into_iter()
                    .filter_map(|partition| {
                        client
                            .fetch_watermarks(&topic, partition, WATERMARK_TIMEOUT)
                            .ok()
                            .map(|(_low, high)| (partition, high))
                    })
                    .collect::<BTreeMap<i32, i64>>()
            })
            .await
            .unwrap_or_default();
            if let Ok(mut watermarks) = sources.watermarks.lock() {
                // Partitions no longer assigned are forgotten; the others only grow.
                watermarks.retain(|partition, _| found.contains_key(partition));
                for (partition, high) in found {
                    let entry = watermarks.entry(partition).or_insert(high);
                    *entry = (*entry).max(high);
                }
            }
        }
    }))
}

struct AppState {
    registry: Registry,
    sources: Sources,
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        exposition::encode(&state.registry),
    )
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok: running\n")
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let readiness = state.sources.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{}\n", readiness.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_checked() {
        assert!(check_listen_addr("127.0.0.1:9464").is_ok());
        assert!(check_listen_addr("localhost:0").is_ok());
        assert!(check_listen_addr("[::1]:9464").is_ok());
        assert!(check_listen_addr("9464").unwrap_err().contains("HOST:PORT"));
        assert!(check_listen_addr(":9464").unwrap_err().contains("no host"));
        assert!(
            check_listen_addr("host:http")
                .unwrap_err()
                .contains("not a port number")
        );
    }
}
