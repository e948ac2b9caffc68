//! The hostile corpus through the real path: produced to the embedded Kafka broker with
//! rdkafka, consumed by the real runtime. Each item must come out as an `event` or a
//! `dead_letter` record as `tests/hostile/EXPECTED.ron` says; each rejected one must reach the
//! dead-letter topic byte for byte with headers naming why and where from; and the stream must
//! go on (a valid event after the corpus is handled, and every offset is committed).

mod hostile;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hostile::Expected;
use incident_console::config::Config;
use incident_console::kafka::dead_letter::{
    HEADER_ERROR, HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC,
};
use incident_console::kafka::embedded::EmbeddedBroker;
use incident_console::output::OutputRecord;
use incident_console::runtime::{self, RunSummary, RuntimeOptions};
use incident_console::status::Command;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::{Instant, timeout, timeout_at};

/// Bounds every wait; the mock broker's first group assignment alone takes about 3 s.
const LIMIT: Duration = Duration::from_secs(120);
/// Payloads up to this size are produced; the 3 MiB item needs more than the 1 MB default.
const PRODUCER_MAX_BYTES: &str = "10000000";
/// Many, so the large dead-letter copies (keyed by item name) land apart.
const DEAD_LETTER_PARTITIONS: i32 = 32;

/// One message as produced.
#[derive(Debug, Clone)]
struct Sent {
    name: String,
    payload: Option<Vec<u8>>,
    expected: Expected,
}

fn sentinel(partition: usize) -> Vec<u8> {
    format!(
        r#"{{"event_type":"comment_added","incident_id":{},"title":"after the storm","author":"ops","comment":"still here","created_at":"2024-01-01T10:00:00Z"}}"#,
        900_000 + partition
    )
    .into_bytes()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Produces the plan: the committed corpus, a tombstone and a sentinel on partition 0; each
/// generated (large) item on a partition of its own followed by a sentinel, so that no
/// partition of the mock broker (about 5 MiB each) has to drop old data.
async fn produce(
    bootstrap: &str,
    topic: &str,
    plan: Vec<(i32, Sent)>,
) -> BTreeMap<(i32, i64), Sent> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.max.bytes", PRODUCER_MAX_BYTES)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let mut sent = BTreeMap::new();
    for (partition, item) in plan {
        let mut record: FutureRecord<'_, str, [u8]> =
            FutureRecord::to(topic).partition(partition).key(&item.name);
        if let Some(payload) = &item.payload {
            record = record.payload(payload.as_slice());
        }
        let delivery = producer
            .send(record, Duration::from_secs(30))
            .await
            .unwrap_or_else(|(error, _)| panic!("producing {}: {error}", item.name));
        eprintln!(
            "produced {} at {}/{}",
            item.name, delivery.partition, delivery.offset
        );
        sent.insert((delivery.partition, delivery.offset), item);
    }
    sent
}

#[test]
fn the_corpus_through_broker_and_runtime() {
    run(Limits::Raised);
}

/// With the shipped configuration: a 3 MiB payload (refused as too_large) and a 512 KiB
/// payload whose error message quoted it once could not be copied to the dead-letter topic
/// (librdkafka's 1 MB `message.max.bytes`), were retried forever, and held the partition's
/// offset. The dead-letter producer now has room for them, and cuts what a broker refuses.
#[test]
fn the_corpus_with_the_shipped_kafka_limits() {
    run(Limits::Shipped);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limits {
    /// librdkafka's defaults, as config.ron ships.
    Shipped,
    /// `message.max.bytes` raised through `kafka.properties`.
    Raised,
}

fn run(limits: Limits) {
    let corpus = hostile::corpus();
    let (generated, committed): (Vec<_>, Vec<_>) = corpus
        .into_iter()
        .partition(|item| item.name.starts_with(hostile::GENERATED));
    let partitions = 1 + generated.len();
    let topic = unique("hostile");
    let dead_letter_topic = format!("{topic}.dlq");
    let broker = EmbeddedBroker::start(1, &[&topic], partitions as i32).expect("broker");
    // Many partitions, so the large dead-letter copies spread out (keys are item names).
    broker
        .create_topic(&dead_letter_topic, DEAD_LETTER_PARTITIONS)
        .unwrap();
    let bootstrap = broker.bootstrap_servers().to_string();
    // The broker outlives the async runtime, and the runtime is shut down with a bound: if
    // the test fails, Kafka clients still open cannot hang it waiting for a vanished broker.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let task = runtime.spawn(run_corpus(
        bootstrap,
        topic,
        dead_letter_topic,
        committed,
        generated,
        limits,
    ));
    // A panic in the test body comes back as an error here, after which cleanup runs.
    let outcome = runtime.block_on(task);
    runtime.shutdown_timeout(Duration::from_secs(10));
    drop(broker);
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

