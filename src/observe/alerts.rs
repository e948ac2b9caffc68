//! Alerts about the console itself: conditions that each hold for a while before they fire,
//! and clear as soon as they stop holding. One transition each way, never a flood. Pure: the
//! caller passes `now` and what it observed, so the logic is tested with a clock it controls.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::status::{ConnectionState, NotifierStatus};

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
        if self.lag_above < 0 {
            return Err(("alerts.lag_above".into(), "must not be negative".into()));
        }
        Ok(())
    }
}

/// What the alerts look at, once per evaluation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertInputs {
    pub connection: ConnectionState,
    pub lag: Option<i64>,
    /// How long lag has been above 0 with nothing handled (not paused), if it has.
    pub stalled_for: Option<Duration>,
    /// Dead letters so far (a counter).
    pub dead_letters: u64,
    pub notifier: NotifierStatus,
}

/// An alert starting or clearing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// `broker_unreachable`, `lag_high`, `stuck`, `dead_letters`, `channel_failing:<name>`.
    pub alert: String,
    pub firing: bool,
    pub detail: String,
}

/// One condition's state: since when it holds, and whether it has fired.
#[derive(Debug, Clone, Default)]
struct Condition {
    holding_since: Option<Instant>,
    firing: bool,
}

impl Condition {
    fn update(&mut self, now: Instant, holds: bool, hold_for: Duration) -> Option<bool> {
        if !holds {
            self.holding_since = None;
            return std::mem::take(&mut self.firing).then_some(false);
        }
        let since = *self.holding_since.get_or_insert(now);
        if !self.firing && now.saturating_duration_since(since) >= hold_for {
            self.firing = true;
            return Some(true);
        }
        None
    }
}

/// A channel's counters at the last evaluation, and since when it has been failing.
#[derive(Debug, Clone, Default)]
struct ChannelTrack {
    delivered: u64,
    failed: u64,
    failing: bool,
}

/// Samples of the dead-letter counter over the last minute; one per evaluation, bounded.
const RATE_SAMPLES: usize = 600;

#[derive(Debug, Clone)]
pub struct SelfAlerts {
    config: SelfAlertsConfig,
    conditions: BTreeMap<String, Condition>,
    channels: BTreeMap<String, ChannelTrack>,
    dead_letter_samples: VecDeque<(Instant, u64)>,
}

impl SelfAlerts {
    pub fn new(config: SelfAlertsConfig) -> Self {
        Self {
            config,
            conditions: BTreeMap::new(),
            channels: BTreeMap::new(),
            dead_letter_samples: VecDeque::new(),
        }
    }

    /// Names of the alerts firing now.
    pub fn firing(&self) -> Vec<String> {
        self.conditions
            .iter()
            .filter(|(_, condition)| condition.firing)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Dead letters over the last minute (or since the first sample, if younger).
    fn dead_letters_last_minute(&mut self, now: Instant, total: u64) -> u64 {
        while self
            .dead_letter_samples
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > Duration::from_secs(60))
            || self.dead_letter_samples.len() >= RATE_SAMPLES
        {
            self.dead_letter_samples.pop_front();
        }
        self.dead_letter_samples.push_back((now, total));
        let oldest = self.dead_letter_samples.front().map_or(total, |(_, v)| *v);
        total.saturating_sub(oldest)
    }

