//! A relay resends a batch it kept (after a failed submit) only while the
//! lease left covers the whole resend; otherwise it drops the batch, and
//! whichever relay claims it after the lease lapsed delivers it. Two
//! engines share one in-memory store and one `ManualClock`; the first
//! engine's sink fails once, then blocks until the test releases it, so a
//! resend that outlives its lease is caught in the act: without the rule,
//! the second engine delivers the order's `placed` and `cancelled` while
//! the first one's `placed` is still in flight, and the sink ends up with
//! `placed` after `cancelled` (contrary to docs/orders.md). The same rule
//! at build time: a lease too short for a whole pass, the sink's late
//! deliveries included, is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use flashsale::RelayConfig;
use flashsale::memory::{MemoryRateLimiter, MemoryStockStore, StaticAuthenticator};
use flashsale::{
    Credentials, Engine, Error, ManualClock, OrderId, OrderSink, Outcome, ProductId,
    PurchaseRequest, Quantity, Sale, Timestamp,
};
use flashsale::{EventType, OrderEvent, Principal, UserId};
use tokio::sync::{Notify, Semaphore};

const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);
const PORT_TIMEOUT: Duration = Duration::from_secs(1);

/// Every delivery either engine's sink stored, in the order they were
/// stored, with the name of the engine whose sink stored it.
type Log = Arc<parking_lot::Mutex<Vec<(&'static str, OrderEvent)>>>;

/// Engine B's sink: stores every batch at once.
struct Recording {
    name: &'static str,
    log: Log,
}

#[async_trait]
impl OrderSink for Recording {
    async fn submit(&self, events: &[OrderEvent]) -> flashsale::Result<()> {
        let mut log = self.log.lock();
        log.extend(events.iter().map(|e| (self.name, e.clone())));
        Ok(())
    }
}

/// Engine A's sink: refuses its first submit, then blocks each later one
/// until the test releases it, and stores the batch after that.
struct FailsThenBlocks {
    log: Log,
    /// What it reports as [`OrderSink::delivery_timeout`].
    delivery_timeout: Option<Duration>,
    calls: AtomicUsize,
    /// Notified when a submit starts blocking.
    entered: Notify,
    /// One permit per blocked submit the test lets through.
    release: Semaphore,
}

impl FailsThenBlocks {
    fn new(log: Log, delivery_timeout: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            log,
            delivery_timeout,
            calls: AtomicUsize::new(0),
            entered: Notify::new(),
            release: Semaphore::new(0),
        })
    }
}

#[async_trait]
impl OrderSink for FailsThenBlocks {
    async fn submit(&self, events: &[OrderEvent]) -> flashsale::Result<()> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(Error::backend("test", "submit", "refused once"));
        }
        self.entered.notify_one();
        self.release
            .acquire()
            .await
            .expect("the semaphore is never closed")
            .forget();
        let mut log = self.log.lock();
        log.extend(events.iter().map(|e| ("a", e.clone())));
        Ok(())
    }

    fn delivery_timeout(&self) -> Option<Duration> {
        self.delivery_timeout
    }
}

fn product() -> ProductId {
    ProductId::new("seat").unwrap()
}

fn alice() -> Credentials {
    Credentials::bearer("alice")
}

fn engine(
    store: &Arc<MemoryStockStore>,
    clock: &ManualClock,
    sink: Arc<dyn OrderSink>,
    relay: RelayConfig,
) -> Engine {
    Engine::builder()
        .stock_store(store.clone())
        .rate_limiter(Arc::new(MemoryRateLimiter::per_second(1_000).unwrap()))
        .order_sink(sink)
        .authenticator(Arc::new(
            StaticAuthenticator::new()
                .with_token("alice", Principal::user(UserId::new("alice").unwrap())),
        ))
        .clock(Arc::new(clock.clone()))
        .port_timeout(PORT_TIMEOUT)
        .relay(relay)
        .build()
        .unwrap()
}

