//! The domain, free of I/O: decoding, handlers, the escalation machine, metrics and offset
//! bookkeeping. Nothing here touches tokio, Kafka, a terminal, a mail server or the clock;
//! callers pass the current time in, so every behaviour is a plain table test.

pub mod changelog;
pub mod engine;
pub mod escalation;
pub mod event;
pub mod metrics;
pub mod offsets;
pub mod oncall;
pub mod permit;
pub mod silence;

pub const REDACTED: &str = "<redacted>";
