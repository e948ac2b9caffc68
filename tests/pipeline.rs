//! The backbone end to end: a real producer, the embedded broker, the real consumer and
//! runtime. Asserts handled events, effects, dead letters with headers, stored offsets across a
//! restart, and pause/resume.

mod common;
#[path = "support/notify_servers.rs"]
mod servers;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use incident_console::core::engine::{Audience, Effect, NotificationKind};
use incident_console::core::escalation::EscalationChange;
use incident_console::core::event::{DEFAULT_MAX_PAYLOAD_BYTES, EventType, decode};
use incident_console::kafka::consumer::client_config;
use incident_console::kafka::dead_letter::{
    HEADER_ERROR, HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC,
};
use incident_console::output::OutputRecord;
use incident_console::simulate::Simulator;
use incident_console::status::Command;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

#[test]
fn shared_examples_are_the_fixtures_and_decode_verbatim() {
    for name in ["incident_created.json", "status_updated.json"] {
        let fixture = fixture(name);
        let shared = format!("{}/../shared/events/{name}", env!("CARGO_MANIFEST_DIR"));
        if let Ok(original) = std::fs::read(&shared) {
            assert_eq!(
                original, fixture,
                "tests/fixtures/events/{name} drifted from {shared}"
            );
        }
        let event = decode(Some(&fixture), DEFAULT_MAX_PAYLOAD_BYTES).expect(name);
        assert_eq!(event.incident_id(), 123);
        assert_eq!(event.title(), "Server Down");
    }
}

