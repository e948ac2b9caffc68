//! The worker role: one active worker among warm standbys. A standby joins only the leader
//! group (no incident consumer, so the workers' group keeps every partition for the active
//! one) and sends nothing. When the lease makes it active it starts the standalone runtime,
//! which consumes in the workers' group and does everything standalone does, its side effects
//! gated by the lease. When the lease lapses it reports that it was fenced, stops that runtime
//! (with its gate closed nothing more is sent or stored) and is a standby again.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::commands::{AckCommand, commands_topic};
use super::leader::Leader;
use super::state::{StateRecord, state_topic};
use crate::config::Config;
use crate::core::engine::Effect;
use crate::kafka::consumer::client_config;
use crate::runtime::{self, OutputRecord, RunSummary, RuntimeHandle, RuntimeOptions};
use crate::status::{Command, ConsumerStatus, NotifierStatus, SharedSnapshot, Snapshot};

/// How often the supervisor looks at the lease. Side effects check it themselves; this only
/// decides when to start and stop the runtime.
const CHECK_EVERY: Duration = Duration::from_millis(100);

pub fn spawn(config: &Config, options: RuntimeOptions) -> anyhow::Result<RuntimeHandle> {
    let leader = Leader::start(config)?;
    leader.install_gate();
    let worker = format!("worker-{}", std::process::id());
    tracing::info!(
        %worker,
        lease_ms = leader.lease.length().as_millis() as u64,
        leader_topic = %super::leader::leader_topic(&config.kafka.topic),
        "worker started as a standby; waiting for the leadership"
    );
    let standby_status = ConsumerStatus {
        brokers: config.kafka.brokers.clone(),
        topic: config.kafka.topic.clone(),
        group: config.kafka.group_id.clone(),
        ..ConsumerStatus::default()
    };
    let (status_tx, consumer_status) = watch::channel(standby_status.clone());
    let engine = crate::core::engine::Engine::new(config.engine_config());
    let standby = std::sync::Arc::new(Snapshot {
        engine: engine.snapshot(chrono::Utc::now()),
        consumer: standby_status,
        notifier: NotifierStatus::default(),
        operator: options.operator.clone(),
        demo: false,
    });
    let (snapshot_tx, snapshots) = watch::channel(standby);
    let (commands, command_rx) = mpsc::channel(64);
    let task = tokio::spawn(supervise(
        config.clone(),
        options,
        leader,
        worker,
        command_rx,
        snapshot_tx,
        status_tx,
    ));
    Ok(RuntimeHandle {
        commands,
        snapshots,
        consumer_status,
        journal_stats: None,
        fetched: Default::default(),
        task,
    })
}

async fn supervise(
    config: Config,
    options: RuntimeOptions,
    leader: Leader,
    worker: String,
    mut commands: mpsc::Receiver<Command>,
    snapshot_tx: watch::Sender<SharedSnapshot>,
    status_tx: watch::Sender<ConsumerStatus>,
) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    let mut current: Option<RuntimeHandle> = None;
    let mut summary = RunSummary::default();
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let role = |active: bool, reason: &str| OutputRecord::Role {
        role: "worker",
        active,
        worker: worker.clone(),
        reason: reason.to_string(),
        lease_ms: leader.lease.length().as_millis() as u64,
        since_start_ms: started.elapsed().as_millis() as u64,
    };
    emit(&options.output, role(false, "started")).await;
    let producer: FutureProducer = client_config(&config, false).create()?;
    let state_topic = state_topic(&config.kafka.topic);
    // The runtime's records pass through here: escalation changes are published to the
    // state topic, and everything goes on to the real output.
    let (inner_output, mut inner_records) = mpsc::channel(crate::headless::OUTPUT_CAPACITY);
    let mut command_reader: Option<StreamConsumer> = None;
    let result = loop {
        let mut snapshots = current.as_ref().map(|rt| rt.snapshots.clone());
        let mut statuses = current.as_ref().map(|rt| rt.consumer_status.clone());
        tokio::select! {
            biased;
            command = commands.recv() => match command.unwrap_or(Command::Shutdown) {
                Command::Shutdown => break Ok(()),
                command => match &current {
                    Some(rt) => { let _ = rt.commands.send(command).await; }
                    None => tracing::warn!(?command, "a standby handles no incidents; ignored"),
                },
            },
            _ = check.tick() => {
                let active = leader.lease.is_active();
                if active && current.is_none() {
                    tracing::info!(%worker, "active: the lease is held; consuming incidents");
                    current = Some(runtime::spawn(&config, RuntimeOptions {
                        operator: options.operator.clone(),
                        demo: false,
                        output: Some(inner_output.clone()),
                        // The records pass through this supervisor, not straight to stdout.
                        output_flushed: None,
                        shutdown_timeout: options.shutdown_timeout,
                    })?);
                    command_reader = Some(command_consumer(&config)?);
                    emit(&options.output, role(true, "lease held")).await;
                } else if !active && let Some(rt) = current.take() {
                    tracing::warn!(%worker, "fenced: the leadership lease lapsed or was revoked; becoming a standby");
                    emit(&options.output, role(false, "fenced")).await;
                    command_reader = None;
                    // Its gate is closed: stopping it sends and stores nothing more.
                    summary = add(summary, stop(rt).await);
                }
            }
            Some(record) = inner_records.recv() => {
                if let OutputRecord::Effect { effect: Effect::Escalation(change), .. } = &record
                    && super::leader::side_effects_allowed("state publish")
                {
                    publish_state(&producer, &state_topic, StateRecord::from_change(
                        change, &worker, chrono::Utc::now().to_rfc3339()));
                }
                emit(&options.output, record).await;
            }
            Some(ack) = next_ack(&command_reader) => {
                if let Some(rt) = &current
                    && super::leader::side_effects_allowed("acknowledgement")
                {
                    tracing::info!(incident_id = ack.incident_id, by = %ack.by, console = %ack.console, "acknowledgement from a console");
                    let _ = rt.commands.send(Command::Acknowledge { incident_id: ack.incident_id, by: ack.by }).await;
                }
            }
            Some(()) = changed(&mut snapshots) => {
                if let Some(rx) = &snapshots {
                    snapshot_tx.send_replace(rx.borrow().clone());
                }
            }
            Some(()) = changed(&mut statuses) => {
                if let Some(rx) = &statuses {
                    status_tx.send_replace(rx.borrow().clone());
                }
            }
        }
        if current.as_ref().is_some_and(|rt| rt.task.is_finished()) {
            let rt = current.take().expect("checked");
            break rt.task.await?.map(|s| summary = add(summary.clone(), s));
        }
    };
    if let Some(rt) = current.take() {
        summary = add(summary, stop(rt).await);
    }
    leader.stop().await;
    result.map(|()| summary)
}

