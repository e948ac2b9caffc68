//! The loop: messages, commands, ticks and completions, one at a time; shutdown.

use super::*;

impl Runtime {
    pub(super) async fn run(mut self, mut io: RunLoop) -> anyhow::Result<RunSummary> {
        let mut status_rx = self.control.status();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // Snapshots are published at most once per frame, and only when something changed.
        let mut frame = tokio::time::interval(io.frame);
        frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut dirty = true;
        // Set when the consumer stopped on an error it cannot recover from.
        let mut failed = None;
        self.commit_restored().await;
        loop {
            tokio::select! {
                // Operator commands first: a flood of events must not delay a key press.
                biased;
                command = io.commands.recv() => {
                    // Every face gone is a shutdown too.
                    let command = command.unwrap_or(Command::Shutdown);
                    if self.handle_command(command).await == Flow::Stop {
                        break;
                    }
                    // Published at once so the operator sees the result of a key press.
                    self.publish(&io);
                    dirty = false;
                },
                Some(done) = io.dead_letter_done.recv() => {
                    self.dead_lettered(done).await;
                }
                Some(completion) = next_completion(&mut io.journal_completions) => {
                    self.journal_committed(completion);
                }
                _ = frame.tick(), if dirty => {
                    self.publish(&io);
                    dirty = false;
                }
                _ = status_rx.changed() => {
                    let assigned = status_rx.borrow_and_update().assigned_partitions.clone();
                    let revoked = self.offsets.retain_assigned(self.control.topic(), &assigned);
                    if revoked > 0 {
                        tracing::debug!(count = revoked, "in-flight work of revoked partitions forgotten");
                    }
                    dirty = true;
                }
                side = self.offsets.confirmed_more() => match side {
                    Confirmed::Output => {
                        let broken = self.offsets.release_flushed();
                        self.flush_stores();
                        if broken {
                            tracing::error!("stdout is broken: stopping consumption");
                            break;
                        }
                    }
                    Confirmed::State => {
                        let broken = self.offsets.release_committed();
                        self.flush_stores();
                        if broken {
                            // The worker's supervisor sees the writer fenced and steps down.
                            tracing::error!("the state writer stopped: storing no more offsets");
                        }
                    }
                },
                _ = ticker.tick() => {
                    self.apply(Input::Tick, None).await;
                    dirty = true;
                }
                batch = io.messages.recv(), if !self.offsets.state_backlogged() => match batch {
                    Some(batch) => {
                        self.handle_batch(batch).await;
                        self.send_output().await;
                        dirty = true;
                        if self.offsets.output_broken() {
                            tracing::error!("stdout is broken: stopping consumption");
                            break;
                        }
                    }
                    None if self.control.range_finished() => break,
                    None => {
                        match self.control.fatal_error() {
                            Some(fatal) => failed = Some(fatal),
                            None => tracing::error!("the Kafka fetch task ended unexpectedly"),
                        }
                        break;
                    }
                },
            }
            // What a command, a tick or a completion emitted.
            self.send_output().await;
        }
        self.send_output().await;
        let summary = self.shutdown(io).await?;
        match failed {
            // What was handled is committed and journaled; the process still fails, so a
            // supervisor sees it and an operator reads why.
            Some(fatal) => Err(anyhow::anyhow!(fatal)),
            None => Ok(summary),
        }
    }

