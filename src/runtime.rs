//! The runtime owns the engine. It takes fetched messages, operator commands and clock ticks
//! one at a time, runs the engine, sends effects on their way, stores offsets once work is
//! done, and publishes snapshots for whoever is watching. The console and headless mode are
//! two faces of this one loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use std::collections::HashMap;

use crate::config::Config;
use crate::core::engine::{Effect, Engine, Input, SourceRef};
use crate::core::event;
use crate::core::offsets::{OffsetTracker, PartitionKey};
use crate::core::permit::SideEffects;
use crate::headless::OutputRecord;
use crate::journal::{
    Completion, Decision, EscalationRecord, Journal, JournalFailed, JournalReader, JournalRecord,
    JournalWriter, OnCallRecord, ProcessedEvent, ResumedNotifications,
};
use crate::kafka::consumer::{self, ConsumerControl, FetchedMessage};
use crate::kafka::dead_letter::DeadLetterProducer;
use crate::notify::Notifier;
use crate::status::{Command, ConsumerStatus, NotifierStatus, SharedSnapshot, Snapshot};

pub struct RuntimeOptions {
    pub operator: String,
    pub demo: bool,
    /// Where headless records go; `None` in the console. Sending waits when it is full.
    pub output: Option<mpsc::Sender<OutputRecord>>,
    /// How many of the gated records (`OutputRecord::is_gated`) sent on `output` have been
    /// written and flushed (headless stdout). When given, an offset is stored only once every record emitted before it is
    /// out, and the sender's end going away means the output broke: the runtime stops at once.
    pub output_flushed: Option<watch::Receiver<u64>>,
    /// How long shutdown may take to finish in-flight work and commit.
    pub shutdown_timeout: Duration,
    /// Whether pages may be sent and offsets stored now: a team worker passes its lease,
    /// everyone else `SideEffects::always()`.
    pub side_effects: SideEffects,
}

pub struct RuntimeHandle {
    pub commands: mpsc::Sender<Command>,
    pub snapshots: watch::Receiver<SharedSnapshot>,
    pub consumer_status: watch::Receiver<ConsumerStatus>,
    /// The journal writer's counters, for the metrics endpoint; `None` without a journal.
    pub journal_stats: Option<crate::observe::JournalStatsFn>,
    /// Messages fetched so far (see `ConsumerControl::fetched`).
    pub fetched: Arc<std::sync::atomic::AtomicU64>,
    pub task: JoinHandle<anyhow::Result<RunSummary>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub handled: u64,
    pub dead_lettered: u64,
    /// Delivered again (after a restart, a takeover or a rebalance) and recognised as handled.
    pub redelivered: u64,
}

/// A dead-letter copy has reached the broker; its journal record may now be written.
struct DeadLetterDone {
    source: SourceRef,
    error: event::DecodeError,
    received_at: event::Timestamp,
}

/// The journal as the runtime uses it: a writer whose completions release offsets, a reader
/// for recognising re-delivered messages, and how far each partition got before the restart.
struct JournalLink {
    path: std::path::PathBuf,
    /// A submission's token is every message it completes: offsets are released per batch.
    writer: JournalWriter<Vec<SourceRef>>,
    /// Writes that failed (a full disk, a file-size limit): the run then ends with an error
    /// even if everything else went well, so a process manager sees it.
    failed_writes: u64,
    last_error: Option<String>,
    reader: JournalReader,
    highest_before_start: HashMap<(String, i32), i64>,
    sweep: DecidedSweep,
}

/// When the notifier's queue overflows, the notifications it refused are still in the journal
/// as decided and never routed: they are fed to it again, a batch at a time, until none is
/// left. Deduplication makes a repeat harmless.
struct DecidedSweep {
    /// Older notifications are never sent (`dedup.resume_horizon_secs`).
    horizon: Duration,
    overflowed_seen: u64,
    active: bool,
    last_run: Option<Instant>,
}

/// Notifications decided more recently than this may still be on their way through the
/// notifier.
const SWEEP_MIN_AGE: Duration = Duration::from_secs(5);
const SWEEP_EVERY: Duration = Duration::from_secs(2);

impl JournalLink {
    /// Whether this message was handled before a restart (its offset was not yet committed).
    fn already_handled(
        &self,
        source: &SourceRef,
        cluster_id: impl FnOnce() -> Option<String>,
    ) -> bool {
        // Records from another cluster (or topic incarnation) say nothing about these offsets.
        self.reader.check_cluster(&source.topic, cluster_id);
        // A journal with nothing from before the start (the common case) needs no key built.
        if self.highest_before_start.is_empty() {
            return false;
        }
        let key = (source.topic.clone(), source.partition);
        if self
            .highest_before_start
            .get(&key)
            .is_none_or(|highest| source.offset > *highest)
        {
            return false;
        }
        self.reader
            .contains_event(&source.topic, source.partition, source.offset)
            .unwrap_or_else(|error| {
                tracing::error!(%error, %source, "journal look-up failed; handling the message");
                false
            })
    }
}

