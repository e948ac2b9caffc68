//! The asynchronous front: the journal's connection lives on a thread of its own, fed by a
//! bounded queue. The thread takes whatever is queued (up to `max_batch_records`, waiting at
//! most `max_batch_delay_ms` for more) and commits it in one transaction, then reports each
//! submission's result with the token the caller gave it. Under load, transactions grow and
//! their number stays small; at rest, each submission commits on its own, promptly.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::record::JournalRecord;
use super::store::Journal;
use super::{JournalConfig, JournalError};
use incident_core::metrics::{DURATION_BUCKETS, DurationSummary};

/// How often retention runs, and how soon again while it still has rows to delete.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_AGAIN: Duration = Duration::from_secs(1);
/// A failure repeated with the same text is logged at most this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The result of one submission, delivered once its transaction committed (or failed).
#[derive(Debug, Clone, PartialEq)]
pub struct Completion<T> {
    pub token: T,
    pub result: Result<(), JournalError>,
}

/// Counters for a status line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JournalStats {
    pub committed_records: u64,
    pub transactions: u64,
    pub failed_submissions: u64,
    /// Submissions waiting for the writer.
    pub queued: usize,
    pub last_error: Option<String>,
    /// How long each transaction took to write and commit (count, sum and histogram buckets
    /// only: no percentiles are kept).
    #[serde(skip)]
    pub write_seconds: DurationSummary,
}

#[derive(Default)]
struct SharedStats {
    committed_records: AtomicU64,
    transactions: AtomicU64,
    failed_submissions: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Fixed buckets: constant memory however long the writer runs.
    write_seconds: Mutex<DurationSummary>,
}

impl SharedStats {
    fn record_write(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut summary = self
            .write_seconds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        summary.count += 1;
        summary.sum_secs += seconds;
        if let Some(bucket) = DURATION_BUCKETS.iter().position(|bound| seconds <= *bound) {
            summary.buckets[bucket] += 1;
        }
    }
}

struct Submission<T> {
    reply: Reply<T>,
    records: Vec<JournalRecord>,
    /// Its records' room in the queue, given back once the writer is done with them.
    _room: OwnedSemaphorePermit,
}

impl<T> Submission<T> {
    /// Done with: its room in the queue is given back before anyone hears of it, so a
    /// caller told that it committed finds the room free.
    fn into_reply(self) -> Reply<T> {
        self.reply
    }
}

/// Who hears that a submission committed (or failed).
enum Reply<T> {
    /// Fire and forget; a failure is only logged.
    None,
    /// A `Completion` with the token, on the completion channel.
    Token(T),
    /// The one waiting in `record_committed`.
    Committed(oneshot::Sender<Result<(), JournalError>>),
}

enum Request<T> {
    Write(Submission<T>),
    /// Finish everything queued before this, checkpoint, close, then answer.
    Stop(oneshot::Sender<Result<(), JournalError>>),
}

/// A handle for submitting records. Clones share the writer and its completion channel.
pub struct JournalWriter<T> {
    requests: mpsc::Sender<Request<T>>,
    /// One permit per record queued or being written (`JournalConfig::queue_records`).
    room: Arc<Semaphore>,
    room_records: usize,
    stats: Arc<SharedStats>,
    path: PathBuf,
}

impl<T> Clone for JournalWriter<T> {
    fn clone(&self) -> Self {
        Self {
            requests: self.requests.clone(),
            room: self.room.clone(),
            room_records: self.room_records,
            stats: self.stats.clone(),
            path: self.path.clone(),
        }
    }
}