    pub(super) async fn shutdown(mut self, mut io: RunLoop) -> anyhow::Result<RunSummary> {
        tracing::info!("shutting down: finishing in-flight work");
        let _ = io.stop_fetching.send(true);
        let _ = (&mut io.fetch_task).await;
        // What was fetched before the stop is handled, so its offsets can be committed; not
        // when stdout broke, as its lines could not be written.
        while !self.offsets.output_broken()
            && let Ok(batch) = io.messages.try_recv()
        {
            self.handle_batch(batch).await;
            self.send_output().await;
        }
        let deadline = tokio::time::Instant::now() + io.shutdown_timeout;
        while self.offsets.in_flight() > self.offsets.unstorable()
            || self
                .journal
                .as_ref()
                .is_some_and(|journal| journal.deciding > 0)
        {
            let next = async {
                tokio::select! {
                    Some(done) = io.dead_letter_done.recv() => Some(Ok(done)),
                    Some(completion) = next_completion(&mut io.journal_completions) => Some(Err(completion)),
                    _ = self.offsets.confirmed_more() => None,
                }
            };
            match tokio::time::timeout_at(deadline, next).await {
                Ok(Some(Ok(done))) => {
                    self.dead_lettered(done).await;
                    self.send_output().await;
                }
                Ok(Some(Err(completion))) => self.journal_committed(completion),
                Ok(None) => {
                    self.offsets.release_flushed();
                    self.offsets.release_committed();
                    self.flush_stores();
                }
                _ => {
                    tracing::warn!(
                        pending = self.offsets.in_flight(),
                        "work unfinished at shutdown; those messages will be re-read next start"
                    );
                    break;
                }
            }
        }
        self.publish(&io);
        self.notifier.shutdown(io.shutdown_timeout).await;
        let mut journal_failed = None;
        if let Some(mut journal) = self.journal.take() {
            let closed = journal.writer.shutdown().await;
            if let Err(error) = &closed {
                tracing::error!(%error, "journal did not close cleanly");
            }
            if journal.failed_writes > 0 || closed.is_err() {
                journal_failed = Some(JournalFailed {
                    path: journal.path,
                    failed_writes: journal.failed_writes,
                    closed_cleanly: closed.is_ok(),
                    last_error: closed
                        .err()
                        .map(|error| error.to_string())
                        .or(journal.last_error.take()),
                });
            }
        }
        let commit = self
            .control
            .clone()
            .commit_and_close(io.shutdown_timeout)
            .await;
        let latency = &self.latency;
        tracing::info!(
            handled = self.summary.handled,
            dead_lettered = self.summary.dead_lettered,
            latency_samples = latency.count(),
            latency_p50_ms = latency.percentile_ms(0.50),
            latency_p99_ms = latency.percentile_ms(0.99),
            latency_max_ms = latency.max_ms(),
            "stopped (latency: Kafka message timestamp to handled, whole milliseconds)"
        );
        // Offsets of what the journal did not take were held, so nothing is lost; but a run
        // that could not keep its record must not look like a clean one to a process manager.
        if let Some(failed) = journal_failed {
            return Err(failed.into());
        }
        // Nothing is lost (what is not committed is read again and recognised), but a run
        // whose progress was not kept must not look like a clean one either. A fenced team
        // worker's commit is refused on purpose: that is no failure of this process.
        if let Err(why) = commit
            && self.side_effects.allowed("final commit")
        {
            anyhow::bail!(
                "{why}; the messages since the last commit will be read again at the next start"
            );
        }
        Ok(self.summary)
    }

    pub(super) fn publish(&self, io: &RunLoop) {
        let snapshot = Snapshot {
            engine: self.engine.snapshot(chrono::Utc::now()),
            consumer: self.control.status().borrow().clone(),
            notifier: self.notifier.status(),
            operator: io.operator.clone(),
            demo: io.demo,
            team: None,
        };
        io.snapshot_tx.send_replace(Arc::new(snapshot));
    }

    pub(super) async fn handle_command(&mut self, command: Command) -> Flow {
        match command {
            Command::Pause | Command::Resume | Command::TogglePause => {
                let paused = match command {
                    Command::Pause => true,
                    Command::Resume => false,
                    _ => !self.control.is_paused(),
                };
                if let Err(error) = self.control.set_paused(paused) {
                    tracing::warn!(%error, "pause/resume did not apply to every partition");
                }
            }
            Command::Acknowledge { incident_id, by } => {
                self.apply(Input::Acknowledge { incident_id, by }, None)
                    .await;
            }
            Command::Notify(notification) => self.notify(*notification).await,
            Command::Oncall(command) => {
                self.apply(command.into_input(chrono::Utc::now()), None)
                    .await;
            }
            Command::Shutdown => return Flow::Stop,
        }
        Flow::Continue
    }

    /// A team worker's restored decisions (`spawn_with` leaves them in `decided`), journaled
    /// as decided and handed to the notifier once that commits, as the engine's are.
    async fn commit_restored(&mut self) {
        let restored = std::mem::take(&mut self.decided);
        self.commit_decided(restored).await;
    }

    /// A notification decided outside the engine (a self-alert): journaled as decided and
    /// submitted like the engine's own, so it is delivered, retried and resumed the same way.
    pub(super) async fn notify(&mut self, notification: crate::core::engine::Notification) {
        if !self.side_effects.allowed("notification") {
            return;
        }
        if self.journal.is_some() && self.notifier.has_channels() {
            self.commit_decided(vec![notification]).await;
        } else {
            self.notifier.submit(notification);
        }
    }