/// What opening the journal yields: the link, its completions, and the notification state
/// to resume.
struct OpenedJournal {
    link: JournalLink,
    completions: mpsc::UnboundedReceiver<Completion<Vec<SourceRef>>>,
    resumed: ResumedNotifications,
}

/// Opens the journal, or explains why not. Restored state goes into `engine`.
/// `restore_into`: the engine that takes the journal's open escalations, with the journal's
/// owed notifications resumed too; `None` when the state comes from elsewhere (a team
/// worker's comes from `<topic>.state`), so neither is read only to be thrown away.
fn open_journal(
    config: &Config,
    restore_into: Option<&mut Engine>,
    demo: bool,
) -> anyhow::Result<Option<OpenedJournal>> {
    if !config.journal.enabled {
        if demo {
            tracing::info!("demo: no journal kept (pass --journal PATH to keep one)");
        } else {
            tracing::warn!(
                "journal disabled: a restart may repeat notifications and forgets escalations"
            );
        }
        return Ok(None);
    }
    let mut journal = Journal::open_configured(&config.journal)?;
    let path = journal.path().to_path_buf();
    let dedup = &config.notifications.dedup;
    let horizon = Duration::from_secs(dedup.resume_horizon_secs);
    let Some(engine) = restore_into else {
        return start_journal(journal, path, horizon, ResumedNotifications::default()).map(Some);
    };
    let escalations = journal.open_escalations()?;
    if !escalations.is_empty() {
        tracing::info!(
            count = escalations.len(),
            "open escalations restored from the journal"
        );
    }
    engine.restore_escalations(escalations);
    let silences = journal.open_silences(chrono::Utc::now())?;
    if !silences.is_empty() {
        tracing::info!(count = silences.len(), "silences restored from the journal");
    }
    for silence in silences {
        engine.restore_silence(silence);
    }
    let resumed = journal.resume_notifications(
        chrono::Utc::now(),
        horizon,
        Duration::from_secs(dedup.window_secs),
        dedup.max_entries,
    )?;
    if resumed.expired_notifications + resumed.expired_deliveries > 0 {
        tracing::info!(
            notifications = resumed.expired_notifications,
            deliveries = resumed.expired_deliveries,
            horizon_secs = dedup.resume_horizon_secs,
            "notifications from before the restart older than the resume horizon expired, not sent"
        );
    }
    start_journal(journal, path, horizon, resumed).map(Some)
}

/// Starts the journal's writer and reader once its state has been read.
fn start_journal(
    journal: Journal,
    path: std::path::PathBuf,
    horizon: Duration,
    resumed: ResumedNotifications,
) -> anyhow::Result<OpenedJournal> {
    let highest_before_start = journal
        .highest_offsets()?
        .into_iter()
        .map(|(topic, partition, offset)| ((topic, partition), offset))
        .collect();
    let reader = journal.reader()?;
    let (writer, completions) = JournalWriter::start(journal)?;
    tracing::info!(path = %path.display(), "journal open");
    Ok(OpenedJournal {
        link: JournalLink {
            path,
            writer,
            failed_writes: 0,
            last_error: None,
            reader,
            highest_before_start,
            sweep: DecidedSweep {
                horizon,
                overflowed_seen: 0,
                active: false,
                last_run: None,
            },
        },
        completions,
        resumed,
    })
}

/// `tracing::info!`, or `tracing::debug!` when `quiet` (headless, where the JSON output
/// already carries the same fact).
macro_rules! info_unless {
    ($quiet:expr, $($arg:tt)+) => {
        if $quiet {
            tracing::debug!($($arg)+)
        } else {
            tracing::info!($($arg)+)
        }
    };
}

/// Whether the loop goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

struct Runtime {
    engine: Engine,
    /// Team mode: where escalation changes and decisions are published.
    team: Option<Arc<crate::team::publish::StatePublisher>>,
    /// How far each partition has been handled: by the previous active worker (team mode)
    /// and by this run. A rebalance can hand a partition back from an older committed offset
    /// (a commit lost when the group coordinator's broker died): what comes again up to here
    /// was handled already, and handling it twice would print and count it twice.
    handled_through: HashMap<PartitionKey, i64>,
    journal: Option<JournalLink>,
    control: ConsumerControl,
    dead_letters: DeadLetterProducer,
    dead_letter_done: mpsc::Sender<DeadLetterDone>,
    tracker: OffsetTracker,
    notifier: Notifier,
    /// Granted while this process may page and store offsets (a team worker's lease).
    side_effects: SideEffects,
    output: Option<mpsc::Sender<OutputRecord>>,
    /// Records emitted while handling the current batch, sent together after it. Bounded by
    /// what one batch (at most `MAX_BATCH` messages) or one tick emits.
    unsent_output: Vec<OutputRecord>,
    output_gate: Option<OutputGate>,
    max_message_bytes: usize,
    summary: RunSummary,
    /// Offsets finished since the last store: stored once per batch, not per message.
    to_store: HashMap<PartitionKey, i64>,
    /// Notifications decided since the last journal submission. With a journal they reach the
    /// notifier only once their decisions are submitted: the notifier's marks go to the same
    /// writer, and a mark written before its decision would update nothing (the notification
    /// then stayed "decided" in the journal although it was sent).
    decided: Vec<crate::core::engine::Notification>,
    /// Kafka message timestamp to handled (its output record sent), logged at exit.
    latency: crate::core::metrics::LatencyHistogram,
}