    pub fn evaluate(&mut self, now: Instant, inputs: &AlertInputs) -> Vec<Transition> {
        if !self.config.enabled {
            return Vec::new();
        }
        let config = self.config.clone();
        let secs = Duration::from_secs;
        let mut checks: Vec<(String, bool, Duration, String)> = Vec::new();
        let unreachable = match &inputs.connection {
            ConnectionState::Connected => None,
            ConnectionState::Connecting => Some("no broker has answered yet".to_string()),
            ConnectionState::Disconnected { reason } => Some(reason.clone()),
        };
        checks.push((
            "broker_unreachable".into(),
            unreachable.is_some(),
            secs(config.broker_unreachable_secs),
            format!(
                "Kafka unreachable for {} s: {}",
                config.broker_unreachable_secs,
                unreachable.unwrap_or_default()
            ),
        ));
        let lag = inputs.lag.unwrap_or(0);
        checks.push((
            "lag_high".into(),
            lag > config.lag_above,
            secs(config.lag_for_secs),
            format!(
                "consumer lag {lag} above {} for {} s",
                config.lag_above, config.lag_for_secs
            ),
        ));
        checks.push((
            "stuck".into(),
            inputs
                .stalled_for
                .is_some_and(|stalled| stalled >= secs(config.stuck_for_secs)),
            Duration::ZERO,
            format!(
                "nothing handled for {} s while lag is {lag}",
                config.stuck_for_secs
            ),
        ));
        let per_minute = self.dead_letters_last_minute(now, inputs.dead_letters);
        checks.push((
            "dead_letters".into(),
            per_minute > config.dead_letters_per_minute,
            secs(config.dead_letters_for_secs),
            format!(
                "{per_minute} dead letters in the last minute (above {})",
                config.dead_letters_per_minute
            ),
        ));
        for channel in &inputs.notifier.channels {
            let track = self.channels.entry(channel.name.clone()).or_default();
            let failed = channel.failed + channel.retrying;
            if channel.delivered > track.delivered {
                track.failing = false;
            } else if failed > track.failed {
                track.failing = true;
            }
            track.delivered = channel.delivered;
            track.failed = failed;
            checks.push((
                format!("channel_failing:{}", channel.name),
                track.failing,
                secs(config.channel_failing_secs),
                format!(
                    "notification channel {} failing for {} s: {}",
                    channel.name,
                    config.channel_failing_secs,
                    channel.last_error.as_deref().unwrap_or("no delivery")
                ),
            ));
        }
        let mut transitions = Vec::new();
        for (alert, holds, hold_for, detail) in checks {
            let condition = self.conditions.entry(alert.clone()).or_default();
            if let Some(firing) = condition.update(now, holds, hold_for) {
                let detail = if firing {
                    detail
                } else {
                    format!("cleared: {alert}")
                };
                transitions.push(Transition {
                    alert,
                    firing,
                    detail,
                });
            }
        }
        transitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ChannelStatus;

    fn connected() -> AlertInputs {
        AlertInputs {
            connection: ConnectionState::Connected,
            lag: Some(0),
            ..AlertInputs::default()
        }
    }

    fn names(transitions: &[Transition]) -> Vec<(String, bool)> {
        transitions
            .iter()
            .map(|t| (t.alert.clone(), t.firing))
            .collect()
    }

    #[test]
    fn broker_down_fires_once_after_its_duration_and_clears_once() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut alerts = SelfAlerts::new(SelfAlertsConfig::default());
        assert!(alerts.evaluate(at(0), &connected()).is_empty());
        let down = AlertInputs {
            connection: ConnectionState::Disconnected {
                reason: "1/1 brokers are down".into(),
            },
            ..connected()
        };
        for s in 1..61 {
            assert!(alerts.evaluate(at(s), &down).is_empty(), "at {s}");
        }
        let fired = alerts.evaluate(at(61), &down);
        assert_eq!(names(&fired), [("broker_unreachable".to_string(), true)]);
        assert!(fired[0].detail.contains("1/1 brokers are down"));
        for s in 62..200 {
            assert!(alerts.evaluate(at(s), &down).is_empty(), "no repeat at {s}");
        }
        assert_eq!(alerts.firing(), ["broker_unreachable"]);
        let cleared = alerts.evaluate(at(200), &connected());
        assert_eq!(names(&cleared), [("broker_unreachable".to_string(), false)]);
        assert!(alerts.evaluate(at(201), &connected()).is_empty());
        assert!(alerts.firing().is_empty());
    }

