//! The embedded broker: librdkafka's mock cluster, a real Kafka-protocol server on loopback
//! TCP ports. It is not `Send`, so it lives on a thread of its own and takes orders (topics,
//! faults, stop) through a channel.

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// Things a test or the demo can do to the running cluster.
#[derive(Debug, Clone)]
pub enum Fault {
    /// `-1` is every broker.
    BrokerDown(i32),
    BrokerUp(i32),
    RoundTripTime(i32, Duration),
    RequestErrors(RDKafkaApiKey, Vec<RDKafkaRespErr>),
    ClearRequestErrors(RDKafkaApiKey),
}

enum Order {
    CreateTopic(String, i32, std_mpsc::Sender<Result<(), String>>),
    Fault(Fault, std_mpsc::Sender<Result<(), String>>),
    Stop,
}

pub struct EmbeddedBroker {
    bootstrap: String,
    orders: std_mpsc::Sender<Order>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a cluster of `brokers` brokers and creates `topics` with `partitions` each.
    pub fn start(brokers: i32, topics: &[&str], partitions: i32) -> Result<Self, String> {
        let (ready_tx, ready_rx) = std_mpsc::channel::<Result<String, String>>();
        let (orders, order_rx) = std_mpsc::channel::<Order>();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(cluster) => cluster,
                    Err(error) => {
                        let _ = ready_tx
                            .send(Err(format!("cannot start the embedded broker: {error}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                while let Ok(order) = order_rx.recv() {
                    match order {
                        Order::CreateTopic(name, partitions, reply) => {
                            let result = cluster
                                .create_topic(&name, partitions, 1)
                                .map_err(|e| format!("cannot create topic {name}: {e}"));
                            let _ = reply.send(result);
                        }
                        Order::Fault(fault, reply) => {
                            let result = apply_fault(&cluster, fault);
                            let _ = reply.send(result);
                        }
                        Order::Stop => break,
                    }
                }
            })
            .map_err(|e| format!("cannot start the embedded broker thread: {e}"))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| "the embedded broker thread died".to_string())??;
        let broker = Self {
            bootstrap,
            orders,
            thread: Some(thread),
        };
        for topic in topics {
            broker.create_topic(topic, partitions)?;
        }
        Ok(broker)
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    fn ask(
        &self,
        order: impl FnOnce(std_mpsc::Sender<Result<(), String>>) -> Order,
    ) -> Result<(), String> {
        let (reply, answer) = std_mpsc::channel();
        self.orders
            .send(order(reply))
            .map_err(|_| "the embedded broker has stopped".to_string())?;
        answer
            .recv()
            .map_err(|_| "the embedded broker has stopped".to_string())?
    }

    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), String> {
        self.ask(|reply| Order::CreateTopic(name.to_string(), partitions, reply))
    }

    pub fn inject(&self, fault: Fault) -> Result<(), String> {
        self.ask(|reply| Order::Fault(fault, reply))
    }
}

fn apply_fault(
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    fault: Fault,
) -> Result<(), String> {
    let result = match fault {
        Fault::BrokerDown(id) => cluster.broker_down(id),
        Fault::BrokerUp(id) => cluster.broker_up(id),
        Fault::RoundTripTime(id, delay) => cluster.broker_round_trip_time(id, delay),
        Fault::RequestErrors(api, errors) => {
            cluster.request_errors(api, &errors);
            Ok(())
        }
        Fault::ClearRequestErrors(api) => {
            cluster.clear_request_errors(api);
            Ok(())
        }
    };
    result.map_err(|e| format!("fault injection failed: {e}"))
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        let _ = self.orders.send(Order::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
