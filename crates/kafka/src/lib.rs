//! Everything that talks to Kafka: the consumer task and what it reports (`status`), the
//! dead-letter producer, topic checks and the embedded broker used by the demo and the tests.
//!
//! A crate of its own so that the compiler keeps it below the runtime and the faces: it
//! knows the domain (`incident-core`) and the configuration (`incident-config`), nothing
//! above them.

use incident_config as config;
use incident_core as core;

pub mod consumer;
pub mod dead_letter;
pub mod embedded;
pub mod quiet;
pub mod settings;
pub mod status;
pub mod topics;

/// Whether a client error only says a connection dropped: librdkafka reconnects by itself,
/// so a reader logs it and polls on, within its own deadline. A single broker that closes
/// a connection is reported as "all brokers down" until the next one opens.
pub fn is_transport(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{AllBrokersDown, BrokerTransportFailure, Resolve};
    matches!(
        error.rdkafka_error_code(),
        Some(AllBrokersDown | BrokerTransportFailure | Resolve)
    )
}
