//! The worker role: one active worker among warm standbys. A standby joins only the leader
//! group (no incident consumer, so the workers' group keeps every partition for the active
//! one) and sends nothing. When the lease makes it active it starts the standalone runtime,
//! which consumes in the workers' group and does everything standalone does, its side effects
//! gated by the lease. When the lease lapses it reports that it was fenced, stops that runtime
//! (with its gate closed nothing more is sent or stored) and is a standby again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;

use crate::config::Config;
use crate::core::engine::SourceRef;
use crate::kafka::consumer::client_config;
use crate::output::OutputRecord;
use crate::runtime::{self, RunSummary, RuntimeHandle, RuntimeOptions};
use crate::status::{Command, ConsumerStatus, NotifierStatus, SharedSnapshot, Snapshot};
use crate::team::commands::{TeamCommand, commands_topic};
use crate::team::leader::Leader;
use crate::team::publish::StatePublisher;
use crate::team::restore::read_state;
use crate::team::state::{Restored, StateBody, state_topic};

/// How often the supervisor looks at the lease. Side effects check it themselves; this only
/// decides when to start and stop the runtime.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// How often the active worker tells the consoles it is alive (a `lease` record).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

pub fn spawn(config: &Config, options: RuntimeOptions) -> anyhow::Result<RuntimeHandle> {
    let leader = Leader::start(config)?;
    let worker = format!("worker-{}", std::process::id());
    tracing::info!(
        %worker,
        lease_ms = leader.lease.length().as_millis() as u64,
        leader_topic = %crate::team::leader::leader_topic(&config.kafka.topic),
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
        team: None,
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
    let role = |active: bool, reason: &str, epoch: u64| OutputRecord::Role {
        role: "worker",
        active,
        epoch,
        worker: worker.clone(),
        reason: reason.to_string(),
        lease_ms: leader.lease.length().as_millis() as u64,
        since_start_ms: started.elapsed().as_millis() as u64,
    };
    emit(&options.output, role(false, "started", 0)).await;
    let state_topic = state_topic(&config.kafka.topic);
    // The runtime's records pass through here: escalation changes are published to the
    // state topic, and everything goes on to the real output.
    let (inner_output, mut inner_records) = mpsc::channel(crate::output::OUTPUT_CAPACITY);
    let mut command_reader: Option<StreamConsumer> = None;
    // The active runtime's writer of `<topic>.state`, with its epoch.
    let mut state: Option<Arc<StatePublisher>> = None;
    let mut last_heartbeat = Instant::now();
    // Every side effect of this worker (pages, offsets, state records) is granted by its lease.
    let side_effects = leader.side_effects();
    // Set when the broker fenced this worker while its lease still said active; cleared once
    // the lease is lost, so it does not fence its successor straight back.
    let mut fenced_while_leading = false;
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
                // Why the broker refused this worker's writer, once it did.
                let by_broker = state.as_ref().and_then(|state| state.fenced());
                if !active {
                    fenced_while_leading = false;
                }
                if active && current.is_none() && !fenced_while_leading {
                    // First the writer: opening it fences the last active worker's at the
                    // broker and ends its open transaction, so what is read next is final.
                    let sink = match open_sink(&config, &leader.lease).await {
                        Ok(sink) => sink,
                        Err(error) => {
                            if let Some(refused) = error.downcast_ref::<crate::team::sink::WriterRefused>() {
                                // Trying again changes nothing: an operator has to grant it.
                                break Err(anyhow::anyhow!("{}", refused_text(&config, refused)));
                            }
                            tracing::error!(%error, "cannot open the writer of {state_topic}; not acting yet");
                            continue;
                        }
                    };
                    // Before consuming an incident: the state the last active worker left.
                    let restored = match restore(&config).await {
                        Ok(restored) => restored,
                        Err(error) => {
                            tracing::error!(%error, "cannot read {state_topic}; not acting yet");
                            continue;
                        }
                    };
                    let epoch = restored.epoch + 1;
                    let dedup = &config.notifications.dedup;
                    let publisher = Arc::new(StatePublisher::new(
                        sink, worker.clone(), epoch,
                        Duration::from_secs(dedup.window_secs), dedup.max_entries,
                        side_effects.clone()));
                    publisher.adopt_claims(&restored.notifications.deliveries.claims);
                    // The new epoch is on the topic before anything this worker does.
                    if !publisher.publish_and_wait(vec![StateBody::Lease]).await {
                        tracing::warn!(%worker, epoch, "leader epoch not published; not acting yet");
                        continue;
                    }
                    last_heartbeat = Instant::now();
                    tracing::info!(
                        %worker,
                        epoch,
                        escalations = restored.escalations.len(),
                        decided = restored.notifications.decided.len(),
                        pending = restored.notifications.deliveries.pending.len(),
                        claims = restored.notifications.deliveries.claims.len(),
                        too_old = restored.notifications.expired_notifications
                            + restored.notifications.expired_deliveries,
                        silences = restored.silences.len(),
                        stale = restored.stale,
                        "active: the lease is held; state restored from {state_topic}; consuming incidents"
                    );
                    let commands_from = restored
                        .handled
                        .get(&(commands_topic(&config.kafka.topic), 0))
                        .map(|offset| offset + 1);
                    current = Some(runtime::spawn_with(&config, RuntimeOptions {
                        operator: options.operator.clone(),
                        demo: false,
                        output: Some(inner_output.clone()),
                        // The records pass through this supervisor, not straight to stdout.
                        output_flushed: None,
                        shutdown_timeout: options.shutdown_timeout,
                        side_effects: side_effects.clone(),
                    }, Some(runtime::TeamLink { restored, state: publisher.clone() }))?);
                    state = Some(publisher);
                    command_reader = Some(command_consumer(&config, commands_from)?);
                    emit(&options.output, role(true, "lease held", epoch)).await;
                } else if (by_broker.is_some() || !active) && let Some(rt) = current.take() {
                    let reason = match by_broker {
                        Some(fenced) => {
                            // The gate closed when the broker said so; it opens again only
                            // once this worker has lost the lease and won it back.
                            tracing::error!(%worker, "fenced by the broker: another worker opened the team's state writer ({}); becoming a standby", fenced.0);
                            fenced_while_leading = true;
                            "fenced by the broker"
                        }
                        None => {
                            tracing::warn!(%worker, "fenced: the leadership lease lapsed or was revoked; becoming a standby");
                            "fenced"
                        }
                    };
                    emit(&options.output, role(false, reason, 0)).await;
                    command_reader = None;
                    state = None;
                    // Its gate is closed: stopping it sends and stores nothing more.
                    summary = add(summary, stepped_down(stop(rt, &mut inner_records, &options.output).await));
                } else if let Some(state) = &state
                    && last_heartbeat.elapsed() >= HEARTBEAT_EVERY
                {
                    // Consoles show the active worker while these keep coming.
                    last_heartbeat = Instant::now();
                    state.publish(StateBody::Lease);
                    state.expire_claims(chrono::Utc::now());
                }
            }
            Some(record) = inner_records.recv() => {
                emit(&options.output, record).await;
            }
            Some((command, source)) = next_command(&command_reader) => {
                if let Some(rt) = &current
                    && let Some(state) = &state
                    && side_effects.allowed("operator command")
                {
                    let asker = command.asker();
                    tracing::info!(?command, by = %asker.by, console = %asker.console, epoch = asker.epoch, "command from a console");
                    // The same runtime command a standalone console's key sends: applied by
                    // the same engine input, journaled and published the same way.
                    let _ = rt.commands.send(command.into_runtime()).await;
                    // A successor reads on after it (applying one twice is refused: already
                    // acknowledged, or no such silence, and changes nothing).
                    state.progress([&source]);
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
    // The last runtime's failure is this process's (a final commit that failed, a journal
    // that could not keep its record): a supervisor must see it.
    let last = match current.take() {
        Some(rt) => stop(rt, &mut inner_records, &options.output).await,
        None => Ok(RunSummary::default()),
    };
    leader.stop().await;
    let last = last?;
    result.map(|()| add(summary, last))
}

/// What the worker stops with when the cluster refuses it the team's transactional id: the
/// grant an operator can run.
fn refused_text(config: &Config, refused: &crate::team::sink::WriterRefused) -> String {
    let principal = config
        .kafka
        .properties
        .get("sasl.username")
        .map_or_else(|| "<principal>".to_string(), |user| format!("User:{user}"));
    format!(
        "{refused}; the active worker writes <topic>.state in transactions, which fence a \
         paused predecessor at the broker. An operator can grant it with:\n  kafka-acls.sh \
         --bootstrap-server {} --add --allow-principal {principal} --operation Write \
         --operation Describe --transactional-id {}",
        config.kafka.brokers, refused.transactional_id
    )
}

/// The team's transactional writer of `<topic>.state`, fencing every earlier one.
async fn open_sink(
    config: &Config,
    lease: &crate::team::leader::Lease,
) -> anyhow::Result<crate::team::sink::StateSink> {
    let client = client_config(config, false);
    let topic = state_topic(&config.kafka.topic);
    let id = crate::team::sink::transactional_id(&config.kafka.group_id);
    let lease = lease.clone();
    tokio::task::spawn_blocking(move || {
        crate::team::sink::StateSink::open(client, topic, &id, Some(lease))
    })
    .await?
}

/// Reads `<topic>.state` from its start to its end as it is now, and folds it into what a
/// new active worker restores. Its own throwaway group: assigned, never joined or committed.
async fn restore(config: &Config) -> anyhow::Result<Restored> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || read_state(&config)).await?
}

