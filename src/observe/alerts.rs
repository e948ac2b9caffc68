//! Alerts about the console itself: conditions that each hold for a while before they fire,
//! and clear as soon as they stop holding. One transition each way, never a flood. Pure: the
//! caller passes `now` and what it observed, so the logic is tested with a clock it controls.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::status::{ConnectionState, NotifierStatus};

pub use crate::config::monitoring::SelfAlertsConfig;

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
    /// Events handled so far (a counter): its standing still is a silent source.
    pub events_total: u64,
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
    /// The event counter when it last moved (or at the first evaluation), and when.
    last_event: Option<(u64, Instant)>,
}

impl SelfAlerts {
    pub fn new(config: SelfAlertsConfig) -> Self {
        Self {
            config,
            conditions: BTreeMap::new(),
            channels: BTreeMap::new(),
            dead_letter_samples: VecDeque::new(),
            last_event: None,
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
        if let Some(limit) = config.source_silent_secs {
            let since = match self.last_event {
                Some((total, at)) if total == inputs.events_total => at,
                _ => {
                    self.last_event = Some((inputs.events_total, now));
                    now
                }
            };
            checks.push((
                "source_silent".into(),
                now.saturating_duration_since(since) >= secs(limit),
                Duration::ZERO,
                format!("no event on the topic for {limit} s: is the producer running?"),
            ));
        }
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

/// A self-alert start or clear to notify the administrators of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub alert: String,
    pub firing: bool,
    /// What the start said (a clear repeats its start's detail).
    pub detail: String,
    /// Names the episode: the wall-clock time (ms) its start was notified. The clear carries
    /// its start's, so the two belong together and a later episode has keys of its own.
    pub episode_ms: i64,
    /// From the notified start to the clear; zero for a start.
    pub lasted: Duration,
}

/// The start an alert's administrators were told about, whose clear they are owed.
#[derive(Debug, Clone)]
struct Notified {
    at: Instant,
    episode_ms: i64,
    detail: String,
}

#[derive(Debug, Clone, Default)]
struct GateEntry {
    /// Firing now, with its start's detail.
    firing: Option<String>,
    notified: Option<Notified>,
    last_start_notified: Option<Instant>,
}

/// Which transitions reach the administrators: exactly one start and one clear per notified
/// episode, and for a flapping alert at most one start per `min_interval`. A start within
/// `min_interval` of the last notified start of the same alert is held back; if the alert still
/// fires when the interval is over, the start is notified then, otherwise neither it nor its
/// clear ever is. A clear is owed only for a notified start. Pure like `SelfAlerts`: the caller
/// passes the monotonic `now` and the wall clock (for episode names), once per evaluation.
#[derive(Debug, Clone)]
pub struct NotifyGate {
    min_interval: Duration,
    /// One entry per alert name (a fixed set plus one per channel): bounded.
    alerts: BTreeMap<String, GateEntry>,
}

impl NotifyGate {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            alerts: BTreeMap::new(),
        }
    }

    /// Takes this evaluation's transitions; returns what to notify now.
    pub fn update(
        &mut self,
        now: Instant,
        wall_ms: i64,
        transitions: &[Transition],
    ) -> Vec<Notice> {
        for transition in transitions {
            let entry = self.alerts.entry(transition.alert.clone()).or_default();
            entry.firing = transition.firing.then(|| transition.detail.clone());
        }
        let mut notices = Vec::new();
        for (alert, entry) in &mut self.alerts {
            match (&entry.firing, &entry.notified) {
                (Some(detail), None) => {
                    let quiet = entry.last_start_notified.is_some_and(|last| {
                        now.saturating_duration_since(last) < self.min_interval
                    });
                    if !quiet {
                        entry.notified = Some(Notified {
                            at: now,
                            episode_ms: wall_ms,
                            detail: detail.clone(),
                        });
                        entry.last_start_notified = Some(now);
                        notices.push(Notice {
                            alert: alert.clone(),
                            firing: true,
                            detail: detail.clone(),
                            episode_ms: wall_ms,
                            lasted: Duration::ZERO,
                        });
                    }
                }
                (None, Some(_)) => {
                    if let Some(notified) = entry.notified.take() {
                        notices.push(Notice {
                            alert: alert.clone(),
                            firing: false,
                            detail: notified.detail,
                            episode_ms: notified.episode_ms,
                            lasted: now.saturating_duration_since(notified.at),
                        });
                    }
                }
                _ => {}
            }
        }
        notices
    }
}

