//! The topics the console writes to, set up by the console itself through the Admin API.
//!
//! Production clusters run with `auto.create.topics.enable=false`. Without its coordination
//! topics a worker subscribed to a topic that does not exist, logged one line and stayed a
//! standby for good. So a worker checks them before it joins the leadership: what is missing
//! is created with the settings it needs, and where the broker refuses (no ACL), the worker
//! stops with an error that names each missing topic and the command that creates it. The
//! incident topic belongs to the producer and is never created here.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::Config;
use crate::config::team::{Role, team_topics};

/// How long one metadata or admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Replicas of a created topic: three where the cluster has them, as production clusters run.
const MAX_REPLICATION: usize = 3;

/// What a topic is for; it decides the settings it is created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Undecodable messages, copied with their place in headers.
    DeadLetters,
    /// Team mode's leadership: one partition, whose holder is the active worker.
    Leader,
    /// Team mode's state, read from the start at each takeover: compacted, in order.
    State,
    /// Acknowledgements from the consoles, applied in order.
    Commands,
}

impl Purpose {
    fn describe(self) -> &'static str {
        match self {
            Self::DeadLetters => "dead letters",
            Self::Leader => "team leadership",
            Self::State => "team state",
            Self::Commands => "team commands",
        }
    }

    /// Settings a created topic gets besides its partitions and replicas.
    fn settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            // A successor reads the state from the start: only the newest record per key
            // matters, and tombstones delete what is closed.
            Self::State => &[("cleanup.policy", "compact")],
            _ => &[],
        }
    }
}

/// A topic this process writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub purpose: Purpose,
    /// One where order matters (leadership, state, commands); dead letters need no more.
    pub partitions: i32,
}

/// The topics a process in `config`'s role writes to.
pub fn needed(config: &Config) -> Vec<TopicSpec> {
    let spec = |name: String, purpose| TopicSpec {
        name,
        purpose,
        partitions: 1,
    };
    let mut topics = vec![spec(config.dead_letter_topic(), Purpose::DeadLetters)];
    if config.team.role == Role::Worker {
        let [leader, state, commands] = team_topics(&config.kafka.topic);
        topics.push(spec(leader, Purpose::Leader));
        topics.push(spec(state, Purpose::State));
        topics.push(spec(commands, Purpose::Commands));
    }
    topics
}

/// What a check of the cluster found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    pub created: Vec<String>,
    pub brokers: usize,
    /// The incident topic's partitions; `None` when it does not exist (yet).
    pub incident_partitions: Option<usize>,
}

/// Why the topics could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// No broker answered; the caller may try again.
    #[error("cannot reach the brokers {brokers} to check the topics: {reason}")]
    Unreachable { brokers: String, reason: String },
    /// The cluster refused to create them: only the operator can.
    #[error("{0}")]
    Refused(String),
}

