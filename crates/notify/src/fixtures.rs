//! Builders for the unit tests of the modules that keep notification state (the notifier's
//! store, the journal, the team state topic): one plain notification and one webhook delivery.

use crate::{Channel, Delivery, Payload};
use incident_core::engine::{Audience, Notification, NotificationKind};
use incident_core::event::Timestamp;

/// A new-incident notification for the administrators, keyed `dedup_key`.
pub fn notification(dedup_key: &str) -> Notification {
    Notification {
        kind: NotificationKind::IncidentCreated,
        audience: Audience::Administrators,
        incident_id: 1,
        title: "t".into(),
        priority: None,
        dedup_key: dedup_key.into(),
        fields: Default::default(),
    }
}

/// A webhook delivery keyed `key`, accepted at `accepted_at`, given up a minute later.
pub fn webhook_delivery(key: &str, accepted_at: Timestamp) -> Delivery {
    Delivery {
        key: key.into(),
        channel: Channel::Webhook,
        recipient: "webhook".into(),
        incident_id: Some(1),
        kind: NotificationKind::IncidentCreated.into(),
        payload: Payload::Json {
            body: serde_json::json!({}),
            idempotency_key: None,
        },
        accepted_at,
        give_up_at: accepted_at + chrono::TimeDelta::seconds(60),
    }
}
