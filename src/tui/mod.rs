//! The interactive console.

use crate::runtime::{RunSummary, RuntimeHandle};

pub async fn run(
    _handle: RuntimeHandle,
    _config: &crate::config::Config,
) -> anyhow::Result<RunSummary> {
    anyhow::bail!("the interactive console is not built yet; run with --no-tui")
}

pub fn init_logging(level: tracing::level_filters::LevelFilter) {
    crate::app::init_headless_logging(level);
}
