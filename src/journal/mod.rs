//! The journal: an embedded SQLite record of what was handled and sent.

use serde::{Deserialize, Serialize};

/// Journal settings (`journal:` in config.ron).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {}