/// What a batch of messages leaves to journal: one submission for all of them.
#[derive(Default)]
struct PendingCommit {
    sources: Vec<SourceRef>,
    records: Vec<JournalRecord>,
}

/// Holds finished offsets until the output lines emitted before them are flushed.
struct OutputGate {
    flushed: watch::Receiver<u64>,
    /// Records sent on the output channel so far.
    emitted: u64,
    /// (records that must be flushed first, finished message), in `emitted` order. Bounded in
    /// practice by the output channel: an entry waits only for records still in the channel
    /// or in the writer's buffer, which is flushed at least every few hundred records.
    held: std::collections::VecDeque<(u64, SourceRef)>,
    /// The writer stopped (stdout broke): nothing more is written, so nothing held is stored.
    broken: bool,
}

/// Team mode: the state a new active worker restored from `<topic>.state`, which replaces
/// what its own journal holds (the journal stays its own record), and where it publishes.
pub struct TeamLink {
    pub restored: crate::team::state::Restored,
    pub state: Arc<crate::team::publish::StatePublisher>,
}

/// Starts the consumer and the runtime loop on the current tokio runtime.
pub fn spawn(config: &Config, options: RuntimeOptions) -> anyhow::Result<RuntimeHandle> {
    spawn_with(config, options, None)
}