/// Creates whichever of `needed(config)` is missing; warns where an existing state topic is
/// not compacted. A topic another worker created meanwhile counts as there.
pub async fn prepare(config: &Config) -> Result<Prepared, PrepareError> {
    let admin: AdminClient<DefaultClientContext> = crate::consumer::client_config(config, false)
        .create()
        .map_err(|error| {
            PrepareError::Refused(format!(
                "cannot create a Kafka admin client: {}",
                crate::settings::without_values(config, error)
            ))
        })?;
    let admin = std::sync::Arc::new(admin);
    let unreachable = |reason: String| PrepareError::Unreachable {
        brokers: config.kafka.brokers.clone(),
        reason,
    };
    // Metadata of every topic: one request, and it tells the broker count too.
    let fetching = admin.clone();
    let metadata =
        tokio::task::spawn_blocking(move || fetching.inner().fetch_metadata(None, REQUEST_TIMEOUT))
            .await
            .map_err(|error| unreachable(error.to_string()))?
            .map_err(|error| unreachable(error.to_string()))?;
    let brokers = metadata.brokers().len();
    let exists = |name: &str| {
        metadata
            .topics()
            .iter()
            .any(|topic| topic.name() == name && topic.error().is_none())
    };
    let incident_partitions = metadata
        .topics()
        .iter()
        .find(|topic| topic.name() == config.kafka.topic && topic.error().is_none())
        .map(|topic| topic.partitions().len());
    if incident_partitions.is_none() {
        tracing::warn!(
            topic = %config.kafka.topic,
            "the incident topic does not exist yet: nothing is read until the producer \
             creates it (or create it: {})",
            create_command(config, &config.kafka.topic, 3, replication(brokers), &[])
        );
    }
    let needed = needed(config);
    let missing: Vec<&TopicSpec> = needed.iter().filter(|spec| !exists(&spec.name)).collect();
    let mut prepared = Prepared {
        created: Vec::new(),
        brokers,
        incident_partitions,
    };
    if !missing.is_empty() {
        let replicas = replication(brokers);
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|spec| {
                spec.purpose.settings().iter().fold(
                    NewTopic::new(
                        &spec.name,
                        spec.partitions,
                        TopicReplication::Fixed(replicas as i32),
                    ),
                    |topic, (key, value)| topic.set(key, value),
                )
            })
            .collect();
        let options = AdminOptions::new()
            .operation_timeout(Some(REQUEST_TIMEOUT))
            .request_timeout(Some(REQUEST_TIMEOUT));
        // The embedded broker never answers CreateTopics: the request times out like any
        // refusal, bounded.
        let results = match tokio::time::timeout(
            REQUEST_TIMEOUT * 2,
            admin.create_topics(&new_topics, &options),
        )
        .await
        {
            Ok(Ok(results)) => results,
            Ok(Err(error)) => missing
                .iter()
                .map(|spec| Err((spec.name.clone(), error_code(&error))))
                .collect(),
            Err(_) => missing
                .iter()
                .map(|spec| Err((spec.name.clone(), RDKafkaErrorCode::RequestTimedOut)))
                .collect(),
        };
        let mut refused = Vec::new();
        for result in results {
            match result {
                Ok(name) => {
                    tracing::info!(topic = %name, replicas, "created topic");
                    prepared.created.push(name);
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => refused.push((name, code)),
            }
        }
        // Dead letters can wait: a broker that creates topics on first use still takes them,
        // and nothing else needs them to start. The team topics cannot.
        let (required, optional): (Vec<_>, Vec<_>) = refused.into_iter().partition(|(name, _)| {
            missing
                .iter()
                .any(|spec| spec.name == *name && spec.purpose != Purpose::DeadLetters)
        });
        if !optional.is_empty() {
            tracing::warn!("{}", refused_text(config, &missing, &optional, replicas));
        }
        if !required.is_empty() {
            return Err(PrepareError::Refused(refused_text(
                config, &missing, &required, replicas,
            )));
        }
    }
    // Only a warning, and the embedded broker never answers DescribeConfigs: not in the way
    // of the start.
    if let Some(state) = needed
        .into_iter()
        .find(|spec| spec.purpose == Purpose::State)
    {
        let brokers = config.kafka.brokers.clone();
        tokio::spawn(async move { warn_if_not_compacted(&brokers, &admin, &state.name).await });
    }
    Ok(prepared)
}

