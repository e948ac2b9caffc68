//! Configuration: the shipped `config.ron` is the built-in default and the reference. A file
//! is found by `--config`, then `$INCIDENT_CONSOLE_CONFIG`, then the user's config directory;
//! environment variables then override the broker address and secrets, and command-line flags
//! override both. Errors name the file, line and field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use incident_core::engine::EngineConfig;
use incident_core::escalation::{EscalationLevel, EscalationPolicy};

pub mod monitoring;
pub mod oncall;
pub mod profile;
pub mod range;
pub mod team;
pub mod web;

/// The shipped reference configuration, compiled in as the default.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config.ron");
pub const CONFIG_ENV: &str = "INCIDENT_CONSOLE_CONFIG";

// Every struct here takes `#[serde(default)]`: a hand-written file holds only what differs,
// and each omitted section or field keeps the value config.ron documents (a test checks that
// `Config::default()` equals the parsed config.ron). Unknown fields are still refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub escalation: EscalationConfig,
    pub console: ConsoleConfig,
    pub notifications: incident_notify::NotifyConfig,
    pub journal: incident_journal::JournalConfig,
    pub monitoring: monitoring::MonitoringConfig,
    #[serde(default)]
    pub team: team::TeamConfig,
    #[serde(default)]
    pub web: web::WebConfig,
    /// People, schedules, schedule-driven levels, maintenance windows (docs/oncall.md).
    #[serde(default)]
    pub oncall: crate::oncall::OnCallConfig,
    /// Named clusters for `--profile NAME` (src/profile.rs). Not printed: a profile's
    /// properties may hold secrets, and the one in use is already in `kafka`.
    #[serde(skip_serializing)]
    pub profiles: BTreeMap<String, profile::Profile>,
    /// Saved feed filters by name, picked from a list in the console (src/tui/query.rs).
    pub filters: BTreeMap<String, String>,
    /// The profile in use and read-only; command line only.
    #[serde(skip)]
    pub session: profile::Session,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    /// `earliest` or `latest`: where a group with no committed offset starts.
    pub auto_offset_reset: String,
    pub poll_timeout_ms: u64,
    /// Where undecodable messages go; `None` means `<topic>.dlq`.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Payloads larger than this are dead-lettered without being parsed.
    pub max_message_bytes: usize,
    /// Messages fetched but not yet handled; the consumer waits when it is full.
    pub channel_capacity: usize,
    pub statistics_interval_ms: u64,
    /// Passed to librdkafka as is (security.protocol, sasl.*, ssl.*, fetch tuning ...).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// A positioned read (`--from-offset`, `--from-time`, `--until-*`); command line only.
    #[serde(skip)]
    pub range: range::ReadRange,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelConfig {
    pub name: String,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationConfig {
    pub levels: Vec<LevelConfig>,
    pub repeat_interval_secs: u64,
    pub max_repeats: u32,
    /// An acknowledged escalation still open this long pages its level again; `None`: never.
    #[serde(default)]
    pub ack_timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Name recorded with acknowledgements; `None` uses `$USER`.
    #[serde(default)]
    pub operator: Option<String>,
    pub feed_history: usize,
    pub max_tracked_incidents: usize,
    pub max_frames_per_sec: u32,
    /// Action name to keys, e.g. `"pause": ["p"]`; actions not listed keep their defaults.
    #[serde(default)]
    pub keys: BTreeMap<String, Vec<String>>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            topic: "incidents-created".into(),
            group_id: "incident-management-consumer".into(),
            auto_offset_reset: "latest".into(),
            poll_timeout_ms: 1000,
            dead_letter_topic: None,
            max_message_bytes: 1024 * 1024,
            channel_capacity: 1024,
            statistics_interval_ms: 2000,
            properties: BTreeMap::new(),
            range: Default::default(),
        }
    }
}

