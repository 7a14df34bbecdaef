//! [`KafkaOrderSink`]: order events to a Kafka topic, idempotently.

use std::time::Duration;

use async_trait::async_trait;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use super::{KafkaOptions, backend_err, headers};
use crate::OrderSink;
use crate::error::{Error, Result};
use crate::model::OrderEvent;

/// Hands order events to a Kafka topic with an idempotent producer.
///
/// [`submit`](OrderSink::submit) enqueues every event of the batch at once
/// (librdkafka packs them into few produce requests) and returns `Ok` only
/// when every delivery report is `Ok`, i.e. every event is acknowledged by
/// all in-sync replicas. On any failed report it returns an error and the
/// relay submits the whole batch again; consumers dedupe by event id.
///
/// Cheap to share: clone the `Arc` you put it in. The producer connects
/// lazily; call [`ping`](OrderSink::ping) to check the broker at start.
pub struct KafkaOrderSink {
    producer: FutureProducer,
    topic: String,
    request_timeout: Duration,
    /// librdkafka's local message timeout, as the producer was given it.
    delivery_timeout: Duration,
}

impl std::fmt::Debug for KafkaOrderSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOrderSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaOrderSink {
    /// A sink for `opts`. Fails only on a configuration librdkafka rejects
    /// (the message names the property); it does not contact the broker.
    pub fn new(opts: &KafkaOptions) -> Result<Self> {
        opts.validate()?;
        let defaults = [
            ("linger.ms", "5".to_owned()),
            ("compression.type", "lz4".to_owned()),
            // The topic is part of the deployment: a typo in its name must
            // fail `ping`, not create a stray one-partition topic.
            ("allow.auto.create.topics", "false".to_owned()),
            (
                "delivery.timeout.ms",
                opts.delivery_timeout.as_millis().to_string(),
            ),
            // request.timeout.ms and socket.timeout.ms keep librdkafka's
            // defaults (30 s, 60 s): shorter ones make a slow broker see
            // retried produce requests, which tansu 0.6 does not survive
            // (see docs/backends.md, "Kafka").
        ];
        let mut config = opts.client_config(&defaults);
        // Not overridable: without it a retried produce can duplicate or
        // reorder an order's events.
        config.set("enable.idempotence", "true");
        let producer: FutureProducer = config
            .create()
            .map_err(|e| Error::Config(format!("Kafka producer: {e}")))?;
        Ok(Self {
            producer,
            topic: opts.topic.clone(),
            request_timeout: opts.request_timeout,
            delivery_timeout: message_timeout(&config).unwrap_or(opts.delivery_timeout),
        })
    }

    /// The topic events go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Waits up to `timeout` for every message still queued to be
    /// delivered (use at shutdown; `submit` already waits for its own).
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| Error::backend(crate::kafka::BACKEND, "flush", e))?
            .map_err(backend_err("flush"))
    }

    /// Enqueues one event, waiting while librdkafka's local queue is full.
    async fn enqueue(&self, event: &OrderEvent) -> Result<DeliveryFuture> {
        let payload = serde_json::to_vec(event)
            .map_err(|e| Error::backend(crate::kafka::BACKEND, "submit", e))?;
        let key = event.order.order_id.to_string();
        let event_id = event.event_id.to_string();
        let version = event.schema_version.to_string();
        let mut record = FutureRecord::to(&self.topic)
            .key(&key)
            .payload(&payload)
            .headers(
                OwnedHeaders::new_with_capacity(4)
                    .insert(Header {
                        key: headers::EVENT_TYPE,
                        value: Some(event.event_type.as_str()),
                    })
                    .insert(Header {
                        key: headers::SCHEMA_VERSION,
                        value: Some(&version),
                    })
                    .insert(Header {
                        key: headers::EVENT_ID,
                        value: Some(&event_id),
                    })
                    .insert(Header {
                        key: headers::CONTENT_TYPE,
                        value: Some("application/json"),
                    }),
            );
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The local queue drains as deliveries complete.
                    record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(backend_err("submit")(e)),
            }
        }
    }
}