/// As `spawn`; with `team`, the engine and notifier start from the restored state, before
/// any incident is consumed, and publish their changes to `<topic>.state`.
pub fn spawn_with(
    config: &Config,
    options: RuntimeOptions,
    team: Option<TeamLink>,
) -> anyhow::Result<RuntimeHandle> {
    crate::kafka::settings::check(config, true)?;
    let mut engine = Engine::new(config.engine_config());
    // A team worker's state comes from `<topic>.state` (`team.restored`), not its journal.
    let opened = open_journal(config, team.is_none().then_some(&mut engine), options.demo)?;
    let (journal, completions, recorder, mut resumed) = match opened {
        Some(OpenedJournal {
            link,
            completions,
            resumed,
        }) => {
            let recorder: Arc<dyn crate::notify::DeliveryRecorder> = Arc::new(link.writer.clone());
            (Some(link), Some(completions), Some(recorder), resumed)
        }
        None => (None, None, None, ResumedNotifications::default()),
    };
    let team_state = team.as_ref().map(|team| team.state.clone());
    let handled_through = team
        .as_ref()
        .map(|team| {
            team.restored
                .handled
                .iter()
                .map(|((topic, partition), offset)| {
                    let key = PartitionKey {
                        topic: topic.clone(),
                        partition: *partition,
                    };
                    (key, *offset)
                })
                .collect()
        })
        .unwrap_or_default();
    let recorder = match team {
        Some(TeamLink { restored, state }) => {
            engine.restore_escalations(restored.escalations);
            // Operators' silences, as a standalone start restores them from its journal.
            for silence in restored.silences {
                engine.restore_silence(silence);
            }
            resumed.decided = restored.decided;
            resumed.deliveries = restored.deliveries;
            Some(Arc::new(crate::team::publish::TeamRecorder {
                journal: recorder,
                state,
            }) as Arc<dyn crate::notify::DeliveryRecorder>)
        }
        None => recorder,
    };
    let mut notifier = match recorder {
        Some(recorder) => {
            let resumed_deliveries = resumed.deliveries.pending.len();
            if !resumed.decided.is_empty() || resumed_deliveries > 0 {
                tracing::info!(
                    notifications = resumed.decided.len(),
                    deliveries = resumed_deliveries,
                    "notifications from before the restart resumed"
                );
            }
            Notifier::start_gated(
                &config.notifications,
                Some(recorder),
                resumed.deliveries,
                options.side_effects.clone(),
            )?
        }
        None => Notifier::start_gated(
            &config.notifications,
            None,
            Default::default(),
            options.side_effects.clone(),
        )?,
    };
    for notification in resumed.decided {
        notifier.submit(notification);
    }
    let (stop_fetching, stop_rx) = watch::channel(false);
    let source = consumer::start(config, stop_rx)?;
    let dead_letters = DeadLetterProducer::new(config)?;
    let (commands, command_rx) = mpsc::channel(64);
    let (dead_letter_done, done_rx) = mpsc::channel(1024);
    let consumer_status = source.control.status();
    let fetched = source.control.fetched();
    let now = chrono::Utc::now();
    let initial = Arc::new(Snapshot {
        engine: engine.snapshot(now),
        consumer: consumer_status.borrow().clone(),
        notifier: NotifierStatus::default(),
        operator: options.operator.clone(),
        demo: options.demo,
        team: None,
    });
    let (snapshot_tx, snapshots) = watch::channel(initial);
    let journal_stats = journal.as_ref().map(|link| {
        let writer = link.writer.clone();
        Arc::new(move || writer.stats()) as crate::observe::JournalStatsFn
    });
    let runtime = Runtime {
        engine,
        team: team_state,
        handled_through,
        journal,
        control: source.control,
        dead_letters,
        dead_letter_done,
        tracker: OffsetTracker::default(),
        notifier,
        side_effects: options.side_effects,
        output: options.output,
        unsent_output: Vec::new(),
        output_gate: options.output_flushed.map(|flushed| OutputGate {
            flushed,
            emitted: 0,
            held: Default::default(),
            broken: false,
        }),
        max_message_bytes: config.kafka.max_message_bytes,
        summary: RunSummary::default(),
        to_store: HashMap::new(),
        decided: Vec::new(),
        latency: Default::default(),
    };
    let frame = Duration::from_secs_f64(1.0 / f64::from(config.console.max_frames_per_sec.max(1)));
    let task = tokio::spawn(runtime.run(RunLoop {
        messages: source.messages,
        fetch_task: source.task,
        stop_fetching,
        commands: command_rx,
        dead_letter_done: done_rx,
        journal_completions: completions,
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
        journal_stats,
        fetched,
        task,
    })
}

struct RunLoop {
    messages: mpsc::Receiver<Vec<FetchedMessage>>,
    fetch_task: JoinHandle<()>,
    stop_fetching: watch::Sender<bool>,
    commands: mpsc::Receiver<Command>,
    dead_letter_done: mpsc::Receiver<DeadLetterDone>,
    journal_completions: Option<mpsc::UnboundedReceiver<Completion<Vec<SourceRef>>>>,
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
        // Set when the consumer stopped on an error it cannot recover from.
        let mut failed = None;
        loop {
            tokio::select! {
                // Operator commands first: a flood of events must not delay a key press.
                biased;
                command = io.commands.recv() => {
                    // Every face gone is a shutdown too.
                    let command = command.unwrap_or(Command::Shutdown);
                    if self.handle_command(command).await == Flow::Stop {
                        break;
                    }
                    // Published at once so the operator sees the result of a key press.
                    self.publish(&io);
                    dirty = false;
                },
                Some(done) = io.dead_letter_done.recv() => {
                    self.dead_lettered(done).await;
                }
                Some(completion) = next_completion(&mut io.journal_completions) => {
                    self.journal_committed(completion);
                }
                _ = frame.tick(), if dirty => {
                    self.publish(&io);
                    dirty = false;
                }
                _ = status_rx.changed() => {
                    let assigned = status_rx.borrow_and_update().assigned_partitions.clone();
                    let revoked = self.tracker.retain_assigned(self.control.topic(), &assigned);
                    if !revoked.is_empty() {
                        tracing::debug!(count = revoked.len(), "in-flight work of revoked partitions forgotten");
                    }
                    dirty = true;
                }
                () = output_flushed(&mut self.output_gate) => {
                    if self.release_flushed() {
                        tracing::error!("stdout is broken: stopping consumption");
                        break;
                    }
                }
                _ = ticker.tick() => {
                    self.apply(Input::Tick, None).await;
                    self.sweep_decided();
                    dirty = true;
                }
                batch = io.messages.recv() => match batch {
                    Some(batch) => {
                        self.handle_batch(batch).await;
                        self.send_output().await;
                        dirty = true;
                        if self.output_broken() {
                            tracing::error!("stdout is broken: stopping consumption");
                            break;
                        }
                    }
                    None if self.control.range_finished() => break,
                    None => {
                        match self.control.fatal_error() {
                            Some(fatal) => failed = Some(fatal),
                            None => tracing::error!("the Kafka fetch task ended unexpectedly"),
                        }
                        break;
                    }
                },
            }
            // What a command, a tick or a completion emitted.
            self.send_output().await;
        }
        self.send_output().await;
        let summary = self.shutdown(io).await?;
        match failed {
            // What was handled is committed and journaled; the process still fails, so a
            // supervisor sees it and an operator reads why.
            Some(fatal) => Err(anyhow::anyhow!(fatal)),
            None => Ok(summary),
        }
    }

    async fn shutdown(mut self, mut io: RunLoop) -> anyhow::Result<RunSummary> {
        tracing::info!("shutting down: finishing in-flight work");
        let _ = io.stop_fetching.send(true);
        let _ = (&mut io.fetch_task).await;
        // What was fetched before the stop is handled, so its offsets can be committed; not
        // when stdout broke, as its lines could not be written.
        while !self.output_broken()
            && let Ok(batch) = io.messages.try_recv()
        {
            self.handle_batch(batch).await;
            self.send_output().await;
        }
        let deadline = tokio::time::Instant::now() + io.shutdown_timeout;
        while self.tracker.in_flight() > self.unstorable() {
            let next = async {
                tokio::select! {
                    Some(done) = io.dead_letter_done.recv() => Some(Ok(done)),
                    Some(completion) = next_completion(&mut io.journal_completions) => Some(Err(completion)),
                    () = output_flushed(&mut self.output_gate) => None,
                }
            };
            match tokio::time::timeout_at(deadline, next).await {
                Ok(Some(Ok(done))) => {
                    self.dead_lettered(done).await;
                    self.send_output().await;
                }
                Ok(Some(Err(completion))) => self.journal_committed(completion),
                Ok(None) => {
                    self.release_flushed();
                }
                _ => {
                    tracing::warn!(
                        pending = self.tracker.in_flight(),
                        "work unfinished at shutdown; those messages will be re-read next start"
                    );
                    break;
                }
            }
        }
        self.publish(&io);
        self.notifier.shutdown(io.shutdown_timeout).await;
        let mut journal_failed = None;
        if let Some(mut journal) = self.journal.take() {
            let closed = journal.writer.shutdown().await;
            if let Err(error) = &closed {
                tracing::error!(%error, "journal did not close cleanly");
            }
            if journal.failed_writes > 0 || closed.is_err() {
                journal_failed = Some(JournalFailed {
                    path: journal.path,
                    failed_writes: journal.failed_writes,
                    closed_cleanly: closed.is_ok(),
                    last_error: closed
                        .err()
                        .map(|error| error.to_string())
                        .or(journal.last_error.take()),
                });
            }
        }
        self.control
            .clone()
            .commit_and_close(io.shutdown_timeout)
            .await;
        let latency = &self.latency;
        tracing::info!(
            handled = self.summary.handled,
            dead_lettered = self.summary.dead_lettered,
            latency_samples = latency.count(),
            latency_p50_ms = latency.percentile_ms(0.50),
            latency_p99_ms = latency.percentile_ms(0.99),
            latency_max_ms = latency.max_ms(),
            "stopped (latency: Kafka message timestamp to handled, whole milliseconds)"
        );
        // Offsets of what the journal did not take were held, so nothing is lost; but a run
        // that could not keep its record must not look like a clean one to a process manager.
        if let Some(failed) = journal_failed {
            return Err(failed.into());
        }
        Ok(self.summary)
    }

    fn publish(&self, io: &RunLoop) {
        let snapshot = Snapshot {
            engine: self.engine.snapshot(chrono::Utc::now()),
            consumer: self.control.status().borrow().clone(),
            notifier: self.notifier.status(),
            operator: io.operator.clone(),
            demo: io.demo,
            team: None,
        };
        io.snapshot_tx.send_replace(Arc::new(snapshot));
    }

    async fn handle_command(&mut self, command: Command) -> Flow {
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
            Command::Notify(notification) => self.notify(*notification).await,
            Command::Oncall(command) => {
                self.apply(command.into_input(chrono::Utc::now()), None)
                    .await;
            }
            Command::Shutdown => return Flow::Stop,
        }
        Flow::Continue
    }

    /// A notification decided outside the engine (a self-alert): journaled as decided and
    /// submitted like the engine's own, so it is delivered, retried and resumed the same way.
    async fn notify(&mut self, notification: crate::core::engine::Notification) {
        if !self.side_effects.allowed("notification") {
            return;
        }
        if let Some(journal) = &self.journal
            && self.notifier.has_channels()
        {
            let record = JournalRecord::Decided(Decision {
                notification: notification.clone(),
                at: chrono::Utc::now(),
            });
            if let Err(error) = journal.writer.record(vec![record]).await {
                tracing::error!(%error, "cannot journal a self-alert notification");
            }
        }
        self.notifier.submit(notification);
    }

    /// Handles a batch in order; its journal records go in one submission and its offsets
    /// are stored once.
    async fn handle_batch(&mut self, batch: Vec<FetchedMessage>) {
        let mut pending = PendingCommit::default();
        let sources: Vec<SourceRef> = match &self.team {
            Some(_) => batch.iter().map(|m| m.source.clone()).collect(),
            None => Vec::new(),
        };
        for message in batch {
            self.handle_message(message, &mut pending).await;
        }
        if let Some(team) = &self.team {
            team.progress(&sources);
        }
        if !pending.sources.is_empty() {
            self.commit(pending.sources, pending.records).await;
        }
        self.release_decided();
        self.flush_stores();
    }

    async fn handle_message(&mut self, message: FetchedMessage, pending: &mut PendingCommit) {
        let started = Instant::now();
        let key = PartitionKey {
            topic: message.source.topic.clone(),
            partition: message.source.partition,
        };
        let offset = message.source.offset;
        let handled_already = self
            .handled_through
            .get(&key)
            .is_some_and(|highest| offset <= *highest);
        if handled_already && self.tracker.is_in_flight(&key, offset) {
            // Its first delivery is still being finished (a dead-letter send): that one
            // stores the offset when it is done.
            self.summary.redelivered += 1;
            return;
        }
        self.tracker.begin(&key, offset);
        let control = &self.control;
        if handled_already
            || self.journal.as_ref().is_some_and(|journal| {
                journal.already_handled(&message.source, || control.cluster_id())
            })
        {
            // Handled before (in this run, by a predecessor, or before a restart), offset
            // not yet committed: nothing to do again.
            tracing::debug!(source = %message.source, "re-delivered message already handled");
            self.summary.redelivered += 1;
            self.finish(&message.source);
            return;
        }
        self.handled_through.insert(key, offset);
        let received_at = chrono::Utc::now();
        match event::decode(message.payload.as_deref(), self.max_message_bytes) {
            Ok(event) => {
                // A decoded payload is valid UTF-8 (JSON): taken, not copied twice.
                let raw: Arc<str> = match String::from_utf8(message.payload.unwrap_or_default()) {
                    Ok(text) => text.into(),
                    Err(error) => String::from_utf8_lossy(error.as_bytes()).into(),
                };
                // Built only for headless output: the console has no use for the copy.
                if self.output.is_some() {
                    self.emit(OutputRecord::Event {
                        event_type: event.event_type(),
                        incident_id: event.incident_id(),
                        topic: message.source.topic.clone(),
                        partition: message.source.partition,
                        offset: message.source.offset,
                        received_at: chrono::Utc::now(),
                        data: Box::new(event.clone()),
                    });
                }
                let source = message.source;
                let record = ProcessedEvent::handled(
                    source.clone(),
                    &event,
                    received_at,
                    chrono::Utc::now(),
                );
                let mut records = vec![JournalRecord::Event(record)];
                self.apply_recording(
                    Input::Event {
                        event,
                        source: Some(source.clone()),
                        raw,
                    },
                    Some(&source),
                    &mut records,
                )
                .await;
                self.summary.handled += 1;
                self.engine.record_processing(started.elapsed());
                if let Some(produced_ms) = message.timestamp_ms {
                    let now_ms = chrono::Utc::now().timestamp_millis();
                    self.latency.record_ms(now_ms - produced_ms);
                }
                pending.sources.push(source);
                pending.records.append(&mut records);
            }
            Err(error) => self.dead_letter(message, error, received_at).await,
        }
    }

    /// Journals what handling a message produced; its offset is stored once that commits.
    /// Without a journal the offset is stored at once.
    async fn commit(&mut self, sources: Vec<SourceRef>, records: Vec<JournalRecord>) {
        let Some(journal) = &self.journal else {
            for source in &sources {
                self.finish(source);
            }
            return;
        };
        let count = sources.len();
        let first = sources.first().cloned();
        if let Err(error) = journal.writer.submit(sources, records).await {
            // The offsets stay uncommitted: the messages are read again after a restart.
            tracing::error!(%error, count, first = ?first, "cannot journal handled messages");
        }
    }

    fn sweep_decided(&mut self) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        let status = self.notifier.status();
        let sweep = &mut journal.sweep;
        if status.outbox_overflowed > sweep.overflowed_seen {
            sweep.overflowed_seen = status.outbox_overflowed;
            sweep.active = true;
        }
        if !sweep.active || sweep.last_run.is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
            return;
        }
        sweep.last_run = Some(Instant::now());
        let room = self.notifier.capacity().saturating_sub(status.outbox_depth) / 2;
        let now = chrono::Utc::now();
        let age = |age: Duration| now - chrono::TimeDelta::from_std(age).unwrap_or_default();
        let decided = journal.reader.decided_notifications(
            age(sweep.horizon),
            age(SWEEP_MIN_AGE),
            room.max(1),
        );
        match decided {
            Ok(decided) if decided.is_empty() => sweep.active = false,
            Ok(decided) => {
                tracing::info!(
                    count = decided.len(),
                    "re-submitting notifications the full queue refused"
                );
                for notification in decided {
                    self.notifier.submit(notification);
                }
            }
            Err(error) => tracing::error!(%error, "cannot read pending notifications"),
        }
    }

    fn journal_committed(&mut self, completion: Completion<Vec<SourceRef>>) {
        match completion.result {
            Ok(()) => {
                for source in &completion.token {
                    self.finish(source);
                }
                self.flush_stores();
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    count = completion.token.len(),
                    first = ?completion.token.first(),
                    "journal write failed; the offsets are held so the messages are re-read after a restart"
                );
                if let Some(journal) = self.journal.as_mut() {
                    journal.failed_writes += 1;
                    journal.last_error = Some(error.to_string());
                }
            }
        }
    }

    async fn dead_lettered(&mut self, done: DeadLetterDone) {
        let record = ProcessedEvent::dead_lettered(
            done.source.clone(),
            &done.error,
            done.received_at,
            chrono::Utc::now(),
        );
        self.commit(vec![done.source], vec![JournalRecord::Event(record)])
            .await;
        self.flush_stores();
    }

    async fn dead_letter(
        &mut self,
        message: FetchedMessage,
        error: event::DecodeError,
        received_at: event::Timestamp,
    ) {
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
        });
        let reason = error.reason();
        let text = error.to_string();
        self.apply(
            Input::Rejected {
                error: error.clone(),
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
            let _ = done
                .send(DeadLetterDone {
                    source: message.source,
                    error,
                    received_at,
                })
                .await;
        });
    }

    fn finish(&mut self, source: &SourceRef) {
        if let Some(gate) = &mut self.output_gate
            && (gate.broken || *gate.flushed.borrow() < gate.emitted)
        {
            if !gate.broken {
                gate.held.push_back((gate.emitted, source.clone()));
            }
            return;
        }
        self.store_finished(source);
    }

    /// Stores the offsets whose output is flushed; returns whether the output broke.
    fn release_flushed(&mut self) -> bool {
        let Some(gate) = &mut self.output_gate else {
            return false;
        };
        if gate.flushed.has_changed().is_err() {
            // The writer is gone: what it did not flush is never stored.
            gate.broken = true;
            gate.held.clear();
        }
        let flushed = *gate.flushed.borrow_and_update();
        let mut ready = Vec::new();
        while gate
            .held
            .front()
            .is_some_and(|(needed, _)| *needed <= flushed)
        {
            ready.extend(gate.held.pop_front().map(|(_, source)| source));
        }
        let broken = gate.broken;
        for source in ready {
            self.store_finished(&source);
        }
        self.flush_stores();
        broken
    }

    fn output_broken(&self) -> bool {
        self.output_gate.as_ref().is_some_and(|gate| gate.broken)
    }

    /// In-flight messages whose offsets can never be stored: all of them once the output
    /// broke (their lines will not be written), so shutdown does not wait for them.
    fn unstorable(&self) -> usize {
        if self.output_broken() {
            self.tracker.in_flight()
        } else {
            0
        }
    }

    fn store_finished(&mut self, source: &SourceRef) {
        let key = PartitionKey {
            topic: source.topic.clone(),
            partition: source.partition,
        };
        if let Some(next) = self.tracker.finish(&key, source.offset) {
            let stored = self.to_store.entry(key).or_insert(next);
            *stored = (*stored).max(next);
        }
    }

    /// Stores the offsets finished since the last call, one call for all partitions; none
    /// when this worker no longer holds the lease (team mode).
    fn flush_stores(&mut self) {
        if !self.to_store.is_empty() {
            if self.side_effects.allowed("offset store") {
                self.control
                    .store_many(self.to_store.iter().map(|(k, v)| (k, *v)));
            }
            self.to_store.clear();
        }
    }

    /// Runs `input` through the engine; what must be journaled is written on its own.
    async fn apply(&mut self, input: Input, source: Option<&SourceRef>) {
        let mut records = Vec::new();
        self.apply_recording(input, source, &mut records).await;
        if let Some(journal) = &self.journal
            && !records.is_empty()
            && let Err(error) = journal.writer.record(records).await
        {
            tracing::error!(%error, "cannot journal escalation changes");
        }
        self.release_decided();
    }

    /// Hands the notifications decided so far to the notifier, after their decisions went to
    /// the journal writer (see `decided`).
    fn release_decided(&mut self) {
        for notification in std::mem::take(&mut self.decided) {
            self.notifier.submit(notification);
        }
    }

    /// Runs `input` through the engine, adding what must be journaled to `records`:
    /// escalation changes with the state after them, and each notification decided (in the
    /// same transaction as its event, so a decision is never lost while its offset is stored).
    async fn apply_recording(
        &mut self,
        input: Input,
        source: Option<&SourceRef>,
        records: &mut Vec<JournalRecord>,
    ) {
        let now = chrono::Utc::now();
        let effects = self.engine.apply(input, now);
        for effect in effects {
            if let Some(team) = &self.team {
                team.effect(
                    &effect,
                    self.engine.escalations(),
                    self.notifier.has_channels(),
                );
            }
            if self.journal.is_some() {
                match &effect {
                    // With no channel configured there is nothing that could be owed.
                    Effect::Notify(_) if !self.notifier.has_channels() => {}
                    Effect::Escalation(change) => records.push(JournalRecord::Escalation(
                        EscalationRecord::from_book(change.clone(), self.engine.escalations(), now),
                    )),
                    Effect::Notify(notification) => {
                        records.push(JournalRecord::Decided(Decision {
                            notification: notification.clone(),
                            at: now,
                        }))
                    }
                    Effect::Held {
                        notification,
                        silence_id,
                        until,
                    } => records.push(JournalRecord::OnCall(OnCallRecord::Held {
                        notification: notification.clone(),
                        silence_id: silence_id.clone(),
                        until: *until,
                        at: now,
                    })),
                    Effect::SilenceSet(view) => {
                        records.push(JournalRecord::OnCall(OnCallRecord::SilenceSet {
                            silence: (**view).clone(),
                            at: now,
                        }))
                    }
                    Effect::SilenceEnded { id, by } => {
                        records.push(JournalRecord::OnCall(OnCallRecord::SilenceEnded {
                            id: id.clone(),
                            by: by.clone(),
                            at: now,
                        }))
                    }
                    _ => {}
                }
            }
            self.run_effect(&effect);
            self.emit(OutputRecord::Effect {
                topic: source.map(|s| s.topic.clone()),
                partition: source.map(|s| s.partition),
                offset: source.map(|s| s.offset),
                effect,
            });
        }
    }

    fn run_effect(&mut self, effect: &Effect) {
        // Headless, each effect is already a JSON line on stdout: its info log line would say
        // it again on stderr, per event during a drain. The console keeps it in its log pane.
        let quiet = self.output.is_some();
        match effect {
            // With no channel configured the notifier would only log it at debug level;
            // handing it over anyway costs a copy, a queue hand-off and a journal update per
            // notification. (Team mode keeps its own path: its recorder follows each one.)
            Effect::Notify(notification)
                if !self.notifier.has_channels() && self.team.is_none() =>
            {
                tracing::debug!(
                    kind = notification.kind.as_str(),
                    incident_id = notification.incident_id,
                    "notification (no channels configured)"
                );
            }
            Effect::Notify(notification) => {
                let allowed = self.side_effects.allowed("notification");
                if allowed && self.journal.is_some() {
                    self.decided.push(notification.clone());
                } else if allowed {
                    self.notifier.submit(notification.clone())
                }
            }
            Effect::Escalation(change) => log_escalation(change, quiet),
            Effect::IncidentResolved {
                incident_id,
                time_to_resolve_secs,
                status,
            } => info_unless!(
                quiet,
                "incident {incident_id} {status} after {}",
                time_to_resolve_secs
                    .map(crate::core::engine::format_duration)
                    .unwrap_or_else(|| "an unknown time".into())
            ),
            Effect::AcknowledgeRejected {
                incident_id,
                reason,
            } => {
                tracing::warn!(incident_id, "acknowledge rejected: {reason}")
            }
            Effect::Held {
                notification,
                silence_id,
                until,
            } => info_unless!(
                quiet,
                "incident {} {} held by silence {silence_id} until {until}",
                notification.incident_id,
                notification.kind.as_str()
            ),
            Effect::SilenceSet(view) => tracing::info!(
                "silence {} set by {} until {}: {} ({})",
                view.id,
                view.created_by,
                view.end,
                view.matches,
                view.reason
            ),
            Effect::SilenceEnded { id, by } => match by {
                Some(by) => tracing::info!("silence {id} ended by {by}"),
                None => tracing::info!("silence {id} expired"),
            },
            Effect::SilenceRejected { reason } => tracing::warn!("silence refused: {reason}"),
        }
    }

    /// Queues an output record; `send_output` hands the queue to the writer once per batch,
    /// so the writer thread wakes (and flushes) once per batch rather than once per record.
    fn emit(&mut self, record: OutputRecord) {
        if self.output.is_none() {
            return;
        }
        self.unsent_output.push(record);
        if let Some(gate) = &mut self.output_gate {
            gate.emitted += 1;
        }
    }

    async fn send_output(&mut self) {
        if self.unsent_output.is_empty() {
            return;
        }
        let Some(output) = &self.output else {
            self.unsent_output.clear();
            return;
        };
        let output = output.clone();
        let mut records = std::mem::take(&mut self.unsent_output);
        for record in records.drain(..) {
            if output.send(record).await.is_err() {
                // The writer has gone (stdout broke): stop writing, and with a gate, consuming.
                self.output = None;
                if let Some(gate) = &mut self.output_gate {
                    gate.broken = true;
                    gate.held.clear();
                }
                return;
            }
        }
        // The emptied buffer is kept: no allocation per batch.
        self.unsent_output = records;
    }
}

