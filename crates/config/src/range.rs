//! Where a positioned read starts and stops (`--from-*`, `--until-*`); the consumer acts on it.

use incident_core::event::Timestamp;

/// Where a positioned read (a replay from Kafka) starts and stops. Empty: the group decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadRange {
    /// `--from-offset PARTITION:OFFSET`: only these partitions, from these offsets.
    pub from_offsets: Vec<(i32, i64)>,
    /// `--from-time`: every partition from its first message at or after this time.
    pub from_time: Option<Timestamp>,
    /// `--until-time`: each partition stops before its first message after this time (and
    /// at its end as it was at the start).
    pub until_time: Option<Timestamp>,
    /// `--until-offset PARTITION:OFFSET`: the partition stops before this offset.
    pub until_offsets: Vec<(i32, i64)>,
}

impl ReadRange {
    /// Whether the consumer positions itself instead of following the group.
    pub fn is_active(&self) -> bool {
        *self != Self::default()
    }
}
