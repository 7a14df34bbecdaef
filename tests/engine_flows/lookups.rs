//! What a purchase costs the store: sale lookups under a bot cycling ids, and
//! known sell-outs answered without a rate check or a reserve.

use flashsale::testing::hooked::{Answer, Hooked, StockCall, StockHook};

use super::*;

/// Counts `sale` lookups per product.
#[derive(Default)]
struct CountLookups(parking_lot::Mutex<std::collections::HashMap<ProductId, usize>>);

impl CountLookups {
    fn lookups_of(&self, p: &str) -> usize {
        self.0.lock().get(&pid(p)).copied().unwrap_or(0)
    }
    fn total_lookups(&self) -> usize {
        self.0.lock().values().sum()
    }
}

#[async_trait::async_trait]
impl StockHook for CountLookups {
    async fn around<T: Send + 'static>(
        &self,
        call: StockCall<'_>,
        answer: Answer<T>,
    ) -> flashsale::Result<T> {
        if let StockCall::Sale(p) = call {
            *self.0.lock().entry(p.clone()).or_default() += 1;
        }
        answer.await
    }
}

/// A bot cycling random product ids: without valid credentials it is
/// answered 401 before any store call; with them, each new id costs one
/// lookup (cached as unknown), and however many ids it sends, the hot
/// sale's cached terms are not evicted: its buyers cost no lookup.
#[tokio::test]
async fn a_bot_cycling_random_ids_costs_no_lookup_unauthenticated_and_evicts_no_hot_sale() {
    const CAPACITY: usize = 1_000;
    let clock = ManualClock::new(T0);
    let store = Arc::new(Hooked::new(
        Arc::new(MemoryStockStore::new()),
        CountLookups::default(),
    ));
    let engine = Engine::builder()
        .stock_store(store.clone())
        .rate_limiter(Arc::new(MemoryRateLimiter::with_clock(
            "100000/1s".parse().unwrap(),
            Arc::new(clock.clone()),
        )))
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(Arc::new(auth()))
        .clock(Arc::new(clock.clone()))
        .sale_cache_ttl(Duration::from_secs(60))
        .sale_cache_capacity(CAPACITY)
        .build()
        .unwrap();
    engine
        .create_sale(&Sale::builder(pid("hot"), 10_000).build().unwrap())
        .await
        .unwrap();

    // Unauthenticated: no token, or a bad one. Not one lookup.
    for i in 0..(CAPACITY * 5) {
        let creds = if i % 2 == 0 {
            Credentials::none()
        } else {
            as_("forged")
        };
        let out = engine.purchase(&creds, buy(&format!("bot-{i}"), 1)).await;
        assert_eq!(out.code(), "unauthenticated", "{out:?}");
    }
    assert_eq!(
        store.hook().total_lookups(),
        0,
        "an unauthenticated bot cost lookups"
    );

    // Authenticated, 20 times the cache's capacity of fresh ids, with a
    // buyer of the hot sale in between.
    let mut bought = 0;
    for i in 0..(CAPACITY * 20) {
        if i % 50 == 0 {
            let out = engine.purchase(&as_("bob"), buy("hot", 1)).await;
            assert_eq!(out.code(), "purchased", "{out:?}");
            bought += 1;
        }
        let out = engine
            .purchase(&as_("alice"), buy(&format!("rnd-{i}"), 1))
            .await;
        assert_eq!(out, Outcome::UnknownProduct);
    }
    assert_eq!(
        store.hook().lookups_of("hot"),
        0,
        "the hot sale was evicted by the bot's ids and fetched again"
    );
    assert_eq!(
        store.hook().total_lookups(),
        CAPACITY * 20,
        "one lookup per new id"
    );
    assert_eq!(levels_of(&engine, "hot").await.committed, bought);
}

async fn levels_of(engine: &Engine, p: &str) -> StockLevels {
    engine.snapshot(&pid(p)).await.unwrap().unwrap()
}

/// A memory limiter that counts the checks it is asked for.
struct CountingLimiter {
    inner: MemoryRateLimiter,
    checks: AtomicUsize,
}

#[async_trait::async_trait]
impl RateLimiter for CountingLimiter {
    async fn check(&self, key: &str, cost: u32) -> flashsale::Result<RateDecision> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        self.inner.check(key, cost).await
    }
}

