//! Headless mode: the same runtime, with one JSON object per line on stdout for each handled
//! event, effect and dead letter, human logs on stderr, and signals for shutdown.

use std::io::Write;

use tokio::sync::mpsc;

use crate::runtime::{OutputRecord, RunSummary, RuntimeHandle};
use crate::status::Command;

/// Bound on records waiting for stdout; a slow reader slows consumption rather than memory.
pub const OUTPUT_CAPACITY: usize = 4096;

pub fn output_channel() -> (mpsc::Sender<OutputRecord>, mpsc::Receiver<OutputRecord>) {
    mpsc::channel(OUTPUT_CAPACITY)
}

/// Writes records as JSON lines until the runtime closes the channel. Flushes whenever the
/// channel is momentarily empty, so `jq` sees events promptly without a write per line.
pub async fn write_records(
    mut records: mpsc::Receiver<OutputRecord>,
    mut out: impl Write,
) -> std::io::Result<()> {
    while let Some(record) = records.recv().await {
        write_line(&mut out, &record)?;
        while let Ok(record) = records.try_recv() {
            write_line(&mut out, &record)?;
        }
        out.flush()?;
    }
    out.flush()
}

fn write_line(out: &mut impl Write, record: &OutputRecord) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, record).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}

/// Runs until SIGINT or SIGTERM (or the runtime stops by itself), then shuts down gracefully.
/// A second signal exits at once.
pub async fn run(
    handle: RuntimeHandle,
    records: mpsc::Receiver<OutputRecord>,
) -> anyhow::Result<RunSummary> {
    let writer = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Handle::current();
        let stdout = std::io::stdout().lock();
        runtime.block_on(write_records(
            records,
            std::io::BufWriter::with_capacity(64 * 1024, stdout),
        ))
    });
    let commands = handle.commands.clone();
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: stopping (send it again to exit at once)");
        let _ = commands.send(Command::Shutdown).await;
        wait_for_signal().await;
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(130);
    });
    let summary = handle.task.await??;
    signals.abort();
    match writer.await? {
        Ok(()) => {}
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(error) => return Err(error.into()),
    }
    Ok(summary)
}

#[cfg(unix)]
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}

#[cfg(not(unix))]
pub async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
