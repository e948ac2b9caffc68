//! The real binary in a pseudo-terminal: `--demo` on the embedded broker, read back through a
//! vt100 parser, driven with the keys an operator would press. Every wait polls the parsed
//! screen with a deadline; nothing sleeps to synchronise.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};

const OPERATOR: &str = "e2e-op";
/// The mock broker's group rebalance takes about 3 s before the first message; a debug build
/// on a loaded two-core machine needs more. Generous, and only reached on failure.
const FIRST_EVENTS: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_secs(15);

/// What a terminal that knows synchronized output does: bytes inside a frame (between
/// `CSI ? 2026 h` and `CSI ? 2026 l`) are shown only once the frame is whole, so a test never
/// reads a screen half old and half new.
#[derive(Default)]
struct Frames {
    pending: Vec<u8>,
}

impl Frames {
    const BEGIN: &'static [u8] = b"\x1b[?2026h";
    const END: &'static [u8] = b"\x1b[?2026l";

    /// The bytes that may be shown now; an unfinished frame waits for the rest of it.
    fn take_whole(&mut self, read: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(read);
        let last = |needle: &[u8]| {
            self.pending
                .windows(needle.len())
                .rposition(|w| w == needle)
        };
        let cut = match (last(Self::BEGIN), last(Self::END)) {
            (Some(begin), Some(end)) if begin < end => self.pending.len(),
            (Some(begin), _) => begin,
            (None, _) => self.pending.len(),
        };
        // A marker split across two reads: keep its start back too.
        let cut = (1..Self::BEGIN.len())
            .rev()
            .find(|&k| cut == self.pending.len() && self.pending.ends_with(&Self::BEGIN[..k]))
            .map_or(cut, |k| cut - k);
        let rest = self.pending.split_off(cut);
        std::mem::replace(&mut self.pending, rest)
    }
}

#[test]
fn a_frame_is_shown_only_when_whole() {
    let mut frames = Frames::default();
    assert_eq!(frames.take_whole(b"plain"), b"plain");
    assert_eq!(frames.take_whole(b"a\x1b[?2026hhalf"), b"a");
    assert_eq!(frames.take_whole(b" more\x1b[?20"), b"");
    assert_eq!(
        frames.take_whole(b"26lb\x1b[?2"),
        b"\x1b[?2026hhalf more\x1b[?2026lb"
    );
    assert_eq!(
        frames.take_whole(b"026hc\x1b[?2026l"),
        b"\x1b[?2026hc\x1b[?2026l"
    );
}

struct Console {
    /// Held so the pseudo-terminal stays open while the console runs.
    _master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    parser: Arc<Mutex<vt100::Parser>>,
    /// How many whole synchronized frames the console has written.
    frames: Arc<AtomicUsize>,
    reader: Option<JoinHandle<()>>,
}

