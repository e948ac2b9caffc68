//! `incident-console doctor`: is this setup going to work? One line per check, as `k9s info`
//! and `atuin doctor` do, and a non-zero exit if any failed. Nothing is sent: a notification
//! channel is reached (SMTP up to EHLO, an HTTP endpoint's origin asked for its headers), a
//! journal's lock is tried and let go at once, and the brokers are asked for metadata only
//! (for every topic, so that a broker with auto-creation creates none).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::cli::Cli;
use crate::config::Config;
use crate::notify::config::Channel;

/// How long the brokers may take to answer a metadata request.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Fail,
    /// Not configured, or not possible because an earlier check failed.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub detail: String,
}

impl Check {
    fn new(check: impl Into<String>, status: Status, detail: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            status,
            detail: detail.into(),
        }
    }
}

/// At least one check failed: the process exits 1 (the lines said which).
#[derive(Debug, thiserror::Error)]
#[error("doctor: {0} check(s) failed")]
pub struct ChecksFailed(pub usize);

/// Runs every check, printing each line as it is known; returns how many failed.
pub async fn run(cli: &Cli, json: bool) -> anyhow::Result<usize> {
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    let mut print = |check: Check| -> anyhow::Result<()> {
        if check.status == Status::Fail {
            failed += 1;
        }
        if json {
            writeln!(out, "{}", serde_json::to_string(&check)?)?;
        } else {
            writeln!(
                out,
                "{:<4} {:<16} {}",
                check.status.label(),
                check.check,
                check.detail
            )?;
        }
        out.flush()?;
        Ok(())
    };
    print(Check::new(
        "version",
        Status::Ok,
        crate::release::long_version().replace('\n', ", "),
    ))?;
    let config = match crate::cli::effective_config(cli) {
        Ok((config, source)) => {
            print(Check::new("config", Status::Ok, source.to_string()))?;
            config
        }
        Err(error) => {
            print(Check::new("config", Status::Fail, format!("{error:#}")))?;
            print(Check::new(
                "rest",
                Status::Skip,
                "the configuration did not load",
            ))?;
            return Ok(failed);
        }
    };
    print(journal(&config))?;
    for check in brokers(&config).await {
        print(check)?;
    }
    for channel in Channel::ALL {
        print(notification_channel(&config, channel).await)?;
    }
    Ok(failed)
}

fn journal(config: &Config) -> Check {
    const NAME: &str = "journal";
    if !config.journal.enabled {
        return Check::new(NAME, Status::Skip, "off (journal.enabled, --no-journal)");
    }
    let path = match config.journal.resolved_path() {
        Ok(path) => path,
        Err(error) => return Check::new(NAME, Status::Fail, error.to_string()),
    };
    let shown = path.display();
    let size = match std::fs::metadata(&path) {
        Ok(metadata) if metadata.is_file() => metadata.len(),
        Ok(_) => return Check::new(NAME, Status::Fail, format!("{shown}: not a regular file")),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // A first start creates it; what matters is that it can.
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            return match parent.map(Path::exists) {
                Some(false) => Check::new(
                    NAME,
                    Status::Ok,
                    format!("{shown}: not created yet (its directory is made at start)"),
                ),
                _ => Check::new(NAME, Status::Ok, format!("{shown}: not created yet")),
            };
        }
        Err(error) => return Check::new(NAME, Status::Fail, format!("{shown}: {error}")),
    };
    let wal = std::fs::metadata(format!("{}-wal", path.display()))
        .map(|m| m.len())
        .unwrap_or(0);
    let holder = match lock_holder(&path) {
        Ok(None) => "not locked".to_string(),
        Ok(Some(Some(pid))) => format!("locked by pid {pid}"),
        Ok(Some(None)) => "locked by another process".to_string(),
        Err(error) => return Check::new(NAME, Status::Fail, format!("{shown}: {error}")),
    };
    Check::new(
        NAME,
        Status::Ok,
        format!(
            "{shown}: {} (+{} write-ahead log), {holder}",
            bytes(size),
            bytes(wal)
        ),
    )
}

