//! Wires the command line to the runtime: configuration, logging, demo, and the choice
//! between the console and headless mode.

use std::io::IsTerminal;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use tokio::sync::watch;

use crate::cli::{Cli, Subcommands, effective_config};
use crate::config::Config;
use crate::kafka::embedded::EmbeddedBroker;
use crate::runtime::{RunSummary, RuntimeOptions};
use crate::simulate::{self, ProduceOptions};
use crate::{demo, headless, tui};

pub fn init_headless_logging(level: tracing::level_filters::LevelFilter) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_stderr(|name| std::env::var_os(name)))
        .with_target(false)
        .try_init();
}

/// Colour codes only on a terminal (a `2>err.log` file gets plain text), and never when
/// `NO_COLOR` is set to anything but the empty string (https://no-color.org).
pub fn colour_stderr(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    colour(std::io::stderr().is_terminal(), env("NO_COLOR"))
}

fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

pub async fn run(cli: Cli) -> anyhow::Result<RunSummary> {
    match &cli.command {
        Some(Subcommands::Broker { partitions, topic }) => {
            init_headless_logging(cli.log_level.as_filter());
            let (config, _) = effective_config(&cli)?;
            run_broker(&config, *partitions, topic).await?;
            return Ok(RunSummary::default());
        }
        Some(Subcommands::InitConfig { path, force }) => {
            let path = path
                .clone()
                .or_else(crate::config::user_config_path)
                .ok_or_else(|| anyhow::anyhow!("no user config directory; pass --path"))?;
            crate::config::write_initial_config(&path, *force).map_err(|error| {
                // io errors name no path by themselves; say which one and what to do.
                let text = error.to_string();
                if text.contains(&path.display().to_string()) {
                    anyhow::anyhow!("init-config: {text}")
                } else {
                    anyhow::anyhow!(
                        "init-config: cannot write {}: {text}; pass --path to another file",
                        path.display()
                    )
                }
            })?;
            println!("{}", path.display());
            return Ok(RunSummary::default());
        }
        Some(Subcommands::Replay {
            file,
            dry_run,
            event_time,
            ..
        }) => {
            init_headless_logging(cli.log_level.as_filter());
            let (config, _) = effective_config(&cli)?;
            let options = crate::replay::ReplayOptions {
                file: file.clone(),
                dry_run: *dry_run,
                event_time: *event_time,
            };
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            crate::replay::run(&config, &options, &mut stdout).await?;
            return Ok(RunSummary::default());
        }
        Some(Subcommands::Oncall { at, json }) => {
            init_headless_logging(cli.log_level.as_filter());
            let (config, _) = effective_config(&cli)?;
            let at = match at {
                Some(text) => chrono::DateTime::parse_from_rfc3339(text)
                    .map_err(|error| anyhow::anyhow!("--at `{text}`: {error} (want RFC 3339)"))?
                    .with_timezone(&chrono::Utc),
                None => chrono::Utc::now(),
            };
            let oncall = config.engine_config().oncall;
            crate::oncall::print(&oncall, at, *json, &mut std::io::stdout().lock())?;
            return Ok(RunSummary::default());
        }
        Some(Subcommands::Silences { json, action }) => {
            init_headless_logging(cli.log_level.as_filter());
            let (config, _) = effective_config(&cli)?;
            match action {
                Some(crate::cli::SilencesAction::End { id }) => {
                    println!("{}", crate::silences::end(&config, id).await?);
                }
                None => {
                    let silences = crate::silences::current(&config).await?;
                    let now = chrono::Utc::now();
                    crate::oncall::print_silences(
                        silences,
                        now,
                        *json,
                        &mut std::io::stdout().lock(),
                    )?;
                }
            }
            return Ok(RunSummary::default());
        }
        Some(Subcommands::Completions { shell }) => {
            quiet_broken_pipe(crate::release::write_completions(
                *shell,
                &mut std::io::stdout().lock(),
            ))?;
            return Ok(RunSummary::default());
        }
        Some(Subcommands::Man) => {
            quiet_broken_pipe(crate::release::write_man(&mut std::io::stdout().lock()))?;
            return Ok(RunSummary::default());
        }
        Some(Subcommands::Doctor { json }) => {
            init_headless_logging(tracing::level_filters::LevelFilter::ERROR);
            let failed = crate::doctor::run(&cli, *json).await?;
            if failed > 0 {
                return Err(crate::doctor::ChecksFailed(failed).into());
            }
            return Ok(RunSummary::default());
        }
        Some(Subcommands::Simulate {
            brokers,
            topic,
            rate,
            count,
            seed,
            poison,
            properties,
        }) => {
            init_headless_logging(cli.log_level.as_filter());
            let (mut config, _) = effective_config(&cli)?;
            if let Some(brokers) = brokers {
                config.kafka.brokers = brokers.clone();
            }
            if let Some(topic) = topic {
                config.kafka.topic = topic.clone();
            }
            config.apply_properties(properties)?;
            crate::kafka::settings::check(&config, false)?;
            let options = ProduceOptions {
                rate: *rate,
                count: *count,
                seed: *seed,
                poison_ratio: *poison,
                pace: None,
            };
            run_simulate(&config, &options).await?;
            return Ok(RunSummary::default());
        }
        None => {}
    }

    let (mut config, source) = effective_config(&cli)?;
    if cli.print_config {
        println!("// source: {source}\n{}", config.to_redacted_ron());
        return Ok(RunSummary::default());
    }
    let headless = cli.no_tui || !std::io::stdout().is_terminal();
    if headless {
        init_headless_logging(cli.log_level.as_filter());
    } else {
        tui::init_logging(cli.log_level.as_filter());
    }
    tracing::info!(%source, "configuration loaded");
    if let Some(warning) = crate::config::permission_warning(&source) {
        tracing::warn!("{warning}");
    }

    if cli.demo && config.team.role != crate::team::Role::Standalone {
        anyhow::bail!(
            "--demo runs standalone; --role {} needs a broker (see scripts/team-demo)",
            config.team.role.as_str()
        );
    }
    let demo = if cli.demo {
        if config.kafka.group_id == "incident-management-consumer" {
            config.kafka.group_id = "incident-console-demo".into();
        }
        Some(demo::start(
            &mut config,
            ProduceOptions {
                rate: cli.demo_rate,
                count: cli.demo_count,
                seed: rand_seed(),
                poison_ratio: cli.demo_poison,
                pace: None,
            },
        )?)
    } else {
        None
    };

    let (output, output_flushed, writer) = if headless {
        let channel = headless::output_channel();
        (
            Some(channel.records),
            Some(channel.flushed),
            Some((channel.writer_records, channel.writer_flushed)),
        )
    } else {
        (None, None, None)
    };
    // Weak: the headless writer ends when the runtime's sender goes, whatever else holds one.
    let alert_output = output.as_ref().map(|sender| sender.downgrade());
    // What this process writes to must exist on a cluster that creates no topic by itself.
    match config.team.role {
        // Without its coordination topics a worker could never become active.
        crate::team::Role::Worker => {
            crate::kafka::topics::prepare_when_reachable(&config).await?;
        }
        // Only dead letters: needed at the first bad message, not to start.
        crate::team::Role::Standalone => {
            let config = config.clone();
            tokio::spawn(async move {
                if let Err(error) = crate::kafka::topics::prepare_when_reachable(&config).await {
                    tracing::warn!("{error:#}");
                }
            });
        }
        // A console writes only acknowledgements, to the topic a worker creates.
        crate::team::Role::Console => {}
    }
    // The role picks the loop: standalone is `runtime::spawn` itself.
    let handle = crate::roles::spawn(
        &config,
        RuntimeOptions {
            operator: config.operator(),
            demo: cli.demo,
            output,
            output_flushed,
            shutdown_timeout: Duration::from_secs(10),
            side_effects: crate::core::permit::SideEffects::always(),
        },
    )?;
    if let Some(demo) = &demo {
        demo.pace_by(handle.fetched.clone());
    }
    tracing::info!(
        brokers = %config.kafka.brokers,
        topic = %config.kafka.topic,
        group = %config.kafka.group_id,
        role = config.team.role.as_str(),
        "consuming"
    );
    let observer = match &config.monitoring.metrics_addr {
        None => None,
        Some(addr) => {
            let sources = crate::observe::Sources::new(
                handle.snapshots.clone(),
                handle.consumer_status.clone(),
                handle.journal_stats.clone(),
            )
            .with_output(alert_output)
            .with_commands(&handle.commands);
            Some(crate::observe::start(addr, &config, sources).await?)
        }
    };
    let web = match &config.web.addr {
        None => None,
        Some(addr) => Some(
            crate::web::start(
                addr,
                &config.web,
                handle.snapshots.clone(),
                &handle.commands,
            )
            .await?,
        ),
    };
    let summary = match writer {
        Some((records, flushed)) => headless::run(handle, records, flushed).await,
        None => {
            let self_alerts = observer.as_ref().map(|o| o.self_alerts.clone());
            tui::run(handle, &config, self_alerts).await
        }
    };
    if let Some(observer) = observer {
        observer.shutdown();
    }
    if let Some(web) = web {
        web.shutdown();
    }
    if let Some(demo) = demo {
        demo.shutdown().await;
    }
    summary
}

