//! `OrderWorker` and `replay_dead_letters` against a REAL Kafka-protocol
//! broker at `FLASHSALE_KAFKA_BROKERS` and a real MariaDB at
//! `FLASHSALE_DATABASE_URL` (default `mysql://root@127.0.0.1:3306/test`).
//! Run them through
//! `backends/kafka/with-kafka.sh backends/mysql/with-mysql.sh cargo test
//! --features kafka,mysql,test-util --test kafka_worker`, which start both.
//! Without `FLASHSALE_KAFKA_BROKERS` the broker cases are skipped with a
//! message, except under `CI=true`, where they fail.
//!
//! Each case has its own topic (3 partitions, and its `.dlq`), consumer
//! group and table prefix (`fst_…_`), so cases run in parallel.
//!
//! The `mock_*` cases need no broker: they run the worker against
//! librdkafka's in-process mock cluster, with an in-memory handler.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flashsale::EventHandler;
use flashsale::kafka::{
    KafkaOptions, KafkaOrderSink, OrderWorker, WorkerCounters, WorkerOptions, WorkerStats, dlq,
    ensure_topics, headers, replay_dead_letters,
};
use flashsale::mysql::MySqlOrderTable;
use flashsale::testing::stock::{T0, at, request};
use flashsale::testing::{unique_product, user};
use flashsale::{Error, InvalidInput, OrderId, OrderSink};
use flashsale::{EventType, OrderEvent};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, Message};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const PARTITIONS: i32 = 3;
/// How long a case waits for the worker to catch up (the first group join
/// on a fresh broker is slow).
const PATIENCE: Duration = Duration::from_secs(120);

// --- the environment ----------------------------------------------------

/// The broker, or `None` (skip) when none is configured outside CI.
fn brokers(case: &str) -> Option<String> {
    match std::env::var("FLASHSALE_KAFKA_BROKERS") {
        Ok(b) if !b.trim().is_empty() => Some(b.trim().to_owned()),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "FLASHSALE_KAFKA_BROKERS is not set under CI=true: run the tests through \
             backends/kafka/with-kafka.sh"
        ),
        _ => {
            println!(
                "skipping {case}: FLASHSALE_KAFKA_BROKERS is not set (run through \
                 backends/kafka/with-kafka.sh)"
            );
            None
        }
    }
}

fn database_url() -> String {
    std::env::var("FLASHSALE_DATABASE_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

fn unique(what: &str) -> String {
    format!(
        "fst-{what}-{}",
        &uuid::Uuid::now_v7().simple().to_string()[16..]
    )
}

/// A fresh `orders` table of its own.
async fn table() -> MySqlOrderTable {
    let prefix = format!("fst_{}_", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let url = database_url();
    let t = MySqlOrderTable::connect(&url, &prefix)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "MySQL at {url} is not answering ({e}): run through backends/mysql/with-mysql.sh"
            )
        });
    t.migrate().await.expect("migrations apply");
    t
}

/// Client settings for the tests: quick group membership (the defaults
/// make a rejoin after a member left wait up to 45 s).
fn kafka(brokers: &str, topic: &str) -> KafkaOptions {
    KafkaOptions::new(brokers)
        .topic(topic)
        .request_timeout(Duration::from_secs(10))
}

fn worker_options(group: &str) -> WorkerOptions {
    // A failing batch is split into single events after 3 transient
    // failures (the deprecated option's one remaining effect).
    #[allow(deprecated)]
    let split_sooner = WorkerOptions::new().max_attempts(3);
    split_sooner
        .group(group)
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .max_batch(50)
        .progress_interval(Duration::from_secs(2))
        .commit_interval(Duration::from_millis(200))
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        // Also the rebalance timeout a join may wait for other members.
        .set("max.poll.interval.ms", "10000")
        .set("topic.metadata.refresh.interval.ms", "1000")
}

/// Creates `topic` and its `.dlq`, `PARTITIONS` partitions each, and
/// waits until both answer.
async fn create_topics(brokers: &str, topic: &str) {
    let dlq = format!("{topic}.dlq");
    ensure_topics(&kafka(brokers, topic), &[topic, &dlq], PARTITIONS)
        .await
        .unwrap_or_else(|e| panic!("creating {topic} and {dlq} on {brokers} failed: {e}"));
    let main = KafkaOrderSink::new(&kafka(brokers, topic)).unwrap();
    let dead = KafkaOrderSink::new(&kafka(brokers, &dlq)).unwrap();
    wait_until(
        "the new topics to appear",
        Duration::from_secs(30),
        || async { main.ping().await.is_ok() && dead.ping().await.is_ok() },
    )
    .await;
}

