//! Alerts about the console itself reach its administrators for real: the headless binary
//! (`--no-tui`, metrics server on) against the embedded broker, mailing through a real SMTP
//! server (aiosmtpd) and posting to a real HTTP receiver. Each condition is provoked for real:
//! every broker down, fetches failing while events arrive (stuck and lag), a poison burst, a
//! mail server that refuses. For each, the start and the clear notification must arrive
//! exactly once: counted after the console has stopped, so nothing more can come.
//!
//! Thresholds and durations are set short here through the configuration (they are user
//! settings); the shipped ones are tested on a controlled clock in `observe::alerts`.

mod common;
#[path = "support/notify_servers.rs"]
mod servers;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use incident_console::config::Config;
use incident_console::kafka::embedded::Fault;
use incident_console::notify::Channel;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use servers::{HttpReceiver, SinkOptions, SmtpSink};
use tokio::sync::mpsc;

const BINARY: &str = env!("CARGO_BIN_EXE_incident-console");

/// The shipped configuration on the test's broker and journal, mailing new incidents and
/// self-alerts to `admins@example.com` through the SMTP sink.
fn config(setup: &Setup, smtp_port: u16) -> Config {
    let mut config = servers::mail_admins_config(smtp_port);
    config.kafka = setup.config.kafka.clone();
    config.journal = setup.config.journal.clone();
    config.notifications.self_alerts.channels = vec![Channel::Email];
    config
}