/// `completions bash | head` is a reader that had enough, not a failure.
fn quiet_broken_pipe(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(42)
}

async fn run_broker(config: &Config, partitions: i32, topics: &[String]) -> anyhow::Result<()> {
    let topics: Vec<String> = if topics.is_empty() {
        vec![config.kafka.topic.clone(), config.dead_letter_topic()]
    } else {
        topics.to_vec()
    };
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let broker = EmbeddedBroker::start(1, &names, partitions).map_err(anyhow::Error::msg)?;
    // Each topic's dead-letter topic and team mode's coordination topics, one partition each:
    // the mock cannot create topics through the admin API, as a console does on a real cluster.
    let team_topic = |t: &&String| {
        [".dlq", ".leader", ".state", ".commands"]
            .iter()
            .any(|suffix| t.ends_with(suffix))
    };
    for topic in topics.iter().filter(|t| !team_topic(t)) {
        let dead_letters = format!("{topic}.dlq");
        if !topics.contains(&dead_letters) {
            broker
                .create_topic(&dead_letters, 1)
                .map_err(anyhow::Error::msg)?;
        }
        for team_topic in crate::team::leader::team_topics(topic) {
            broker
                .create_topic(&team_topic, 1)
                .map_err(anyhow::Error::msg)?;
        }
    }
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "bootstrap.servers={}", broker.bootstrap_servers())?;
        stdout.flush()?;
    }
    tracing::info!(
        topics = ?topics,
        partitions,
        "embedded broker running; Ctrl-C to stop"
    );
    headless::wait_for_signal().await;
    tracing::info!("embedded broker stopping");
    drop(broker);
    Ok(())
}