impl Default for EscalationConfig {
    fn default() -> Self {
        let level = |name: &str, timeout_secs| LevelConfig {
            name: name.into(),
            timeout_secs,
        };
        Self {
            levels: vec![
                level("on-call", 300),
                level("secondary", 600),
                level("engineering-manager", 900),
            ],
            repeat_interval_secs: 900,
            max_repeats: 3,
            ack_timeout_secs: None,
        }
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            operator: None,
            feed_history: 1000,
            max_tracked_incidents: 10_000,
            max_frames_per_sec: 30,
            keys: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}:{line}: field `{field}`: {message}")]
    Invalid {
        path: String,
        line: usize,
        field: String,
        message: String,
    },
    #[error("invalid override `{0}`: expected -X key=value")]
    Override(String),
    #[error(
        "{path}: the configuration is larger than {limit} bytes (is it the right file?); \
         a configuration is a few kilobytes"
    )]
    TooLarge { path: String, limit: u64 },
}

/// Where the configuration came from, for logs and `--print-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    BuiltIn,
    File(PathBuf),
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BuiltIn => f.write_str("built-in default (config.ron)"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// An invalid value, at the line of its field.
fn invalid(text: &str, path: &str, field: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_string(),
        line: line_of_field(text, field.rsplit('.').next().unwrap_or(field)),
        field: field.to_string(),
        message: message.to_string(),
    }
}

fn ron_options() -> ron::Options {
    ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
}

/// A check of a section that only a layer above the configuration can make: the console's key
/// bindings and saved filters need the console's own parsers (`tui::CONFIG_CHECKS`). It returns
/// the field and what is wrong with it; the loader turns that into an error naming the file
/// and line, as for its own checks.
pub type SectionCheck = fn(&Config) -> Result<(), (String, String)>;