fn effects_of(records: &[OutputRecord], incident: i64) -> Vec<&Effect> {
    records
        .iter()
        .filter_map(|r| match r {
            OutputRecord::Effect { effect, .. } => Some(effect),
            _ => None,
        })
        .filter(|effect| match effect {
            Effect::Notify(n) => n.incident_id == incident,
            Effect::Escalation(
                EscalationChange::Opened { incident_id, .. }
                | EscalationChange::Closed { incident_id, .. },
            ) => *incident_id == incident,
            Effect::IncidentResolved { incident_id, .. } => *incident_id == incident,
            _ => false,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_events_stream_and_poison_flow_through_the_real_consumer() {
    let Setup {
        broker: _broker,
        config,
        journal_dir: _journal_dir,
    } = setup(3);
    let producer = producer(&config);
    let topic = config.kafka.topic.clone();

    send(
        &producer,
        &topic,
        "123",
        Some(&fixture("incident_created.json")),
    )
    .await;
    let (poison_partition, poison_offset) =
        send(&producer, &topic, "bad", Some(b"{not json")).await;
    let mut simulator = Simulator::new(11, 0.0);
    let generated = 300;
    for _ in 0..generated {
        let item = simulator.next(chrono::Utc::now());
        send(&producer, &topic, &item.key(), Some(&item.payload())).await;
    }
    send(
        &producer,
        &topic,
        "123",
        Some(&fixture("status_updated.json")),
    )
    .await;
    let total_events = generated + 2;

    let (handle, mut records) = spawn_runtime(&config);
    let mut seen = Vec::new();
    collect_until(&mut records, &mut seen, |r| {
        count_events(r) == total_events && count_dead_letters(r) == 1
    })
    .await;
    // The last event's effects follow its own record: what was emitted is read to the end
    // before anything is asserted (the shared status update is often the last one handled
    // on three brokers, and its notification was missed when the reading stopped at it).
    handle.commands.send(Command::Shutdown).await.unwrap();
    let summary = handle.task.await.unwrap().unwrap();
    while let Ok(record) = records.try_recv() {
        seen.push(record);
    }
    assert_eq!(summary.handled as usize, total_events);
    assert_eq!(summary.dead_lettered, 1);

    // Every event handled once, with its place in the log.
    let handled = event_places(&seen);
    let places: BTreeSet<(i32, i64)> = handled.iter().copied().collect();
    assert_eq!(places.len(), total_events, "every event handled");
    assert_eq!(handled.len(), total_events, "no event twice");
    let types: BTreeSet<EventType> = seen
        .iter()
        .filter_map(|r| match r {
            OutputRecord::Event { event_type, .. } => Some(*event_type),
            _ => None,
        })
        .collect();
    assert_eq!(types.len(), 6, "all six types: {types:?}");

    // The shared example's workflow: admins told, high priority escalated, resolution closes it.
    let workflow = effects_of(&seen, 123);
    assert!(workflow.iter().any(|e| matches!(e, Effect::Notify(n)
        if n.kind == NotificationKind::IncidentCreated && n.audience == Audience::Administrators)));
    assert!(workflow.iter().any(|e| matches!(
        e,
        Effect::Escalation(EscalationChange::Opened { level: 1, .. })
    )));
    assert!(workflow.iter().any(|e| matches!(e, Effect::Notify(n)
        if n.kind == NotificationKind::StatusChanged
            && n.audience == Audience::User { name: "jane.smith".into() })));
    assert!(
        workflow
            .iter()
            .any(|e| matches!(e, Effect::Escalation(EscalationChange::Closed { .. })))
    );
    assert!(workflow.iter().any(|e| matches!(e, Effect::IncidentResolved { time_to_resolve_secs: Some(s), .. } if *s == 5400.0)));

    // The poison message is reported with its place and reason.
    let dead = seen
        .iter()
        .find_map(|r| match r {
            OutputRecord::DeadLetter {
                reason,
                partition,
                offset,
                dead_letter_topic,
                ..
            } => Some((*reason, *partition, *offset, dead_letter_topic.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        dead,
        (
            "invalid_json",
            poison_partition,
            poison_offset,
            config.dead_letter_topic()
        )
    );

    // ...and its copy in the dead-letter topic carries the original bytes and the headers.
    let dead_letters: StreamConsumer = client_config(&config, true)
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    dead_letters
        .subscribe(&[&config.dead_letter_topic()])
        .unwrap();
    let copy = tokio::time::timeout(DEADLINE, dead_letters.recv())
        .await
        .expect("dead letter arrives")
        .unwrap();
    assert_eq!(copy.payload(), Some(&b"{not json"[..]));
    let headers = copy.headers().expect("headers");
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).to_string())
            .unwrap_or_else(|| panic!("header {name}"))
    };
    assert_eq!(header(HEADER_REASON), "invalid_json");
    assert!(header(HEADER_ERROR).contains("not valid JSON"));
    assert_eq!(header(HEADER_TOPIC), topic);
    assert_eq!(header(HEADER_PARTITION), poison_partition.to_string());
    assert_eq!(header(HEADER_OFFSET), poison_offset.to_string());
}

/// The committed offsets of the group equal the log end on every partition.
fn assert_committed_to_end(config: &incident_console::config::Config, partitions: i32) {
    let reader: BaseConsumer = client_config(config, true)
        .set("group.id", &config.kafka.group_id)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(&config.kafka.topic, partition);
    }
    let committed = reader
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    for partition in 0..partitions {
        let (_, high) = reader
            .fetch_watermarks(&config.kafka.topic, partition, Duration::from_secs(10))
            .unwrap();
        let offset = committed
            .find_partition(&config.kafka.topic, partition)
            .unwrap()
            .offset();
        let expected = if high == 0 {
            Offset::Invalid
        } else {
            Offset::Offset(high)
        };
        assert_eq!(offset, expected, "partition {partition}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_resumes_after_the_last_handled_event() {
    let Setup {
        broker: _broker,
        config,
        journal_dir: _journal_dir,
    } = setup(2);
    let producer = producer(&config);
    let topic = config.kafka.topic.clone();
    let mut simulator = Simulator::new(5, 0.0);
    let mut produce = async |count: usize| {
        let mut places = BTreeSet::new();
        for _ in 0..count {
            let item = simulator.next(chrono::Utc::now());
            places.insert(send(&producer, &topic, &item.key(), Some(&item.payload())).await);
        }
        places
    };

    let first_batch = produce(50).await;
    let (handle, mut records) = spawn_runtime(&config);
    let mut seen = Vec::new();
    collect_until(&mut records, &mut seen, |r| count_events(r) == 50).await;
    assert_eq!(
        event_places(&seen).into_iter().collect::<BTreeSet<_>>(),
        first_batch
    );
    handle.commands.send(Command::Shutdown).await.unwrap();
    handle.task.await.unwrap().unwrap();
    assert_committed_to_end(&config, 2);

    // Same group again: only what was produced since is delivered.
    let second_batch = produce(20).await;
    let (handle, mut records) = spawn_runtime(&config);
    let mut seen = Vec::new();
    collect_until(&mut records, &mut seen, |r| count_events(r) >= 20).await;
    handle.commands.send(Command::Shutdown).await.unwrap();
    handle.task.await.unwrap().unwrap();
    while let Ok(record) = records.try_recv() {
        seen.push(record);
    }
    let places = event_places(&seen);
    assert_eq!(places.len(), second_batch.len(), "nothing handled twice");
    assert_eq!(
        places.into_iter().collect::<BTreeSet<_>>(),
        second_batch,
        "nothing re-delivered, nothing skipped"
    );
    assert_committed_to_end(&config, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_stops_fetching_and_resuming_catches_up() {
    let Setup {
        broker: _broker,
        config,
        journal_dir: _journal_dir,
    } = setup(1);
    let producer = producer(&config);
    let topic = config.kafka.topic.clone();
    let mut simulator = Simulator::new(9, 0.0);

    let (handle, mut records) = spawn_runtime(&config);
    let mut status = handle.consumer_status.clone();
    wait_for(&mut status, "assignment", |s| {
        !s.assigned_partitions.is_empty()
    })
    .await;

    for _ in 0..3 {
        let item = simulator.next(chrono::Utc::now());
        send(&producer, &topic, &item.key(), Some(&item.payload())).await;
    }
    let mut seen = Vec::new();
    collect_until(&mut records, &mut seen, |r| count_events(r) == 3).await;
    // Lag 0 means the handled offsets were stored and committed.
    wait_for(&mut status, "lag to reach 0", |s| s.lag == Some(0)).await;

    handle.commands.send(Command::Pause).await.unwrap();
    wait_for(&mut status, "paused", |s| s.paused).await;
    for _ in 0..10 {
        let item = simulator.next(chrono::Utc::now());
        send(&producer, &topic, &item.key(), Some(&item.payload())).await;
    }
    // The broker has them...
    let reader: BaseConsumer = client_config(&config, true).create().unwrap();
    let (_, high) = reader
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(high, 13);
    // ...and through ten rounds of consumer statistics (each one a poll of the paused
    // consumer) none of them is fetched.
    let mut rounds = 0;
    wait_for(&mut status, "ten statistics rounds", |_| {
        rounds += 1;
        rounds > 10
    })
    .await;
    let mut snapshots = handle.snapshots.clone();
    let snapshot = wait_for(&mut snapshots, "paused snapshot", |s| s.consumer.paused).await;
    assert_eq!(snapshot.engine.metrics.total_events, 3);
    while let Ok(record) = records.try_recv() {
        seen.push(record);
    }
    assert_eq!(
        count_events(&seen),
        3,
        "nothing may be handled while paused"
    );

    handle.commands.send(Command::Resume).await.unwrap();
    collect_until(&mut records, &mut seen, |r| count_events(r) == 13).await;
    wait_for(&mut status, "lag back to 0", |s| {
        s.lag == Some(0) && !s.paused
    })
    .await;
    handle.commands.send(Command::Shutdown).await.unwrap();
    handle.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_command_reaches_the_engine() {
    let Setup {
        broker: _broker,
        config,
        journal_dir: _journal_dir,
    } = setup(1);
    let producer = producer(&config);
    send(
        &producer,
        &config.kafka.topic,
        "123",
        Some(&fixture("incident_created.json")),
    )
    .await;
    let (handle, mut records) = spawn_runtime(&config);
    let mut seen = Vec::new();
    collect_until(&mut records, &mut seen, |r| count_events(r) == 1).await;
    handle
        .commands
        .send(Command::Acknowledge {
            incident_id: 123,
            by: "alice".into(),
        })
        .await
        .unwrap();
    let mut snapshots = handle.snapshots.clone();
    let snapshot = wait_for(&mut snapshots, "acknowledgement", |s| {
        s.engine
            .escalations
            .iter()
            .any(|e| e.escalation.acknowledged.is_some())
    })
    .await;
    let ack = snapshot.engine.escalations[0]
        .escalation
        .acknowledged
        .clone()
        .unwrap();
    assert_eq!(ack.by, "alice");
    assert_eq!(snapshot.engine.metrics.acknowledged, 1);
    collect_until(&mut records, &mut seen, |r| {
        r.iter().any(|record| {
            matches!(record, OutputRecord::Effect { effect: Effect::Escalation(EscalationChange::Acknowledged { by, .. }), .. } if by == "alice")
        })
    })
    .await;
    handle.commands.send(Command::Shutdown).await.unwrap();
    handle.task.await.unwrap().unwrap();
}

/// Every notification the journal records as decided reaches "delivered" there once its
/// webhook call succeeded, also when hundreds are decided in one fetched batch: the
/// notifier's marks go to the journal after the decisions they update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_sent_from_a_burst_are_journaled_as_delivered_not_left_decided() {
    use incident_console::notify::config::{Channel, RouteConfig};
    const EVENTS: usize = 2_000;
    let Setup {
        broker: _broker,
        mut config,
        journal_dir: _journal_dir,
    } = setup(2);
    let mut receiver = servers::HttpReceiver::start().await;
    let notify = &mut config.notifications;
    notify.routes = vec![RouteConfig {
        channels: vec![Channel::Webhook],
        ..RouteConfig::default()
    }];
    notify.escalation_levels.clear();
    notify.administrators.clear();
    notify.webhook.url = Some(receiver.url("/webhook"));
    notify.rate_limit.burst = 1_000_000;
    notify.rate_limit.per_minute = 1_000_000;
    // The backlog is there before the runtime starts: it is fetched in full batches.
    let producer = producer(&config);
    let topic = config.kafka.topic.clone();
    let mut simulator = Simulator::new(11, 0.0);
    for _ in 0..EVENTS {
        let item = simulator.next(chrono::Utc::now());
        send(&producer, &topic, &item.key(), Some(&item.payload())).await;
    }
    let (handle, mut records) = spawn_runtime(&config);
    let mut seen = Vec::new();
    collect_until(&mut records, &mut seen, |r| count_events(r) == EVENTS).await;
    let journal = config.journal.path.clone().unwrap();
    let states = |table: &str| -> std::collections::BTreeMap<String, i64> {
        incident_console::journal::JournalReader::open(&journal)
            .and_then(|reader| reader.states(table))
            .unwrap()
            .into_iter()
            .collect()
    };
    // Until every delivery is finished (none pending), bounded.
    let deadline = std::time::Instant::now() + servers::WAIT * 4;
    loop {
        receiver.drain();
        let deliveries = states("deliveries");
        if deliveries.get("delivered").is_some_and(|n| *n > 0)
            && !deliveries.contains_key("pending")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "deliveries {deliveries:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.commands.send(Command::Shutdown).await.unwrap();
    handle.task.await.unwrap().unwrap();
    let deliveries = states("deliveries");
    let notifications = states("notifications");
    let sent = receiver.on("/webhook").len() as i64;
    assert_eq!(deliveries.get("delivered"), Some(&sent), "{deliveries:?}");
    assert!(sent > 500, "a burst of notifications: {sent}");
    assert_eq!(
        notifications.get("decided"),
        None,
        "notifications left decided although sent: {notifications:?}"
    );
    assert!(
        notifications.get("delivered").is_some_and(|n| *n > 500),
        "{notifications:?}"
    );
}
