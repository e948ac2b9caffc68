//! The active worker's writer of `<topic>.state` (see `state`): escalation changes and
//! decisions as the runtime makes them, delivery marks as the notifier records them. Every
//! write is gated by the lease, carries this worker's leader epoch and goes through the
//! worker's one transactional writer (`sink`), which the broker fences once a successor opens
//! its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{oneshot, watch};

use super::sink::{Fenced, StateSink};
use super::state::{Finish, SilenceState, StateBody, StateKey, StateRecord};
use crate::core::changelog::{Change, ChangeSink, Changelog, EscalationChangeKind};
use crate::core::permit::SideEffects;
use crate::notify::{AttemptOutcome, Claims, DeliveryChange, DeliveryRecorder};

/// How long a delivery mark may wait for the broker before the send goes ahead anyway (the
/// journal has it; only a successor would not).
const MARK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct StatePublisher {
    sink: StateSink,
    worker: String,
    epoch: u64,
    /// Delivered claims on the state topic, deleted (a tombstone) once the dedup window or its
    /// bound forgets them: a compacted topic keeps each key's newest record forever, so
    /// without this the state topic, and the reading of it at every takeover, would grow
    /// without end. The notifier's own window type, with its rule.
    claims: Mutex<Claims>,
    /// The worker's lease: a fenced worker writes nothing more to the state topic.
    side_effects: SideEffects,
}

impl StatePublisher {
    /// `window` and `max` are the dedup window and its bound (`notifications.dedup`).
    pub fn new(
        sink: StateSink,
        worker: String,
        epoch: u64,
        window: Duration,
        max: usize,
        side_effects: SideEffects,
    ) -> Self {
        Self {
            side_effects,
            sink,
            worker,
            epoch,
            claims: Mutex::new(Claims::new(window, max).reporting_forgotten()),
        }
    }

    /// Claims restored at a takeover (oldest first), deleted in their turn like this
    /// worker's own.
    pub fn adopt_claims(&self, claims: &[(String, chrono::DateTime<chrono::Utc>)]) {
        let mut window = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        for (key, at) in claims {
            window.restore(key, *at);
        }
    }

    /// Deletes the delivered claims that have left the dedup window (or the bound) from the
    /// state topic. Called about once a second by the active worker.
    pub fn expire_claims(&self, now: chrono::DateTime<chrono::Utc>) {
        let expired = self
            .claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take_forgotten(now);
        for key in expired {
            self.forget(StateKey::Delivery(key));
        }
    }

    /// A tombstone for `key`: compaction deletes it, and a restoring reader forgets it.
    pub fn forget(&self, key: StateKey) {
        if let Some(confirmed) = self.enqueue_tombstone(&key) {
            tokio::spawn(async move {
                if !matches!(confirmed.await, Ok(true)) {
                    tracing::warn!("state tombstone not published");
                }
            });
        }
    }

    fn enqueue_tombstone(&self, key: &StateKey) -> Option<oneshot::Receiver<bool>> {
        let key = key.encode();
        if !self.side_effects.allowed("state publish") {
            return None;
        }
        self.sink.write(key, None)
    }

    /// Why this worker's writer can write no more, once the broker fenced it.
    pub fn fenced(&self) -> Option<Fenced> {
        self.sink.fenced()
    }

    /// How many records the writer has accepted so far (see `confirmed`).
    pub fn accepted(&self) -> u64 {
        self.sink.accepted()
    }

