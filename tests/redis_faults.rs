//! Fault tests for the Redis backends, on real servers:
//!
//! * Redis unreachable (a closed port) and Redis hung (a port that accepts
//!   but never answers): a purchase through the `Engine` ends `Unavailable`
//!   within the configured port timeout, and nothing is sold.
//! * A reserve whose answer is lost AFTER Redis ran it (a delaying proxy
//!   holds the reply past the port timeout; or it cuts the connection as
//!   the reply arrives): 503, the reservation is voided, the buyer owns
//!   nothing, the levels are consistent and the outbox carries the order's
//!   `placed` and `voided` events.
//! * Redis killed (SIGKILL) and restarted in the middle of a purchase rush
//!   by two engines: no oversell, and once the relay has drained the
//!   outbox, the sink's distinct `placed` orders minus the voided ones are
//!   exactly the units sold; nothing is doubled; the engines recover
//!   without a restart.
//!
//! The restart test starts its own throwaway `redis-server` (AOF with
//! `appendfsync always`, data in a temp dir) on a spare loopback port; the
//! proxy tests run against `FLASHSALE_REDIS_URL` (default
//! `redis://127.0.0.1:6379`). Run through `backends/redis/with-redis.sh`.

#[path = "common/redis_kit.rs"]
mod redis_kit;