/// Like `prepare`, but tries again while no broker answers (a worker started before its
/// cluster), saying so each time.
pub async fn prepare_when_reachable(config: &Config) -> anyhow::Result<Prepared> {
    let mut wait = Duration::from_millis(500);
    loop {
        match prepare(config).await {
            Ok(prepared) => return Ok(prepared),
            Err(PrepareError::Refused(text)) => anyhow::bail!(text),
            Err(error @ PrepareError::Unreachable { .. }) => {
                tracing::warn!("{error}; trying again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn error_code(error: &rdkafka::error::KafkaError) -> RDKafkaErrorCode {
    error
        .rdkafka_error_code()
        .unwrap_or(RDKafkaErrorCode::Unknown)
}

fn replication(brokers: usize) -> usize {
    brokers.clamp(1, MAX_REPLICATION)
}

fn create_command(
    config: &Config,
    name: &str,
    partitions: i32,
    replicas: usize,
    settings: &[(&str, &str)],
) -> String {
    let bootstrap = config
        .kafka
        .brokers
        .split(',')
        .next()
        .unwrap_or_default()
        .trim();
    let mut command = format!(
        "kafka-topics.sh --bootstrap-server {bootstrap} --create --topic {name} \
         --partitions {partitions} --replication-factor {replicas}"
    );
    for (key, value) in settings {
        command.push_str(&format!(" --config {key}={value}"));
    }
    command
}

fn refused_text(
    config: &Config,
    missing: &[&TopicSpec],
    refused: &[(String, RDKafkaErrorCode)],
    replicas: usize,
) -> String {
    let mut text = format!(
        "the cluster refused to create {} topic(s) this {} needs ({}); an operator with the \
         right to create topics can run:",
        refused.len(),
        config.team.role.as_str(),
        refused
            .iter()
            .map(|(name, code)| format!("{name}: {code}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for spec in missing
        .iter()
        .filter(|spec| refused.iter().any(|(name, _)| *name == spec.name))
    {
        text.push_str(&format!(
            "\n  {}    # {}",
            create_command(
                config,
                &spec.name,
                spec.partitions,
                replicas,
                spec.purpose.settings()
            ),
            spec.purpose.describe()
        ));
    }
    text
}

/// An existing state topic that is not compacted grows without bound and makes every
/// takeover slower; it works, so this is a warning, not a refusal.
async fn warn_if_not_compacted(
    brokers: &str,
    admin: &AdminClient<DefaultClientContext>,
    state: &str,
) {
    let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
    let resource = ResourceSpecifier::Topic(state);
    let policy = match admin.describe_configs([&resource], &options).await {
        Ok(results) => results
            .into_iter()
            .next()
            .and_then(Result::ok)
            .and_then(|config| config.get("cleanup.policy").and_then(|e| e.value.clone())),
        Err(_) => None,
    };
    if let Some(policy) = policy
        && !policy.split(',').any(|p| p.trim() == "compact")
    {
        tracing::warn!(
            topic = %state,
            cleanup_policy = %policy,
            "the team state topic is not compacted: it grows with every change and each \
             takeover reads all of it; fix: kafka-configs.sh --bootstrap-server {} --alter \
             --entity-type topics --entity-name {state} --add-config cleanup.policy=compact",
            brokers.split(',').next().unwrap_or_default().trim(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_needs_the_team_topics_with_one_partition_and_a_compacted_state() {
        let mut config = Config::built_in();
        config.kafka.topic = "incidents".into();
        let standalone: Vec<_> = needed(&config).into_iter().map(|s| s.name).collect();
        assert_eq!(standalone, ["incidents.dlq"]);
        config.team.role = Role::Worker;
        let worker = needed(&config);
        let names: Vec<_> = worker.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "incidents.dlq",
                "incidents.leader",
                "incidents.state",
                "incidents.commands"
            ]
        );
        assert!(worker.iter().all(|s| s.partitions == 1));
        let state = worker.iter().find(|s| s.purpose == Purpose::State).unwrap();
        assert_eq!(state.purpose.settings(), &[("cleanup.policy", "compact")]);
    }

    #[test]
    fn a_refusal_names_each_topic_and_the_command_that_creates_it() {
        let mut config = Config::built_in();
        config.kafka.topic = "incidents".into();
        config.kafka.brokers = "kafka-1:9092,kafka-2:9092".into();
        config.team.role = Role::Worker;
        let needed = needed(&config);
        let missing: Vec<&TopicSpec> = needed.iter().collect();
        let refused = vec![
            (
                "incidents.state".to_string(),
                RDKafkaErrorCode::TopicAuthorizationFailed,
            ),
            (
                "incidents.leader".to_string(),
                RDKafkaErrorCode::TopicAuthorizationFailed,
            ),
        ];
        let text = refused_text(&config, &missing, &refused, 3);
        assert!(
            text.contains("refused to create 2 topic(s) this worker needs"),
            "{text}"
        );
        assert!(
            text.contains(
                "kafka-topics.sh --bootstrap-server kafka-1:9092 --create --topic \
                 incidents.state --partitions 1 --replication-factor 3 --config \
                 cleanup.policy=compact"
            ),
            "{text}"
        );
        assert!(
            text.contains("--topic incidents.leader --partitions 1"),
            "{text}"
        );
        assert!(!text.contains("incidents.commands"), "{text}");
    }

    #[test]
    fn replication_is_three_where_the_cluster_has_three() {
        assert_eq!(replication(1), 1);
        assert_eq!(replication(2), 2);
        assert_eq!(replication(3), 3);
        assert_eq!(replication(5), 3);
        assert_eq!(replication(0), 1);
    }
}
