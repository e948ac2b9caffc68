//! Headless mode: the same runtime, with one JSON object per line on stdout for each handled
//! event, effect and dead letter, human logs on stderr, and signals for shutdown.
//!
//! The JSON lines are often the product (`| jq | ...`), so an offset is stored only once every
//! line emitted before it was written and flushed: the writer reports how many records it has
//! flushed, and the runtime holds offsets until then. When stdout breaks (`| head`, a full
//! disk), the writer stops at once, the runtime stops consuming and commits only what was
//! written, and the process exits with [`EXIT_BROKEN_PIPE`] or [`EXIT_OUTPUT_ERROR`].

use std::io::Write;

use tokio::sync::{mpsc, watch};

pub use crate::output::{OUTPUT_CAPACITY, OutputRecord};
use crate::runtime::{RunSummary, RuntimeHandle};
use crate::status::Command;

/// Records written between two flushes at most, so that offsets are released steadily even
/// when the channel never runs empty.
const FLUSH_EVERY: usize = 512;

/// Exit status when stdout was closed by its reader (EPIPE): what a shell reports for a
/// process killed by SIGPIPE (128 + 13), so `set -o pipefail` scripts see the usual value.
pub const EXIT_BROKEN_PIPE: u8 = 141;
/// Exit status when writing stdout failed otherwise (a full disk, an I/O error): EX_IOERR.
pub const EXIT_OUTPUT_ERROR: u8 = 74;

/// The headless output stopped because stdout could not be written; consumption stopped and
/// only offsets whose lines were written were committed.
#[derive(Debug)]
pub struct OutputFailed {
    pub error: std::io::Error,
    /// Records handed to stdout before it failed: an upper bound of what the reader got
    /// (`| head -n 5` took 5 of them, from a batch not yet flushed).
    pub written: u64,
    /// Of those, the records flushed before the failing batch: only their offsets count.
    pub flushed: u64,
}

impl OutputFailed {
    pub fn exit_code(&self) -> u8 {
        if self.error.kind() == std::io::ErrorKind::BrokenPipe {
            EXIT_BROKEN_PIPE
        } else {
            EXIT_OUTPUT_ERROR
        }
    }
}

impl std::fmt::Display for OutputFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.error.kind() == std::io::ErrorKind::BrokenPipe {
            write!(f, "stdout was closed by its reader")?;
        } else {
            write!(f, "cannot write to stdout: {}", self.error)?;
        }
        write!(
            f,
            "; stopped consuming after writing {} lines (offsets committed only for the {} \
             flushed before)",
            self.written, self.flushed
        )
    }
}

impl std::error::Error for OutputFailed {}

/// The records channel and the flushed-count watch the runtime takes, and the ends the writer
/// takes.
pub struct OutputChannel {
    pub records: mpsc::Sender<OutputRecord>,
    pub flushed: watch::Receiver<u64>,
    pub writer_records: mpsc::Receiver<OutputRecord>,
    pub writer_flushed: watch::Sender<u64>,
}

pub fn output_channel() -> OutputChannel {
    let (records, writer_records) = mpsc::channel(OUTPUT_CAPACITY);
    let (writer_flushed, flushed) = watch::channel(0);
    OutputChannel {
        records,
        flushed,
        writer_records,
        writer_flushed,
    }
}

/// Writes records as JSON lines until the runtime closes the channel. Flushes whenever the
/// channel is momentarily empty (so `jq` sees events promptly without a write per line) and at
/// least every `FLUSH_EVERY` records, then publishes how many gated records
/// (`OutputRecord::is_gated`) are out. On the first write error it returns at once: dropping
/// both ends tells the runtime to stop.
pub async fn write_records(
    mut records: mpsc::Receiver<OutputRecord>,
    mut out: impl Write,
    flushed: watch::Sender<u64>,
) -> Result<u64, OutputFailed> {
    let mut written = 0u64;
    let mut gated = 0u64;
    let fail = |error, written, batch: usize| OutputFailed {
        error,
        written: written + batch as u64,
        flushed: written,
    };
    let mut line = Vec::with_capacity(1024);
    while let Some(record) = records.recv().await {
        write_line(&mut out, &record, &mut line).map_err(|e| fail(e, written, 0))?;
        let mut batch = 1;
        let mut batch_gated = u64::from(record.is_gated());
        while batch < FLUSH_EVERY {
            let Ok(record) = records.try_recv() else {
                break;
            };
            write_line(&mut out, &record, &mut line).map_err(|e| fail(e, written, batch))?;
            batch += 1;
            batch_gated += u64::from(record.is_gated());
        }
        out.flush().map_err(|e| fail(e, written, batch))?;
        written += batch as u64;
        gated += batch_gated;
        flushed.send_replace(gated);
    }
    out.flush().map_err(|e| fail(e, written, 0))?;
    Ok(written)
}

