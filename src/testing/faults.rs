//! Fault scenarios every networked stock store must survive: two engines
//! (two app servers, each with its own client) sell through a
//! [`FaultProxy`] while it slows, cuts, stalls or takes down the store's
//! connections, then the invariants are checked on the store's levels and
//! on its outbox.
//!
//! A backend's test file implements [`FaultTarget`] (where its server is,
//! and how to connect a client of one isolated namespace to an address)
//! and calls [`fault_scenarios!`](crate::fault_scenarios), which makes one
//! test per [`Scenario`]. A run is driven by a seed: [`fault_seed`] reads
//! `FAULT_SEED` (default [`DEFAULT_SEED`]) and every test prints it. The
//! seed fixes each fault's parameters (when, how long, how many bytes in)
//! and every buyer's choices; the interleaving of tasks and packets is the
//! machine's.
//!
//! While the fault is on, buyers buy from a sale without holds and from a
//! sale with 1-second holds, retry a 503 with the same idempotency key,
//! replay some purchases, and confirm or cancel some held orders; both engines run their outbox
//! relay and hold sweeper through the proxy too. After the proxy heals,
//! each engine must sell again without being rebuilt, and then:
//!
//! * no oversell, and `total == available + held + sold` on every product;
//! * once every hold has been expired, nothing is held, and what the
//!   outbox says is sold is exactly what the store says is sold;
//! * every order a buyer was told it got (200) was placed and never
//!   voided, and a buyer told "confirmed" or "cancelled" finds it so;
//! * no order owns units that no buyer was told about (a 503 left the
//!   buyer owning nothing), and one idempotency key never got two orders;
//! * no buyer owns more than the per-user cap;
//! * the fault did bite: some call answered 503 or the proxy cut a
//!   connection (a scenario that never touches the store proves nothing).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::StockStore;
use crate::clock::{Clock, SystemClock};
use crate::engine::{Engine, RelayConfig};
use crate::memory::{MemoryOrderSink, MemoryRateLimiter, StaticAuthenticator};
use crate::model::{
    Credentials, EventType, IdempotencyKey, OrderId, OrderStatus, Outcome, Principal, ProductId,
    PurchaseRequest, Quantity, RateQuota, Sale, UserId,
};

use super::ledger::{EventLedger, drain_outbox};
use super::proxy::{Direction, Fault, FaultProxy};
use super::{unique_product, user};

/// The seed used when `FAULT_SEED` is not set.
pub const DEFAULT_SEED: u64 = 20_261_125;

/// The seed of this run: `FAULT_SEED` if set (decimal), else
/// [`DEFAULT_SEED`]. Panics on a value that is not a number.
pub fn fault_seed() -> u64 {
    match std::env::var("FAULT_SEED") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("FAULT_SEED={v:?} is not a decimal u64")),
        Err(_) => DEFAULT_SEED,
    }
}

/// A backend under fault: where its server listens and how to reach one
/// isolated namespace of it (a key prefix, a table prefix) through another
/// address.
#[async_trait]
pub trait FaultTarget: Send + Sync {
    /// The real server, `host:port`; the proxy forwards there.
    fn upstream(&self) -> String;

    /// A new client (its own connections) of this target's namespace,
    /// connecting to `addr` (`host:port`: the proxy, or the server itself).
    /// Must not fail on a server that is slow to answer: connect lazily, or
    /// before the fault starts (the scenarios connect before it does).
    async fn connect(&self, addr: &str) -> Arc<dyn StockStore>;
}

/// One fault, applied for a seeded while in the middle of the rush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Every reply arrives after the port timeout: the store is alive and
    /// does the work (reserves run), but the engines hear back too late.
    SlowStore,
    /// Connections are cut (FIN or RST) at seeded byte offsets, in the
    /// middle of requests, replies, scripts and transactions.
    ResetMidCall,
    /// Both directions stall (nothing moves, connections stay open), then
    /// everything held back is delivered at once.
    StallThenRecover,
    /// The server goes away (open connections reset, new ones refused)
    /// and comes back.
    ServerRestart,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 4] = [
        Scenario::SlowStore,
        Scenario::ResetMidCall,
        Scenario::StallThenRecover,
        Scenario::ServerRestart,
    ];
}

