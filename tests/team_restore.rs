//! A successor restores what its predecessor owed from `<topic>.state`, not from its own
//! journal. More owed pages than its outbox holds are all sent, each once: the successor
//! journals them as decided before the notifier is handed them, so the ones the outbox
//! refuses are queued again by the refill, as a standalone console's own are.

#[path = "support/notify_fixtures.rs"]
mod fixtures;
#[path = "support/notify_servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use incident_console::core::engine::{Audience, NotificationKind};
use incident_console::core::event::Priority;
use incident_console::core::permit::SideEffects;
use incident_console::kafka::embedded::EmbeddedBroker;
use incident_console::runtime::{self, RuntimeOptions, TeamLink};
use incident_console::status::Command;
use incident_console::team::publish::StatePublisher;
use incident_console::team::sink::{StateSink, transactional_id};
use incident_console::team::state::{Restored, state_topic};

const TOPIC: &str = "owed-incidents";
/// Owed pages; the outbox is configured to hold 2 of them.
const OWED: i64 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_owed_more_pages_than_its_outbox_holds_sends_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = servers::HttpReceiver::start().await;
    let broker = EmbeddedBroker::start(1, &[TOPIC, &format!("{TOPIC}.dlq")], 3).unwrap();
    broker.create_topic(&state_topic(TOPIC), 1).unwrap();

    let mut config = incident_console::config::Config::default();
    config.kafka.brokers = broker.bootstrap_servers().to_string();
    config.kafka.topic = TOPIC.into();
    config.journal.path = Some(dir.path().join("journal.sqlite3"));
    config.notifications = fixtures::fast_config();
    config.notifications.webhook.url = Some(receiver.url("/webhook"));
    config.notifications.outbox_capacity = 2;

    // What the predecessor decided and never routed, as `<topic>.state` gives it back.
    let owed: Vec<_> = (1..=OWED)
        .map(|id| {
            fixtures::notification(
                NotificationKind::IncidentCreated,
                Audience::Administrators,
                id,
                "Owed by the predecessor",
                Priority::High,
                &[],
            )
        })
        .collect();
    let mut restored = Restored {
        epoch: 1,
        ..Restored::default()
    };
    restored.notifications.decided = owed;

    let sink = {
        let mut client = rdkafka::ClientConfig::new();
        client.set("bootstrap.servers", broker.bootstrap_servers());
        let id = transactional_id(&config.kafka.group_id);
        tokio::task::block_in_place(|| {
            StateSink::open(client, state_topic(TOPIC), &id, None).expect("state writer")
        })
    };
    let dedup = &config.notifications.dedup;
    let state = Arc::new(StatePublisher::new(
        sink,
        "successor".into(),
        2,
        Duration::from_secs(dedup.window_secs),
        dedup.max_entries,
        SideEffects::always(),
    ));
    let handle = runtime::spawn_with(
        &config,
        RuntimeOptions {
            operator: "tester".into(),
            demo: false,
            output: None,
            output_flushed: None,
            shutdown_timeout: Duration::from_secs(5),
            side_effects: SideEffects::always(),
        },
        Some(TeamLink { restored, state }),
    )
    .unwrap();

    // The refill waits until refused decisions are 5 s old (shipped): well within the wait.
    let received = receiver.wait_ok("/webhook", OWED as usize).await;
    let mut per_incident = BTreeMap::<i64, usize>::new();
    for request in &received {
        let id = request.body["incident_id"]
            .as_i64()
            .expect("an incident id");
        *per_incident.entry(id).or_default() += 1;
    }
    assert_eq!(
        per_incident,
        (1..=OWED).map(|id| (id, 1)).collect::<BTreeMap<_, _>>(),
        "each owed page once"
    );
    let status = handle.snapshots.borrow().notifier.clone();
    assert!(
        status.outbox_overflowed > 0,
        "the outbox refused some at first: {status:?}"
    );
    handle.commands.send(Command::Shutdown).await.unwrap();
    handle.task.await.unwrap().unwrap();
    assert_eq!(
        receiver.on("/webhook").len(),
        OWED as usize,
        "nothing sent twice while the refill read rows back"
    );

    // And the successor's journal has them, delivered.
    let connection = rusqlite::Connection::open(config.journal.path.unwrap()).unwrap();
    let delivered: i64 = connection
        .query_row(
            "SELECT count(*) FROM notifications WHERE kind = 'incident_created'
             AND state = 'delivered'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(delivered, OWED);
}