/// The console binary, headless, with its stdout records on a channel.
struct Console {
    child: Child,
    records: mpsc::UnboundedReceiver<serde_json::Value>,
    metrics: String,
    /// Self-alert records seen so far, in order: (alert, state).
    seen: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Console {
    fn start(config: &Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.ron");
        std::fs::write(
            &path,
            ron::ser::to_string_pretty(config, ron::ser::PrettyConfig::default()).unwrap(),
        )
        .unwrap();
        let metrics = format!("127.0.0.1:{}", servers::free_port());
        let mut child = Command::new(BINARY)
            .args(["--no-tui", "--metrics-addr", &metrics, "--config"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .expect("start the console");
        let stdout = child.stdout.take().unwrap();
        let (tx, records) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(record) = serde_json::from_str(&line)
                    && tx.send(record).is_err()
                {
                    break;
                }
            }
        });
        Self {
            child,
            records,
            metrics,
            seen: Vec::new(),
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200: connected, partitions assigned (an HTTP look-up in
    /// another process: polled, bounded).
    async fn ready(&self) {
        let url = format!("http://{}/readyz", self.metrics);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Ok(response) = reqwest::get(&url).await
                && response.status().is_success()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "console not ready; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of the first `/metrics` line starting with `prefix`.
    async fn metric(&self, prefix: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
    }

    /// Waits for the self-alert record `alert` in `state` (other records pass by).
    async fn self_alert(&mut self, alert: &str, state: &str, within: Duration) {
        let wanted = (alert.to_string(), state.to_string());
        let deadline = tokio::time::Instant::now() + within;
        while !self.seen.contains(&wanted) {
            match tokio::time::timeout_at(deadline, self.records.recv()).await {
                Ok(Some(record)) => self.take(&record),
                other => panic!(
                    "no self-alert {alert} {state} ({other:?}); seen {:?}; log:\n{}",
                    self.seen,
                    self.log()
                ),
            }
        }
    }

    fn take(&mut self, record: &serde_json::Value) {
        if record["kind"] == "self_alert" {
            self.seen.push((
                record["alert"].as_str().unwrap_or_default().into(),
                record["state"].as_str().unwrap_or_default().into(),
            ));
        }
    }

    /// SIGTERM, then waits for a clean exit (the notifier finishes its deliveries first);
    /// afterwards nothing more can arrive anywhere.
    async fn stop(mut self) -> Vec<(String, String)> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit {status}; log:\n{}", self.log());
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "console did not stop"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        while let Some(record) = self.records.recv().await {
            self.take(&record);
        }
        std::mem::take(&mut self.seen)
    }
}

/// The self-alert mails, as (alert, state) from their subjects, in arrival order.
fn self_alert_mails(smtp: &SmtpSink) -> Vec<(String, String)> {
    smtp.mails()
        .iter()
        .filter_map(|mail| {
            assert_eq!(mail.rcpt_tos, ["admins@example.com"]);
            let subject = mail.subject();
            let rest = subject.strip_prefix("[incident-console] self-alert ")?;
            let (state, rest) = rest.split_once(": ")?;
            let (alert, _) = rest.split_once(": ")?;
            Some((alert.to_string(), state.to_string()))
        })
        .collect()
}

/// Waits until the self-alert mails include (alert, state).
async fn mailed(smtp: &SmtpSink, alert: &str, state: &str) {
    let wanted = (alert.to_string(), state.to_string());
    servers::eventually(DEADLINE, &format!("mail {alert} {state}"), || {
        self_alert_mails(smtp).contains(&wanted).then_some(())
    })
    .await;
}

fn pair(alert: &str) -> Vec<(String, String)> {
    vec![
        (alert.to_string(), "firing".to_string()),
        (alert.to_string(), "cleared".to_string()),
    ]
}

fn created(id: i64) -> Vec<u8> {
    String::from_utf8(fixture("incident_created.json"))
        .unwrap()
        .replace("123", &id.to_string())
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_mails_the_administrators_once_at_start_and_once_at_clear() {
    let setup = setup(1);
    let smtp = SmtpSink::start().await;
    let mut config = config(&setup, smtp.port);
    config.monitoring.alerts.broker_unreachable_secs = 2;
    let mut console = Console::start(&config);
    console.ready().await;

    setup
        .broker
        .embedded()
        .inject(Fault::BrokerDown(-1))
        .unwrap();
    console
        .self_alert("broker_unreachable", "firing", DEADLINE)
        .await;
    mailed(&smtp, "broker_unreachable", "firing").await;
    setup.broker.embedded().inject(Fault::BrokerUp(-1)).unwrap();
    console
        .self_alert("broker_unreachable", "cleared", DEADLINE)
        .await;
    mailed(&smtp, "broker_unreachable", "cleared").await;
    console.ready().await;

    let records = console.stop().await;
    assert_eq!(records, pair("broker_unreachable"));
    assert_eq!(self_alert_mails(&smtp), pair("broker_unreachable"));
    let mail = &smtp.mails()[0];
    assert!(mail.body().contains("Kafka unreachable"), "{}", mail.body());
    // The journal has them like any notification: decided, routed, delivered.
    let journal = rusqlite::Connection::open(config.journal.path.as_ref().unwrap()).unwrap();
    let mut statement = journal
        .prepare("SELECT dedup_key, state FROM notifications WHERE kind = 'self_alert' ORDER BY id")
        .unwrap();
    let rows: Vec<(String, String)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].0.starts_with("self-alert/broker_unreachable/") && rows[0].0.ends_with("/firing")
    );
    assert!(rows[1].0.ends_with("/cleared"));
    assert!(
        rows.iter().all(|(_, state)| state == "delivered"),
        "{rows:?}"
    );
}

/// Held paused while events arrive (the operator's pause key; the headless binary has none,
/// so this one runs the runtime and the metrics server in process, with the real notifier
/// and SMTP server): lag grows and `lag_high` is mailed once; paused is not stuck. Resumed,
/// the backlog drains and the clear is mailed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_held_paused_while_events_arrive_mails_lag_once_each_way() {
    use incident_console::observe::{self, Sources};
    use incident_console::output::OutputRecord;
    use incident_console::status::{Command as RuntimeCommand, ConnectionState};
    let setup = setup(1);
    let smtp = SmtpSink::start().await;
    let mut config = config(&setup, smtp.port);
    config.monitoring.alerts.lag_above = 5;
    config.monitoring.alerts.lag_for_secs = 2;
    config.monitoring.alerts.stuck_for_secs = 1;
    let (handle, _records) = spawn_runtime(&config);
    let (alert_tx, mut alerts) = mpsc::channel(16);
    let sources = Sources::new(
        handle.snapshots.clone(),
        handle.consumer_status.clone(),
        handle.journal_stats.clone(),
    )
    .with_output(Some(alert_tx.downgrade()))
    .with_commands(&handle.commands);
    let observer = observe::start("127.0.0.1:0", &config, sources)
        .await
        .expect("metrics endpoint");
    let mut status = handle.consumer_status.clone();
    wait_for(&mut status, "assignment", |s| {
        s.connection == ConnectionState::Connected && !s.assigned_partitions.is_empty()
    })
    .await;
    // One event handled and committed first, so lag has a committed offset to count from.
    let producer = producer(&config);
    send(&producer, &config.kafka.topic, "k", Some(&created(1))).await;
    wait_for(&mut status, "a commit", |s| {
        s.partitions.iter().any(|p| p.committed_offset == Some(1))
    })
    .await;
    handle.commands.send(RuntimeCommand::Pause).await.unwrap();
    wait_for(&mut status, "paused", |s| s.paused).await;
    for id in 2..=21 {
        send(&producer, &config.kafka.topic, "k", Some(&created(id))).await;
    }
    let mut next = async || match tokio::time::timeout(DEADLINE, alerts.recv()).await {
        Ok(Some(OutputRecord::SelfAlert { alert, state, .. })) => (alert, state.to_string()),
        other => panic!("expected a self-alert record, got {other:?}"),
    };
    assert_eq!(
        next().await,
        pair("lag_high")[0],
        "paused is lag, not stuck"
    );
    mailed(&smtp, "lag_high", "firing").await;
    handle.commands.send(RuntimeCommand::Resume).await.unwrap();
    assert_eq!(next().await, pair("lag_high")[1]);
    mailed(&smtp, "lag_high", "cleared").await;

    handle
        .commands
        .send(RuntimeCommand::Shutdown)
        .await
        .unwrap();
    handle.task.await.unwrap().unwrap();
    observer.shutdown();
    assert!(
        alerts.try_recv().is_err(),
        "nothing more, stuck never fired"
    );
    assert_eq!(self_alert_mails(&smtp), pair("lag_high"));
    // The 21 incidents were mailed too, the 20 held ones once resumed.
    assert_eq!(smtp.mails().len(), 21 + 2);
}

/// Every fetch fails while events arrive: lag grows (the metrics server asks the broker for
/// the watermarks itself) and nothing is handled, though not paused: `lag_high` and `stuck`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_held_while_events_arrive_is_stuck_and_lagging_then_recovers() {
    let setup = setup(1);
    let smtp = SmtpSink::start().await;
    let mut config = config(&setup, smtp.port);
    config.monitoring.alerts.stuck_for_secs = 2;
    config.monitoring.alerts.lag_above = 5;
    config.monitoring.alerts.lag_for_secs = 2;
    let mut console = Console::start(&config);
    console.ready().await;
    let producer = producer(&config);
    let topic = config.kafka.topic.clone();