/// The engines' port timeout in the scenarios.
pub const PORT_TIMEOUT: Duration = Duration::from_millis(250);

const ENGINES: usize = 2;
const BUYERS: usize = 12;
/// Each buyer task acts for users `b, b + BUYERS, ...`: USERS in all.
const USERS: usize = BUYERS * 8;
const PLAIN_STOCK: u32 = 400;
const PLAIN_CAP: u32 = 4;
const HELD_STOCK: u32 = 200;
const HELD_CAP: u32 = 2;
const HOLD: Duration = Duration::from_secs(1);
const WARM_UP: Duration = Duration::from_millis(300);
const AFTERMATH: Duration = Duration::from_millis(400);
/// How long the store must take to settle once the fault is gone
/// (background voids back off up to 5 s between tries).
const SETTLE: Duration = Duration::from_secs(30);

/// What a run saw; returned for the caller to print or assert more on.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Purchase attempts (retries included).
    pub attempts: u64,
    /// Attempts answered 200 (`Purchased` or `Replayed`).
    pub bought: u64,
    /// Attempts answered 503.
    pub unavailable: u64,
    /// Confirm or cancel calls answered 503.
    pub closing_unavailable: u64,
    /// Connections the proxy cut.
    pub cuts: u64,
    /// Orders placed, per the outbox (voided ones included).
    pub placed: usize,
    /// Orders voided, per the outbox.
    pub voided: usize,
    /// How long the fault was on.
    pub fault_for: Duration,
}

/// What buyers were told.
#[derive(Debug, Default)]
struct Told {
    /// (user, idempotency key) -> every order id answered 200 for it.
    by_key: HashMap<(UserId, String), HashSet<OrderId>>,
    /// Order -> the closing state its buyer was told (confirmed, cancelled
    /// or, from a 409, whatever the store said).
    closings: HashMap<OrderId, OrderStatus>,
    /// Order -> (product, user).
    orders: HashMap<OrderId, (ProductId, UserId)>,
}