    /// How many of the accepted records have committed, in order; closed once the writer
    /// stopped. The runtime's commit gate holds a message's offset until every record
    /// accepted before it has.
    pub fn confirmed(&self) -> watch::Receiver<u64> {
        self.sink.confirmed()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Hands `body` to the producer (in order with every earlier one); `None` when the lease
    /// does not allow it or the producer refused it (logged).
    fn enqueue(&self, body: StateBody) -> Option<oneshot::Receiver<bool>> {
        if !self.side_effects.allowed("state publish") {
            return None;
        }
        let record = StateRecord {
            epoch: self.epoch,
            worker: self.worker.clone(),
            at: chrono::Utc::now(),
            body,
        };
        let key = record.body.key().encode();
        let payload = serde_json::to_vec(&record).ok()?;
        self.sink.write(key, Some(payload))
    }

    /// Publishes without waiting (escalation changes, decisions, the lease heartbeat): the
    /// writer keeps their order; a failure is logged.
    pub fn publish(&self, body: StateBody) {
        if let Some(confirmed) = self.enqueue(body) {
            tokio::spawn(async move {
                if !matches!(confirmed.await, Ok(true)) {
                    tracing::warn!("state not published");
                }
            });
        }
    }

    /// Publishes and waits until the records' transaction committed (or `MARK_TIMEOUT`).
    pub async fn publish_and_wait(&self, bodies: Vec<StateBody>) -> bool {
        self.write_and_wait(bodies.into_iter().map(Write::Record).collect())
            .await
    }

    /// Writes records and tombstones in order and waits until their transactions committed
    /// (or `MARK_TIMEOUT`). False when any was refused or its transaction failed: a claim
    /// that is not in Kafka then.
    async fn write_and_wait(&self, writes: Vec<Write>) -> bool {
        let mut refused = false;
        let confirmations: Vec<_> = writes
            .into_iter()
            .filter_map(|write| {
                let confirmed = match write {
                    Write::Record(body) => self.enqueue(body),
                    Write::Tombstone(key) => self.enqueue_tombstone(&key),
                };
                refused |= confirmed.is_none();
                confirmed
            })
            .collect();
        let all = futures::future::join_all(confirmations);
        match tokio::time::timeout(MARK_TIMEOUT, all).await {
            Ok(results) => !refused && results.iter().all(|r| matches!(r, Ok(true))),
            Err(_) => {
                tracing::warn!("state records not confirmed by the broker in time");
                false
            }
        }
    }
}

/// `<topic>.state` as a sink of the engine's changelog: escalations with their state after
/// each change (a closed one deleted by a tombstone), the notifications decided, operators'
/// silences (set: published; ended: deleted). A notification a silence holds is the
/// journal's alone: a successor holds it again from the silence itself.
pub struct ToStateTopic<'a>(pub &'a StatePublisher);

impl ChangeSink for ToStateTopic<'_> {
    fn record(&mut self, log: &Changelog) {
        let publisher = self.0;
        for change in &log.changes {
            match change {
                Change::Escalation { change, after } => {
                    let id = change.incident_id();
                    publisher.publish(StateBody::escalation(change, after.as_ref()));
                    if change.kind() == EscalationChangeKind::Closed {
                        // Consoles saw it close; a successor has nothing to restore.
                        publisher.forget(StateKey::Escalation(id));
                    }
                }
                Change::Decided(notification) => publisher.publish(StateBody::Decided {
                    notification: Box::new(notification.clone()),
                }),
                // Every console shows it, and a successor holds it again.
                Change::SilenceSet(view) => publisher.publish(StateBody::Silence {
                    silence: Box::new(SilenceState::from_view(view)),
                }),
                // Ended early or run out: consoles drop it, a successor has nothing to restore.
                Change::SilenceEnded { id, .. } => publisher.forget(StateKey::Silence(id.clone())),
                Change::Held { .. } => {}
            }
        }
    }
}

impl StatePublisher {
    /// The highest offset of each partition in a batch just handled (its effects published
    /// before this, in order on the same partition).
    pub fn progress<'a>(
        &self,
        sources: impl IntoIterator<Item = &'a crate::core::engine::SourceRef>,
    ) {
        let mut offsets: Vec<(String, i32, i64)> = Vec::new();
        for source in sources {
            match offsets
                .iter_mut()
                .find(|(t, p, _)| *p == source.partition && **t == *source.topic)
            {
                Some(entry) => entry.2 = entry.2.max(source.offset),
                None => offsets.push((source.topic.to_string(), source.partition, source.offset)),
            }
        }
        // One record per partition: each key is one partition's progress on a compacted topic.
        for entry in offsets {
            self.publish(StateBody::Progress {
                offsets: vec![entry],
            });
        }
    }
}

