//! The active worker's one writer of `<topic>.state`: a transactional producer. Opening it
//! calls `init_transactions` with the team's `transactional.id`, which makes the broker fence
//! every earlier producer with that id: a predecessor that was paused and wakes can commit
//! nothing more (`PRODUCER_FENCED`), whatever its own clock says. Records are written in
//! transactions of what has queued up meanwhile; a record is confirmed once its transaction
//! has committed, so a claim awaited before a send is in Kafka for a successor to see.
//!
//! The transactional calls block, so the producer lives on a thread of its own and takes its
//! writes through a bounded queue, in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use tokio::sync::{mpsc, oneshot};

/// How many writes may wait for the writer thread. Beyond that a write is refused and logged,
/// as librdkafka's own queue refuses a record when it is full.
const QUEUE: usize = 100_000;
/// At most this many records in one transaction, so one commit never waits on a huge batch.
const MAX_PER_TRANSACTION: usize = 5_000;
/// How long opening (which waits for the broker to abort a predecessor's open transaction)
/// and each commit may take.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// One record for the state topic; no payload is a tombstone.
struct Write {
    key: String,
    payload: Option<Vec<u8>>,
    confirmed: Option<oneshot::Sender<bool>>,
}

/// Why the sink cannot write any more: the broker fenced it, or its producer failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced(pub String);

pub struct StateSink {
    queue: mpsc::Sender<Write>,
    fenced: Arc<AtomicBool>,
    /// Why, once `fenced` is set.
    reason: Arc<std::sync::Mutex<Option<Fenced>>>,
}

/// The `transactional.id` of a team's state writer: one per team (its group), the same for
/// every worker, so a new active worker fences the last.
pub fn transactional_id(group: &str) -> String {
    format!("{group}.state-writer")
}

impl StateSink {
    /// Opens the producer and fences every earlier one with `transactional_id`. Blocks (up to
    /// `TRANSACTION_TIMEOUT`): call it from a blocking context.
    pub fn open(
        mut client: ClientConfig,
        topic: String,
        transactional_id: &str,
    ) -> anyhow::Result<Self> {
        client
            .set("transactional.id", transactional_id)
            // An open transaction holds back every read_committed reader (consoles, a
            // restoring successor) until it ends: a writer killed mid-transaction must not
            // block them for the default minute if no successor aborts it sooner.
            .set("transaction.timeout.ms", "15000")
            // State records are JSON, mostly alike: compressed batches keep the topic small.
            .set("compression.type", "lz4")
            .set("linger.ms", "2");
        let producer: ThreadedProducer<DefaultProducerContext> = client.create()?;
        producer
            .init_transactions(TRANSACTION_TIMEOUT)
            .map_err(|error| anyhow::anyhow!("cannot open the state writer on {topic}: {error}"))?;
        let (queue, writes) = mpsc::channel(QUEUE);
        let fenced = Arc::new(AtomicBool::new(false));
        let reason = Arc::new(std::sync::Mutex::new(None));
        let thread_fenced = fenced.clone();
        let thread_reason = reason.clone();
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || write_loop(producer, topic, writes, thread_fenced, thread_reason))?;
        Ok(Self {
            queue,
            fenced,
            reason,
        })
    }

    /// Queues a record (or, without payload, a tombstone); the receiver says whether its
    /// transaction committed. `None`: refused at once (the queue is full, or the sink fenced).
    pub fn write(&self, key: String, payload: Option<Vec<u8>>) -> Option<oneshot::Receiver<bool>> {
        if self.fenced.load(Ordering::Relaxed) {
            return None;
        }
        let (confirmed, receiver) = oneshot::channel();
        self.queue
            .try_send(Write {
                key,
                payload,
                confirmed: Some(confirmed),
            })
            .ok()
            .map(|()| receiver)
    }

    /// Set once the broker fenced this writer (another worker opened one since) or it failed
    /// for good: nothing it writes commits any more.
    pub fn fenced(&self) -> Option<Fenced> {
        if !self.fenced.load(Ordering::Relaxed) {
            return None;
        }
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn write_loop(
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    mut writes: mpsc::Receiver<Write>,
    fenced: Arc<AtomicBool>,
    reason: Arc<std::sync::Mutex<Option<Fenced>>>,
) {
    let mut batch = Vec::new();
    while let Some(first) = writes.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_PER_TRANSACTION {
            match writes.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let result = commit(&producer, &topic, &batch);
        if let Err(Failure::Fatal(why)) = &result {
            tracing::error!(%topic, "state writer fenced: {why}");
            *reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(Fenced(why.clone()));
            fenced.store(true, Ordering::Relaxed);
            // Before anyone learns of this batch: the gate must be closed when a claim's
            // waiter is told it failed, so its send never goes ahead.
            super::leader::fence_by_broker(why);
        }
        let committed = result.is_ok();
        for write in batch.drain(..) {
            if let Some(confirmed) = write.confirmed {
                let _ = confirmed.send(committed);
            }
        }
        if fenced.load(Ordering::Relaxed) {
            break;
        }
    }
    // Fenced or closed: whatever still waits is refused (its sender sees `false`).
    writes.close();
    while let Ok(write) = writes.try_recv() {
        if let Some(confirmed) = write.confirmed {
            let _ = confirmed.send(false);
        }
    }
}

enum Failure {
    /// This transaction was aborted; the next may succeed.
    Aborted(String),
    /// The producer can write nothing more (fenced by the broker, or failed for good).
    Fatal(String),
}

fn classify(error: &KafkaError) -> Failure {
    let fatal = match error {
        KafkaError::Transaction(rd) => rd.is_fatal(),
        _ => false,
    } || matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
    );
    if fatal {
        Failure::Fatal(error.to_string())
    } else {
        Failure::Aborted(error.to_string())
    }
}

