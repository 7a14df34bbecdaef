//! The sink against librdkafka's mock cluster (broker down, request
//! errors, slow round trips, retries), and against the real broker of the
//! test kit when `FLASHSALE_KAFKA_BROKERS` is set: what was stored is read
//! back (keys, headers, values, per-order order).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{KafkaOptions, KafkaOrderSink, ensure_topics, headers};
use crate::OrderSink;
use crate::model::{EventType, OrderEvent};
use crate::testing::sink::sample_events;

const TOPIC: &str = "orders";

/// One message as read back.
#[derive(Debug)]
struct Stored {
    partition: i32,
    key: String,
    headers: BTreeMap<String, String>,
    event: OrderEvent,
}

/// Reads every message of `topic` (all `partitions`) from the start until
/// `want` have arrived or 20 s have passed. Assigns partitions directly, so
/// no consumer-group join is involved.
fn read_back(brokers: &str, topic: &str, partitions: i32, want: usize) -> Vec<Stored> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "flashsale-unit-read-back")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < want && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.unwrap();
        let hs = msg.headers().unwrap();
        let headers = hs
            .iter()
            .map(|h| {
                let v = String::from_utf8(h.value.unwrap().to_vec()).unwrap();
                (h.key.to_owned(), v)
            })
            .collect();
        out.push(Stored {
            partition: msg.partition(),
            key: String::from_utf8(msg.key().unwrap().to_vec()).unwrap(),
            headers,
            event: serde_json::from_slice(msg.payload().unwrap()).unwrap(),
        });
    }
    out
}

/// Every event stored once, keyed by its order, with its headers, and each
/// order's events on one partition in `seq` order.
fn assert_stored_exactly(stored: &[Stored], events: &[OrderEvent]) {
    assert_eq!(
        stored.len(),
        events.len(),
        "one message per event: {stored:#?}"
    );
    for e in events {
        let s = stored
            .iter()
            .find(|s| s.event.event_id == e.event_id)
            .unwrap_or_else(|| panic!("{} was not stored", e.event_id));
        assert_eq!(&s.event, e);
        assert_eq!(s.key, e.order.order_id.to_string());
        assert_eq!(s.headers[headers::EVENT_TYPE], e.event_type.as_str());
        assert_eq!(s.headers[headers::SCHEMA_VERSION], "2");
        assert_eq!(s.headers[headers::EVENT_ID], e.event_id.to_string());
        assert_eq!(s.headers[headers::CONTENT_TYPE], "application/json");
    }
    let mut by_order: BTreeMap<String, Vec<(i32, u16)>> = BTreeMap::new();
    for s in stored {
        by_order
            .entry(s.key.clone())
            .or_default()
            .push((s.partition, s.event.seq));
    }
    for (order, seen) in by_order {
        assert!(
            seen.windows(2).all(|w| w[0].0 == w[1].0),
            "{order} split: {seen:?}"
        );
        assert!(
            seen.windows(2).all(|w| w[0].1 < w[1].1),
            "{order} out of order: {seen:?}"
        );
    }
}

fn mock(partitions: i32) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, partitions, 1).unwrap();
    cluster
}