impl Config {
    /// Parses configuration text; `path` is only used to name the place of an error. Makes
    /// every check of its own, but none of the faces' (`parse_checked`).
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        Self::parse_checked(text, path, &[])
    }

    /// `parse`, then `checks` (the faces' own), each error naming the file and line.
    pub fn parse_checked(
        text: &str,
        path: &str,
        checks: &[SectionCheck],
    ) -> Result<Self, ConfigError> {
        let config: Config = ron_options()
            .from_str(text)
            .map_err(|error| ConfigError::Parse {
                path: path.to_string(),
                line: error.span.start.line,
                column: error.span.start.col,
                message: error.code.to_string(),
            })?;
        config.validate(text, path)?;
        for check in checks {
            check(&config).map_err(|(field, message)| invalid(text, path, &field, &message))?;
        }
        Ok(config)
    }

    pub fn built_in() -> Self {
        Self::parse(DEFAULT_CONFIG, "config.ron").expect("the shipped config.ron is valid")
    }

    /// `--config`, then `$INCIDENT_CONSOLE_CONFIG`, then the user's config dir, then built-in.
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        if let Some(path) = explicit {
            return Some(path.to_path_buf());
        }
        if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        let user = user_config_path()?;
        user.is_file().then_some(user)
    }

    /// Finds and reads the configuration (`locate`), with the faces' `checks` made too.
    pub fn load(
        explicit: Option<&Path>,
        checks: &[SectionCheck],
    ) -> Result<(Self, ConfigSource), ConfigError> {
        match Self::locate(explicit) {
            None => Ok((Self::built_in(), ConfigSource::BuiltIn)),
            Some(path) => {
                let mut shown = path.display().to_string();
                if explicit.is_none() && std::env::var_os(CONFIG_ENV).is_some_and(|v| v == path) {
                    // Say where the path came from: nobody typed it on this command line.
                    shown = format!("{shown} (from ${CONFIG_ENV})");
                }
                let text = read_bounded(&path, MAX_CONFIG_BYTES).map_err(|error| match error {
                    None => ConfigError::TooLarge {
                        path: shown.clone(),
                        limit: MAX_CONFIG_BYTES,
                    },
                    Some(source) => ConfigError::Read {
                        path: shown.clone(),
                        source,
                    },
                })?;
                Ok((
                    Self::parse_checked(&text, &shown, checks)?,
                    ConfigSource::File(path),
                ))
            }
        }
    }

    fn validate(&self, text: &str, path: &str) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: &str| invalid(text, path, field, message);
        let kafka = &self.kafka;
        if kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers", "must name at least one host:port"));
        }
        if kafka.topic.trim().is_empty() {
            return Err(invalid("kafka.topic", "must not be empty"));
        }
        if kafka.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "must not be empty"));
        }
        if ![
            "earliest",
            "latest",
            "smallest",
            "largest",
            "beginning",
            "end",
            "error",
        ]
        .contains(&kafka.auto_offset_reset.as_str())
        {
            return Err(invalid(
                "kafka.auto_offset_reset",
                "must be `earliest` or `latest`",
            ));
        }
        if kafka.poll_timeout_ms == 0 {
            return Err(invalid("kafka.poll_timeout_ms", "must be more than 0"));
        }
        if kafka.channel_capacity == 0 {
            return Err(invalid("kafka.channel_capacity", "must be more than 0"));
        }
        if kafka.max_message_bytes < 64 {
            return Err(invalid("kafka.max_message_bytes", "must be at least 64"));
        }
        if self.escalation.levels.is_empty() {
            return Err(invalid("escalation.levels", "needs at least one level"));
        }
        if let Some(index) = self
            .escalation
            .levels
            .iter()
            .position(|l| l.timeout_secs == 0)
        {
            // Pointed at the level at fault, not at the first `timeout_secs` in the file.
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                line: line_of_nth_field(text, "timeout_secs", index),
                field: "escalation.levels.timeout_secs".into(),
                message: "must be more than 0".into(),
            });
        }
        if self.escalation.repeat_interval_secs == 0 {
            return Err(invalid(
                "escalation.repeat_interval_secs",
                "must be more than 0",
            ));
        }
        if self.console.feed_history == 0 {
            return Err(invalid("console.feed_history", "must be more than 0"));
        }
        if self.console.max_tracked_incidents == 0 {
            return Err(invalid(
                "console.max_tracked_incidents",
                "must be more than 0",
            ));
        }
        if self.console.max_frames_per_sec == 0 {
            return Err(invalid("console.max_frames_per_sec", "must be more than 0"));
        }
        self.notifications
            .validate()
            .map_err(|(field, message)| invalid(&format!("notifications.{field}"), &message))?;
        self.journal
            .validate()
            .map_err(|(field, message)| invalid(&format!("journal.{field}"), &message))?;
        // Retention must not delete the claims that stop a second send, nor what a restart
        // may still resume.
        let retention_secs = u64::from(self.journal.retention_days) * 24 * 3600;
        if retention_secs > 0 && retention_secs < self.notifications.dedup.window_secs {
            return Err(invalid(
                "journal.retention_days",
                "must cover notifications.dedup.window_secs (or be 0 to keep everything)",
            ));
        }
        self.monitoring
            .validate()
            .map_err(|(field, message)| invalid(&format!("monitoring.{field}"), &message))?;
        self.web
            .validate()
            .map_err(|(field, message)| invalid(&format!("web.{field}"), &message))?;
        if self.escalation.ack_timeout_secs == Some(0) {
            return Err(invalid(
                "escalation.ack_timeout_secs",
                "must be more than 0 (or None for no timeout)",
            ));
        }
        let oncall = self.oncall.build(None).and_then(|_| self.oncall.windows());
        if let Err(error) = oncall {
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                line: crate::oncall::line_of(text, error.within.as_deref(), &error.needle),
                field: error.field,
                message: error.message,
            });
        }
        profile::validate(&self.profiles).map_err(|(field, message)| invalid(&field, &message))?;
        Ok(())
    }

    /// Environment variables override the file: broker address and Kafka secrets.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        if let Some(brokers) =
            env("INCIDENT_CONSOLE_BROKERS").or_else(|| env("KAFKA_BOOTSTRAP_SERVERS"))
        {
            self.kafka.brokers = brokers;
        }
        let secrets = [
            ("KAFKA_SECURITY_PROTOCOL", "security.protocol"),
            ("KAFKA_SASL_MECHANISM", "sasl.mechanism"),
            ("KAFKA_SASL_USERNAME", "sasl.username"),
            ("KAFKA_SASL_PASSWORD", "sasl.password"),
            ("KAFKA_SSL_KEY_PASSWORD", "ssl.key.password"),
        ];
        for (variable, property) in secrets {
            if let Some(value) = env(variable) {
                self.kafka.properties.insert(property.to_string(), value);
            }
        }
        self.notifications.apply_env(&env);
    }

    /// kcat-style `-X key=value` overrides.
    pub fn apply_properties(&mut self, overrides: &[String]) -> Result<(), ConfigError> {
        for item in overrides {
            let (key, value) = item
                .split_once('=')
                .filter(|(key, _)| !key.trim().is_empty())
                .ok_or_else(|| {
                    // Only the part before `=`: what follows may be a secret.
                    let key = item.split_once('=').map_or(item.as_str(), |(key, _)| key);
                    ConfigError::Override(format!("{key}=..."))
                })?;
            self.kafka
                .properties
                .insert(key.trim().to_string(), value.to_string());
        }
        Ok(())
    }

    pub fn dead_letter_topic(&self) -> String {
        self.kafka
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.kafka.topic))
    }

    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            policy: EscalationPolicy {
                levels: self
                    .escalation
                    .levels
                    .iter()
                    .map(|level| EscalationLevel {
                        name: level.name.clone(),
                        timeout: Duration::from_secs(level.timeout_secs),
                    })
                    .collect(),
                repeat_interval: Duration::from_secs(self.escalation.repeat_interval_secs),
                max_repeats: self.escalation.max_repeats,
            },
            feed_capacity: self.console.feed_history,
            max_tracked_incidents: self.console.max_tracked_incidents,
            // Checked by `validate`: a config that got this far builds.
            oncall: self
                .oncall
                .build(self.escalation.ack_timeout_secs.map(Duration::from_secs))
                .unwrap_or_default(),
            planned_silences: self.oncall.windows().unwrap_or_default(),
            ..EngineConfig::default()
        }
    }

    /// The operator name for acknowledgements: config, then `$USER`, then "operator".
    pub fn operator(&self) -> String {
        self.console
            .operator
            .clone()
            .filter(|name| !name.trim().is_empty())
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "operator".into())
    }

    /// The configuration as RON with every secret replaced, for `--print-config` and logs.
    pub fn to_redacted_ron(&self) -> String {
        let mut copy = self.clone();
        for (key, value) in copy.kafka.properties.iter_mut() {
            if is_secret_key(key) {
                *value = REDACTED.into();
            }
        }
        copy.notifications.redact();
        copy.web.redact();
        ron::ser::to_string_pretty(&copy, ron::ser::PrettyConfig::default())
            .unwrap_or_else(|error| format!("/* cannot print configuration: {error} */"))
    }
}

