//! One console per journal: an exclusive `flock` on `<journal>.lock`, held for as long as the
//! journal is open. SQLite's own locks would let two consoles take turns writing the same
//! journal, each believing it is the only one; this refuses the second one at start instead.
//! The lock is the kernel's, so it goes away with the process, however the process ends.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::JournalError;

#[derive(Debug)]
pub struct JournalLock {
    // Closing the file releases the lock.
    _file: File,
}

impl JournalLock {
    pub fn lock_path(journal: &Path) -> PathBuf {
        let mut name = journal.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock for `journal`, or says who holds it.
    pub fn acquire(journal: &Path) -> Result<Self, JournalError> {
        let path = Self::lock_path(journal);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|error| {
                JournalError::cannot_open(
                    journal,
                    format!("cannot create its lock file {}: {error}", path.display()),
                )
            })?;
        // SAFETY: flock on a descriptor we own; it has no memory effects.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::WouldBlock {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(JournalError::Locked {
                    path: journal.to_path_buf(),
                    pid,
                });
            }
            return Err(JournalError::cannot_open(
                journal,
                format!("cannot lock {}: {error}", path.display()),
            ));
        }
        // The holder's pid, for the message the next one gets. Best effort: the lock itself
        // is what matters.
        let _ = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        Ok(Self { _file: file })
    }
}