impl Console {
    fn start(args: &[&str], rows: u16, cols: u16) -> Self {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pseudo-terminal");
        let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_incident-console"));
        command.arg("--config");
        command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config.ron"));
        command.args(args);
        command.env("USER", OPERATOR);
        command.env("TERM", "xterm-256color");
        command.env_remove("RUST_LOG");
        command.env_remove("INCIDENT_CONSOLE_BROKERS");
        command.env_remove("KAFKA_BOOTSTRAP_SERVERS");
        command.cwd(env!("CARGO_MANIFEST_DIR"));
        let child = pair
            .slave
            .spawn_command(command)
            .expect("start incident-console");
        drop(pair.slave);
        let parser = Arc::new(Mutex::new(vt100::Parser::new(rows, cols, 0)));
        let mut stream = pair.master.try_clone_reader().expect("pty reader");
        let sink = parser.clone();
        let frames_seen = Arc::new(AtomicUsize::new(0));
        let counter = frames_seen.clone();
        let reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 64 * 1024];
            let mut frames = Frames::default();
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let whole = frames.take_whole(&buffer[..n]);
                        let ends = whole
                            .windows(Frames::END.len())
                            .filter(|w| *w == Frames::END)
                            .count();
                        counter.fetch_add(ends, Ordering::Relaxed);
                        sink.lock().unwrap().process(&whole);
                    }
                }
            }
        });
        let writer = pair.master.take_writer().expect("pty writer");
        Self {
            _master: pair.master,
            writer,
            child,
            parser,
            reader: Some(reader),
            frames: frames_seen,
        }
    }

    fn screen(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    fn with_screen<T>(&self, f: impl FnOnce(&vt100::Screen) -> T) -> T {
        f(self.parser.lock().unwrap().screen())
    }

    fn press(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).expect("write keys");
        self.writer.flush().expect("flush keys");
    }

    /// Polls the screen until `ready` holds; panics with the screen after `timeout`.
    fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        ready: impl FnMut(&vt100::Screen) -> bool,
    ) {
        self.poll_until(what, timeout, Duration::from_millis(10), ready);
    }

    fn poll_until(
        &mut self,
        what: &str,
        timeout: Duration,
        every: Duration,
        mut ready: impl FnMut(&vt100::Screen) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.with_screen(&mut ready) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the console exited ({status:?}) while waiting for {what}:\n{}",
                    self.screen()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; the screen:\n{}",
                    self.screen()
                );
            }
            std::thread::sleep(every);
        }
    }

    fn wait_for_text(&mut self, text: &str) {
        let text = text.to_string();
        self.wait_until(&format!("`{text}`"), STEP, |s| s.contents().contains(&text));
    }

    fn wait_for_no_text(&mut self, text: &str) {
        let text = text.to_string();
        self.wait_until(&format!("`{text}` to go"), STEP, |s| {
            !s.contents().contains(&text)
        });
    }

    fn wait_for_exit(&mut self, timeout: Duration) -> portable_pty::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "the console did not exit within {timeout:?}; the screen:\n{}",
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The reader thread ends when the pty closes; it is not joined, so a lingering
        // descriptor cannot hang the test.
        drop(self.reader.take());
    }
}

/// Where `needle` is on the screen: (row, column).
fn position(screen: &vt100::Screen, needle: &str) -> Option<(u16, u16)> {
    let (rows, cols) = screen.size();
    for row in 0..rows {
        let line: String = (0..cols)
            .map(|col| {
                screen
                    .cell(row, col)
                    .map(|c| {
                        if c.has_contents() {
                            c.contents().to_string()
                        } else {
                            " ".to_string()
                        }
                    })
                    .unwrap_or_default()
            })
            .collect();
        if let Some(byte) = line.find(needle) {
            let col = line[..byte].chars().count() as u16;
            return Some((row, col));
        }
    }
    None
}

/// The first row in columns `cols` drawn in reverse video: the selected table row.
fn selected_row(screen: &vt100::Screen, col: u16) -> Option<u16> {
    let (rows, _) = screen.size();
    (0..rows).find(|&row| screen.cell(row, col).is_some_and(|c| c.inverse()))
}

/// The "N events" figure of the status line.
fn handled(screen: &vt100::Screen) -> Option<u64> {
    let contents = screen.contents();
    let status = contents.lines().nth(1)?;
    let head = status.split(" events").next()?;
    head.rsplit(' ').next()?.parse().ok()
}

