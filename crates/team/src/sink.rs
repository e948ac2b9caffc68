//! The active worker's one writer of `<topic>.state`: a transactional producer. Opening it
//! calls `init_transactions` with the team's `transactional.id`, which makes the broker fence
//! every earlier producer with that id: a predecessor that was paused and wakes can commit
//! nothing more (`PRODUCER_FENCED`), whatever its own clock says, and its open transaction is
//! aborted, so what a successor reads next is final.
//!
//! Records are written in transactions of what has queued up meanwhile. A record is
//! confirmed once its transaction has committed: a claim awaited before a send is in Kafka for
//! a successor to see, and the runtime stores a message's offset only once every state record
//! written before it is confirmed (`confirmed`), so progress never runs ahead of the state.
//!
//! The transactional calls block, so the producer lives on a thread of its own and takes its
//! writes through a bounded queue, in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use tokio::sync::{mpsc, oneshot, watch};

use super::leader::Lease;

/// How many writes may wait for the writer thread. Beyond that a write is refused and logged,
/// as librdkafka's own queue refuses a record when it is full.
pub const QUEUE: usize = 100_000;
/// At most this many records in one transaction, so one commit never waits on a huge batch.
const MAX_PER_TRANSACTION: usize = 5_000;
/// How long opening (which waits for the broker to abort a predecessor's open transaction)
/// and each commit may take.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two tries of an aborted transaction.
const RETRY_AT_MOST: Duration = Duration::from_secs(2);

/// One record for the state topic; no payload is a tombstone.
struct Write {
    /// Its place among this writer's accepted writes, from 1.
    seq: u64,
    key: String,
    payload: Option<Vec<u8>>,
    confirmed: oneshot::Sender<bool>,
}

/// The cluster refused this worker the team's transactional id (ACLs): only an operator can
/// change that, so the worker stops and says what to grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterRefused {
    pub transactional_id: String,
    pub detail: String,
}

impl std::fmt::Display for WriterRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the cluster refused this worker the transactional id {} of the team's state \
             writer ({})",
            self.transactional_id, self.detail
        )
    }
}

impl std::error::Error for WriterRefused {}

/// Why the sink cannot write any more: the broker fenced it, or its producer failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced(pub String);

pub struct StateSink {
    /// The queue to the writer thread, and how many writes it accepted: one lock, so a
    /// write's place in the queue is its number.
    queue: Mutex<(mpsc::Sender<Write>, u64)>,
    /// The number of the last write whose transaction committed. Its sender goes away when
    /// the writer stops (fenced, or failed for good): nothing after that is ever confirmed.
    confirmed: watch::Receiver<u64>,
    /// Why, once the writer was fenced.
    fenced: Arc<Mutex<Option<Fenced>>>,
}

/// The `transactional.id` of a team's state writer: one per team (its group), the same for
/// every worker, so a new active worker fences the last.
pub fn transactional_id(group: &str) -> String {
    format!("{group}.state-writer")
}

