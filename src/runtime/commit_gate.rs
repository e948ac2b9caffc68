//! The commit gate: the one owner of the runtime's offsets. It knows which messages are in
//! flight, how far each partition was handled (to recognise a re-delivery), and which
//! finished offsets may be stored. A finished message's offset is released only once every
//! sink that must confirm the message has: the journal (before `finish` is called), the
//! output lines emitted before it (flushed by the headless writer), and in team mode every
//! `<topic>.state` record written before it (committed by the state writer's transaction).
//! The runtime then stores what the gate released, and only while side effects are permitted
//! (the team lease). So a successor never starts from an offset whose decisions or claims it
//! cannot read.
//!
//! The gate does no I/O: the runtime hands it what the sinks confirmed and stores what it
//! releases, so its rules are tested here with plain channels.

use std::collections::{HashMap, VecDeque};

use tokio::sync::watch;

use crate::core::engine::SourceRef;
use crate::core::offsets::{OffsetTracker, PartitionKey};

/// How many finished messages may wait for the state writer before consumption waits too:
/// as many as the writer's own queue holds records.
pub(super) const STATE_HOLD_LIMIT: usize = crate::team::sink::QUEUE;

/// What the gate makes of a fetched message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arrival {
    /// Not handled before: begun, to be handled and then finished.
    Fresh,
    /// Handled before (in this run or by a predecessor) and not yet committed: begun, to be
    /// finished without being handled again.
    Repeat,
    /// Its first delivery is still being finished (a dead-letter send): that one releases
    /// the offset when it is done, so this copy is dropped.
    InFlight,
}

/// Which confirmation came in (see `CommitGate::confirmed_more`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Confirmed {
    Output,
    State,
}

/// The counter of records a confirming side has accepted so far (the state writer's).
pub(super) type Accepted = Box<dyn Fn() -> u64 + Send>;

pub(super) struct CommitGate {
    /// Messages begun and not finished: a partition's offset stays below its oldest one.
    tracker: OffsetTracker,
    /// How far each partition has been handled: by the previous active worker (team mode)
    /// and by this run. A rebalance can hand a partition back from an older committed offset
    /// (a commit lost when the group coordinator's broker died): what comes again up to here
    /// was handled already, and handling it twice would print and count it twice.
    handled_through: HashMap<PartitionKey, i64>,
    /// Headless: records emitted so far, and the finished messages waiting for the writer to
    /// flush the lines emitted before them.
    output: Option<(u64, Hold)>,
    /// Team mode: finished messages waiting for the state records written before them.
    state: Option<(Accepted, Hold)>,
    /// Released since the last store: stored once per batch, not per message.
    to_store: HashMap<PartitionKey, i64>,
}

impl CommitGate {
    /// `flushed`: the headless writer's count of flushed records; `state`: the state
    /// writer's count of accepted records and of committed ones.
    pub(super) fn new(
        handled_through: HashMap<PartitionKey, i64>,
        flushed: Option<watch::Receiver<u64>>,
        state: Option<(Accepted, watch::Receiver<u64>)>,
    ) -> Self {
        Self {
            tracker: OffsetTracker::default(),
            handled_through,
            output: flushed.map(|flushed| (0, Hold::new(flushed))),
            state: state.map(|(accepted, committed)| (accepted, Hold::new(committed))),
            to_store: HashMap::new(),
        }
    }

    /// A message fetched: begins it unless its first delivery is still in flight.
    /// `handled_before_start` asks the journal, and only when this run knows nothing of it.
    pub(super) fn arrive(
        &mut self,
        source: &SourceRef,
        handled_before_start: impl FnOnce() -> bool,
    ) -> Arrival {
        let key = key_of(source);
        let handled_already = self
            .handled_through
            .get(&key)
            .is_some_and(|highest| source.offset <= *highest);
        if handled_already && self.tracker.is_in_flight(&key, source.offset) {
            return Arrival::InFlight;
        }
        self.tracker.begin(&key, source.offset);
        if handled_already || handled_before_start() {
            return Arrival::Repeat;
        }
        self.handled_through.insert(key, source.offset);
        Arrival::Fresh
    }

    /// A record was emitted on the headless output: messages finished from now on wait for it.
    pub(super) fn emitted(&mut self) {
        if let Some((emitted, _)) = &mut self.output {
            *emitted += 1;
        }
    }

    /// A message is done with (journaled, or needing no journal): its offset goes through
    /// the output hold, then the state hold.
    pub(super) fn finish(&mut self, source: &SourceRef) {
        if let Some((emitted, hold)) = &mut self.output
            && hold.holds(*emitted, source)
        {
            return;
        }
        self.output_confirmed(source);
    }

    fn output_confirmed(&mut self, source: &SourceRef) {
        if let Some((accepted, hold)) = &mut self.state
            && hold.holds(accepted(), source)
        {
            return;
        }
        self.release(source);
    }