fn incident_in_question(screen: &str) -> Option<String> {
    let start = screen.find("Acknowledge incident #")? + "Acknowledge incident #".len();
    let digits: String = screen[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then_some(digits)
}

#[test]
fn console_end_to_end_in_a_pseudo_terminal() {
    let mut console = Console::start(
        &["--demo", "--demo-rate", "30", "--operator", OPERATOR],
        48,
        160,
    );

    // Events flow: the feed fills and escalations open.
    console.wait_until("events in the feed", FIRST_EVENTS, |s| {
        s.contents().contains("opened (open) by")
    });
    // Each frame is one synchronized update, so a terminal never shows half of one.
    assert!(
        console.frames.load(Ordering::Relaxed) > 0,
        "no synchronized frame written"
    );
    console.wait_until("two open escalations", FIRST_EVENTS, |s| {
        s.contents().matches("unacknowledged").count() >= 2
    });
    assert!(console.screen().contains("CONSUMING"));
    assert!(console.screen().contains("DEMO"));
    assert!(console.screen().contains("● connected"));

    // Pause: the header says so in a yellow block, and the runtime paused the assignment.
    console.press("p");
    console.wait_for_text("PAUSED");
    console.with_screen(|s| {
        let (row, col) = position(s, "PAUSED").unwrap();
        let cell = s.cell(row, col).unwrap();
        assert_eq!(cell.bgcolor(), vt100::Color::Idx(3), "yellow background");
        assert!(cell.bold());
    });
    assert!(!console.screen().contains("CONSUMING"));

    // Focus the escalation queue; j/k move the selection.
    console.press("\t");
    console.wait_for_text("▶ Escalations");
    let (_, esc_col) = console.with_screen(|s| position(s, "▶ Escalations").unwrap());
    console.wait_until("a selected escalation", STEP, |s| {
        selected_row(s, esc_col + 2).is_some()
    });
    let first = console
        .with_screen(|s| selected_row(s, esc_col + 2))
        .unwrap();
    console.press("j");
    console.wait_until("the selection to move down", STEP, |s| {
        selected_row(s, esc_col + 2) == Some(first + 1)
    });
    console.press("k");
    console.wait_until("the selection to move back", STEP, |s| {
        selected_row(s, esc_col + 2) == Some(first)
    });

    // Acknowledge: asked first; `n` leaves it alone, `y` acknowledges as the operator.
    console.press("a");
    console.wait_for_text("Acknowledge escalation");
    let incident = incident_in_question(&console.screen()).expect("the question names it");
    console.press("n");
    console.wait_for_no_text("Acknowledge escalation");
    assert!(!console.screen().contains(&format!("✓ {OPERATOR}")));
    console.press("a");
    console.wait_for_text("Acknowledge escalation");
    assert_eq!(
        incident_in_question(&console.screen()).as_deref(),
        Some(incident.as_str())
    );
    console.press("y");
    let needle = format!("#{incident}");
    let acknowledged = format!("✓ {OPERATOR}");
    console.wait_until("the acknowledger in the queue", STEP, |s| {
        s.contents()
            .lines()
            .any(|line| line.contains(&needle) && line.contains(&acknowledged))
    });
    assert!(console.screen().contains("1 acknowledged"));

    // Details of the selected escalation.
    console.press("\r");
    console.wait_for_text(&format!("escalation · incident #{incident}"));
    assert!(console.screen().contains(&format!("by {OPERATOR} at")));
    console.press("\x1b");
    console.wait_for_no_text("escalation · incident");

    // Back to the feed with shift-tab; scrolling freezes it, g returns to live.
    console.press("\x1b[Z");
    console.wait_for_text("▶ Feed");
    console.press("j");
    console.wait_for_text("view frozen");
    console.press("g");
    console.wait_for_no_text("view frozen");
    console.press("G");
    console.wait_for_text("view frozen");
    console.press("l");
    console.wait_for_no_text("view frozen");
    console.press("\x1b[6~"); // page down
    console.wait_for_text("view frozen");
    console.press("\x1b[H"); // home
    console.wait_for_no_text("view frozen");

    // Details of the newest event, with its payload pretty-printed.
    console.press("\r");
    console.wait_for_text("raw payload");
    assert!(console.screen().contains("\"incident_id\": "));
    console.press("\x1b");
    console.wait_for_no_text("raw payload");

    // Filter the feed to critical incidents; Esc clears it.
    console.press("/");
    console.wait_for_text("filter: █");
    console.press("critical\r");
    console.wait_for_text("filter: critical");
    // Polled rather than read once: the screen may be caught in the middle of a frame.
    console.wait_until("only critical rows in the feed", STEP, |s| {
        // Feed rows are the left pane's lines that start with a time.
        s.contents().lines().all(|line| {
            let left: String = line.chars().take(88).collect();
            let is_feed_row = left.chars().nth(3) == Some(':') && left.chars().nth(6) == Some(':');
            !is_feed_row || left.contains(" CRIT ")
        })
    });
    console.press("\x1b");
    console.wait_for_no_text("filter: critical");

    // Help, with every action; opened with ? and F1, closed with ? and Esc.
    console.press("?");
    console.wait_for_text("Keys —");
    for action in ["acknowledge", "pause", "filter", "focus_next", "quit"] {
        assert!(console.screen().contains(action), "{action} not in help");
    }
    console.press("?");
    console.wait_for_no_text("Keys —");
    console.press("\x1bOP"); // F1
    console.wait_for_text("Keys —");
    console.press("\x1b");
    console.wait_for_no_text("Keys —");

    // Log capture level.
    console.press("+");
    console.wait_for_text("capture debug");
    console.press("-");
    console.wait_for_text("capture info");

    // Resume, then quit: graceful shutdown, exit 0, terminal given back.
    console.press("p");
    console.wait_for_text("CONSUMING");
    console.press("q");
    let status = console.wait_for_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    console.with_screen(|s| {
        assert!(!s.alternate_screen(), "alternate screen left");
        assert!(!s.hide_cursor(), "cursor shown again");
    });
}

/// The whole layout is drawn and the feed shows events. (Not just "created" on the screen:
/// the header names the topic, `incidents-created`, from the first frame on.)
fn events_in_feed(screen: &vt100::Screen) -> bool {
    let contents = screen.contents();
    ["Feed", "Escalations", "Metrics", "Logs"]
        .iter()
        .all(|pane| contents.contains(pane))
        && !contents.contains("waiting for events")
}

#[test]
fn ctrl_c_quits_gracefully_at_80x24() {
    let mut console = Console::start(&["--demo", "--demo-rate", "30"], 24, 80);
    console.wait_until("events in the feed", FIRST_EVENTS, events_in_feed);
    let screen = console.screen();
    for pane in ["Feed", "Escalations", "Metrics", "Logs"] {
        assert!(screen.contains(pane), "{pane} missing at 80x24:\n{screen}");
    }
    console.press("\x03");
    let status = console.wait_for_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    console.with_screen(|s| assert!(!s.alternate_screen()));
}

#[test]
fn a_bad_key_binding_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.ron");
    let text = incident_console::config::DEFAULT_CONFIG.replacen(
        "keys: {},",
        r#"keys: { "pause": ["ctrl-"] },"#,
        1,
    );
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_incident-console"))
        .arg("--config")
        .arg(&path)
        .arg("--print-config")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("field `console.keys`: action `pause`: cannot read key `ctrl-`"),
        "{stderr}"
    );
}