pub use incident_core::REDACTED;

/// A configuration is a few kilobytes; anything over this is the wrong file (or `/dev/zero`)
/// and is refused before it is read whole.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads at most `limit` bytes of UTF-8; `Err(None)` when there is more.
fn read_bounded(path: &Path, limit: u64) -> Result<String, Option<std::io::Error>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(Some)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(Some)?;
    if bytes.len() as u64 > limit {
        return Err(None);
    }
    String::from_utf8(bytes)
        .map_err(|error| Some(std::io::Error::new(std::io::ErrorKind::InvalidData, error)))
}

/// Reads `NAME` from the environment, or else the file named by `NAME_FILE` (the
/// Docker/Kubernetes secrets convention), trimmed of its final newline.
pub fn env_or_file(
    name: &str,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    if let Some(value) = var(name).filter(|v| !v.is_empty()) {
        return Ok(Some(value));
    }
    let file_var = format!("{name}_FILE");
    match var(&file_var).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(path) => std::fs::read_to_string(&path)
            .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_string()))
            .map_err(|error| format!("{file_var}={path}: cannot read: {error}")),
    }
}

/// The user's config file path (`~/.config/incident-console/config.ron` on Linux).
pub fn user_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "incident-console")
        .map(|dirs| dirs.config_dir().join("config.ron"))
}

