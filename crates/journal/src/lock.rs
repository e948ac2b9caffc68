//! One console per journal: an exclusive `flock` on `<journal>.lock`, held for as long as the
//! journal is open. SQLite's own locks would let two consoles take turns writing the same
//! journal, each believing it is the only one; this refuses the second one at start instead.
//! The lock is the kernel's, so it goes away with the process, however the process ends.
//!
//! A name is not an identity: a symbolic or hard link reaches the same file under another
//! name, with another `.lock` beside it. So the journal file itself is locked too (`flock` on
//! its own descriptor, which lives on the inode whatever the name; SQLite's locks are `fcntl`
//! locks, which Linux keeps apart from `flock`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::JournalError;

#[derive(Debug)]
pub struct JournalLock {
    // Closing the files releases the locks.
    _file: File,
    /// The journal file itself, locked by identity once it exists.
    journal: Option<File>,
    /// The `.lock` file did not exist before: removed again if opening fails.
    created: Option<PathBuf>,
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
        let existed = path.symlink_metadata().is_ok();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // Never through a symbolic link: the pid written below would land on its target.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|error| {
                JournalError::cannot_open(
                    journal,
                    format!("cannot create its lock file {}: {error}", path.display()),
                )
            })?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(JournalError::cannot_open(
                journal,
                format!("its lock file {} is not a regular file", path.display()),
            ));
        }
        if let Err(error) = flock(&file) {
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
        Ok(Self {
            _file: file,
            journal: None,
            created: (!existed).then_some(path),
        })
    }

    /// Locks the journal file itself (open on `file`), so that another name for the same file
    /// (a symbolic or hard link) is refused too. Held until the lock is dropped.
    pub fn hold_journal(&mut self, journal: &Path, file: File) -> Result<(), JournalError> {
        match flock(&file) {
            Ok(()) => {
                self.journal = Some(file);
                Ok(())
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                Err(JournalError::Locked {
                    path: journal.to_path_buf(),
                    pid: None,
                })
            }
            Err(error) => Err(JournalError::cannot_open(
                journal,
                format!("cannot lock it: {error}"),
            )),
        }
    }

    /// Opening failed: the `.lock` file this call created is removed, so a wrong path leaves
    /// nothing behind.
    pub fn discard(self) {
        if let Some(path) = &self.created {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An exclusive, non-blocking `flock`.
fn flock(file: &File) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor we own; it has no memory effects.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