    /// Journals `notifications` as decided now, in one submission, and hands them to the
    /// notifier once it commits (`journal_committed`).
    async fn commit_decided(&mut self, notifications: Vec<crate::core::engine::Notification>) {
        if notifications.is_empty() {
            return;
        }
        let at = chrono::Utc::now();
        let records = notifications
            .iter()
            .map(|notification| {
                JournalRecord::Decided(Decision {
                    notification: notification.clone(),
                    at,
                })
            })
            .collect();
        self.decided.extend(notifications);
        self.commit(Vec::new(), records).await;
    }

    /// Handles a batch in order; its journal records go in one submission and its offsets
    /// are stored once.
    pub(super) async fn handle_batch(&mut self, batch: Vec<FetchedMessage>) {
        let mut pending = PendingCommit::default();
        let sources: Vec<SourceRef> = match &self.team {
            Some(_) => batch.iter().map(|m| m.source.clone()).collect(),
            None => Vec::new(),
        };
        for message in batch {
            self.handle_message(message, &mut pending).await;
        }
        if let Some(team) = &self.team {
            team.progress(&sources);
        }
        if !pending.sources.is_empty() || !self.decided.is_empty() {
            self.commit(pending.sources, pending.records).await;
        }
        self.flush_stores();
    }

    /// Stores the offsets the commit gate released since the last call, one call for all
    /// partitions; none when this worker no longer holds the lease (team mode).
    pub(super) fn flush_stores(&mut self) {
        let (control, side_effects) = (&self.control, &self.side_effects);
        self.offsets.store_released(|offsets| {
            if side_effects.allowed("offset store") {
                control.store_many(offsets.iter().map(|(key, next)| (key, *next)));
            }
        });
    }

    pub(super) async fn handle_message(
        &mut self,
        message: FetchedMessage,
        pending: &mut PendingCommit,
    ) {
        let started = Instant::now();
        let (journal, control) = (&self.journal, &self.control);
        let arrival = self.offsets.arrive(&message.source, || {
            journal.as_ref().is_some_and(|journal| {
                journal.already_handled(&message.source, || control.cluster_id())
            })
        });
        match arrival {
            Arrival::Fresh => {}
            // Its first delivery is still being finished (a dead-letter send): that one
            // stores the offset when it is done.
            Arrival::InFlight => {
                self.summary.redelivered += 1;
                return;
            }
            // Handled before (in this run, by a predecessor, or before a restart), offset
            // not yet committed: nothing to do again.
            Arrival::Repeat => {
                tracing::debug!(source = %message.source, "re-delivered message already handled");
                self.summary.redelivered += 1;
                self.offsets.finish(&message.source);
                return;
            }
        }
        let received_at = chrono::Utc::now();
        match event::decode(message.payload.as_deref(), self.max_message_bytes) {
            Ok(event) => {
                // A decoded payload is valid UTF-8 (JSON): taken, not copied twice.
                let raw: Arc<str> = match String::from_utf8(message.payload.unwrap_or_default()) {
                    Ok(text) => text.into(),
                    Err(error) => String::from_utf8_lossy(error.as_bytes()).into(),
                };
                // Built only for headless output: the console has no use for the copy.
                if self.output.is_some() {
                    self.emit(OutputRecord::Event {
                        event_type: event.event_type(),
                        incident_id: event.incident_id(),
                        topic: message.source.topic.clone(),
                        partition: message.source.partition,
                        offset: message.source.offset,
                        received_at: chrono::Utc::now(),
                        data: Box::new(event.clone()),
                    });
                }
                let source = message.source;
                let record = ProcessedEvent::handled(
                    source.clone(),
                    &event,
                    received_at,
                    chrono::Utc::now(),
                );
                let mut records = vec![JournalRecord::Event(record)];
                self.apply_recording(
                    Input::Event {
                        event,
                        source: Some(source.clone()),
                        raw,
                    },
                    Some(&source),
                    &mut records,
                )
                .await;
                self.summary.handled += 1;
                self.engine.record_processing(started.elapsed());
                if let Some(produced_ms) = message.timestamp_ms {
                    let now_ms = chrono::Utc::now().timestamp_millis();
                    self.latency.record_ms(now_ms - produced_ms);
                }
                pending.sources.push(source);
                pending.records.append(&mut records);
            }
            Err(error) => self.dead_letter(message, error, received_at).await,
        }
    }
}

async fn next_completion<T>(
    completions: &mut Option<mpsc::UnboundedReceiver<Completion<T>>>,
) -> Option<Completion<T>> {
    match completions {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}