/// Key-to-screen latency under load: the demo at full speed (`--demo-rate 0`), `p` written to
/// the terminal, the time until PAUSED (or CONSUMING) is on the parsed screen. A measurement,
/// not a test: run with
/// `cargo test --release --test tui_pty -- --ignored --nocapture key_to_screen_latency`.
#[test]
#[ignore]
fn key_to_screen_latency_under_load() {
    // LATENCY_DEMO_RATE picks another simulator rate (events per second; 0 = unlimited).
    let rate = std::env::var("LATENCY_DEMO_RATE").unwrap_or_else(|_| "0".into());
    let mut console = Console::start(&["--demo", "--demo-rate", &rate], 48, 160);
    console.wait_until("events in the feed", FIRST_EVENTS, |s| {
        s.contents().contains("opened (open) by")
    });
    // Let the stream build up.
    console.wait_until("5 000 events handled", Duration::from_secs(120), |s| {
        handled(s).is_some_and(|n| n >= 5_000)
    });
    let mut samples = Vec::new();
    for round in 0..40 {
        let target = if round % 2 == 0 {
            "PAUSED"
        } else {
            "CONSUMING"
        };
        let started = Instant::now();
        console.press("p");
        // Polled every 0.5 ms so the figure is not rounded up to the polling interval.
        console.poll_until(target, STEP, Duration::from_micros(500), |s| {
            s.contents().contains(target)
        });
        samples.push(started.elapsed());
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    let p50 = samples[samples.len() / 2];
    let p90 = samples[samples.len() * 9 / 10];
    let max = samples[samples.len() - 1];
    let events = console.with_screen(handled).unwrap_or(0);
    println!(
        "key-to-screen latency over {} presses under --demo-rate {rate}: mean {:.1} ms, p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        samples.len(),
        mean.as_secs_f64() * 1e3,
        p50.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    println!("events handled by the end: {events}");
    console.press("q");
    let status = console.wait_for_exit(Duration::from_secs(60));
    assert!(status.success());
}

/// Key-to-screen latency while the console drains a backlog as fast as it can (the issue 10
/// case: a live stream paced by the consumer is not a flood). The embedded broker is filled
/// with `BACKLOG_EVENTS` events (default 200,000, 12 partitions) before the console starts
/// with its journal; then `?` is pressed again and again, the time until the help opens (or
/// closes) measured each time, without pausing consumption. It prints the percentiles and
/// how many events per second the console handled while the keys were pressed. A
/// measurement, not a test: run with
/// `cargo test --release --test tui_pty -- --ignored --nocapture key_to_screen_latency_draining`.
#[test]
#[ignore]
fn key_to_screen_latency_draining_a_backlog() {
    use std::io::BufRead;
    let events: u64 = std::env::var("BACKLOG_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let binary = env!("CARGO_BIN_EXE_incident-console");
    let mut broker = std::process::Command::new(binary)
        .args(["broker", "--partitions", "12", "-t", "backlog"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the embedded broker");
    let mut line = String::new();
    std::io::BufReader::new(broker.stdout.take().expect("broker stdout"))
        .read_line(&mut line)
        .expect("broker address");
    let bootstrap = line
        .trim()
        .strip_prefix("bootstrap.servers=")
        .unwrap_or_else(|| panic!("the broker printed {line:?}"))
        .to_string();
    let count = events.to_string();
    let filled = std::process::Command::new(binary)
        .args(["simulate", "-b", &bootstrap, "-t", "backlog", "--rate", "0"])
        .args(["--count", &count, "--seed", "7", "--log-level", "warn"])
        .status()
        .expect("run the simulator");
    assert!(filled.success());
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.sqlite3");
    let mut console = Console::start(
        &[
            "-b",
            &bootstrap,
            "-t",
            "backlog",
            "-g",
            "key-latency",
            "-X",
            "auto.offset.reset=earliest",
            "--journal",
            journal.to_str().unwrap(),
        ],
        48,
        160,
    );
    console.wait_until("the drain to start", FIRST_EVENTS, |s| {
        handled(s).is_some_and(|n| n > 0)
    });
    let first = console.with_screen(handled).unwrap_or(0);
    let started = Instant::now();
    let mut samples = Vec::new();
    // Presses until 90 % of the backlog is handled: all of them fall inside the drain.
    while console.with_screen(handled).unwrap_or(0) < events * 9 / 10 && samples.len() < 2000 {
        let opening = samples.len() % 2 == 0;
        let pressed = Instant::now();
        console.press("?");
        // Polled every 0.5 ms so the figure is not rounded up to the polling interval.
        console.poll_until(
            "the help to toggle",
            STEP,
            Duration::from_micros(500),
            |s| s.contents().contains("Keys —") == opening,
        );
        samples.push(pressed.elapsed());
    }
    let elapsed = started.elapsed();
    let last = console.with_screen(handled).unwrap_or(0);
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "key-to-screen latency over {} presses while draining a {events}-event backlog: \
         p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(at(1.0)),
    );
    println!(
        "events handled meanwhile: {} in {:.2} s = {:.0} events/s",
        last - first,
        elapsed.as_secs_f64(),
        (last - first) as f64 / elapsed.as_secs_f64()
    );
    console.press("q");
    let status = console.wait_for_exit(Duration::from_secs(60));
    let _ = broker.kill();
    let _ = broker.wait();
    assert!(status.success());
}

/// Issue 13, item 2: SIGINT, SIGTERM and SIGHUP sent from outside (`kill`, a process manager,
/// `timeout -s INT`) shut the console down like the quit key: exit 0, the terminal given back
/// (main screen, cursor shown, echo and line mode on again).
#[test]
fn signals_from_outside_quit_gracefully_and_give_the_terminal_back() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let mut console = Console::start(&["--demo", "--demo-rate", "30"], 24, 80);
        console.wait_until("events in the feed", FIRST_EVENTS, events_in_feed);
        let fd = console._master.as_raw_fd().expect("pty master descriptor");
        let lflag = |fd| {
            // SAFETY: tcgetattr fills a zeroed termios for a descriptor we hold open.
            let mut termios: libc::termios = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { libc::tcgetattr(fd, &mut termios) }, 0);
            termios.c_lflag
        };
        assert_eq!(lflag(fd) & libc::ECHO, 0, "raw mode while the console runs");
        let pid = console.child.process_id().expect("pid") as libc::pid_t;
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let status = console.wait_for_exit(Duration::from_secs(30));
        assert!(status.success(), "signal {signal}: exit status {status:?}");
        console.with_screen(|s| {
            assert!(
                !s.alternate_screen(),
                "signal {signal}: alternate screen left"
            );
            assert!(!s.hide_cursor(), "signal {signal}: cursor still hidden");
        });
        let flags = lflag(fd);
        assert_ne!(flags & libc::ECHO, 0, "signal {signal}: echo left off");
        assert_ne!(
            flags & libc::ICANON,
            0,
            "signal {signal}: line mode left off"
        );
    }
}

/// Issue 13, item 3: a paste of 1,024 bytes then `q`, as a terminal sends it (wrapped in
/// bracketed-paste marks when the console asked for them, as tmux's paste-buffer -p does):
/// the `q` is read at once and quits, instead of waiting in the kernel for the next key.
#[test]
fn a_long_paste_does_not_stall_the_keys_after_it() {
    let mut console = Console::start(&["--demo", "--demo-rate", "30"], 24, 80);
    console.wait_until("events in the feed", FIRST_EVENTS, events_in_feed);
    let bracketed = console.with_screen(|s| s.bracketed_paste());
    let text = "x".repeat(1024);
    let keys = if bracketed {
        format!("\x1b[200~{text}\x1b[201~q")
    } else {
        format!("{text}q")
    };
    console.press(&keys);
    let status = console.wait_for_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    assert!(bracketed, "the console should ask for bracketed paste");
    console.with_screen(|s| assert!(!s.bracketed_paste(), "bracketed paste left on"));
}

/// The number after `prefix` on the screen.
fn number_after(screen: &str, prefix: &str) -> Option<String> {
    let start = screen.find(prefix)? + prefix.len();
    let digits: String = screen[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then_some(digits)
}

#[test]
fn snooze_from_the_keyboard_marks_the_escalation_and_ends_early() {
    let mut console = Console::start(
        &["--demo", "--demo-rate", "30", "--operator", OPERATOR],
        48,
        160,
    );
    console.wait_until("two open escalations", FIRST_EVENTS, |s| {
        s.contents().matches("unacknowledged").count() >= 2
    });
    console.press("p");
    console.wait_for_text("PAUSED");
    console.press("\t");
    console.wait_for_text("▶ Escalations");

    // s asks for a length and a reason; esc leaves it alone.
    console.press("s");
    console.wait_for_text("Snooze escalation");
    console.press("\x1b");
    console.wait_for_no_text("Snooze escalation");
    assert!(console.screen().contains("not snoozed"));
    console.press("s");
    console.wait_for_text("Snooze escalation");
    let incident =
        number_after(&console.screen(), "Incident #").expect("the form names the incident");
    console.press("db failover");
    console.wait_for_text("Reason: db failover");
    // → picks 1 h; enter snoozes. Marked with when it ends, to the minute (the narrow pane
    // leaves the name to the popup below).
    let pressed = chrono::Local::now();
    let until: Vec<String> = [60, 61]
        .iter()
        .map(|m| {
            let at = pressed + chrono::TimeDelta::minutes(*m);
            format!("silenced {}", at.format("%H:%M"))
        })
        .collect();
    console.press("\x1b[C\r");
    console.wait_for_no_text("Snooze escalation");
    let needle = format!("#{incident} ");
    let marker = "silenced ";
    console.wait_until("the incident marked silenced, until when", STEP, |s| {
        s.contents().lines().any(|line| {
            line.contains(&needle) && until.iter().any(|text| line.contains(text.as_str()))
        })
    });

    // o lists it: an active silence of that incident, for an hour, with its reason.
    console.press("o");
    console.wait_for_text("On call and silences");
    let screen = console.screen();
    assert!(
        screen.contains(&format!(
            "s1 silence active: incident {incident}, by {OPERATOR}"
        )),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("by {OPERATOR}: db failover")),
        "{screen}"
    );
    console.press("\x1b");
    console.wait_for_no_text("On call and silences");

    // x ends it early: the marker goes.
    console.press("x");
    console.wait_until("the silence to end", STEP, |s| {
        !s.contents()
            .lines()
            .any(|line| line.contains(&needle) && line.contains(marker))
    });
    console.press("o");
    console.wait_for_text("On call and silences");
    assert!(
        console
            .screen()
            .contains("none (s snoozes the selected escalation)")
    );
    console.press("\x1b");
    console.wait_for_no_text("On call and silences");
    console.press("q");
    console.wait_for_exit(Duration::from_secs(30));
}

/// The mouse: a click on a feed row selects it (the view freezes there), the wheel over the
/// escalations pane focuses and scrolls it. Written as the SGR mouse reports a terminal sends.
#[test]
fn a_click_selects_a_feed_row_and_the_wheel_scrolls_the_pane_under_it() {
    let (rows, cols) = (48, 160);
    let mut console = Console::start(&["--demo", "--demo-rate", "30"], rows, cols);
    console.wait_until("events in the feed", FIRST_EVENTS, events_in_feed);
    console.wait_until("a full feed pane", FIRST_EVENTS, |s| {
        s.contents().matches("created").count() >= 8
    });
    let layout =
        incident_console::tui::render::layout(ratatui::layout::Rect::new(0, 0, cols, rows));
    // The fourth event row: below the border and the column header.
    let y = layout.feed.y + 1 + 1 + 3;
    let x = layout.feed.x + 4;
    console.press(&format!(
        "\x1b[<0;{};{}M\x1b[<0;{};{}m",
        x + 1,
        y + 1,
        x + 1,
        y + 1
    ));
    console.wait_until("the clicked row selected", STEP, |s| {
        selected_row(s, x) == Some(y) && s.contents().contains("view frozen")
    });
    // The wheel over the escalations pane focuses it.
    let (ex, ey) = (layout.escalations.x + 4, layout.escalations.y + 3);
    console.press(&format!("\x1b[<65;{};{}M", ex + 1, ey + 1));
    console.wait_for_text("▶ Escalations");
    // And the keys still work: tab moves the focus on.
    console.press("\t");
    console.wait_for_text("▶ Metrics");
}
