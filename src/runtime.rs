//! The runtime owns the engine. It takes fetched messages, operator commands and clock ticks
//! one at a time, runs the engine, sends effects on their way, stores offsets once work is
//! done, and publishes snapshots for whoever is watching. The console and headless mode are
//! two faces of this one loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::core::engine::{Effect, Engine, Input, SourceRef};
use crate::core::event::{self, IncidentEvent};
use crate::core::offsets::{OffsetTracker, PartitionKey};
use crate::kafka::consumer::{self, ConsumerControl, FetchedMessage};
use crate::kafka::dead_letter::DeadLetterProducer;
use crate::notify::Notifier;
use crate::status::{Command, ConsumerStatus, NotifierStatus, SharedSnapshot, Snapshot};

/// One line of headless output. Every record has a `kind`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutputRecord {
    Event {
        event_type: event::EventType,
        incident_id: event::IncidentId,
        topic: String,
        partition: i32,
        offset: i64,
        received_at: event::Timestamp,
        data: Box<IncidentEvent>,
    },
    Effect {
        topic: Option<String>,
        partition: Option<i32>,
        offset: Option<i64>,
        #[serde(flatten)]
        effect: Effect,
    },
    DeadLetter {
        reason: &'static str,
        error: String,
        topic: String,
        partition: i32,
        offset: i64,
        dead_letter_topic: String,
    },
}

pub struct RuntimeOptions {
    pub operator: String,
    pub demo: bool,
    /// Where headless records go; `None` in the console. Sending waits when it is full.
    pub output: Option<mpsc::Sender<OutputRecord>>,
    /// How long shutdown may take to finish in-flight work and commit.
    pub shutdown_timeout: Duration,
}

pub struct RuntimeHandle {
    pub commands: mpsc::Sender<Command>,
    pub snapshots: watch::Receiver<SharedSnapshot>,
    pub consumer_status: watch::Receiver<ConsumerStatus>,
    pub task: JoinHandle<anyhow::Result<RunSummary>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub handled: u64,
    pub dead_lettered: u64,
}

/// A dead-letter copy has reached the broker; its source offset may now be stored.
struct DeadLetterDone(SourceRef);

struct Runtime {
    engine: Engine,
    control: ConsumerControl,
    dead_letters: DeadLetterProducer,
    dead_letter_done: mpsc::Sender<DeadLetterDone>,
    tracker: OffsetTracker,
    notifier: Notifier,
    output: Option<mpsc::Sender<OutputRecord>>,
    max_message_bytes: usize,
    summary: RunSummary,
}

/// Starts the consumer and the runtime loop on the current tokio runtime.
pub fn spawn(config: &Config, options: RuntimeOptions) -> anyhow::Result<RuntimeHandle> {
    let (stop_fetching, stop_rx) = watch::channel(false);
    let source = consumer::start(config, stop_rx)?;
    let dead_letters = DeadLetterProducer::new(config)?;
    let notifier = Notifier::start(&config.notifications)?;
    let (commands, command_rx) = mpsc::channel(64);
    let (dead_letter_done, done_rx) = mpsc::channel(1024);
    let engine = Engine::new(config.engine_config());
    let consumer_status = source.control.status();
    let now = chrono::Utc::now();
    let initial = Arc::new(Snapshot {
        engine: engine.snapshot(now),
        consumer: consumer_status.borrow().clone(),
        notifier: NotifierStatus::default(),
        operator: options.operator.clone(),
        demo: options.demo,
    });
    let (snapshot_tx, snapshots) = watch::channel(initial);
    let runtime = Runtime {
        engine,
        control: source.control,
        dead_letters,
        dead_letter_done,
        tracker: OffsetTracker::default(),
        notifier,
        output: options.output,
        max_message_bytes: config.kafka.max_message_bytes,
        summary: RunSummary::default(),
    };
    let frame = Duration::from_secs_f64(1.0 / f64::from(config.console.max_frames_per_sec.max(1)));
    let task = tokio::spawn(runtime.run(RunLoop {
        messages: source.messages,
        fetch_task: source.task,
        stop_fetching,
        commands: command_rx,
        dead_letter_done: done_rx,
        snapshot_tx,
        frame,
        operator: options.operator,
        demo: options.demo,
        shutdown_timeout: options.shutdown_timeout,
    }));
    Ok(RuntimeHandle {
        commands,
        snapshots,
        consumer_status,
        task,
    })
}