/// The active worker's reader of `<topic>.commands`, from just after the last command its
/// predecessor applied (its progress on `<topic>.state`), or from the start. Assigned, not in
/// a group: a killed predecessor's membership cannot hold the partition for its session.
fn command_consumer(config: &Config, from: Option<i64>) -> anyhow::Result<StreamConsumer> {
    let topic = commands_topic(&config.kafka.topic);
    let mut client = client_config(config, true);
    client
        .set(
            "group.id",
            format!("{}.commands-{}", config.kafka.group_id, std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // An ack is one small record: the broker answers the fetch at once instead of
        // holding it up to the default 500 ms.
        .set("fetch.wait.max.ms", "20");
    let consumer: StreamConsumer = client.create()?;
    let mut list = rdkafka::TopicPartitionList::new();
    let offset = from.map_or(rdkafka::Offset::Beginning, rdkafka::Offset::Offset);
    list.add_partition_offset(&topic, 0, offset)?;
    consumer.assign(&list)?;
    Ok(consumer)
}

async fn next_command(reader: &Option<StreamConsumer>) -> Option<(TeamCommand, SourceRef)> {
    let Some(reader) = reader else {
        return std::future::pending().await;
    };
    loop {
        match reader.recv().await {
            Ok(message) => match TeamCommand::decode(message.payload()) {
                Ok(command) => {
                    let source = SourceRef {
                        topic: message.topic().into(),
                        partition: message.partition(),
                        offset: message.offset(),
                    };
                    return Some((command, source));
                }
                // Junk on the commands topic (a newer console's kind, a hand-written
                // record): said where it is, and the next record is read.
                Err(reason) => tracing::warn!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    %reason,
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

async fn changed<T>(receiver: &mut Option<watch::Receiver<T>>) -> Option<()> {
    match receiver {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

/// Stops a runtime and waits for it, forwarding its records meanwhile: its shutdown handles
/// what was already fetched and emits a record for each, and with nobody reading them it
/// would wait forever on a full channel (a fenced worker then held the leadership, doing
/// nothing, and no standby could take over).
async fn stop(
    rt: RuntimeHandle,
    records: &mut mpsc::Receiver<OutputRecord>,
    output: &Option<mpsc::Sender<OutputRecord>>,
) -> anyhow::Result<RunSummary> {
    // Sent aside: a runtime blocked on its output reads no commands until it is unblocked.
    let commands = rt.commands.clone();
    tokio::spawn(async move {
        let _ = commands.send(Command::Shutdown).await;
    });
    let mut task = rt.task;
    let joined = loop {
        tokio::select! {
            joined = &mut task => break joined,
            Some(record) = records.recv() => emit(output, record).await,
        }
    };
    // What it emitted last, before it finished.
    while let Ok(record) = records.try_recv() {
        emit(output, record).await;
    }
    match joined {
        Ok(result) => result,
        Err(error) => Err(anyhow::anyhow!("the worker's runtime panicked: {error}")),
    }
}

/// What a runtime that stopped because this worker stepped down leaves: its failure is
/// logged, not this process's (a fenced worker's final commit is refused, as it should be).
fn stepped_down(stopped: anyhow::Result<RunSummary>) -> RunSummary {
    stopped.unwrap_or_else(|error| {
        tracing::error!(%error, "the worker's runtime failed");
        RunSummary::default()
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime whose shutdown emits more records than the channel between it and the
    /// supervisor holds, as one with a fetched backlog does.
    fn busy_runtime(records: mpsc::Sender<OutputRecord>, count: u64) -> RuntimeHandle {
        let (commands, mut command_rx) = mpsc::channel(1);
        let config = Config::built_in();
        let engine = crate::core::engine::Engine::new(config.engine_config());
        let snapshot = Arc::new(Snapshot {
            engine: engine.snapshot(chrono::Utc::now()),
            consumer: ConsumerStatus::default(),
            notifier: NotifierStatus::default(),
            operator: "test".into(),
            demo: false,
            team: None,
        });
        let task = tokio::spawn(async move {
            let _ = command_rx.recv().await;
            for n in 0..count {
                let record = OutputRecord::SelfAlert {
                    alert: format!("record {n}"),
                    state: "firing",
                    detail: String::new(),
                };
                records.send(record).await.expect("the supervisor reads");
            }
            Ok(RunSummary {
                handled: count,
                ..RunSummary::default()
            })
        });
        RuntimeHandle {
            commands,
            snapshots: watch::channel(snapshot).1,
            consumer_status: watch::channel(ConsumerStatus::default()).1,
            journal_stats: None,
            fetched: Default::default(),
            task,
        }
    }

    #[tokio::test]
    async fn stopping_a_runtime_forwards_what_it_emits_until_it_has_finished() {
        let (inner, mut records) = mpsc::channel(16);
        let (output, mut written) = mpsc::channel(10_000);
        let rt = busy_runtime(inner, 1_000);
        let summary = tokio::time::timeout(
            Duration::from_secs(30),
            stop(rt, &mut records, &Some(output)),
        )
        .await
        .expect("the runtime stopped: its records were read while it finished")
        .expect("and stopped cleanly");
        assert_eq!(summary.handled, 1_000);
        let mut forwarded = 0;
        while written.try_recv().is_ok() {
            forwarded += 1;
        }
        assert_eq!(
            forwarded, 1_000,
            "every record it emitted reached the output"
        );
    }
}
