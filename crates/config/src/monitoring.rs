//! The `monitoring` section: the metrics endpoint and the self-alerts (`observe` acts on it).

use serde::{Deserialize, Serialize};

/// `monitoring:` in config.ron.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringConfig {
    /// `HOST:PORT` for `/metrics`, `/healthz` and `/readyz`; `None` turns the server off.
    pub metrics_addr: Option<String>,
    /// `/readyz` says "stuck" when lag stays above 0 this long with nothing handled.
    pub stuck_after_secs: u64,
    pub alerts: SelfAlertsConfig,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            metrics_addr: None,
            stuck_after_secs: 60,
            alerts: SelfAlertsConfig::default(),
        }
    }
}

impl MonitoringConfig {
    /// Returns the offending field (relative to `monitoring.`) and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(addr) = &self.metrics_addr {
            check_listen_addr(addr).map_err(|message| ("metrics_addr".to_string(), message))?;
        }
        if self.stuck_after_secs == 0 || self.stuck_after_secs > 24 * 3600 {
            return Err((
                "stuck_after_secs".into(),
                "must be between 1 and 86400".into(),
            ));
        }
        self.alerts.validate()
    }
}

/// `HOST:PORT` with a numeric port (the host may be a name, an IPv4 or a bracketed IPv6).
pub fn check_listen_addr(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("`{addr}` is not HOST:PORT"))?;
    if host.is_empty() {
        return Err(format!("`{addr}` has no host (use 0.0.0.0:{port} for all)"));
    }
    port.parse::<u16>()
        .map(|_| ())
        .map_err(|_| format!("`{addr}`: `{port}` is not a port number"))
}

/// `monitoring.alerts:` in config.ron. Each condition has a threshold (where it applies) and
/// how long it must hold before the alert fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfAlertsConfig {
    pub enabled: bool,
    /// Kafka unreachable (or never reached) this long.
    pub broker_unreachable_secs: u64,
    /// Summed consumer lag above `lag_above` for `lag_for_secs`.
    pub lag_above: i64,
    pub lag_for_secs: u64,
    /// Lag above 0, not paused, and nothing handled for this long.
    pub stuck_for_secs: u64,
    /// More than this many dead letters in the last minute, for `dead_letters_for_secs`.
    pub dead_letters_per_minute: u64,
    pub dead_letters_for_secs: u64,
    /// A notification channel failing (failures, no delivery since) this long.
    pub channel_failing_secs: u64,
    /// No event on the topic for this long: "source silent", the dead-man's switch on the
    /// producer. `None` (the default): off.
    #[serde(default)]
    pub source_silent_secs: Option<u64>,
}

impl Default for SelfAlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            broker_unreachable_secs: 60,
            lag_above: 10_000,
            lag_for_secs: 300,
            stuck_for_secs: 120,
            dead_letters_per_minute: 60,
            dead_letters_for_secs: 60,
            channel_failing_secs: 300,
            source_silent_secs: None,
        }
    }
}

impl SelfAlertsConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        let day = 24 * 3600;
        for (field, value) in [
            ("broker_unreachable_secs", self.broker_unreachable_secs),
            ("lag_for_secs", self.lag_for_secs),
            ("stuck_for_secs", self.stuck_for_secs),
            ("dead_letters_for_secs", self.dead_letters_for_secs),
            ("channel_failing_secs", self.channel_failing_secs),
        ] {
            if value > day {
                return Err((format!("alerts.{field}"), format!("must be at most {day}")));
            }
        }
        if let Some(silent) = self.source_silent_secs
            && !(1..=7 * day).contains(&silent)
        {
            return Err((
                "alerts.source_silent_secs".into(),
                format!("must be from 1 to {} (a week), or None", 7 * day),
            ));
        }
        if self.lag_above < 0 {
            return Err(("alerts.lag_above".into(), "must not be negative".into()));
        }
        Ok(())
    }
}