/// The simulator's producer settings, under the operator's `-X` (which win).
fn simulate_producer_defaults(rate: f64) -> Vec<(&'static str, &'static str)> {
    if rate > 0.0 {
        // A paced stream is not idempotent: librdkafka's idempotent producer busy-polls while
        // a partition's in-flight requests go unanswered (a stalled or stopped broker).
        // Measured at 400 events/s on Apache Kafka: 6-9 s of CPU in the 3 s one broker was
        // stopped, and 60-160 % of the machine for minutes beside a three-broker cluster, two
        // workers and two consoles on 2 cores, where it starved the brokers it waited for
        // until group sessions timed out; without idempotence 0.5 s and 6 %. One request in
        // flight keeps the events in order across a retry; a retry after a broker failover
        // can write an event twice (`-X enable.idempotence=true` forbids that, at the price
        // above).
        vec![
            ("linger.ms", "5"),
            ("enable.idempotence", "false"),
            ("max.in.flight.requests.per.connection", "1"),
        ]
    } else {
        // A backlog fill is over in seconds and must not write an event twice: a test counts
        // on each event once.
        vec![("linger.ms", "5"), ("enable.idempotence", "true")]
    }
}

async fn run_simulate(config: &Config, options: &ProduceOptions) -> anyhow::Result<()> {
    let producer: FutureProducer = crate::kafka::consumer::client_config_under(
        config,
        false,
        &simulate_producer_defaults(options.rate),
    )
    .create()
    .map_err(|error| crate::kafka::settings::without_values(config, error))?;
    let (stop, stop_rx) = watch::channel(false);
    let stopping = headless::shutdown_signals();
    let signal = tokio::spawn(async move {
        stopping.await;
        let _ = stop.send(true);
    });
    tracing::info!(
        topic = %config.kafka.topic,
        count = ?options.count,
        "simulating; SIGINT, SIGTERM or SIGHUP stops"
    );
    let started = std::time::Instant::now();
    let sent = simulate::produce(&producer, &config.kafka.topic, options, stop_rx).await?;
    signal.abort();
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        sent,
        seconds = format!("{seconds:.2}"),
        per_second = format!("{:.0}", sent as f64 / seconds.max(1e-9)),
        topic = %config.kafka.topic,
        "simulation finished"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use super::colour;
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
    }
}
