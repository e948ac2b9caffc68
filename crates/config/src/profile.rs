//! Entries of `profiles` (named clusters) and what a session shows and allows; `profile::apply`
//! picks one into the configuration.

use std::collections::BTreeMap;
use std::str::FromStr;

use ratatui_core::style::Color;
use serde::{Deserialize, Serialize};

/// One entry of `profiles` in the config. Every field left out keeps the top-level value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Bootstrap brokers for this cluster.
    pub brokers: Option<String>,
    pub topic: Option<String>,
    pub group_id: Option<String>,
    /// librdkafka properties added to (and winning over) `kafka.properties`:
    /// security.protocol, sasl.*, ssl.* ...
    pub properties: BTreeMap<String, String>,
    /// The header's profile badge: a colour name (`red`, `lightblue`, ...) or `#rrggbb`.
    pub header_colour: Option<String>,
    /// Acknowledge and pause off, whatever the command line says.
    pub read_only: bool,
}

/// What the console shows and allows for the session: the profile picked and read-only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    /// The profile's name and its header colour (`None`: the default badge).
    pub profile: Option<(String, Option<Color>)>,
    pub read_only: bool,
}

/// Checks each profile's colour, so a typo fails at start with the file and line.
pub fn validate(profiles: &BTreeMap<String, Profile>) -> Result<(), (String, String)> {
    for (name, profile) in profiles {
        if let Some(colour) = &profile.header_colour
            && Color::from_str(colour).is_err()
        {
            return Err((
                format!("profiles.{name}.header_colour"),
                format!("`{colour}` is not a colour (a name such as red or #rrggbb)"),
            ));
        }
        if profile
            .brokers
            .as_deref()
            .is_some_and(|b| b.trim().is_empty())
        {
            return Err((
                format!("profiles.{name}.brokers"),
                "must name at least one host:port".into(),
            ));
        }
    }
    Ok(())
}
