//! Kafka backend (feature `kafka`): [`KafkaOrderSink`], the durable
//! [`OrderSink`](crate::OrderSink) the outbox relay hands order events to,
//! and [`OrderWorker`], the consumer side that folds them into a read model
//! at least once, with retries and a dead-letter topic.
//!
//! Built on `rdkafka` with its bundled librdkafka (compiled from source and
//! linked statically; Debian's librdkafka is too old). Any Kafka-protocol
//! broker works: Apache Kafka, Redpanda, or the `tansu` broker the test kit
//! starts (`backends/kafka/with-kafka.sh`).
//!
//! * **Producer.** Idempotent (`enable.idempotence=true`, hence `acks=all`
//!   and ordered retries), lz4-compressed, with a small linger so one relay
//!   batch becomes a few produce requests.
//!   [`OrderSink::submit`](crate::OrderSink::submit) enqueues the whole
//!   batch and returns `Ok` only once every delivery report is `Ok`.
//! * **Messages.** Key: the order id, so one order's events land on one
//!   partition in order. Value: the event's JSON (`docs/orders.md`).
//!   Headers: `event_type`, `schema_version`, `event_id` and
//!   `content-type: application/json` (see [`headers`]).
//! * **Configuration.** [`KafkaOptions`]: brokers and topic, read from
//!   `FLASHSALE_KAFKA_BROKERS` and `FLASHSALE_KAFKA_TOPIC` (default
//!   `flashsale.orders`) by [`KafkaOptions::from_env`], plus any librdkafka
//!   property with [`KafkaOptions::set`].
//! * **Consumer.** [`OrderWorker`] reads the topic in a consumer group at
//!   least once (an offset is stored only after its message is processed),
//!   hands batches of decoded events to an [`EventHandler`](crate::EventHandler) (e.g.
//!   `MySqlOrderTable`), retries transient failures with capped backoff and
//!   sends what it cannot process to `<topic>.dlq`, with the [`dlq`]
//!   headers saying why; [`replay_dead_letters`] puts them back.
//!
//! Driver types never appear in this module's public signatures: every
//! failure is a [`crate::Error::Backend`] with backend `"kafka"`.
//!
//! ```no_run
//! # async fn demo() -> flashsale::Result<()> {
//! use flashsale::kafka::{KafkaOptions, KafkaOrderSink};
//! use flashsale::OrderSink;
//!
//! let opts = KafkaOptions::new("127.0.0.1:9092")
//!     .topic("shop.orders")
//!     // Any librdkafka property, e.g. TLS or a client id.
//!     .set("client.id", "shop-api");
//! let sink = KafkaOrderSink::new(&opts)?;
//! sink.ping().await?; // fetches the topic's metadata
//! # Ok(()) }
//! ```

mod admin;
mod client;
pub mod dlq;
mod options;
mod sink;
mod worker;

#[cfg(all(test, feature = "test-util"))]
mod tests;

pub use admin::ensure_topics;
pub use dlq::replay_dead_letters;
pub use options::KafkaOptions;
pub use sink::KafkaOrderSink;
pub use worker::{OrderWorker, WorkerCounters, WorkerOptions, WorkerStats};

use crate::error::Error;

/// The names of the headers every order message carries.
pub mod headers {
    /// The event's `type`: `placed`, `confirmed`, `cancelled`, `expired`
    /// or `voided`.
    pub const EVENT_TYPE: &str = "event_type";
    /// The event's `schema_version` in decimal, e.g. `2`.
    pub const SCHEMA_VERSION: &str = "schema_version";
    /// The event's id, `<order id>.<seq>` (consumers dedupe by it).
    pub const EVENT_ID: &str = "event_id";
    /// Always `application/json`.
    pub const CONTENT_TYPE: &str = "content-type";
}

/// The backend name in this backend's errors.
pub(crate) const BACKEND: &str = "kafka";

/// Maps a driver error into the crate's error type.
pub(crate) fn backend_err(operation: &'static str) -> impl Fn(rdkafka::error::KafkaError) -> Error {
    move |e| Error::backend(BACKEND, operation, e)
}