/// Writes the shipped configuration to `path` for editing, readable by the owner only, and
/// refuses to overwrite an existing file unless `force`.
///
/// What the path is is checked first: only a regular file is ever replaced (not a device, a
/// pipe, a directory or a symbolic link), and it is replaced by a new file written beside it
/// and renamed over it, so no existing file's permissions are ever changed.
pub fn write_initial_config(path: &Path, force: bool) -> std::io::Result<()> {
    let refuse = |kind, what: &str| {
        Err(std::io::Error::new(
            kind,
            format!("{} {what}", path.display()),
        ))
    };
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => {
            return refuse(
                std::io::ErrorKind::InvalidInput,
                "is a symbolic link: give the path of the file itself",
            );
        }
        Ok(metadata) if !metadata.is_file() => {
            return refuse(
                std::io::ErrorKind::InvalidInput,
                "is not a regular file (a directory, a device or a pipe?): give a file path",
            );
        }
        Ok(_) if !force => {
            return refuse(
                std::io::ErrorKind::AlreadyExists,
                "exists (use --force to overwrite)",
            );
        }
        _ => {}
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".new-{}", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let written = write_private_file(&temporary, DEFAULT_CONFIG.as_bytes())
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Always a new file, ours, created 0600 (the umask can only narrow it).
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// A config file that holds secrets should not be readable by others: say so.
pub fn permission_warning(source: &ConfigSource) -> Option<String> {
    let ConfigSource::File(path) = source else {
        return None;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        let text = read_bounded(path, MAX_CONFIG_BYTES).ok()?;
        let has_secret = holds_secrets(&text);
        (mode & 0o077 != 0 && has_secret).then(|| {
            format!(
                "{} is readable by other users (mode {:o}) and looks like it holds secrets; \
                 run `chmod 600 {}` or move secrets to environment variables",
                path.display(),
                mode & 0o777,
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Whether configuration text holds a secret value: something `--print-config` would redact
/// (the shipped config.ron names `password` and `token` in comments and empty fields, which
/// are no secrets). Text that does not parse is judged by the words it contains.
fn holds_secrets(text: &str) -> bool {
    match Config::parse(text, "") {
        Ok(config) => ron::ser::to_string_pretty(&config, ron::ser::PrettyConfig::default())
            .is_ok_and(|plain| plain != config.to_redacted_ron()),
        Err(_) => {
            let text = text.to_ascii_lowercase();
            ["password", "secret", "token", "routing_key"]
                .iter()
                .any(|word| text.contains(word))
        }
    }
}

/// librdkafka property names that carry secrets.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "sasl.jaas",
        "ssl.key.pem",
        "private",
    ]
    .iter()
    .any(|needle| key.contains(needle))
}

/// The 1-based line of the `n`th (from 0) `field:` anywhere in a line, as in
/// `(name: "x", timeout_secs: 0)`; else where `field:` first starts a line, or 1.
fn line_of_nth_field(text: &str, field: &str, n: usize) -> usize {
    let needle = format!("{field}:");
    let mut seen = 0;
    for (index, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices(&needle) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if seen == n {
                return index + 1;
            }
            seen += 1;
        }
    }
    line_of_field(text, field)
}

/// The 1-based line where `field:` first appears, or 1: good enough to point an editor at.
fn line_of_field(text: &str, field: &str) -> usize {
    // A field (`brokers:`) or a map's key (`"db-critical":` in `filters`).
    let needles = [format!("{field}:"), format!("\"{field}\":")];
    text.lines()
        .position(|line| {
            let code = line.split("//").next().unwrap_or("").trim_start();
            needles.iter().any(|needle| code.starts_with(needle))
        })
        .map(|index| index + 1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_parses_with_the_documented_defaults() {
        let config = Config::built_in();
        assert_eq!(config.kafka.brokers, "localhost:9092");
        assert_eq!(config.kafka.topic, "incidents-created");
        assert_eq!(config.kafka.group_id, "incident-management-consumer");
        assert_eq!(config.kafka.auto_offset_reset, "latest");
        assert_eq!(config.kafka.poll_timeout_ms, 1000);
        assert_eq!(config.dead_letter_topic(), "incidents-created.dlq");
    }

    #[test]
    fn omitted_settings_keep_the_documented_defaults() {
        // The defaults in code are the ones config.ron documents.
        assert_eq!(Config::default(), Config::built_in());
        let text = "(kafka: (brokers: \"kafka-1:9092\"),\n notifications: (administrators: [\"ops@example.com\"]),\n)\n";
        assert_eq!(text.lines().count(), 3);
        let config = Config::parse(text, "short.ron").unwrap();
        let mut expected = Config::default();
        expected.kafka.brokers = "kafka-1:9092".into();
        expected.notifications.administrators = vec!["ops@example.com".into()];
        assert_eq!(config, expected);
        // An empty file and an empty section are fine too.
        assert_eq!(Config::parse("()", "empty.ron").unwrap(), Config::default());
        assert_eq!(
            Config::parse("(escalation: ())", "e.ron").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn unknown_fields_in_a_short_file_name_their_line() {
        let text = "(\n    kafka: (\n        poll_timout_ms: 5,\n    ),\n)\n";
        let error = Config::parse(text, "short.ron").unwrap_err().to_string();
        assert!(error.starts_with("short.ron:3:"), "{error}");
        assert!(error.contains("poll_timout_ms"), "{error}");
    }

    #[test]
    fn route_kinds_are_read_by_name_and_an_unknown_one_names_its_line() {
        let route = |kinds: &str| {
            format!(
                "(\n    notifications: (\n        routes: [\n            (kinds: [{kinds}], channels: [email]),\n        ],\n    ),\n)\n"
            )
        };
        let config = Config::parse(&route("\"incident_created\", \"resolved\""), "r.ron").unwrap();
        assert_eq!(
            config.notifications.routes[0].kinds,
            [
                incident_core::engine::NotificationKind::IncidentCreated,
                incident_core::engine::NotificationKind::Resolved
            ]
        );
        // Written back by name, as a user writes it.
        let printed = ron::to_string(&config.notifications.routes[0]).unwrap();
        assert!(
            printed.contains("kinds:[\"incident_created\",\"resolved\"]"),
            "{printed}"
        );
        let error = Config::parse(&route("\"incident_deleted\""), "r.ron")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("r.ron:4:"), "{error}");
        assert!(error.contains("unknown kind `incident_deleted`"), "{error}");
        assert!(
            error.contains("known: incident_created, status_changed"),
            "{error}"
        );
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let text = DEFAULT_CONFIG.replacen("topic: \"incidents-created\",", "topic: incidents,", 1);
        let error = Config::parse(&text, "my.ron").unwrap_err().to_string();
        let line = line_of_field(DEFAULT_CONFIG, "topic");
        assert!(error.starts_with(&format!("my.ron:{line}:")), "{error}");
    }

    #[test]
    fn a_zero_timeout_names_the_line_of_its_level() {
        let text = DEFAULT_CONFIG.replacen("timeout_secs: 900", "timeout_secs: 0", 1);
        let line = 1 + text
            .lines()
            .position(|l| l.contains("timeout_secs: 0"))
            .unwrap();
        assert!(line > 1);
        let error = Config::parse(&text, "c.ron").unwrap_err().to_string();
        assert!(error.starts_with(&format!("c.ron:{line}: ")), "{error}");
        assert!(error.contains("timeout_secs"), "{error}");
    }

    #[test]
    fn a_config_over_the_size_limit_is_refused_without_reading_it_whole() {
        // An endless file: reading it whole would never finish.
        let error = Config::load(Some(Path::new("/dev/zero")), &[]).unwrap_err();
        assert!(matches!(error, ConfigError::TooLarge { .. }), "{error}");
        assert!(error.to_string().starts_with("/dev/zero: "), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.ron");
        let mut text = DEFAULT_CONFIG.to_string();
        while (text.len() as u64) <= MAX_CONFIG_BYTES {
            text.push_str("// padding padding padding padding padding padding padding\n");
        }
        std::fs::write(&big, &text).unwrap();
        let error = Config::load(Some(&big), &[]).unwrap_err();
        assert!(matches!(error, ConfigError::TooLarge { .. }), "{error}");
    }

    #[test]
    fn the_shipped_config_readable_by_others_draws_no_secrets_warning() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.ron");
        std::fs::write(&path, DEFAULT_CONFIG).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(permission_warning(&ConfigSource::File(path.clone())), None);
        std::fs::write(
            &path,
            DEFAULT_CONFIG.replace("properties: {}", "properties: {\"sasl.password\": \"x\"}"),
        )
        .unwrap();
        assert!(permission_warning(&ConfigSource::File(path)).is_some());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = DEFAULT_CONFIG.replacen("topic:", "topik:", 1);
        let error = Config::parse(&text, "c.ron").unwrap_err().to_string();
        assert!(error.contains("topik"), "{error}");
        assert!(error.starts_with("c.ron:"), "{error}");
    }

    #[test]
    fn semantic_errors_name_the_field_and_its_line() {
        let text = DEFAULT_CONFIG.replacen(
            "auto_offset_reset: \"latest\"",
            "auto_offset_reset: \"sometimes\"",
            1,
        );
        let error = Config::parse(&text, "c.ron").unwrap_err().to_string();
        let line = line_of_field(&text, "auto_offset_reset");
        assert_eq!(
            error,
            format!(
                "c.ron:{line}: field `kafka.auto_offset_reset`: must be `earliest` or `latest`"
            )
        );
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("password");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let path = secret.to_str().unwrap().to_string();
        let env = |name: &str| (name == "KAFKA_SASL_PASSWORD_FILE").then(|| path.clone());
        assert_eq!(
            env_or_file("KAFKA_SASL_PASSWORD", env),
            Ok(Some("s3cret".into()))
        );
        assert_eq!(env_or_file("OTHER", env), Ok(None));
        let missing = |name: &str| (name == "X_FILE").then(|| "/nonexistent/x".to_string());
        assert!(
            env_or_file("X", missing)
                .unwrap_err()
                .starts_with("X_FILE=/nonexistent/x")
        );
    }

    #[cfg(unix)]
    #[test]
    fn initial_config_is_private_and_not_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/config.ron");
        write_initial_config(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let parent = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(parent & 0o777, 0o700);
        assert!(write_initial_config(&path, false).is_err());
        Config::parse(&std::fs::read_to_string(&path).unwrap(), "written").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(
            &path,
            DEFAULT_CONFIG.replace("properties: {}", "properties: {\"sasl.password\": \"x\"}"),
        )
        .unwrap();
        let warning = permission_warning(&ConfigSource::File(path.clone())).unwrap();
        assert!(warning.contains("chmod 600"), "{warning}");
        write_initial_config(&path, true).unwrap();
        assert_eq!(permission_warning(&ConfigSource::File(path)), None);
    }

    #[test]
    fn environment_and_overrides_apply_and_secrets_are_redacted() {
        let mut config = Config::built_in();
        config.apply_env(|name| match name {
            "KAFKA_BOOTSTRAP_SERVERS" => Some("kafka-1:9093".into()),
            "KAFKA_SASL_PASSWORD" => Some("hunter2".into()),
            _ => None,
        });
        config
            .apply_properties(&["fetch.min.bytes=1".into(), "ssl.key.password=pw".into()])
            .unwrap();
        assert!(config.apply_properties(&["novalue".into()]).is_err());
        assert_eq!(config.kafka.brokers, "kafka-1:9093");
        assert_eq!(config.kafka.properties["sasl.password"], "hunter2");
        let printed = config.to_redacted_ron();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("\"pw\""), "{printed}");
        assert!(printed.contains("fetch.min.bytes"));
        // What is printed parses back.
        Config::parse(&printed, "printed").unwrap();
    }
}

#[cfg(test)]
mod notification_section_tests {
    use crate::Config;
    use incident_notify::Channel;
    use incident_notify::config::{DeliveryConfig, RateLimitConfig};

    #[test]
    fn the_shipped_section_parses_sends_nothing_and_prints_back_redacted() {
        let mut config = Config::built_in();
        let notifications = &config.notifications;
        assert!(Channel::ALL.iter().all(|c| !notifications.enabled(*c)));
        assert_eq!(notifications.escalation_levels.len(), 3);
        assert_eq!(notifications.delivery, DeliveryConfig::default());
        assert_eq!(notifications.rate_limit, RateLimitConfig::default());
        config.apply_env(|name| match name {
            "SMTP_USERNAME" => Some("mailer".into()),
            "SMTP_PASSWORD" => Some("hunter2".into()),
            "PAGERDUTY_ROUTING_KEY" => Some("R0UTING".into()),
            _ => None,
        });
        let printed = config.to_redacted_ron();
        assert!(!printed.contains("hunter2") && !printed.contains("R0UTING"));
        Config::parse(&printed, "printed").unwrap();
    }

    #[test]
    fn notification_errors_name_file_line_and_field() {
        let text =
            crate::DEFAULT_CONFIG.replacen("outbox_capacity: 10000", "outbox_capacity: 0", 1);
        let error = Config::parse(&text, "c.ron").unwrap_err().to_string();
        assert!(
            error.contains("field `notifications.outbox_capacity`: must be more than 0"),
            "{error}"
        );
    }

    #[test]
    fn a_short_dedup_window_alone_takes_the_horizon_with_it() {
        use crate::Config;
        let config = Config::parse("(notifications: (dedup: (window_secs: 1)))", "c.ron").unwrap();
        assert_eq!(config.notifications.dedup.window_secs, 1);
        assert_eq!(config.notifications.dedup.resume_horizon_secs, 1);
        // The shipped horizon where the window is longer.
        let config = Config::parse("(notifications: (dedup: (max_entries: 5)))", "c.ron").unwrap();
        assert_eq!(config.notifications.dedup.resume_horizon_secs, 3600);
        // A horizon the user wrote is still checked.
        let error = Config::parse(
            "(\n notifications: (\n  dedup: (\n   window_secs: 1,\n   resume_horizon_secs: 5,\n  ),\n ),\n)",
            "c.ron",
        )
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("c.ron:5:"), "{error}");
        assert!(error.contains("resume_horizon_secs"), "{error}");
    }

    #[test]
    fn print_config_redacts_a_webhook_url_from_the_environment() {
        let mut config = Config::built_in();
        config.apply_env(|name| {
            (name == "WEBHOOK_URL").then(|| "https://u:p@x.example/hook?token=abc".to_string())
        });
        let printed = config.to_redacted_ron();
        assert!(
            printed.contains("https://REDACTED@x.example/hook?token=REDACTED"),
            "{printed}"
        );
        assert!(
            !printed.contains("abc") && !printed.contains("u:p@"),
            "{printed}"
        );
    }
}

#[cfg(test)]
mod journal_section_tests {
    use crate::{Config, DEFAULT_CONFIG};
    use incident_journal::{JournalConfig, default_path};
    use std::path::PathBuf;

    #[test]
    fn the_shipped_section_is_the_default() {
        assert_eq!(Config::built_in().journal, JournalConfig::default());
        assert!(JournalConfig::default().validate().is_ok());
    }

    #[test]
    fn a_path_parses_without_some_and_unknown_fields_are_refused() {
        let text = DEFAULT_CONFIG.replacen("path: None,", "path: \"/srv/j.sqlite3\",", 1);
        let config = Config::parse(&text, "c.ron").unwrap();
        assert_eq!(
            config.journal.path.as_deref(),
            Some(std::path::Path::new("/srv/j.sqlite3"))
        );
        assert_eq!(
            config.journal.resolved_path().unwrap(),
            PathBuf::from("/srv/j.sqlite3")
        );
        let text = DEFAULT_CONFIG.replacen("retention_days:", "retention_dayz:", 1);
        let error = Config::parse(&text, "c.ron").unwrap_err().to_string();
        assert!(error.contains("retention_dayz"), "{error}");
    }

    #[test]
    fn a_missing_section_or_field_takes_the_default() {
        let start = DEFAULT_CONFIG.find("    journal: (").unwrap();
        let end = start + DEFAULT_CONFIG[start..].find("\n    ),\n").unwrap() + 7;
        let without = format!("{}{}", &DEFAULT_CONFIG[..start], &DEFAULT_CONFIG[end..]);
        assert_eq!(
            Config::parse(&without, "c.ron").unwrap().journal,
            JournalConfig::default()
        );
        let partial = DEFAULT_CONFIG.replacen("        retention_days: 90,\n", "", 1);
        assert_eq!(
            Config::parse(&partial, "c.ron")
                .unwrap()
                .journal
                .retention_days,
            90
        );
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (
                JournalConfig {
                    max_batch_records: 0,
                    ..JournalConfig::default()
                },
                "max_batch_records",
            ),
            (
                JournalConfig {
                    queue_capacity: 0,
                    ..JournalConfig::default()
                },
                "queue_capacity",
            ),
            (
                JournalConfig {
                    queue_records: 0,
                    ..JournalConfig::default()
                },
                "queue_records",
            ),
            (
                JournalConfig {
                    max_batch_delay_ms: 5000,
                    ..JournalConfig::default()
                },
                "max_batch_delay_ms",
            ),
            (
                JournalConfig {
                    path: Some(PathBuf::new()),
                    ..JournalConfig::default()
                },
                "path",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(config.validate().unwrap_err().0, field);
        }
    }

    #[test]
    fn the_default_path_is_in_the_data_directory() {
        if let Some(path) = default_path() {
            assert!(
                path.ends_with("incident-console/journal.sqlite3"),
                "{path:?}"
            );
        }
        let config = JournalConfig::default();
        assert_eq!(config.resolved_path().ok(), default_path());
    }
}
