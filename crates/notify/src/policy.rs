//! The timing rules of delivery, as plain functions and small state machines that take `now`
//! as an argument: retry backoff with jitter, `Retry-After`, the per-channel token bucket and
//! the digest of what it held back. Table-tested without sleeping.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::config::{DeliveryConfig, RateLimitConfig};

/// Exponential backoff: `initial * factor^(attempt-1)`, capped at `max`, then jittered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
}

impl Backoff {
    pub fn from_config(config: &DeliveryConfig) -> Self {
        Self {
            initial: Duration::from_millis(config.initial_backoff_ms),
            factor: config.backoff_factor,
            max: Duration::from_millis(config.max_backoff_ms),
        }
    }

    /// The ceiling for retry number `attempt` (1 is the first retry), before jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(1000) as i32;
        let seconds = self.initial.as_secs_f64() * self.factor.powi(exponent);
        if !seconds.is_finite() || seconds >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(seconds)
        }
    }

    /// The wait before retry `attempt`, given `jitter` in [0, 1): between half the ceiling and
    /// the ceiling, so many consoles retrying after one outage do not stampede together.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.ceiling(attempt).mul_f64(1.0 - jitter / 2.0)
    }
}

/// `Retry-After` is either seconds or an HTTP date (RFC 9110). A date in the past means now;
/// anything else is ignored (`None`) and the normal backoff applies.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds.min(24 * 3600)));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&Utc) - now;
    Some(
        wait.to_std()
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(24 * 3600)),
    )
}

/// A token bucket: `capacity` sends at once, refilled at `per_minute`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_second: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(capacity: u32, per_minute: u32, now: Instant) -> Self {
        Self {
            capacity: f64::from(capacity.max(1)),
            tokens: f64::from(capacity.max(1)),
            per_second: f64::from(per_minute) / 60.0,
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What the limiter held back for one recipient since the last digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub count: u64,
    pub since: Instant,
    /// The first few, to name in the digest.
    pub samples: Vec<String>,
}

pub const DIGEST_SAMPLES: usize = 10;
/// Recipients with held-back notifications remembered at once; more are only counted.
pub const MAX_DIGEST_RECIPIENTS: usize = 1000;