/// The notifier's recorder in team mode: the worker's own journal first (when it keeps one),
/// then `<topic>.state`, so a delivery is claimed in Kafka before it is sent and marked
/// delivered there before its slot is free.
pub struct TeamRecorder {
    pub journal: Option<Arc<dyn DeliveryRecorder>>,
    pub state: Arc<StatePublisher>,
}

impl DeliveryRecorder for TeamRecorder {
    fn record(&self, changes: Vec<DeliveryChange>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let writes: Vec<Write> = changes.iter().filter_map(write).collect();
            let delivered: Vec<String> = changes
                .iter()
                .filter_map(|change| match change {
                    DeliveryChange::Attempted {
                        key,
                        outcome: AttemptOutcome::Delivered,
                        ..
                    } => Some(key.clone()),
                    _ => None,
                })
                .collect();
            // Both at once: a delivery waits for the slower of the two, not their sum.
            let journal = async {
                if let Some(journal) = &self.journal {
                    journal.record(changes).await;
                }
            };
            let state = async {
                if !writes.is_empty() {
                    self.state.write_and_wait(writes).await;
                }
            };
            futures::join!(journal, state);
            if !delivered.is_empty() {
                let now = chrono::Utc::now();
                let mut window = self.state.claims.lock().unwrap_or_else(|e| e.into_inner());
                for key in &delivered {
                    window.restore(key, now);
                }
            }
        })
    }
}

/// One write to the state topic: a record, or a tombstone that deletes a key.
enum Write {
    Record(StateBody),
    Tombstone(StateKey),
}

/// What a delivery change writes to the state topic. What ends a key's use deletes it: a
/// routed notification is no longer owed, and a delivery given up claims nothing.
fn write(change: &DeliveryChange) -> Option<Write> {
    Some(match change {
        DeliveryChange::Routed { dedup_key, .. } => Write::Tombstone(
            StateBody::Routed {
                dedup_key: dedup_key.clone(),
            }
            .key(),
        ),
        DeliveryChange::Queued(delivery) => Write::Record(StateBody::Queued {
            delivery: delivery.clone(),
        }),
        DeliveryChange::Attempted { key, outcome, .. } => match outcome {
            AttemptOutcome::Retrying { .. } => return None,
            AttemptOutcome::Delivered => Write::Record(StateBody::Finished {
                key: key.clone(),
                outcome: Finish::Delivered,
            }),
            AttemptOutcome::Failed { .. } => Write::Tombstone(StateKey::Delivery(key.clone())),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn what_ends_a_key_deletes_it() {
        let routed = DeliveryChange::Routed {
            dedup_key: "7/escalation/L1/0".into(),
            at: at(0),
        };
        assert!(
            matches!(write(&routed), Some(Write::Tombstone(key)) if key == StateKey::Notification("7/escalation/L1/0".into()))
        );
        let gave_up = DeliveryChange::Attempted {
            key: "k|webhook|webhook".into(),
            at: at(0),
            outcome: AttemptOutcome::Failed {
                error: "http_400".into(),
            },
        };
        assert!(
            matches!(write(&gave_up), Some(Write::Tombstone(key)) if key == StateKey::Delivery("k|webhook|webhook".into()))
        );
        let delivered = DeliveryChange::Attempted {
            key: "k|webhook|webhook".into(),
            at: at(0),
            outcome: AttemptOutcome::Delivered,
        };
        assert!(matches!(
            write(&delivered),
            Some(Write::Record(StateBody::Finished { outcome, .. })) if outcome == Finish::Delivered
        ));
    }
}
