//! The command-line contract, and what it makes of the configuration (`effective_config`).
//! Scripts rely on these names: keep them stable.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, ConfigSource};

#[derive(Debug, Parser)]
#[command(
    name = "incident-console",
    version,
    about = "Terminal operations console for incident events on Kafka",
    long_about = "Consumes incident events from Kafka, escalates and notifies, and shows it all live.\n\
                  Run with --demo to try it with no Kafka installed."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Subcommands>,

    /// Configuration file (RON). Default: $INCIDENT_CONSOLE_CONFIG, then the user config dir,
    /// then the built-in config.ron.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Run without the terminal UI: JSON lines on stdout, logs on stderr.
    #[arg(long)]
    pub no_tui: bool,

    /// Team role (config `team.role`; standalone when absent): `worker` handles events while it
    /// holds the leadership, `console` observes every partition and acts through Kafka.
    #[arg(long, value_enum, value_name = "ROLE")]
    pub role: Option<crate::team::Role>,

    /// Run on an embedded broker with a built-in simulator; no Kafka needed.
    #[arg(long)]
    pub demo: bool,

    /// Log level for stderr (headless) or the log pane (console).
    #[arg(long, value_enum, default_value_t = LogLevel::Info, global = true)]
    pub log_level: LogLevel,

    /// Bootstrap brokers (overrides config and environment).
    #[arg(short = 'b', long, value_name = "HOST:PORT")]
    pub brokers: Option<String>,

    /// Topic to consume.
    #[arg(short = 't', long)]
    pub topic: Option<String>,

    /// Consumer group.
    #[arg(short = 'g', long)]
    pub group: Option<String>,

    /// librdkafka property, passed as is; repeatable.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    pub properties: Vec<String>,

    /// Start from the earliest offset when the group has no committed offset.
    #[arg(long)]
    pub from_beginning: bool,

    /// Replay from PARTITION:OFFSET (repeatable; only the partitions named). A replay reads in
    /// its own consumer group and never commits offsets.
    #[arg(long, value_name = "PARTITION:OFFSET")]
    pub from_offset: Vec<String>,

    /// Replay every partition from its first message at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub from_time: Option<String>,

    /// Stop each partition at its first message after this time (RFC 3339); headless then
    /// exits 0.
    #[arg(long, value_name = "RFC3339")]
    pub until_time: Option<String>,

    /// Stop the partition before OFFSET (repeatable); headless exits 0 once all are done.
    #[arg(long, value_name = "PARTITION:OFFSET")]
    pub until_offset: Vec<String>,

    /// Name recorded with acknowledgements (default: config, then $USER).
    #[arg(long)]
    pub operator: Option<String>,

    /// Journal file (SQLite); default: journal.path in the config, else the user data dir.
    /// `--demo` keeps no journal unless this is given.
    #[arg(long, value_name = "PATH")]
    pub journal: Option<std::path::PathBuf>,

    /// Keep no journal: a restart may repeat notifications and forgets escalations.
    #[arg(long, conflicts_with = "journal")]
    pub no_journal: bool,

    /// Serve /metrics (Prometheus), /healthz and /readyz on this address (overrides
    /// monitoring.metrics_addr).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,

    /// Serve the live web view (one page and its WebSocket) on this address (overrides
    /// web.addr).
    #[arg(long, value_name = "HOST:PORT")]
    pub web_addr: Option<String>,
    /// Use the named cluster profile of the config (`profiles`): its brokers, security
    /// settings and header colour; -b/-t/-g/-X still win.
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// Acknowledge and pause are off in the console (also `read_only` in a profile).
    #[arg(long)]
    pub read_only: bool,

    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Demo: simulated events per second (0 = as fast as possible).
    #[arg(long, default_value_t = 8.0, value_name = "N", value_parser = rate)]
    pub demo_rate: f64,

    /// Demo: stop the simulator after this many events.
    #[arg(long, value_name = "N")]
    pub demo_count: Option<u64>,

    /// Demo: fraction of simulated messages that are malformed (to show dead-lettering).
    #[arg(long, default_value_t = 0.01, value_name = "RATIO", value_parser = ratio)]
    pub demo_poison: f64,
}

