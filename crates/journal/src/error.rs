//! What can go wrong with the journal, each said so that the person reading it knows which
//! file is meant and what to do next.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// A journal failure. `Display` names the file and a way forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error(
        "cannot find a data directory for the journal (is $HOME set?); set journal.path in the \
         configuration or pass --journal PATH"
    )]
    NoDataDir,
    #[error(
        "cannot open the journal {}: {detail}; check that the path is a file you can write, or \
         pass --journal PATH",
        path.display()
    )]
    CannotOpen { path: PathBuf, detail: String },
    #[error(
        "another incident-console{} is using the journal {}; stop it, or give this one its own \
         journal with --journal PATH",
        pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
        path.display()
    )]
    Locked { path: PathBuf, pid: Option<u32> },
    #[error(
        "the journal {} is locked by another program (a long sqlite3 session?): {detail}; \
         close it, or pass --journal PATH",
        path.display()
    )]
    Busy { path: PathBuf, detail: String },
    #[error(
        "{} is not a journal database ({detail}); move it aside (a new journal is created in \
         its place) or pass --journal PATH",
        path.display()
    )]
    NotAJournal { path: PathBuf, detail: String },
    #[error(
        "the journal {} is damaged ({detail}); move it aside together with its -wal and -shm \
         files (a new journal is created in its place), or pass --journal PATH",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "the journal {} was written by a newer incident-console (schema version {found}; this \
         one knows up to {supported}); upgrade, or pass --journal PATH",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "the disk holding the journal {} is full; free some space (or lower \
         journal.retention_days)",
        path.display()
    )]
    DiskFull { path: PathBuf },
    #[error("journal {}: {detail}", path.display())]
    Storage { path: PathBuf, detail: String },
    #[error("the journal writer has stopped")]
    Closed,
}

impl JournalError {
    /// Maps a SQLite error on `path` to the error that tells the reader what to do.
    pub(crate) fn from_sqlite(path: &Path, error: rusqlite::Error) -> Self {
        let path = path.to_path_buf();
        let detail = error.to_string();
        match error.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => Self::NotAJournal { path, detail },
            Some(ErrorCode::DatabaseCorrupt) => Self::Corrupt { path, detail },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                Self::Busy { path, detail }
            }
            Some(ErrorCode::DiskFull) => Self::DiskFull { path },
            Some(
                ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::ReadOnly
                | ErrorCode::NotFound,
            ) => Self::CannotOpen { path, detail },
            _ => Self::Storage { path, detail },
        }
    }

    pub(crate) fn cannot_open(path: &Path, error: impl std::fmt::Display) -> Self {
        Self::CannotOpen {
            path: path.to_path_buf(),
            detail: error.to_string(),
        }
    }

    /// A value in the file that this program did not write (edited by hand, or damaged).
    pub(crate) fn bad_value(path: &Path, what: &str, value: &str) -> Self {
        Self::Corrupt {
            path: path.to_path_buf(),
            detail: format!("unreadable {what} `{value}`"),
        }
    }
}

/// A run ended, but its journal refused writes or did not close cleanly (a full disk, a
/// file-size limit). The offsets of everything not journaled were held back, so those events
/// are read again at the next start; the process exits with [`JournalFailed::EXIT_CODE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalFailed {
    pub path: PathBuf,
    pub failed_writes: u64,
    pub closed_cleanly: bool,
    pub last_error: Option<String>,
}

impl JournalFailed {
    /// EX_IOERR, as for a stdout that cannot be written.
    pub const EXIT_CODE: u8 = 74;
}

impl std::fmt::Display for JournalFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the journal {} ", self.path.display())?;
        match (self.failed_writes, self.closed_cleanly) {
            (0, _) => write!(f, "did not close cleanly")?,
            (n, true) => write!(f, "refused {n} writes")?,
            (n, false) => write!(f, "refused {n} writes and did not close cleanly")?,
        }
        if let Some(error) = &self.last_error {
            write!(f, " ({error})")?;
        }
        write!(
            f,
            "; the events it did not record were not committed and are read again at the next \
             start; free space on its disk (or raise the file-size limit)"
        )
    }
}

impl std::error::Error for JournalFailed {}