async fn wait_until<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --- order events and the table they must yield -----------------------

/// `n` orders of every kind: sold (placed), held then confirmed, held then
/// cancelled, placed then voided. Their events, in order, and per order
/// the final (status, seq).
fn orders(n: usize) -> (Vec<OrderEvent>, BTreeMap<OrderId, (EventType, u16)>) {
    let product = unique_product("worker");
    let later = at(Duration::from_secs(5));
    let mut events = Vec::new();
    let mut expected = BTreeMap::new();
    for i in 0..n {
        let kind = i % 4;
        let hold = (kind == 1 || kind == 2).then(|| Duration::from_secs(60));
        let r = request(&product, &user(i), 1, T0).to_reservation(hold);
        events.push(OrderEvent::placed(&r));
        let last = match kind {
            1 => Some(EventType::Confirmed),
            2 => Some(EventType::Cancelled),
            3 => Some(EventType::Voided),
            _ => None,
        };
        if let Some(t) = last {
            events.push(OrderEvent::closing(&r, t, later));
        }
        let end = last.unwrap_or(EventType::Placed);
        expected.insert(r.order_id, (end, end.seq()));
    }
    (events, expected)
}

/// Whether the table holds exactly `expected`.
async fn table_is(table: &MySqlOrderTable, expected: &BTreeMap<OrderId, (EventType, u16)>) -> bool {
    let ids = table.order_ids(None).await.expect("order ids");
    if ids.len() != expected.len() || !ids.iter().all(|id| expected.contains_key(id)) {
        return false;
    }
    for (id, (status, seq)) in expected {
        match table.get(id).await.expect("get") {
            Some(row) if row.status == *status && row.last_seq == *seq => {}
            _ => return false,
        }
    }
    true
}

async fn wait_for_table(table: &MySqlOrderTable, expected: &BTreeMap<OrderId, (EventType, u16)>) {
    let start = Instant::now();
    while !table_is(table, expected).await {
        if start.elapsed() > PATIENCE {
            let ids = table.order_ids(None).await.unwrap();
            panic!(
                "the table did not reach the expected {} orders within {PATIENCE:?} (has {})",
                expected.len(),
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// --- a test handler ------------------------------------------------------

/// Folds events into a table (or just records them), failing as told.
#[derive(Default)]
struct TestHandler {
    table: Option<MySqlOrderTable>,
    /// The next this many calls fail transiently.
    transient_calls: AtomicUsize,
    /// While set, every call fails transiently (the database is down).
    down: AtomicBool,
    /// Batches with an event of these orders fail permanently...
    reject: parking_lot::Mutex<HashSet<OrderId>>,
    /// ...or transiently, every time.
    always_transient: parking_lot::Mutex<HashSet<OrderId>>,
    /// Successful handlings per event id.
    handled: parking_lot::Mutex<HashMap<String, usize>>,
    /// Calls per order id (failed or not), of batches of one event.
    single_calls: parking_lot::Mutex<HashMap<OrderId, usize>>,
    calls: AtomicUsize,
    /// A pause per call (to keep work in flight).
    slow: parking_lot::Mutex<Duration>,
}

#[async_trait]
impl EventHandler for TestHandler {
    async fn handle(&self, events: &[OrderEvent]) -> flashsale::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let [one] = events {
            *self
                .single_calls
                .lock()
                .entry(one.order.order_id)
                .or_default() += 1;
        }
        let slow = *self.slow.lock();
        if !slow.is_zero() {
            tokio::time::sleep(slow).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::backend("test", "handle", "injected outage"));
        }
        let left = self.transient_calls.load(Ordering::SeqCst);
        if left > 0 {
            self.transient_calls.store(left - 1, Ordering::SeqCst);
            return Err(Error::backend(
                "test",
                "handle",
                "injected transient failure",
            ));
        }
        let ids: HashSet<OrderId> = events.iter().map(|e| e.order.order_id).collect();
        if self.reject.lock().iter().any(|o| ids.contains(o)) {
            return Err(InvalidInput::new("order", "injected permanent failure").into());
        }
        if self.always_transient.lock().iter().any(|o| ids.contains(o)) {
            return Err(Error::backend("test", "handle", "injected lasting failure"));
        }
        if let Some(t) = &self.table {
            t.apply(events).await?;
        }
        let mut handled = self.handled.lock();
        for e in events {
            *handled.entry(e.event_id.to_string()).or_default() += 1;
        }
        Ok(())
    }
}

impl TestHandler {
    fn on(table: MySqlOrderTable) -> Arc<Self> {
        Arc::new(Self {
            table: Some(table),
            ..Self::default()
        })
    }

    fn handled_events(&self) -> usize {
        self.handled.lock().len()
    }

    fn handlings(&self) -> usize {
        self.handled.lock().values().sum()
    }
}

// --- running a worker ------------------------------------------------------

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<flashsale::Result<WorkerStats>>,
    counters: Arc<WorkerCounters>,
}

impl Running {
    async fn stop(self) -> WorkerStats {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the worker stops within 60 s")
            .expect("the worker task does not panic")
            .expect("the worker ran")
    }
}

fn spawn_worker(opts: &KafkaOptions, w: WorkerOptions, handler: Arc<TestHandler>) -> Running {
    let worker = OrderWorker::new(opts, w, handler).expect("worker");
    let counters = worker.stats_handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    Running {
        stop,
        task,
        counters,
    }
}

async fn produce_raw(brokers: &str, topic: &str, key: &str, value: &[u8]) -> (i32, i64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let d = producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(10),
        )
        .await
        .expect("raw message delivered");
    (d.partition, d.offset)
}

