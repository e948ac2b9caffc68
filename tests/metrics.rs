//! The metrics endpoint against the real thing: events flow through the embedded broker and
//! the real runtime, a real Prometheus server (Debian's `prometheus`, started here on loopback)
//! scrapes `/metrics`, and its HTTP query API must return what happened: events handled, dead
//! letters, consumer lag while paused and after the drain, open escalations. `promtool check
//! metrics` must accept the exposition, and `/readyz` must follow the broker down and up.

mod common;
// Polled (HTTP look-ups: there is no event to await in another process).
#[path = "support/ports.rs"]
mod ports;
mod tui_support;
#[path = "support/eventually.rs"]
mod waiting;
use ports::free_port;

use std::collections::BTreeSet;
use std::path::PathBuf;

use std::process::{Child, Command, Stdio};

use common::*;
use incident_console::config::Config;
use incident_console::kafka::embedded::Fault;
use incident_console::observe::{self, Observer, Sources};
use incident_console::output::OutputRecord;
use incident_console::runtime::RuntimeHandle;
use incident_console::status::{Command as RuntimeCommand, ConnectionState};
use waiting::eventually_ok;

fn created(id: i64, priority: &str) -> Vec<u8> {
    format!(
        r#"{{"event_type":"incident_created","incident_id":{id},"title":"disk full on db-{id}","priority":"{priority}","status":"open","category":"hardware","reported_by":"mon","assigned_to":"alice","created_at":"2024-01-01T10:00:00Z"}}"#
    )
    .into_bytes()
}

async fn start_observer(handle: &RuntimeHandle, config: &Config) -> Observer {
    let sources = Sources::new(
        handle.snapshots.clone(),
        handle.consumer_status.clone(),
        handle.journal_stats.clone(),
    );
    observe::start("127.0.0.1:0", config, sources)
        .await
        .expect("metrics endpoint")
}

/// `GET url` -> (status, body).
async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// A Prometheus server on loopback scraping `target` every second, stopped on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn asset_path(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every `incident_console_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("incident_console_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

#[test]
fn the_shipped_alert_rules_pass_promtool() {
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(asset_path("assets/prometheus/alerts.yml"))
        .output()
        .expect("promtool (scripts/setup installs prometheus)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(asset_path("assets/grafana/incident-console.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() > 10));
}

/// The broker goes down for real: the self-alert fires once, then clears once when it is back.
/// The threshold is configured down to 1 s here; the shipped durations are tested with a
/// controlled clock in `observe::alerts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_self_alert_starts_and_clears_once() {
    let Setup {
        broker,
        mut config,
        journal_dir: _journal_dir,
    } = setup(1);
    config.monitoring.alerts.broker_unreachable_secs = 1;
    let (handle, _records) = spawn_runtime(&config);
    let (alert_tx, mut alerts) = tokio::sync::mpsc::channel(16);
    let sources = Sources::new(
        handle.snapshots.clone(),
        handle.consumer_status.clone(),
        handle.journal_stats.clone(),
    )
    .with_output(Some(alert_tx.downgrade()));
    let probe = sources.clone();
    let observer = observe::start("127.0.0.1:0", &config, sources)
        .await
        .expect("metrics endpoint");
    let mut status = handle.consumer_status.clone();
    wait_for(&mut status, "assignment", |s| {
        s.connection == ConnectionState::Connected && !s.assigned_partitions.is_empty()
    })
    .await;
    // Connecting at start may itself have fired; once nothing fires (the watch task records
    // that after sending any clear), start counting from here.
    eventually_ok(DEADLINE, "no self-alert firing", async || {
        let firing = probe.firing();
        if firing.is_empty() {
            Ok(())
        } else {
            Err(format!("{firing:?}"))
        }
    })
    .await;
    while alerts.try_recv().is_ok() {}

    broker.embedded().inject(Fault::BrokerDown(-1)).unwrap();
    let next = async |alerts: &mut tokio::sync::mpsc::Receiver<_>| match tokio::time::timeout(
        DEADLINE,
        alerts.recv(),
    )
    .await
    {
        Ok(Some(OutputRecord::SelfAlert {
            alert,
            state,
            detail,
        })) => (alert, state, detail),
        other => panic!("expected a self-alert record, got {other:?}"),
    };
    let (alert, state, detail) = next(&mut alerts).await;
    assert_eq!((alert.as_str(), state), ("broker_unreachable", "firing"));
    assert!(detail.contains("Kafka unreachable"), "{detail}");
    let (code, text) = get(&format!("http://{}/metrics", observer.addr)).await;
    assert_eq!(code, 200);
    assert!(
        text.contains("incident_console_self_alert_firing{alert=\"broker_unreachable\"} 1"),
        "{text}"
    );
    broker.embedded().inject(Fault::BrokerUp(-1)).unwrap();
    let (alert, state, _) = next(&mut alerts).await;
    assert_eq!((alert.as_str(), state), ("broker_unreachable", "cleared"));
    // Once each way: nothing more while connected.
    wait_for(&mut status, "connected", |s| {
        s.connection == ConnectionState::Connected
    })
    .await;
    assert!(alerts.try_recv().is_err());

    handle
        .commands
        .send(RuntimeCommand::Shutdown)
        .await
        .unwrap();
    handle.task.await.unwrap().unwrap();
    observer.shutdown();
}