#[tokio::test]
async fn a_known_sell_out_is_answered_without_a_rate_check_or_a_reserve() {
    let clock = ManualClock::new(T0);
    let limiter = Arc::new(CountingLimiter {
        // Two attempts a second: a third rate-checked attempt would be 429.
        inner: MemoryRateLimiter::with_clock("2/1s".parse().unwrap(), Arc::new(clock.clone())),
        checks: Default::default(),
    });
    let store = Arc::new(SoldOutCache::with_clock(
        MemoryStockStore::new(),
        Duration::from_secs(5),
        Arc::new(clock.clone()),
    ));
    let engine = Engine::builder()
        .stock_store(store.clone())
        .rate_limiter(limiter.clone())
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(Arc::new(auth()))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let checks = || limiter.checks.load(Ordering::SeqCst);
    engine
        .create_sale(&Sale::builder(pid("p"), 1).build().unwrap())
        .await
        .unwrap();
    assert_eq!(
        engine.purchase(&as_("alice"), buy("p", 1)).await.code(),
        "purchased"
    );
    clock.advance(Duration::from_millis(1));
    // The store says so once (rate-checked)...
    assert_eq!(
        engine.purchase(&as_("bob"), buy("p", 1)).await,
        Outcome::SoldOut
    );
    assert_eq!((checks(), store.hits()), (2, 0));
    // ...then every attempt is answered locally: not charged, so never 429.
    for _ in 0..10 {
        assert_eq!(
            engine.purchase(&as_("bob"), buy("p", 1)).await,
            Outcome::SoldOut
        );
    }
    assert_eq!((checks(), store.hits()), (2, 10));
    // A keyed attempt still goes through the limiter to the store (its key
    // could name a finished purchase).
    assert_eq!(
        engine.purchase(&as_("bob"), keyed("p", 1, "k-1")).await,
        Outcome::SoldOut
    );
    assert_eq!((checks(), store.hits()), (3, 10));
    // Units back through this instance: the next attempt is rate-checked
    // and served at once (bob's quota is spent, so it is a 429 first).
    engine
        .create_sale(&Sale::builder(pid("p"), 2).build().unwrap())
        .await
        .unwrap();
    assert!(matches!(
        engine.purchase(&as_("bob"), buy("p", 1)).await,
        Outcome::RateLimited { .. }
    ));
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        engine.purchase(&as_("bob"), buy("p", 1)).await.code(),
        "purchased"
    );
    assert_eq!((checks(), store.hits()), (5, 10));
    let levels = levels_of(&engine, "p").await;
    assert_eq!((levels.available, levels.committed), (0, 2));
}

/// Counts the store calls a product page makes: `sale` and `snapshot`.
#[derive(Default)]
struct CountPageReads(AtomicUsize);

#[async_trait::async_trait]
impl StockHook for CountPageReads {
    async fn around<T: Send + 'static>(
        &self,
        call: StockCall<'_>,
        answer: Answer<T>,
    ) -> flashsale::Result<T> {
        if matches!(call, StockCall::Sale(_) | StockCall::Snapshot(_)) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        answer.await
    }
}

/// A crowd refreshing a product page: however many readers arrive, each
/// 250 ms period costs the store one `sale` and one `snapshot` (8 calls a
/// second); with the cache off every read costs both.
#[tokio::test]
async fn a_crowd_on_a_product_page_costs_two_store_calls_per_staleness_period() {
    const READERS: usize = 1_000;
    for (staleness, per_period) in [
        (Duration::from_millis(250), 2),
        (Duration::ZERO, 2 * READERS),
    ] {
        let clock = ManualClock::new(T0);
        let store = Arc::new(Hooked::new(
            Arc::new(MemoryStockStore::new()),
            CountPageReads::default(),
        ));
        let engine = Engine::builder()
            .stock_store(store.clone())
            .rate_limiter(Arc::new(MemoryRateLimiter::new("10/1s".parse().unwrap())))
            .order_sink(Arc::new(MemoryOrderSink::new()))
            .authenticator(Arc::new(auth()))
            .clock(Arc::new(clock.clone()))
            .product_staleness(staleness)
            .build()
            .unwrap();
        engine
            .create_sale(&Sale::builder(pid("hot"), 100).build().unwrap())
            .await
            .unwrap();
        let before = store.hook().0.load(Ordering::SeqCst);
        // One second: four periods of 250 ms, a thousand readers in each.
        let hot = pid("hot");
        for _ in 0..4 {
            let reads = (0..READERS).map(|_| engine.product(&hot));
            for view in futures::future::join_all(reads).await {
                assert_eq!(view.unwrap().unwrap().levels.available, 100);
            }
            clock.advance(Duration::from_millis(250));
        }
        let calls = store.hook().0.load(Ordering::SeqCst) - before;
        assert_eq!(
            calls,
            4 * per_period,
            "store calls in one second, staleness {staleness:?}"
        );
    }
}
