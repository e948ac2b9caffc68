//! Apache Kafka for the tests: a KRaft cluster on loopback through `scripts/kafka`, topics
//! created through the Admin API, and a way to find and kill a partition's leader.
//!
//! `INCIDENT_CONSOLE_TEST_KAFKA=HOST:PORT,...` (set by `scripts/test` for its Apache Kafka
//! tier) points the shared tests at a running cluster; a test that kills brokers starts a
//! cluster of its own.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

pub const ENV: &str = "INCIDENT_CONSOLE_TEST_KAFKA";

/// The Apache Kafka cluster the shared tests run on, if `scripts/test` started one.
pub fn from_env() -> Option<String> {
    std::env::var(ENV)
        .ok()
        .filter(|bootstrap| !bootstrap.trim().is_empty())
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka")
}

/// A cluster this test owns; stopped when dropped, and by `scripts/kafka` itself when the
/// test binary exits however it exits.
pub struct Cluster {
    pub bootstrap: String,
    /// `pids[n]` is node `n + 1`.
    pub pids: Vec<u32>,
    /// The cluster's files stay readable until the end of the test.
    pub dir: tempfile::TempDir,
    /// SASL_SSL (SCRAM) and mTLS listeners, when started with them.
    pub sasl_ssl: Option<String>,
    pub ssl: Option<String>,
}

impl Cluster {
    pub fn start(brokers: usize) -> Self {
        Self::start_with(brokers, None)
    }

    /// With `secure`: also SASL_SSL and mTLS listeners, with the stores in that folder.
    pub fn start_with(brokers: usize, secure: Option<&std::path::Path>) -> Self {
        Self::start_options(brokers, secure, false)
    }

    /// With the SASL_SSL and mTLS listeners of `secure` and ACLs enforced
    /// (`scripts/kafka start --authorizer`): the PLAINTEXT listener (`bootstrap`, what every
    /// helper here uses) is the super user, the SCRAM user may do only what `acl` grants it.
    pub fn start_with_authorizer(brokers: usize, secure: &std::path::Path) -> Self {
        Self::start_options(brokers, Some(secure), true)
    }

    fn start_options(brokers: usize, secure: Option<&std::path::Path>, authorizer: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(script());
        command.args(["start", "--brokers", &brokers.to_string(), "--port", "0"]);
        command.arg("--dir").arg(dir.path());
        command.args(["--until-exit-of", &std::process::id().to_string()]);
        if let Some(secure) = secure {
            command.arg("--sasl-ssl").arg(secure);
        }
        if authorizer {
            command.arg("--authorizer");
        }
        let output = command
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/kafka runs");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "scripts/kafka start failed: {text}"
        );
        let value = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key))
                .map(str::to_string)
        };
        let bootstrap = value("bootstrap.servers=").expect("a bootstrap line");
        assert!(
            text.lines()
                .next()
                .unwrap()
                .starts_with("bootstrap.servers="),
            "the first line is the bootstrap: {text}"
        );
        let pids = (1..=brokers)
            .map(|node| {
                value(&format!("node.{node}.pid="))
                    .and_then(|pid| pid.parse().ok())
                    .expect("a pid line per node")
            })
            .collect();
        Self {
            bootstrap,
            pids,
            sasl_ssl: value("sasl_ssl.bootstrap.servers="),
            ssl: value("ssl.bootstrap.servers="),
            dir,
        }
    }

    /// Kafka's own ACL tool (`kafka-acls.sh`, `org.apache.kafka.tools.AclCommand`) run as the
    /// super user with `args`; what it printed. Rust's Kafka client has no ACL requests.
    pub fn acl(&self, args: &[&str]) -> String {
        let output = Command::new(script())
            .args([
                "run",
                "org.apache.kafka.tools.AclCommand",
                "--bootstrap-server",
            ])
            .arg(&self.bootstrap)
            .args(args)
            .env("INCIDENT_CONSOLE_KAFKA_DIR", self.dir.path())
            .output()
            .expect("scripts/kafka runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "AclCommand {args:?}: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    }

    /// kill -9 of node `node` (1-based).
    pub fn kill(&self, node: i32) {
        let pid = self.pids[node as usize - 1];
        let status = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -9 {pid}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .status();
    }
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

/// Creates `topics` with `partitions` each, replicated on up to three brokers; waits until
/// every partition has a leader.
pub async fn create_topics(bootstrap: &str, topics: &[&str], partitions: i32) {
    let admin = admin(bootstrap);
    let brokers = brokers(bootstrap);
    let replicas = brokers.clamp(1, 3) as i32;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(replicas)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    // A shared cluster may still hold a topic of an earlier run of the same test: it is
    // deleted and made anew, so each run starts from an empty topic; so are the topics the
    // console derived from it (team topics, dead letters), which it creates again itself.
    let derived: Vec<String> = topics
        .iter()
        .flat_map(|t| [".dlq", ".leader", ".state", ".commands"].map(|s| format!("{t}{s}")))
        .filter(|name| !topics.contains(&name.as_str()))
        .collect();
    let derived: Vec<&str> = derived.iter().map(String::as_str).collect();
    let _ = admin.delete_topics(&derived, &options).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending: Vec<&NewTopic<'_>> = new.iter().collect();
    while !pending.is_empty() {
        let mut again = Vec::new();
        for result in admin
            .create_topics(pending.iter().copied(), &options)
            .await
            .unwrap()
        {
            match result {
                Ok(_) => {}
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    let _ = admin.delete_topics(&[&name], &options).await;
                    again.push(new.iter().find(|t| t.name == name).unwrap());
                }
                Err((name, code)) => panic!("creating {name}: {code}"),
            }
        }
        assert!(Instant::now() < deadline, "topics not made anew: {again:?}");
        if !again.is_empty() {
            // Deletion completes in the background; ask again shortly.
            std::thread::sleep(Duration::from_millis(200));
        }
        pending = again;
    }
    for topic in topics {
        wait_for_leaders(bootstrap, topic, partitions);
    }
}