    // One event handled and committed first, so lag has a committed offset to count from.
    send(&producer, &topic, "k", Some(&created(1))).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while console
        .metric("incident_console_consumer_committed_offset{")
        .await
        != Some(1.0)
    {
        assert!(tokio::time::Instant::now() < deadline, "no commit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    setup
        .broker
        .embedded()
        .inject(Fault::RequestErrors(
            RDKafkaApiKey::Fetch,
            vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 100_000],
        ))
        .unwrap();
    for id in 2..=21 {
        send(&producer, &topic, "k", Some(&created(id))).await;
    }
    console.self_alert("lag_high", "firing", DEADLINE).await;
    console.self_alert("stuck", "firing", DEADLINE).await;
    mailed(&smtp, "lag_high", "firing").await;
    mailed(&smtp, "stuck", "firing").await;

    setup
        .broker
        .embedded()
        .inject(Fault::ClearRequestErrors(RDKafkaApiKey::Fetch))
        .unwrap();
    console.self_alert("stuck", "cleared", DEADLINE).await;
    console.self_alert("lag_high", "cleared", DEADLINE).await;
    mailed(&smtp, "stuck", "cleared").await;
    mailed(&smtp, "lag_high", "cleared").await;

    let mut records = console.stop().await;
    records.sort();
    let mut expected = [pair("lag_high"), pair("stuck")].concat();
    expected.sort();
    assert_eq!(records, expected);
    let mut mails = self_alert_mails(&smtp);
    mails.sort();
    assert_eq!(mails, expected, "one mail each way per alert");
    // The held events were handled after all: 21 incidents mailed besides the alerts.
    assert_eq!(smtp.mails().len(), 21 + 4);
}

/// A burst of malformed messages: more dead letters in a minute than allowed. It clears when
/// the burst has left the one-minute window (the window is fixed: about a minute's wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_burst_mails_once_when_it_starts_and_once_when_it_has_passed() {
    let setup = setup(1);
    let smtp = SmtpSink::start().await;
    let mut config = config(&setup, smtp.port);
    config.monitoring.alerts.dead_letters_per_minute = 5;
    config.monitoring.alerts.dead_letters_for_secs = 1;
    let mut console = Console::start(&config);
    console.ready().await;
    let producer = producer(&config);
    for _ in 0..10 {
        send(&producer, &config.kafka.topic, "bad", Some(b"{not json")).await;
    }
    console.self_alert("dead_letters", "firing", DEADLINE).await;
    mailed(&smtp, "dead_letters", "firing").await;
    console
        .self_alert(
            "dead_letters",
            "cleared",
            DEADLINE + Duration::from_secs(60),
        )
        .await;
    mailed(&smtp, "dead_letters", "cleared").await;

