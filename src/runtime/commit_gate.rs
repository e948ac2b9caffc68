//! The one place a finished message's offset is released. It is stored only once every sink
//! that must confirm the message has: the journal (before `finish` is called), the output
//! lines emitted before it (flushed by the headless writer), and in team mode every
//! `<topic>.state` record written before it (committed by the state writer's transaction);
//! and only while side effects are permitted (the team lease). So a successor never starts
//! from an offset whose decisions or claims it cannot read.

use std::collections::VecDeque;

use super::*;

/// How many finished messages may wait for the state writer before consumption waits too:
/// as many as the writer's own queue holds records.
pub(super) const STATE_HOLD_LIMIT: usize = crate::team::sink::QUEUE;

/// Finished messages waiting on one confirmation count (records flushed, state records
/// committed), in the order they finished.
pub(super) struct Hold {
    confirmed: watch::Receiver<u64>,
    /// (the count that must be confirmed first, finished message); the counts never fall.
    held: VecDeque<(u64, SourceRef)>,
    /// The confirming side went away (stdout broke, the state writer was fenced): nothing
    /// held is ever stored.
    pub(super) broken: bool,
}

impl Hold {
    pub(super) fn new(confirmed: watch::Receiver<u64>) -> Self {
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

    pub(super) fn break_off(&mut self) {
        self.broken = true;
        self.held.clear();
    }

    pub(super) fn len(&self) -> usize {
        self.held.len()
    }
}

/// Waits until the other side of `hold` confirms more, or goes away; pends forever without a
/// hold or once it broke.
pub(super) async fn confirmed_more(hold: Option<&mut Hold>) {
    match hold {
        Some(hold) if !hold.broken => {
            // An error means the other side has gone; `take_ready` notices it.
            let _ = hold.confirmed.changed().await;
        }
        _ => std::future::pending().await,
    }
}

impl Runtime {
    /// A message is done with (journaled, or needing no journal): its offset goes through
    /// the output hold, then the state hold.
    pub(super) fn finish(&mut self, source: &SourceRef) {
        if let Some(gate) = &mut self.output_gate
            && gate.hold.holds(gate.emitted, source)
        {
            return;
        }
        self.output_confirmed(source);
    }

    fn output_confirmed(&mut self, source: &SourceRef) {
        if let (Some(team), Some(hold)) = (&self.team, &mut self.state_hold)
            && hold.holds(team.accepted(), source)
        {
            return;
        }
        self.store_finished(source);
    }

    /// Passes on what the headless writer has flushed; returns whether the output broke.
    pub(super) fn release_flushed(&mut self) -> bool {
        let Some(gate) = &mut self.output_gate else {
            return false;
        };
        let ready = gate.hold.take_ready();
        let broken = gate.hold.broken;
        for source in ready {
            self.output_confirmed(&source);
        }
        self.flush_stores();
        broken
    }

    /// Stores what the state writer has committed; returns whether it stopped for good.
    pub(super) fn release_committed(&mut self) -> bool {
        let Some(hold) = &mut self.state_hold else {
            return false;
        };
        let ready = hold.take_ready();
        let broken = hold.broken;
        for source in ready {
            self.store_finished(&source);
        }
        self.flush_stores();
        broken
    }

    pub(super) fn output_broken(&self) -> bool {
        self.output_gate
            .as_ref()
            .is_some_and(|gate| gate.hold.broken)
    }

    fn state_broken(&self) -> bool {
        self.state_hold.as_ref().is_some_and(|hold| hold.broken)
    }

    /// Whether so many finished messages wait for the state writer that consumption should
    /// wait for it too (the broker is slow to commit, or unreachable).
    pub(super) fn state_backlogged(&self) -> bool {
        self.state_hold
            .as_ref()
            .is_some_and(|hold| hold.len() >= STATE_HOLD_LIMIT)
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

    pub(super) fn store_finished(&mut self, source: &SourceRef) {
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
    pub(super) fn flush_stores(&mut self) {
        if !self.to_store.is_empty() {
            if self.side_effects.allowed("offset store") {
                self.control
                    .store_many(self.to_store.iter().map(|(k, v)| (k, *v)));
            }
            self.to_store.clear();
        }
    }
}
