//! Refilling the outbox from the durable record of decisions. `submit` never waits, so a burst
//! of decisions larger than the outbox is refused in part; each refused notification is
//! already in the journal as decided and never routed (the runtime hands the notifier a
//! decision only once the journal has committed it). After an overflow the refill task waits
//! for room in the outbox (woken by the overflow and by the room, not polling), reads those
//! rows back oldest first and queues them, until none is left. Deduplication makes a repeat
//! harmless: a row read back while its notification still waits in the outbox is dropped by
//! its claim when routed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc};

use incident_core::engine::Notification;

use crate::worker::Shared;

/// Where the notifier reads back the decisions its full outbox refused: the journal.
pub trait DecidedSource: Send + Sync {
    /// At most `limit` notifications decided in `[not_before, before)` and never routed,
    /// oldest first. Called on a blocking thread.
    fn decided(
        &self,
        not_before: DateTime<Utc>,
        before: DateTime<Utc>,
        limit: usize,
    ) -> anyhow::Result<Vec<Notification>>;
}

/// How the notifier refills its outbox after an overflow.
#[derive(Clone)]
pub struct Refill {
    pub source: Arc<dyn DecidedSource>,
    /// Older decisions are never sent (`dedup.resume_horizon_secs`).
    pub horizon: Duration,
}

/// Decisions younger than this may still be on their way to the outbox or in it: the refill
/// reads only older ones, and reads again once the youngest refused one is that old.
pub(crate) const MIN_AGE: Duration = Duration::from_secs(5);

/// The refill task. It holds the outbox weakly, so the dispatcher still ends when the
/// notifier drops its sender at shutdown.
pub(crate) async fn run(
    refill: Refill,
    outbox: mpsc::WeakSender<Notification>,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
) {
    loop {
        wake.notified().await;
        // From the first overflow until a read finds nothing refused and nothing more was.
        loop {
            let Some(sender) = outbox.upgrade() else {
                return;
            };
            // Half the outbox free: room for a batch. While this waits, the slots freed go
            // to it first (the channel's semaphore is fair), so new decisions are refused too
            // and read back in their turn, oldest first: the order of decisions is kept.
            let room = (sender.max_capacity() / 2).max(1);
            let Ok(permits) = sender.reserve_many(room).await else {
                return;
            };
            let overflowed_before = shared.overflowed_total();
            let now = Utc::now();
            let age = |age: Duration| now - chrono::TimeDelta::from_std(age).unwrap_or_default();
            let source = refill.source.clone();
            let (not_before, before) = (age(refill.horizon), age(MIN_AGE));
            let read =
                tokio::task::spawn_blocking(move || source.decided(not_before, before, room))
                    .await
                    .map_err(anyhow::Error::from)
                    .and_then(|read| read);
            let decided = match read {
                Ok(decided) => decided,
                Err(error) => {
                    tracing::error!(%error, "cannot read back the notifications the full outbox refused");
                    drop(permits);
                    tokio::time::sleep(MIN_AGE).await;
                    continue;
                }
            };
            let count = decided.len();
            if count > 0 {
                tracing::info!(count, "re-queueing notifications the full outbox refused");
            }
            for (permit, notification) in permits.zip(decided) {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                permit.send(notification);
            }
            if count == room {
                continue;
            }
            // Fewer than asked: what was refused before `before` is all queued again. Refused
            // since then, or too young to read yet: read again once they are old enough.
            if shared.overflowed_total() == overflowed_before && !refused_recently(&shared) {
                break;
            }
            tokio::time::sleep(MIN_AGE).await;
        }
    }
}

/// Whether a notification was refused less than `MIN_AGE` ago (so not yet readable).
fn refused_recently(shared: &Shared) -> bool {
    shared
        .last_overflow()
        .is_some_and(|at| at.elapsed() < MIN_AGE)
}
