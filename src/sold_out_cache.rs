//! [`SoldOutCache`], a [`StockStore`] decorator.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::clock::{Clock, SystemClock};
use crate::error::Result;
use crate::model::{
    OrderEvent, OrderId, ProductId, Reservation, ReservationState, Sale, StockLevels, Timestamp,
};
use crate::{
    CancelOutcome, ConfirmOutcome, ReserveOutcome, ReserveRequest, SaleWrite, StockStore,
    VoidOutcome,
};

/// A [`StockStore`] decorator that answers "sold out" locally for a short
/// while after the store said so, sparing the store (Redis, MySQL) the
/// stampede that follows a sell-out.
///
/// # What it remembers, and why
///
/// After the wrapped store answers [`ReserveOutcome::SoldOut`] to a request
/// for `q` units of a product, the cache knows only that fewer than `q`
/// units were available. So for the next TTL (default 250 ms) it answers
/// `SoldOut` itself to requests for **`q` units or more** of that product,
/// and passes smaller requests through (a later `SoldOut` for fewer units
/// lowers the threshold; after a `SoldOut` for 1 unit every request is
/// answered locally). It never short-circuits a request that could have
/// succeeded given what the store last said.
///
/// Requests carrying an idempotency key always go to the store: a retry of
/// a purchase that got the last unit must replay that purchase, not be told
/// "sold out". So do requests made (`ReserveRequest::now`) before the
/// sell-out was seen: such a request may be a re-sent reserve, which the
/// store answers with its own reservation.
///
/// Units that come back through **this** instance (a release, a restock via
/// `create_sale`, an expiry by the sweeper, a commit that found its hold
/// expired) clear the product's entry at once. Units returned through
/// another instance (another app server) stay hidden for at most the TTL.
/// A `SoldOut` answer that raced with such a local return is not cached
/// (an epoch counter detects the race), so a release can never be masked
/// for a whole TTL by a reply that predates it.
///
/// The [`Engine`](crate::Engine) asks the cache first
/// ([`StockStore::known_sold_out`]), before it charges the rate limiter: an
/// attempt the cache refuses costs no round trip at all, to the limiter or
/// the store, and is not charged to the buyer's quota (it could not have
/// bought anything). Every attempt the cache lets through is rate-checked,
/// so a bot still cannot reach the store faster than its quota.
///
/// Precedence note: a cached `SoldOut` is given before the store would
/// check the sale window or the per-order maximum. The [`Engine`](crate::Engine)
/// validates both before it reserves, so through the engine the answers
/// are the store's.
pub struct SoldOutCache<S: StockStore> {
    inner: S,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    entries: Mutex<HashMap<ProductId, Entry>>,
    /// Bumped (under the `entries` lock) whenever units come back through
    /// this instance; a `SoldOut` reply is cached only if no bump happened
    /// while it was in flight.
    epoch: AtomicU64,
    hits: AtomicU64,
    /// The same hits, for [`crate::metrics`].
    hits_metric: crate::metrics::SoldOutCacheHits,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Requests for at least this many units are refused locally.
    min_refused: u32,
    /// Only requests made at or after this time are refused: an older one
    /// may be a re-sent reserve, which the store must answer with its own
    /// reservation (or its void's tombstone).
    since: Timestamp,
    /// Until when (exclusive), on the clock's monotonic time
    /// ([`Clock::monotonic`]): a wall clock stepping backwards must not
    /// make a sell-out hide a restock for longer than the TTL.
    until: Duration,
}

impl<S: StockStore> std::fmt::Debug for SoldOutCache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoldOutCache")
            .field("ttl", &self.ttl)
            .field("products", &self.entries.lock().len())
            .field("hits", &self.hits())
            .finish_non_exhaustive()
    }
}

impl<S: StockStore> SoldOutCache<S> {
    /// The default TTL: how long a sell-out is believed without asking.
    pub const DEFAULT_TTL: Duration = Duration::from_millis(250);

    /// Wraps `inner` with the default TTL, on the system clock.
    pub fn new(inner: S) -> Self {
        Self::with_clock(inner, Self::DEFAULT_TTL, Arc::new(SystemClock))
    }

