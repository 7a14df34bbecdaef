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

/// Sends `events` through the order sink, as the relay does.
async fn submit(opts: &KafkaOptions, events: &[OrderEvent]) {
    KafkaOrderSink::new(opts)
        .unwrap()
        .submit(events)
        .await
        .unwrap();
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

mod broker;
mod mock_cluster;
mod options;