    fn release(&mut self, source: &SourceRef) {
        let key = key_of(source);
        if let Some(next) = self.tracker.finish(&key, source.offset) {
            let stored = self.to_store.entry(key).or_insert(next);
            *stored = (*stored).max(next);
        }
    }

    /// Waits until the output writer or the state writer confirms more, or goes away; pends
    /// forever when neither is there (or both broke).
    pub(super) async fn confirmed_more(&mut self) -> Confirmed {
        let output = self.output.as_mut().map(|(_, hold)| hold);
        let state = self.state.as_mut().map(|(_, hold)| hold);
        tokio::select! {
            () = changed(output) => Confirmed::Output,
            () = changed(state) => Confirmed::State,
        }
    }

    /// Passes on what the headless writer has flushed; returns whether the output broke.
    pub(super) fn release_flushed(&mut self) -> bool {
        let Some((_, hold)) = &mut self.output else {
            return false;
        };
        let ready = hold.take_ready();
        let broken = hold.broken;
        for source in ready {
            self.output_confirmed(&source);
        }
        broken
    }

    /// Releases what the state writer has committed; returns whether it stopped for good.
    pub(super) fn release_committed(&mut self) -> bool {
        let Some((_, hold)) = &mut self.state else {
            return false;
        };
        let ready = hold.take_ready();
        let broken = hold.broken;
        for source in ready {
            self.release(&source);
        }
        broken
    }

    /// The output writer went away (stdout broke): what waits for it is never stored.
    pub(super) fn output_lost(&mut self) {
        if let Some((_, hold)) = &mut self.output {
            hold.break_off();
        }
    }

    pub(super) fn output_broken(&self) -> bool {
        self.output.as_ref().is_some_and(|(_, hold)| hold.broken)
    }

    fn state_broken(&self) -> bool {
        self.state.as_ref().is_some_and(|(_, hold)| hold.broken)
    }

    /// Whether so many finished messages wait for the state writer that consumption should
    /// wait for it too (the broker is slow to commit, or unreachable).
    pub(super) fn state_backlogged(&self) -> bool {
        self.state
            .as_ref()
            .is_some_and(|(_, hold)| hold.held.len() >= STATE_HOLD_LIMIT)
    }

    pub(super) fn in_flight(&self) -> usize {
        self.tracker.in_flight()
    }

    /// In-flight messages whose offsets can never be stored: all of them once the output
    /// broke (their lines will not be written) or the state writer stopped (their records
    /// will not commit), so shutdown does not wait for them.
    pub(super) fn unstorable(&self) -> usize {
        if self.output_broken() || self.state_broken() {
            self.tracker.in_flight()
        } else {
            0
        }
    }

    /// A rebalance left `assigned` of `topic`: work of the other partitions finishing late
    /// never stores an offset for a partition another consumer now owns. Returns how many
    /// partitions were forgotten.
    pub(super) fn retain_assigned(&mut self, topic: &str, assigned: &[i32]) -> usize {
        self.tracker.retain_assigned(topic, assigned).len()
    }

    /// Hands what was released since the last call to `store` (one call for all
    /// partitions, none when nothing was), and forgets it.
    pub(super) fn store_released(&mut self, store: impl FnOnce(&HashMap<PartitionKey, i64>)) {
        if !self.to_store.is_empty() {
            store(&self.to_store);
            self.to_store.clear();
        }
    }
}

fn key_of(source: &SourceRef) -> PartitionKey {
    PartitionKey {
        topic: source.topic.clone(),
        partition: source.partition,
    }
}

/// Finished messages waiting on one confirmation count (records flushed, state records
/// committed), in the order they finished.
struct Hold {
    confirmed: watch::Receiver<u64>,
    /// (the count that must be confirmed first, finished message); the counts never fall.
    held: VecDeque<(u64, SourceRef)>,
    /// The confirming side went away (stdout broke, the state writer was fenced): nothing
    /// held is ever stored.
    broken: bool,
}

impl Hold {
    fn new(confirmed: watch::Receiver<u64>) -> Self {
        Self {
            confirmed,
            held: VecDeque::new(),
            broken: false,
        }
    }

    /// Holds `source` unless `needed` is confirmed already; true when it was held (or
    /// dropped, once broken).
    fn holds(&mut self, needed: u64, source: &SourceRef) -> bool {
        if self.broken {
            return true;
        }
        if *self.confirmed.borrow() >= needed {
            return false;
        }
        self.held.push_back((needed, source.clone()));
        true
    }

    /// What is confirmed now, in order; marks the hold broken once the other side is gone.
    fn take_ready(&mut self) -> Vec<SourceRef> {
        if self.confirmed.has_changed().is_err() {
            // What the other side did not confirm before it went never will be.
            self.break_off();
            return Vec::new();
        }
        let confirmed = *self.confirmed.borrow_and_update();
        let mut ready = Vec::new();
        while self
            .held
            .front()
            .is_some_and(|(needed, _)| *needed <= confirmed)
        {
            ready.extend(self.held.pop_front().map(|(_, source)| source));
        }
        ready
    }

