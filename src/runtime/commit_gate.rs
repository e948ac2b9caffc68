//! When a finished message's offset may be stored: after the output lines emitted before it
//! are flushed (headless), and only while side effects are permitted (team mode).

use super::*;

impl Runtime {
    pub(super) fn finish(&mut self, source: &SourceRef) {
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
    pub(super) fn release_flushed(&mut self) -> bool {
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

    pub(super) fn output_broken(&self) -> bool {
        self.output_gate.as_ref().is_some_and(|gate| gate.broken)
    }

    /// In-flight messages whose offsets can never be stored: all of them once the output
    /// broke (their lines will not be written), so shutdown does not wait for them.
    pub(super) fn unstorable(&self) -> usize {
        if self.output_broken() {
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

/// Waits for the headless writer to flush more records, or to go away; pends forever
/// without a gate or once the output broke.
pub(super) async fn output_flushed(gate: &mut Option<OutputGate>) {
    match gate {
        Some(gate) if !gate.broken => {
            // An error means the writer has gone; `release_flushed` notices it.
            let _ = gate.flushed.changed().await;
        }
        _ => std::future::pending().await,
    }
}