/// Where an order's `placed` was stored after its `cancelled`, if it was.
fn placed_after_cancelled(log: &[(&'static str, OrderEvent)], order: OrderId) -> Option<usize> {
    let of = |t: EventType| {
        log.iter()
            .enumerate()
            .filter(move |(_, (_, e))| e.order.order_id == order && e.event_type == t)
            .map(|(i, _)| i)
    };
    let cancelled = of(EventType::Cancelled).min()?;
    of(EventType::Placed).find(|&i| i > cancelled)
}

/// What the race left behind.
struct Race {
    log: Vec<(&'static str, OrderEvent)>,
    order: OrderId,
    /// Engine A's second pass (the one that may resend its kept batch).
    second_pass: flashsale::Result<usize>,
    /// How many times A's sink was called.
    a_calls: usize,
}

/// A buys a held seat; A's relay fails to deliver it (the batch is kept);
/// `meanwhile` moves the clock, and A's relay passes again (a resend, if
/// it dares, blocks in the sink); the lease lapses, the buyer cancels, B
/// relays; then A's sink is released. A's sink reports
/// `delivery_timeout`.
async fn race(
    relay: RelayConfig,
    delivery_timeout: Option<Duration>,
    meanwhile: impl FnOnce(&ManualClock),
) -> Race {
    let clock = ManualClock::new(T0);
    let store = Arc::new(MemoryStockStore::new());
    let log: Log = Arc::default();
    let a_sink = FailsThenBlocks::new(log.clone(), delivery_timeout);
    let a = engine(&store, &clock, a_sink.clone(), relay);
    let b_sink = Arc::new(Recording {
        name: "b",
        log: log.clone(),
    });
    let b = engine(&store, &clock, b_sink, relay);
    a.create_sale(
        &Sale::builder(product(), 5)
            .hold(Duration::from_secs(3_600))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let order = match a
        .purchase(&alice(), PurchaseRequest::new(product(), Quantity::ONE))
        .await
    {
        Outcome::Purchased(s) => s.order.order_id,
        other => panic!("not bought: {other:?}"),
    };

    assert!(a.relay_once().await.is_err(), "A's sink refuses the batch");
    meanwhile(&clock);
    // A's next pass either resends (and blocks in the sink) or is done.
    let mut second = tokio::spawn({
        let a = a.clone();
        async move { a.relay_once().await }
    });
    let mut second_pass = tokio::select! {
        _ = a_sink.entered.notified() => None,
        done = &mut second => Some(done.unwrap()),
    };

    // The lease lapses; the buyer cancels; B claims and delivers the
    // order's events, `placed` then `cancelled`.
    clock.advance(relay.lease);
    assert!(matches!(
        b.cancel(&alice(), &order).await,
        Outcome::OrderUpdated(_)
    ));
    assert_eq!(b.drain_outbox().await.unwrap(), 2, "B relays both events");

    // Whatever A still had in flight reaches the sink now.
    a_sink.release.add_permits(1);
    if second_pass.is_none() {
        second_pass = Some(second.await.unwrap());
    }
    let log = log.lock().clone();
    Race {
        log,
        order,
        second_pass: second_pass.unwrap(),
        a_calls: a_sink.calls.load(Ordering::SeqCst),
    }
}

/// Lease 120 s, submit timeout 60 s (with the 1 s port timeout, a resend
/// needs more than 61 s of lease left).
fn relay() -> RelayConfig {
    RelayConfig {
        batch: 16,
        lease: Duration::from_secs(120),
        submit_timeout: Duration::from_secs(60),
    }
}

fn describe(log: &[(&'static str, OrderEvent)]) -> Vec<String> {
    log.iter()
        .map(|(who, e)| format!("{who}:{}", e.event_type.as_str()))
        .collect()
}

/// Lease 120 s, submit timeout 60 s, port timeout 1 s: a resend needs
/// more than 61 s of lease left. 70 s after the claim only 50 s are left,
/// so A drops its kept batch instead of resending it; the order's events
/// reach the sink once each, in order, from B.
#[tokio::test]
async fn a_kept_batch_is_not_resent_when_the_lease_left_cannot_cover_the_resend() {
    let r = race(relay(), None, |clock| {
        clock.advance(Duration::from_secs(70))
    })
    .await;
    assert_no_resend(&r);
}

/// A sink whose deliveries may land up to 40 s after a submit gave up
/// (as librdkafka's do, up to `delivery.timeout.ms`): a resend then needs
/// more than 60 + 40 s of lease left. 30 s after the claim 90 s are left,
/// enough for the submit and the ack alone, but not for a late delivery.
#[tokio::test]
async fn a_kept_batch_is_not_resent_when_a_late_delivery_could_outlive_the_lease() {
    let r = race(relay(), Some(Duration::from_secs(40)), |clock| {
        clock.advance(Duration::from_secs(30))
    })
    .await;
    assert_no_resend(&r);
}

/// The same, with the wall clock stepped back to the claim's time after
/// those 70 s: by the wall clock the whole lease seems left, but the
/// monotonic clock knows better (and other relays' clocks did not step).
#[tokio::test]
async fn a_wall_clock_stepped_back_does_not_stretch_the_lease_of_a_kept_batch() {
    let r = race(relay(), None, |clock| {
        clock.advance(Duration::from_secs(70));
        clock.set(T0);
    })
    .await;
    assert_no_resend(&r);
}

fn assert_no_resend(r: &Race) {
    assert_eq!(
        placed_after_cancelled(&r.log, r.order),
        None,
        "the order's placed reached the sink after its cancelled: {:?}",
        describe(&r.log)
    );
    assert_eq!(
        describe(&r.log),
        ["b:placed", "b:cancelled"],
        "only B delivers"
    );
    assert_eq!(r.a_calls, 1, "A did not resend");
    assert_eq!(
        r.second_pass.as_ref().ok(),
        Some(&0),
        "nothing else was claimable"
    );
}

/// With enough lease left the kept batch is still resent at once, without
/// waiting for the lease to lapse.
#[tokio::test]
async fn a_kept_batch_is_resent_while_the_lease_left_covers_the_resend() {
    let clock = ManualClock::new(T0);
    let store = Arc::new(MemoryStockStore::new());
    let log: Log = Arc::default();
    let a_sink = FailsThenBlocks::new(log.clone(), None);
    let a = engine(&store, &clock, a_sink.clone(), relay());
    a.create_sale(&Sale::builder(product(), 5).build().unwrap())
        .await
        .unwrap();
    assert!(matches!(
        a.purchase(&alice(), PurchaseRequest::new(product(), Quantity::ONE))
            .await,
        Outcome::Purchased(_)
    ));
    assert!(a.relay_once().await.is_err());
    // 120 - 58 = 62 s left: just more than the 61 s a resend may take.
    clock.advance(Duration::from_secs(58));
    a_sink.release.add_permits(1);
    assert_eq!(a.relay_once().await.unwrap(), 1, "resent");
    assert_eq!(describe(&log.lock()), ["a:placed"]);
}

/// A sink that only reports a delivery timeout.
struct Reports(Option<Duration>);

#[async_trait]
impl OrderSink for Reports {
    async fn submit(&self, _: &[OrderEvent]) -> flashsale::Result<()> {
        Ok(())
    }

    fn delivery_timeout(&self) -> Option<Duration> {
        self.0
    }
}

fn build_with(delivery_timeout: Option<Duration>) -> flashsale::Result<Engine> {
    Engine::builder()
        .stock_store(Arc::new(MemoryStockStore::new()))
        .rate_limiter(Arc::new(MemoryRateLimiter::per_second(1).unwrap()))
        .order_sink(Arc::new(Reports(delivery_timeout)))
        .authenticator(Arc::new(StaticAuthenticator::new()))
        .port_timeout(PORT_TIMEOUT)
        .relay(relay())
        .build()
}

/// The lease must outlast a whole pass: the claim (a port timeout), the
/// submit, then the ack or the sink's late deliveries, whichever is
/// longer. A sink whose deliveries may land after that is refused, with
/// what to change.
#[test]
fn the_builder_refuses_a_sink_whose_late_deliveries_could_outlive_the_lease() {
    // 1 s claim + 60 s submit + 58 s late deliveries = 119 s < 120 s.
    assert!(build_with(Some(Duration::from_secs(58))).is_ok());
    for late in [
        Duration::from_secs(59),
        relay().lease,
        Duration::from_secs(600),
        Duration::MAX,
    ] {
        let err = build_with(Some(late)).unwrap_err();
        let Error::Config(message) = &err else {
            panic!("not a configuration error: {err}");
        };
        for what in ["delivery timeout", "RelayConfig::lease"] {
            assert!(message.contains(what), "{what:?} not in {message:?}");
        }
    }
    // The default Kafka delivery timeout (60 s) fits the default lease.
    let defaults = Engine::builder()
        .stock_store(Arc::new(MemoryStockStore::new()))
        .rate_limiter(Arc::new(MemoryRateLimiter::per_second(1).unwrap()))
        .order_sink(Arc::new(Reports(Some(Duration::from_secs(60)))))
        .authenticator(Arc::new(StaticAuthenticator::new()))
        .build();
    assert!(defaults.is_ok(), "{:?}", defaults.err());
}
