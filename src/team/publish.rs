//! The active worker's writer of `<topic>.state` (see `state`): escalation changes and
//! decisions as the runtime makes them, delivery marks as the notifier records them. Every
//! write is gated by the lease and carries this worker's leader epoch.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::state::{StateBody, StateRecord};
use crate::core::engine::Effect;
use crate::core::escalation::EscalationBook;
use crate::notify::{AttemptOutcome, DeliveryChange, DeliveryRecorder};

/// How long a delivery mark may wait for the broker before the send goes ahead anyway (the
/// journal has it; only a successor would not).
const MARK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct StatePublisher {
    producer: FutureProducer,
    topic: String,
    worker: String,
    epoch: u64,
}

impl StatePublisher {
    pub fn new(producer: FutureProducer, topic: String, worker: String, epoch: u64) -> Self {
        Self {
            producer,
            topic,
            worker,
            epoch,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Hands `body` to the producer (in order with every earlier one); `None` when the lease
    /// does not allow it or the producer refused it (logged).
    fn enqueue(&self, body: StateBody) -> Option<rdkafka::producer::DeliveryFuture> {
        if !super::leader::side_effects_allowed("state publish") {
            return None;
        }
        let record = StateRecord {
            epoch: self.epoch,
            worker: self.worker.clone(),
            at: chrono::Utc::now(),
            body,
        };
        let key = record.body.key();
        let payload = serde_json::to_vec(&record).ok()?;
        match self
            .producer
            .send_result(FutureRecord::to(&self.topic).key(&key).payload(&payload))
        {
            Ok(delivery) => Some(delivery),
            Err((error, _)) => {
                tracing::warn!(%error, key, "state not published");
                None
            }
        }
    }

    /// Publishes without waiting (escalation changes, decisions, the lease heartbeat): the
    /// producer keeps their order; a failure is logged.
    pub fn publish(&self, body: StateBody) {
        if let Some(delivery) = self.enqueue(body) {
            tokio::spawn(async move {
                if let Ok(Err((error, _))) = delivery.await {
                    tracing::warn!(%error, "state not published");
                }
            });
        }
    }

    /// Publishes and waits until the broker has every record (or `MARK_TIMEOUT`).
    pub async fn publish_and_wait(&self, bodies: Vec<StateBody>) -> bool {
        let deliveries: Vec<_> = bodies.into_iter().filter_map(|b| self.enqueue(b)).collect();
        let all = futures::future::join_all(deliveries);
        match tokio::time::timeout(MARK_TIMEOUT, all).await {
            Ok(results) => results.iter().all(|r| matches!(r, Ok(Ok(_)))),
            Err(_) => {
                tracing::warn!("state records not confirmed by the broker in time");
                false
            }
        }
    }

    /// What the runtime's engine produced: escalation changes with the escalation after them
    /// (from `book`, after `Engine::apply`), and the notifications it decided on.
    pub fn effect(&self, effect: &Effect, book: &EscalationBook, notifies: bool) {
        match effect {
            Effect::Escalation(change) => {
                let id = crate::journal::change_incident(change);
                self.publish(StateBody::escalation(change, book.get(id)));
            }
            Effect::Notify(notification) if notifies => self.publish(StateBody::Decided {
                notification: Box::new(notification.clone()),
            }),
            _ => {}
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
                .find(|(t, p, _)| *p == source.partition && *t == source.topic)
            {
                Some(entry) => entry.2 = entry.2.max(source.offset),
                None => offsets.push((source.topic.clone(), source.partition, source.offset)),
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
            let bodies: Vec<StateBody> = changes.iter().filter_map(body).collect();
            // Both at once: a delivery waits for the slower of the two, not their sum.
            let journal = async {
                if let Some(journal) = &self.journal {
                    journal.record(changes).await;
                }
            };
            let state = async {
                if !bodies.is_empty() {
                    self.state.publish_and_wait(bodies).await;
                }
            };
            futures::join!(journal, state);
        })
    }
}

fn body(change: &DeliveryChange) -> Option<StateBody> {
    Some(match change {
        DeliveryChange::Routed { dedup_key, .. } => StateBody::Routed {
            dedup_key: dedup_key.clone(),
        },
        DeliveryChange::Queued(delivery) => StateBody::Queued {
            delivery: delivery.clone(),
        },
        DeliveryChange::Attempted { key, outcome, .. } => match outcome {
            AttemptOutcome::Retrying { .. } => return None,
            AttemptOutcome::Delivered => StateBody::Finished {
                key: key.clone(),
                outcome: "delivered".into(),
            },
            AttemptOutcome::Failed { .. } => StateBody::Finished {
                key: key.clone(),
                outcome: "gave_up".into(),
            },
        },
    })
}
