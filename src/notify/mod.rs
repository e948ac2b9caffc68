//! Notification delivery. Effects arrive through `submit`, which never blocks the runtime.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::engine::Notification;
use crate::status::NotifierStatus;

/// Notification settings (`notifications:` in config.ron).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {}

impl NotifyConfig {
    /// Returns the offending field (relative to `notifications.`) and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        Ok(())
    }

    pub fn apply_env(&mut self, _env: &dyn Fn(&str) -> Option<String>) {}

    pub fn redact(&mut self) {}
}

/// Hands notifications to the delivery tasks.
pub struct Notifier {
    status: NotifierStatus,
}

impl Notifier {
    pub fn start(_config: &NotifyConfig) -> anyhow::Result<Self> {
        Ok(Self {
            status: NotifierStatus::default(),
        })
    }

    pub fn submit(&mut self, notification: Notification) {
        tracing::debug!(
            kind = notification.kind.as_str(),
            incident_id = notification.incident_id,
            "notification (no channels configured)"
        );
    }

    pub fn status(&self) -> NotifierStatus {
        self.status.clone()
    }

    pub async fn shutdown(&mut self, _timeout: Duration) {}
}
