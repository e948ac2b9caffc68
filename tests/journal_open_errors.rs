//! Every way opening a journal can fail gives an error that names the file and says what to
//! do, and none of them panics.

mod journal_common;
#[path = "support/eventually.rs"]
mod waiting;

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use incident_console::journal::{Journal, JournalConfig, JournalError};
use journal_common::*;
use waiting::eventually_blocking;

fn open_error(path: &Path) -> JournalError {
    Journal::open(path, &JournalConfig::default()).expect_err("the open should fail")
}

/// The message names the file and offers a way forward.
fn assert_helpful(error: &JournalError, path: &Path, advice: &str) {
    let text = error.to_string();
    // Shown with --nocapture: what a person would read.
    eprintln!("{text}");
    assert!(
        text.contains(&path.display().to_string()),
        "`{text}` should name {}",
        path.display()
    );
    assert!(text.contains(advice), "`{text}` should say `{advice}`");
}

#[test]
fn a_directory_where_the_file_should_be() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    std::fs::create_dir(&path).unwrap();
    let error = open_error(&path);
    assert!(
        matches!(error, JournalError::CannotOpen { .. }),
        "{error:?}"
    );
    assert_helpful(&error, &path, "pass --journal PATH");
    assert!(error.to_string().contains("it is a directory"), "{error}");
}

#[test]
fn a_parent_that_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data"), b"not a directory").unwrap();
    let path = dir.path().join("data/journal.sqlite3");
    let error = open_error(&path);
    assert!(
        matches!(error, JournalError::CannotOpen { .. }),
        "{error:?}"
    );
    assert_helpful(&error, &path, "check that the path is a file you can write");
    assert!(error.to_string().contains("is not a directory"), "{error}");
}

#[test]
fn a_path_that_leads_nowhere() {
    // (Tests run as root, who reads any file whatever its mode, so "unreadable" is made of a
    // path that cannot be opened: a link into a directory that does not exist, as when the
    // disk it points at is not mounted.)
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    std::os::unix::fs::symlink("/proc/self/no/such/journal", &path).unwrap();
    let error = open_error(&path);
    assert!(
        matches!(error, JournalError::CannotOpen { .. }),
        "{error:?}"
    );
    assert_helpful(&error, &path, "pass --journal PATH");
}

/// Set in the child process that opens the journal as an unprivileged user.
const CHILD_PATH: &str = "JOURNAL_TEST_OPEN_AS_CHILD";

#[test]
fn a_file_its_user_cannot_read() {
    if let Some(path) = std::env::var_os(CHILD_PATH) {
        // The child: an ordinary user who may not read the file.
        let path = Path::new(&path);
        let error = open_error(path);
        assert!(
            matches!(error, JournalError::CannotOpen { .. }),
            "{error:?}"
        );
        println!("child got: {error}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    written_journal(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let error = open_error(&path);
        assert!(
            matches!(error, JournalError::CannotOpen { .. }),
            "{error:?}"
        );
        assert_helpful(&error, &path, "check that the path is a file you can write");
        return;
    }
    // Root reads any file whatever its mode, so this test runs itself again as `nobody`.
    // The directory lets that user create the lock file; the journal itself stays 0000.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // The test binary may sit under a directory `nobody` cannot enter: run a link to it (or a
    // copy, across filesystems) from this one.
    let exe = std::env::current_exe().unwrap();
    let child_exe = dir.path().join("journal-test-child");
    if std::fs::hard_link(&exe, &child_exe).is_err() {
        std::fs::copy(&exe, &child_exe).unwrap();
    }
    std::fs::set_permissions(&child_exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&child_exe)
        .args(["--exact", "a_file_its_user_cannot_read", "--nocapture"])
        .env(CHILD_PATH, &path)
        .output()
        .expect("setpriv(1) from util-linux");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("child got: "))
        .unwrap_or_else(|| panic!("the child did not run the check:\n{stdout}"));
    assert!(line.contains(&path.display().to_string()), "{line}");
    assert!(line.contains("Permission denied"), "{line}");
    assert!(line.contains("pass --journal PATH"), "{line}");
}

#[test]
fn a_text_file_is_not_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    let error = open_error(&path);
    assert!(
        matches!(error, JournalError::NotAJournal { .. }),
        "{error:?}"
    );
    assert_helpful(&error, &path, "move it aside");
    // Nothing was overwritten.
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("these are my notes")
    );
}

#[test]
fn another_programs_database_is_not_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE recipes (name TEXT); INSERT INTO recipes VALUES ('soup');")
        .unwrap();
    let error = open_error(&path);
    assert!(
        matches!(error, JournalError::NotAJournal { .. }),
        "{error:?}"
    );
    assert_helpful(&error, &path, "move it aside");
    assert!(error.to_string().contains("another program"), "{error}");
    let name: String = inspect(&path)
        .query_row("SELECT name FROM recipes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(name, "soup", "the other database is left alone");
}

/// A journal with some content, closed, so that its file can be damaged.
fn written_journal(path: &Path) {
    let mut journal = Journal::open(path, &JournalConfig::default()).unwrap();
    let records: Vec<_> = (0..500).map(|offset| handled(0, offset, t(0))).collect();
    journal.write(&records).unwrap();
    journal.checkpoint().unwrap();
}

fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn a_damaged_schema_page_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    written_journal(&path);
    // Page 1 after the 100-byte header holds the table of tables.
    overwrite(&path, 100, &[0xA5; 3000]);
    let error = open_error(&path);
    assert!(matches!(error, JournalError::Corrupt { .. }), "{error:?}");
    assert_helpful(
        &error,
        &path,
        "move it aside together with its -wal and -shm files",
    );
}

#[test]
fn a_damaged_header_is_not_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    written_journal(&path);
    overwrite(&path, 0, b"SQLite format 2\0");
    let error = open_error(&path);
    assert!(
        matches!(
            error,
            JournalError::NotAJournal { .. } | JournalError::Corrupt { .. }
        ),
        "{error:?}"
    );
    assert_helpful(&error, &path, "move it aside");
}

#[test]
fn damaged_data_pages_fail_queries_with_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    written_journal(&path);
    let size = std::fs::metadata(&path).unwrap().len();
    // Everything after the first two pages: the tables and indexes.
    overwrite(&path, 8192, &vec![0x5A; (size - 8192) as usize]);
    match Journal::open(&path, &JournalConfig::default()) {
        Err(error) => {
            assert!(matches!(error, JournalError::Corrupt { .. }), "{error:?}");
            assert_helpful(&error, &path, "move it aside");
        }
        Ok(mut journal) => {
            let looked_up = journal.contains_event(TOPIC, 0, 400);
            let written = journal.write(&[handled(0, 9999, t(1))]);
            let error = looked_up
                .err()
                .or(written.err())
                .expect("reading or writing damaged pages fails");
            assert!(matches!(error, JournalError::Corrupt { .. }), "{error:?}");
            assert_helpful(&error, &path, "move it aside");
        }
    }
}

#[test]
fn a_journal_from_a_newer_release_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    written_journal(&path);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (99, 'later')",
            [],
        )
        .unwrap();
    let error = open_error(&path);
    assert_eq!(
        error,
        JournalError::TooNew {
            path: path.clone(),
            found: 99,
            supported: 6
        }
    );
    assert_helpful(&error, &path, "upgrade");
}

#[test]
fn a_second_open_in_the_same_process_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    let first = Journal::open(&path, &JournalConfig::default()).unwrap();
    let error = open_error(&path);
    assert_eq!(
        error,
        JournalError::Locked {
            path: path.clone(),
            pid: Some(std::process::id())
        }
    );
    assert_helpful(&error, &path, "another incident-console");
    assert!(error.to_string().contains("--journal PATH"), "{error}");
    drop(first);
    // Free again once closed. Not always at the same instant: a child process that another
    // test of this binary is starting holds a copy of every descriptor between its fork and
    // its exec (close-on-exec closes them only then), and a `flock` lasts until the last copy
    // closes. That exec is an event in another thread this test cannot await, so it waits
    // for the lock to be free, bounded, and then opens for real.
    eventually_blocking(
        Duration::from_secs(10),
        "the journal free again once closed",
        || (!matches!(open_error_or_ok(&path), Err(JournalError::Locked { .. }))).then_some(()),
    );
    Journal::open(&path, &JournalConfig::default()).expect("free again once closed");
}

/// `Journal::open`, closed again at once when it succeeds.
fn open_error_or_ok(path: &Path) -> Result<(), JournalError> {
    Journal::open(path, &JournalConfig::default()).map(drop)
}

/// Kills the child when the test ends, however it ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_journal_held_by_another_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    written_journal(&path);
    let lock = format!("{}.lock", path.display());
    // flock(1) takes the same kind of lock another incident-console holds, in another
    // process, and says when it has it.
    let mut child = Command::new("flock")
        .args([
            "--exclusive",
            &lock,
            "sh",
            "-c",
            "echo locked; exec sleep 60",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("flock(1) from util-linux");
    let stdout = child.stdout.take().unwrap();
    let _guard = ChildGuard(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    let error = open_error(&path);
    assert!(matches!(error, JournalError::Locked { .. }), "{error:?}");
    assert_helpful(&error, &path, "another incident-console");
    assert!(error.to_string().contains("stop it"), "{error}");
}

#[test]
fn a_journal_locked_inside_sqlite_by_another_program_is_reported_as_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(dir.path());
    written_journal(&path);
    // A sqlite3 shell holding an exclusive transaction, as a person might leave one open.
    let mut child = Command::new("sqlite3")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sqlite3 shell");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = ChildGuard(child);
    writeln!(stdin, "BEGIN EXCLUSIVE; SELECT count(*) FROM events;").unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert_eq!(line.trim(), "500", "the shell holds its transaction");
    let started = Instant::now();
    let error = open_error(&path);
    assert!(matches!(error, JournalError::Busy { .. }), "{error:?}");
    assert_helpful(&error, &path, "locked by another program");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it gives up, it does not hang"
    );
    drop(stdin);
    // Once the shell is gone, the journal opens.
    drop(_guard);
    eventually_blocking(Duration::from_secs(10), "the journal to open", || {
        Journal::open(&path, &JournalConfig::default())
            .ok()
            .map(drop)
    });
}

#[test]
fn no_data_directory_is_explained() {
    let error = JournalError::NoDataDir.to_string();
    assert!(error.contains("journal.path"), "{error}");
    assert!(error.contains("--journal PATH"), "{error}");
}
