//! The command-line contract. Scripts rely on these names: keep them stable.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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

    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Demo: simulated events per second (0 = as fast as possible).
    #[arg(long, default_value_t = 8.0, value_name = "N")]
    pub demo_rate: f64,

    /// Demo: stop the simulator after this many events.
    #[arg(long, value_name = "N")]
    pub demo_count: Option<u64>,

    /// Demo: fraction of simulated messages that are malformed (to show dead-lettering).
    #[arg(long, default_value_t = 0.01, value_name = "RATIO")]
    pub demo_poison: f64,
}

#[derive(Debug, Subcommand)]
pub enum Subcommands {
    /// Run the embedded broker in the foreground; prints `bootstrap.servers=HOST:PORT` first.
    Broker {
        #[arg(long, default_value_t = 3)]
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
    /// Send the simulated incident stream to a broker.
    Simulate {
        #[arg(short = 'b', long, value_name = "HOST:PORT")]
        brokers: Option<String>,
        #[arg(short = 't', long)]
        topic: Option<String>,
        /// Events per second (0 = as fast as possible).
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Stop after this many events (default: run until interrupted).
        #[arg(long)]
        count: Option<u64>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Fraction of messages that are malformed.
        #[arg(long, default_value_t = 0.0)]
        poison: f64,
        /// librdkafka property for the producer; repeatable.
        #[arg(short = 'X', value_name = "KEY=VALUE")]
        properties: Vec<String>,
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