/// The active worker's reader of `<topic>.commands`: its own group, so a new active worker
/// goes on from where the last one committed (acks made while none was active included).
fn command_consumer(config: &Config) -> anyhow::Result<StreamConsumer> {
    let mut client = client_config(config, true);
    client
        .set("group.id", format!("{}.commands", config.kafka.group_id))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        // An ack is one small record: the broker answers the fetch at once instead of
        // holding it up to the default 500 ms.
        .set("fetch.wait.max.ms", "20");
    let consumer: StreamConsumer = client.create()?;
    consumer.subscribe(&[&commands_topic(&config.kafka.topic)])?;
    Ok(consumer)
}

async fn next_ack(reader: &Option<StreamConsumer>) -> Option<AckCommand> {
    let Some(reader) = reader else {
        return std::future::pending().await;
    };
    loop {
        match reader.recv().await {
            Ok(message) => match AckCommand::decode(message.payload()) {
                Some(ack) => return Some(ack),
                None => tracing::warn!(
                    partition = message.partition(),
                    offset = message.offset(),
                    "not a command record; skipped"
                ),
            },
            Err(error) => {
                tracing::warn!(%error, "commands topic: fetch error");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Sent on its own task: a slow broker does not hold up the runtime's output.
fn publish_state(producer: &FutureProducer, topic: &str, record: StateRecord) {
    let (producer, topic) = (producer.clone(), topic.to_string());
    tokio::spawn(async move {
        let key = record.incident_id.to_string();
        let Ok(payload) = serde_json::to_vec(&record) else {
            return;
        };
        let sent = producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await;
        if let Err((error, _)) = sent {
            tracing::warn!(%error, incident_id = record.incident_id, "state not published");
        }
    });
}

async fn changed<T>(receiver: &mut Option<watch::Receiver<T>>) -> Option<()> {
    match receiver {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

async fn stop(rt: RuntimeHandle) -> RunSummary {
    let _ = rt.commands.send(Command::Shutdown).await;
    match rt.task.await {
        Ok(Ok(summary)) => summary,
        Ok(Err(error)) => {
            tracing::error!(%error, "the worker's runtime failed");
            RunSummary::default()
        }
        Err(error) => {
            tracing::error!(%error, "the worker's runtime panicked");
            RunSummary::default()
        }
    }
}

fn add(a: RunSummary, b: RunSummary) -> RunSummary {
    RunSummary {
        handled: a.handled + b.handled,
        dead_lettered: a.dead_lettered + b.dead_lettered,
        redelivered: a.redelivered + b.redelivered,
    }
}

async fn emit(output: &Option<mpsc::Sender<OutputRecord>>, record: OutputRecord) {
    if let Some(output) = output {
        let _ = output.send(record).await;
    }
}
