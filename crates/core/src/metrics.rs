//! Counters, rates and percentiles. Every structure here has a fixed size, so a console left
//! running for weeks uses the same memory as one started a minute ago.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use super::event::{EventType, Timestamp};

/// Seconds of per-second history kept for rates and sparklines.
pub const RATE_WINDOW_SECS: usize = 60;
/// Recent samples kept for percentiles.
const SAMPLE_WINDOW: usize = 2048;

/// Events per second over the last minute, one bucket per second.
#[derive(Debug, Clone)]
pub struct RateWindow {
    buckets: [u64; RATE_WINDOW_SECS],
    newest_second: i64,
}

impl Default for RateWindow {
    fn default() -> Self {
        Self {
            buckets: [0; RATE_WINDOW_SECS],
            newest_second: i64::MIN,
        }
    }
}

impl RateWindow {
    fn advance(&mut self, second: i64) {
        if self.newest_second == i64::MIN {
            self.newest_second = second;
            return;
        }
        if second <= self.newest_second {
            return;
        }
        let gap = (second - self.newest_second).min(RATE_WINDOW_SECS as i64);
        for step in 1..=gap {
            let slot = (self.newest_second + step).rem_euclid(RATE_WINDOW_SECS as i64) as usize;
            self.buckets[slot] = 0;
        }
        self.newest_second = second;
    }

    pub fn record(&mut self, now: Timestamp) {
        let second = now.timestamp();
        self.advance(second);
        // A sample older than the window (clock stepped back) counts in the newest bucket.
        let second = second.max(self.newest_second - RATE_WINDOW_SECS as i64 + 1);
        let slot = second.rem_euclid(RATE_WINDOW_SECS as i64) as usize;
        self.buckets[slot] += 1;
    }

    /// Counts per second, oldest first, ending with the current (partial) second.
    pub fn history(&self, now: Timestamp) -> Vec<u64> {
        let now_second = now.timestamp();
        (0..RATE_WINDOW_SECS as i64)
            .rev()
            .map(|back| {
                let second = now_second - back;
                if self.newest_second == i64::MIN
                    || second > self.newest_second
                    || second <= self.newest_second - RATE_WINDOW_SECS as i64
                {
                    0
                } else {
                    self.buckets[second.rem_euclid(RATE_WINDOW_SECS as i64) as usize]
                }
            })
            .collect()
    }

    /// Mean rate over the last `seconds` complete seconds.
    pub fn rate(&self, now: Timestamp, seconds: usize) -> f64 {
        let seconds = seconds.clamp(1, RATE_WINDOW_SECS - 1);
        let history = self.history(now);
        let complete = &history[..history.len() - 1];
        let sum: u64 = complete[complete.len() - seconds..].iter().sum();
        sum as f64 / seconds as f64
    }
}

/// Upper bounds (seconds) of the fixed histogram buckets every duration is counted in, for the
/// Prometheus endpoint. One wide log-like scale serves processing times (sub-millisecond) and
/// times to acknowledge and resolve (minutes to a day); fixed, so memory stays constant.
pub const DURATION_BUCKETS: [f64; 20] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0,
    900.0, 1800.0, 3600.0, 14400.0, 86400.0,
];

/// The most recent samples of a duration, for percentiles, plus running totals.
#[derive(Debug, Clone, Default)]
pub struct DurationStats {
    recent: VecDeque<f64>,
    count: u64,
    sum_secs: f64,
    max_secs: f64,
    /// Samples per `DURATION_BUCKETS` bucket (not cumulative); larger ones are only in `count`.
    buckets: [u64; DURATION_BUCKETS.len()],
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DurationSummary {
    pub count: u64,
    pub mean_secs: Option<f64>,
    pub p50_secs: Option<f64>,
    pub p99_secs: Option<f64>,
    pub max_secs: Option<f64>,
    /// For the Prometheus histogram: total seconds and samples per `DURATION_BUCKETS` bucket.
    #[serde(skip)]
    pub sum_secs: f64,
    #[serde(skip)]
    pub buckets: [u64; DURATION_BUCKETS.len()],
}

impl DurationStats {
    pub fn record_secs(&mut self, seconds: f64) {
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        if self.recent.len() == SAMPLE_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(seconds);
        self.count += 1;
        self.sum_secs += seconds;
        self.max_secs = self.max_secs.max(seconds);
        if let Some(bucket) = DURATION_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[bucket] += 1;
        }
    }

    pub fn record(&mut self, duration: Duration) {
        self.record_secs(duration.as_secs_f64());
    }

    pub fn summary(&self) -> DurationSummary {
        if self.count == 0 {
            return DurationSummary::default();
        }
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let percentile = |p: f64| {
            let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[rank - 1]
        };
        DurationSummary {
            count: self.count,
            mean_secs: Some(self.sum_secs / self.count as f64),
            p50_secs: Some(percentile(0.50)),
            p99_secs: Some(percentile(0.99)),
            max_secs: Some(self.max_secs),
            sum_secs: self.sum_secs,
            buckets: self.buckets,
        }
    }
}

