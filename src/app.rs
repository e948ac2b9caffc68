//! Wires the command line to the runtime: configuration, logging, demo, and the choice
//! between the console and headless mode.

use std::io::IsTerminal;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use tokio::sync::watch;

use crate::cli::{Cli, Subcommands};
use crate::config::{Config, ConfigSource};
use crate::kafka::consumer::client_config;
use crate::kafka::embedded::EmbeddedBroker;
use crate::runtime::{self, RunSummary, RuntimeOptions};
use crate::simulate::{self, ProduceOptions};
use crate::{demo, headless, tui};

/// Loads the configuration and applies environment and command-line overrides.
pub fn effective_config(cli: &Cli) -> anyhow::Result<(Config, ConfigSource)> {
    let (mut config, source) = Config::load(cli.config.as_deref())?;
    // Every variable may also be given as NAME_FILE; an unreadable file is an error now.
    let unreadable = std::cell::RefCell::new(None);
    config.apply_env(|name| {
        crate::config::env_or_file(name, |n| std::env::var(n).ok()).unwrap_or_else(|error| {
            unreadable.borrow_mut().get_or_insert(error);
            None
        })
    });
    if let Some(error) = unreadable.into_inner() {
        anyhow::bail!(error);
    }
    if let Some(brokers) = &cli.brokers {
        config.kafka.brokers = brokers.clone();
    }
    if let Some(topic) = &cli.topic {
        config.kafka.topic = topic.clone();
    }
    if let Some(group) = &cli.group {
        config.kafka.group_id = group.clone();
    }
    if cli.from_beginning {
        config.kafka.auto_offset_reset = "earliest".into();
    }
    if let Some(operator) = &cli.operator {
        config.console.operator = Some(operator.clone());
    }
    if let Some(journal) = &cli.journal {
        config.journal.enabled = true;
        config.journal.path = Some(journal.clone());
    } else if cli.no_journal || cli.demo {
        // The demo's simulated history does not belong in the operator's real journal.
        config.journal.enabled = false;
    }
    config.apply_properties(&cli.properties)?;
    Ok((config, source))
}

pub fn init_headless_logging(level: tracing::level_filters::LevelFilter) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
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
            crate::config::write_initial_config(&path, *force)?;
            println!("{}", path.display());
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

    let (output, records) = if headless {
        let (sender, receiver) = headless::output_channel();
        (Some(sender), Some(receiver))
    } else {
        (None, None)
    };
    let handle = runtime::spawn(
        &config,
        RuntimeOptions {
            operator: config.operator(),
            demo: cli.demo,
            output,
            shutdown_timeout: Duration::from_secs(10),
        },
    )?;
    if let Some(demo) = &demo {
        demo.pace_by(handle.fetched.clone());
    }
    tracing::info!(
        brokers = %config.kafka.brokers,
        topic = %config.kafka.topic,
        group = %config.kafka.group_id,
        "consuming"
    );
    let summary = match records {
        Some(records) => headless::run(handle, records).await,
        None => tui::run(handle, &config).await,
    };
    if let Some(demo) = demo {
        demo.shutdown().await;
    }
    summary
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

async fn run_simulate(config: &Config, options: &ProduceOptions) -> anyhow::Result<()> {
    let producer: FutureProducer = client_config(config, false)
        .set("linger.ms", "5")
        .create()?;
    let (stop, stop_rx) = watch::channel(false);
    let signal = tokio::spawn(async move {
        headless::wait_for_signal().await;
        let _ = stop.send(true);
    });
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
