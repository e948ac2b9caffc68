//! Named cluster profiles (`--profile prod`), as k9s contexts and ktea clusters: each its own
//! brokers and security settings and a header colour, so production does not look like
//! staging; and read-only (`--read-only`, or `read_only: true` in a profile), which turns
//! acknowledge and pause off in the console, as `k9s --readonly` does.

use std::str::FromStr;

use ratatui::style::Color;

use crate::config::Config;
pub use crate::config::profile::{Profile, Session, validate};

/// Applies `--profile NAME` (before the command line's own -b/-t/-g/-X, which still win) and
/// `--read-only`.
pub fn apply(config: &mut Config, name: Option<&str>, read_only: bool) -> anyhow::Result<()> {
    let mut session = Session {
        profile: None,
        read_only,
    };
    if let Some(name) = name {
        let Some(profile) = config.profiles.get(name).cloned() else {
            let known: Vec<&str> = config.profiles.keys().map(String::as_str).collect();
            anyhow::bail!(
                "--profile {name}: no such profile in the configuration (known: {})",
                if known.is_empty() {
                    "none; see `profiles` in config.ron".to_string()
                } else {
                    known.join(", ")
                }
            );
        };
        if let Some(brokers) = profile.brokers {
            config.kafka.brokers = brokers;
        }
        if let Some(topic) = profile.topic {
            config.kafka.topic = topic;
        }
        if let Some(group) = profile.group_id {
            config.kafka.group_id = group;
        }
        config.kafka.properties.extend(profile.properties);
        let colour = profile
            .header_colour
            .as_deref()
            .and_then(|c| Color::from_str(c).ok());
        session.profile = Some((name.to_string(), colour));
        session.read_only |= profile.read_only;
    }
    config.session = session;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            r#"(
  kafka: (brokers: "staging:9092", properties: {"client.rack": "a"}),
  profiles: {
    "prod": (
      brokers: Some("prod-1:9093,prod-2:9093"),
      properties: {"security.protocol": "SASL_SSL"},
      header_colour: Some("red"),
      read_only: true,
    ),
    "staging": (),
  },
)"#,
            "test.ron",
        )
        .unwrap()
    }

    #[test]
    fn a_profile_sets_brokers_security_colour_and_read_only() {
        let mut config = config();
        apply(&mut config, Some("prod"), false).unwrap();
        assert_eq!(config.kafka.brokers, "prod-1:9093,prod-2:9093");
        assert_eq!(config.kafka.properties["security.protocol"], "SASL_SSL");
        assert_eq!(config.kafka.properties["client.rack"], "a");
        assert_eq!(
            config.session.profile,
            Some(("prod".to_string(), Some(Color::Red)))
        );
        assert!(config.session.read_only);
    }

    #[test]
    fn an_empty_profile_keeps_everything_and_read_only_comes_from_the_flag() {
        let mut config = config();
        apply(&mut config, Some("staging"), false).unwrap();
        assert_eq!(config.kafka.brokers, "staging:9092");
        assert!(!config.session.read_only);
        apply(&mut config, None, true).unwrap();
        assert!(config.session.read_only);
        assert_eq!(config.session.profile, None);
    }

    #[test]
    fn an_unknown_profile_names_the_known_ones() {
        let error = apply(&mut config(), Some("qa"), false).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--profile qa: no such profile in the configuration (known: prod, staging)"
        );
    }

    #[test]
    fn a_bad_colour_names_its_line() {
        let error = Config::parse(
            "(\n  profiles: {\n    \"prod\": (\n      header_colour: Some(\"redd\"),\n    ),\n  },\n)",
            "test.ron",
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "test.ron:4: field `profiles.prod.header_colour`: `redd` is not a colour (a name such as red or #rrggbb)"
        );
    }
}
