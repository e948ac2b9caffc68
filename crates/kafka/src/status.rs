//! What the consumer task reports about itself: its connection, its partitions and their lag.
//! The runtime puts it in every snapshot for the faces.

use serde::Serialize;

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
