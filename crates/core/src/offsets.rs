//! Which offset may be committed for each partition. With work finishing out of order (a
//! dead-letter send still in flight while later events are done), only the offset below which
//! everything is finished is safe to commit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    /// Shared with the message's `SourceRef`: a key is made for every message, several
    /// times, and a copied name was an allocation each time.
    pub topic: Arc<str>,
    pub partition: i32,
}

#[derive(Debug, Default, Clone)]
struct Progress {
    in_flight: BTreeSet<i64>,
    highest_done: Option<i64>,
    /// The last next-offset handed out, so the same mark is not stored twice.
    stored: Option<i64>,
}

#[derive(Debug, Default, Clone)]
pub struct OffsetTracker {
    partitions: BTreeMap<PartitionKey, Progress>,
}

impl OffsetTracker {
    pub fn begin(&mut self, key: &PartitionKey, offset: i64) {
        self.partitions
            .entry(key.clone())
            .or_default()
            .in_flight
            .insert(offset);
    }

    /// Marks `offset` done and returns the next offset to consume if the safe commit point moved
    /// (Kafka's convention: the committed offset is the next one to read).
    pub fn finish(&mut self, key: &PartitionKey, offset: i64) -> Option<i64> {
        let progress = self.partitions.get_mut(key)?;
        let was_lowest = progress.in_flight.first() == Some(&offset);
        if !progress.in_flight.remove(&offset) {
            return None;
        }
        progress.highest_done = Some(progress.highest_done.map_or(offset, |h| h.max(offset)));
        if !was_lowest {
            return None;
        }
        let mark = match progress.in_flight.first() {
            Some(&lowest_pending) => lowest_pending,
            None => progress.highest_done? + 1,
        };
        if progress.stored.is_some_and(|stored| stored >= mark) {
            return None;
        }
        progress.stored = Some(mark);
        Some(mark)
    }

    /// A revoked partition's pending work will be redelivered to whoever gets it next.
    pub fn forget(&mut self, key: &PartitionKey) {
        self.partitions.remove(key);
    }

    /// Forgets every partition of `topic` not in `assigned` (after a rebalance took them
    /// away), so that work finishing late never stores an offset for a partition another
    /// consumer now owns. Returns what was forgotten.
    pub fn retain_assigned(&mut self, topic: &str, assigned: &[i32]) -> Vec<PartitionKey> {
        let revoked: Vec<PartitionKey> = self
            .partitions
            .keys()
            .filter(|key| *key.topic == *topic && !assigned.contains(&key.partition))
            .cloned()
            .collect();
        for key in &revoked {
            self.forget(key);
        }
        revoked
    }

    /// Whether `offset` of `key` has begun and not yet finished.
    pub fn is_in_flight(&self, key: &PartitionKey, offset: i64) -> bool {
        self.partitions
            .get(key)
            .is_some_and(|progress| progress.in_flight.contains(&offset))
    }

    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(partition: i32) -> PartitionKey {
        PartitionKey {
            topic: "t".into(),
            partition,
        }
    }

    #[test]
    fn a_revoked_partition_stores_nothing_when_its_work_finishes_late() {
        let mut tracker = OffsetTracker::default();
        tracker.begin(&key(0), 10);
        tracker.begin(&key(1), 20);
        assert_eq!(tracker.retain_assigned("t", &[1]), [key(0)]);
        assert_eq!(
            tracker.finish(&key(0), 10),
            None,
            "partition 0 is someone else's now"
        );
        assert_eq!(tracker.finish(&key(1), 20), Some(21));
        assert_eq!(tracker.in_flight(), 0);
        assert!(
            tracker.retain_assigned("other", &[]).is_empty(),
            "another topic's partitions"
        );
    }

    #[test]
    fn in_order_completion_advances_one_by_one() {
        let mut tracker = OffsetTracker::default();
        for offset in 0..3 {
            tracker.begin(&key(0), offset);
        }
        assert_eq!(tracker.finish(&key(0), 0), Some(1));
        assert_eq!(tracker.finish(&key(0), 1), Some(2));
        assert_eq!(tracker.finish(&key(0), 2), Some(3));
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn a_slow_offset_holds_the_mark_until_it_finishes() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..14 {
            tracker.begin(&key(0), offset);
        }
        let steps = [(11, None), (12, None), (10, Some(13)), (13, Some(14))];
        for (offset, expected) in steps {
            assert_eq!(tracker.finish(&key(0), offset), expected, "finish {offset}");
        }
    }

    #[test]
    fn partitions_are_independent_and_unknown_offsets_ignored() {
        let mut tracker = OffsetTracker::default();
        tracker.begin(&key(0), 5);
        tracker.begin(&key(1), 7);
        assert_eq!(tracker.finish(&key(1), 7), Some(8));
        assert_eq!(tracker.finish(&key(1), 7), None);
        assert_eq!(tracker.finish(&key(2), 1), None);
        assert_eq!(tracker.in_flight(), 1);
        tracker.forget(&key(0));
        assert_eq!(tracker.finish(&key(0), 5), None);
        assert_eq!(tracker.in_flight(), 0);
    }
}
