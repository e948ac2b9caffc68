//! What an installed tool carries, through the real binary: `--version` (commit, build date,
//! librdkafka), shell completions that bash parses and sources, a man page that `man -l`
//! renders, and `doctor` against a wrong broker, the embedded one, a real SMTP server and a
//! real HTTP server.

#[path = "support/processes.rs"]
mod processes;
#[path = "support/notify_servers.rs"]
mod servers;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use processes::{BINARY, start_broker};
use servers::{HttpReceiver, SmtpSink, free_port, write_private_config};

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_remove("INCIDENT_CONSOLE_CONFIG")
        .stdin(Stdio::null());
    for (name, value) in envs {
        command.env(name, value);
    }
    command.output().expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

#[test]
fn version_names_the_commit_the_build_date_and_the_librdkafka_linked() {
    let output = run(&["--version"], &[]);
    assert!(output.status.success());
    let text = stdout(&output);
    let mut lines = text.lines();
    let first = lines.next().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        first.starts_with(&format!("incident-console {version} (commit ")),
        "{first}"
    );
    // The commit is the checkout's, when there is one (CI builds from a clone).
    if let Ok(git) = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        && git.status.success()
    {
        let head = String::from_utf8(git.stdout).unwrap();
        assert!(
            first.contains(&format!("(commit {}, ", head.trim())),
            "{first}"
        );
    }
    let date = first.rsplit("built ").next().unwrap().trim_end_matches(')');
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").expect("a build date");
    match option_env!("SOURCE_DATE_EPOCH") {
        // A reproducible build says the date it was given, not today's.
        Some(epoch) => {
            let given = chrono::DateTime::from_timestamp(epoch.parse().unwrap(), 0).unwrap();
            assert_eq!(date, given.date_naive());
        }
        None => assert!(date <= chrono::Utc::now().date_naive()),
    }
    let (_, linked) = rdkafka::util::get_rdkafka_version();
    assert_eq!(lines.next(), Some(format!("librdkafka {linked}").as_str()));
    // -V is the one line.
    let short = stdout(&run(&["-V"], &[]));
    assert_eq!(short.trim(), first);
}