async fn run_corpus(
    bootstrap: String,
    topic: String,
    dead_letter_topic: String,
    committed: Vec<hostile::Item>,
    generated: Vec<hostile::Item>,
    limits: Limits,
) {
    let partitions = 1 + generated.len();

    let mut plan = Vec::new();
    let sent_item = |name: &str, payload: Option<Vec<u8>>, expected| Sent {
        name: name.to_string(),
        payload,
        expected,
    };
    for item in committed {
        plan.push((0, sent_item(&item.name, Some(item.payload), item.expected)));
    }
    plan.push((
        0,
        sent_item("tombstone", None, Expected::Reject("tombstone".into())),
    ));
    for (index, item) in generated.into_iter().enumerate() {
        let partition = index as i32 + 1;
        plan.push((
            partition,
            sent_item(&item.name, Some(item.payload), item.expected),
        ));
    }
    for partition in 0..partitions {
        plan.push((
            partition as i32,
            sent_item(
                &format!("sentinel-{partition}"),
                Some(sentinel(partition)),
                Expected::Decode("comment_added".into()),
            ),
        ));
    }
    let sent = produce(&bootstrap, &topic, plan).await;

    let journal_dir = tempfile::tempdir().unwrap();
    let mut config = Config::built_in();
    config.kafka.brokers = bootstrap.clone();
    config.kafka.topic = topic.clone();
    config.kafka.group_id = unique("hostile-group");
    config.kafka.auto_offset_reset = "earliest".into();
    config.kafka.poll_timeout_ms = 200;
    // The dead-letter producer must be allowed messages as large as the ones it copies; with
    // librdkafka's 1 MB default the 3 MiB payload (and a 512 KiB payload whose error message
    // quotes it) could never be dead-lettered (see `the_corpus_with_the_shipped_kafka_limits`).
    if limits == Limits::Raised {
        config
            .kafka
            .properties
            .insert("message.max.bytes".into(), PRODUCER_MAX_BYTES.into());
    }
    // Never the user's own journal.
    config.journal.path = Some(journal_dir.path().join("journal.sqlite3"));

    let (output, mut records) = tokio::sync::mpsc::channel(4096);
    let handle = runtime::spawn(
        &config,
        RuntimeOptions {
            operator: "hostile-test".into(),
            demo: false,
            output: Some(output),
            output_flushed: None,
            shutdown_timeout: Duration::from_secs(20),
            side_effects: incident_console::core::permit::SideEffects::always(),
        },
    )
    .expect("runtime");

    // Every produced message yields exactly one event or dead_letter record.
    let deadline = Instant::now() + LIMIT;
    let mut seen: BTreeMap<(i32, i64), Expected> = BTreeMap::new();
    while seen.len() < sent.len() {
        let record = match timeout_at(deadline, records.recv()).await {
            Ok(Some(record)) => record,
            Ok(None) => panic!("the runtime stopped early"),
            Err(_) => {
                let missing: Vec<_> = sent
                    .iter()
                    .filter(|(at, _)| !seen.contains_key(at))
                    .map(|(at, item)| format!("{}@{:?}", item.name, at))
                    .collect();
                panic!("timed out; no record for {missing:?}");
            }
        };
        let (at, outcome) = match record {
            OutputRecord::Event {
                event_type,
                topic: from,
                partition,
                offset,
                ..
            } => {
                assert_eq!(*from, *topic);
                (
                    (partition, offset),
                    Expected::Decode(event_type.as_str().into()),
                )
            }
            OutputRecord::DeadLetter {
                reason,
                topic: from,
                partition,
                offset,
                dead_letter_topic: to,
                ..
            } => {
                assert_eq!(*from, *topic);
                assert_eq!(to, dead_letter_topic);
                ((partition, offset), Expected::Reject(reason.into()))
            }
            OutputRecord::Effect { .. }
            | OutputRecord::SelfAlert { .. }
            | OutputRecord::Role { .. }
            | OutputRecord::Acknowledged { .. }
            | OutputRecord::Unacknowledged { .. }
            | OutputRecord::Silenced { .. }
            | OutputRecord::SilenceEnded { .. } => continue,
        };
        let name = sent.get(&at).map(|item| item.name.as_str()).unwrap_or("?");
        assert!(
            seen.insert(at, outcome).is_none(),
            "{name} at {at:?} was handled twice"
        );
    }
    let mut wrong = Vec::new();
    for (at, item) in &sent {
        if seen[at] != item.expected {
            wrong.push(format!(
                "{}: expected {:?}, got {:?}",
                item.name, item.expected, seen[at]
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    check_dead_letters(&bootstrap, &topic, &dead_letter_topic, &sent).await;

    handle.commands.send(Command::Shutdown).await.unwrap();
    let summary: RunSummary = timeout(LIMIT, handle.task)
        .await
        .expect("the runtime stops in time")
        .expect("the runtime task does not panic")
        .expect("the runtime ends cleanly");
    let rejected = sent
        .values()
        .filter(|item| matches!(item.expected, Expected::Reject(_)))
        .count() as u64;
    assert_eq!(summary.dead_lettered, rejected);
    assert_eq!(summary.handled, sent.len() as u64 - rejected);

    check_committed(&bootstrap, &topic, &config.kafka.group_id, &sent);
}

/// Reads the dead-letter topic: one copy of each rejected message, payload and key byte for
/// byte, headers naming the reason and the source.
async fn check_dead_letters(
    bootstrap: &str,
    topic: &str,
    dead_letter_topic: &str,
    sent: &BTreeMap<(i32, i64), Sent>,
) {
    let expected: BTreeMap<(i32, i64), &Sent> = sent
        .iter()
        .filter(|(_, item)| matches!(item.expected, Expected::Reject(_)))
        .map(|(at, item)| (*at, item))
        .collect();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("message.max.bytes", PRODUCER_MAX_BYTES)
        .set("fetch.message.max.bytes", PRODUCER_MAX_BYTES)
        .create()
        .expect("dead-letter consumer");
    consumer.subscribe(&[dead_letter_topic]).unwrap();
    let deadline = Instant::now() + LIMIT;
    let mut copies = BTreeSet::new();
    while copies.len() < expected.len() {
        let message = match timeout_at(deadline, consumer.recv()).await {
            Ok(message) => message.expect("dead-letter fetch"),
            Err(_) => {
                let missing: Vec<_> = expected
                    .iter()
                    .filter(|(at, _)| !copies.contains(*at))
                    .map(|(_, item)| item.name.as_str())
                    .collect();
                // A low watermark above 0 means the mock broker dropped old copies to stay
                // within its per-partition size.
                let marks: Vec<_> = (0..DEAD_LETTER_PARTITIONS)
                    .map(|p| {
                        consumer.fetch_watermarks(dead_letter_topic, p, Duration::from_secs(5))
                    })
                    .collect();
                eprintln!("dead-letter watermarks by partition: {marks:?}");
                panic!("timed out; no dead-letter copy of {missing:?}");
            }
        };
        let mut headers = BTreeMap::new();
        for header in message.headers().expect("dead-letter headers").iter() {
            let value = String::from_utf8(header.value.unwrap_or_default().to_vec()).unwrap();
            headers.insert(header.key.to_string(), value);
        }
        let at: (i32, i64) = (
            headers[HEADER_PARTITION].parse().unwrap(),
            headers[HEADER_OFFSET].parse().unwrap(),
        );
        let item = expected
            .get(&at)
            .unwrap_or_else(|| panic!("dead letter for {at:?}, which was not rejected"));
        let Expected::Reject(reason) = &item.expected else {
            unreachable!()
        };
        assert_eq!(&headers[HEADER_REASON], reason, "{}", item.name);
        assert_eq!(headers[HEADER_TOPIC], topic, "{}", item.name);
        assert!(!headers[HEADER_ERROR].is_empty(), "{}", item.name);
        assert_eq!(
            message.payload(),
            item.payload.as_deref(),
            "{}: the copy is byte for byte",
            item.name
        );
        assert_eq!(message.key(), Some(item.name.as_bytes()), "{}", item.name);
        assert!(copies.insert(at), "{} dead-lettered twice", item.name);
    }
}

/// After shutdown the group's committed offset is past the last message of every
/// partition: nothing is stuck behind a hostile message.
fn check_committed(bootstrap: &str, topic: &str, group: &str, sent: &BTreeMap<(i32, i64), Sent>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("offset reader");
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for &(partition, offset) in sent.keys() {
        let end = ends.entry(partition).or_default();
        *end = (*end).max(offset + 1);
    }
    let mut list = TopicPartitionList::new();
    for &partition in ends.keys() {
        list.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(30))
        .expect("committed offsets");
    for (partition, end) in ends {
        let offset = committed
            .find_partition(topic, partition)
            .map(|element| element.offset());
        assert_eq!(
            offset,
            Some(Offset::Offset(end)),
            "partition {partition}: everything up to offset {end} is committed"
        );
    }
}
