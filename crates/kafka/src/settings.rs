//! Checks on the Kafka settings before anything connects: librdkafka's own answers to an
//! empty group, an empty topic or an impossible port are obscure ("consumer queue not
//! available", a silent wait, another port), so each gets one sentence naming the flag and the
//! setting, and what to do.

use rdkafka::error::KafkaError;

use crate::config::Config;

/// Refuses settings the consumer cannot work with. `consuming` adds the checks that only
/// matter when consuming (the group, the dead-letter topic); the simulator only produces.
pub fn check(config: &Config, consuming: bool) -> anyhow::Result<()> {
    check_brokers(&config.kafka.brokers)?;
    let topic = &config.kafka.topic;
    if topic.trim().is_empty() {
        anyhow::bail!(
            "the topic is empty: pass -t/--topic TOPIC or set kafka.topic in the configuration"
        );
    }
    if !consuming {
        return Ok(());
    }
    if config.kafka.group_id.trim().is_empty() {
        anyhow::bail!(
            "the consumer group is empty: pass -g/--group GROUP or set kafka.group_id in the \
             configuration"
        );
    }
    let dead_letter = config.dead_letter_topic();
    if dead_letter.trim() == topic.trim() {
        anyhow::bail!(
            "kafka.dead_letter_topic `{dead_letter}` is the consumed topic: every message that \
             does not decode would be read back and dead-lettered again without end; set \
             another topic (the default is `{topic}.dlq`)"
        );
    }
    Ok(())
}

/// `HOST:PORT[,HOST:PORT...]`, each optionally with a `SCHEME://` prefix; a port, when given,
/// must be 1-65535 (librdkafka would silently use another one).
fn check_brokers(brokers: &str) -> anyhow::Result<()> {
    let fix = "pass -b/--brokers HOST:PORT, set $INCIDENT_CONSOLE_BROKERS or kafka.brokers";
    if brokers.split(',').all(|broker| broker.trim().is_empty()) {
        anyhow::bail!("no broker address is given: {fix}");
    }
    for broker in brokers.split(',').map(str::trim) {
        if broker.is_empty() {
            anyhow::bail!("the broker list `{brokers}` has an empty entry: {fix}");
        }
        let address = broker.split_once("://").map_or(broker, |(_, rest)| rest);
        // The port follows the last colon, after any bracketed IPv6 address.
        let after_host = address.rsplit_once(']').map_or(address, |(_, rest)| rest);
        let Some((host, port)) = after_host.rsplit_once(':') else {
            continue;
        };
        if host.is_empty() && !address.starts_with('[') {
            anyhow::bail!("broker `{broker}` has no host name: {fix}");
        }
        match port.parse::<u32>() {
            Ok(1..=65535) => {}
            _ => anyhow::bail!("broker `{broker}`: `{port}` is not a port number (1-65535): {fix}"),
        }
    }
    Ok(())
}

/// librdkafka's configuration errors quote the value they refused ("No such configuration
/// property ... SUPERSECRET"), and a mistyped `sasl.password` is still a password: no property
/// value is ever shown. The error keeps its kind and the property's name.
pub fn without_values(config: &Config, error: KafkaError) -> KafkaError {
    let scrub = |text: &str| {
        config
            .kafka
            .properties
            .values()
            .filter(|value| value.len() >= 3)
            .fold(text.to_string(), |text, value| {
                text.replace(value.as_str(), crate::config::REDACTED)
            })
    };
    match error {
        KafkaError::ClientConfig(code, description, key, _value) => KafkaError::ClientConfig(
            code,
            scrub(&description),
            key,
            crate::config::REDACTED.into(),
        ),
        KafkaError::ClientCreation(text) => KafkaError::ClientCreation(scrub(&text)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(brokers: &str, topic: &str, group: &str, dead: Option<&str>) -> Config {
        let mut config = Config::built_in();
        config.kafka.brokers = brokers.into();
        config.kafka.topic = topic.into();
        config.kafka.group_id = group.into();
        config.kafka.dead_letter_topic = dead.map(String::from);
        config
    }

    fn error(config: &Config) -> String {
        check(config, true).unwrap_err().to_string()
    }

    #[test]
    fn usual_settings_pass() {
        for brokers in [
            "127.0.0.1:9092",
            "kafka-1:9092, kafka-2:9093",
            "SSL://kafka:9093",
            "[::1]:9092",
            "kafka",
        ] {
            check(&config(brokers, "t", "g", None), true).unwrap();
        }
    }

    #[test]
    fn empty_values_name_their_flag() {
        assert!(error(&config("", "t", "g", None)).contains("-b/--brokers"));
        assert!(error(&config(" , ", "t", "g", None)).contains("-b/--brokers"));
        assert!(error(&config("a:1", "", "g", None)).contains("-t/--topic"));
        assert!(error(&config("a:1", "t", "", None)).contains("-g/--group"));
        // The simulator has no group.
        check(&config("a:1", "t", "", None), false).unwrap();
    }

    #[test]
    fn impossible_ports_are_refused() {
        for brokers in ["127.0.0.1:99999", "a:0", "a:x", "a:1,b:65536", "a:"] {
            let text = error(&config(brokers, "t", "g", None));
            assert!(text.contains("not a port number"), "{brokers}: {text}");
        }
    }

    #[test]
    fn a_dead_letter_topic_equal_to_the_consumed_topic_is_refused() {
        let text = error(&config("a:1", "hostile", "g", Some("hostile")));
        assert!(text.contains("kafka.dead_letter_topic `hostile`"), "{text}");
        check(&config("a:1", "hostile", "g", Some("hostile.dlq")), true).unwrap();
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;
    use rdkafka::producer::FutureProducer;

    #[test]
    fn a_misspelt_property_does_not_echo_its_value() {
        let mut config = Config::built_in();
        config
            .apply_properties(&["sasl.pasword=SUPERSECRET99".into()])
            .unwrap();
        let error = crate::consumer::client_config(&config, false)
            .create::<FutureProducer>()
            .map(|_| ())
            .map_err(|error| without_values(&config, error))
            .unwrap_err()
            .to_string();
        assert!(error.contains("sasl.pasword"), "{error}");
        assert!(!error.contains("SUPERSECRET99"), "{error}");
    }
}