    /// Wraps `inner`, believing a sell-out for `ttl`, timed by `clock` (use a
    /// [`ManualClock`](crate::ManualClock) in tests). The TTL is measured on
    /// the clock's [monotonic](Clock::monotonic) time, so a step of the wall
    /// clock never lengthens it; the wall clock ([`Clock::now`]) only tells
    /// which requests were made before the sell-out was seen.
    pub fn with_clock(inner: S, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner,
            clock,
            ttl,
            entries: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            hits_metric: crate::metrics::SoldOutCacheHits::new(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How many attempts were answered locally so far, by
    /// [`known_sold_out`](StockStore::known_sold_out) or `reserve` (also counted in
    /// [`SOLD_OUT_CACHE_HITS_TOTAL`](crate::metrics::SOLD_OUT_CACHE_HITS_TOTAL)).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Forgets what is known about `product` (units may be back).
    pub fn invalidate(&self, product: &ProductId) {
        let mut entries = self.entries.lock();
        entries.remove(product);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether `req` is answered locally, at monotonic time `now`.
    fn refuses(&self, req: &ReserveRequest, now: Duration) -> bool {
        let mut entries = self.entries.lock();
        match entries.get(&req.product) {
            Some(e) if now < e.until => req.now >= e.since && req.quantity.get() >= e.min_refused,
            Some(_) => {
                entries.remove(&req.product);
                false
            }
            None => false,
        }
    }

    fn remember(&self, req: &ReserveRequest, epoch: u64) {
        let since = self.clock.now();
        let now = self.clock.monotonic();
        let mut entries = self.entries.lock();
        if self.epoch.load(Ordering::Acquire) != epoch {
            // Units came back while the store was answering: its "sold
            // out" may already be stale.
            return;
        }
        let q = req.quantity.get();
        let until = now.saturating_add(self.ttl);
        entries
            .entry(req.product.clone())
            .and_modify(|e| {
                if now < e.until {
                    e.min_refused = e.min_refused.min(q);
                } else {
                    e.min_refused = q;
                    e.since = since;
                }
                e.until = until;
            })
            .or_insert(Entry {
                min_refused: q,
                since,
                until,
            });
    }
}

#[async_trait]
impl<S: StockStore> StockStore for SoldOutCache<S> {
    async fn create_sale(&self, sale: &Sale) -> Result<SaleWrite> {
        let written = self.inner.create_sale(sale).await?;
        self.invalidate(sale.product());
        Ok(written)
    }

    async fn sale(&self, product: &ProductId) -> Result<Option<Sale>> {
        self.inner.sale(product).await
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome> {
        let cacheable = req.idempotency_key.is_none();
        if self.known_sold_out(req) {
            return Ok(ReserveOutcome::SoldOut);
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let outcome = self.inner.reserve(req).await?;
        if cacheable && outcome == ReserveOutcome::SoldOut {
            self.remember(req, epoch);
        }
        Ok(outcome)
    }

    /// Counted as a hit when `true`: the engine asks this before the rate
    /// check and then does not call [`reserve`](StockStore::reserve).
    fn known_sold_out(&self, req: &ReserveRequest) -> bool {
        let known = req.idempotency_key.is_none() && self.refuses(req, self.clock.monotonic());
        if known {
            self.hits.fetch_add(1, Ordering::Relaxed);
            self.hits_metric.hit();
        }
        known
    }

    fn replay_claim_ttl(&self) -> std::time::Duration {
        self.inner.replay_claim_ttl()
    }

    async fn confirm(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<ConfirmOutcome> {
        let outcome = self.inner.confirm(product, order, now).await?;
        if outcome == ConfirmOutcome::NotHeld(ReservationState::Expired) {
            // The store may just have expired the hold and returned its units.
            self.invalidate(product);
        }
        Ok(outcome)
    }

    async fn cancel(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<CancelOutcome> {
        let outcome = self.inner.cancel(product, order, now).await;
        // Invalidate even on error: the cancel may have been applied.
        self.invalidate(product);
        outcome
    }

    async fn void(&self, req: &ReserveRequest, now: Timestamp) -> Result<VoidOutcome> {
        let outcome = self.inner.void(req, now).await;
        // Invalidate even on error: the void may have returned units.
        self.invalidate(&req.product);
        outcome
    }

    async fn reservation(&self, order: &OrderId) -> Result<Option<Reservation>> {
        self.inner.reservation(order).await
    }

    async fn expire(&self, now: Timestamp, max: usize) -> Result<Vec<Reservation>> {
        let expired = self.inner.expire(now, max).await?;
        for r in &expired {
            self.invalidate(&r.product);
        }
        Ok(expired)
    }

    async fn snapshot(&self, product: &ProductId) -> Result<Option<StockLevels>> {
        self.inner.snapshot(product).await
    }

    async fn claim(&self, now: Timestamp, max: usize, lease: Duration) -> Result<Vec<OrderEvent>> {
        self.inner.claim(now, max, lease).await
    }

    async fn ack(&self, events: &[OrderEvent]) -> Result<()> {
        self.inner.ack(events).await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::clock::ManualClock;
    use crate::memory::MemoryStockStore;
    use crate::model::{IdempotencyKey, Quantity, UserId};
    use crate::testing::hooked::{Answer, Hooked, StockCall, StockHook};

    const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);
    const TTL: Duration = Duration::from_millis(250);

    /// Counts the reserves that reach the store.
    struct CountReserves(Arc<AtomicUsize>);

    #[async_trait]
    impl StockHook for CountReserves {
        async fn around<T: Send + 'static>(
            &self,
            call: StockCall<'_>,
            answer: Answer<T>,
        ) -> Result<T> {
            if let StockCall::Reserve(_) = call {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
            answer.await
        }
    }

    type Counting = Hooked<MemoryStockStore, CountReserves>;

    struct Fixture {
        cache: SoldOutCache<Counting>,
        /// The same store, bypassing the cache (another app server).
        other: Arc<MemoryStockStore>,
        reserves: Arc<AtomicUsize>,
        clock: ManualClock,
        product: ProductId,
    }

    async fn fixture(stock: u32) -> Fixture {
        fixture_with(Sale::builder(ProductId::new("tickets").unwrap(), stock)).await
    }

    /// A sale with 1-minute holds.
    async fn hold_fixture(stock: u32) -> Fixture {
        fixture_with(
            Sale::builder(ProductId::new("tickets").unwrap(), stock).hold(Duration::from_secs(60)),
        )
        .await
    }

    async fn fixture_with(sale: crate::model::SaleBuilder) -> Fixture {
        let store = Arc::new(MemoryStockStore::new());
        let reserves = Arc::new(AtomicUsize::new(0));
        let clock = ManualClock::new(T0);
        let cache = SoldOutCache::with_clock(
            Hooked::new(store.clone(), CountReserves(reserves.clone())),
            TTL,
            Arc::new(clock.clone()),
        );
        let sale = sale.build().unwrap();
        let product = sale.product().clone();
        cache.create_sale(&sale).await.unwrap();
        Fixture {
            cache,
            other: store,
            reserves,
            clock,
            product,
        }
    }

    fn req(p: &ProductId, user: &str, q: u32) -> ReserveRequest {
        ReserveRequest {
            order_id: OrderId::new(T0),
            product: p.clone(),
            user: UserId::new(user).unwrap(),
            quantity: Quantity::new(i64::from(q)).unwrap(),
            idempotency_key: None,
            now: T0,
        }
    }

    async fn reserve(f: &Fixture, user: &str, q: u32) -> ReserveOutcome {
        f.cache.reserve(&req(&f.product, user, q)).await.unwrap()
    }

    #[tokio::test]
    async fn sold_out_is_answered_locally_within_the_ttl() {
        let f = fixture(1).await;
        assert!(matches!(
            reserve(&f, "a", 1).await,
            ReserveOutcome::Reserved(_)
        ));
        assert_eq!(reserve(&f, "b", 1).await, ReserveOutcome::SoldOut);
        assert_eq!(f.reserves.load(Ordering::SeqCst), 2);
        for _ in 0..100 {
            assert_eq!(reserve(&f, "c", 1).await, ReserveOutcome::SoldOut);
        }
        assert_eq!(f.reserves.load(Ordering::SeqCst), 2, "no round trips");
        assert_eq!(f.cache.hits(), 100);
    }

    #[tokio::test]
    async fn a_restock_elsewhere_is_hidden_for_at_most_the_ttl() {
        let f = fixture(1).await;
        reserve(&f, "a", 1).await;
        assert_eq!(reserve(&f, "b", 1).await, ReserveOutcome::SoldOut);
        // Another instance restocks, bypassing this cache.
        let more = Sale::builder(f.product.clone(), 5).build().unwrap();
        f.other.create_sale(&more).await.unwrap();
        f.clock.advance(TTL - Duration::from_millis(1));
        assert_eq!(reserve(&f, "b", 1).await, ReserveOutcome::SoldOut);
        f.clock.advance(Duration::from_millis(1));
        assert!(matches!(
            reserve(&f, "b", 1).await,
            ReserveOutcome::Reserved(_)
        ));
    }

    #[tokio::test]
    async fn a_backwards_wall_clock_step_does_not_lengthen_the_hiding() {
        let f = fixture(1).await;
        reserve(&f, "a", 1).await;
        assert_eq!(reserve(&f, "b", 1).await, ReserveOutcome::SoldOut);
        // The wall clock steps back 100 ms (an NTP correction), then more
        // than the TTL passes; meanwhile another instance restocks.
        f.clock.set(Timestamp::from_millis(T0.as_millis() - 100));
        f.clock.advance(TTL + Duration::from_millis(50));
        let more = Sale::builder(f.product.clone(), 5).build().unwrap();
        f.other.create_sale(&more).await.unwrap();
        // A request made now (after the sell-out by the wall clock, less
        // than one TTL after it by the stepped wall clock) sees the
        // restock: the TTL is over in real time.
        let mut late = req(&f.product, "b", 1);
        late.now = f.clock.now();
        assert!(late.now >= T0 && late.now < T0.saturating_add(TTL));
        assert!(matches!(
            f.cache.reserve(&late).await.unwrap(),
            ReserveOutcome::Reserved(_)
        ));
    }

    #[tokio::test]
    async fn a_cancel_elsewhere_is_hidden_for_at_most_the_ttl() {
        let f = hold_fixture(1).await;
        let ReserveOutcome::Reserved(r) = reserve(&f, "a", 1).await else {
            panic!("expected a reservation");
        };
        assert_eq!(reserve(&f, "b", 1).await, ReserveOutcome::SoldOut);
        f.other.cancel(&f.product, &r.order_id, T0).await.unwrap();
        f.clock.advance(TTL / 2);
        assert_eq!(reserve(&f, "b", 1).await, ReserveOutcome::SoldOut);
        f.clock.advance(TTL / 2);
        assert!(matches!(
            reserve(&f, "b", 1).await,
            ReserveOutcome::Reserved(_)
        ));
    }

    #[tokio::test]
    async fn local_voids_and_restocks_clear_at_once() {
        let f = fixture(1).await;
        let first = req(&f.product, "a", 1);
        assert!(matches!(
            f.cache.reserve(&first).await.unwrap(),
            ReserveOutcome::Reserved(_)
        ));
        assert_eq!(reserve(&f, "b", 1).await, ReserveOutcome::SoldOut);
        assert_eq!(f.cache.void(&first, T0).await.unwrap(), VoidOutcome::Voided);
        assert!(matches!(
            reserve(&f, "b", 1).await,
            ReserveOutcome::Reserved(_)
        ));
        assert_eq!(reserve(&f, "c", 1).await, ReserveOutcome::SoldOut);
        let more = Sale::builder(f.product.clone(), 2).build().unwrap();
        f.cache.create_sale(&more).await.unwrap();
        assert!(matches!(
            reserve(&f, "c", 1).await,
            ReserveOutcome::Reserved(_)
        ));
    }

    #[tokio::test]
    async fn local_expiry_clears_at_once() {
        let f = hold_fixture(1).await;
        reserve(&f, "a", 1).await;
        assert_eq!(reserve(&f, "b", 1).await, ReserveOutcome::SoldOut);
        let late = T0.saturating_add(Duration::from_secs(60));
        assert_eq!(f.cache.expire(late, 10).await.unwrap().len(), 1);
        assert!(matches!(
            reserve(&f, "b", 1).await,
            ReserveOutcome::Reserved(_)
        ));
    }

    #[tokio::test]
    async fn smaller_requests_that_may_fit_still_go_through() {
        let f = fixture(3).await;
        reserve(&f, "a", 2).await;
        assert_eq!(reserve(&f, "b", 2).await, ReserveOutcome::SoldOut);
        assert_eq!(reserve(&f, "b", 3).await, ReserveOutcome::SoldOut);
        assert_eq!(f.reserves.load(Ordering::SeqCst), 2, "2+ answered locally");
        assert!(matches!(
            reserve(&f, "b", 1).await,
            ReserveOutcome::Reserved(_)
        ));
        assert_eq!(reserve(&f, "c", 1).await, ReserveOutcome::SoldOut);
        assert_eq!(f.reserves.load(Ordering::SeqCst), 4);
        assert_eq!(reserve(&f, "d", 1).await, ReserveOutcome::SoldOut);
        assert_eq!(f.reserves.load(Ordering::SeqCst), 4, "1+ answered locally");
    }

    #[tokio::test]
    async fn known_sold_out_says_exactly_what_reserve_would_answer_locally() {
        let f = fixture(3).await;
        let ask = |user: &str, q: u32| f.cache.known_sold_out(&req(&f.product, user, q));
        // Nothing seen yet: nothing known, and asking costs no round trip.
        assert!(!ask("a", 1));
        reserve(&f, "a", 2).await;
        assert!(!ask("b", 2), "the store has not said sold out yet");
        assert_eq!(reserve(&f, "b", 2).await, ReserveOutcome::SoldOut);
        let hits = f.cache.hits();
        assert!(ask("b", 2) && ask("c", 3), "2 or more units are known gone");
        assert!(!ask("c", 1), "1 unit may still fit");
        assert_eq!(f.cache.hits(), hits + 2, "each known answer is a hit");
        let mut keyed = req(&f.product, "c", 2);
        keyed.idempotency_key = Some(IdempotencyKey::new("k").unwrap());
        assert!(
            !f.cache.known_sold_out(&keyed),
            "a key must reach the store"
        );
        assert_eq!(f.reserves.load(Ordering::SeqCst), 2, "asking is local");
        // Units back through this instance: nothing is known any more.
        f.cache
            .create_sale(&Sale::builder(f.product.clone(), 5).build().unwrap())
            .await
            .unwrap();
        assert!(!ask("b", 2));
        // And the TTL bounds what is known.
        assert!(matches!(
            reserve(&f, "b", 2).await,
            ReserveOutcome::Reserved(_)
        ));
        assert_eq!(reserve(&f, "c", 2).await, ReserveOutcome::SoldOut);
        assert!(ask("d", 2));
        f.clock.advance(TTL);
        assert!(!ask("d", 2));
    }

    #[tokio::test]
    async fn keyed_requests_always_reach_the_store() {
        let f = fixture(1).await;
        let key = IdempotencyKey::new("k").unwrap();
        let mut first = req(&f.product, "a", 1);
        first.idempotency_key = Some(key.clone());
        let ReserveOutcome::Reserved(r) = f.cache.reserve(&first).await.unwrap() else {
            panic!("expected a reservation");
        };
        assert_eq!(reserve(&f, "b", 1).await, ReserveOutcome::SoldOut);
        let mut retry = req(&f.product, "a", 1);
        retry.idempotency_key = Some(key);
        assert_eq!(
            f.cache.reserve(&retry).await.unwrap(),
            ReserveOutcome::Duplicate(r)
        );
    }

    #[tokio::test]
    async fn requests_older_than_the_sell_out_reach_the_store() {
        let f = fixture(1).await;
        let first = req(&f.product, "a", 1);
        let ReserveOutcome::Reserved(r) = f.cache.reserve(&first).await.unwrap() else {
            panic!("expected a reservation");
        };
        f.clock.advance(Duration::from_millis(10));
        let mut late = req(&f.product, "b", 1);
        late.now = f.clock.now();
        assert_eq!(
            f.cache.reserve(&late).await.unwrap(),
            ReserveOutcome::SoldOut
        );
        let before = f.reserves.load(Ordering::SeqCst);
        // The first request re-sent (a retry below the engine): its own
        // reservation, from the store.
        assert_eq!(
            f.cache.reserve(&first).await.unwrap(),
            ReserveOutcome::Reserved(r)
        );
        assert_eq!(f.reserves.load(Ordering::SeqCst), before + 1);
        late.order_id = OrderId::new(late.now);
        assert_eq!(
            f.cache.reserve(&late).await.unwrap(),
            ReserveOutcome::SoldOut
        );
        assert_eq!(
            f.reserves.load(Ordering::SeqCst),
            before + 1,
            "answered locally"
        );
    }

    #[tokio::test]
    async fn a_sold_out_racing_a_local_release_is_not_cached() {
        let f = fixture(1).await;
        reserve(&f, "a", 1).await;
        // Simulate the race: the epoch moves between asking and answering.
        let r = req(&f.product, "b", 1);
        let epoch = f.cache.epoch.load(Ordering::Acquire);
        f.cache.invalidate(&f.product);
        f.cache.remember(&r, epoch);
        assert!(!f.cache.refuses(&r, f.clock.monotonic()));
        f.cache.remember(&r, f.cache.epoch.load(Ordering::Acquire));
        assert!(f.cache.refuses(&r, f.clock.monotonic()));
    }
}