/// One channel's flood protection: a token bucket, and per recipient a count of what it held
/// back, summarised in one digest per `interval` from the first suppression.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    bucket: TokenBucket,
    interval: Duration,
    suppressed: BTreeMap<String, Suppressed>,
    /// Held back for recipients beyond `MAX_DIGEST_RECIPIENTS`: counted and logged, no digest.
    pub unreported: u64,
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig, now: Instant) -> Self {
        Self {
            bucket: TokenBucket::new(config.burst, config.per_minute, now),
            interval: Duration::from_secs(config.digest_interval_secs),
            suppressed: BTreeMap::new(),
            unreported: 0,
        }
    }

    pub fn admit(&mut self, now: Instant) -> bool {
        self.bucket.try_take(now)
    }

    /// Counts a held-back notification for its digest.
    pub fn suppress(&mut self, recipient: &str, sample: String, now: Instant) {
        if !self.suppressed.contains_key(recipient)
            && self.suppressed.len() >= MAX_DIGEST_RECIPIENTS
        {
            self.unreported += 1;
            return;
        }
        let entry = self
            .suppressed
            .entry(recipient.to_string())
            .or_insert_with(|| Suppressed {
                count: 0,
                since: now,
                samples: Vec::new(),
            });
        entry.count += 1;
        if entry.samples.len() < DIGEST_SAMPLES {
            entry.samples.push(sample);
        }
    }

    /// When the next digest is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.suppressed
            .values()
            .map(|s| s.since + self.interval)
            .min()
    }

    /// Digests due at `now` (all of them when `flush_all`, e.g. at shutdown).
    pub fn take_due(&mut self, now: Instant, flush_all: bool) -> Vec<(String, Suppressed)> {
        let due: Vec<String> = self
            .suppressed
            .iter()
            .filter(|(_, s)| flush_all || s.since + self.interval <= now)
            .map(|(recipient, _)| recipient.clone())
            .collect();
        due.into_iter()
            .filter_map(|recipient| {
                let entry = self.suppressed.remove(&recipient)?;
                Some((recipient, entry))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::from_config(&DeliveryConfig::default())
    }

    #[test]
    fn backoff_grows_by_the_factor_up_to_the_cap() {
        let b = backoff();
        let cases = [
            (1, 0.5),
            (2, 0.75),
            (3, 1.125),
            (4, 1.6875),
            (12, 0.5 * 1.5f64.powi(11)),
            (13, 60.0),
            (100, 60.0),
            (u32::MAX, 60.0),
        ];
        for (attempt, seconds) in cases {
            let got = b.ceiling(attempt).as_secs_f64();
            assert!((got - seconds).abs() < 1e-6, "attempt {attempt}: {got}");
        }
        assert_eq!(b.ceiling(0), Duration::from_millis(500));
    }

    #[test]
    fn jitter_stays_between_half_the_ceiling_and_the_ceiling() {
        let b = backoff();
        for attempt in [1, 2, 5, 20] {
            let ceiling = b.ceiling(attempt);
            for jitter in [0.0, 0.25, 0.5, 0.999, 1.0, -3.0, 7.0, f64::NAN] {
                let delay = b.delay(attempt, jitter);
                assert!(delay <= ceiling, "{attempt} {jitter}: {delay:?}");
                assert!(delay >= ceiling / 2, "{attempt} {jitter}: {delay:?}");
            }
        }
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(250));
        assert!(b.delay(100, 0.3) <= Duration::from_secs(60));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let cases = [
            ("0", Some(0)),
            ("7", Some(7)),
            (" 120 ", Some(120)),
            ("99999999", Some(24 * 3600)),
            ("Thu, 01 Jan 2026 12:00:30 GMT", Some(30)),
            ("Thu, 01 Jan 2026 11:00:00 GMT", Some(0)),
            ("-5", None),
            ("1.5", None),
            ("soon", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse_retry_after(value, now),
                expected.map(Duration::from_secs),
                "{value:?}"
            );
        }
    }

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(3, 60, start);
        let taken: Vec<bool> = (0..5).map(|_| bucket.try_take(start)).collect();
        assert_eq!(taken, [true, true, true, false, false]);
        // 60 per minute: one token per second.
        assert!(!bucket.try_take(start + Duration::from_millis(900)));
        assert!(bucket.try_take(start + Duration::from_millis(1000)));
        assert!(!bucket.try_take(start + Duration::from_millis(1500)));
        // A long quiet spell refills no more than the burst.
        let later = start + Duration::from_secs(3600);
        let taken = (0..5).filter(|_| bucket.try_take(later)).count();
        assert_eq!(taken, 3);
        // A clock that seems to go back does not mint tokens.
        assert!(!bucket.try_take(start));
    }

    #[test]
    fn held_back_notifications_are_digested_once_per_interval() {
        let start = Instant::now();
        let config = RateLimitConfig {
            burst: 2,
            per_minute: 1,
            digest_interval_secs: 60,
        };
        let mut limiter = RateLimiter::new(&config, start);
        let mut sent = 0;
        for i in 0..12 {
            let now = start + Duration::from_secs(i);
            if limiter.admit(now) {
                sent += 1;
            } else {
                limiter.suppress("ops@example.com", format!("n{i}"), now);
            }
        }
        assert_eq!(sent, 2);
        assert_eq!(limiter.next_due(), Some(start + Duration::from_secs(62)));
        assert!(
            limiter
                .take_due(start + Duration::from_secs(61), false)
                .is_empty()
        );
        let due = limiter.take_due(start + Duration::from_secs(62), false);
        assert_eq!(due.len(), 1);
        let (recipient, suppressed) = &due[0];
        assert_eq!(recipient, "ops@example.com");
        assert_eq!(suppressed.count, 10);
        assert_eq!(suppressed.samples.len(), DIGEST_SAMPLES);
        assert_eq!(limiter.next_due(), None);
        limiter.suppress("b", "x".into(), start);
        assert_eq!(limiter.take_due(start, true).len(), 1);
    }

    #[test]
    fn digest_recipients_are_bounded() {
        let now = Instant::now();
        let mut limiter = RateLimiter::new(&RateLimitConfig::default(), now);
        for i in 0..MAX_DIGEST_RECIPIENTS + 5 {
            limiter.suppress(&format!("r{i}"), String::new(), now);
        }
        assert_eq!(limiter.unreported, 5);
        assert_eq!(limiter.take_due(now, true).len(), MAX_DIGEST_RECIPIENTS);
    }
}
