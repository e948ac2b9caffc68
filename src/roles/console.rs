//! The console role: an operator's observer. It reads every partition of the incident topic
//! without joining the workers' group and without committing (see
//! `kafka::consumer::start_observer`), keeps a local engine only to build the feed it shows,
//! and runs none of the engine's effects: no journal, no notification, no dead letter. The
//! active worker does all of that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{mpsc, watch};

use crate::team::commands::{TeamCommand, commands_topic, parse_stdin_line};
use crate::team::state::{EpochFilter, StateBody, StateKey, StateRecord, state_topic};

use crate::config::Config;
use crate::core::engine::{Engine, Input};
use crate::core::event;
use crate::kafka::consumer::{self, ConsumerControl, FetchedMessage};
use crate::output::OutputRecord;
use crate::runtime::{RunSummary, RuntimeHandle, RuntimeOptions};
use crate::status::{Command, NotifierStatus, SharedSnapshot, Snapshot, TeamView};

struct Observer {
    engine: Engine,
    control: ConsumerControl,
    output: Option<mpsc::Sender<OutputRecord>>,
    max_message_bytes: usize,
    /// Where the active worker dead-letters what does not decode, for the headless line.
    dead_letter_topic: String,
    operator: String,
    summary: RunSummary,
    /// Acknowledgements go out as records on `<topic>.commands`.
    producer: FutureProducer,
    commands_topic: String,
    console_id: String,
    /// State records from a leader older than the newest seen are ignored.
    epochs: EpochFilter,
    /// The newest lease record: (worker, epoch, when it arrived here).
    leader: Option<(String, u64, Instant)>,
    /// Without a lease record for this long, no worker is active.
    lease_length: Duration,
}