async fn start_prometheus(target: std::net::SocketAddr) -> Prometheus {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: incident-console\n    static_configs:\n      \
             - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus (scripts/setup installs it)");
    let prometheus = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let ready = format!("{}/-/ready", prometheus.url);
    eventually_ok(
        DEADLINE,
        "prometheus to be ready",
        async || match reqwest::get(&ready).await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(response.status().to_string()),
            Err(error) => Err(error.to_string()),
        },
    )
    .await;
    prometheus
}

impl Prometheus {
    /// The value of an instant query that yields one sample, if it does.
    async fn value(&self, query: &str) -> Result<f64, String> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            &[("query", query)],
        )
        .map_err(|e| e.to_string())?;
        let response = reqwest::get(url).await.map_err(|e| e.to_string())?;
        let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
        let result = &body["data"]["result"];
        let samples = result.as_array().ok_or_else(|| body.to_string())?;
        match samples.as_slice() {
            [sample] => sample["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| sample.to_string()),
            other => Err(format!("{} samples: {result}", other.len())),
        }
    }

    async fn wait_for_value(&self, query: &str, expected: f64) {
        eventually_ok(
            DEADLINE,
            &format!("{query} == {expected}"),
            async || match self.value(query).await {
                Ok(value) if value == expected => Ok(()),
                Ok(value) => Err(format!("{value}")),
                Err(error) => Err(error),
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_events_lag_and_escalations() {
    let Setup {
        broker: _broker,
        config,
        journal_dir: _journal_dir,
    } = setup(3);
    let producer = producer(&config);
    let topic = config.kafka.topic.clone();
    let (handle, mut records) = spawn_runtime(&config);
    let observer = start_observer(&handle, &config).await;
    let prometheus = start_prometheus(observer.addr).await;
    let mut status = handle.consumer_status.clone();
    wait_for(&mut status, "assignment", |s| {
        s.connection == ConnectionState::Connected && !s.assigned_partitions.is_empty()
    })
    .await;

    // Twelve new incidents, half of them high priority (each opens an escalation at level
    // 1), and two messages that do not decode.
    for id in 1..=12 {
        let priority = if id % 2 == 1 { "high" } else { "low" };
        send(
            &producer,
            &topic,
            &id.to_string(),
            Some(&created(id, priority)),
        )
        .await;
    }
    send(&producer, &topic, "bad-1", Some(b"{not json")).await;
    send(&producer, &topic, "bad-2", Some(b"[]")).await;
    let mut seen = Vec::new();
    collect_until(&mut records, &mut seen, |r| {
        count_events(r) == 12 && count_dead_letters(r) == 2
    })
    .await;

    prometheus
        .wait_for_value(
            r#"incident_console_events_handled_total{event_type="incident_created"}"#,
            12.0,
        )
        .await;
    prometheus
        .wait_for_value("sum(incident_console_dead_letters_total)", 2.0)
        .await;
    prometheus
        .wait_for_value(r#"incident_console_escalations_open{level="1"}"#, 6.0)
        .await;
    prometheus
        .wait_for_value("sum(incident_console_consumer_lag)", 0.0)
        .await;
    prometheus
        .wait_for_value("incident_console_ready", 1.0)
        .await;

    // Held paused while seven more arrive: the lag shows, per partition, and drains on resume.
    handle.commands.send(RuntimeCommand::Pause).await.unwrap();
    wait_for(&mut status, "paused", |s| s.paused).await;
    for id in 100..107 {
        send(
            &producer,
            &topic,
            &id.to_string(),
            Some(&created(id, "low")),
        )
        .await;
    }
    prometheus
        .wait_for_value("sum(incident_console_consumer_lag)", 7.0)
        .await;
    prometheus
        .wait_for_value(
            "sum(incident_console_consumer_high_watermark) - sum(incident_console_consumer_committed_offset)",
            7.0,
        )
        .await;
    prometheus
        .wait_for_value("incident_console_consumer_paused", 1.0)
        .await;
    handle.commands.send(RuntimeCommand::Resume).await.unwrap();
    prometheus
        .wait_for_value("sum(incident_console_consumer_lag)", 0.0)
        .await;
    prometheus
        .wait_for_value("sum(incident_console_events_handled_total)", 19.0)
        .await;
    prometheus
        .wait_for_value("incident_console_processing_seconds_count", 19.0)
        .await;
    // The journal's writer times its transactions: some have been committed by now.
    prometheus
        .wait_for_value(
            "clamp_max(incident_console_journal_write_seconds_count, 1)",
            1.0,
        )
        .await;

    // The exposition passes Prometheus's own linter.
    let (code, text) = get(&format!("http://{}/metrics", observer.addr)).await;
    assert_eq!(code, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The shipped alert rules and dashboard ask only for metrics that exist.
    let exported: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    for asset in [
        "assets/prometheus/alerts.yml",
        "assets/grafana/incident-console.json",
    ] {
        let content = std::fs::read_to_string(asset_path(asset)).unwrap();
        for name in metric_names(&content) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| exported.contains(base));
            assert!(
                exported.contains(name.as_str()) || base.is_some(),
                "{asset} uses {name}, which /metrics does not export"
            );
        }
    }

    handle
        .commands
        .send(RuntimeCommand::Shutdown)
        .await
        .unwrap();
    handle.task.await.unwrap().unwrap();
    observer.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_broker_down_and_up() {
    let Setup {
        broker,
        config,
        journal_dir: _journal_dir,
    } = setup(1);
    let (handle, _records) = spawn_runtime(&config);
    let observer = start_observer(&handle, &config).await;
    let base = format!("http://{}", observer.addr);
    let (code, body) = get(&format!("{base}/healthz")).await;
    assert_eq!((code, body.as_str()), (200, "ok: running\n"));

    let readyz = format!("{base}/readyz");
    let expect = async |want: u16, reason: &str| {
        eventually_ok(DEADLINE, &format!("/readyz {want} {reason}"), async || {
            let (code, body) = get(&readyz).await;
            if code == want && body.starts_with(reason) && body.ends_with('\n') {
                Ok(body)
            } else {
                Err(format!(
                    "{code} {body} {:?}",
                    handle.consumer_status.borrow()
                ))
            }
        })
        .await
    };
    expect(200, "ready: 1 partition(s)").await;
    broker.embedded().inject(Fault::BrokerDown(-1)).unwrap();
    let body = expect(503, "Kafka unreachable").await;
    assert_eq!(body.lines().count(), 1, "{body}");
    broker.embedded().inject(Fault::BrokerUp(-1)).unwrap();
    expect(200, "ready").await;

    handle
        .commands
        .send(RuntimeCommand::Shutdown)
        .await
        .unwrap();
    handle.task.await.unwrap().unwrap();
    observer.shutdown();
}

#[test]
fn a_bad_metrics_address_is_refused_naming_the_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_incident-console"))
        .args(["--metrics-addr", "9464", "--print-config"])
        .env_remove("INCIDENT_CONSOLE_CONFIG")
        .output()
        .expect("binary");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--metrics-addr: `9464` is not HOST:PORT"),
        "{stderr}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_incident-console"))
        .args(["--metrics-addr", "127.0.0.1:9464", "--print-config"])
        .env_remove("INCIDENT_CONSOLE_CONFIG")
        .output()
        .expect("binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("metrics_addr: Some(\"127.0.0.1:9464\")"),
        "{stdout}"
    );
}

#[test]
fn the_console_header_shows_firing_self_alerts_in_colour() {
    use ratatui::style::Color;
    let (alerts_tx, alerts_rx) = tokio::sync::watch::channel(Vec::new());
    let mut app = tui_support::story_app().with_self_alerts(Some(alerts_rx));
    let screen = tui_support::render_screen(&mut app, 160, 48);
    assert!(!tui_support::text(screen.backend().buffer()).contains("self-alert"));
    alerts_tx.send_replace(vec!["broker_unreachable".into(), "lag_high".into()]);
    let screen = tui_support::render_screen(&mut app, 160, 48);
    let buffer = screen.backend().buffer();
    let row = tui_support::row_with(buffer, "self-alert");
    assert!(
        row.contains("⚠ self-alert: broker_unreachable, lag_high"),
        "{row}"
    );
    assert_eq!(
        tui_support::style_at(buffer, "self-alert").fg,
        Some(Color::Red)
    );
}
