//! Client plumbing shared by the order worker and the dead-letter replay:
//! the logging context, the producer, acknowledged produce, the stop
//! signal and the consumer's lag.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientContext, config::RDKafkaLogLevel};
use tokio::sync::watch;

use super::worker::options::Backoff;
use super::{KafkaOptions, backend_err};
use crate::error::{Error, Result};

/// A message to produce.
pub(crate) struct Outgoing<'a> {
    pub(crate) topic: &'a str,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) payload: Option<&'a [u8]>,
    pub(crate) headers: OwnedHeaders,
}

/// Routes librdkafka's logs to `tracing` and logs rebalances and failed
/// commits.
pub(crate) struct LogContext {
    name: String,
}

impl LogContext {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
        }
    }
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let name = &self.name;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", client = %name, "{fac}: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", client = %name, "{fac}: {message}")
            }
            RDKafkaLogLevel::Notice => {
                tracing::info!(target: "librdkafka", client = %name, "{fac}: {message}")
            }
            RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", client = %name, "{fac}: {message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", client = %self.name, error = %error, "{reason}");
    }
}

impl ConsumerContext for LogContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(group = %self.name, partitions = %describe(tpl), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(group = %self.name, partitions = %describe(tpl), "partitions revoked")
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.name, error = %e, "rebalance failed")
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                tracing::debug!(group = %self.name, offsets = %describe(offsets), "offsets committed")
            }
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(
                group = %self.name, error = %e, offsets = %describe(offsets),
                "offset commit failed (retried at the next commit)"
            ),
        }
    }
}

/// `topic[partition@offset, ...]`, for logs.
fn describe(tpl: &TopicPartitionList) -> String {
    let mut by_topic: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in tpl.elements() {
        let p = match e.offset() {
            Offset::Offset(o) => format!("{}@{o}", e.partition()),
            _ => e.partition().to_string(),
        };
        by_topic.entry(e.topic().to_owned()).or_default().push(p);
    }
    let parts: Vec<String> = by_topic
        .into_iter()
        .map(|(t, ps)| format!("{t}[{}]", ps.join(",")))
        .collect();
    parts.join(" ")
}

/// An idempotent producer for dead letters and replays.
pub(crate) fn producer(opts: &KafkaOptions, name: &str) -> Result<FutureProducer<LogContext>> {
    let defaults = [
        ("linger.ms", "5".to_owned()),
        (
            "delivery.timeout.ms",
            opts.delivery_timeout.as_millis().to_string(),
        ),
    ];
    let mut config = opts.client_config(&defaults);
    config.set("enable.idempotence", "true");
    config
        .create_with_context(LogContext::new(name))
        .map_err(|e| Error::Config(format!("Kafka producer: {e}")))
}

/// Enqueues one record, waiting while the local queue is full.
async fn enqueue(
    producer: &FutureProducer<LogContext>,
    r: &Outgoing<'_>,
    op: &'static str,
) -> Result<DeliveryFuture> {
    loop {
        let mut record = FutureRecord::<[u8], [u8]>::to(r.topic).headers(r.headers.clone());
        if let Some(k) = r.key {
            record = record.key(k);
        }
        if let Some(p) = r.payload {
            record = record.payload(p);
        }
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err((e, _)) => return Err(backend_err(op)(e)),
        }
    }
}

/// Produces every record and waits for the acknowledgements; those that
/// fail are produced again after a backoff, until all are acknowledged,
/// `max_rounds` rounds were made, or `stop` fired. Says which were
/// acknowledged, and the last error if any were not.
pub(crate) async fn produce_acked(
    producer: &FutureProducer<LogContext>,
    records: &[Outgoing<'_>],
    backoff: &Backoff,
    max_rounds: Option<u32>,
    op: &'static str,
    stop: &mut Stop,
) -> (Vec<bool>, Option<Error>) {
    let mut acked = vec![false; records.len()];
    let mut round = 0;
    loop {
        round += 1;
        let mut last = None;
        let mut pending = Vec::new();
        for (i, r) in records.iter().enumerate().filter(|(i, _)| !acked[*i]) {
            match enqueue(producer, r, op).await {
                Ok(d) => pending.push((i, d)),
                Err(e) => last = Some(e),
            }
        }
        for (i, delivery) in pending {
            match delivery.await {
                Ok(Ok(_)) => acked[i] = true,
                Ok(Err((e, _))) => last = Some(backend_err(op)(e)),
                Err(_) => {
                    last = Some(Error::backend(
                        crate::kafka::BACKEND,
                        op,
                        "the producer went away",
                    ))
                }
            }
        }
        let Some(error) = last else {
            return (acked, None);
        };
        let failed = acked.iter().filter(|a| !**a).count();
        if max_rounds.is_some_and(|m| round >= m) {
            return (acked, Some(error));
        }
        tracing::warn!(error = %error, failed, round, "kafka write not acknowledged; retrying");
        if !stop.sleep(backoff.delay(round)).await {
            return (acked, Some(error));
        }
    }
}

/// Fires when the worker is asked to stop; cheap to clone and to poll.
#[derive(Debug, Clone)]
pub(crate) struct Stop(watch::Receiver<bool>);

impl Stop {
    /// A signal and the sender that fires it (dropping it never fires).
    pub(crate) fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    pub(crate) fn fired(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once fired (never, if the sender went away unfired).
    pub(crate) async fn wait(&mut self) {
        if self.0.wait_for(|fired| *fired).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Sleeps for `d`; `false` if the signal fired first.
    pub(crate) async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            () = self.wait() => false,
            () = tokio::time::sleep(d) => true,
        }
    }
}

/// The sum over the assigned partitions of high watermark − position (a
/// partition not read from yet counts from its committed offset), and how
/// many partitions are assigned. Blocking.
pub(crate) fn consumer_lag<C: rdkafka::consumer::ConsumerContext>(
    consumer: &StreamConsumer<C>,
    timeout: Duration,
) -> Result<(i64, usize)> {
    let positions = consumer.position().map_err(backend_err("lag"))?;
    let mut unread = rdkafka::TopicPartitionList::new();
    for p in positions.elements() {
        if !matches!(p.offset(), Offset::Offset(_)) {
            unread.add_partition(p.topic(), p.partition());
        }
    }
    let committed = if unread.count() > 0 {
        consumer
            .committed_offsets(unread, timeout)
            .map_err(backend_err("lag"))?
    } else {
        unread
    };
    let mut lag = 0i64;
    for p in positions.elements() {
        let (low, high) = consumer
            .fetch_watermarks(p.topic(), p.partition(), timeout)
            .map_err(backend_err("lag"))?;
        let from_committed = committed
            .find_partition(p.topic(), p.partition())
            .map(|c| c.offset());
        let at = match (p.offset(), from_committed) {
            (Offset::Offset(o), _) | (_, Some(Offset::Offset(o))) => o.max(low),
            _ => low,
        };
        lag += (high - at).max(0);
    }
    Ok((lag, positions.count()))
}