#[derive(Debug, Subcommand)]
pub enum Subcommands {
    /// Run the embedded broker in the foreground; prints `bootstrap.servers=HOST:PORT` first.
    Broker {
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=10_000))]
        partitions: i32,
        /// Topics to create (default: the configured topic and its dead-letter topic).
        #[arg(short = 't', long)]
        topic: Vec<String>,
    },
    /// Write the documented default configuration for editing (owner-only permissions) and
    /// print its path.
    InitConfig {
        /// Where to write it (default: the user config dir, e.g. ~/.config/incident-console/).
        #[arg(long)]
        path: Option<std::path::PathBuf>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Replay recorded events (producer JSON or this tool's headless lines, one per line)
    /// through the engine on the history's own clock; prints JSON lines and a summary.
    Replay {
        /// The file to replay.
        file: PathBuf,
        /// Send nothing: the notifications that would have gone out are printed.
        #[arg(long)]
        dry_run: bool,
        /// Use the producer's timestamps for headless lines too, instead of `received_at`
        /// (for output recorded from a replay from Kafka).
        #[arg(long)]
        event_time: bool,
        /// JSON lines on stdout (the default when stdout is not a terminal).
        #[arg(long = "no-tui")]
        no_tui: bool,
    },
    /// Who is on call on every schedule (`oncall.schedules`), until when, and who is next.
    Oncall {
        /// The instant to ask about (RFC 3339); default: now.
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        /// One JSON object per schedule: {"schedule","on_call","until","next"}.
        #[arg(long)]
        json: bool,
    },
    /// The silences: planned windows from the configuration and those set from a console
    /// (from the journal; in team mode from `<topic>.state`), current and coming.
    /// `silences end ID` ends one early (as `x` in the console).
    Silences {
        /// One JSON object per silence.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: Option<SilencesAction>,
    },
    /// Check the setup and print one line per check: the config file, the journal, the
    /// brokers and topics, each notification channel (reached, nothing sent). Exits 1 if any
    /// check failed.
    Doctor {
        /// One JSON object per check instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (e.g. `incident-console completions bash >
    /// ~/.local/share/bash-completion/completions/incident-console`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `incident-console man | man -l -`.
    Man,
    /// Send the simulated incident stream to a broker.
    Simulate {
        #[arg(short = 'b', long, value_name = "HOST:PORT")]
        brokers: Option<String>,
        #[arg(short = 't', long)]
        topic: Option<String>,
        /// Events per second (0 = as fast as possible).
        #[arg(long, default_value_t = 10.0, value_parser = rate)]
        rate: f64,
        /// Stop after this many events (default: run until interrupted).
        #[arg(long)]
        count: Option<u64>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Fraction of messages that are malformed.
        #[arg(long, default_value_t = 0.0, value_parser = ratio)]
        poison: f64,
        /// librdkafka property for the producer; repeatable.
        #[arg(short = 'X', value_name = "KEY=VALUE")]
        properties: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SilencesAction {
    /// End a silence now. Standalone: in the journal, when no console is running on it (a
    /// running console is told with `x`). Team mode (`--role console -b HOST:PORT -t TOPIC`):
    /// sent to the active worker on `<topic>.commands`.
    End {
        /// The silence's id (e.g. `s3`), as `incident-console silences` lists it.
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_filter(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            Self::Error => LevelFilter::ERROR,
            Self::Warn => LevelFilter::WARN,
            Self::Info => LevelFilter::INFO,
            Self::Debug => LevelFilter::DEBUG,
            Self::Trace => LevelFilter::TRACE,
        }
    }
}

/// A fraction: a number from 0 to 1 (NaN and 2 are not fractions).
fn ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!(
            "`{text}` is not a fraction from 0 to 1 (e.g. 0.05)"
        )),
    }
}

/// Events per second: a finite number, 0 or more.
fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(format!(
            "`{text}` is not a rate (events per second, 0 or more; 0 = as fast as possible)"
        )),
    }
}