/// Creates one single-partition topic with `settings` (for example a compacted one).
pub async fn create_topic_with(bootstrap: &str, topic: &str, settings: &[(&str, &str)]) {
    let admin = admin(bootstrap);
    let replicas = brokers(bootstrap).clamp(1, 3) as i32;
    let new = settings.iter().fold(
        NewTopic::new(topic, 1, TopicReplication::Fixed(replicas)),
        |new, (key, value)| new.set(key, value),
    );
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics([&new], &options).await.unwrap() {
        result.unwrap_or_else(|(name, code)| panic!("creating {name}: {code}"));
    }
    wait_for_leaders(bootstrap, topic, 1);
}

/// Sets `settings` on an existing topic (AlterConfigs).
pub async fn alter_topic(bootstrap: &str, topic: &str, settings: &[(&str, &str)]) {
    let admin = admin(bootstrap);
    let alter = settings.iter().fold(
        rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic(topic)),
        |alter, (key, value)| alter.set(key, value),
    );
    for result in admin
        .alter_configs([&alter], &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap_or_else(|(_, code)| panic!("altering {topic}: {code}"));
    }
}

/// Blocking `create_topics`, for tests without a runtime.
pub fn create_topics_blocking(bootstrap: &str, topics: &[&str], partitions: i32) {
    futures::executor::block_on(create_topics(bootstrap, topics, partitions));
}

fn metadata_consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("metadata client")
}

/// How many brokers the cluster says it has.
pub fn brokers(bootstrap: &str) -> usize {
    metadata_consumer(bootstrap)
        .fetch_metadata(None, Duration::from_secs(30))
        .expect("metadata")
        .brokers()
        .len()
}

/// The node leading each partition of `topic` (`None` while it has none), by partition.
pub fn leaders(bootstrap: &str, topic: &str) -> Vec<Option<i32>> {
    let metadata = metadata_consumer(bootstrap)
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .expect("metadata");
    let Some(topic) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Vec::new();
    };
    let mut partitions: Vec<_> = topic
        .partitions()
        .iter()
        .map(|p| (p.id(), (p.leader() >= 0).then_some(p.leader())))
        .collect();
    partitions.sort();
    partitions.into_iter().map(|(_, leader)| leader).collect()
}

/// Waits (bounded) until every one of `partitions` of `topic` has a leader.
pub fn wait_for_leaders(bootstrap: &str, topic: &str, partitions: i32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leaders = leaders(bootstrap, topic);
        if leaders.len() == partitions as usize && leaders.iter().all(Option::is_some) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: partitions without a leader: {leaders:?}"
        );
        // Metadata has no push: ask again shortly.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A topic's configuration value as the broker reports it.
pub async fn topic_setting(bootstrap: &str, topic: &str, key: &str) -> Option<String> {
    let admin = admin(bootstrap);
    let resource = rdkafka::admin::ResourceSpecifier::Topic(topic);
    let results = admin
        .describe_configs([&resource], &AdminOptions::new())
        .await
        .ok()?;
    results
        .into_iter()
        .next()?
        .ok()?
        .get(key)
        .and_then(|entry| entry.value.clone())
}

/// The partition count of `topic` and the replicas of its first partition.
pub fn shape(bootstrap: &str, topic: &str) -> Option<(usize, usize)> {
    let metadata = metadata_consumer(bootstrap)
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .ok()?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())?;
    let replicas = topic.partitions().first()?.replicas().len();
    Some((topic.partitions().len(), replicas))
}
