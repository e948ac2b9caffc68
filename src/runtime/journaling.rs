//! The runtime's link to the journal: opening it, submitting what a batch leaves, the
//! completions that release offsets, and the sweep that refeeds refused notifications.

use super::*;
use crate::core::changelog::{self, ChangeSink};
use crate::journal::ToJournal;
use crate::team::publish::ToStateTopic;

impl JournalLink {
    /// Whether this message was handled before a restart (its offset was not yet committed).
    pub(super) fn already_handled(
        &self,
        source: &SourceRef,
        cluster_id: impl FnOnce() -> Option<String>,
    ) -> bool {
        // Records from another cluster (or topic incarnation) say nothing about these offsets.
        self.reader.check_cluster(&source.topic, cluster_id);
        // A journal with nothing from before the start (the common case) needs no key built.
        if self.highest_before_start.is_empty() {
            return false;
        }
        let key = (Arc::clone(&source.topic), source.partition);
        if self
            .highest_before_start
            .get(&key)
            .is_none_or(|highest| source.offset > *highest)
        {
            return false;
        }
        self.reader
            .contains_event(&source.topic, source.partition, source.offset)
            .unwrap_or_else(|error| {
                tracing::error!(%error, %source, "journal look-up failed; handling the message");
                false
            })
    }
}

/// Opens the journal, or explains why not. Restored state goes into `engine`.
/// `restore_into`: the engine that takes the journal's open escalations, with the journal's
/// owed notifications resumed too; `None` when the state comes from elsewhere (a team
/// worker's comes from `<topic>.state`), so neither is read only to be thrown away.
pub(super) fn open_journal(
    config: &Config,
    restore_into: Option<&mut Engine>,
    demo: bool,
) -> anyhow::Result<Option<OpenedJournal>> {
    if !config.journal.enabled {
        if demo {
            tracing::info!("demo: no journal kept (pass --journal PATH to keep one)");
        } else {
            tracing::warn!(
                "journal disabled: a restart may repeat notifications and forgets escalations"
            );
        }
        return Ok(None);
    }
    let mut journal = Journal::open_configured(&config.journal)?;
    let path = journal.path().to_path_buf();
    let dedup = &config.notifications.dedup;
    let horizon = Duration::from_secs(dedup.resume_horizon_secs);
    let Some(engine) = restore_into else {
        return start_journal(journal, path, horizon, ResumedNotifications::default()).map(Some);
    };
    let escalations = journal.open_escalations()?;
    if !escalations.is_empty() {
        tracing::info!(
            count = escalations.len(),
            "open escalations restored from the journal"
        );
    }
    engine.restore_escalations(escalations);
    let silences = journal.open_silences(chrono::Utc::now())?;
    if !silences.is_empty() {
        tracing::info!(count = silences.len(), "silences restored from the journal");
    }
    for silence in silences {
        engine.restore_silence(silence);
    }
    let resumed = journal.resume_notifications(
        chrono::Utc::now(),
        horizon,
        Duration::from_secs(dedup.window_secs),
        dedup.max_entries,
    )?;
    if resumed.expired_notifications + resumed.expired_deliveries > 0 {
        tracing::info!(
            notifications = resumed.expired_notifications,
            deliveries = resumed.expired_deliveries,
            horizon_secs = dedup.resume_horizon_secs,
            "notifications from before the restart older than the resume horizon expired, not sent"
        );
    }
    start_journal(journal, path, horizon, resumed).map(Some)
}

/// Starts the journal's writer and reader once its state has been read.
fn start_journal(
    journal: Journal,
    path: std::path::PathBuf,
    horizon: Duration,
    resumed: ResumedNotifications,
) -> anyhow::Result<OpenedJournal> {
    let highest_before_start = journal
        .highest_offsets()?
        .into_iter()
        .map(|(topic, partition, offset)| ((Arc::from(topic), partition), offset))
        .collect();
    let reader = journal.reader()?;
    let refill = crate::notify::Refill {
        source: Arc::new(crate::journal::DecidedRows::new(&path)),
        horizon,
    };
    let (writer, completions) = JournalWriter::start(journal)?;
    tracing::info!(path = %path.display(), "journal open");
    Ok(OpenedJournal {
        link: JournalLink {
            path,
            writer,
            deciding: 0,
            failed_writes: 0,
            last_error: None,
            reader,
            highest_before_start,
        },
        completions,
        resumed,
        refill,
    })
}

