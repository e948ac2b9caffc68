//! The one way a test waits for a condition nothing tells it about: check it again until it
//! holds or a deadline passes, then fail naming what was awaited (and, where the check says,
//! what it saw last). Where an event can be awaited instead (a `watch`, a channel, a process's
//! next line), tests await that.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// How long between two checks: short enough not to add to what a test measures, long
/// enough not to load a shared machine.
pub const EVERY: Duration = Duration::from_millis(20);

/// Checks `check` until it returns `Some`, for at most `limit`.
pub async fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    eventually_ok(limit, what, async || check().ok_or_else(String::new)).await
}

/// Checks `check` until it returns `Ok`, for at most `limit`; the failure names the last
/// `Err` it gave.
pub async fn eventually_ok<T>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => panic!("{}", timed_out(what, &last)),
            Err(_) => tokio::time::sleep(EVERY).await,
        }
    }
}

/// `eventually` for a test without an async runtime.
pub fn eventually_blocking<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{}", timed_out(what, ""));
        std::thread::sleep(EVERY);
    }
}

fn timed_out(what: &str, last: &str) -> String {
    if last.is_empty() {
        format!("timed out waiting for {what}")
    } else {
        format!("timed out waiting for {what}; last: {last}")
    }
}