use redis_kit::{RedisServer, spare_port};

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use flashsale::RelayConfig;
use flashsale::memory::{MemoryOrderSink, MemoryRateLimiter, StaticAuthenticator};
use flashsale::redis::{RedisOptions, RedisStockStore};
use flashsale::{
    Credentials, Engine, Outcome, ProductId, PurchaseRequest, Quantity, RateQuota, Sale,
    StockLevels, StockStore,
};
use flashsale::{EventType, OrderId, Principal, ReservationState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PORT_TIMEOUT: Duration = Duration::from_millis(300);

fn redis_url() -> String {
    std::env::var("FLASHSALE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn prefix() -> String {
    format!("flashsale-test:{}", uuid::Uuid::now_v7().simple())
}

fn auth(users: usize) -> Arc<StaticAuthenticator> {
    let mut auth = StaticAuthenticator::new();
    for u in 0..users {
        auth.insert(
            format!("token-{u}"),
            Principal::user(flashsale::testing::user(u)),
        );
    }
    Arc::new(auth)
}

fn engine(stock: Arc<dyn StockStore>, users: usize) -> (Engine, Arc<MemoryOrderSink>) {
    let sink = Arc::new(MemoryOrderSink::new());
    let engine = Engine::builder()
        .stock_store(stock)
        .rate_limiter(Arc::new(MemoryRateLimiter::new(
            RateQuota::per_second(10_000).unwrap(),
        )))
        .order_sink(sink.clone())
        .authenticator(auth(users))
        .port_timeout(PORT_TIMEOUT)
        // The proxy tests must find the sale cached when they stall Redis.
        .sale_cache_ttl(Duration::from_secs(600))
        .build()
        .unwrap();
    (engine, sink)
}

async fn buy(engine: &Engine, buyer: usize, product: &ProductId) -> (Outcome, Duration) {
    let started = Instant::now();
    let outcome = engine
        .purchase(
            &Credentials::bearer(format!("token-{buyer}")),
            PurchaseRequest::new(product.clone(), Quantity::ONE),
        )
        .await;
    (outcome, started.elapsed())
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with
/// `what` after `within`.
async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn unreachable_redis_means_unavailable_within_the_timeout() {
    let url = format!("redis://127.0.0.1:{}", spare_port());
    // Not lazy: connecting to a closed port fails at once, with a clear error.
    let err = RedisStockStore::connect(&url, "x").await.unwrap_err();
    assert!(err.to_string().contains("redis"), "{err}");
    // Lazy: the server can start later; meanwhile every call fails.
    let store =
        RedisStockStore::with_options(RedisOptions::single(&url).prefix(prefix()).lazy(true))
            .await
            .unwrap();
    let (engine, sink) = engine(Arc::new(store), 1);
    let p = ProductId::new("unreachable").unwrap();
    for _ in 0..3 {
        let (outcome, took) = buy(&engine, 0, &p).await;
        assert!(
            matches!(outcome, Outcome::Unavailable { .. }),
            "{outcome:?}"
        );
        assert!(
            took <= PORT_TIMEOUT + Duration::from_millis(150),
            "{took:?}"
        );
    }
    assert!(sink.is_empty(), "nothing was sold");
    assert!(engine.relay_once().await.is_err(), "the relay reports it");
    assert!(engine.readiness().await.checks[0].1.is_err());
}

#[tokio::test]
async fn hung_redis_means_unavailable_within_the_timeout() {
    // A "server" that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            open.push(sock);
        }
    });
    let store = RedisStockStore::with_options(
        RedisOptions::single(&url)
            .prefix(prefix())
            .lazy(true)
            .response_timeout(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let (engine, sink) = engine(Arc::new(store), 1);
    let p = ProductId::new("hung").unwrap();
    let (outcome, took) = buy(&engine, 0, &p).await;
    assert!(
        matches!(outcome, Outcome::Unavailable { .. }),
        "{outcome:?}"
    );
    assert!(took >= PORT_TIMEOUT, "{took:?}");
    assert!(
        took <= PORT_TIMEOUT + Duration::from_millis(150),
        "{took:?}"
    );
    assert!(sink.is_empty());
    hold.abort();
}

/// A TCP proxy in front of Redis that forwards requests at once and can
/// hold back the replies (until released) or cut the connection when the
/// next reply arrives, so a command runs in Redis while its caller never
/// hears back.
struct ReplyProxy {
    addr: SocketAddr,
    hold: tokio::sync::watch::Sender<bool>,
    cut_next: Arc<AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

impl ReplyProxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (hold, held) = tokio::sync::watch::channel(false);
        let cut_next = Arc::new(AtomicBool::new(false));
        let cut = cut_next.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let mut held = held.clone();
                let cut = cut.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let up = tokio::io::copy(&mut from_client, &mut to_server);
                    let down = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = from_server.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            while *held.borrow_and_update() {
                                if held.changed().await.is_err() {
                                    return Ok(());
                                }
                            }
                            if cut.swap(false, Ordering::AcqRel) {
                                // Both halves drop: the client sees EOF.
                                return Ok(());
                            }
                            to_client.write_all(&buf[..n]).await?;
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        Self {
            addr,
            hold,
            cut_next,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for ReplyProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn redis_host_port() -> String {
    let url = redis_url();
    url.trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned()
}

/// How a lost answer is lost.
#[derive(Debug, Clone, Copy)]
enum Loss {
    /// The reply is held past the port timeout (then delivered late).
    Late,
    /// The connection is cut as the reply arrives.
    Cut,
}

/// A purchase whose reserve ran in Redis but whose answer never reached the
/// engine: 503, the reservation voided (units back, the buyer's cap and
/// idempotency key freed), `placed` then `voided` in the outbox.
async fn lost_reserve_answer_is_voided(loss: Loss, hold: Option<Duration>) {
    let proxy = ReplyProxy::start(redis_host_port()).await;
    let prefix = prefix();
    let url = redis_url();
    let proxied = RedisStockStore::connect(&proxy.url(), &prefix)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is not answering through the proxy ({e})"));
    let direct = RedisStockStore::connect(&url, &prefix)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is not answering ({e})"));
    let (engine, sink) = engine(Arc::new(proxied), 2);

    let p = flashsale::testing::unique_product("lost-answer");
    let mut sale = Sale::builder(p.clone(), 5).per_user_limit(1);
    if let Some(h) = hold {
        sale = sale.hold(h);
    }
    engine.create_sale(&sale.build().unwrap()).await.unwrap();
    // Another buyer's purchase, which also puts the sale in the engine's
    // cache, so the stalled purchase below goes straight to the reserve.
    let (first, _) = buy(&engine, 1, &p).await;
    let Outcome::Purchased(first) = first else {
        panic!("{first:?}");
    };

    match loss {
        Loss::Late => {
            proxy.hold.send_replace(true);
        }
        Loss::Cut => proxy.cut_next.store(true, Ordering::Release),
    }
    let (outcome, took) = buy(&engine, 0, &p).await;
    proxy.hold.send_replace(false);
    assert!(
        matches!(outcome, Outcome::Unavailable { .. }),
        "{loss:?}: {outcome:?}"
    );
    // Reserve, then void: each bounded by the port timeout.
    assert!(
        took <= 2 * PORT_TIMEOUT + Duration::from_millis(300),
        "{took:?}"
    );

    // The reserve did run; its void follows (at once, or by the engine's
    // background retry once answers come through again). The relay hands
    // both events to the sink.
    let lost = flashsale::testing::user(0);
    let (order, events) = wait_for(
        "the lost reserve's placed and voided events",
        Duration::from_secs(15),
        || {
            let (engine, sink, lost) = (&engine, &sink, &lost);
            async move {
                engine.drain_outbox().await.ok()?;
                let mine: Vec<_> = sink
                    .events()
                    .into_iter()
                    .filter(|e| e.order.user_id == *lost)
                    .collect();
                let voided = mine.iter().find(|e| e.event_type == EventType::Voided)?;
                Some((voided.order.order_id, mine))
            }
        },
    )
    .await;
    let mut kinds: Vec<(u16, EventType)> = events
        .iter()
        .map(|e| {
            assert_eq!(e.order.order_id, order, "one order for the lost attempt");
            (e.seq, e.event_type)
        })
        .collect();
    kinds.sort_unstable_by_key(|k| k.0);
    assert_eq!(kinds, [(1, EventType::Placed), (2, EventType::Voided)]);
    let r = direct
        .reservation(&order)
        .await
        .unwrap()
        .expect("the record");
    assert_eq!(r.state, ReservationState::Voided);

    // The buyer owns nothing: only the other buyer's unit is taken.
    let l = direct.snapshot(&p).await.unwrap().unwrap();
    assert!(l.is_consistent(), "{l:?}");
    assert_eq!(l.available, 4, "{l:?}");
    assert_eq!(l.held + l.committed, 1, "{l:?}");
    // ... and the per-user cap of 1 is free again.
    let (again, _) = buy(&engine, 0, &p).await;
    let Outcome::Purchased(again) = again else {
        panic!("{again:?}");
    };
    assert_ne!(again.order.order_id, order);
    engine.drain_outbox().await.unwrap();
    let placed: HashSet<OrderId> = sink.orders().iter().map(|o| o.order_id).collect();
    assert_eq!(
        placed,
        HashSet::from([first.order.order_id, order, again.order.order_id])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_answered_late_is_voided_sale_without_hold() {
    lost_reserve_answer_is_voided(Loss::Late, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_answered_late_is_voided_hold_sale() {
    lost_reserve_answer_is_voided(Loss::Late, Some(Duration::from_secs(300))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_whose_connection_drops_is_voided() {
    lost_reserve_answer_is_voided(Loss::Cut, None).await;
}

/// What the sink's events say: orders placed and not voided.
fn standing_orders(sink: &MemoryOrderSink) -> (HashSet<OrderId>, HashMap<OrderId, Vec<EventType>>) {
    let mut by_order: HashMap<OrderId, Vec<EventType>> = HashMap::new();
    for e in sink.events() {
        by_order
            .entry(e.order.order_id)
            .or_default()
            .push(e.event_type);
    }
    let standing = by_order
        .iter()
        .filter(|(_, kinds)| {
            kinds.contains(&EventType::Placed) && !kinds.contains(&EventType::Voided)
        })
        .map(|(id, _)| *id)
        .collect();
    (standing, by_order)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_rush_loses_and_doubles_no_order() {
    const STOCK: u32 = 1_200;
    const ENGINES: usize = 2;
    const BUYERS: usize = 60;
    let mut server = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = server.url();
    let prefix = prefix();
    let sink = Arc::new(MemoryOrderSink::new());
    let auth = auth(BUYERS);
    let limiter = Arc::new(MemoryRateLimiter::new(
        RateQuota::per_second(10_000).unwrap(),
    ));
    let mut engines = Vec::new();
    let (stop_relays, relays_stopped) = tokio::sync::watch::channel(false);
    let mut relays = Vec::new();
    for _ in 0..ENGINES {
        // One connection per engine, as separate app servers have.
        let store = RedisStockStore::with_options(
            RedisOptions::single(&url)
                .prefix(&prefix)
                .response_timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap();
        let engine = Engine::builder()
            .stock_store(Arc::new(store))
            .rate_limiter(limiter.clone())
            .order_sink(sink.clone())
            .authenticator(auth.clone())
            .port_timeout(Duration::from_millis(500))
            .relay(RelayConfig {
                batch: 64,
                lease: Duration::from_secs(2),
                submit_timeout: Duration::from_millis(500),
            })
            .build()
            .unwrap();
        let mut stop = relays_stopped.clone();
        relays.push(engine.spawn_relay(Duration::from_millis(50), async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
        engines.push(engine);
    }
    let p = flashsale::testing::unique_product("killed");
    engines[0]
        .create_sale(&Sale::builder(p.clone(), STOCK).build().unwrap())
        .await
        .unwrap();
    // Reads the levels without going through an engine.
    let probe = RedisStockStore::with_options(
        RedisOptions::single(&url)
            .prefix(&prefix)
            .response_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();

    let purchased = Arc::new(AtomicU32::new(0));
    let unavailable = Arc::new(AtomicU32::new(0));
    let after_restart = Arc::new(AtomicU32::new(0));
    let restarted = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // Rung by the buyer whose purchase reaches a quarter of the stock.
    let crash_now = Arc::new(tokio::sync::Notify::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for b in 0..BUYERS {
        let (engine, p) = (engines[b % ENGINES].clone(), p.clone());
        let (purchased, unavailable, after_restart, restarted, stop, crash_now) = (
            purchased.clone(),
            unavailable.clone(),
            after_restart.clone(),
            restarted.clone(),
            stop.clone(),
            crash_now.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let creds = Credentials::bearer(format!("token-{b}"));
            let mut won = Vec::new();
            while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                let req = PurchaseRequest::new(p.clone(), Quantity::ONE);
                match engine.purchase(&creds, req).await {
                    Outcome::Purchased(s) => {
                        if purchased.fetch_add(1, Ordering::AcqRel) + 1 == STOCK / 4 {
                            crash_now.notify_one();
                        }
                        if restarted.load(Ordering::Acquire) {
                            after_restart.fetch_add(1, Ordering::Relaxed);
                        }
                        won.push(s.order.order_id);
                    }
                    // Pacing while Redis is down, or until voided units
                    // come back on sale.
                    Outcome::Unavailable { .. } => {
                        unavailable.fetch_add(1, Ordering::AcqRel);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Outcome::SoldOut => tokio::time::sleep(Duration::from_millis(10)).await,
                    other => panic!("buyer {b}: unexpected {other:?}"),
                }
            }
            won
        }));
    }

    // Crash Redis in the middle of the rush.
    tokio::time::timeout(Duration::from_secs(20), crash_now.notified())
        .await
        .expect("the rush never got going");
    let before_kill = unavailable.load(Ordering::Acquire);
    server.kill();
    // Every buyer has had time to meet the dead server when twice as many
    // attempts as there are buyers failed; none may succeed from then on.
    let failures = |n: u32| {
        let unavailable = unavailable.clone();
        move || {
            let seen = unavailable.load(Ordering::Acquire);
            async move { (seen >= n).then_some(()) }
        }
    };
    let buyers = BUYERS as u32;
    wait_for(
        "buyers to notice the crash",
        Duration::from_secs(20),
        failures(before_kill + 2 * buyers),
    )
    .await;
    let at_crash = purchased.load(Ordering::Acquire);
    wait_for(
        "more failures while down",
        Duration::from_secs(20),
        failures(before_kill + 4 * buyers),
    )
    .await;
    assert_eq!(
        purchased.load(Ordering::Acquire),
        at_crash,
        "purchases succeeded while Redis was down"
    );
    server.respawn();
    restarted.store(true, Ordering::Release);

    // Sell out after the restart, watching the invariant on the way.
    wait_for(
        "the sale to sell out after the restart",
        Duration::from_secs(40),
        || {
            let probe = &probe;
            let p = &p;
            async move {
                let l = probe.snapshot(p).await.ok()??;
                assert!(l.is_consistent(), "{l:?}");
                assert!(l.held + l.committed <= u64::from(STOCK), "oversold: {l:?}");
                (l.available == 0).then_some(())
            }
        },
    )
    .await;
    stop.store(true, Ordering::Release);
    let mut won = Vec::new();
    for t in tasks {
        won.extend(t.await.expect("buyer task panicked"));
    }
    let _ = stop_relays.send(true);
    for r in relays {
        r.await.unwrap();
    }

    // Drain until the sink agrees with the store AND with the buyers'
    // answers. The first holds whenever the outbox is empty; the second
    // once the engines' background voids of answers lost in the crash have
    // landed (they back off while Redis is down). Batches claimed by a
    // relay when Redis died come back when their lease lapses.
    let outbox_key = format!("{{{prefix}|{p}}}:outbox");
    let raw = redis::Client::open(url.as_str()).unwrap();
    let mut raw = raw.get_multiplexed_async_connection().await.unwrap();
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    let (levels, standing, by_order) = loop {
        if engines[0].drain_outbox().await.is_ok() {
            // Levels first, then the outbox: an engine's background void
            // may land at any moment, but it appends its event in the same
            // step as it returns the units, so an empty outbox read AFTER
            // the levels means the sink has every event those levels saw.
            let levels = probe.snapshot(&p).await;
            let left: Option<u64> = redis::cmd("ZCARD")
                .arg(&outbox_key)
                .query_async(&mut raw)
                .await
                .ok();
            if let (Some(left), Ok(Some(l))) = (left, levels) {
                let (standing, by_order) = standing_orders(&sink);
                if left == 0 {
                    assert_eq!(
                        standing.len() as u64,
                        l.held + l.committed,
                        "the drained sink disagrees with the store: {l:?}"
                    );
                    if standing.len() == won.len() {
                        break (l, standing, by_order);
                    }
                }
                last = format!(
                    "{left} events left, {l:?}, {} standing orders, {} purchases answered",
                    standing.len(),
                    won.len()
                );
            }
        }
        assert!(
            Instant::now() < drain_deadline,
            "the outbox never drained into agreement with the buyers' answers: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let n = purchased.load(Ordering::Acquire);
    eprintln!(
        "purchased {n}, unavailable {}, after restart {}, levels {levels:?}, \
         orders placed {}, standing {}, duplicate deliveries {}",
        unavailable.load(Ordering::Relaxed),
        after_restart.load(Ordering::Relaxed),
        by_order.len(),
        standing.len(),
        sink.duplicates(),
    );
    assert!(levels.is_consistent(), "{levels:?}");
    assert!(
        levels.held + levels.committed <= u64::from(STOCK),
        "oversold: {levels:?}"
    );
    // Distinct event ids: at most one `placed` and one closing event per
    // order, and only `voided` closes an order of a sale without holds.
    for (order, kinds) in &by_order {
        let mut sorted = kinds.clone();
        sorted.sort_unstable_by_key(|k| k.seq());
        assert!(
            sorted == [EventType::Placed] || sorted == [EventType::Placed, EventType::Voided],
            "order {order}: {kinds:?}"
        );
    }
    // Every purchase answered 200 is one standing order; no order id twice.
    let ids: HashSet<_> = won.iter().collect();
    assert_eq!(ids.len(), won.len(), "order ids are unique");
    assert!(
        won.iter().all(|id| standing.contains(id)),
        "every Purchased order stands in the sink"
    );
    assert_eq!(
        levels,
        StockLevels {
            total: STOCK.into(),
            available: u64::from(STOCK) - won.len() as u64,
            held: 0,
            committed: won.len() as u64,
        }
    );
    // Each engine sells again with the client it had before the crash, on
    // a fresh sale: this holds even when the rush had sold out before the
    // kill took effect (on a loaded machine it can); `after restart` above
    // counts the rush's own purchases after the restart.
    let buyers: Vec<Credentials> = (0..ENGINES)
        .map(|i| Credentials::bearer(format!("token-{i}")))
        .collect();
    flashsale::testing::faults::each_engine_sells_again(&engines, &buyers, Duration::from_secs(15))
        .await;
}

/// The shared fault scenarios of `flashsale::testing::faults`: two engines
/// sell through a `FaultProxy` in front of Redis while it delays replies,
/// cuts connections mid-script, stalls, or goes down; then every invariant
/// is checked. `FAULT_SEED=<n>` replays a run's choices.
mod scenarios {
    use std::sync::Arc;
    use std::time::Duration;

    use flashsale::StockStore;
    use flashsale::redis::{RedisOptions, RedisStockStore};
    use flashsale::testing::faults::FaultTarget;

    /// One key prefix of the test kit's Redis.
    struct RedisTarget {
        prefix: String,
    }

    #[async_trait::async_trait]
    impl FaultTarget for RedisTarget {
        fn upstream(&self) -> String {
            super::redis_host_port()
        }

        async fn connect(&self, addr: &str) -> Arc<dyn StockStore> {
            let store = RedisStockStore::with_options(
                RedisOptions::single(format!("redis://{addr}"))
                    .prefix(&self.prefix)
                    .connect_timeout(Duration::from_millis(500))
                    .response_timeout(Duration::from_secs(2)),
            )
            .await
            .unwrap_or_else(|e| panic!("Redis is not answering at {addr} ({e})"));
            Arc::new(store)
        }
    }

    flashsale::fault_scenarios!(|| async {
        RedisTarget {
            prefix: super::prefix(),
        }
    });
}