#[test]
fn bash_completion_parses_sources_and_completes_subcommands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(&["completions", "bash"], &[]);
    assert!(output.status.success());
    let script = dir.path().join("incident-console.bash");
    std::fs::write(&script, &output.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Sourced, it registers itself and completes what a user types.
    let complete = |words: &str| -> Vec<String> {
        let session = format!(
            "set -e; source {}; complete -p incident-console >/dev/null; \
             COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); \
             COMP_LINE=\"{words}\"; COMP_POINT=${{#COMP_LINE}}; \
             _incident__console incident-console \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let output = Command::new("bash")
            .args(["-c", &session])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout(&output).lines().map(str::to_string).collect()
    };
    assert_eq!(complete("incident-console do"), ["doctor"]);
    let flags = complete("incident-console --from-");
    for flag in ["--from-beginning", "--from-offset", "--from-time"] {
        assert!(flags.iter().any(|f| f == flag), "{flag} in {flags:?}");
    }
    assert_eq!(complete("incident-console completions fi"), ["fish"]);
    assert_eq!(complete("incident-console doctor --j"), ["--json"]);
    assert_eq!(complete("incident-console replay --dry"), ["--dry-run"]);
}

#[test]
fn zsh_and_fish_completions_come_from_the_same_definition() {
    let zsh = stdout(&run(&["completions", "zsh"], &[]));
    assert!(zsh.starts_with("#compdef incident-console"), "{zsh:.80}");
    assert!(zsh.contains("doctor") && zsh.contains("--from-offset"));
    let fish = stdout(&run(&["completions", "fish"], &[]));
    assert!(fish.contains("complete -c incident-console"));
    assert!(fish.contains("doctor") && fish.contains("from-offset"));
    // A reader that stops early is not a crash.
    let mut child = Command::new(BINARY)
        .args(["completions", "fish"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
}

#[test]
fn the_man_page_renders_with_man_and_names_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(&["man"], &[]);
    assert!(output.status.success());
    let page = dir.path().join("incident-console.1");
    std::fs::write(&page, &output.stdout).unwrap();
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man is installed (scripts/setup)");
    assert!(
        rendered.status.success(),
        "man -l: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    // No groff warnings: a broken request would show here.
    assert_eq!(String::from_utf8_lossy(&rendered.stderr), "");
    let text = stdout(&rendered);
    for needle in [
        "incident-console - Terminal operations console",
        "--from-offset",
        "INCIDENT-CONSOLE DOCTOR",
        "INCIDENT-CONSOLE COMPLETIONS",
        "INCIDENT-CONSOLE REPLAY",
        "--dry-run",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

fn doctor(args: &[&str]) -> (bool, Vec<serde_json::Value>) {
    // The console's own flags come before the subcommand.
    let mut all = args.to_vec();
    all.extend_from_slice(&["doctor", "--json"]);
    let output = run(&all, &[("RUST_LOG", "error")]);
    let lines = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    (output.status.success(), lines)
}

/// `doctor` off the runtime's threads: the servers it talks to run on them.
async fn doctor_blocking(args: &[&str]) -> (bool, Vec<serde_json::Value>) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        doctor(&args)
    })
    .await
    .unwrap()
}

fn check<'a>(lines: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|line| line["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {lines:?}"))
}

#[test]
fn doctor_fails_on_a_broker_that_is_not_there() {
    // A loopback port nobody listens on.
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let output = run(
        &["--no-journal", "-b", &brokers, "doctor"],
        &[("RUST_LOG", "error")],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stdout(&output);
    let line = text
        .lines()
        .find(|l| l.starts_with("FAIL brokers"))
        .unwrap_or_else(|| panic!("no failed brokers line in:\n{text}"));
    assert!(line.contains(&brokers), "{line}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("1 check(s) failed"),
        "{output:?}"
    );
}

#[test]
fn doctor_fails_on_a_config_error_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.ron");
    std::fs::write(&path, "(\n  kafka: (\n    topic: 7,\n  ),\n)\n").unwrap();
    let (ok, lines) = doctor(&["--config", path.to_str().unwrap()]);
    assert!(!ok);
    let config = check(&lines, "config");
    assert_eq!(config["status"], "fail");
    let detail = config["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("{}:3", path.display())),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_on_the_embedded_broker_and_reaches_channels_without_sending() {
    let (_broker, bootstrap) = start_broker(
        3,
        &["incidents-created", "incidents-created.dlq"],
        Stdio::null(),
    );
    let smtp = SmtpSink::start().await;
    let http = HttpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = servers::mail_admins_config(smtp.port);
    config.kafka.topic = "incidents-created".into();
    config.notifications.webhook.url = Some(http.url("/hooks/incidents"));
    let config_path = dir.path().join("config.ron");
    write_private_config(&config, &config_path);
    // A journal held by "another console": the lock file with a pid, locked.
    let journal = dir.path().join("journal.sqlite3");
    std::fs::write(&journal, vec![0u8; 4096]).unwrap();
    let lock = hold_lock(&journal, 4242);
    let args = [
        "--config",
        config_path.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
        "-b",
        &bootstrap,
    ];
    let (ok, lines) = doctor_blocking(&args).await;
    assert!(ok, "{lines:#?}");
    assert_eq!(
        check(&lines, "config")["detail"],
        config_path.to_str().unwrap()
    );
    let journal_line = check(&lines, "journal")["detail"].as_str().unwrap();
    assert!(journal_line.contains("4.0 KiB"), "{journal_line}");
    assert!(
        journal_line.contains("locked by pid 4242"),
        "{journal_line}"
    );
    assert_eq!(check(&lines, "brokers")["status"], "ok");
    for topic in ["incidents-created", "incidents-created.dlq"] {
        let line = check(&lines, &format!("topic {topic}"));
        assert_eq!(line["status"], "ok");
        assert_eq!(line["detail"], "3 partition(s)");
    }
    let email = check(&lines, "notify email");
    assert_eq!(email["status"], "ok", "{email}");
    assert!(email["detail"].as_str().unwrap().contains("EHLO"));
    assert_eq!(check(&lines, "notify webhook")["status"], "ok");
    assert_eq!(check(&lines, "notify slack")["status"], "skip");
    // Reached, not used: no mail, no POST.
    assert!(smtp.mails().is_empty());
    let mut http = http;
    assert!(http.drain().is_empty());
    drop(lock);
    // And a channel that does not answer fails the run.
    config.notifications.webhook.url = Some(format!("http://127.0.0.1:{}/x", free_port()));
    write_private_config(&config, &config_path);
    let args = [
        "--config",
        config_path.to_str().unwrap(),
        "--no-journal",
        "-b",
        &bootstrap,
    ];
    let (ok, lines) = doctor_blocking(&args).await;
    assert!(!ok);
    assert_eq!(check(&lines, "notify webhook")["status"], "fail");
    assert_eq!(check(&lines, "journal")["status"], "skip");
}

/// Holds `<journal>.lock` as a console does, with `pid` written in it.
fn hold_lock(journal: &Path, pid: u32) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let mut path = journal.as_os_str().to_owned();
    path.push(".lock");
    std::fs::write(&path, format!("{pid}\n")).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY: flock on a descriptor owned here.
    assert_eq!(
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    file
}
