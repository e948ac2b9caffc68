//! "A hostile day" (issue 13): the console used the wrong way, through the real binary, a real
//! embedded broker in its own process, real pipes, real signals and real files. Each test
//! reproduces one of the defects the issue lists and checks the fixed behaviour.

#[path = "support/processes.rs"]
mod processes;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use incident_console::journal::{Journal, JournalConfig, JournalError};
use processes::{BINARY, Process, lines_of};

/// Only reached on failure; a debug build on a loaded two-core machine is slow to join a group.
const DEADLINE: Duration = Duration::from_secs(90);
const PARTITIONS: i32 = 3;
const EVENTS: u64 = 600;

impl Process {
    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory effects.
        let sent = unsafe { libc::kill(self.0.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits for the exit; fails the test (and the drop kills it) after `DEADLINE`.
    fn wait(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: still running after {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn console_command(args: &[&str]) -> Command {
    console_with_config(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.ron")),
        args,
    )
}

fn console_with_config(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("INCIDENT_CONSOLE_CONFIG")
        .env_remove("INCIDENT_CONSOLE_BROKERS")
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env("NO_COLOR", "")
        .stdin(Stdio::null());
    command
}

/// The embedded broker in its own process, with `topic` and its dead-letter topic.
fn start_broker(topic: &str) -> (processes::Broker, String) {
    let dead_letters = format!("{topic}.dlq");
    processes::start_broker(PARTITIONS, &[topic, &dead_letters], Stdio::null())
}

/// `count` valid simulated events on `topic`, confirmed by the broker.
fn produce(bootstrap: &str, topic: &str, count: u64) {
    let mut simulate = Process(
        Command::new(BINARY)
            .args(["simulate", "-b", bootstrap, "-t", topic, "--rate", "0"])
            .args(["--count", &count.to_string(), "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(simulate.wait("simulate").success());
}

/// Offsets the group committed, summed over the partitions: with offsets from 0 and every
/// message valid, how many events a restart will not see again.
fn committed(bootstrap: &str, group: &str, topic: &str) -> i64 {
    processes::committed(bootstrap, topic, group, PARTITIONS)
        .into_iter()
        .map(|offset| offset.unwrap_or(0))
        .sum()
}

/// The headless console consuming `topic` in `group` from the start, no journal.
fn headless(bootstrap: &str, topic: &str, group: &str) -> Command {
    let mut command = console_command(&["--no-tui", "--no-journal", "--from-beginning"]);
    command
        .args(["-b", bootstrap, "-t", topic, "-g", group])
        .args(["-X", "auto.commit.interval.ms=200"]);
    command
}

fn is_event(line: &str) -> bool {
    line.starts_with(r#"{"kind":"event""#)
}

/// A pipe whose kernel buffer holds one page, so that what was written but never read is
/// small and known. Returns (read end, write end, buffer size).
fn small_pipe() -> (std::fs::File, OwnedFd, usize) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, which are then owned here.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors from pipe2, each owned once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own.
    let size = unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 4096) };
    assert!(
        size > 0,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    (std::fs::File::from(read), write, size as usize)
}

/// Issue 13, item 1 (and item 2 headless): `| head -n 5`. The console stops at once when its
/// reader goes, exits 141, and has committed no more than it wrote; a restart gets the rest,
/// and SIGHUP stops that one gracefully with everything committed.
#[test]
fn a_closed_pipe_stops_the_console_and_commits_only_what_was_written() {
    let topic = "pipe-incidents";
    let (_broker, bootstrap) = start_broker(topic);
    produce(&bootstrap, topic, EVENTS);

    let (mut reader, write_end, pipe_size) = small_pipe();
    let mut first = Process(
        headless(&bootstrap, topic, "head1")
            .stdout(Stdio::from(write_end))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Like `head -n 5`: read until five lines are complete, then close the pipe.
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 512];
    while bytes.iter().filter(|&&b| b == b'\n').count() < 5 {
        let n = reader.read(&mut chunk).unwrap();
        assert!(n > 0, "the console closed stdout early");
        bytes.extend_from_slice(&chunk[..n]);
    }
    drop(reader);
    let text = String::from_utf8_lossy(&bytes);
    let complete: Vec<&str> = text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .collect();
    let events_read = complete.iter().filter(|l| is_event(l)).count() as i64;
    let shortest = complete.iter().map(|l| l.len()).min().unwrap();

    let status = first.wait("the console after its reader went");
    assert_eq!(status.code(), Some(141), "{status:?}");

    // What it wrote: the lines read (one more may be partly read), and what fitted in the
    // pipe's buffer, which nobody read.
    let written_at_most = events_read + 1 + (pipe_size / shortest) as i64 + 1;
    let committed_first = committed(&bootstrap, "head1", topic);
    assert!(
        committed_first <= written_at_most,
        "{committed_first} offsets committed, at most {written_at_most} events written"
    );

    // The restart gets every event not committed, then stops on SIGHUP, committing them.
    let mut second = Process(
        headless(&bootstrap, topic, "head1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines = lines_of(second.0.stdout.take().unwrap());
    let expected = EVENTS as i64 - committed_first;
    let deadline = Instant::now() + DEADLINE;
    let mut seen = 0;
    while seen < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("restart: {seen} of {expected} events"));
        seen += i64::from(is_event(&line));
    }
    second.signal(libc::SIGHUP);
    let status = second.wait("the console after SIGHUP");
    assert!(status.success(), "SIGHUP: {status:?}");
    assert_eq!(committed(&bootstrap, "head1", topic), EVENTS as i64);
}

/// Issue 13, item 1: `>/dev/full`. The first flush fails: exit 74 at once, nothing committed.
#[test]
fn a_full_disk_on_stdout_stops_the_console_with_nothing_committed() {
    let topic = "full-incidents";
    let (_broker, bootstrap) = start_broker(topic);
    produce(&bootstrap, topic, 50);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut console = Process(
        headless(&bootstrap, topic, "full1")
            .stdout(full)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = lines_of(console.0.stderr.take().unwrap());
    let status = console.wait("the console writing to /dev/full");
    assert_eq!(status.code(), Some(74), "{status:?}");
    let log: Vec<String> = stderr.try_iter().collect();
    assert!(
        log.iter()
            .any(|l| l.contains("cannot write to stdout") && l.contains("No space left")),
        "{log:#?}"
    );
    assert_eq!(committed(&bootstrap, "full1", topic), 0);
}

/// Issue 13, item 6 (and 10): `simulate` against an unreachable broker stops on SIGINT and on
/// SIGTERM instead of waiting five minutes for deliveries; its log on a pipe has no colour.
#[test]
fn simulate_stops_on_signals_and_logs_without_colour_to_a_pipe() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mut simulate = Process(
            Command::new(BINARY)
                .args(["simulate", "-b", "127.0.0.1:1", "-t", "x", "--count", "10"])
                .args(["--log-level", "info"])
                .env_remove("RUST_LOG")
                .env_remove("NO_COLOR")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stderr = lines_of(simulate.0.stderr.take().unwrap());
        let mut log = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        while !log.iter().any(|l: &String| l.contains("simulating")) {
            let left = deadline.saturating_duration_since(Instant::now());
            log.push(stderr.recv_timeout(left).expect("simulate starts"));
        }
        simulate.signal(signal);
        let status = simulate.wait("simulate after a signal");
        assert!(status.success(), "signal {signal}: {status:?}");
        log.extend(stderr.try_iter());
        assert!(
            log.iter().all(|l| !l.contains('\x1b')),
            "colour codes on a pipe: {log:#?}"
        );
    }
}

/// Runs the binary expecting it to fail quickly; returns its stderr.
fn failure(mut command: Command) -> String {
    let mut child = Process(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait("a refused start");
    assert!(!status.success(), "it should fail; stderr: {stderr}");
    assert_eq!(status.signal(), None, "{stderr}");
    stderr
}

/// Issue 13, item 9: each bad flag is named in one sentence, at once, without connecting.
#[test]
fn bad_flags_are_named_at_start() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["-g", ""], &["-g/--group"]),
        (&["-t", ""], &["-t/--topic"]),
        (&["-b", ""], &["-b/--brokers"]),
        (
            &["-b", "127.0.0.1:99999"],
            &["127.0.0.1:99999", "not a port number"],
        ),
    ];
    for (args, expected) in cases {
        let mut command = console_command(&["--no-tui", "--no-journal"]);
        command.args(*args);
        let stderr = failure(command);
        for text in *expected {
            assert!(stderr.contains(text), "{args:?}: `{text}` not in: {stderr}");
        }
    }
}

fn config_with(dir: &Path, from: &str, to: &str) -> PathBuf {
    let text = incident_console::config::DEFAULT_CONFIG.replacen(from, to, 1);
    assert_ne!(text, incident_console::config::DEFAULT_CONFIG, "{from}");
    let path = dir.join("config.ron");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Issue 13, item 8: a dead-letter topic equal to the consumed one is refused at start.
#[test]
fn a_dead_letter_topic_that_is_the_consumed_topic_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        "dead_letter_topic: None",
        r#"dead_letter_topic: Some("hostile")"#,
    );
    let command = console_with_config(
        &config,
        &[
            "--no-tui",
            "--no-journal",
            "-t",
            "hostile",
            "-b",
            "127.0.0.1:1",
        ],
    );
    let stderr = failure(command);
    assert!(
        stderr.contains("kafka.dead_letter_topic `hostile` is the consumed topic"),
        "{stderr}"
    );
}

/// Issue 13, item 9: the configuration's place is named: a line, a variable, a path.
#[test]
fn configuration_errors_name_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), "timeout_secs: 900", "timeout_secs: 0");
    let line = 1 + std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .position(|l| l.contains("timeout_secs: 0"))
        .unwrap();
    let command = console_with_config(&config, &["--print-config"]);
    let stderr = failure(command);
    assert!(
        stderr.contains(&format!("{}:{line}: ", config.display())),
        "line {line}: {stderr}"
    );

    let missing = dir.path().join("missing.ron");
    let mut command = Command::new(BINARY);
    command
        .arg("--print-config")
        .env("INCIDENT_CONSOLE_CONFIG", &missing);
    let stderr = failure(command);
    assert!(stderr.contains("$INCIDENT_CONSOLE_CONFIG"), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");

    let nowhere = dir.path().join("file/sub/config.ron");
    std::fs::write(dir.path().join("file"), "").unwrap();
    let mut command = Command::new(BINARY);
    command.args(["init-config", "--path"]).arg(&nowhere);
    let stderr = failure(command);
    assert!(stderr.contains(&nowhere.display().to_string()), "{stderr}");
}

/// Issue 13, item 11: `--config /dev/zero` is refused at the size limit, not read forever.
#[test]
fn an_endless_config_is_refused() {
    let mut command = Command::new(BINARY);
    command.args(["--print-config", "--config", "/dev/zero"]);
    let stderr = failure(command);
    assert!(
        stderr.contains("/dev/zero") && stderr.contains("larger than"),
        "{stderr}"
    );
}

/// Issue 13, item 7: property values never appear in errors, from `-X` or from the file.
#[test]
fn property_values_are_not_echoed_in_errors() {
    let mut command = console_command(&["--no-tui", "--no-journal", "-b", "127.0.0.1:1"]);
    command.args(["-X", "sasl.pasword=SUPERSECRET99"]);
    let stderr = failure(command);
    assert!(stderr.contains("sasl.pasword"), "{stderr}");
    assert!(!stderr.contains("SUPERSECRET99"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        "properties: {}",
        r#"properties: {"sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule required password=\"JAASSECRET77\";"}"#,
    );
    let command = console_with_config(&config, &["--no-tui", "--no-journal", "-b", "127.0.0.1:1"]);
    let stderr = failure(command);
    assert!(stderr.contains("sasl.jaas.config"), "{stderr}");
    assert!(!stderr.contains("JAASSECRET77"), "{stderr}");
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

fn lock_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn fifo(path: &Path) {
    let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Issue 13, item 4: a wrong journal path keeps its mode and gets no `.lock` beside it.
#[test]
fn a_wrong_journal_path_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("textfile.txt");
    std::fs::write(&text, "my notes\n").unwrap();
    std::fs::set_permissions(&text, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = Journal::open(&text, &JournalConfig::default()).unwrap_err();
    assert!(matches!(error, JournalError::NotAJournal { .. }), "{error}");
    assert_eq!(mode(&text), 0o644);
    assert!(!lock_file(&text).exists());
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "my notes\n");

    // A FIFO stands for a device (`/dev/full`): something that is not a file at all.
    let pipe = dir.path().join("pipe");
    fifo(&pipe);
    let error = Journal::open(&pipe, &JournalConfig::default()).unwrap_err();
    assert!(error.to_string().contains("not a regular file"), "{error}");
    assert_eq!(mode(&pipe), 0o644);
    assert!(!lock_file(&pipe).exists());
}

/// Issue 13, item 4: `init-config --force` on something that is not a regular file refuses,
/// naming it, and leaves its mode alone.
#[test]
fn init_config_refuses_what_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("pipe");
    fifo(&pipe);
    let mut command = Command::new(BINARY);
    command
        .args(["init-config", "--force", "--path"])
        .arg(&pipe);
    let stderr = failure(command);
    assert!(stderr.contains(&pipe.display().to_string()), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
    assert_eq!(mode(&pipe), 0o644);
}

/// Issue 13, item 5: another name for the same journal (symbolic or hard link) is refused
/// while the first one is open.
#[test]
fn the_journal_lock_holds_through_links() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite3");
    let first = Journal::open(&path, &JournalConfig::default()).unwrap();
    let symlink = dir.path().join("symlink.sqlite3");
    std::os::unix::fs::symlink(&path, &symlink).unwrap();
    let hard = dir.path().join("hard.sqlite3");
    std::fs::hard_link(&path, &hard).unwrap();
    for other in [&symlink, &hard] {
        let error = Journal::open(other, &JournalConfig::default()).unwrap_err();
        assert!(
            matches!(error, JournalError::Locked { .. }),
            "{}: {error}",
            other.display()
        );
    }
    drop(first);
    Journal::open(&hard, &JournalConfig::default()).unwrap();
}

/// Issue 13, item 13: one journal, a fresh broker with 200 events consumed, then another
/// fresh broker (a recreated topic, another cluster) with 200 new events at the same offsets:
/// all 200 are handled, none skipped as "already handled", and the old records are kept
/// aside under another name.
#[test]
fn a_topic_on_another_cluster_is_not_taken_for_handled() {
    const COUNT: u64 = 200;
    let topic = "recreated-incidents";
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.sqlite3");
    for round in 0..2 {
        let (_broker, bootstrap) = start_broker(topic);
        produce(&bootstrap, topic, COUNT);
        let mut console = Process(
            console_command(&["--no-tui", "--from-beginning"])
                .arg("--journal")
                .arg(&journal)
                .args(["-b", &bootstrap, "-t", topic, "-g", "recreated"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let lines = lines_of(console.0.stdout.take().unwrap());
        let deadline = Instant::now() + DEADLINE;
        let mut handled = 0;
        while handled < COUNT {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("round {round}: {handled} of {COUNT} handled"));
            handled += u64::from(is_event(&line));
        }
        console.signal(libc::SIGTERM);
        assert!(console.wait("the console after SIGTERM").success());
    }
    let connection = rusqlite::Connection::open(&journal).unwrap();
    let count = |sql: &str| -> i64 { connection.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM events WHERE kafka_topic = 'recreated-incidents'"),
        COUNT as i64
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM events WHERE kafka_topic LIKE 'recreated-incidents (cluster %'"
        ),
        COUNT as i64
    );
}

/// Issue 13, item 12: a run whose journal refused writes (a full disk; here the file-size
/// limit `ulimit -f`, which fails a write the same way without needing a small filesystem)
/// used to exit 0. It exits 74 naming the journal, holds back the offsets of what was not
/// journaled, and a restart with room handles the rest: nothing lost.
#[test]
fn a_journal_that_cannot_be_written_fails_the_run_and_loses_nothing() {
    use std::os::unix::process::CommandExt;
    let topic = "fsize-incidents";
    let (_broker, bootstrap) = start_broker(topic);
    const MANY: u64 = 3_000;
    produce(&bootstrap, topic, MANY);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let journal_arg = journal.to_str().unwrap().to_string();
    let console = |limited: bool| {
        let mut command = console_command(&["--no-tui", "--from-beginning"]);
        command
            .args(["--journal", &journal_arg])
            .args(["-b", &bootstrap, "-t", topic, "-g", "fsize1"])
            .args(["-X", "auto.commit.interval.ms=200"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if limited {
            // Room for the new journal's schema and a few hundred events, not 3,000.
            const LIMIT: libc::rlim_t = 400 * 1024;
            // SAFETY: setrlimit in the child between fork and exec; no allocation.
            unsafe {
                command.pre_exec(|| {
                    let limit = libc::rlimit {
                        rlim_cur: LIMIT,
                        rlim_max: LIMIT,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut process = Process(command.spawn().unwrap());
        let stdout = lines_of(process.0.stdout.take().unwrap());
        let stderr = lines_of(process.0.stderr.take().unwrap());
        (process, stdout, stderr)
    };
    // Until every event was handled (printed): the journal refused some of them meanwhile.
    let await_events = |stdout: &mpsc::Receiver<String>, count: u64| {
        let mut seen = 0;
        while seen < count {
            let line = stdout
                .recv_timeout(DEADLINE)
                .unwrap_or_else(|_| panic!("{seen} of {count} events printed"));
            if is_event(&line) {
                seen += 1;
            }
        }
    };

    let (mut first, stdout, stderr) = console(true);
    await_events(&stdout, MANY);
    first.signal(libc::SIGTERM);
    let status = first.wait("the console whose journal is full");
    let log: Vec<String> = stderr.try_iter().collect();
    assert_eq!(status.code(), Some(74), "{status:?}\n{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("the journal")
            && l.contains("refused")
            && l.contains("read again at the next start")),
        "{log:#?}"
    );
    let held = committed(&bootstrap, "fsize1", topic);
    assert!(
        held < MANY as i64,
        "everything was committed although the journal refused writes"
    );

    // With room: the events the journal did not take come again and are handled (those it
    // took are recognised and not printed again), so the group gets to the end.
    let (mut second, _stdout, _stderr) = console(false);
    let deadline = Instant::now() + DEADLINE;
    while committed(&bootstrap, "fsize1", topic) < MANY as i64 {
        assert!(Instant::now() < deadline, "the restart did not commit all");
        std::thread::sleep(Duration::from_millis(100));
    }
    second.signal(libc::SIGTERM);
    assert!(second.wait("the restart").success());
}