#[async_trait]
impl OrderSink for KafkaOrderSink {
    async fn submit(&self, events: &[OrderEvent]) -> Result<()> {
        let mut deliveries = Vec::with_capacity(events.len());
        for event in events {
            // On an error here the events already enqueued are still sent;
            // the relay resubmits the batch and consumers dedupe.
            deliveries.push(self.enqueue(event).await?);
        }
        let mut failed = 0usize;
        let mut first: Option<Error> = None;
        for delivery in deliveries {
            let error = match delivery.await {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => backend_err("submit")(e),
                Err(_) => {
                    Error::backend(crate::kafka::BACKEND, "submit", "the producer was dropped")
                }
            };
            failed += 1;
            first.get_or_insert(error);
        }
        match first {
            None => Ok(()),
            Some(Error::Backend { source, .. }) => Err(Error::backend(
                crate::kafka::BACKEND,
                "submit",
                format!(
                    "{failed} of {} events not acknowledged, first: {source}",
                    events.len()
                ),
            )),
            Some(other) => Err(other),
        }
    }

    /// librdkafka's `delivery.timeout.ms` (default
    /// [`KafkaOptions::delivery_timeout`], 60 s): a submit the relay gave up
    /// on leaves its messages queued, and librdkafka keeps delivering them
    /// for up to that long after they were enqueued, all of which happened
    /// within the submit.
    fn delivery_timeout(&self) -> Option<Duration> {
        Some(self.delivery_timeout)
    }

    /// Fetches the topic's metadata: fails if no broker answers within the
    /// request timeout, or if the topic does not exist or has an error.
    async fn ping(&self) -> Result<()> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let timeout = self.request_timeout;
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map_err(backend_err("ping"))?;
            let found = metadata.topics().iter().find(|t| t.name() == topic);
            match found {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
                Some(t) => Err(Error::backend(
                    crate::kafka::BACKEND,
                    "ping",
                    format!(
                        "topic {topic:?} is not usable ({:?}); create it, e.g. with \
                         backends/kafka/with-kafka.sh's topic setup",
                        t.error()
                    ),
                )),
                None => Err(Error::backend(
                    crate::kafka::BACKEND,
                    "ping",
                    format!("topic {topic:?} does not exist; create it first"),
                )),
            }
        })
        .await
        .map_err(|e| Error::backend(crate::kafka::BACKEND, "ping", e))?
    }
}

/// The message timeout a producer with `config` uses: a user's property
/// overrides the crate's default, under either of librdkafka's names for
/// it (if both are set, which one librdkafka applies last is not defined,
/// so the longer counts); `0` means no limit.
fn message_timeout(config: &rdkafka::ClientConfig) -> Option<Duration> {
    ["delivery.timeout.ms", "message.timeout.ms"]
        .into_iter()
        .filter_map(|key| config.get(key))
        .map(|ms| match ms.trim().parse::<u64>() {
            Ok(0) | Err(_) => Duration::MAX,
            Ok(ms) => Duration::from_millis(ms),
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(opts: KafkaOptions) -> Option<Duration> {
        KafkaOrderSink::new(&opts).unwrap().delivery_timeout()
    }

    #[test]
    fn reports_the_delivery_timeout_the_producer_was_given() {
        let opts = || KafkaOptions::new("127.0.0.1:9");
        assert_eq!(reported(opts()), Some(Duration::from_secs(60)));
        assert_eq!(
            reported(opts().delivery_timeout(Duration::from_secs(20))),
            Some(Duration::from_secs(20))
        );
        // A property set by hand wins, under either name; 0 is no limit.
        assert_eq!(
            reported(opts().set("delivery.timeout.ms", "15000")),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            reported(opts().set("message.timeout.ms", "90000")),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            reported(opts().set("message.timeout.ms", "0")),
            Some(Duration::MAX)
        );
    }
}