/// Every sample of a latency, counted in 1 ms buckets up to `LATENCY_BUCKETS` ms (later ones
/// share the last bucket): exact percentiles over a whole run at a fixed 120 KB, where a
/// window of recent samples would cover only a fraction of a second at high rates.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    buckets: Vec<u32>,
    count: u64,
    max_ms: u64,
}

pub const LATENCY_BUCKETS: usize = 30_000;

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; LATENCY_BUCKETS],
            count: 0,
            max_ms: 0,
        }
    }
}

impl LatencyHistogram {
    /// A negative latency (clocks apart) counts as 0.
    pub fn record_ms(&mut self, ms: i64) {
        let ms = ms.max(0) as u64;
        let bucket = (ms as usize).min(LATENCY_BUCKETS - 1);
        self.buckets[bucket] = self.buckets[bucket].saturating_add(1);
        self.count += 1;
        self.max_ms = self.max_ms.max(ms);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max_ms(&self) -> u64 {
        self.max_ms
    }

    /// The smallest whole millisecond at or below which a fraction `p` of the samples lie.
    pub fn percentile_ms(&self, p: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (ms, &n) in self.buckets.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(ms as u64);
            }
        }
        Some(self.max_ms)
    }
}

#[derive(Debug, Clone, Default)]
struct TypeCounter {
    count: u64,
    rate: RateWindow,
    last_seen: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    per_type: [TypeCounter; 6],
    all_events: RateWindow,
    decode_failures: BTreeMap<&'static str, u64>,
    dead_lettered: u64,
    processing: DurationStats,
    time_to_acknowledge: DurationStats,
    time_to_resolve: DurationStats,
    escalations_opened: u64,
    escalations_raised: u64,
    acknowledged: u64,
    resolved: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeMetrics {
    pub event_type: EventType,
    pub count: u64,
    /// Mean over the last 10 complete seconds.
    pub rate_per_sec: f64,
    /// Per-second counts over the last minute, oldest first.
    pub history: Vec<u64>,
    pub last_seen: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    pub per_type: Vec<TypeMetrics>,
    pub total_events: u64,
    pub events_per_sec: f64,
    pub events_history: Vec<u64>,
    pub decode_failures: BTreeMap<&'static str, u64>,
    pub dead_lettered: u64,
    pub processing: DurationSummary,
    pub time_to_acknowledge: DurationSummary,
    pub time_to_resolve: DurationSummary,
    pub escalations_opened: u64,
    pub escalations_raised: u64,
    pub acknowledged: u64,
    pub resolved: u64,
}

impl Metrics {
    pub fn record_event(&mut self, event_type: EventType, now: Timestamp) {
        let counter = &mut self.per_type[event_type.index()];
        counter.count += 1;
        counter.rate.record(now);
        counter.last_seen = Some(now);
        self.all_events.record(now);
    }

    pub fn record_decode_failure(&mut self, reason: &'static str) {
        *self.decode_failures.entry(reason).or_default() += 1;
    }

    pub fn record_dead_lettered(&mut self) {
        self.dead_lettered += 1;
    }

    pub fn record_processing(&mut self, duration: Duration) {
        self.processing.record(duration);
    }

    pub fn record_time_to_acknowledge(&mut self, seconds: f64) {
        self.acknowledged += 1;
        self.time_to_acknowledge.record_secs(seconds);
    }

    pub fn record_resolution(&mut self, time_to_resolve_secs: Option<f64>) {
        self.resolved += 1;
        if let Some(seconds) = time_to_resolve_secs {
            self.time_to_resolve.record_secs(seconds);
        }
    }

    pub fn record_escalation_opened(&mut self) {
        self.escalations_opened += 1;
    }

    pub fn record_escalation_raised(&mut self) {
        self.escalations_raised += 1;
    }