/// Serialises `record` into `line` (kept from one record to the next) and writes it whole:
/// serde_json writes a line in dozens of small pieces (each key, each quote), and appending
/// them to a `Vec` costs a fraction of passing each through the `BufWriter`.
fn write_line(
    out: &mut impl Write,
    record: &OutputRecord,
    line: &mut Vec<u8>,
) -> std::io::Result<()> {
    line.clear();
    serde_json::to_writer(&mut *line, record).map_err(std::io::Error::from)?;
    line.push(b'\n');
    out.write_all(line)
}

/// Runs until SIGINT, SIGTERM or SIGHUP (or the runtime stops by itself, or stdout breaks),
/// then shuts down gracefully. A second signal exits at once.
pub async fn run(
    handle: RuntimeHandle,
    records: mpsc::Receiver<OutputRecord>,
    flushed: watch::Sender<u64>,
) -> anyhow::Result<RunSummary> {
    let writer = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Handle::current();
        let stdout = std::io::stdout().lock();
        runtime.block_on(write_records(
            records,
            std::io::BufWriter::with_capacity(64 * 1024, stdout),
            flushed,
        ))
    });
    let commands = handle.commands.clone();
    let first = shutdown_signals();
    let signals = tokio::spawn(async move {
        first.await;
        tracing::info!("signal received: stopping (send it again to exit at once)");
        let _ = commands.send(Command::Shutdown).await;
        wait_for_signal().await;
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(130);
    });
    let summary = handle.task.await??;
    signals.abort();
    match writer.await? {
        Ok(_) => Ok(summary),
        Err(failed) => Err(failed.into()),
    }
}

/// Waits for SIGINT, SIGTERM or SIGHUP.
pub async fn wait_for_signal() {
    shutdown_signals().await
}

/// Installs the handlers for SIGINT, SIGTERM and SIGHUP now (so a signal that arrives from
/// here on is never the default, fatal one) and returns a future that resolves on the first.
/// A process manager (or a closed session) may send SIGHUP: it stops as gracefully.
#[cfg(unix)]
pub fn shutdown_signals() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut hangup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
            _ = hangup.recv() => {}
        }
    }
}

#[cfg(not(unix))]
pub fn shutdown_signals() -> impl std::future::Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter(offset: i64) -> OutputRecord {
        OutputRecord::DeadLetter {
            reason: "invalid_json",
            error: "x".into(),
            topic: "t".into(),
            partition: 0,
            offset,
            dead_letter_topic: "t.dlq".into(),
        }
    }

    /// The runtime's gate counts only its own records: a self-alert written between two of
    /// them must not advance the count it waits on.
    #[tokio::test]
    async fn only_gated_records_count_as_flushed() {
        let channel = output_channel();
        let alert = OutputRecord::SelfAlert {
            alert: "stuck".into(),
            state: "firing",
            detail: String::new(),
        };
        for record in [dead_letter(0), alert, dead_letter(1)] {
            channel.records.send(record).await.unwrap();
        }
        drop(channel.records);
        let mut out = Vec::new();
        let written = write_records(channel.writer_records, &mut out, channel.writer_flushed)
            .await
            .unwrap();
        assert_eq!(written, 3);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 3);
        assert_eq!(*channel.flushed.borrow(), 2);
    }

    /// `| head -n 5`: the reader takes some lines of a batch not yet flushed, then goes. The
    /// message counts the lines written, not 0.
    #[tokio::test]
    async fn a_reader_that_leaves_mid_batch_is_told_the_lines_written() {
        /// Takes `lines` lines, then the pipe is broken.
        struct Head {
            lines: usize,
        }
        impl Write for Head {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if self.lines == 0 {
                    return Err(std::io::ErrorKind::BrokenPipe.into());
                }
                self.lines -= buf.iter().filter(|&&b| b == b'\n').count().min(self.lines);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let channel = output_channel();
        for offset in 0..8 {
            channel.records.send(dead_letter(offset)).await.unwrap();
        }
        drop(channel.records);
        let failed = write_records(
            channel.writer_records,
            Head { lines: 5 },
            channel.writer_flushed,
        )
        .await
        .unwrap_err();
        assert_eq!((failed.written, failed.flushed), (5, 0));
        assert_eq!(
            failed.to_string(),
            "stdout was closed by its reader; stopped consuming after writing 5 lines \
             (offsets committed only for the 0 flushed before)"
        );
        assert_eq!(*channel.flushed.borrow(), 0);
    }
}
