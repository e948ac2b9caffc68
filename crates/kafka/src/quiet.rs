//! While a broker is unreachable librdkafka repeats the same complaints several times a
//! second (connect failed, all brokers down, each fetch error): a log file would grow by
//! about nine lines a second saying one thing. Each kind of line is shown once, then at most
//! once per `WINDOW`, with how many were left out in between.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

pub const WINDOW: Duration = Duration::from_secs(30);
/// Kinds remembered at most; the oldest is forgotten first.
const MAX_KINDS: usize = 256;

/// Decides which repeated lines are shown. Time is passed in, so it is tested with a clock
/// the test controls.
#[derive(Debug, Default)]
pub struct RepeatLimiter {
    /// Kind -> (when it was last shown, how many were left out since).
    seen: HashMap<String, (Instant, u64)>,
}

impl RepeatLimiter {
    /// `Some(left out since it was last shown)` when a line of this kind is shown now.
    pub fn admit(&mut self, kind: &str, now: Instant) -> Option<u64> {
        if let Some((shown, left_out)) = self.seen.get_mut(kind) {
            if now.duration_since(*shown) < WINDOW {
                *left_out += 1;
                return None;
            }
            let count = *left_out;
            *shown = now;
            *left_out = 0;
            return Some(count);
        }
        if self.seen.len() >= MAX_KINDS
            && let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, (shown, _))| *shown)
                .map(|(kind, _)| kind.clone())
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(kind.to_string(), (now, 0));
        Some(0)
    }
}

static LIMITER: Mutex<Option<RepeatLimiter>> = Mutex::new(None);

/// The process-wide limiter: `Some(left out)` when a line of `kind` is shown now.
pub fn admit(kind: &str) -> Option<u64> {
    let mut limiter = LIMITER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    limiter
        .get_or_insert_with(RepeatLimiter::default)
        .admit(&kind_of(kind), Instant::now())
}

/// Numbers (ports aside, they are times and counts: "after 0ms", "1 identical error(s)")
/// do not make a line another kind.
fn kind_of(text: &str) -> String {
    let mut kind = String::with_capacity(text.len().min(160));
    for c in text.chars().take(160) {
        if c.is_ascii_digit() {
            if !kind.ends_with('#') {
                kind.push('#');
            }
        } else {
            kind.push(c);
        }
    }
    kind
}

/// librdkafka's log lines, as rdkafka's default context writes them, through the limiter.
pub fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    let Some(left_out) = admit(&format!("{fac} {message}")) else {
        return;
    };
    let more = if left_out > 0 {
        format!(
            " ({left_out} more like it in the last {}s)",
            WINDOW.as_secs()
        )
    } else {
        String::new()
    };
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!("librdkafka: {fac} {message}{more}"),
        RDKafkaLogLevel::Warning => tracing::warn!("librdkafka: {fac} {message}{more}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!("librdkafka: {fac} {message}{more}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!("librdkafka: {fac} {message}{more}"),
    }
}

/// The context of our producers: librdkafka's logs and errors through the limiter.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietContext;

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(left_out) = admit(&format!("error {error}: {reason}")) {
            tracing::error!(left_out, "librdkafka: {error}: {reason}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_line_is_shown_once_per_window_with_the_count_left_out() {
        let mut limiter = RepeatLimiter::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(limiter.admit("connect failed", at(0)), Some(0));
        // Nine a second for the rest of the window: none shown.
        let mut shown = 0;
        for tick in 1..270 {
            shown += usize::from(limiter.admit("connect failed", at(tick * 111)).is_some());
        }
        assert_eq!(shown, 0);
        assert_eq!(limiter.admit("another kind", at(1000)), Some(0));
        assert_eq!(limiter.admit("connect failed", at(30_000)), Some(269));
        assert_eq!(limiter.admit("connect failed", at(30_001)), None);
    }

    #[test]
    fn times_and_counts_do_not_make_another_kind() {
        assert_eq!(
            kind_of("failed (after 0ms in state CONNECT, 1 identical error(s) suppressed)"),
            kind_of("failed (after 12ms in state CONNECT, 10 identical error(s) suppressed)")
        );
        assert_ne!(kind_of("connect failed"), kind_of("all brokers down"));
    }

    #[test]
    fn the_kinds_remembered_are_bounded() {
        let mut limiter = RepeatLimiter::default();
        let now = Instant::now();
        for n in 0..(MAX_KINDS * 2) {
            limiter.admit(&format!("kind {n:x}z"), now);
        }
        assert!(limiter.seen.len() <= MAX_KINDS);
    }
}