/// Starts the observer's consumer and loop; the TUI and headless mode drive it like the runtime.
pub fn spawn(config: &Config, options: RuntimeOptions) -> anyhow::Result<RuntimeHandle> {
    let engine = Engine::follower(config.engine_config());
    let (stop_fetching, stop_rx) = watch::channel(false);
    let source = consumer::start_observer(config, stop_rx, consumer::Writes::Plain)?;
    let consumer_status = source.control.status();
    // The worker's escalation state, read from the start of `<topic>.state`.
    let mut state_config = config.clone();
    state_config.kafka.topic = state_topic(&config.kafka.topic);
    state_config.kafka.auto_offset_reset = "earliest".into();
    // State records are few and small: fetched at once, not after up to 500 ms (default).
    state_config
        .kafka
        .properties
        .insert("fetch.wait.max.ms".into(), "20".into());
    let (stop_state, stop_state_rx) = watch::channel(false);
    let state = consumer::start_observer(
        &state_config,
        stop_state_rx,
        consumer::Writes::Transactional,
    )?;
    let (commands, command_rx) = mpsc::channel(64);
    if options.output.is_some() {
        read_stdin(commands.clone(), options.operator.clone());
    }
    let observer = Observer {
        producer: crate::kafka::consumer::client_config(config, false).create()?,
        commands_topic: commands_topic(&config.kafka.topic),
        console_id: format!("console-{}", std::process::id()),
        epochs: EpochFilter::default(),
        leader: None,
        lease_length: crate::team::leader::lease_length(config)?,
        engine,
        control: source.control,
        output: options.output,
        max_message_bytes: config.kafka.max_message_bytes,
        dead_letter_topic: config.dead_letter_topic(),
        operator: options.operator,
        summary: RunSummary::default(),
    };
    let (snapshot_tx, snapshots) = watch::channel(observer.snapshot());
    let frame = Duration::from_secs_f64(1.0 / f64::from(config.console.max_frames_per_sec.max(1)));
    let task = tokio::spawn(observer.run(
        (state.messages, state.control, state.task, stop_state),
        source.messages,
        source.task,
        stop_fetching,
        command_rx,
        snapshot_tx,
        frame,
        options.shutdown_timeout,
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

impl Observer {
    fn snapshot(&self) -> SharedSnapshot {
        Arc::new(Snapshot {
            engine: self.engine.snapshot(chrono::Utc::now()),
            consumer: self.control.status().borrow().clone(),
            notifier: NotifierStatus::default(),
            operator: self.operator.clone(),
            demo: false,
            team: Some(self.team_view()),
        })
    }

    fn team_view(&self) -> TeamView {
        match &self.leader {
            Some((worker, epoch, seen)) if seen.elapsed() < self.lease_length => TeamView::Active {
                worker: worker.clone(),
                epoch: *epoch,
            },
            _ => TeamView::NoActiveWorker,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        mut self,
        state: StateSource,
        mut messages: mpsc::Receiver<Vec<FetchedMessage>>,
        fetch_task: tokio::task::JoinHandle<()>,
        stop_fetching: watch::Sender<bool>,
        mut commands: mpsc::Receiver<Command>,
        snapshot_tx: watch::Sender<SharedSnapshot>,
        frame_every: Duration,
        shutdown_timeout: Duration,
    ) -> anyhow::Result<RunSummary> {
        let mut status_rx = self.control.status();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut frame = tokio::time::interval(frame_every);
        frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut dirty = true;
        let (mut state_messages, state_control, state_task, stop_state) = state;
        loop {
            tokio::select! {
                // Operator commands first, as in the runtime.
                biased;
                command = commands.recv() => {
                    match command.unwrap_or(Command::Shutdown) {
                        Command::Shutdown => break,
                        Command::Pause | Command::Resume | Command::TogglePause => {
                            // Pausing an observer only stops this console's feed.
                            let paused = !self.control.is_paused();
                            if let Err(error) = self.control.set_paused(paused) {
                                tracing::warn!(%error, "pause/resume did not apply to every partition");
                            }
                        }
                        // A team console notifies nobody: the active worker does.
                        Command::Notify(notification) => tracing::debug!(dedup_key = notification.dedup_key, "not notified from a team console"),
                        // Acknowledge, snooze, end a silence, un-acknowledge: the active
                        // worker's business, asked for on `<topic>.commands`.
                        command @ (Command::Acknowledge { .. } | Command::Oncall(_)) => self.send_command(&command),
                    }
                    snapshot_tx.send_replace(self.snapshot());
                    dirty = false;
                }
                _ = frame.tick(), if dirty => {
                    snapshot_tx.send_replace(self.snapshot());
                    dirty = false;
                }
                Some(batch) = state_messages.recv() => {
                    for message in batch {
                        self.state_changed(message).await;
                    }
                    dirty = true;
                }
                _ = status_rx.changed() => dirty = true,
                _ = ticker.tick() => {
                    // Effects are the active worker's business: dropped here.
                    let _ = self.engine.apply(Input::Tick, chrono::Utc::now());
                    dirty = true;
                }
                batch = messages.recv() => match batch {
                    Some(batch) => {
                        for message in batch {
                            self.observe(message).await;
                        }
                        dirty = true;
                    }
                    None => {
                        tracing::error!("the Kafka fetch task ended unexpectedly");
                        break;
                    }
                },
            }
        }
        let _ = stop_fetching.send(true);
        let _ = stop_state.send(true);
        let _ = fetch_task.await;
        let _ = state_task.await;
        state_control.close_without_commit(shutdown_timeout).await;
        snapshot_tx.send_replace(self.snapshot());
        self.control.close_without_commit(shutdown_timeout).await;
        tracing::info!(observed = self.summary.handled, "console stopped");
        Ok(self.summary)
    }

    /// Sends what the operator asked for to the active worker as a command record; it takes
    /// effect (here and in every console) when the worker's state record comes back.
    fn send_command(&mut self, command: &Command) {
        let Some(record) =
            TeamCommand::from_console(command, &self.console_id, self.epochs.newest())
        else {
            return;
        };
        let (producer, topic) = (self.producer.clone(), self.commands_topic.clone());
        tokio::spawn(async move {
            let (key, payload) = (record.key(), record.encode());
            let sent = FutureRecord::to(&topic).key(&key).payload(&payload);
            match producer.send(sent, Duration::from_secs(10)).await {
                Ok(_) => {
                    tracing::info!(?record, "sent to the active worker")
                }
                Err((error, _)) => {
                    tracing::error!(%error, ?record, "not sent to the active worker")
                }
            }
        });
    }

    async fn state_changed(&mut self, message: FetchedMessage) {
        if message.payload.is_none() {
            // A tombstone: the worker deleted a key it is done with. Most say nothing new
            // (the record before said so, e.g. an escalation closed); a silence's is its end.
            let key = message.key.as_deref().map(String::from_utf8_lossy);
            if let Some(StateKey::Silence(id)) = key.as_deref().and_then(StateKey::decode) {
                let id = id.as_str();
                let input = Input::EndSilence {
                    id: id.to_string(),
                    by: "the active worker".into(),
                };
                // A follower's engine only forgets it; the worker pages what it released.
                let _ = self.engine.apply(input, chrono::Utc::now());
                self.emit(OutputRecord::SilenceEnded { id: id.to_string() })
                    .await;
            }
            return;
        }
        let Some(record) = StateRecord::decode(message.payload.as_deref()) else {
            tracing::warn!(source = %message.source, "not a state record; skipped");
            return;
        };
        if !self.epochs.admit(&record) {
            tracing::info!(
                epoch = record.epoch,
                newest = self.epochs.newest(),
                worker = %record.worker,
                "state record from a stale leader ignored"
            );
            return;
        }
        if record.body == StateBody::Lease {
            self.leader = Some((record.worker.clone(), record.epoch, Instant::now()));
        }
        if let StateBody::Silence { silence } = &record.body {
            // Shown on the escalations it covers ("silenced HH:MM") and in `o`.
            self.engine.restore_silence(silence.silence());
            self.emit(OutputRecord::Silenced {
                id: silence.id.clone(),
                matches: silence.matcher.describe(),
                by: silence.created_by.clone(),
                reason: silence.reason.clone(),
                start: silence.start,
                until: silence.end,
                worker: record.worker.clone(),
            })
            .await;
        }
        if let StateBody::Escalation {
            incident_id,
            acknowledged_by,
            current,
            change,
            ..
        } = record.body
        {
            if change == crate::team::state::EscalationChangeKind::Unacknowledged {
                self.emit(OutputRecord::Unacknowledged {
                    incident_id,
                    worker: record.worker.clone(),
                })
                .await;
            }
            if let Some(by) = acknowledged_by {
                // Counted in this console's metrics, shown as "acknowledged by <by>".
                let input = Input::Acknowledge {
                    incident_id,
                    by: by.clone(),
                };
                let _ = self.engine.apply(input, chrono::Utc::now());
                self.emit(OutputRecord::Acknowledged {
                    incident_id,
                    by,
                    worker: record.worker,
                })
                .await;
            }
            // The escalation pane shows the queue as the active worker holds it.
            self.engine
                .mirror_escalation(incident_id, current.map(|escalation| *escalation));
        }
    }

    async fn observe(&mut self, message: FetchedMessage) {
        let now = chrono::Utc::now();
        let source = message.source;
        match event::decode(message.payload.as_deref(), self.max_message_bytes) {
            Ok(event) => {
                let raw: Arc<str> =
                    String::from_utf8_lossy(message.payload.as_deref().unwrap_or_default()).into();
                self.emit(OutputRecord::Event {
                    event_type: event.event_type(),
                    incident_id: event.incident_id(),
                    topic: source.topic.clone(),
                    partition: source.partition,
                    offset: source.offset,
                    received_at: now,
                    data: Box::new(event.clone()),
                })
                .await;
                let input = Input::Event {
                    event,
                    source: Some(source),
                    raw,
                };
                let _ = self.engine.apply(input, now);
                self.summary.handled += 1;
            }
            Err(error) => {
                // Shown in the feed and, headless, as a line of its own (as a standalone
                // console prints it); the active worker dead-letters it.
                self.emit(OutputRecord::DeadLetter {
                    reason: error.reason(),
                    error: error.to_string(),
                    topic: source.topic.clone(),
                    partition: source.partition,
                    offset: source.offset,
                    dead_letter_topic: self.dead_letter_topic.clone(),
                })
                .await;
                let raw: Arc<str> = match &message.payload {
                    None => "(tombstone)".into(),
                    Some(bytes) => {
                        String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]).into()
                    }
                };
                let input = Input::Rejected {
                    error,
                    source: Some(source),
                    raw,
                };
                let _ = self.engine.apply(input, now);
            }
        }
    }

    async fn emit(&mut self, record: OutputRecord) {
        if let Some(output) = &self.output
            && output.send(record).await.is_err()
        {
            self.output = None;
        }
    }
}

type StateSource = (
    mpsc::Receiver<Vec<FetchedMessage>>,
    ConsumerControl,
    tokio::task::JoinHandle<()>,
    watch::Sender<bool>,
);

/// Headless consoles take `ack INCIDENT_ID`, `unack INCIDENT_ID`, `snooze INCIDENT_ID MINUTES
/// [REASON]` and `end-silence SILENCE_ID` lines on stdin (for scripts and tests).
fn read_stdin(commands: mpsc::Sender<Command>, operator: String) {
    let spawned = std::thread::Builder::new()
        .name("console-stdin".into())
        .spawn(move || {
            use std::io::BufRead;
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                match parse_stdin_line(&line) {
                    Ok(Some(asked)) => {
                        let command = asked.into_command(operator.clone());
                        if commands.blocking_send(command).is_err() {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!("{error}"),
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot read stdin; use the console's keys instead");
    }
}