struct World {
    engines: Vec<Engine>,
    direct: Arc<dyn StockStore>,
    sink: Arc<MemoryOrderSink>,
    plain: ProductId,
    held: ProductId,
    stop_background: tokio::sync::watch::Sender<bool>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

fn token(u: usize) -> String {
    format!("fault-token-{u}")
}

async fn build_world(target: &dyn FaultTarget, proxy: &FaultProxy) -> World {
    let mut auth = StaticAuthenticator::new();
    for u in 0..USERS + ENGINES {
        auth.insert(token(u), Principal::user(user(u)));
    }
    let auth = Arc::new(auth);
    let limiter = Arc::new(MemoryRateLimiter::new(
        RateQuota::per_second(100_000).expect("valid quota"),
    ));
    let sink = Arc::new(MemoryOrderSink::new());
    let (stop_background, stopped) = tokio::sync::watch::channel(false);
    let mut engines = Vec::new();
    let mut background = Vec::new();
    let via = proxy.local_addr().to_string();
    for _ in 0..ENGINES {
        let engine = Engine::builder()
            .stock_store(target.connect(&via).await)
            .rate_limiter(limiter.clone())
            .order_sink(sink.clone())
            .authenticator(auth.clone())
            .port_timeout(PORT_TIMEOUT)
            .relay(RelayConfig {
                batch: 64,
                lease: Duration::from_secs(1),
                submit_timeout: PORT_TIMEOUT,
            })
            .build()
            .expect("valid engine");
        for relay in [true, false] {
            let mut stop = stopped.clone();
            let until = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            background.push(if relay {
                engine.spawn_relay(Duration::from_millis(50), until)
            } else {
                engine.spawn_sweeper(Duration::from_millis(100), until)
            });
        }
        engines.push(engine);
    }
    let direct = target.connect(&target.upstream()).await;
    let plain = unique_product("fault-plain");
    let held = unique_product("fault-held");
    let sales = [
        Sale::builder(plain.clone(), PLAIN_STOCK).per_user_limit(PLAIN_CAP),
        Sale::builder(held.clone(), HELD_STOCK)
            .per_user_limit(HELD_CAP)
            .hold(HOLD),
    ];
    for sale in sales {
        let sale = sale.build().expect("valid sale");
        // Through every engine, so each has the terms cached.
        for e in &engines {
            e.create_sale(&sale).await.expect("sale created");
        }
    }
    World {
        engines,
        direct,
        sink,
        plain,
        held,
        stop_background,
        background,
    }
}

/// Counters the buyers share.
#[derive(Default)]
struct Tally {
    attempts: AtomicU64,
    bought: AtomicU64,
    unavailable: AtomicU64,
    closing_unavailable: AtomicU64,
}

/// One buyer task: acts for its users until `stop`.
async fn buyer(
    b: usize,
    seed: u64,
    engine: Engine,
    plain: ProductId,
    held: ProductId,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Told {
    let mut rng = fastrand::Rng::with_seed(seed ^ (b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut told = Told::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let u = b + BUYERS * rng.usize(0..USERS / BUYERS);
        let creds = Credentials::bearer(token(u));
        let product = if rng.bool() { &plain } else { &held };
        let key = format!("k{b}-{n}");
        let request = PurchaseRequest::new(product.clone(), Quantity::ONE)
            .with_idempotency_key(IdempotencyKey::new(key.clone()).expect("valid key"));
        // A 503 is retried with the same key, as a client should.
        for _ in 0..3 {
            tally.attempts.fetch_add(1, Ordering::Relaxed);
            match engine.purchase(&creds, request.clone()).await {
                Outcome::Purchased(s) | Outcome::Replayed(s) => {
                    tally.bought.fetch_add(1, Ordering::Relaxed);
                    let order = s.order.order_id;
                    assert_eq!(s.order.user_id, user(u), "someone else's order");
                    told.by_key
                        .entry((user(u), key.clone()))
                        .or_default()
                        .insert(order);
                    told.orders.insert(order, (product.clone(), user(u)));
                    if rng.u8(0..3) == 0 {
                        replay(&engine, &creds, &request, &key, u, &mut told, &tally).await;
                    }
                    if product == &held {
                        close_held(&engine, &creds, order, &mut rng, &mut told, &tally).await;
                    }
                    break;
                }
                Outcome::Unavailable { .. } => {
                    tally.unavailable.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(rng.u64(5..30))).await;
                }
                Outcome::SoldOut | Outcome::LimitExceeded => break,
                other => panic!("buyer {b} (user {u}): unexpected {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(5..25))).await;
    }
    told
}

/// Sends a bought request again with its key: it must name the same order
/// (recorded under the key; the checks require one order per key).
async fn replay(
    engine: &Engine,
    creds: &Credentials,
    request: &PurchaseRequest,
    key: &str,
    u: usize,
    told: &mut Told,
    tally: &Tally,
) {
    for _ in 0..2 {
        tally.attempts.fetch_add(1, Ordering::Relaxed);
        match engine.purchase(creds, request.clone()).await {
            Outcome::Purchased(s) | Outcome::Replayed(s) => {
                tally.bought.fetch_add(1, Ordering::Relaxed);
                told.by_key
                    .entry((user(u), key.to_owned()))
                    .or_default()
                    .insert(s.order.order_id);
                return;
            }
            Outcome::Unavailable { .. } => {
                tally.unavailable.fetch_add(1, Ordering::Relaxed);
            }
            other => panic!("replay of {key} (user {u}): unexpected {other:?}"),
        }
    }
}

/// Confirms, cancels or leaves to expire a held order (a third each).
async fn close_held(
    engine: &Engine,
    creds: &Credentials,
    order: OrderId,
    rng: &mut fastrand::Rng,
    told: &mut Told,
    tally: &Tally,
) {
    let outcome = match rng.u8(0..3) {
        0 => engine.confirm(creds, &order).await,
        1 => engine.cancel(creds, &order).await,
        _ => return,
    };
    match outcome {
        Outcome::OrderUpdated(s) => {
            told.closings.insert(order, s.status);
        }
        // Closed already: by the sweeper (expired), or by an earlier
        // confirm or cancel whose 503 hid that it ran.
        Outcome::OrderClosed(status) => {
            if status == OrderStatus::Expired {
                told.closings.insert(order, status);
            }
        }
        Outcome::Unavailable { .. } => {
            tally.closing_unavailable.fetch_add(1, Ordering::Relaxed);
        }
        other => panic!("closing {order}: unexpected {other:?}"),
    }
}

/// Applies `scenario`'s fault for a seeded while; returns how long.
async fn inject(scenario: Scenario, proxy: &FaultProxy, rng: &mut fastrand::Rng) -> Duration {
    let started = Instant::now();
    let window = Duration::from_millis(rng.u64(600..1_200));
    match scenario {
        Scenario::SlowStore => {
            let late = PORT_TIMEOUT + Duration::from_millis(rng.u64(50..300));
            proxy.set(Direction::ToClient, Fault::Delay(late));
            tokio::time::sleep(window).await;
        }
        Scenario::ResetMidCall => {
            while started.elapsed() < window {
                let direction = if rng.bool() {
                    Direction::ToServer
                } else {
                    Direction::ToClient
                };
                let fault = if rng.u8(0..4) == 0 {
                    Fault::Reset
                } else {
                    Fault::CloseAfter(rng.u64(0..400))
                };
                proxy.set(direction, fault);
                tokio::time::sleep(Duration::from_millis(rng.u64(30..120))).await;
                proxy.set(direction, Fault::Pass);
                tokio::time::sleep(Duration::from_millis(rng.u64(10..60))).await;
            }
        }
        Scenario::StallThenRecover => {
            proxy.set_both(Fault::Stall);
            tokio::time::sleep(window).await;
        }
        Scenario::ServerRestart => {
            proxy.set_down(true);
            tokio::time::sleep(window).await;
        }
    }
    proxy.heal();
    started.elapsed()
}

/// Runs `scenario` against `target` with `seed`, checks every invariant
/// (panicking with the seed on a violation) and returns what it saw.
pub async fn run(target: &dyn FaultTarget, scenario: Scenario, seed: u64) -> Report {
    eprintln!("fault scenario {scenario:?}: FAULT_SEED={seed} reproduces its choices");
    let proxy = FaultProxy::start(target.upstream())
        .await
        .expect("the proxy binds a loopback port");
    let mut world = build_world(target, &proxy).await;
    let mut rng = fastrand::Rng::with_seed(seed);

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let buyers: Vec<_> = (0..BUYERS)
        .map(|b| {
            tokio::spawn(buyer(
                b,
                seed,
                world.engines[b % ENGINES].clone(),
                world.plain.clone(),
                world.held.clone(),
                stop.clone(),
                tally.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(WARM_UP).await;
    let before = tally.unavailable.load(Ordering::Relaxed);
    let fault_for = inject(scenario, &proxy, &mut rng).await;
    tokio::time::sleep(AFTERMATH).await;
    stop.store(true, Ordering::Release);
    let mut told = Told::default();
    for t in buyers {
        let t = t.await.expect("a buyer panicked");
        for (k, orders) in t.by_key {
            told.by_key.entry(k).or_default().extend(orders);
        }
        told.closings.extend(t.closings);
        told.orders.extend(t.orders);
    }
    let cuts = proxy.stats().cuts;
    let report = Report {
        attempts: tally.attempts.load(Ordering::Relaxed),
        bought: tally.bought.load(Ordering::Relaxed),
        unavailable: tally.unavailable.load(Ordering::Relaxed),
        closing_unavailable: tally.closing_unavailable.load(Ordering::Relaxed),
        cuts,
        fault_for,
        ..Report::default()
    };
    let bit = report.unavailable > before || report.closing_unavailable > 0 || cuts > 0;
    assert!(
        bit,
        "{scenario:?} (FAULT_SEED={seed}): the fault never reached a call: no 503 and no cut \
         during {fault_for:?}"
    );
    assert!(report.bought > 0, "nothing was bought: {report:?}");

    let buyers: Vec<Credentials> = (0..ENGINES)
        .map(|i| Credentials::bearer(token(USERS + i)))
        .collect();
    each_engine_sells_again(&world.engines, &buyers, Duration::from_secs(15)).await;
    settle_and_check(&mut world, &told, report, scenario, seed).await
}

/// Proves that every engine sells again with the store client it already
/// has (after a fault, a restart): a fresh sale of one unit per engine is
/// created through the first engine, then engine `i` buys a unit for
/// `buyers[i]`. A 503 is retried (the first calls after a recovery may
/// still time out); anything else, or no purchase within `within`, panics
/// naming the engine.
pub async fn each_engine_sells_again(engines: &[Engine], buyers: &[Credentials], within: Duration) {
    assert_eq!(engines.len(), buyers.len(), "one buyer per engine");
    let deadline = Instant::now() + within;
    let p = unique_product("sells-again");
    let units = u32::try_from(engines.len()).expect("a few engines");
    let sale = Sale::builder(p.clone(), units).build().expect("valid sale");
    while let Err(e) = engines[0].create_sale(&sale).await {
        assert!(
            Instant::now() < deadline,
            "no sale could be created within {within:?}: {e}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, (engine, creds)) in engines.iter().zip(buyers).enumerate() {
        loop {
            match engine
                .purchase(creds, PurchaseRequest::new(p.clone(), Quantity::ONE))
                .await
            {
                Outcome::Purchased(_) => break,
                Outcome::Unavailable { .. } if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => panic!("engine {i} did not sell again within {within:?}: {other:?}"),
            }
        }
    }
}

/// The units each product's levels say are taken, and the outbox's view.
fn taken(levels: &crate::model::StockLevels) -> u64 {
    levels.held + levels.committed
}

/// Waits until the outbox and the levels agree (background voids may
/// still be retrying), expires every hold, and checks the invariants.
async fn settle_and_check(
    world: &mut World,
    told: &Told,
    mut report: Report,
    scenario: Scenario,
    seed: u64,
) -> Report {
    let direct = &*world.direct;
    let products = [world.plain.clone(), world.held.clone()];
    let ctx = format!("{scenario:?} (FAULT_SEED={seed})");
    let mut ledger = EventLedger::new();
    // Past every hold and lease.
    let far = || SystemClock.now().saturating_add(Duration::from_secs(3_600));

    // 1. Settle: every unit taken belongs to a live order in the outbox,
    //    and no live order is one nobody was told about.
    let deadline = Instant::now() + SETTLE;
    loop {
        ledger.extend(&world.sink.events());
        ledger.extend(&drain_outbox(direct, far()).await);
        let mut pending = Vec::new();
        for p in &products {
            let l = direct.snapshot(p).await.expect("snapshot").expect("sale");
            assert!(l.is_consistent(), "{ctx}: {l:?}");
            if ledger.live_units(p) != taken(&l) {
                pending.push(format!(
                    "{p}: outbox says {} units taken, levels {l:?}",
                    ledger.live_units(p)
                ));
            }
            for o in ledger.live_orders(p) {
                if !told.orders.contains_key(&o) {
                    pending.push(format!("{p}: order {o} owns units nobody was told of"));
                }
            }
        }
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ctx}: not settled {SETTLE:?} after the fault: {pending:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 2. Stop the relays and sweepers (so nothing moves events behind our
    //    back), expire every hold; then nothing is held, and sold == outbox.
    let _ = world.stop_background.send(true);
    for t in std::mem::take(&mut world.background) {
        t.await.expect("a relay or sweeper panicked");
    }
    while direct.expire(far(), 1_000).await.expect("expire").len() == 1_000 {}
    ledger.extend(&world.sink.events());
    ledger.extend(&drain_outbox(direct, far()).await);
    let mut caps = BTreeMap::new();
    for (p, cap, stock) in [
        (&world.plain, PLAIN_CAP, PLAIN_STOCK),
        (&world.held, HELD_CAP, HELD_STOCK),
    ] {
        let l = direct.snapshot(p).await.expect("snapshot").expect("sale");
        assert!(l.is_consistent(), "{ctx}: {l:?}");
        assert_eq!(l.total, u64::from(stock), "{ctx}: {l:?}");
        assert_eq!(
            l.held, 0,
            "{ctx}: units held after every hold expired: {l:?}"
        );
        assert_eq!(
            ledger.live_units(p),
            l.committed,
            "{ctx}: sold != outbox: {l:?}"
        );
        for u in 0..USERS {
            let owned = ledger.user_units(p, &user(u));
            assert!(
                owned <= u64::from(cap),
                "{ctx}: user {u} owns {owned} of {p}"
            );
        }
        caps.insert(p.to_string(), l);
    }

    // 3. What buyers were told holds.
    for ((u, key), orders) in &told.by_key {
        assert_eq!(
            orders.len(),
            1,
            "{ctx}: {u} key {key} got orders {orders:?}"
        );
    }
    for (order, (p, u)) in &told.orders {
        assert!(
            ledger.placed(order),
            "{ctx}: {u}'s order {order} of {p} was never placed"
        );
        let closing = ledger.closing(order);
        assert_ne!(
            closing,
            Some(EventType::Voided),
            "{ctx}: {u} was told it bought {order}, which was voided"
        );
        if p == &world.plain {
            assert_eq!(
                closing, None,
                "{ctx}: order {order} without a hold was closed"
            );
        }
        let expected = match told.closings.get(order) {
            Some(OrderStatus::Confirmed) => Some(EventType::Confirmed),
            Some(OrderStatus::Cancelled) => Some(EventType::Cancelled),
            Some(OrderStatus::Expired) => Some(EventType::Expired),
            _ => None,
        };
        if let Some(expected) = expected {
            assert_eq!(closing, Some(expected), "{ctx}: order {order}");
        }
    }
    report.placed = ledger.count(EventType::Placed);
    report.voided = ledger.count(EventType::Voided);
    eprintln!("fault scenario {scenario:?}: settled; levels {caps:?}; {report:?}");
    report
}

/// Makes one `#[tokio::test]` per [`Scenario`] for a backend. `$make` is
/// callable as `$make()` and returns a future of a [`FaultTarget`] with a
/// fresh namespace. Run with `FAULT_SEED=<n>` to replay a failure's
/// choices.
///
/// ```ignore
/// flashsale::fault_scenarios!(|| async { MyTarget::fresh().await });
/// ```
#[macro_export]
macro_rules! fault_scenarios {
    ($make:expr $(,)?) => {
        $crate::__fault_scenario!($make, slow_store, SlowStore);
        $crate::__fault_scenario!($make, reset_mid_call, ResetMidCall);
        $crate::__fault_scenario!($make, stall_then_recover, StallThenRecover);
        $crate::__fault_scenario!($make, server_restart, ServerRestart);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __fault_scenario {
    ($make:expr, $name:ident, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let target = ($make)().await;
            $crate::testing::faults::run(
                &target,
                $crate::testing::faults::Scenario::$scenario,
                $crate::testing::faults::fault_seed(),
            )
            .await;
        }
    };
}