/// The notification for `notice`, routed to `notifications.self_alerts` (incident id 0: it is
/// about no incident). `console` says which console it is about (group and topic).
pub fn notification(notice: &Notice, console: &str) -> crate::core::engine::Notification {
    use crate::core::engine::{Audience, Notification, NotificationKind};
    use crate::core::event::Priority;
    let state = if notice.firing { "firing" } else { "cleared" };
    let since = chrono::DateTime::from_timestamp_millis(notice.episode_ms)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let duration = if notice.firing {
        "ongoing".to_string()
    } else {
        crate::core::engine::format_duration(notice.lasted.as_secs_f64())
    };
    let mut fields: BTreeMap<String, String> = [
        ("alert", notice.alert.clone()),
        ("state", state.to_string()),
        ("detail", notice.detail.clone()),
        ("since", since),
        ("duration", duration),
        ("console", console.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    if let Some(channel) = notice.alert.strip_prefix("channel_failing:") {
        fields.insert("channel".into(), channel.to_string());
    }
    // Nothing is handled while these hold: as urgent as it gets.
    let priority = match notice.alert.as_str() {
        "broker_unreachable" | "stuck" => Priority::Critical,
        _ => Priority::High,
    };
    Notification {
        kind: NotificationKind::SelfAlert,
        audience: Audience::Administrators,
        incident_id: 0,
        title: format!("self-alert {} {state}", notice.alert),
        priority: Some(priority),
        dedup_key: format!("self-alert/{}/{}/{state}", notice.alert, notice.episode_ms),
        fields,
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
    fn a_silent_source_fires_once_and_clears_on_the_next_event() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let events = |n| AlertInputs {
            events_total: n,
            ..connected()
        };
        // Off by default.
        let mut off = SelfAlerts::new(SelfAlertsConfig::default());
        assert!(off.evaluate(at(0), &events(0)).is_empty());
        assert!(off.evaluate(at(100_000), &events(0)).is_empty());
        let mut alerts = SelfAlerts::new(SelfAlertsConfig {
            source_silent_secs: Some(600),
            ..SelfAlertsConfig::default()
        });
        assert!(alerts.evaluate(at(0), &events(5)).is_empty());
        // Events keep coming: never silent, however long it runs.
        for s in 1..1200 {
            assert!(alerts.evaluate(at(s), &events(5 + s)).is_empty(), "at {s}");
        }
        // Then nothing from 1199 on: silent at 1799, once.
        for s in 1200..1799 {
            assert!(alerts.evaluate(at(s), &events(1204)).is_empty(), "at {s}");
        }
        let fired = alerts.evaluate(at(1799), &events(1204));
        assert_eq!(names(&fired), [("source_silent".to_string(), true)]);
        assert!(fired[0].detail.contains("600 s"));
        for s in 1800..5000 {
            assert!(
                alerts.evaluate(at(s), &events(1204)).is_empty(),
                "no repeat at {s}"
            );
        }
        let cleared = alerts.evaluate(at(5000), &events(1205));
        assert_eq!(names(&cleared), [("source_silent".to_string(), false)]);
        assert!(alerts.evaluate(at(5001), &events(1205)).is_empty());
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

    /// The shipped stuck path end to end on a controlled clock: `ProgressWatch` (what the
    /// watch task uses) measures the stall, `SelfAlerts` fires after the shipped 120 s.
    #[test]
    fn stuck_fires_after_the_shipped_120_s_of_lag_with_nothing_handled() {
        use crate::observe::health::{Observation, ProgressWatch};
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let config = SelfAlertsConfig::default();
        assert_eq!(config.stuck_for_secs, 120);
        let mut alerts = SelfAlerts::new(config);
        let mut progress = ProgressWatch::new(Duration::from_secs(60));
        let mut step = |s, handled, lag: i64, paused| {
            let seen = Observation {
                connection: ConnectionState::Connected,
                assigned_partitions: 1,
                paused,
                lag: Some(lag),
                handled,
                journal_failures: None,
            };
            progress.observe(at(s), &seen);
            let inputs = AlertInputs {
                lag: Some(lag),
                stalled_for: progress.stalled_for(at(s)),
                ..connected()
            };
            names(&alerts.evaluate(at(s), &inputs))
        };
        // Paused with lag: not stuck, however long.
        for s in 0..300 {
            assert!(step(s, 0, 50, true).is_empty(), "paused at {s}");
        }
        // Resumed, still nothing handled: fires once 120 s later, not before.
        for s in 300..420 {
            assert!(step(s, 0, 50, false).is_empty(), "at {s}");
        }
        assert_eq!(step(420, 0, 50, false), [("stuck".to_string(), true)]);
        for s in 421..500 {
            assert!(step(s, 0, 50, false).is_empty(), "no repeat at {s}");
        }
        // One message handled: cleared once.
        assert_eq!(step(500, 1, 49, false), [("stuck".to_string(), false)]);
        assert!(step(501, 2, 48, false).is_empty());
    }

    /// The shipped dead-letter rule: more than 60 a minute, held for 60 s.
    #[test]
    fn dead_letters_fire_after_the_shipped_minute_above_60_per_minute() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let config = SelfAlertsConfig::default();
        assert_eq!(
            (config.dead_letters_per_minute, config.dead_letters_for_secs),
            (60, 60)
        );
        let mut alerts = SelfAlerts::new(config);
        let poisoned = |n| AlertInputs {
            dead_letters: n,
            ..connected()
        };
        // Two a second: 120 a minute once a minute of samples is in.
        let mut fired_at = None;
        for s in 0..200u64 {
            let transitions = names(&alerts.evaluate(at(s), &poisoned(2 * s)));
            if !transitions.is_empty() {
                assert_eq!(transitions, [("dead_letters".to_string(), true)], "at {s}");
                assert!(fired_at.is_none(), "fired twice");
                fired_at = Some(s);
            }
        }
        // Above 60/min from s=31 (62 in the window), so it fires 60 s later.
        assert_eq!(fired_at, Some(91));
        // The poison stops: the rate falls to 0 within the minute and it clears once.
        let mut cleared_at = None;
        for s in 200..400u64 {
            let transitions = names(&alerts.evaluate(at(s), &poisoned(398)));
            if !transitions.is_empty() {
                assert_eq!(transitions, [("dead_letters".to_string(), false)], "at {s}");
                assert!(cleared_at.is_none(), "cleared twice");
                cleared_at = Some(s);
            }
        }
        assert!(cleared_at.is_some_and(|s| s <= 261), "{cleared_at:?}");
    }

    fn transition(alert: &str, firing: bool) -> Transition {
        Transition {
            alert: alert.into(),
            firing,
            detail: format!("{alert} detail"),
        }
    }

    #[test]
    fn the_gate_notifies_one_start_and_one_clear_per_episode() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let wall = |s: u64| 1_800_000_000_000 + (s as i64) * 1000;
        let mut gate = NotifyGate::new(Duration::from_secs(900));
        assert!(gate.update(at(0), wall(0), &[]).is_empty());
        let started = gate.update(at(1), wall(1), &[transition("stuck", true)]);
        assert_eq!(started.len(), 1);
        assert!(started[0].firing && started[0].episode_ms == wall(1));
        assert_eq!(started[0].detail, "stuck detail");
        for s in 2..100 {
            assert!(gate.update(at(s), wall(s), &[]).is_empty(), "at {s}");
        }
        let cleared = gate.update(at(100), wall(100), &[transition("stuck", false)]);
        assert_eq!(
            cleared,
            [Notice {
                alert: "stuck".into(),
                firing: false,
                detail: "stuck detail".into(),
                episode_ms: wall(1),
                lasted: Duration::from_secs(99),
            }]
        );
        assert!(gate.update(at(101), wall(101), &[]).is_empty());
        // Another alert is gated on its own.
        assert_eq!(
            gate.update(at(102), wall(102), &[transition("lag_high", true)])
                .len(),
            1
        );
    }

    /// Flapping under the shipped 900 s: the first episode is notified (start and clear); the
    /// next starts within 900 s are not, nor their clears; one that still fires when the 900 s
    /// are over is notified then, and its clear follows.
    #[test]
    fn a_flapping_alert_pages_once_per_interval() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let wall = |s: u64| (s as i64) * 1000;
        let mut gate = NotifyGate::new(Duration::from_secs(
            crate::notify::config::SelfAlertRecipients::default().min_interval_secs,
        ));
        let mut sent = Vec::new();
        let mut flap = |s, firing: Option<bool>| {
            let transitions: Vec<Transition> = firing
                .map(|f| transition("broker_unreachable", f))
                .into_iter()
                .collect();
            for notice in gate.update(at(s), wall(s), &transitions) {
                sent.push((s, notice.firing));
            }
        };
        for cycle in 0..10u64 {
            flap(cycle * 60, Some(true));
            flap(cycle * 60 + 30, Some(false));
        }
        // Firing again at 600 and holding: notified when the interval ends (900 s after 0).
        flap(620, Some(true));
        for s in 621..1000 {
            flap(s, None);
        }
        flap(1000, Some(false));
        assert_eq!(
            sent,
            [(0, true), (30, false), (900, true), (1000, false)],
            "one page per interval, each start with its clear"
        );
    }

    #[test]
    fn self_alert_notifications_pair_start_and_clear_by_episode() {
        let firing = Notice {
            alert: "channel_failing:email".into(),
            firing: true,
            detail: "notification channel email failing for 300 s: smtp_554".into(),
            episode_ms: 1_800_000_000_000,
            lasted: Duration::ZERO,
        };
        let cleared = Notice {
            firing: false,
            lasted: Duration::from_secs(125),
            ..firing.clone()
        };
        let start = notification(&firing, "group g on topic t");
        let clear = notification(&cleared, "group g on topic t");
        assert_eq!(
            start.dedup_key,
            "self-alert/channel_failing:email/1800000000000/firing"
        );
        assert_eq!(
            clear.dedup_key,
            "self-alert/channel_failing:email/1800000000000/cleared"
        );
        assert_eq!(start.fields["channel"], "email");
        assert_eq!(start.fields["state"], "firing");
        assert_eq!(start.fields["since"], "2027-01-15T08:00:00Z");
        assert_eq!(clear.fields["duration"], "2m 05s");
        assert_eq!(clear.fields["detail"], firing.detail);
    }
}
