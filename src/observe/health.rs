//! Readiness: is this console doing its job? Connected, assigned, journal writable, and not
//! stuck (lag that does not go down while nothing is handled). Pure: every call takes `now`, so
//! tests drive the clock.

use std::time::{Duration, Instant};

use crate::status::{ConnectionState, ConsumerStatus};

/// What readiness looks at, gathered from the latest snapshot and status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    pub connection: ConnectionState,
    pub assigned_partitions: usize,
    pub paused: bool,
    /// Summed consumer lag; `None` until librdkafka has reported it.
    pub lag: Option<i64>,
    /// Messages handled so far (events plus dead letters): progress.
    pub handled: u64,
    /// Journal submissions that failed so far; `None` without a journal.
    pub journal_failures: Option<u64>,
}

impl Observation {
    pub fn new(consumer: &ConsumerStatus, handled: u64, journal_failures: Option<u64>) -> Self {
        Self {
            connection: consumer.connection.clone(),
            assigned_partitions: consumer.assigned_partitions.len(),
            paused: consumer.paused,
            lag: consumer.lag,
            handled,
            journal_failures,
        }
    }
}

/// The verdict `/readyz` serves: ready or not, and a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: String,
}

/// Remembers when progress was last seen, to tell "stuck" from "idle".
#[derive(Debug, Clone)]
pub struct ProgressWatch {
    stuck_after: Duration,
    /// A journal failure keeps the console unready this long (a later success cannot be seen,
    /// only the absence of new failures).
    journal_grace: Duration,
    handled: u64,
    /// Since when lag has been non-zero with no message handled (and not paused).
    waiting_since: Option<Instant>,
    journal_failures: u64,
    journal_failed_at: Option<Instant>,
}

impl ProgressWatch {
    pub fn new(stuck_after: Duration) -> Self {
        Self {
            stuck_after,
            journal_grace: Duration::from_secs(30),
            handled: 0,
            waiting_since: None,
            journal_failures: 0,
            journal_failed_at: None,
        }
    }

    /// How long the consumer has had lag without handling anything, if it has.
    pub fn stalled_for(&self, now: Instant) -> Option<Duration> {
        self.waiting_since
            .map(|since| now.saturating_duration_since(since))
    }

    /// Takes in one observation and says whether the console is ready.
    pub fn observe(&mut self, now: Instant, seen: &Observation) -> Readiness {
        let progressed = seen.handled != self.handled;
        self.handled = seen.handled;
        let waiting = seen.lag.is_some_and(|lag| lag > 0) && !seen.paused;
        // The clock starts when lag appears and restarts on each message handled.
        self.waiting_since = match self.waiting_since {
            _ if !waiting => None,
            Some(since) if !progressed => Some(since),
            _ => Some(now),
        };
        if let Some(failures) = seen.journal_failures
            && failures > self.journal_failures
        {
            self.journal_failures = failures;
            self.journal_failed_at = Some(now);
        }
        let verdict = |ready: bool, reason: String| Readiness { ready, reason };
        match &seen.connection {
            ConnectionState::Connecting => {
                return verdict(false, "not connected to Kafka yet".into());
            }
            ConnectionState::Disconnected { reason } => {
                return verdict(false, format!("Kafka unreachable: {reason}"));
            }
            ConnectionState::Connected => {}
        }
        if seen.assigned_partitions == 0 {
            return verdict(false, "no partition assigned".into());
        }
        if let Some(at) = self.journal_failed_at
            && now.saturating_duration_since(at) < self.journal_grace
        {
            return verdict(false, "journal writes are failing".into());
        }
        if let Some(stalled) = self.stalled_for(now)
            && stalled >= self.stuck_after
        {
            return verdict(
                false,
                format!(
                    "stuck: lag {} and nothing handled for {} s",
                    seen.lag.unwrap_or_default(),
                    stalled.as_secs()
                ),
            );
        }
        let paused = if seen.paused { ", paused" } else { "" };
        verdict(
            true,
            format!(
                "ready: {} partition(s), lag {}{paused}",
                seen.assigned_partitions,
                seen.lag
                    .map_or_else(|| "unknown".into(), |lag| lag.to_string())
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(handled: u64, lag: i64) -> Observation {
        Observation {
            connection: ConnectionState::Connected,
            assigned_partitions: 3,
            paused: false,
            lag: Some(lag),
            handled,
            journal_failures: Some(0),
        }
    }

    #[test]
    fn connection_and_assignment_come_first() {
        let start = Instant::now();
        let mut watch = ProgressWatch::new(Duration::from_secs(60));
        let readiness = watch.observe(start, &Observation::default());
        assert!(!readiness.ready);
        assert_eq!(readiness.reason, "not connected to Kafka yet");
        let down = Observation {
            connection: ConnectionState::Disconnected {
                reason: "1/1 brokers are down".into(),
            },
            ..healthy(0, 0)
        };
        assert_eq!(
            watch.observe(start, &down).reason,
            "Kafka unreachable: 1/1 brokers are down"
        );
        let unassigned = Observation {
            assigned_partitions: 0,
            ..healthy(0, 0)
        };
        assert_eq!(
            watch.observe(start, &unassigned).reason,
            "no partition assigned"
        );
        let ready = watch.observe(start, &healthy(0, 0));
        assert!(ready.ready, "{ready:?}");
        assert_eq!(ready.reason, "ready: 3 partition(s), lag 0");
    }

    #[test]
    fn lag_without_progress_is_stuck_after_the_window_and_progress_clears_it() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut watch = ProgressWatch::new(Duration::from_secs(60));
        assert!(watch.observe(at(0), &healthy(10, 5)).ready);
        assert!(watch.observe(at(59), &healthy(10, 5)).ready);
        let stuck = watch.observe(at(60), &healthy(10, 5));
        assert!(!stuck.ready);
        assert_eq!(stuck.reason, "stuck: lag 5 and nothing handled for 60 s");
        // One message handled: the clock starts again.
        assert!(watch.observe(at(61), &healthy(11, 5)).ready);
        assert!(watch.observe(at(120), &healthy(11, 5)).ready);
        assert!(!watch.observe(at(121), &healthy(11, 5)).ready);
        // Lag gone: idle, not stuck.
        assert!(watch.observe(at(122), &healthy(11, 0)).ready);
        assert!(watch.observe(at(500), &healthy(11, 0)).ready);
    }

    #[test]
    fn paused_is_not_stuck() {
        let start = Instant::now();
        let mut watch = ProgressWatch::new(Duration::from_secs(60));
        let paused = Observation {
            paused: true,
            ..healthy(0, 100)
        };
        watch.observe(start, &paused);
        let later = watch.observe(start + Duration::from_secs(600), &paused);
        assert!(later.ready);
        assert_eq!(later.reason, "ready: 3 partition(s), lag 100, paused");
    }

    #[test]
    fn journal_failures_make_it_unready_for_a_while() {
        let start = Instant::now();
        let mut watch = ProgressWatch::new(Duration::from_secs(60));
        assert!(watch.observe(start, &healthy(0, 0)).ready);
        let failing = Observation {
            journal_failures: Some(2),
            ..healthy(0, 0)
        };
        let readiness = watch.observe(start + Duration::from_secs(1), &failing);
        assert_eq!(readiness.reason, "journal writes are failing");
        assert!(
            !watch
                .observe(start + Duration::from_secs(30), &failing)
                .ready
        );
        assert!(
            watch
                .observe(start + Duration::from_secs(31), &failing)
                .ready
        );
    }
}
