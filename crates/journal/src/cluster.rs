//! Which Kafka cluster a journal's records came from, per topic.
//!
//! Offsets only mean something within one cluster and one incarnation of a topic: after the
//! topic is deleted and recreated, a cluster migration, or a console used on staging pointed
//! at production, offset 5 of partition 0 is another message. The journal recognises a
//! re-delivered message by (topic, partition, offset), so records from another cluster would
//! make it skip events it has never seen. The first time a run looks a topic up, the cluster
//! it reads from is compared with the one recorded; when they differ, the old records of that
//! topic are moved aside (renamed `<topic> (cluster <id>, until <time>)`, kept for history)
//! and the new cluster is recorded.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::JournalError;

/// What `observe` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterCheck {
    /// The journal's records for this topic came from this cluster (or it had none).
    Same,
    /// They came from `previous`: `moved` event records were moved aside.
    Changed { previous: String, moved: usize },
}

/// Records `cluster_id` as the source of `topic`, moving aside the records of another cluster.
pub fn observe(
    path: &Path,
    topic: &str,
    cluster_id: &str,
    now: &str,
) -> Result<ClusterCheck, JournalError> {
    let sqlite = |error| JournalError::from_sqlite(path, error);
    let mut connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    // The writer may be committing: wait for it rather than fail.
    connection
        .busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite)?;
    // Short-lived, but moving a topic's records aside can touch many pages: the reader's
    // bound, so that even then it stays small (and it is freed when this returns).
    super::store::set_memory(&connection, super::store::READER_CACHE_KIB).map_err(sqlite)?;
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let previous: Option<String> = transaction
        .query_row(
            "SELECT cluster_id FROM kafka_clusters WHERE kafka_topic = ?1",
            params![topic],
            |row| row.get(0),
        )
        .optional()
        .map_err(sqlite)?;
    let check = match previous {
        Some(previous) if previous != cluster_id => {
            let aside = format!("{topic} (cluster {previous}, until {now})");
            let moved = transaction
                .execute(
                    "UPDATE events SET kafka_topic = ?1 WHERE kafka_topic = ?2",
                    params![aside, topic],
                )
                .map_err(sqlite)?;
            ClusterCheck::Changed { previous, moved }
        }
        _ => ClusterCheck::Same,
    };
    transaction
        .execute(
            "INSERT INTO kafka_clusters (kafka_topic, cluster_id, since) VALUES (?1, ?2, ?3)
             ON CONFLICT (kafka_topic) DO UPDATE SET cluster_id = ?2, since = ?3
             WHERE cluster_id != ?2",
            params![topic, cluster_id, now],
        )
        .map_err(sqlite)?;
    transaction.commit().map_err(sqlite)?;
    Ok(check)
}