struct RunLoop {
    messages: mpsc::Receiver<FetchedMessage>,
    fetch_task: JoinHandle<()>,
    stop_fetching: watch::Sender<bool>,
    commands: mpsc::Receiver<Command>,
    dead_letter_done: mpsc::Receiver<DeadLetterDone>,
    snapshot_tx: watch::Sender<SharedSnapshot>,
    frame: Duration,
    operator: String,
    demo: bool,
    shutdown_timeout: Duration,
}

impl Runtime {
    async fn run(mut self, mut io: RunLoop) -> anyhow::Result<RunSummary> {
        let mut status_rx = self.control.status();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // Snapshots are published at most once per frame, and only when something changed.
        let mut frame = tokio::time::interval(io.frame);
        frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut dirty = true;
        loop {
            tokio::select! {
                // Operator commands first: a flood of events must not delay a key press.
                biased;
                command = io.commands.recv() => match command {
                    None | Some(Command::Shutdown) => break,
                    Some(command) => {
                        self.handle_command(command).await;
                        // Published at once so the operator sees the result of a key press.
                        self.publish(&io);
                        dirty = false;
                    }
                },
                Some(DeadLetterDone(source)) = io.dead_letter_done.recv() => {
                    self.finish(&source);
                }
                _ = frame.tick(), if dirty => {
                    self.publish(&io);
                    dirty = false;
                }
                _ = status_rx.changed() => dirty = true,
                _ = ticker.tick() => {
                    self.apply(Input::Tick, None).await;
                    dirty = true;
                }
                message = io.messages.recv() => match message {
                    Some(message) => {
                        self.handle_message(message).await;
                        dirty = true;
                    }
                    None => {
                        tracing::error!("the Kafka fetch task ended unexpectedly");
                        break;
                    }
                },
            }
        }
        self.shutdown(io).await
    }

    async fn shutdown(mut self, mut io: RunLoop) -> anyhow::Result<RunSummary> {
        tracing::info!("shutting down: finishing in-flight work");
        let _ = io.stop_fetching.send(true);
        let _ = (&mut io.fetch_task).await;
        // What was fetched before the stop is handled, so its offsets can be committed.
        while let Ok(message) = io.messages.try_recv() {
            self.handle_message(message).await;
        }
        let deadline = tokio::time::Instant::now() + io.shutdown_timeout;
        while self.tracker.in_flight() > 0 {
            match tokio::time::timeout_at(deadline, io.dead_letter_done.recv()).await {
                Ok(Some(DeadLetterDone(source))) => self.finish(&source),
                _ => {
                    tracing::warn!(
                        pending = self.tracker.in_flight(),
                        "dead-letter sends unfinished at shutdown; they will be re-read next start"
                    );
                    break;
                }
            }
        }
        self.publish(&io);
        self.notifier.shutdown(io.shutdown_timeout).await;
        self.control
            .clone()
            .commit_and_close(io.shutdown_timeout)
            .await;
        tracing::info!(
            handled = self.summary.handled,
            dead_lettered = self.summary.dead_lettered,
            "stopped"
        );
        Ok(self.summary)
    }

    fn publish(&self, io: &RunLoop) {
        let snapshot = Snapshot {
            engine: self.engine.snapshot(chrono::Utc::now()),
            consumer: self.control.status().borrow().clone(),
            notifier: self.notifier.status(),
            operator: io.operator.clone(),
            demo: io.demo,
        };
        io.snapshot_tx.send_replace(Arc::new(snapshot));
    }

    async fn handle_command(&mut self, command: Command) {
        match command {
            Command::Pause | Command::Resume | Command::TogglePause => {
                let paused = match command {
                    Command::Pause => true,
                    Command::Resume => false,
                    _ => !self.control.is_paused(),
                };
                if let Err(error) = self.control.set_paused(paused) {
                    tracing::warn!(%error, "pause/resume did not apply to every partition");
                }
            }
            Command::Acknowledge { incident_id, by } => {
                self.apply(Input::Acknowledge { incident_id, by }, None)
                    .await;
            }
            Command::Shutdown => {}
        }
    }

    async fn handle_message(&mut self, message: FetchedMessage) {
        let started = Instant::now();
        let key = PartitionKey {
            topic: message.source.topic.clone(),
            partition: message.source.partition,
        };
        self.tracker.begin(&key, message.source.offset);
        match event::decode(message.payload.as_deref(), self.max_message_bytes) {
            Ok(event) => {
                let raw: Arc<str> =
                    String::from_utf8_lossy(message.payload.as_deref().unwrap_or_default()).into();
                self.emit(OutputRecord::Event {
                    event_type: event.event_type(),
                    incident_id: event.incident_id(),
                    topic: message.source.topic.clone(),
                    partition: message.source.partition,
                    offset: message.source.offset,
                    received_at: chrono::Utc::now(),
                    data: Box::new(event.clone()),
                })
                .await;
                let source = message.source.clone();
                self.apply(
                    Input::Event {
                        event,
                        source: Some(source.clone()),
                        raw,
                    },
                    Some(&source),
                )
                .await;
                self.summary.handled += 1;
                self.engine.record_processing(started.elapsed());
                self.finish(&message.source);
            }
            Err(error) => self.dead_letter(message, error).await,
        }
    }