    #[test]
    fn a_condition_that_stops_holding_before_its_duration_never_fires() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut alerts = SelfAlerts::new(SelfAlertsConfig::default());
        let lagging = AlertInputs {
            lag: Some(20_000),
            ..connected()
        };
        assert!(alerts.evaluate(at(0), &lagging).is_empty());
        assert!(alerts.evaluate(at(299), &lagging).is_empty());
        assert!(alerts.evaluate(at(300), &connected()).is_empty());
        // Holding again starts the clock again.
        assert!(alerts.evaluate(at(301), &lagging).is_empty());
        assert!(alerts.evaluate(at(600), &lagging).is_empty());
        assert_eq!(
            names(&alerts.evaluate(at(601), &lagging)),
            [("lag_high".to_string(), true)]
        );
    }

    #[test]
    fn stuck_and_dead_letter_rate() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let config = SelfAlertsConfig {
            dead_letters_for_secs: 0,
            ..SelfAlertsConfig::default()
        };
        let mut alerts = SelfAlerts::new(config);
        let stalled = AlertInputs {
            lag: Some(5),
            stalled_for: Some(Duration::from_secs(120)),
            ..connected()
        };
        assert_eq!(
            names(&alerts.evaluate(at(0), &stalled)),
            [("stuck".to_string(), true)]
        );
        assert_eq!(
            names(&alerts.evaluate(at(1), &connected())),
            [("stuck".to_string(), false)]
        );
        // 61 dead letters within a minute: above 60/min.
        let poisoned = |n| AlertInputs {
            dead_letters: n,
            ..connected()
        };
        assert!(alerts.evaluate(at(2), &poisoned(0)).is_empty());
        assert!(alerts.evaluate(at(30), &poisoned(60)).is_empty());
        assert_eq!(
            names(&alerts.evaluate(at(31), &poisoned(61))),
            [("dead_letters".to_string(), true)]
        );
        // A minute later with no new ones, the rate is 0 again.
        assert!(alerts.evaluate(at(60), &poisoned(61)).is_empty());
        assert_eq!(
            names(&alerts.evaluate(at(95), &poisoned(61))),
            [("dead_letters".to_string(), false)]
        );
    }

    #[test]
    fn a_failing_channel_fires_until_a_delivery_succeeds() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut alerts = SelfAlerts::new(SelfAlertsConfig::default());
        let email = |delivered, failed| AlertInputs {
            notifier: NotifierStatus {
                channels: vec![ChannelStatus {
                    name: "email".into(),
                    delivered,
                    failed,
                    last_error: Some("smtp_554".into()),
                    ..ChannelStatus::default()
                }],
                ..NotifierStatus::default()
            },
            ..connected()
        };
        assert!(alerts.evaluate(at(0), &email(3, 0)).is_empty());
        assert!(alerts.evaluate(at(1), &email(3, 1)).is_empty());
        assert!(alerts.evaluate(at(300), &email(3, 1)).is_empty());
        let fired = alerts.evaluate(at(301), &email(3, 2));
        assert_eq!(names(&fired), [("channel_failing:email".to_string(), true)]);
        assert!(fired[0].detail.contains("smtp_554"), "{}", fired[0].detail);
        assert_eq!(
            names(&alerts.evaluate(at(302), &email(4, 2))),
            [("channel_failing:email".to_string(), false)]
        );
    }

    #[test]
    fn disabled_alerts_never_fire() {
        let mut alerts = SelfAlerts::new(SelfAlertsConfig {
            enabled: false,
            ..SelfAlertsConfig::default()
        });
        let start = Instant::now();
        let down = AlertInputs::default();
        assert!(alerts.evaluate(start, &down).is_empty());
        assert!(
            alerts
                .evaluate(start + Duration::from_secs(3600), &down)
                .is_empty()
        );
    }
}
