//! The engine against failing ports (mockall mocks and hand-written ports
//! that never answer): every failure ends `Unavailable` with nothing left
//! reserved.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flashsale::memory::{
    MemoryOrderSink, MemoryRateLimiter, MemoryStockStore, StaticAuthenticator,
};
use flashsale::model::{
    AuthRejection, Credentials, IdempotencyKey, Order, OrderId, Principal, ProductId, Receipt,
    Reservation, StockLevels, Timestamp, UserId,
};
use flashsale::ports::{
    CommitOutcome, OrderSink, RateDecision, RateLimiter, ReleaseOutcome, ReleaseReason,
    ReserveOutcome, ReserveRequest, SaleWrite, StockStore,
};
use flashsale::{Authenticator, Engine, Error, Outcome, PurchaseRequest, Quantity, Sale};
use mockall::mock;

mock! {
    Sink {}
    #[async_trait]
    impl OrderSink for Sink {
        async fn submit(&self, order: &Order) -> flashsale::Result<Receipt>;
    }
}

mock! {
    Limiter {}
    #[async_trait]
    impl RateLimiter for Limiter {
        async fn check(&self, key: &str, cost: u32) -> flashsale::Result<RateDecision>;
    }
}

mock! {
    Auth {}
    #[async_trait]
    impl Authenticator for Auth {
        async fn authenticate(&self, credentials: &Credentials)
            -> flashsale::Result<Result<Principal, AuthRejection>>;
    }
}

mock! {
    Store {}
    #[async_trait]
    impl StockStore for Store {
        async fn create_sale(&self, sale: &Sale) -> flashsale::Result<SaleWrite>;
        async fn sale(&self, product: &ProductId) -> flashsale::Result<Option<Sale>>;
        async fn reserve(&self, req: &ReserveRequest) -> flashsale::Result<ReserveOutcome>;
        async fn commit(&self, product: &ProductId, order: &OrderId, now: Timestamp)
            -> flashsale::Result<CommitOutcome>;
        async fn release(&self, product: &ProductId, order: &OrderId, reason: ReleaseReason)
            -> flashsale::Result<ReleaseOutcome>;
        async fn reservation(&self, order: &OrderId) -> flashsale::Result<Option<Reservation>>;
        async fn expire(&self, now: Timestamp, max: usize) -> flashsale::Result<Vec<Reservation>>;
        async fn snapshot(&self, product: &ProductId) -> flashsale::Result<Option<StockLevels>>;
    }
}

/// A sink that never answers.
struct HangingSink;

#[async_trait]
impl OrderSink for HangingSink {
    async fn submit(&self, _: &Order) -> flashsale::Result<Receipt> {
        std::future::pending().await
    }
}

fn boom(op: &'static str) -> Error {
    Error::backend("test", op, "injected failure")
}

fn product() -> ProductId {
    ProductId::new("gpu").unwrap()
}

fn alice() -> Principal {
    Principal::user(UserId::new("alice").unwrap())
}

fn creds() -> Credentials {
    Credentials::bearer("alice-token")
}

fn auth() -> Arc<StaticAuthenticator> {
    Arc::new(StaticAuthenticator::new().with_token("alice-token", alice()))
}

fn limiter() -> Arc<MemoryRateLimiter> {
    Arc::new(MemoryRateLimiter::per_second(1_000).unwrap())
}

fn buy(q: i64) -> PurchaseRequest {
    PurchaseRequest::new(product(), Quantity::new(q).unwrap())
}

async fn store_with_sale(stock: u32) -> Arc<MemoryStockStore> {
    let store = Arc::new(MemoryStockStore::new());
    let sale = Sale::builder(product(), stock).build().unwrap();
    store.create_sale(&sale).await.unwrap();
    store
}

async fn levels(store: &MemoryStockStore) -> StockLevels {
    store.snapshot(&product()).await.unwrap().unwrap()
}

fn full(total: u64) -> StockLevels {
    StockLevels {
        total,
        available: total,
        held: 0,
        committed: 0,
    }
}