/// Who holds the journal's lock: `None` when nobody does. The lock is tried without waiting
/// and let go at once; a missing lock file is not created.
fn lock_holder(journal: &Path) -> std::io::Result<Option<Option<u32>>> {
    use std::os::fd::AsRawFd;
    // The lock file the journal keeps beside itself (journal/lock.rs).
    let mut path = journal.as_os_str().to_owned();
    path.push(".lock");
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    // SAFETY: flock on a descriptor this function owns; closing the file releases it.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if taken == 0 {
        return Ok(None);
    }
    let error = std::io::Error::last_os_error();
    if error.kind() != std::io::ErrorKind::WouldBlock {
        return Err(error);
    }
    let pid = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| text.trim().parse().ok());
    Ok(Some(pid))
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The brokers answer, and each topic this configuration reads or writes exists.
async fn brokers(config: &Config) -> Vec<Check> {
    if let Err(error) = crate::kafka::settings::check(config, true) {
        return vec![Check::new("brokers", Status::Fail, format!("{error:#}"))];
    }
    let mut topics = vec![config.kafka.topic.clone(), config.dead_letter_topic()];
    if config.team.role != crate::team::Role::Standalone {
        topics.extend(crate::team::leader::team_topics(&config.kafka.topic));
    }
    let client = crate::kafka::consumer::client_config(config, false);
    let brokers = config.kafka.brokers.clone();
    let metadata = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let mut client = client;
        // The answer, or its absence, is the check's line; librdkafka's own complaints
        // about a broker that is down would only repeat it on stderr.
        client.set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg);
        let consumer: BaseConsumer = client.create().map_err(|error| error.to_string())?;
        let metadata = consumer
            .fetch_metadata(None, BROKER_TIMEOUT)
            .map_err(|error| error.to_string())?;
        let brokers = metadata.brokers().len();
        let topics: Vec<(String, usize, Option<String>)> = metadata
            .topics()
            .iter()
            .map(|t| {
                (
                    t.name().to_string(),
                    t.partitions().len(),
                    t.error()
                        .map(|e| format!("{:?}", rdkafka::error::RDKafkaErrorCode::from(e))),
                )
            })
            .collect();
        Ok::<_, String>((brokers, topics))
    })
    .await;
    let (count, known) = match metadata {
        Ok(Ok(found)) => found,
        Ok(Err(error)) => {
            return vec![Check::new(
                "brokers",
                Status::Fail,
                format!("{brokers}: no answer within {BROKER_TIMEOUT:?}: {error}"),
            )];
        }
        Err(error) => return vec![Check::new("brokers", Status::Fail, error.to_string())],
    };
    let mut checks = vec![Check::new(
        "brokers",
        Status::Ok,
        format!("{brokers}: {count} broker(s) answered"),
    )];
    for topic in topics {
        let check = format!("topic {topic}");
        checks.push(match known.iter().find(|(name, _, _)| *name == topic) {
            None => Check::new(check, Status::Fail, "does not exist"),
            Some((_, _, Some(error))) => Check::new(check, Status::Fail, error.clone()),
            Some((_, partitions, None)) => {
                Check::new(check, Status::Ok, format!("{partitions} partition(s)"))
            }
        });
    }
    checks
}

async fn notification_channel(config: &Config, channel: Channel) -> Check {
    let name = format!("notify {channel}");
    let notify = &config.notifications;
    if !notify.enabled(channel) {
        return Check::new(name, Status::Skip, "not configured");
    }
    let url = match channel {
        Channel::Email => {
            let host = notify.email.smtp_host.clone().unwrap_or_default();
            let place = format!("{host}:{}", notify.email.port());
            return match crate::notify::send::Senders::new(notify) {
                Err(error) => Check::new(name, Status::Fail, format!("{error:#}")),
                Ok(senders) => match senders.test_smtp().await {
                    Some(Ok(())) => Check::new(name, Status::Ok, format!("{place}: answered EHLO")),
                    Some(Err(error)) => Check::new(name, Status::Fail, format!("{place}: {error}")),
                    None => Check::new(name, Status::Skip, "not configured"),
                },
            };
        }
        Channel::Slack => notify.slack.webhook_url.clone(),
        Channel::PagerDuty => Some(notify.pagerduty.events_url.clone()),
        Channel::Webhook => notify.webhook.url.clone(),
        Channel::Sms => Some(notify.sms.api_url.clone()),
    };
    let Some(url) = url else {
        return Check::new(name, Status::Skip, "not configured");
    };
    let status = http_origin_answers(&url, notify.timeout(channel)).await;
    match status {
        Ok((origin, code)) => Check::new(name, Status::Ok, format!("{origin} answered ({code})")),
        Err(error) => Check::new(name, Status::Fail, error),
    }
}

/// A HEAD request to the URL's origin only: the path (a Slack webhook's secret, an API's
/// endpoint) is never asked for, so nothing is posted and no secret is shown.
async fn http_origin_answers(url: &str, timeout: Duration) -> Result<(String, u16), String> {
    let parsed = reqwest::Url::parse(url).map_err(|error| format!("not a URL: {error}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| "the URL names no host".to_string())?
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let origin = format!("{}://{host}:{port}", parsed.scheme());
    let resolved = tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
        .await
        .map_err(|_| format!("{host}: no name resolution within {timeout:?}"))?
        .map_err(|error| format!("{host}: does not resolve: {error}"))?
        .count();
    if resolved == 0 {
        return Err(format!("{host}: resolves to no address"));
    }
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("incident-console/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| error.to_string())?;
    let response = client
        .head(format!("{origin}/"))
        .send()
        .await
        .map_err(|error| format!("{origin}: no answer: {}", error.without_url()))?;
    Ok((origin, response.status().as_u16()))
}