impl StateSink {
    /// Opens the producer and fences every earlier one with `transactional_id`. Blocks (up to
    /// `TRANSACTION_TIMEOUT`): call it from a blocking context. When the broker fences this
    /// writer later, `lease` is closed before anyone learns that a write failed.
    pub fn open(
        mut client: ClientConfig,
        topic: String,
        transactional_id: &str,
        lease: Option<Lease>,
    ) -> anyhow::Result<Self> {
        client
            .set("transactional.id", transactional_id)
            // An open transaction holds back every read_committed reader (consoles, a
            // restoring successor) until it ends: a writer killed mid-transaction must not
            // block them for the default minute if no successor aborts it sooner.
            .set("transaction.timeout.ms", "15000")
            // State records are JSON, mostly alike: compressed batches keep the topic small
            // (the embedded broker keeps only about 5 MiB per partition).
            .set("compression.type", "lz4")
            // A delivery waits for its claim: sent within 2 ms rather than the default 5.
            .set("linger.ms", "2");
        let producer: ThreadedProducer<DefaultProducerContext> = client.create()?;
        if let Err(error) = producer.init_transactions(TRANSACTION_TIMEOUT) {
            if matches!(
                error.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                        | RDKafkaErrorCode::ClusterAuthorizationFailed
                )
            ) {
                return Err(WriterRefused {
                    transactional_id: transactional_id.to_string(),
                    detail: error.to_string(),
                }
                .into());
            }
            anyhow::bail!("cannot open the state writer on {topic}: {error}");
        }
        if let Some(lease) = &lease {
            lease.writer_opened();
        }
        let (queue, writes) = mpsc::channel(QUEUE);
        let (confirm, confirmed) = watch::channel(0);
        let fenced = Arc::new(Mutex::new(None));
        let writer = Writer {
            producer,
            topic,
            lease,
            confirm,
            fenced: fenced.clone(),
        };
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || writer.run(writes))?;
        Ok(Self {
            queue: Mutex::new((queue, 0)),
            confirmed,
            fenced,
        })
    }

    /// Queues a record (or, without payload, a tombstone); the receiver says whether its
    /// transaction committed. `None`: refused at once (the queue is full, or the writer
    /// stopped), and logged with its key.
    pub fn write(&self, key: String, payload: Option<Vec<u8>>) -> Option<oneshot::Receiver<bool>> {
        let (confirmed, receiver) = oneshot::channel();
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let seq = queue.1 + 1;
        let sent = queue.0.try_send(Write {
            seq,
            key,
            payload,
            confirmed,
        });
        if let Err(refused) = sent {
            let write = refused.into_inner();
            tracing::warn!(
                key = write.key,
                tombstone = write.payload.is_none(),
                "state record not written: the writer refused it (its queue is full, or it stopped)"
            );
            return None;
        }
        queue.1 = seq;
        Some(receiver)
    }

    /// How many writes this sink has accepted so far: once `confirmed` reaches it, every one
    /// of them is committed.
    pub fn accepted(&self) -> u64 {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// The number of the last write whose transaction committed; closed once the writer
    /// stopped.
    pub fn confirmed(&self) -> watch::Receiver<u64> {
        self.confirmed.clone()
    }

    /// Set once the broker fenced this writer (another worker opened one since) or it failed
    /// for good: nothing it writes commits any more.
    pub fn fenced(&self) -> Option<Fenced> {
        self.fenced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

struct Writer {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
    lease: Option<Lease>,
    confirm: watch::Sender<u64>,
    fenced: Arc<Mutex<Option<Fenced>>>,
}

impl Writer {
    fn run(self, mut writes: mpsc::Receiver<Write>) {
        let mut batch = Vec::new();
        while let Some(first) = writes.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_PER_TRANSACTION {
                match writes.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) => break,
                }
            }
            let committed = self.commit_until_final(&batch, &writes);
            if let Some(last) = batch.last().filter(|_| committed) {
                self.confirm.send_replace(last.seq);
            }
            for write in batch.drain(..) {
                let _ = write.confirmed.send(committed);
            }
            if !committed {
                break;
            }
        }
        // Fenced, failed for good or closed: whatever still waits is refused (its sender sees
        // `false`), and dropping `confirm` tells the runtime nothing more will be confirmed.
        writes.close();
        while let Ok(write) = writes.try_recv() {
            let _ = write.confirmed.send(false);
        }
    }

    /// Commits `batch` in a transaction, trying again after an abort (nothing of an aborted
    /// transaction is visible, so a retry writes each record once). False once the writer is
    /// fenced or failed for good, or nobody writes to it any more.
    fn commit_until_final(&self, batch: &[Write], writes: &mpsc::Receiver<Write>) -> bool {
        let mut wait = Duration::from_millis(100);
        loop {
            match commit(&self.producer, &self.topic, batch) {
                Ok(()) => return true,
                Err(Failure::Fatal(why)) => {
                    tracing::error!(topic = %self.topic, "state writer fenced: {why}");
                    // Before anyone learns of this batch: the gate must be closed when a
                    // claim's waiter is told it failed, so its send never goes ahead.
                    if let Some(lease) = &self.lease {
                        lease.fence_by_broker(&why);
                    }
                    *self.fenced.lock().unwrap_or_else(|e| e.into_inner()) = Some(Fenced(why));
                    return false;
                }
                Err(Failure::Aborted(why)) => {
                    if writes.is_closed() {
                        // The worker stepped down: its successor writes from what committed.
                        return false;
                    }
                    tracing::warn!(
                        topic = %self.topic,
                        records = batch.len(),
                        retry_in_ms = wait.as_millis() as u64,
                        "state transaction aborted ({why}); trying it again"
                    );
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(RETRY_AT_MOST);
                }
            }
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
            // Whatever it says, the transaction is ended before the next one begins.
            Err(error) => return Err(abort(producer, classify(&error))),
        }
    }
}

/// Aborts the open transaction after `failure`; a failed abort makes it fatal.
fn abort(producer: &ThreadedProducer<DefaultProducerContext>, failure: Failure) -> Failure {
    if let Failure::Fatal(_) = failure {
        return failure;
    }
    match producer.abort_transaction(TRANSACTION_TIMEOUT) {
        Ok(()) => failure,
        Err(error) => Failure::Fatal(format!("cannot abort a state transaction: {error}")),
    }
}
