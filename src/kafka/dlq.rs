//! The dead-letter topic, `<topic>.dlq`: what [`OrderWorker`](super::OrderWorker)
//! writes there, the headers that say why, and [`replay_dead_letters`],
//! which puts dead letters back on the order topic.
//!
//! A dead letter is the original message, unchanged (same key, same
//! value, same headers), plus these headers, every value UTF-8 text:
//!
//! | header | value |
//! |---|---|
//! | [`ORIGINAL_TOPIC`] `dlq.original.topic` | the topic the message was read from |
//! | [`ORIGINAL_PARTITION`] `dlq.original.partition` | its partition, decimal |
//! | [`ORIGINAL_OFFSET`] `dlq.original.offset` | its offset, decimal |
//! | [`CONSUMER_GROUP`] `dlq.consumer.group` | the group of the worker that gave up on it |
//! | [`ERROR`] `dlq.error` | the error, as text (at most 4 KiB) |
//! | [`ATTEMPTS`] `dlq.attempts` | how many times the handler was called with this event on its own; `0` for a message that could not be decoded |
//! | [`REASON`] `dlq.reason` | `undecodable` or `rejected` (a permanent error); letters of earlier versions may say `retries_exhausted` (transient errors, `attempts` times), which this one no longer writes |
//!
//! A replayed message carries the original headers (without the `dlq.*`
//! ones) plus [`REPLAYED_FROM`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::client::{LogContext, Outgoing, Stop, produce_acked, producer};
use super::worker::options::WorkerOptions;
use super::{KafkaOptions, backend_err};
use crate::error::{Error, Result};

/// The topic the message was read from.
pub const ORIGINAL_TOPIC: &str = "dlq.original.topic";
/// The partition it was read from, decimal.
pub const ORIGINAL_PARTITION: &str = "dlq.original.partition";
/// Its offset in that partition, decimal.
pub const ORIGINAL_OFFSET: &str = "dlq.original.offset";
/// The consumer group of the worker that dead-lettered it.
pub const CONSUMER_GROUP: &str = "dlq.consumer.group";
/// Why it failed: the last error, as text (at most 4 KiB).
pub const ERROR: &str = "dlq.error";
/// How many times the handler was called with the event on its own,
/// decimal; `0` when the message could not be decoded.
pub const ATTEMPTS: &str = "dlq.attempts";
/// `undecodable` (not JSON, not an order event, an unknown schema
/// version) or `rejected` (the handler failed permanently).
///
/// Letters written by earlier versions may also say `retries_exhausted`
/// (the handler failed transiently every attempt). This version no longer
/// dead-letters transient failures: it pauses and retries until they pass.
pub const REASON: &str = "dlq.reason";
/// Set by [`replay_dead_letters`] on the message it puts back on the order
/// topic: `<dead-letter topic>/<partition>/<offset>` of the dead letter.
pub const REPLAYED_FROM: &str = "dlq.replayed.from";

/// The headers the worker sets on a dead letter (replaced, not repeated,
/// when a replayed message fails again).
const FAILURE_HEADERS: [&str; 7] = [
    ORIGINAL_TOPIC,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
    CONSUMER_GROUP,
    ERROR,
    ATTEMPTS,
    REASON,
];

/// The longest `dlq.error` value, in bytes.
const MAX_ERROR_LEN: usize = 4096;

/// Why a message is dead-lettered (the [`REASON`] header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Undecodable,
    Rejected,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Undecodable => "undecodable",
            Reason::Rejected => "rejected",
        }
    }
}

/// One message to dead-letter, and why.
pub(crate) struct DeadLetter<'a> {
    pub(crate) message: &'a OwnedMessage,
    pub(crate) group: &'a str,
    pub(crate) reason: Reason,
    pub(crate) error: &'a str,
    pub(crate) attempts: u32,
}

impl DeadLetter<'_> {
    /// The record for the dead-letter topic `topic`.
    pub(crate) fn record<'r>(&'r self, topic: &'r str) -> Outgoing<'r> {
        let m = self.message;
        let headers = copy_headers(m.headers(), |k| FAILURE_HEADERS.contains(&k));
        let mut error = self.error;
        if error.len() > MAX_ERROR_LEN {
            let mut end = MAX_ERROR_LEN;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error = &error[..end];
        }
        let headers = [
            (ORIGINAL_TOPIC, m.topic().to_owned()),
            (ORIGINAL_PARTITION, m.partition().to_string()),
            (ORIGINAL_OFFSET, m.offset().to_string()),
            (CONSUMER_GROUP, self.group.to_owned()),
            (ERROR, error.to_owned()),
            (ATTEMPTS, self.attempts.to_string()),
            (REASON, self.reason.as_str().to_owned()),
        ]
        .iter()
        .fold(headers, |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value.as_str()),
            })
        });
        Outgoing {
            topic,
            key: m.key(),
            payload: m.payload(),
            headers,
        }
    }
}

