//! Running the engine and fanning its effects out: journal records, notifications, output
//! records and log lines; dead letters for what did not decode.

use super::*;

impl Runtime {
    pub(super) async fn dead_lettered(&mut self, done: DeadLetterDone) {
        let record = ProcessedEvent::dead_lettered(
            done.source.clone(),
            &done.error,
            done.received_at,
            chrono::Utc::now(),
        );
        self.commit(vec![done.source], vec![JournalRecord::Event(record)])
            .await;
        self.flush_stores();
    }

    pub(super) async fn dead_letter(
        &mut self,
        message: FetchedMessage,
        error: event::DecodeError,
        received_at: event::Timestamp,
    ) {
        let source = message.source.clone();
        tracing::warn!(%source, reason = error.reason(), "undecodable message: {error}; dead-lettering");
        let raw: Arc<str> = match &message.payload {
            None => "(tombstone)".into(),
            Some(bytes) => String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]).into(),
        };
        self.emit(OutputRecord::DeadLetter {
            reason: error.reason(),
            error: error.to_string(),
            topic: source.topic.clone(),
            partition: source.partition,
            offset: source.offset,
            dead_letter_topic: self.dead_letters.topic().to_string(),
        });
        let reason = error.reason();
        let text = error.to_string();
        self.apply(
            Input::Rejected {
                error: error.clone(),
                source: Some(source.clone()),
                raw,
            },
            Some(&source),
        )
        .await;
        self.engine.record_dead_lettered();
        self.summary.dead_lettered += 1;
        let producer = self.dead_letters.clone();
        let done = self.dead_letter_done.clone();
        let at = chrono::Utc::now().to_rfc3339();
        // The copy goes out on its own task so a slow broker does not stall the stream; the
        // offset tracker keeps the commit point below it until it is safe.
        tokio::spawn(async move {
            producer.send(&message, reason, &text, &at).await;
            let _ = done
                .send(DeadLetterDone {
                    source: message.source,
                    error,
                    received_at,
                })
                .await;
        });
    }

    /// Runs `input` through the engine; what must be journaled is written on its own, and
    /// what it decided is sent once that commits.
    pub(super) async fn apply(&mut self, input: Input, source: Option<&SourceRef>) {
        let mut records = Vec::new();
        self.apply_recording(input, source, &mut records).await;
        self.commit(Vec::new(), records).await;
    }

    pub(super) fn run_effect(&mut self, effect: &Effect) {
        // Headless, each effect is already a JSON line on stdout: its info log line would say
        // it again on stderr, per event during a drain. The console keeps it in its log pane.
        let quiet = self.output.is_some();
        match effect {
            // With no channel configured the notifier would only log it at debug level;
            // handing it over anyway costs a copy, a queue hand-off and a journal update per
            // notification. (Team mode keeps its own path: its recorder follows each one.)
            Effect::Notify(notification)
                if !self.notifier.has_channels() && self.team.is_none() =>
            {
                tracing::debug!(
                    kind = notification.kind.as_str(),
                    incident_id = notification.incident_id,
                    "notification (no channels configured)"
                );
            }
            Effect::Notify(notification) => {
                let allowed = self.side_effects.allowed("notification");
                if allowed && self.journal.is_some() {
                    self.decided.push(notification.clone());
                } else if allowed {
                    self.notifier.submit(notification.clone())
                }
            }
            Effect::Escalation(change) => log_escalation(change, quiet),
            Effect::IncidentResolved {
                incident_id,
                time_to_resolve_secs,
                status,
            } => info_unless!(
                quiet,
                "incident {incident_id} {status} after {}",
                time_to_resolve_secs
                    .map(crate::core::engine::format_duration)
                    .unwrap_or_else(|| "an unknown time".into())
            ),
            Effect::AcknowledgeRejected {
                incident_id,
                reason,
            } => {
                tracing::warn!(incident_id, "acknowledge rejected: {reason}")
            }
            Effect::Held {
                notification,
                silence_id,
                until,
            } => info_unless!(
                quiet,
                "incident {} {} held by silence {silence_id} until {until}",
                notification.incident_id,
                notification.kind.as_str()
            ),
            Effect::SilenceSet(view) => tracing::info!(
                "silence {} set by {} until {}: {} ({})",
                view.id,
                view.created_by,
                view.end,
                view.matches,
                view.reason
            ),
            Effect::SilenceEnded { id, by } => match by {
                Some(by) => tracing::info!("silence {id} ended by {by}"),
                None => tracing::info!("silence {id} expired"),
            },
            Effect::SilenceRejected { reason } => tracing::warn!("silence refused: {reason}"),
        }
    }

    /// Queues an output record; `send_output` hands the queue to the writer once per batch,
    /// so the writer thread wakes (and flushes) once per batch rather than once per record.
    pub(super) fn emit(&mut self, record: OutputRecord) {
        if self.output.is_none() {
            return;
        }
        self.unsent_output.push(record);
        self.offsets.emitted();
    }

    pub(super) async fn send_output(&mut self) {
        if self.unsent_output.is_empty() {
            return;
        }
        let Some(output) = &self.output else {
            self.unsent_output.clear();
            return;
        };
        let output = output.clone();
        let mut records = std::mem::take(&mut self.unsent_output);
        for record in records.drain(..) {
            if output.send(record).await.is_err() {
                // The writer has gone (stdout broke): stop writing, and with a gate, consuming.
                self.output = None;
                self.offsets.output_lost();
                return;
            }
        }
        // The emptied buffer is kept: no allocation per batch.
        self.unsent_output = records;
    }
}

/// Logs an escalation change; its info lines are debug lines when `quiet`.
fn log_escalation(change: &crate::core::escalation::EscalationChange, quiet: bool) {
    use crate::core::escalation::EscalationChange as Change;
    match change {
        Change::Opened {
            incident_id,
            level,
            priority,
        } => {
            info_unless!(
                quiet,
                "incident {incident_id} ({priority}) escalated: paging level {level}"
            )
        }
        Change::Raised {
            incident_id,
            from_level,
            to_level,
            cause,
        } => info_unless!(
            quiet,
            ?cause,
            "incident {incident_id} escalation raised from level {from_level} to {to_level}"
        ),
        Change::Repeated {
            incident_id,
            level,
            repeat,
        } => {
            tracing::warn!(
                "incident {incident_id} still unacknowledged: paging level {level} again (#{repeat})"
            )
        }
        Change::Exhausted { incident_id, level } => {
            tracing::warn!(
                "incident {incident_id} unacknowledged at level {level}; no more automatic pages"
            )
        }
        Change::Acknowledged {
            incident_id,
            by,
            time_to_acknowledge_secs,
            ..
        } => info_unless!(
            quiet,
            "incident {incident_id} acknowledged by {by} after {}",
            crate::core::engine::format_duration(*time_to_acknowledge_secs)
        ),
        Change::Closed { incident_id, .. } => {
            info_unless!(quiet, "incident {incident_id} escalation closed")
        }
        Change::Unacknowledged {
            incident_id,
            level,
            cause,
            was_acknowledged_by,
            ..
        } => tracing::warn!(
            ?cause,
            "incident {incident_id} no longer acknowledged (was by {was_acknowledged_by}): paging level {level} again"
        ),
    }
}
