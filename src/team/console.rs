//! The console role: an operator's observer. It reads every partition of the incident topic
//! without joining the workers' group and without committing (see
//! `kafka::consumer::start_observer`), keeps a local engine only to build the feed it shows,
//! and runs none of the engine's effects: no journal, no notification, no dead letter. The
//! active worker does all of that.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::core::engine::{Engine, Input};
use crate::core::event;
use crate::kafka::consumer::{self, ConsumerControl, FetchedMessage};
use crate::runtime::{OutputRecord, RunSummary, RuntimeHandle, RuntimeOptions};
use crate::status::{Command, NotifierStatus, SharedSnapshot, Snapshot};

struct Observer {
    engine: Engine,
    control: ConsumerControl,
    output: Option<mpsc::Sender<OutputRecord>>,
    max_message_bytes: usize,
    operator: String,
    summary: RunSummary,
}

/// Starts the observer's consumer and loop; the TUI and headless mode drive it like the runtime.
pub fn spawn(config: &Config, options: RuntimeOptions) -> anyhow::Result<RuntimeHandle> {
    let engine = Engine::new(config.engine_config());
    let (stop_fetching, stop_rx) = watch::channel(false);
    let source = consumer::start_observer(config, stop_rx)?;
    let consumer_status = source.control.status();
    let (commands, command_rx) = mpsc::channel(64);
    let observer = Observer {
        engine,
        control: source.control,
        output: options.output,
        max_message_bytes: config.kafka.max_message_bytes,
        operator: options.operator,
        summary: RunSummary::default(),
    };
    let (snapshot_tx, snapshots) = watch::channel(observer.snapshot());
    let frame = Duration::from_secs_f64(1.0 / f64::from(config.console.max_frames_per_sec.max(1)));
    let task = tokio::spawn(observer.run(
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
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        mut self,
        mut messages: mpsc::Receiver<FetchedMessage>,
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
                        Command::Acknowledge { incident_id, by } => self.acknowledge(incident_id, by).await,
                    }
                    snapshot_tx.send_replace(self.snapshot());
                    dirty = false;
                }
                _ = frame.tick(), if dirty => {
                    snapshot_tx.send_replace(self.snapshot());
                    dirty = false;
                }
                _ = status_rx.changed() => dirty = true,
                _ = ticker.tick() => {
                    // Effects are the active worker's business: dropped here.
                    let _ = self.engine.apply(Input::Tick, chrono::Utc::now());
                    dirty = true;
                }
                message = messages.recv() => match message {
                    Some(message) => {
                        self.observe(message).await;
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
        let _ = fetch_task.await;
        snapshot_tx.send_replace(self.snapshot());
        self.control.close_without_commit(shutdown_timeout).await;
        tracing::info!(observed = self.summary.handled, "console stopped");
        Ok(self.summary)
    }

    async fn acknowledge(&mut self, incident_id: event::IncidentId, by: String) {
        tracing::warn!(
            incident_id,
            by,
            "a console acknowledges through the active worker's commands topic, which this \
             version does not have yet: not acknowledged"
        );
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
                // Shown in the feed; the active worker dead-letters it.
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
