//! The dead-letter producer: a message that cannot be decoded is copied, byte for byte, to the
//! dead-letter topic with headers that say why and where it came from.

use std::time::Duration;

use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::consumer::{FetchedMessage, client_config};
use crate::config::Config;

pub const HEADER_REASON: &str = "x-error-reason";
pub const HEADER_ERROR: &str = "x-error";
pub const HEADER_TOPIC: &str = "x-source-topic";
pub const HEADER_PARTITION: &str = "x-source-partition";
pub const HEADER_OFFSET: &str = "x-source-offset";
pub const HEADER_AT: &str = "x-dead-lettered-at";

#[derive(Clone)]
pub struct DeadLetterProducer {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetterProducer {
    pub fn new(config: &Config) -> KafkaResult<Self> {
        let mut client = client_config(config, false);
        client
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "60000");
        Ok(Self {
            producer: client.create()?,
            topic: config.dead_letter_topic(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends until the broker has it. Failures are retried with backoff for as long as it
    /// takes: the source offset must not be committed before the copy is safe.
    pub async fn send(&self, message: &FetchedMessage, reason: &str, error: &str, at: &str) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: HEADER_REASON,
                    value: Some(reason),
                })
                .insert(Header {
                    key: HEADER_ERROR,
                    value: Some(error),
                })
                .insert(Header {
                    key: HEADER_TOPIC,
                    value: Some(&message.source.topic),
                })
                .insert(Header {
                    key: HEADER_PARTITION,
                    value: Some(&message.source.partition.to_string()),
                })
                .insert(Header {
                    key: HEADER_OFFSET,
                    value: Some(&message.source.offset.to_string()),
                })
                .insert(Header {
                    key: HEADER_AT,
                    value: Some(at),
                });
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(headers);
            if let Some(key) = &message.key {
                record = record.key(key.as_slice());
            }
            if let Some(payload) = &message.payload {
                record = record.payload(payload.as_slice());
            }
            match self.producer.send(record, Duration::from_secs(5)).await {
                Ok(_) => return,
                Err((error, _)) => {
                    tracing::warn!(
                        %error,
                        source = %message.source,
                        "dead-letter send failed; retrying in {backoff:?}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}
