//! What the runtime publishes for its two faces (the console and headless mode), and what they
//! can ask of it. The UI only ever reads a `Snapshot` and sends a `Command`.

use std::sync::Arc;

use serde::Serialize;

use crate::core::engine::{EngineSnapshot, Notification};
use crate::core::event::IncidentId;

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
    Oncall(crate::oncall::OncallCommand),
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectionState {
    /// Started, no broker has answered yet.
    #[default]
    Connecting,
    Connected,
    /// Brokers were reachable and are not now; librdkafka keeps retrying.
    Disconnected {
        reason: String,
    },
}

impl ConnectionState {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Disconnected { .. } => "disconnected",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ConsumerStatus {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub connection: ConnectionState,
    pub assigned_partitions: Vec<i32>,
    pub paused: bool,
    /// Sum over assigned partitions of high watermark minus committed offset, from librdkafka
    /// statistics; `None` until the first statistics arrive.
    pub lag: Option<i64>,
    /// Offsets that were never delivered: a jump in a partition's offsets between two fetched
    /// messages (data the broker dropped before it was read, or compaction / transaction
    /// markers on a real topic).
    pub offsets_skipped: u64,
    pub last_error: Option<String>,
    /// Per assigned partition, from the same statistics (for the metrics endpoint).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionLag>,
}

/// One partition's position as librdkafka last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct PartitionLag {
    pub partition: i32,
    /// `None` until the group has committed an offset for the partition.
    pub committed_offset: Option<i64>,
    /// `None` until the partition's high watermark is known.
    pub high_watermark: Option<i64>,
    /// High watermark minus committed offset; `None` when either is unknown.
    pub lag: Option<i64>,
}

pub use crate::notify::{ChannelStatus, NotifierStatus};

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