impl Runtime {
    /// Journals what handling messages (or a tick, or a command) produced, with the
    /// notifications decided since the last submission: the offsets are stored and the
    /// notifications sent once it commits. Without a journal the offsets are stored at once
    /// (and the notifications went to the notifier as they were decided).
    pub(super) async fn commit(&mut self, sources: Vec<SourceRef>, records: Vec<JournalRecord>) {
        let decided = std::mem::take(&mut self.decided);
        let Some(journal) = &mut self.journal else {
            for source in &sources {
                self.offsets.finish(source);
            }
            return;
        };
        if sources.is_empty() && decided.is_empty() && records.is_empty() {
            return;
        }
        let count = sources.len();
        let first = sources.first().cloned();
        // Kept only in case the writer has gone, when the token never comes back.
        let fallback = (!decided.is_empty()).then(|| decided.clone());
        let deciding = usize::from(fallback.is_some());
        match journal
            .writer
            .submit(Journaled { sources, decided }, records)
            .await
        {
            Ok(()) => journal.deciding += deciding,
            Err(error) => {
                // The offsets stay uncommitted: the messages are read again after a restart.
                tracing::error!(%error, count, first = ?first, "cannot journal handled messages");
                // The pages still go out: a journal that cannot write must not silence them.
                for notification in fallback.into_iter().flatten() {
                    self.notifier.submit(notification);
                }
            }
        }
    }

    pub(super) fn journal_committed(&mut self, completion: Completion<Journaled>) {
        let Journaled { sources, decided } = completion.token;
        if let Some(journal) = self.journal.as_mut()
            && !decided.is_empty()
        {
            journal.deciding = journal.deciding.saturating_sub(1);
        }
        // Sent whether or not the write succeeded: a journal that cannot write must not
        // silence a page (its decision is then missing, and a restart may decide it again).
        for notification in decided {
            self.notifier.submit(notification);
        }
        match completion.result {
            Ok(()) => {
                for source in &sources {
                    self.offsets.finish(source);
                }
                self.flush_stores();
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    count = sources.len(),
                    first = ?sources.first(),
                    "journal write failed; the offsets are held so the messages are re-read after a restart"
                );
                if let Some(journal) = self.journal.as_mut() {
                    journal.failed_writes += 1;
                    journal.last_error = Some(error.to_string());
                }
            }
        }
    }

    /// Runs `input` through the engine, adding what must be journaled to `records`:
    /// escalation changes with the state after them, and each notification decided (in the
    /// same transaction as its event, so a decision is never lost while its offset is stored).
    pub(super) async fn apply_recording(
        &mut self,
        input: Input,
        source: Option<&SourceRef>,
        records: &mut Vec<JournalRecord>,
    ) {
        let now = chrono::Utc::now();
        let effects = self.engine.apply(input, now);
        // What changed goes to every store of state, through the one interface: the journal
        // (in the batch of what caused it) and, in team mode, `<topic>.state`.
        if self.journal.is_some() || self.team.is_some() {
            // With no channel configured there is nothing that could be owed.
            let decisions = if self.notifier.has_channels() {
                changelog::Decisions::Kept
            } else {
                changelog::Decisions::Left
            };
            let log =
                changelog::of_effects_with(&effects, self.engine.escalations(), now, decisions);
            if !log.is_empty() {
                if let Some(team) = &self.team {
                    ToStateTopic(team).record(&log);
                }
                if self.journal.is_some() {
                    ToJournal(records).record(&log);
                }
            }
        }
        for effect in effects {
            self.run_effect(&effect);
            self.emit(OutputRecord::Effect {
                topic: source.map(|s| s.topic.clone()),
                partition: source.map(|s| s.partition),
                offset: source.map(|s| s.offset),
                effect,
            });
        }
    }
}
