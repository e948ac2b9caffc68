//! Logging while the console is up: the same `tracing` events headless mode writes to stderr
//! go to tui-logger's buffer instead, sanitised, and nothing is written to the terminal. The
//! capture level starts at `--log-level` (refined by `RUST_LOG`) and can be changed with keys.

use std::fmt::Write as _;
use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use super::sanitize::sanitize;

/// Log lines kept for the log pane (tui-logger's ring buffer; older lines drop off).
pub const LOG_HISTORY: usize = 5000;

static CAPTURE: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();
static CAPTURE_LEVEL: std::sync::Mutex<LevelFilter> = std::sync::Mutex::new(LevelFilter::INFO);

fn env_filter(level: LevelFilter) -> EnvFilter {
    EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy()
}

/// Installs the global subscriber feeding the log pane. Does nothing if one is installed.
pub fn init(level: LevelFilter) {
    let (filter, handle) = reload::Layer::new(env_filter(level));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(TuiLogLayer)
        .try_init()
        .is_ok();
    if !installed {
        return;
    }
    let _ = CAPTURE.set(handle);
    if let Ok(mut current) = CAPTURE_LEVEL.lock() {
        *current = level;
    }
    // What is captured is decided by the filter above; tui-logger keeps whatever reaches it.
    if tui_logger::init_logger(tui_logger::LevelFilter::Trace).is_ok() {
        tui_logger::set_buffer_depth(LOG_HISTORY);
    }
}

/// The level the log pane captures at.
pub fn capture_level() -> LevelFilter {
    CAPTURE_LEVEL
        .lock()
        .map(|l| *l)
        .unwrap_or(LevelFilter::INFO)
}

/// Changes the capture level (`RUST_LOG` directives still refine it).
pub fn set_capture_level(level: LevelFilter) {
    let Some(handle) = CAPTURE.get() else {
        return;
    };
    if handle.reload(env_filter(level)).is_ok() {
        if let Ok(mut current) = CAPTURE_LEVEL.lock() {
            *current = level;
        }
        // `log` records (librdkafka's, through rdkafka) are cut by the `log` crate's own
        // maximum before they reach tracing; keep it in step.
        log::set_max_level(match level {
            LevelFilter::OFF => log::LevelFilter::Off,
            LevelFilter::ERROR => log::LevelFilter::Error,
            LevelFilter::WARN => log::LevelFilter::Warn,
            LevelFilter::INFO => log::LevelFilter::Info,
            LevelFilter::DEBUG => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        });
        tracing::info!("log pane now captures {level} and above");
    }
}

/// Formats an event as `message key=value ...`, sanitised, and hands it to tui-logger.
struct TuiLogLayer;

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    /// A `log` record's own target, carried as a field by tracing-log.
    log_target: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "log.target" => self.log_target = Some(value.to_string()),
            "log.module_path" | "log.file" => {}
            _ => self.record_debug(field, &format_args!("{value}")),
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            name if name.starts_with("log.") => {}
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for TuiLogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        let level = match *metadata.level() {
            tracing::Level::ERROR => log::Level::Error,
            tracing::Level::WARN => log::Level::Warn,
            tracing::Level::INFO => log::Level::Info,
            tracing::Level::DEBUG => log::Level::Debug,
            tracing::Level::TRACE => log::Level::Trace,
        };
        let text = format!("{}{}", fields.message, fields.rest);
        let text = sanitize(&text);
        let target = fields.log_target.as_deref().unwrap_or(metadata.target());
        tui_logger::Drain::new().log(
            &log::Record::builder()
                .args(format_args!("{text}"))
                .level(level)
                .target(target)
                .module_path(metadata.module_path())
                .file(metadata.file())
                .line(metadata.line())
                .build(),
        );
    }
}
