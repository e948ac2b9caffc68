//! The runtime owns the engine. It takes fetched messages, operator commands and clock ticks
//! one at a time, runs the engine, sends effects on their way, stores offsets once work is
//! done, and publishes snapshots for whoever is watching. The console and headless mode are
//! two faces of this one loop.
//!
//! This file holds the types and the wiring (`spawn_with`); the runtime's work is in
//! `run_loop` (the loop and shutdown), `effects` (the engine and what its effects fan out to),
//! `journaling` (the journal link, its completions and the sweep) and `commit_gate` (when a
//! finished offset may be stored).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use std::collections::HashMap;

use crate::config::Config;
use crate::core::engine::{Effect, Engine, Input, SourceRef};
use crate::core::event;
use crate::core::offsets::PartitionKey;
use crate::core::permit::SideEffects;
use crate::journal::{
    Completion, Decision, Journal, JournalFailed, JournalReader, JournalRecord, JournalWriter,
    ProcessedEvent, ResumedNotifications,
};
use crate::kafka::consumer::{self, ConsumerControl, FetchedMessage};
use crate::kafka::dead_letter::DeadLetterProducer;
use crate::notify::Notifier;
use crate::output::OutputRecord;
use crate::status::{Command, NotifierStatus, SharedSnapshot, Snapshot};

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

mod commit_gate;
mod effects;
mod journaling;
mod run_loop;

use commit_gate::{Arrival, CommitGate, Confirmed};
use journaling::open_journal;

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

/// The faces' handle on a runtime, and what a run did: the faces' interface (`status`).
pub use crate::status::{RunSummary, RuntimeHandle};

/// A dead-letter copy has reached the broker; its journal record may now be written.
struct DeadLetterDone {
    source: SourceRef,
    error: event::DecodeError,
    received_at: event::Timestamp,
}

/// What one journal submission completes: the messages whose offsets its commit releases,
/// and the notifications whose decisions it makes durable. The notifier is handed those only
/// once they are in the journal, so every mark it writes (routed, delivered) lands after the
/// decision it updates: the journal writer applies submissions in order.
struct Journaled {
    sources: Vec<SourceRef>,
    decided: Vec<crate::core::engine::Notification>,
}

/// The journal as the runtime uses it: a writer whose completions release offsets and
/// notifications, a reader for recognising re-delivered messages, and how far each partition
/// got before the restart.
struct JournalLink {
    path: std::path::PathBuf,
    /// A submission's token is every message it completes: offsets are released per batch.
    writer: JournalWriter<Journaled>,
    /// Submissions carrying decisions whose completion has not come back yet: shutdown waits
    /// for them, so no decided notification misses the notifier.
    deciding: usize,
    /// Writes that failed (a full disk, a file-size limit): the run then ends with an error
    /// even if everything else went well, so a process manager sees it.
    failed_writes: u64,
    last_error: Option<String>,
    reader: JournalReader,
    highest_before_start: HashMap<(Arc<str>, i32), i64>,
}

/// What opening the journal yields: the link, its completions, and the notification state
/// to resume.
struct OpenedJournal {
    link: JournalLink,
    completions: mpsc::UnboundedReceiver<Completion<Journaled>>,
    resumed: ResumedNotifications,
    /// Where the notifier reads back what its full outbox refused.
    refill: crate::notify::Refill,
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
    /// The one owner of offsets: in flight, handled, waiting for a sink, released.
    offsets: CommitGate,
    journal: Option<JournalLink>,
    control: ConsumerControl,
    dead_letters: DeadLetterProducer,
    dead_letter_done: mpsc::Sender<DeadLetterDone>,
    notifier: Notifier,
    /// Granted while this process may page and store offsets (a team worker's lease).
    side_effects: SideEffects,
    output: Option<mpsc::Sender<OutputRecord>>,
    /// Records emitted while handling the current batch, sent together after it. Bounded by
    /// what one batch (at most `MAX_BATCH` messages) or one tick emits.
    unsent_output: Vec<OutputRecord>,
    max_message_bytes: usize,
    summary: RunSummary,
    /// With a journal: notifications decided since the last journal submission, which goes
    /// with them (`Journaled`); the notifier gets them when it has committed. Emptied at every
    /// submission, so bounded by what one batch or one tick decides.
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
    let (journal, completions, recorder, mut resumed, refill) = match opened {
        Some(OpenedJournal {
            link,
            completions,
            resumed,
            refill,
        }) => {
            let recorder: Arc<dyn crate::notify::DeliveryRecorder> = Arc::new(link.writer.clone());
            (
                Some(link),
                Some(completions),
                Some(recorder),
                resumed,
                Some(refill),
            )
        }
        None => (None, None, None, ResumedNotifications::default(), None),
    };
    let team_state = team.as_ref().map(|team| team.state.clone());
    let team_mode = team.is_some();
    // The state hold waits on the state writer's count of committed records; the output
    // hold on the headless writer's count of flushed ones, bounded in practice by the output
    // channel (an entry waits only for records still in it or in the writer's buffer, which
    // is flushed at least every few hundred records).
    let state_counts = team_state.as_ref().map(|state| {
        let publisher = state.clone();
        let accepted: commit_gate::Accepted = Box::new(move || publisher.accepted());
        (accepted, state.confirmed())
    });
    let handled_through = team
        .as_ref()
        .map(|team| {
            team.restored
                .handled
                .iter()
                .map(|((topic, partition), offset)| {
                    let key = PartitionKey {
                        topic: topic.as_str().into(),
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
            resumed = restored.notifications;
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
                refill,
            )?
        }
        None => Notifier::start_gated(
            &config.notifications,
            None,
            Default::default(),
            options.side_effects.clone(),
            None,
        )?,
    };
    // A team worker's restored decisions come from `<topic>.state`, not its journal: they are
    // journaled as decided first, like the engine's own (`Runtime::run` commits them before
    // anything else), so one the outbox refuses is found again by the refill. A journal's own
    // are in it already.
    let mut restored_decided = Vec::new();
    for notification in resumed.decided {
        if team_mode && journal.is_some() && notifier.has_channels() {
            restored_decided.push(notification);
        } else {
            notifier.submit(notification);
        }
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
        offsets: CommitGate::new(handled_through, options.output_flushed, state_counts),
        journal,
        control: source.control,
        dead_letters,
        dead_letter_done,
        notifier,
        side_effects: options.side_effects,
        output: options.output,
        unsent_output: Vec::new(),
        max_message_bytes: config.kafka.max_message_bytes,
        summary: RunSummary::default(),
        decided: restored_decided,
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
    journal_completions: Option<mpsc::UnboundedReceiver<Completion<Journaled>>>,
    snapshot_tx: watch::Sender<SharedSnapshot>,
    frame: Duration,
    operator: String,
    demo: bool,
    shutdown_timeout: Duration,
}