/// Every message of `topic` from its start, read without a consumer
/// group, waiting until there are at least `n` (or `within` passed).
async fn read_topic(brokers: &str, topic: &str, n: usize, within: Duration) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.partition.eof", "false")
        // Assigned, not subscribed: the group is only a name, never joined.
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let start = Instant::now();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        while out.len() < n && start.elapsed() < within {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                out.push(m.detach());
            }
        }
        out
    })
    .await
    .unwrap()
}

fn header<'a>(m: &'a OwnedMessage, key: &str) -> Option<&'a str> {
    m.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| std::str::from_utf8(v).unwrap())
}

/// A broker-backed case: topic, group, options.
struct Case {
    brokers: String,
    topic: String,
    group: String,
    opts: KafkaOptions,
}

async fn case(name: &str) -> Option<Case> {
    let brokers = brokers(name)?;
    let topic = unique(name);
    create_topics(&brokers, &topic).await;
    Some(Case {
        opts: kafka(&brokers, &topic),
        group: unique(&format!("{name}-group")),
        brokers,
        topic,
    })
}

// --- against the real broker ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folds_events_into_the_table_exactly_with_duplicates() {
    let Some(c) = case("fold").await else { return };
    let table = table().await;
    let (events, expected) = orders(60);
    let sink = KafkaOrderSink::new(&c.opts).unwrap();
    sink.submit(&events).await.unwrap();
    // Re-sent: the relay's at-least-once, as consumers see it.
    sink.submit(&events[..40]).await.unwrap();
    sink.submit(&events[events.len() - 10..]).await.unwrap();

    let handler = TestHandler::on(table.clone());
    let w = spawn_worker(&c.opts, worker_options(&c.group), handler.clone());
    wait_for_table(&table, &expected).await;
    wait_until("every message handled", PATIENCE, || async {
        handler.handlings() == events.len() + 50
    })
    .await;
    let live = w.counters.snapshot();
    let stats = w.stop().await;
    assert_eq!(stats.handled, (events.len() + 50) as u64, "{stats:?}");
    assert!(live.handled <= stats.handled);
    assert_eq!(stats.dead_lettered, 0);
    assert!(stats.batches >= 1);
    assert_eq!(handler.handled_events(), events.len());
    assert!(table_is(&table, &expected).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_topic_and_the_worker_moves_on() {
    let Some(c) = case("poison").await else {
        return;
    };
    let table = table().await;
    let (events, expected) = orders(12);
    let (partition, offset) = produce_raw(&c.brokers, &c.topic, "poison-key", b"{not json").await;
    let mut v3 = serde_json::to_value(&events[0]).unwrap();
    v3["schema_version"] = 3.into();
    produce_raw(
        &c.brokers,
        &c.topic,
        "v3-key",
        &serde_json::to_vec(&v3).unwrap(),
    )
    .await;
    KafkaOrderSink::new(&c.opts)
        .unwrap()
        .submit(&events)
        .await
        .unwrap();

    let w = spawn_worker(
        &c.opts,
        worker_options(&c.group),
        TestHandler::on(table.clone()),
    );
    wait_for_table(&table, &expected).await;
    let dead = read_topic(&c.brokers, &format!("{}.dlq", c.topic), 2, PATIENCE).await;
    let stats = w.stop().await;
    assert_eq!(stats.dead_lettered, 2, "{stats:?}");
    assert_eq!(dead.len(), 2);

    let poison = dead
        .iter()
        .find(|m| m.key() == Some(b"poison-key"))
        .expect("the poison");
    assert_eq!(poison.payload(), Some(&b"{not json"[..]));
    assert_eq!(header(poison, dlq::ORIGINAL_TOPIC), Some(c.topic.as_str()));
    assert_eq!(
        header(poison, dlq::ORIGINAL_PARTITION),
        Some(partition.to_string().as_str())
    );
    assert_eq!(
        header(poison, dlq::ORIGINAL_OFFSET),
        Some(offset.to_string().as_str())
    );
    assert_eq!(header(poison, dlq::CONSUMER_GROUP), Some(c.group.as_str()));
    assert_eq!(header(poison, dlq::ATTEMPTS), Some("0"));
    assert_eq!(header(poison, dlq::REASON), Some("undecodable"));
    assert!(header(poison, dlq::ERROR).unwrap().starts_with("not JSON"));

    let v3 = dead
        .iter()
        .find(|m| m.key() == Some(b"v3-key"))
        .expect("the v3 event");
    assert!(
        header(v3, dlq::ERROR).unwrap().contains("schema version 3"),
        "{:?}",
        header(v3, dlq::ERROR)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_nothing_is_dead_lettered() {
    let Some(c) = case("transient").await else {
        return;
    };
    let table = table().await;
    let (events, expected) = orders(20);
    KafkaOrderSink::new(&c.opts)
        .unwrap()
        .submit(&events)
        .await
        .unwrap();
    let handler = TestHandler::on(table.clone());
    // Fewer than the batch's attempts (3) in a row: the batch gets
    // through on a later attempt.
    handler.transient_calls.store(2, Ordering::SeqCst);

    let w = spawn_worker(&c.opts, worker_options(&c.group), handler.clone());
    wait_for_table(&table, &expected).await;
    let stats = w.stop().await;
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    assert!(stats.retries >= 2, "{stats:?}");
    assert_eq!(handler.transient_calls.load(Ordering::SeqCst), 0);
    assert_eq!(handler.handled_events(), events.len());
    let dead = read_topic(
        &c.brokers,
        &format!("{}.dlq", c.topic),
        1,
        Duration::from_secs(2),
    )
    .await;
    assert!(dead.is_empty(), "nothing dead-lettered");
}

/// A rejected event is dead-lettered after one attempt; an event whose
/// handling fails transiently, however long, is not dead-lettered: the
/// worker stalls on it (reading nothing further) until it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_events_are_dead_lettered_at_once_and_lasting_transient_ones_stall() {
    let Some(c) = case("failing").await else {
        return;
    };
    let table = table().await;
    let (events, mut expected) = orders(16);
    let rejected = events[0].order.order_id; // a sold order: one event
    let lasting = events[events.len() - 1].order.order_id; // its voided event...
    let handler = TestHandler::on(table.clone());
    handler.reject.lock().insert(rejected);
    handler.always_transient.lock().insert(lasting);
    expected.remove(&rejected);
    KafkaOrderSink::new(&c.opts)
        .unwrap()
        .submit(&events)
        .await
        .unwrap();

    let w = spawn_worker(&c.opts, worker_options(&c.group), handler.clone());
    wait_until(
        "the worker to stall on the lasting order",
        PATIENCE,
        || async {
            handler
                .single_calls
                .lock()
                .get(&lasting)
                .copied()
                .unwrap_or(0)
                >= 10
        },
    )
    .await;
    assert!(w.counters.stalled_for().is_some(), "stalled, and says so");
    assert!(table.get(&lasting).await.unwrap().is_none());
    // The database is back for that order too.
    handler.always_transient.lock().clear();
    wait_for_table(&table, &expected).await;
    let dead = read_topic(
        &c.brokers,
        &format!("{}.dlq", c.topic),
        2,
        Duration::from_secs(3),
    )
    .await;
    assert!(w.counters.stalled_for().is_none(), "consuming again");
    let stats = w.stop().await;
    assert_eq!(dead.len(), 1, "only the rejected event");
    assert_eq!(stats.dead_lettered, 1, "{stats:?}");
    assert!(stats.stalls >= 1, "{stats:?}");
    let m = &dead[0];
    let event: OrderEvent = serde_json::from_slice(m.payload().unwrap()).unwrap();
    assert_eq!(event.order.order_id, rejected);
    assert_eq!(m.key(), Some(rejected.to_string().as_bytes()));
    assert_eq!(
        header(m, headers::EVENT_ID),
        Some(event.event_id.to_string().as_str())
    );
    assert_eq!(header(m, dlq::CONSUMER_GROUP), Some(c.group.as_str()));
    assert_eq!(header(m, dlq::REASON), Some("rejected"));
    assert_eq!(
        header(m, dlq::ATTEMPTS),
        Some("1"),
        "a permanent error is not retried"
    );
    assert!(
        header(m, dlq::ERROR)
            .unwrap()
            .contains("injected permanent failure")
    );
    assert_eq!(handler.single_calls.lock().get(&rejected), Some(&1));
    assert!(table.get(&rejected).await.unwrap().is_none());
    assert!(table.get(&lasting).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_mid_stream_hands_over_without_loss_or_reapplying() {
    let Some(c) = case("handover").await else {
        return;
    };
    let table = table().await;
    let (events, expected) = orders(400);
    KafkaOrderSink::new(&c.opts)
        .unwrap()
        .submit(&events)
        .await
        .unwrap();
    let handler = TestHandler::on(table.clone());
    *handler.slow.lock() = Duration::from_millis(30);
    let opts = worker_options(&c.group).max_batch(10);

    let first = spawn_worker(&c.opts, opts.clone(), handler.clone());
    wait_until("a part of the stream handled", PATIENCE, || async {
        handler.handled_events() >= 100
    })
    .await;
    let stats = first.stop().await;
    let after_first = handler.handlings();
    assert!(
        after_first < events.len(),
        "stopped mid-stream: {after_first}"
    );
    assert_eq!(stats.handled as usize, after_first, "{stats:?}");

    *handler.slow.lock() = Duration::ZERO;
    let second = spawn_worker(&c.opts, opts, handler.clone());
    wait_for_table(&table, &expected).await;
    wait_until("every event handled", PATIENCE, || async {
        handler.handled_events() == events.len()
    })
    .await;
    let stats2 = second.stop().await;
    // Committed at the stop: the second worker starts where the first
    // stopped, so no event is handled twice.
    let twice: Vec<_> = handler
        .handled
        .lock()
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(twice.is_empty(), "re-applied: {twice:?}");
    assert_eq!(stats2.handled as usize + after_first, events.len());
    assert!(table_is(&table, &expected).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_dead_letters_are_folded_by_the_worker() {
    let Some(c) = case("replay").await else {
        return;
    };
    let table = table().await;
    let (events, expected) = orders(8);
    let broken: Vec<OrderId> = vec![events[0].order.order_id, events[2].order.order_id];
    let handler = TestHandler::on(table.clone());
    handler.reject.lock().extend(broken.iter().copied());
    KafkaOrderSink::new(&c.opts)
        .unwrap()
        .submit(&events)
        .await
        .unwrap();

    let w = spawn_worker(&c.opts, worker_options(&c.group), handler.clone());
    // Order 0 is sold (one event), order 2 held then confirmed (two).
    let dlq_topic = format!("{}.dlq", c.topic);
    let dead = read_topic(&c.brokers, &dlq_topic, 3, PATIENCE).await;
    assert_eq!(dead.len(), 3);
    // A letter of another group's is not this group's to replay.
    let foreign = serde_json::to_vec(&orders(1).0[0]).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &c.brokers)
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(&dlq_topic)
                .key("foreign")
                .payload(&foreign)
                .headers(
                    rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                        key: dlq::CONSUMER_GROUP,
                        value: Some("some-other-group"),
                    }),
                ),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    // The handler is fixed; the letters come back.
    handler.reject.lock().clear();
    let replayed = replay_dead_letters(&c.opts, &c.group, PATIENCE)
        .await
        .unwrap();
    assert_eq!(replayed, 3);
    wait_for_table(&table, &expected).await;
    // Caught up: a second replay finds nothing.
    assert_eq!(
        replay_dead_letters(&c.opts, &c.group, PATIENCE)
            .await
            .unwrap(),
        0
    );
    let stats = w.stop().await;
    assert_eq!(stats.dead_lettered, 3, "{stats:?}");

    // The replayed messages keep the order headers and say where from.
    let all = read_topic(&c.brokers, &c.topic, events.len() + 3, PATIENCE).await;
    let again: Vec<_> = all
        .iter()
        .filter(|m| header(m, dlq::REPLAYED_FROM).is_some())
        .collect();
    assert_eq!(again.len(), 3);
    for m in again {
        assert!(
            header(m, dlq::REPLAYED_FROM)
                .unwrap()
                .starts_with(&format!("{dlq_topic}/"))
        );
        assert!(header(m, headers::EVENT_ID).is_some());
        assert!(
            header(m, dlq::ERROR).is_none(),
            "failure headers are dropped"
        );
        assert!(
            broken
                .iter()
                .any(|o| m.key() == Some(o.to_string().as_bytes()))
        );
    }
}

// --- against librdkafka's mock cluster (no broker needed) ---------------------

/// A mock cluster with `topic` and its `.dlq`.
fn mock_cluster(topic: &str) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(topic, PARTITIONS, 1).unwrap();
    cluster
        .create_topic(&format!("{topic}.dlq"), PARTITIONS, 1)
        .unwrap();
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_poison_and_failures_are_dead_lettered_and_the_rest_handled() {
    let topic = unique("mock");
    let cluster = mock_cluster(&topic);
    let brokers = cluster.bootstrap_servers();
    let opts = kafka(&brokers, &topic);
    let (events, _) = orders(10);
    let rejected = events[0].order.order_id;
    let handler = Arc::new(TestHandler::default());
    handler.reject.lock().insert(rejected);
    handler.transient_calls.store(1, Ordering::SeqCst);
    KafkaOrderSink::new(&opts)
        .unwrap()
        .submit(&events)
        .await
        .unwrap();
    produce_raw(&brokers, &topic, "poison", b"\x00\x01").await;

    let w = spawn_worker(
        &opts,
        worker_options(&unique("mock-group")),
        handler.clone(),
    );
    wait_until("the good events handled", PATIENCE, || async {
        handler.handled_events() == events.len() - 1
    })
    .await;
    let dead = read_topic(&brokers, &format!("{topic}.dlq"), 2, PATIENCE).await;
    let stats = w.stop().await;
    assert_eq!(dead.len(), 2);
    assert_eq!(stats.dead_lettered, 2, "{stats:?}");
    assert!(stats.retries >= 1);
    let reasons: HashSet<_> = dead.iter().filter_map(|m| header(m, dlq::REASON)).collect();
    assert_eq!(reasons, HashSet::from(["undecodable", "rejected"]));
}

/// A database outage longer than the worker's retries: every call fails
/// transiently for a while (many more calls than `max_attempts`), then
/// the database is back. Healthy events must wait, not be dead-lettered;
/// the poison message and the permanently rejected event still are, at
/// once; and the offsets end committed past everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_a_database_outage_pauses_the_worker_instead_of_dead_lettering() {
    let topic = unique("mock-outage");
    let cluster = mock_cluster(&topic);
    let brokers = cluster.bootstrap_servers();
    let opts = kafka(&brokers, &topic);
    let (events, _) = orders(10);
    let rejected = events[0].order.order_id; // sold: one event
    let handler = Arc::new(TestHandler::default());
    handler.reject.lock().insert(rejected);
    // 40 failing calls, 10 to 100 ms apart: an outage of a few seconds,
    // far more calls than the 3 attempts a batch gets before it is split.
    handler.transient_calls.store(40, Ordering::SeqCst);
    produce_raw(&brokers, &topic, "poison", b"\x00\x01").await;
    KafkaOrderSink::new(&opts)
        .unwrap()
        .submit(&events)
        .await
        .unwrap();

    let group = unique("mock-outage-group");
    let w = spawn_worker(&opts, worker_options(&group), handler.clone());
    wait_until("the worker to report a stall", PATIENCE, || async {
        w.counters.stalled_for().is_some()
    })
    .await;
    wait_until("the outage to end", PATIENCE, || async {
        handler.transient_calls.load(Ordering::SeqCst) == 0
    })
    .await;
    // Every message processed, one way or the other: the healthy events
    // handled and the two bad ones dead-lettered, or (the fault) healthy
    // ones dead-lettered instead.
    let messages = events.len() + 1; // the poison too
    wait_until("every message processed", PATIENCE, || async {
        let dead = w.counters.snapshot().dead_lettered as usize;
        handler.handled_events() + dead >= messages
    })
    .await;
    let dead = read_topic(
        &brokers,
        &format!("{topic}.dlq"),
        messages,
        Duration::from_secs(3),
    )
    .await;
    assert!(w.counters.stalled_for().is_none(), "consuming again");
    let stats = w.stop().await;
    let reasons: Vec<_> = dead.iter().filter_map(|m| header(m, dlq::REASON)).collect();
    assert_eq!(
        dead.len(),
        2,
        "only the poison and the rejected event: {reasons:?}"
    );
    assert_eq!(stats.dead_lettered, 2, "{stats:?}");
    // Each failed call retried, but for the one the batch split replaced.
    assert!(stats.retries >= 39, "{stats:?}");
    let rejected_letter = dead
        .iter()
        .find(|m| header(m, dlq::REASON) == Some("rejected"))
        .expect("the rejected event is dead-lettered");
    assert_eq!(rejected_letter.key(), Some(rejected.to_string().as_bytes()));
    // Tried on its own until the database answered, then rejected at once:
    // the letter counts every call, and none came after the rejection.
    let calls = handler.single_calls.lock().get(&rejected).copied();
    assert_eq!(
        header(rejected_letter, dlq::ATTEMPTS).map(str::to_owned),
        calls.map(|n| n.to_string())
    );
    assert!(
        dead.iter()
            .any(|m| header(m, dlq::REASON) == Some("undecodable"))
    );
    // Every healthy event exactly once: the outage re-delivered nothing.
    assert_eq!(handler.handlings(), events.len() - 1);
    assert!(stats.stalls >= 1, "{stats:?}");

    // Committed past everything: the group's next worker reads only what
    // comes after.
    let again = Arc::new(TestHandler::default());
    let w = spawn_worker(&opts, worker_options(&group), again.clone());
    KafkaOrderSink::new(&opts)
        .unwrap()
        .submit(&events[1..2])
        .await
        .unwrap();
    wait_until("the new event handled", PATIENCE, || async {
        again.handlings() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = w.stop().await;
    assert_eq!(again.handlings(), 1, "only what came after the commit");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    drop(cluster);
}

/// An outage longer than `max.poll.interval.ms`: the paused worker keeps
/// polling, so it stays in the group; once the database is back, every
/// event is handled exactly once (a worker that had dropped out would have
/// its batch re-delivered: handled twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_an_outage_longer_than_the_poll_interval_keeps_the_worker_in_its_group() {
    let topic = unique("mock-long-outage");
    let cluster = mock_cluster(&topic);
    let brokers = cluster.bootstrap_servers();
    let opts = kafka(&brokers, &topic);
    let (events, _) = orders(12);
    let handler = Arc::new(TestHandler::default());
    handler.down.store(true, Ordering::SeqCst);
    KafkaOrderSink::new(&opts)
        .unwrap()
        .submit(&events)
        .await
        .unwrap();
    // librdkafka's floor for max.poll.interval.ms is session.timeout.ms.
    const POLL_INTERVAL: Duration = Duration::from_secs(6);
    let w_opts = worker_options(&unique("mock-long-outage-group")).set(
        "max.poll.interval.ms",
        POLL_INTERVAL.as_millis().to_string(),
    );
    let w = spawn_worker(&opts, w_opts, handler.clone());
    wait_until("a stall of twice the poll interval", PATIENCE, || async {
        w.counters
            .stalled_for()
            .is_some_and(|d| d > 2 * POLL_INTERVAL)
    })
    .await;
    assert_eq!(handler.handlings(), 0);
    handler.down.store(false, Ordering::SeqCst);
    wait_until("every event handled", PATIENCE, || async {
        handler.handled_events() == events.len()
    })
    .await;
    // Time for a re-delivery to show, had the worker left the group.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = w.stop().await;
    assert_eq!(
        handler.handlings(),
        events.len(),
        "each event handled once: {stats:?}"
    );
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    assert_eq!(stats.stalls, 1, "{stats:?}");
    drop(cluster);
}

/// Stopped while the database is down: the worker returns promptly, and
/// since it committed nothing past the failing batch (and dead-lettered
/// none of it), the group's next worker handles every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_a_worker_stopped_while_stalled_leaves_its_batch_to_the_group() {
    let topic = unique("mock-stalled-stop");
    let cluster = mock_cluster(&topic);
    let brokers = cluster.bootstrap_servers();
    let opts = kafka(&brokers, &topic);
    let (events, _) = orders(8);
    KafkaOrderSink::new(&opts)
        .unwrap()
        .submit(&events)
        .await
        .unwrap();
    let group = unique("mock-stalled-stop-group");
    let down = Arc::new(TestHandler::default());
    down.down.store(true, Ordering::SeqCst);
    let w = spawn_worker(&opts, worker_options(&group), down.clone());
    // Many failed calls, over several commit intervals (200 ms).
    wait_until("a long run of failed calls", PATIENCE, || async {
        down.calls.load(Ordering::SeqCst) >= 25
    })
    .await;
    let stats = w.stop().await;
    assert_eq!((stats.handled, stats.dead_lettered), (0, 0), "{stats:?}");

    let up = Arc::new(TestHandler::default());
    let w = spawn_worker(&opts, worker_options(&group), up.clone());
    wait_until(
        "every event handled by the next worker",
        PATIENCE,
        || async { up.handled_events() == events.len() },
    )
    .await;
    let stats = w.stop().await;
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    let dead = read_topic(&brokers, &format!("{topic}.dlq"), 1, Duration::from_secs(2)).await;
    assert!(dead.is_empty(), "nothing dead-lettered");
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_shutdown_commits_what_was_processed() {
    let topic = unique("mock-commit");
    let cluster = mock_cluster(&topic);
    let brokers = cluster.bootstrap_servers();
    let opts = kafka(&brokers, &topic);
    let (events, _) = orders(30);
    KafkaOrderSink::new(&opts)
        .unwrap()
        .submit(&events)
        .await
        .unwrap();
    let group = unique("mock-commit-group");
    // A long auto-commit interval: only the commit at shutdown counts.
    let w_opts = worker_options(&group).commit_interval(Duration::from_secs(3600));

    let handler = Arc::new(TestHandler::default());
    let w = spawn_worker(&opts, w_opts.clone(), handler.clone());
    wait_until("every event handled", PATIENCE, || async {
        handler.handled_events() == events.len()
    })
    .await;
    w.stop().await;

    let again = Arc::new(TestHandler::default());
    let w = spawn_worker(&opts, w_opts, again.clone());
    KafkaOrderSink::new(&opts)
        .unwrap()
        .submit(&events[..1])
        .await
        .unwrap();
    wait_until("the new event handled", PATIENCE, || async {
        again.handlings() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.stop().await;
    assert_eq!(again.handlings(), 1, "only what came after the commit");
    drop(cluster);
}

#[test]
fn worker_options_reject_nonsense() {
    let opts = KafkaOptions::new("127.0.0.1:1");
    #[allow(deprecated)] // still validated while it exists
    let no_attempts = WorkerOptions::new().max_attempts(0);
    for bad in [
        no_attempts,
        WorkerOptions::new().group(""),
        WorkerOptions::new().max_batch(0),
    ] {
        let e = OrderWorker::new(&opts, bad, TestHandler::default()).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
    }
}
