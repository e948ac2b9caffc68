//! What the runtime publishes for its faces (the console, headless mode, the web page), and
//! what they can ask of it. A face only ever reads a `Snapshot` and sends a `Command`.
//!
//! A crate of its own, the one interface between the runtime and the faces: it knows the
//! domain, the notifier's and the consumer's status, nothing of how they run.

use std::sync::Arc;

use serde::Serialize;

use incident_core::engine::{EngineSnapshot, Notification};
use incident_core::event::IncidentId;

/// A running runtime as a face holds it: the commands it takes, the snapshots and consumer
/// status it publishes, its counters for the metrics endpoint, and its task, which ends with
/// what it did.
pub struct RuntimeHandle {
    pub commands: tokio::sync::mpsc::Sender<Command>,
    pub snapshots: tokio::sync::watch::Receiver<SharedSnapshot>,
    pub consumer_status: tokio::sync::watch::Receiver<ConsumerStatus>,
    /// The journal writer's counters, for the metrics endpoint; `None` without a journal.
    pub journal_stats: Option<JournalStatsFn>,
    /// Messages fetched so far (see `ConsumerControl::fetched`).
    pub fetched: Arc<std::sync::atomic::AtomicU64>,
    pub task: tokio::task::JoinHandle<anyhow::Result<RunSummary>>,
}

/// Reads the journal writer's counters.
pub type JournalStatsFn = Arc<dyn Fn() -> incident_journal::JournalStats + Send + Sync>;

/// What a run did, printed when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub handled: u64,
    pub dead_lettered: u64,
    /// Delivered again (after a restart, a takeover or a rebalance) and recognised as handled.
    pub redelivered: u64,
}

/// Operator requests, from keys in the console or signals in headless mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    TogglePause,
    Acknowledge {
        incident_id: IncidentId,
        by: String,
    },
    /// A self-alert starting or clearing, to be notified through the runtime's notifier (the
    /// one owner of notification state) and recorded in its journal like any notification.
    Notify(Box<Notification>),
    /// Snooze, end a silence, take an acknowledgement back (docs/oncall.md).
    Oncall(incident_config::oncall::OncallCommand),
    Shutdown,
}

/// What the consumer reports; the Kafka crate owns these types.
pub use incident_kafka::status::{ConnectionState, ConsumerStatus, PartitionLag};

pub use incident_notify::{ChannelStatus, NotifierStatus};

/// Everything a renderer needs, immutable once published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub engine: EngineSnapshot,
    pub consumer: ConsumerStatus,
    pub notifier: NotifierStatus,
    /// Name used for acknowledgements made from this console.
    pub operator: String,
    pub demo: bool,
    /// Team mode, at a console: which worker is active. `None` outside a console.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<TeamView>,
}

/// Which worker a console sees acting, from the lease records on `<topic>.state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TeamView {
    /// A lease record came within the lease length.
    Active { worker: String, epoch: u64 },
    /// None for the lease length (or none yet): nothing is escalating or paging.
    NoActiveWorker,
}

pub type SharedSnapshot = Arc<Snapshot>;