    pub fn snapshot(&self, now: Timestamp) -> MetricsSnapshot {
        let per_type = EventType::ALL
            .iter()
            .map(|&event_type| {
                let counter = &self.per_type[event_type.index()];
                TypeMetrics {
                    event_type,
                    count: counter.count,
                    rate_per_sec: counter.rate.rate(now, 10),
                    history: counter.rate.history(now),
                    last_seen: counter.last_seen,
                }
            })
            .collect::<Vec<_>>();
        MetricsSnapshot {
            total_events: per_type.iter().map(|t| t.count).sum(),
            per_type,
            events_per_sec: self.all_events.rate(now, 10),
            events_history: self.all_events.history(now),
            decode_failures: self.decode_failures.clone(),
            dead_lettered: self.dead_lettered,
            processing: self.processing.summary(),
            time_to_acknowledge: self.time_to_acknowledge.summary(),
            time_to_resolve: self.time_to_resolve.summary(),
            escalations_opened: self.escalations_opened,
            escalations_raised: self.escalations_raised,
            acknowledged: self.acknowledged,
            resolved: self.resolved,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(seconds: i64, millis: u32) -> Timestamp {
        chrono::Utc
            .timestamp_opt(1_700_000_000 + seconds, millis * 1_000_000)
            .unwrap()
    }

    #[test]
    fn rate_window_counts_per_second_and_forgets_after_a_minute() {
        let mut window = RateWindow::default();
        for millis in [0, 100, 900] {
            window.record(t(0, millis));
        }
        window.record(t(1, 0));
        let history = window.history(t(1, 500));
        assert_eq!(&history[RATE_WINDOW_SECS - 2..], &[3, 1]);
        assert_eq!(window.rate(t(2, 0), 2), 2.0);
        assert_eq!(window.history(t(60, 0)).iter().sum::<u64>(), 1);
        assert_eq!(window.history(t(61, 0)).iter().sum::<u64>(), 0);
        assert_eq!(window.history(t(200, 0)).iter().sum::<u64>(), 0);
        window.record(t(200, 0));
        assert_eq!(window.history(t(200, 0)).iter().sum::<u64>(), 1);
    }

    #[test]
    fn rate_window_tolerates_a_clock_stepping_back() {
        let mut window = RateWindow::default();
        window.record(t(100, 0));
        window.record(t(0, 0));
        assert_eq!(window.history(t(100, 0)).iter().sum::<u64>(), 2);
    }

    #[test]
    fn latency_histogram_percentiles_cover_every_sample() {
        let mut histogram = LatencyHistogram::default();
        assert_eq!(histogram.percentile_ms(0.5), None);
        for ms in 1..=100 {
            histogram.record_ms(ms);
        }
        histogram.record_ms(-5);
        histogram.record_ms(1_000_000);
        assert_eq!(histogram.count(), 102);
        assert_eq!(histogram.percentile_ms(0.5), Some(50));
        assert_eq!(histogram.percentile_ms(0.99), Some(100));
        assert_eq!(
            histogram.percentile_ms(1.0),
            Some(LATENCY_BUCKETS as u64 - 1)
        );
        assert_eq!(histogram.max_ms(), 1_000_000);
    }

    #[test]
    fn percentiles_over_recent_samples() {
        let mut stats = DurationStats::default();
        assert_eq!(stats.summary(), DurationSummary::default());
        for ms in 1..=100 {
            stats.record(Duration::from_millis(ms));
        }
        let summary = stats.summary();
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50_secs, Some(0.050));
        assert_eq!(summary.p99_secs, Some(0.099));
        assert_eq!(summary.max_secs, Some(0.100));
        assert!((summary.mean_secs.unwrap() - 0.0505).abs() < 1e-9);
        // 1..=100 ms: 1 ms in the 0.001 bucket, 2 in 0.0025, ...; all within 0.1 s.
        assert_eq!(summary.buckets[1], 1);
        assert_eq!(summary.buckets[2], 1);
        assert_eq!(summary.buckets.iter().sum::<u64>(), 100);
        assert_eq!(summary.buckets[7], 50);
        assert!((summary.sum_secs - 5.05).abs() < 1e-9);
        stats.record_secs(100_000.0);
        assert_eq!(stats.summary().buckets.iter().sum::<u64>(), 100);
    }

    #[test]
    fn duration_samples_are_bounded() {
        let mut stats = DurationStats::default();
        for _ in 0..(SAMPLE_WINDOW * 3) {
            stats.record_secs(1.0);
        }
        assert_eq!(stats.recent.len(), SAMPLE_WINDOW);
        assert_eq!(stats.summary().count, SAMPLE_WINDOW as u64 * 3);
        stats.record_secs(f64::NAN);
        stats.record_secs(-5.0);
        assert_eq!(stats.summary().p50_secs, Some(1.0));
    }

    #[test]
    fn snapshot_counts_per_type_and_failures_by_reason() {
        let mut metrics = Metrics::default();
        metrics.record_event(EventType::IncidentCreated, t(0, 0));
        metrics.record_event(EventType::IncidentCreated, t(0, 1));
        metrics.record_event(EventType::CommentAdded, t(0, 2));
        metrics.record_decode_failure("invalid_json");
        metrics.record_decode_failure("invalid_json");
        metrics.record_dead_lettered();
        metrics.record_resolution(Some(90.0));
        metrics.record_resolution(None);
        metrics.record_time_to_acknowledge(30.0);
        let snapshot = metrics.snapshot(t(1, 0));
        assert_eq!(snapshot.total_events, 3);
        assert_eq!(snapshot.per_type[0].count, 2);
        assert_eq!(snapshot.per_type[2].count, 1);
        assert_eq!(snapshot.decode_failures.get("invalid_json"), Some(&2));
        assert_eq!(snapshot.dead_lettered, 1);
        assert_eq!(snapshot.resolved, 2);
        assert_eq!(snapshot.time_to_resolve.count, 1);
        assert_eq!(snapshot.time_to_acknowledge.mean_secs, Some(30.0));
        assert_eq!(snapshot.events_per_sec, 0.3);
    }
}
