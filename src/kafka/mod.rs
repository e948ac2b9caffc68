//! Everything that talks to Kafka: the consumer task, the dead-letter producer and the
//! embedded broker used by the demo and the tests.

pub mod consumer;
pub mod dead_letter;
pub mod embedded;
pub mod quiet;
pub mod settings;
pub mod topics;