/// `from`'s headers, except those whose key `skip` says to leave out.
fn copy_headers<H: Headers>(from: Option<&H>, skip: impl Fn(&str) -> bool) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(from.map_or(0, Headers::count) + 8);
    for h in from.into_iter().flat_map(Headers::iter) {
        if !skip(h.key) {
            out = out.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    out
}

/// Puts the dead letters of consumer group `group` back on the order
/// topic, and returns how many it replayed.
///
/// Reads `<topic>.dlq` in its own consumer group, `<group>.dlq-replay`,
/// from where the last replay stopped, and stops once it has caught up
/// with the dead-letter topic's end as it was when the call began (letters
/// written meanwhile wait for the next replay). Each letter whose
/// [`CONSUMER_GROUP`] is `group` (or that has none) is published to the
/// order topic with its key and value and its headers less the `dlq.*`
/// ones, plus [`REPLAYED_FROM`]; letters of other groups are passed over
/// (their own group's replay takes them). A letter's offset is stored only
/// once its publication is acknowledged, and the offsets are committed
/// before returning, so an interrupted replay resumes where it stopped
/// (republishing at most the last few: consumers dedupe).
///
/// Run it while the worker runs or not; run one replay per group at a
/// time.
///
/// # Errors
///
/// [`Error::Timeout`] if nothing arrives for `idle_timeout` (joining the
/// group included) while letters remain; a backend error if the
/// dead-letter topic does not exist or a publication keeps failing.
pub async fn replay_dead_letters(
    opts: &KafkaOptions,
    group: &str,
    idle_timeout: Duration,
) -> Result<u64> {
    opts.validate()?;
    if group.trim().is_empty() {
        return Err(Error::Config(
            "replay_dead_letters: the consumer group name is empty".into(),
        ));
    }
    let dlq_topic = opts.dead_letter_topic();
    let replay_group = format!("{group}.dlq-replay");
    let worker = WorkerOptions::new().group(replay_group.as_str());
    worker.validate()?;
    let consumer: StreamConsumer<LogContext> = worker
        .consumer_config(opts, &replay_group)
        .create_with_context(LogContext::new(&replay_group))
        .map_err(|e| Error::Config(format!("Kafka consumer: {e}")))?;
    let consumer = Arc::new(consumer);
    let producer = producer(opts, &replay_group)?;
    let mut todo = {
        let (c, t, timeout) = (consumer.clone(), dlq_topic.clone(), opts.request_timeout);
        tokio::task::spawn_blocking(move || letters_waiting(&c, &t, timeout))
            .await
            .map_err(|e| Error::backend(crate::kafka::BACKEND, "replay", e))??
    };
    if todo.is_empty() {
        tracing::info!(topic = %dlq_topic, group = %replay_group, "no dead letters to replay");
        return Ok(0);
    }
    tracing::info!(
        topic = %dlq_topic, group = %replay_group, partitions = todo.len(),
        "replaying dead letters"
    );
    consumer
        .subscribe(&[&dlq_topic])
        .map_err(backend_err("replay"))?;
    let (_never, mut stop) = Stop::new();
    let mut replayed = 0u64;
    let mut last_progress = Instant::now();
    let mut failure = None;
    while !todo.is_empty() {
        let first = match tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            Ok(Ok(m)) => m.detach(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, topic = %dlq_topic, "kafka consumer error");
                if last_progress.elapsed() >= idle_timeout {
                    failure = Some(backend_err("replay")(e));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => {
                // Caught up where the end was a control record, or nothing
                // came: check the positions, and the time.
                if let Ok(positions) = consumer.position() {
                    for p in positions.elements_for_topic(&dlq_topic) {
                        if let Offset::Offset(at) = p.offset()
                            && todo.get(&p.partition()).is_some_and(|high| at >= *high)
                        {
                            todo.remove(&p.partition());
                        }
                    }
                }
                if !todo.is_empty() && last_progress.elapsed() >= idle_timeout {
                    failure = Some(Error::Timeout {
                        operation: "replay_dead_letters",
                        after: idle_timeout,
                    });
                    break;
                }
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < 500 {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m.detach()),
                _ => break,
            }
        }
        last_progress = Instant::now();
        // Only what was there when the replay began, and only once.
        let replay: Vec<(&OwnedMessage, String)> = batch
            .iter()
            .filter(|m| {
                todo.get(&m.partition())
                    .is_some_and(|high| m.offset() < *high)
            })
            .filter(|m| belongs_to(m, group))
            .map(|m| (m, format!("{}/{}/{}", m.topic(), m.partition(), m.offset())))
            .collect();
        let records: Vec<Outgoing<'_>> = replay
            .iter()
            .map(|(m, origin)| Outgoing {
                topic: &opts.topic,
                key: m.key(),
                payload: m.payload(),
                headers: copy_headers(m.headers(), |k| k.starts_with("dlq.")).insert(Header {
                    key: REPLAYED_FROM,
                    value: Some(origin.as_str()),
                }),
            })
            .collect();
        let (_, error) = produce_acked(
            &producer,
            &records,
            &worker.backoff,
            Some(5),
            "replay",
            &mut stop,
        )
        .await;
        if let Some(e) = error {
            // Nothing of this batch is stored: it is replayed next time.
            failure = Some(e);
            break;
        }
        replayed += records.len() as u64;
        for m in &batch {
            let Some(high) = todo.get(&m.partition()).copied() else {
                continue; // caught up already: not ours to store
            };
            if m.offset() < high
                && let Err(e) = consumer.store_offset(m.topic(), m.partition(), m.offset())
            {
                tracing::debug!(error = %e, "offset not stored");
            }
            if m.offset() + 1 >= high {
                todo.remove(&m.partition());
            }
        }
    }
    // Committing, leaving the group and closing the producer block.
    let done = tokio::task::spawn_blocking(move || {
        let r = consumer.commit_consumer_state(CommitMode::Sync);
        drop(consumer);
        drop(producer);
        r
    })
    .await
    .map_err(|e| Error::backend(crate::kafka::BACKEND, "replay", e))?;
    match done {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => {
            failure.get_or_insert(backend_err("replay")(e));
        }
    }
    tracing::info!(topic = %dlq_topic, group = %replay_group, replayed, "dead-letter replay finished");
    match failure {
        None => Ok(replayed),
        Some(e) => Err(e),
    }
}

/// Whether a dead letter is `group`'s to replay.
fn belongs_to(m: &OwnedMessage, group: &str) -> bool {
    let found = m
        .headers()
        .into_iter()
        .flat_map(Headers::iter)
        .find(|h| h.key == CONSUMER_GROUP);
    match found {
        Some(h) => h.value == Some(group.as_bytes()),
        None => true,
    }
}

/// Per partition of `topic` with letters the replay group has not
/// replayed yet: the high watermark now. Blocking.
fn letters_waiting(
    consumer: &StreamConsumer<LogContext>,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(backend_err("replay"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(Error::backend(
            crate::kafka::BACKEND,
            "replay",
            format!("the dead-letter topic {topic:?} does not exist; create it"),
        ));
    }
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for p in &partitions {
        tpl.add_partition(topic, *p);
    }
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .map_err(backend_err("replay"))?;
    let mut todo = BTreeMap::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(backend_err("replay"))?;
        let from = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o.max(low),
            _ => low,
        };
        if from < high {
            todo.insert(p, high);
        }
    }
    Ok(todo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(h: &'a OwnedHeaders, key: &str) -> Option<&'a str> {
        h.iter()
            .find(|x| x.key == key)
            .and_then(|x| x.value)
            .map(|v| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn dead_letters_keep_the_message_and_say_why() {
        let original = OwnedHeaders::new()
            .insert(Header {
                key: "event_id",
                value: Some("x.1"),
            })
            .insert(Header {
                key: ERROR,
                value: Some("an older failure"),
            });
        let m = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"order-1".to_vec()),
            "orders".into(),
            rdkafka::Timestamp::NotAvailable,
            2,
            41,
            Some(original),
        );
        let long = "é".repeat(3000);
        let letter = DeadLetter {
            message: &m,
            group: "g",
            reason: Reason::Rejected,
            error: &long,
            attempts: 5,
        };
        let r = letter.record("orders.dlq");
        assert_eq!(
            (r.topic, r.key, r.payload),
            ("orders.dlq", Some(&b"order-1"[..]), Some(&b"{}"[..]))
        );
        let h = &r.headers;
        assert_eq!(header(h, "event_id"), Some("x.1"));
        assert_eq!(header(h, ORIGINAL_TOPIC), Some("orders"));
        assert_eq!(header(h, ORIGINAL_PARTITION), Some("2"));
        assert_eq!(header(h, ORIGINAL_OFFSET), Some("41"));
        assert_eq!(header(h, CONSUMER_GROUP), Some("g"));
        assert_eq!(header(h, ATTEMPTS), Some("5"));
        assert_eq!(header(h, REASON), Some("rejected"));
        let error = header(h, ERROR).unwrap();
        assert!(error.len() <= MAX_ERROR_LEN && error.starts_with("éé"));
        assert_eq!(h.iter().filter(|x| x.key == ERROR).count(), 1);
        assert!(belongs_to(&m, "other"), "no group header: anyone's");
        let h = r.headers.clone();
        let m = m.clone().replace_headers(Some(h));
        assert!(belongs_to(&m, "g") && !belongs_to(&m, "other"));
    }
}