fn commit(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    batch: &[Write],
) -> Result<(), Failure> {
    producer.begin_transaction().map_err(|e| classify(&e))?;
    for write in batch {
        let mut record = BaseRecord::<str, [u8]>::to(topic).key(&write.key);
        if let Some(payload) = &write.payload {
            record = record.payload(payload);
        }
        let mut record = Some(record);
        while let Some(next) = record.take() {
            match producer.send(next) {
                Ok(()) => {}
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // librdkafka's queue is full: let it drain, then try again.
                    let _ = producer.flush(Duration::from_millis(100));
                    record = Some(back);
                }
                Err((error, _)) => return Err(abort(producer, classify(&error))),
            }
        }
    }
    let mut tries = 0;
    loop {
        match producer.commit_transaction(TRANSACTION_TIMEOUT) {
            Ok(()) => return Ok(()),
            Err(KafkaError::Transaction(rd)) if rd.is_retriable() && tries < 3 => {
                tries += 1;
                tracing::warn!(error = %rd, "state transaction commit retried");
            }
            Err(error) => {
                let failure = classify(&error);
                let requires_abort =
                    matches!(&error, KafkaError::Transaction(rd) if rd.txn_requires_abort());
                return Err(if requires_abort {
                    abort(producer, failure)
                } else {
                    failure
                });
            }
        }
    }
}

/// Aborts the open transaction after `failure`; a failed abort makes it fatal.
fn abort(producer: &ThreadedProducer<DefaultProducerContext>, failure: Failure) -> Failure {
    if let Failure::Fatal(_) = failure {
        return failure;
    }
    match producer.abort_transaction(TRANSACTION_TIMEOUT) {
        Ok(()) => {
            if let Failure::Aborted(why) = &failure {
                tracing::warn!("state transaction aborted: {why}");
            }
            failure
        }
        Err(error) => Failure::Fatal(format!("cannot abort a state transaction: {error}")),
    }
}