    fn break_off(&mut self) {
        self.broken = true;
        self.held.clear();
    }
}

/// Waits until the other side of `hold` confirms more, or goes away; pends forever without a
/// hold or once it broke.
async fn changed(hold: Option<&mut Hold>) {
    match hold {
        Some(hold) if !hold.broken => {
            // An error means the other side has gone; `take_ready` notices it.
            let _ = hold.confirmed.changed().await;
        }
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    fn source(partition: i32, offset: i64) -> SourceRef {
        SourceRef {
            topic: "incidents".into(),
            partition,
            offset,
        }
    }

    fn released(gate: &mut CommitGate) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        gate.store_released(|offsets| {
            out = offsets
                .iter()
                .map(|(key, next)| (key.partition, *next))
                .collect();
        });
        out.sort();
        out
    }

    #[test]
    fn an_offset_waits_for_the_lines_before_it_then_for_the_state_records_before_it() {
        let (flushed_tx, flushed) = watch::channel(0);
        let (committed_tx, committed) = watch::channel(0);
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let mut gate = CommitGate::new(
            HashMap::new(),
            Some(flushed),
            Some((Box::new(move || counter.load(Ordering::SeqCst)), committed)),
        );
        assert_eq!(gate.arrive(&source(0, 7), || false), Arrival::Fresh);
        gate.emitted();
        accepted.store(3, Ordering::SeqCst);
        gate.finish(&source(0, 7));
        assert_eq!(released(&mut gate), [], "its line is not flushed yet");

        flushed_tx.send_replace(1);
        assert!(!gate.release_flushed());
        assert_eq!(
            released(&mut gate),
            [],
            "its state records are not committed yet"
        );

        committed_tx.send_replace(2);
        assert!(!gate.release_committed());
        assert_eq!(
            released(&mut gate),
            [],
            "one record of the three is still open"
        );
        committed_tx.send_replace(3);
        assert!(!gate.release_committed());
        assert_eq!(released(&mut gate), [(0, 8)]);
        assert_eq!(gate.in_flight(), 0);
    }

    #[test]
    fn a_repeat_is_recognised_and_a_copy_of_one_in_flight_is_dropped() {
        let handled = HashMap::from([(key_of(&source(1, 0)), 5)]);
        let mut gate = CommitGate::new(handled, None, None);
        assert_eq!(gate.arrive(&source(1, 4), || false), Arrival::Repeat);
        assert_eq!(
            gate.arrive(&source(1, 4), || unreachable!("known in this run")),
            Arrival::InFlight
        );
        assert_eq!(gate.arrive(&source(1, 6), || true), Arrival::Repeat);
        assert_eq!(gate.arrive(&source(1, 7), || false), Arrival::Fresh);
        assert_eq!(gate.arrive(&source(1, 7), || false), Arrival::InFlight);
        for offset in [4, 6, 7] {
            gate.finish(&source(1, offset));
        }
        assert_eq!(released(&mut gate), [(1, 8)]);
        assert_eq!(released(&mut gate), [], "released once");
    }

    #[test]
    fn once_stdout_broke_nothing_waiting_is_stored_and_shutdown_does_not_wait_for_it() {
        let (flushed_tx, flushed) = watch::channel(0);
        let mut gate = CommitGate::new(HashMap::new(), Some(flushed), None);
        gate.arrive(&source(0, 0), || false);
        gate.arrive(&source(0, 1), || false);
        gate.emitted();
        gate.finish(&source(0, 0));
        assert_eq!(gate.unstorable(), 0);
        drop(flushed_tx);
        assert!(gate.release_flushed(), "the writer has gone");
        assert!(gate.output_broken());
        gate.finish(&source(0, 1));
        assert_eq!(released(&mut gate), []);
        assert_eq!(gate.unstorable(), gate.in_flight());
    }

    #[test]
    fn a_revoked_partition_stores_nothing_when_its_work_finishes_late() {
        let mut gate = CommitGate::new(HashMap::new(), None, None);
        gate.arrive(&source(0, 3), || false);
        gate.arrive(&source(1, 9), || false);
        assert_eq!(gate.retain_assigned("incidents", &[1]), 1);
        gate.finish(&source(0, 3));
        gate.finish(&source(1, 9));
        assert_eq!(
            released(&mut gate),
            [(1, 10)],
            "partition 0 is someone else's now"
        );
    }

    #[tokio::test]
    async fn confirmed_more_names_the_side_that_confirmed() {
        let (_flushed_tx, flushed) = watch::channel(0);
        let (committed_tx, committed) = watch::channel(0);
        let mut gate = CommitGate::new(
            HashMap::new(),
            Some(flushed),
            Some((Box::new(|| 0), committed)),
        );
        committed_tx.send_replace(1);
        assert_eq!(gate.confirmed_more().await, Confirmed::State);
    }
}