    assert_eq!(console.stop().await, pair("dead_letters"));
    assert_eq!(self_alert_mails(&smtp), pair("dead_letters"));
}

/// The mail server refuses every message: the email channel fails, and the alert about it
/// goes to the administrators' other channel (a webhook), never to the failing one. A mail
/// delivered again clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_mail_server_is_reported_on_the_webhook_and_cleared_when_mail_flows() {
    let setup = setup(1);
    let mut smtp = SmtpSink::start_with(SinkOptions {
        refuse: true,
        ..SinkOptions::default()
    })
    .await;
    let mut webhook = HttpReceiver::start().await;
    let mut config = config(&setup, smtp.port);
    config.notifications.self_alerts.channels = vec![Channel::Email, Channel::Webhook];
    config.notifications.webhook.url = Some(webhook.url("/admins"));
    config.monitoring.alerts.channel_failing_secs = 1;
    let mut console = Console::start(&config);
    console.ready().await;
    let producer = producer(&config);

    send(&producer, &config.kafka.topic, "k", Some(&created(1))).await;
    console
        .self_alert("channel_failing:email", "firing", DEADLINE)
        .await;
    let firing = webhook.wait_ok("/admins", 1).await;
    assert_eq!(firing[0].body["notification"], "self_alert");
    assert_eq!(firing[0].body["fields"]["alert"], "channel_failing:email");
    assert_eq!(firing[0].body["fields"]["state"], "firing");
    assert!(
        firing[0].body["fields"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("smtp_554")),
        "{}",
        firing[0].body
    );

    smtp.stop();
    smtp.set_refusing(false);
    smtp.restart().await;
    send(&producer, &config.kafka.topic, "k", Some(&created(2))).await;
    console
        .self_alert("channel_failing:email", "cleared", DEADLINE)
        .await;
    let both = webhook.wait_ok("/admins", 2).await;
    assert_eq!(both[1].body["fields"]["state"], "cleared");
    // Start and clear are two notifications of one episode, each with its own key.
    let key = |i: usize| {
        both[i].body["dedup_key"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_ne!(key(0), key(1));
    assert_eq!(
        both[0].headers.get("idempotency-key").cloned(),
        Some(key(0))
    );

    assert_eq!(console.stop().await, pair("channel_failing:email"));
    let received = webhook.on("/admins");
    let states: Vec<&str> = received
        .iter()
        .map(|r| r.body["fields"]["state"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        states,
        ["firing", "cleared"],
        "once each way on the webhook"
    );
    // The refused mail was never kept; the second incident's mail arrived; no self-alert mail.
    assert_eq!(smtp.mails().len(), 1);
    assert!(self_alert_mails(&smtp).is_empty());
}

/// The configuration example in docs/server.md parses and names the administrators' channels.
#[test]
fn the_documented_example_parses() {
    let doc = include_str!("../docs/server.md");
    let example = doc
        .split("```ron\n")
        .map(|block| block.split("```").next().unwrap())
        .find(|block| block.contains("self_alerts"))
        .expect("an example with self_alerts");
    let config = Config::parse(example, "docs/server.md").expect("the example parses");
    assert_eq!(
        config.notifications.self_alerts.channels,
        [Channel::Email, Channel::Webhook, Channel::PagerDuty]
    );
    assert_eq!(
        config.notifications.self_alerts.min_interval_secs, 900,
        "left out: the default"
    );
    assert!(
        Config::built_in()
            .notifications
            .self_alerts
            .channels
            .is_empty(),
        "nobody is notified unless configured"
    );
}