/// Logs an escalation change; its info lines are debug lines when `quiet`.
fn log_escalation(change: &crate::core::escalation::EscalationChange, quiet: bool) {
    use crate::core::escalation::EscalationChange as Change;
    match change {
        Change::Opened {
            incident_id,
            level,
            priority,
        } => {
            info_unless!(
                quiet,
                "incident {incident_id} ({priority}) escalated: paging level {level}"
            )
        }
        Change::Raised {
            incident_id,
            from_level,
            to_level,
            cause,
        } => info_unless!(
            quiet,
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
        } => info_unless!(
            quiet,
            "incident {incident_id} acknowledged by {by} after {}",
            crate::core::engine::format_duration(*time_to_acknowledge_secs)
        ),
        Change::Closed { incident_id, .. } => {
            info_unless!(quiet, "incident {incident_id} escalation closed")
        }
        Change::Unacknowledged {
            incident_id,
            level,
            cause,
            was_acknowledged_by,
            ..
        } => tracing::warn!(
            ?cause,
            "incident {incident_id} no longer acknowledged (was by {was_acknowledged_by}): paging level {level} again"
        ),
    }
}

/// Waits for the headless writer to flush more records, or to go away; pends forever
/// without a gate or once the output broke.
async fn output_flushed(gate: &mut Option<OutputGate>) {
    match gate {
        Some(gate) if !gate.broken => {
            // An error means the writer has gone; `release_flushed` notices it.
            let _ = gate.flushed.changed().await;
        }
        _ => std::future::pending().await,
    }
}

async fn next_completion<T>(
    completions: &mut Option<mpsc::UnboundedReceiver<Completion<T>>>,
) -> Option<Completion<T>> {
    match completions {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}