impl<T: Send + 'static> JournalWriter<T> {
    /// Moves `journal` onto a writer thread. Completions come back on the returned channel,
    /// one per `submit`, in submission order.
    ///
    /// The completion channel has no bound of its own: each completion answers one
    /// submission, and submissions are bounded by the queue, so it holds at most what its
    /// owner submitted and has not yet read. Bounding it separately would let a caller
    /// blocked in `submit` (queue full) deadlock against a writer blocked on a full
    /// completion channel that only that caller drains.
    pub fn start(
        journal: Journal,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Completion<T>>), JournalError> {
        let config = journal.config().clone();
        let room_records = config.queue_records.clamp(1, u32::MAX as usize);
        let path = journal.path().to_path_buf();
        let (requests, request_rx) = mpsc::channel(config.queue_capacity.max(1));
        let (completions, completion_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(SharedStats::default());
        let thread = WriterThread {
            journal,
            config,
            requests: request_rx,
            completions,
            stats: stats.clone(),
            last_logged: None,
        };
        std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || thread.run())
            .map_err(|error| JournalError::Storage {
                path: path.clone(),
                detail: format!("cannot start the writer thread: {error}"),
            })?;
        Ok((
            Self {
                requests,
                room: Arc::new(Semaphore::new(room_records)),
                room_records,
                stats,
                path,
            },
            completion_rx,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `records` to be written in one transaction (possibly with others); waits while
    /// the queue is full. Its `Completion` carries `token`.
    pub async fn submit(&self, token: T, records: Vec<JournalRecord>) -> Result<(), JournalError> {
        let room = self.room_for(&records).await?;
        self.requests
            .send(Request::Write(Submission {
                reply: Reply::Token(token),
                records,
                _room: room,
            }))
            .await
            .map_err(|_| JournalError::Closed)
    }

    /// Queues `records` and waits until they are committed (durable on disk), for a caller
    /// that must not act before: the notifier records a delivery as queued before sending it,
    /// and as delivered before its slot is free again, so a crash repeats at most the sends in
    /// flight.
    pub async fn record_committed(&self, records: Vec<JournalRecord>) -> Result<(), JournalError> {
        let (reply, committed) = oneshot::channel();
        let room = self.room_for(&records).await?;
        self.requests
            .send(Request::Write(Submission {
                reply: Reply::Committed(reply),
                records,
                _room: room,
            }))
            .await
            .map_err(|_| JournalError::Closed)?;
        committed.await.map_err(|_| JournalError::Closed)?
    }

    /// `submit` from a thread that is not running async code.
    pub fn blocking_submit(
        &self,
        token: T,
        records: Vec<JournalRecord>,
    ) -> Result<(), JournalError> {
        let room = futures::executor::block_on(self.room_for(&records))?;
        self.requests
            .blocking_send(Request::Write(Submission {
                reply: Reply::Token(token),
                records,
                _room: room,
            }))
            .map_err(|_| JournalError::Closed)
    }

    /// Queues records whose outcome nobody waits for (a delivery attempt, say). No
    /// completion is sent; a failure is logged.
    pub async fn record(&self, records: Vec<JournalRecord>) -> Result<(), JournalError> {
        let room = self.room_for(&records).await?;
        self.requests
            .send(Request::Write(Submission {
                reply: Reply::None,
                records,
                _room: room,
            }))
            .await
            .map_err(|_| JournalError::Closed)
    }

    /// Queues records for the history only, from code that cannot wait: when the queue is
    /// full they are dropped (and counted as a failed submission) rather than waited for.
    pub fn try_record(&self, records: Vec<JournalRecord>) -> bool {
        let sent = self
            .room
            .clone()
            .try_acquire_many_owned(self.permits(&records))
            .ok()
            .is_some_and(|room| {
                self.requests
                    .try_send(Request::Write(Submission {
                        reply: Reply::None,
                        records,
                        _room: room,
                    }))
                    .is_ok()
            });
        if !sent {
            self.stats
                .failed_submissions
                .fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Waits for room for `records` in the queue (a submission bigger than the whole room
    /// takes all of it).
    async fn room_for(
        &self,
        records: &[JournalRecord],
    ) -> Result<OwnedSemaphorePermit, JournalError> {
        self.room
            .clone()
            .acquire_many_owned(self.permits(records))
            .await
            .map_err(|_| JournalError::Closed)
    }

    fn permits(&self, records: &[JournalRecord]) -> u32 {
        let permits = records.len().clamp(1, self.room_records);
        u32::try_from(permits).unwrap_or(u32::MAX)
    }

    /// Records queued or being written now.
    pub fn queued_records(&self) -> usize {
        self.room_records - self.room.available_permits()
    }

    /// Writes everything submitted before this call, checkpoints, and closes the journal
    /// (releasing its lock). Submissions made after it fail with `Closed`.
    pub async fn shutdown(self) -> Result<(), JournalError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Stop(reply))
            .await
            .map_err(|_| JournalError::Closed)?;
        answer.await.map_err(|_| JournalError::Closed)?
    }

    pub fn stats(&self) -> JournalStats {
        JournalStats {
            committed_records: self.stats.committed_records.load(Ordering::Relaxed),
            transactions: self.stats.transactions.load(Ordering::Relaxed),
            failed_submissions: self.stats.failed_submissions.load(Ordering::Relaxed),
            queued: self.requests.max_capacity() - self.requests.capacity(),
            last_error: self
                .stats
                .last_error
                .lock()
                .map(|error| error.clone())
                .unwrap_or_default(),
            write_seconds: self
                .stats
                .write_seconds
                .lock()
                .map(|summary| summary.clone())
                .unwrap_or_default(),
        }
    }
}

struct WriterThread<T> {
    journal: Journal,
    config: JournalConfig,
    requests: mpsc::Receiver<Request<T>>,
    completions: mpsc::UnboundedSender<Completion<T>>,
    stats: Arc<SharedStats>,
    last_logged: Option<(String, Instant)>,
}

impl<T: Send + 'static> WriterThread<T> {
    fn run(mut self) {
        // A small runtime of its own, only to wait on the queue with a deadline.
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "journal writer cannot start; nothing will be journaled");
                return;
            }
        };
        // Timers are made outside `block_on`, so the runtime is entered for the whole run.
        let _context = runtime.enter();
        let max_records = self.config.max_batch_records.max(1);
        let delay = self.config.batch_delay();
        let mut next_prune = Instant::now();
        let mut stop = None;
        while stop.is_none() {
            let wait = next_prune.saturating_duration_since(Instant::now());
            let first = runtime.block_on(tokio::time::timeout(wait, self.requests.recv()));
            let first = match first {
                Err(_idle) => {
                    next_prune = self.prune();
                    continue;
                }
                Ok(None) => break,
                Ok(Some(Request::Stop(reply))) => {
                    stop = Some(reply);
                    break;
                }
                Ok(Some(Request::Write(submission))) => submission,
            };
            let mut count = first.records.len();
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + delay;
            while count < max_records {
                let next = match self.requests.try_recv() {
                    Ok(request) => Some(request),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) if delay.is_zero() => None,
                    Err(mpsc::error::TryRecvError::Empty) => runtime
                        .block_on(tokio::time::timeout_at(deadline, self.requests.recv()))
                        .ok()
                        .flatten(),
                };
                match next {
                    Some(Request::Write(submission)) => {
                        count += submission.records.len();
                        batch.push(submission);
                    }
                    Some(Request::Stop(reply)) => {
                        stop = Some(reply);
                        break;
                    }
                    None => break,
                }
            }
            self.commit(batch);
            if Instant::now() >= next_prune {
                next_prune = self.prune();
            }
        }
        // Stopping (or every handle dropped): refuse new submissions, and tell the ones that
        // came after the stop that they were not written.
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            match request {
                Request::Write(submission) => {
                    self.complete(submission.into_reply(), Err(JournalError::Closed))
                }
                Request::Stop(reply) => {
                    let _ = reply.send(Err(JournalError::Closed));
                }
            }
        }
        let result = self.journal.checkpoint();
        if let Err(error) = &result {
            tracing::warn!(%error, "journal checkpoint at shutdown failed");
        }
        // Closing the connection releases the lock before anyone hears that we stopped, so
        // the same file can be opened again at once.
        let Self { journal, .. } = self;
        drop(journal);
        if let Some(reply) = stop {
            let _ = reply.send(result);
        }
    }

    /// Commits `batch` in one transaction. If that fails, each submission is tried on its
    /// own, so one bad submission cannot fail the others queued with it.
    fn commit(&mut self, batch: Vec<Submission<T>>) {
        let started = Instant::now();
        let result = self
            .journal
            .write_groups(batch.iter().map(|submission| submission.records.as_slice()));
        match result {
            Ok(()) => {
                self.stats.record_write(started.elapsed());
                self.count_committed(&batch);
                for submission in batch {
                    self.complete(submission.into_reply(), Ok(()));
                }
            }
            Err(error) if batch.len() == 1 => {
                let submission = batch.into_iter().next().expect("one submission");
                self.fail(submission.into_reply(), error);
            }
            Err(_) => {
                for submission in batch {
                    let started = Instant::now();
                    match self.journal.write(&submission.records) {
                        Ok(()) => {
                            self.stats.record_write(started.elapsed());
                            self.count_committed(std::slice::from_ref(&submission));
                            self.complete(submission.into_reply(), Ok(()));
                        }
                        Err(error) => self.fail(submission.into_reply(), error),
                    }
                }
            }
        }
    }

    fn count_committed(&self, batch: &[Submission<T>]) {
        let records: usize = batch.iter().map(|s| s.records.len()).sum();
        self.stats
            .committed_records
            .fetch_add(records as u64, Ordering::Relaxed);
        self.stats.transactions.fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&mut self, reply: Reply<T>, error: JournalError) {
        self.stats
            .failed_submissions
            .fetch_add(1, Ordering::Relaxed);
        let text = error.to_string();
        if let Ok(mut last) = self.stats.last_error.lock() {
            *last = Some(text.clone());
        }
        let repeated = self
            .last_logged
            .as_ref()
            .is_some_and(|(last, at)| *last == text && at.elapsed() < ERROR_LOG_INTERVAL);
        if !repeated {
            tracing::error!("journal write failed: {text}");
            self.last_logged = Some((text, Instant::now()));
        }
        self.complete(reply, Err(error));
    }

    fn complete(&self, reply: Reply<T>, result: Result<(), JournalError>) {
        // A receiver gone means nobody is waiting any more; nothing to do.
        match reply {
            Reply::None => {}
            Reply::Token(token) => {
                let _ = self.completions.send(Completion { token, result });
            }
            Reply::Committed(reply) => {
                let _ = reply.send(result);
            }
        }
    }

    /// One bounded round of retention; returns when the next round is due.
    fn prune(&mut self) -> Instant {
        match self.journal.prune(chrono::Utc::now()) {
            Ok(report) => {
                if report.total() > 0 {
                    tracing::info!(?report, "journal retention: old records deleted");
                }
                Instant::now()
                    + if report.more {
                        PRUNE_AGAIN
                    } else {
                        PRUNE_EVERY
                    }
            }
            Err(error) => {
                tracing::warn!(%error, "journal retention failed; will try again");
                Instant::now() + PRUNE_EVERY
            }
        }
    }
}