#[tokio::test]
async fn sink_failure_releases_the_hold_and_the_key_can_retry() {
    let store = store_with_sale(5).await;
    let mut sink = MockSink::new();
    sink.expect_submit()
        .times(1)
        .returning(|_| Err(boom("submit")));
    let engine = Engine::builder()
        .stock_store(store.clone())
        .rate_limiter(limiter())
        .order_sink(Arc::new(sink))
        .authenticator(auth())
        .build()
        .unwrap();
    let key = IdempotencyKey::new("once").unwrap();
    let out = engine
        .purchase(&creds(), buy(2).with_idempotency_key(key.clone()))
        .await;
    assert_eq!(
        out,
        Outcome::Unavailable {
            retry_after: Duration::from_secs(1)
        }
    );
    assert_eq!(levels(&store).await, full(5));

    // The aborted attempt freed its key: a retry on a healthy sink buys.
    let healthy = Engine::builder()
        .stock_store(store.clone())
        .rate_limiter(limiter())
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(auth())
        .build()
        .unwrap();
    let out = healthy
        .purchase(&creds(), buy(2).with_idempotency_key(key))
        .await;
    assert_eq!(out.code(), "purchased");
    assert_eq!(levels(&store).await.committed, 2);
}

#[tokio::test(start_paused = true)]
async fn a_sink_that_never_answers_times_out_and_releases() {
    let store = store_with_sale(5).await;
    let timeout = Duration::from_millis(250);
    let engine = Engine::builder()
        .stock_store(store.clone())
        .rate_limiter(limiter())
        .order_sink(Arc::new(HangingSink))
        .authenticator(auth())
        .port_timeout(timeout)
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let out = engine.purchase(&creds(), buy(1)).await;
    assert_eq!(out.code(), "unavailable");
    assert_eq!(started.elapsed(), timeout, "exactly one timeout elapsed");
    assert_eq!(levels(&store).await, full(5));
}

#[tokio::test]
async fn rate_limiter_failure_reserves_nothing_and_submits_nothing() {
    let store = store_with_sale(5).await;
    let mut lim = MockLimiter::new();
    lim.expect_check()
        .withf(|key, cost| key == "alice" && *cost == 1)
        .times(1)
        .returning(|_, _| Err(boom("check")));
    let mut sink = MockSink::new();
    sink.expect_submit().never();
    let engine = Engine::builder()
        .stock_store(store.clone())
        .rate_limiter(Arc::new(lim))
        .order_sink(Arc::new(sink))
        .authenticator(auth())
        .build()
        .unwrap();
    assert_eq!(
        engine.purchase(&creds(), buy(1)).await.code(),
        "unavailable"
    );
    assert_eq!(levels(&store).await, full(5));
}

#[tokio::test]
async fn authenticator_failure_and_rejection_touch_no_other_port() {
    let mut store = MockStore::new();
    let sale = Sale::builder(product(), 5).build().unwrap();
    store
        .expect_sale()
        .returning(move |_| Ok(Some(sale.clone())));
    store.expect_reserve().never();
    let mut lim = MockLimiter::new();
    lim.expect_check().never();
    let mut a = MockAuth::new();
    let mut calls = 0;
    a.expect_authenticate().times(2).returning(move |_| {
        calls += 1;
        if calls == 1 {
            Err(boom("authenticate"))
        } else {
            Ok(Err(AuthRejection::Expired))
        }
    });
    let engine = Engine::builder()
        .stock_store(Arc::new(store))
        .rate_limiter(Arc::new(lim))
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(Arc::new(a))
        .build()
        .unwrap();
    assert_eq!(
        engine.purchase(&creds(), buy(1)).await.code(),
        "unavailable"
    );
    assert_eq!(
        engine.purchase(&creds(), buy(1)).await,
        Outcome::Unauthenticated(AuthRejection::Expired)
    );
}

#[tokio::test]
async fn store_failure_on_reserve_releases_the_requested_id() {
    let mut store = MockStore::new();
    let sale = Sale::builder(product(), 5).build().unwrap();
    store
        .expect_sale()
        .returning(move |_| Ok(Some(sale.clone())));
    let (tx, rx) = std::sync::mpsc::channel::<OrderId>();
    store.expect_reserve().times(1).returning(move |req| {
        tx.send(req.order_id).unwrap();
        Err(boom("reserve"))
    });
    let (rtx, rrx) = std::sync::mpsc::channel::<(OrderId, ReleaseReason)>();
    store
        .expect_release()
        .times(1)
        .returning(move |_, id, reason| {
            rtx.send((*id, reason)).unwrap();
            Ok(ReleaseOutcome::Unknown)
        });
    let mut sink = MockSink::new();
    sink.expect_submit().never();
    let engine = Engine::builder()
        .stock_store(Arc::new(store))
        .rate_limiter(limiter())
        .order_sink(Arc::new(sink))
        .authenticator(auth())
        .build()
        .unwrap();
    assert_eq!(
        engine.purchase(&creds(), buy(1)).await.code(),
        "unavailable"
    );
    let reserved_id = rx.recv().unwrap();
    assert_eq!(rrx.recv().unwrap(), (reserved_id, ReleaseReason::Aborted));
}

