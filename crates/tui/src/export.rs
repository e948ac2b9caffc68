//! `e` / `E` in the console: the selected event, or the feed as filtered, to a JSON-lines
//! file in the user's home directory. Each record is a headless `event` line (`received_at`,
//! its topic, partition and offset, and the producer's JSON as `data`), so `replay FILE`
//! reads an export back; a message that did not decode is a `dead_letter` line with its
//! payload as text, which a replay counts and skips. Oldest first, as a history is read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::core::engine::FeedEntry;
use crate::core::event::Timestamp;

/// Where exports go: `$HOME` (the user's directory), else the working directory.
pub fn default_dir() -> PathBuf {
    directories::UserDirs::new()
        .map(|dirs| dirs.home_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The record for one feed entry, in the shape `replay` reads.
pub fn record(entry: &FeedEntry) -> Value {
    let source = entry.source.as_ref();
    let place = |record: &mut serde_json::Map<String, Value>| {
        if let Some(source) = source {
            record.insert("topic".into(), json!(source.topic));
            record.insert("partition".into(), json!(source.partition));
            record.insert("offset".into(), json!(source.offset));
        }
    };
    let received_at = entry
        .received_at
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let data = entry
        .error
        .is_none()
        .then(|| serde_json::from_str::<Value>(&entry.raw).ok())
        .flatten();
    let mut record = serde_json::Map::new();
    match data {
        Some(data) => {
            record.insert("kind".into(), json!("event"));
            record.insert("received_at".into(), json!(received_at));
            place(&mut record);
            record.insert("data".into(), data);
        }
        None => {
            record.insert("kind".into(), json!("dead_letter"));
            record.insert("received_at".into(), json!(received_at));
            place(&mut record);
            record.insert("error".into(), json!(entry.error.as_deref().unwrap_or("")));
            record.insert("payload".into(), json!(&*entry.raw));
        }
    }
    Value::Object(record)
}

/// Writes `entries` (newest first, as the feed holds them) oldest first to a new file in
/// `dir`, never over an existing one, readable by its owner only (events name people and
/// systems). The file appears whole: written under a hidden name, then linked to its own.
/// Returns the path.
pub fn write(entries: &[Arc<FeedEntry>], dir: &Path, now: Timestamp) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let stamp = now.format("%Y%m%d-%H%M%S");
    let named = |error: std::io::Error, path: &Path| {
        std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
    };
    let partial = dir.join(format!(
        ".incident-console-export-{stamp}-{}.partial",
        std::process::id()
    ));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|error| named(error, &partial))?;
    let written = (|| {
        let mut out = std::io::BufWriter::new(file);
        for entry in entries.iter().rev() {
            serde_json::to_writer(&mut out, &record(entry))?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        out.get_ref().sync_all()?;
        let mut attempt = 0;
        loop {
            let name = match attempt {
                0 => format!("incident-console-export-{stamp}.jsonl"),
                n => format!("incident-console-export-{stamp}-{n}.jsonl"),
            };
            let path = dir.join(name);
            // A hard link fails on an existing name, where a rename would replace it.
            match std::fs::hard_link(&partial, &path) {
                Ok(()) => return Ok(path),
                Err(error)
                    if error.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 =>
                {
                    attempt += 1;
                }
                Err(error) => return Err(named(error, &path)),
            }
        }
    })();
    let _ = std::fs::remove_file(&partial);
    written
}
