//! The dead-letter producer: a message that cannot be decoded is copied, byte for byte, to the
//! dead-letter topic with headers that say why and where it came from.

use std::time::Duration;

use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::consumer::{FetchedMessage, client_config};
use crate::config::Config;

pub const HEADER_REASON: &str = "x-error-reason";
pub const HEADER_ERROR: &str = "x-error";
pub const HEADER_TOPIC: &str = "x-source-topic";
pub const HEADER_PARTITION: &str = "x-source-partition";
pub const HEADER_OFFSET: &str = "x-source-offset";
pub const HEADER_AT: &str = "x-dead-lettered-at";
/// Present (with the original size in bytes) when the copy had to be cut to fit the broker.
pub const HEADER_TRUNCATED: &str = "x-payload-truncated";
const TRUNCATED_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct DeadLetterProducer {
    producer: FutureProducer<super::quiet::QuietContext>,
    topic: String,
}

impl DeadLetterProducer {
    pub fn new(config: &Config) -> KafkaResult<Self> {
        let mut client = client_config(config, false);
        client
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "60000")
            // Room for any payload the consumer can fetch, with its headers.
            .set("message.max.bytes", (16 * 1024 * 1024).to_string());
        Ok(Self {
            producer: client
                .create_with_context(super::quiet::QuietContext)
                .map_err(|error| super::settings::without_values(config, error))?,
            topic: config.dead_letter_topic(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends until the broker has it. Failures are retried with backoff for as long as it
    /// takes: the source offset must not be committed before the copy is safe. A copy the
    /// broker refuses as too large is cut to its first `TRUNCATED_BYTES` (marked with
    /// `x-payload-truncated`), since retrying the same size could never succeed.
    pub async fn send(&self, message: &FetchedMessage, reason: &str, error: &str, at: &str) {
        let mut backoff = Duration::from_millis(200);
        let mut truncate_to: Option<usize> = None;
        let original_size = message.payload.as_ref().map_or(0, Vec::len).to_string();
        let partition = message.source.partition.to_string();
        let offset = message.source.offset.to_string();
        loop {
            let mut headers = OwnedHeaders::new();
            for (key, value) in [
                (HEADER_REASON, reason),
                (HEADER_ERROR, error),
                (HEADER_TOPIC, &*message.source.topic),
                (HEADER_PARTITION, partition.as_str()),
                (HEADER_OFFSET, offset.as_str()),
                (HEADER_AT, at),
            ] {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
            if truncate_to.is_some() {
                headers = headers.insert(Header {
                    key: HEADER_TRUNCATED,
                    value: Some(original_size.as_str()),
                });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(headers);
            if let Some(key) = &message.key {
                record = record.key(key.as_slice());
            }
            if let Some(payload) = &message.payload {
                let end = truncate_to.unwrap_or(payload.len()).min(payload.len());
                record = record.payload(&payload[..end]);
            }
            match self.producer.send(record, Duration::from_secs(5)).await {
                Ok(_) => return,
                Err((error, _))
                    if truncate_to.is_none()
                        && error.rdkafka_error_code()
                            == Some(RDKafkaErrorCode::MessageSizeTooLarge) =>
                {
                    tracing::warn!(
                        source = %message.source,
                        size = original_size,
                        "dead-letter copy too large for the broker; sending its first {TRUNCATED_BYTES} bytes"
                    );
                    truncate_to = Some(TRUNCATED_BYTES);
                }
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