/// Loads the configuration and applies environment and command-line overrides.
pub fn effective_config(cli: &Cli) -> anyhow::Result<(Config, ConfigSource)> {
    let (mut config, source) = Config::load(cli.config.as_deref(), crate::tui::CONFIG_CHECKS)?;
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
    crate::profile::apply(&mut config, cli.profile.as_deref(), cli.read_only)?;
    if let Some(brokers) = &cli.brokers {
        config.kafka.brokers = brokers.clone();
    }
    if let Some(topic) = &cli.topic {
        config.kafka.topic = topic.clone();
    }
    if let Some(group) = &cli.group {
        config.kafka.group_id = group.clone();
    }
    if let Some(role) = cli.role {
        config.team.role = role;
    }
    if cli.from_beginning {
        config.kafka.auto_offset_reset = "earliest".into();
    }
    config.kafka.range = read_range(cli)?;
    if config.kafka.range.is_active() {
        // A replay must not disturb the live console: its own group (never committed to), no
        // journal (it would take the history for re-deliveries), and nobody paged again.
        if cli.group.is_none() {
            config.kafka.group_id = format!("{}-replay", config.kafka.group_id);
        }
        if cli.journal.is_none() {
            config.journal.enabled = false;
        }
        config.notifications = crate::notify::NotifyConfig {
            templates_dir: config.notifications.templates_dir.clone(),
            ..crate::notify::NotifyConfig::default()
        };
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
    if let Some(addr) = &cli.metrics_addr {
        crate::observe::check_listen_addr(addr)
            .map_err(|error| anyhow::anyhow!("--metrics-addr: {error}"))?;
        config.monitoring.metrics_addr = Some(addr.clone());
    }
    if let Some(addr) = &cli.web_addr {
        crate::observe::check_listen_addr(addr)
            .map_err(|error| anyhow::anyhow!("--web-addr: {error}"))?;
        config.web.addr = Some(addr.clone());
    }
    Ok((config, source))
}

/// `--from-offset`, `--from-time`, `--until-time`, `--until-offset`; errors name the flag.
fn read_range(cli: &Cli) -> anyhow::Result<crate::kafka::consumer::ReadRange> {
    use crate::kafka::consumer::parse_partition_offset;
    let time = |flag: &str, text: &Option<String>| -> anyhow::Result<_> {
        text.as_deref()
            .map(|text| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|error| {
                        anyhow::anyhow!("{flag} {text:?}: not an RFC 3339 time ({error})")
                    })
            })
            .transpose()
    };
    let offsets = |flag: &str, list: &[String]| -> anyhow::Result<Vec<(i32, i64)>> {
        let mut parsed: Vec<(i32, i64)> = Vec::new();
        for text in list {
            let (partition, offset) =
                parse_partition_offset(flag, text).map_err(anyhow::Error::msg)?;
            if parsed.iter().any(|(p, _)| *p == partition) {
                anyhow::bail!("{flag}: partition {partition} given twice");
            }
            parsed.push((partition, offset));
        }
        Ok(parsed)
    };
    let range = crate::kafka::consumer::ReadRange {
        from_offsets: offsets("--from-offset", &cli.from_offset)?,
        from_time: time("--from-time", &cli.from_time)?,
        until_time: time("--until-time", &cli.until_time)?,
        until_offsets: offsets("--until-offset", &cli.until_offset)?,
    };
    if !range.from_offsets.is_empty() && range.from_time.is_some() {
        anyhow::bail!("--from-offset and --from-time: give one or the other");
    }
    if let (Some(from), Some(until)) = (range.from_time, range.until_time)
        && until < from
    {
        anyhow::bail!("--until-time is before --from-time");
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_rates_and_partitions_are_checked() {
        for bad in ["2", "NaN", "-0.1", "x"] {
            assert!(ratio(bad).is_err(), "{bad}");
        }
        assert_eq!(ratio("0.5"), Ok(0.5));
        for bad in ["-1", "NaN", "inf"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
        assert!(Cli::try_parse_from(["ic", "broker", "--partitions", "0"]).is_err());
        assert!(Cli::try_parse_from(["ic", "simulate", "--poison", "NaN"]).is_err());
        assert!(Cli::try_parse_from(["ic", "simulate", "--poison", "2"]).is_err());
        assert!(Cli::try_parse_from(["ic", "broker", "--partitions", "3"]).is_ok());
    }
}