fn mock_sink(
    cluster: &MockCluster<'_, impl rdkafka::ClientContext>,
    delivery: Duration,
) -> KafkaOrderSink {
    let opts = KafkaOptions::new(cluster.bootstrap_servers())
        .topic(TOPIC)
        .delivery_timeout(delivery)
        .request_timeout(Duration::from_secs(2));
    KafkaOrderSink::new(&opts).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_stores_each_event_once_with_key_headers_and_order() {
    let cluster = mock(3);
    let sink = mock_sink(&cluster, Duration::from_secs(10));
    sink.ping().await.unwrap();
    let events = sample_events();
    sink.submit(&events).await.unwrap();
    let stored = read_back(&cluster.bootstrap_servers(), TOPIC, 3, events.len());
    assert_stored_exactly(&stored, &events);
    assert!(events.iter().any(|e| e.event_type == EventType::Voided));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_broker_down_fails_the_batch_and_up_again_delivers_it() {
    let cluster = mock(1);
    let sink = mock_sink(&cluster, Duration::from_millis(1_500));
    sink.ping().await.unwrap();
    cluster.broker_down(1).unwrap();
    let events = sample_events();
    let started = Instant::now();
    let err = sink.submit(&events).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("of 5 events not acknowledged"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    cluster.broker_up(1).unwrap();
    // The relay resubmits the whole batch; it is stored once.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match sink.submit(&events).await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => eprintln!("not yet: {e}"),
            Err(e) => panic!("the broker is up again, yet: {e}"),
        }
    }
    let stored = read_back(&cluster.bootstrap_servers(), TOPIC, 1, events.len());
    assert_stored_exactly(&stored, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_retriable_produce_errors_are_retried_without_duplicates() {
    let cluster = mock(1);
    let sink = mock_sink(&cluster, Duration::from_secs(10));
    sink.ping().await.unwrap();
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    let events = sample_events();
    sink.submit(&events).await.unwrap();
    let stored = read_back(&cluster.bootstrap_servers(), TOPIC, 1, events.len() + 1);
    assert_stored_exactly(&stored, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_a_permanent_produce_error_fails_the_batch() {
    let cluster = mock(1);
    let sink = mock_sink(&cluster, Duration::from_secs(5));
    sink.ping().await.unwrap();
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 8],
    );
    let err = sink.submit(&sample_events()).await.unwrap_err();
    assert!(err.to_string().contains("not acknowledged"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_slow_round_trips_fail_past_the_timeouts_only() {
    let cluster = mock(1);
    let sink = |delivery: u64, request: u64| {
        let opts = KafkaOptions::new(cluster.bootstrap_servers())
            .topic(TOPIC)
            .delivery_timeout(Duration::from_millis(delivery))
            .set("request.timeout.ms", request.to_string())
            .set("socket.timeout.ms", request.to_string());
        KafkaOrderSink::new(&opts).unwrap()
    };
    let (patient, hasty) = (sink(20_000, 8_000), sink(1_500, 500));
    patient.ping().await.unwrap();
    hasty.ping().await.unwrap();
    cluster
        .broker_round_trip_time(1, Duration::from_millis(2_000))
        .unwrap();
    let events = sample_events();
    let started = Instant::now();
    let err = hasty.submit(&events).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    patient.submit(&events).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1_900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_ping_needs_the_topic() {
    let cluster = MockCluster::new(1).unwrap();
    let sink = mock_sink(&cluster, Duration::from_secs(5));
    let err = sink.ping().await.unwrap_err();
    assert!(err.to_string().contains("\"orders\""), "{err}");
    cluster.create_topic(TOPIC, 2, 1).unwrap();
    sink.ping().await.unwrap();
}

/// The test kit's broker, or `None` (a failure under `CI=true`).
fn real_brokers() -> Option<String> {
    match std::env::var("FLASHSALE_KAFKA_BROKERS") {
        Ok(b) if !b.trim().is_empty() => Some(b),
        _ => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "FLASHSALE_KAFKA_BROKERS is not set under CI=true: use backends/kafka/with-kafka.sh"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_stores_each_event_once_with_key_headers_and_order() {
    let Some(brokers) = real_brokers() else {
        return;
    };
    let topic = format!("fst-sink-{}", uuid::Uuid::now_v7().simple());
    let opts = KafkaOptions::new(&brokers).topic(&topic);
    ensure_topics(&opts, &[&topic], 3).await.unwrap();
    // A second call finds the topic there and is fine with it.
    ensure_topics(&opts, &[&topic], 3).await.unwrap();
    let sink = KafkaOrderSink::new(&opts).unwrap();
    sink.ping().await.unwrap();
    let mut events = sample_events();
    sink.submit(&events).await.unwrap();
    // A resubmitted batch is stored again (consumers dedupe by event id).
    sink.submit(&events[3..]).await.unwrap();
    let more: Vec<OrderEvent> = (0..200).flat_map(|_| sample_events()).collect();
    sink.submit(&more).await.unwrap();
    let stored = read_back(&brokers, &topic, 3, events.len() + 2 + more.len());
    let mut firsts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut repeats = 0;
    for s in stored {
        if seen.insert(s.event.event_id) {
            firsts.push(s);
        } else {
            repeats += 1;
        }
    }
    assert_eq!(repeats, 2, "exactly the resubmitted events came twice");
    events.extend(more);
    assert_stored_exactly(&firsts, &events);
}