#[tokio::test]
async fn commit_failure_that_was_applied_is_still_a_purchase() {
    let inner = store_with_sale(5).await;
    let mut store = MockStore::new();
    let i = inner.clone();
    store
        .expect_sale()
        .returning(move |p| futures::executor::block_on(i.sale(p)));
    let i = inner.clone();
    store
        .expect_reserve()
        .returning(move |r| futures::executor::block_on(i.reserve(r)));
    // The commit applies, but its answer is lost on the wire.
    let i = inner.clone();
    store.expect_commit().times(1).returning(move |p, o, now| {
        futures::executor::block_on(i.commit(p, o, now)).unwrap();
        Err(boom("commit"))
    });
    let i = inner.clone();
    store
        .expect_release()
        .times(1)
        .returning(move |p, o, r| futures::executor::block_on(i.release(p, o, r)));
    let sink = Arc::new(MemoryOrderSink::new());
    let engine = Engine::builder()
        .stock_store(Arc::new(store))
        .rate_limiter(limiter())
        .order_sink(sink.clone())
        .authenticator(auth())
        .build()
        .unwrap();
    assert_eq!(engine.purchase(&creds(), buy(1)).await.code(), "purchased");
    assert_eq!(sink.len(), 1);
    assert_eq!(levels(&inner).await.committed, 1);
}

#[tokio::test]
async fn sale_lookup_failure_is_unavailable() {
    let mut store = MockStore::new();
    store
        .expect_sale()
        .times(1)
        .returning(|_| Err(boom("sale")));
    store.expect_reserve().never();
    let engine = Engine::builder()
        .stock_store(Arc::new(store))
        .rate_limiter(limiter())
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(auth())
        .build()
        .unwrap();
    assert_eq!(
        engine.purchase(&creds(), buy(1)).await.code(),
        "unavailable"
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_that_never_answers_times_out() {
    struct Hanging;
    #[async_trait]
    impl StockStore for Hanging {
        async fn create_sale(&self, _: &Sale) -> flashsale::Result<SaleWrite> {
            std::future::pending().await
        }
        async fn sale(&self, _: &ProductId) -> flashsale::Result<Option<Sale>> {
            std::future::pending().await
        }
        async fn reserve(&self, _: &ReserveRequest) -> flashsale::Result<ReserveOutcome> {
            std::future::pending().await
        }
        async fn commit(
            &self,
            _: &ProductId,
            _: &OrderId,
            _: Timestamp,
        ) -> flashsale::Result<CommitOutcome> {
            std::future::pending().await
        }
        async fn release(
            &self,
            _: &ProductId,
            _: &OrderId,
            _: ReleaseReason,
        ) -> flashsale::Result<ReleaseOutcome> {
            std::future::pending().await
        }
        async fn reservation(&self, _: &OrderId) -> flashsale::Result<Option<Reservation>> {
            std::future::pending().await
        }
        async fn expire(&self, _: Timestamp, _: usize) -> flashsale::Result<Vec<Reservation>> {
            std::future::pending().await
        }
        async fn snapshot(&self, _: &ProductId) -> flashsale::Result<Option<StockLevels>> {
            std::future::pending().await
        }
    }
    let engine = Engine::builder()
        .stock_store(Arc::new(Hanging))
        .rate_limiter(limiter())
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(auth())
        .port_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert_eq!(
        engine.purchase(&creds(), buy(1)).await.code(),
        "unavailable"
    );
    match engine.snapshot(&product()).await {
        Err(Error::Timeout { operation, after }) => {
            assert_eq!(operation, "snapshot");
            assert_eq!(after, Duration::from_millis(100));
        }
        other => panic!("{other:?}"),
    }
}