    async fn dead_letter(&mut self, message: FetchedMessage, error: event::DecodeError) {
        let source = message.source.clone();
        tracing::warn!(%source, reason = error.reason(), "undecodable message: {error}; dead-lettering");
        let raw: Arc<str> = match &message.payload {
            None => "(tombstone)".into(),
            Some(bytes) => String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]).into(),
        };
        self.emit(OutputRecord::DeadLetter {
            reason: error.reason(),
            error: error.to_string(),
            topic: source.topic.clone(),
            partition: source.partition,
            offset: source.offset,
            dead_letter_topic: self.dead_letters.topic().to_string(),
        })
        .await;
        let reason = error.reason();
        let text = error.to_string();
        self.apply(
            Input::Rejected {
                error,
                source: Some(source.clone()),
                raw,
            },
            Some(&source),
        )
        .await;
        self.engine.record_dead_lettered();
        self.summary.dead_lettered += 1;
        let producer = self.dead_letters.clone();
        let done = self.dead_letter_done.clone();
        let at = chrono::Utc::now().to_rfc3339();
        // The copy goes out on its own task so a slow broker does not stall the stream; the
        // offset tracker keeps the commit point below it until it is safe.
        tokio::spawn(async move {
            producer.send(&message, reason, &text, &at).await;
            let _ = done.send(DeadLetterDone(message.source)).await;
        });
    }

    fn finish(&mut self, source: &SourceRef) {
        let key = PartitionKey {
            topic: source.topic.clone(),
            partition: source.partition,
        };
        if let Some(next) = self.tracker.finish(&key, source.offset) {
            self.control.store(&key, next);
        }
    }

    async fn apply(&mut self, input: Input, source: Option<&SourceRef>) {
        let effects = self.engine.apply(input, chrono::Utc::now());
        for effect in effects {
            self.run_effect(&effect);
            self.emit(OutputRecord::Effect {
                topic: source.map(|s| s.topic.clone()),
                partition: source.map(|s| s.partition),
                offset: source.map(|s| s.offset),
                effect,
            })
            .await;
        }
    }

    fn run_effect(&mut self, effect: &Effect) {
        match effect {
            Effect::Notify(notification) => self.notifier.submit(notification.clone()),
            Effect::Escalation(change) => log_escalation(change),
            Effect::IncidentResolved {
                incident_id,
                time_to_resolve_secs,
                ..
            } => tracing::info!(incident_id, ?time_to_resolve_secs, "incident resolved"),
            Effect::AcknowledgeRejected {
                incident_id,
                reason,
            } => {
                tracing::warn!(incident_id, "acknowledge rejected: {reason}")
            }
        }
    }

    async fn emit(&mut self, record: OutputRecord) {
        if let Some(output) = &self.output
            && output.send(record).await.is_err()
        {
            // The reader has gone (stdout closed): keep consuming, stop writing.
            self.output = None;
        }
    }
}

fn log_escalation(change: &crate::core::escalation::EscalationChange) {
    use crate::core::escalation::EscalationChange as Change;
    match change {
        Change::Opened {
            incident_id,
            level,
            priority,
        } => {
            tracing::info!("incident {incident_id} ({priority}) escalated: paging level {level}")
        }
        Change::Raised {
            incident_id,
            from_level,
            to_level,
            cause,
        } => tracing::info!(
            ?cause,
            "incident {incident_id} escalation raised from level {from_level} to {to_level}"
        ),
        Change::Repeated {
            incident_id,
            level,
            repeat,
        } => {
            tracing::warn!(
                "incident {incident_id} still unacknowledged: paging level {level} again (#{repeat})"
            )
        }
        Change::Exhausted { incident_id, level } => {
            tracing::warn!(
                "incident {incident_id} unacknowledged at level {level}; no more automatic pages"
            )
        }
        Change::Acknowledged {
            incident_id,
            by,
            time_to_acknowledge_secs,
            ..
        } => tracing::info!(
            "incident {incident_id} acknowledged by {by} after {}",
            crate::core::engine::format_duration(*time_to_acknowledge_secs)
        ),
        Change::Closed { incident_id, .. } => {
            tracing::info!("incident {incident_id} escalation closed")
        }
    }
}
