//! The engine end to end on the in-memory backends, with a manual clock:
//! rate limiting, idempotency, holds (confirm, cancel, expiry, sweeper) and
//! configuration errors.

use std::sync::Arc;
use std::time::Duration;

use flashsale::memory::{
    MemoryOrderSink, MemoryRateLimiter, MemoryStockStore, StaticAuthenticator,
};
use flashsale::model::{OrderStatus, Principal, StockLevels, UserId};
use flashsale::{
    Credentials, Engine, Error, IdempotencyKey, ManualClock, Outcome, ProductId, PurchaseRequest,
    Quantity, RateQuota, Sale, Timestamp,
};

const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

struct Shop {
    engine: Engine,
    clock: ManualClock,
    sink: Arc<MemoryOrderSink>,
}

fn shop(quota: &str) -> Shop {
    let clock = ManualClock::new(T0);
    let auth = StaticAuthenticator::new()
        .with_token("alice", Principal::user(UserId::new("alice").unwrap()))
        .with_token("bob", Principal::user(UserId::new("bob").unwrap()))
        .with_token(
            "root",
            Principal {
                user: UserId::new("root").unwrap(),
                roles: vec!["admin".into()],
            },
        );
    let sink = Arc::new(MemoryOrderSink::new());
    let quota: RateQuota = quota.parse().unwrap();
    let engine = Engine::builder()
        .stock_store(Arc::new(MemoryStockStore::new()))
        .rate_limiter(Arc::new(MemoryRateLimiter::with_clock(
            quota,
            Arc::new(clock.clone()),
        )))
        .order_sink(sink.clone())
        .authenticator(Arc::new(auth))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    Shop {
        engine,
        clock,
        sink,
    }
}

fn pid(s: &str) -> ProductId {
    ProductId::new(s).unwrap()
}

fn buy(p: &str, q: i64) -> PurchaseRequest {
    PurchaseRequest::new(pid(p), Quantity::new(q).unwrap())
}

fn as_(token: &str) -> Credentials {
    Credentials::bearer(token)
}

async fn levels(s: &Shop, p: &str) -> StockLevels {
    s.engine.snapshot(&pid(p)).await.unwrap().unwrap()
}

#[tokio::test]
async fn burst_then_rate_limited_with_retry_after_then_admitted() {
    let s = shop("2/1m");
    let sale = Sale::builder(pid("p"), 100).build().unwrap();
    s.engine.create_sale(&sale).await.unwrap();
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 1)).await.code(),
        "purchased"
    );
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 1)).await.code(),
        "purchased"
    );
    let limited = s.engine.purchase(&as_("alice"), buy("p", 1)).await;
    assert_eq!(
        limited,
        Outcome::RateLimited {
            retry_after: Duration::from_secs(30)
        }
    );
    assert_eq!(limited.http_status(), 429);
    // Another buyer is not affected; the limited attempt reserved nothing.
    assert_eq!(
        s.engine.purchase(&as_("bob"), buy("p", 1)).await.code(),
        "purchased"
    );
    assert_eq!(levels(&s, "p").await.committed, 3);
    s.clock.advance(Duration::from_secs(30));
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 1)).await.code(),
        "purchased"
    );
}

#[tokio::test]
async fn idempotent_replay_returns_the_original_and_conflict_is_refused() {
    let s = shop("100/1s");
    s.engine
        .create_sale(&Sale::builder(pid("p"), 10).build().unwrap())
        .await
        .unwrap();
    let key = IdempotencyKey::new("checkout-42").unwrap();
    let first = s
        .engine
        .purchase(&as_("alice"), buy("p", 2).with_idempotency_key(key.clone()))
        .await;
    let Outcome::Purchased(original) = first else {
        panic!("{first:?}")
    };
    let again = s
        .engine
        .purchase(&as_("alice"), buy("p", 2).with_idempotency_key(key.clone()))
        .await;
    match again {
        Outcome::Replayed(p) => {
            assert_eq!(p.order, original.order);
            assert_eq!(p.status, OrderStatus::Confirmed);
        }
        other => panic!("{other:?}"),
    }
    let conflict = s
        .engine
        .purchase(&as_("alice"), buy("p", 3).with_idempotency_key(key.clone()))
        .await;
    assert_eq!(conflict, Outcome::IdempotencyConflict);
    assert_eq!(conflict.http_status(), 409);
    // Bob's use of the same key is his own request.
    let bobs = s
        .engine
        .purchase(&as_("bob"), buy("p", 1).with_idempotency_key(key))
        .await;
    assert_eq!(bobs.code(), "purchased");
    assert_eq!(levels(&s, "p").await.committed, 3);
    assert_eq!(s.sink.len(), 2, "one order per key");
}

async fn hold_sale(s: &Shop) {
    let sale = Sale::builder(pid("seat"), 4)
        .hold(Duration::from_secs(60))
        .build()
        .unwrap();
    s.engine.create_sale(&sale).await.unwrap();
}

async fn held_order(s: &Shop, who: &str) -> flashsale::OrderId {
    match s.engine.purchase(&as_(who), buy("seat", 1)).await {
        Outcome::Purchased(p) => {
            assert_eq!(
                p.status,
                OrderStatus::Held {
                    expires_at: T0.saturating_add(Duration::from_secs(60))
                }
            );
            p.order.order_id
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn held_orders_are_confirmed_by_their_buyer_or_an_admin_only() {
    let s = shop("100/1s");
    hold_sale(&s).await;
    let order = held_order(&s, "alice").await;
    assert_eq!(levels(&s, "seat").await.held, 1);
    assert_eq!(
        s.engine.confirm(&as_("bob"), &order).await,
        Outcome::Forbidden
    );
    assert_eq!(
        s.engine.confirm(&Credentials::none(), &order).await.code(),
        "unauthenticated"
    );
    let ok = s.engine.confirm(&as_("alice"), &order).await;
    assert_eq!(ok.purchase().unwrap().status, OrderStatus::Confirmed);
    // Confirming again answers the same; cancelling now is refused.
    assert_eq!(
        s.engine.confirm(&as_("root"), &order).await.code(),
        "order_updated"
    );
    assert_eq!(
        s.engine.cancel(&as_("alice"), &order).await,
        Outcome::OrderClosed(OrderStatus::Confirmed)
    );
    assert_eq!(levels(&s, "seat").await.committed, 1);
    let unknown = flashsale::OrderId::new(T0);
    assert_eq!(
        s.engine.confirm(&as_("alice"), &unknown).await,
        Outcome::UnknownOrder
    );
}

#[tokio::test]
async fn cancelled_holds_return_units_and_cannot_be_confirmed() {
    let s = shop("100/1s");
    hold_sale(&s).await;
    let order = held_order(&s, "alice").await;
    let out = s.engine.cancel(&as_("root"), &order).await;
    assert_eq!(out.purchase().unwrap().status, OrderStatus::Cancelled);
    assert_eq!(
        s.engine.cancel(&as_("alice"), &order).await.code(),
        "order_updated"
    );
    assert_eq!(
        s.engine.confirm(&as_("alice"), &order).await,
        Outcome::OrderClosed(OrderStatus::Cancelled)
    );
    assert_eq!(levels(&s, "seat").await.available, 4);
}

#[tokio::test]
async fn unconfirmed_holds_expire_and_the_sweeper_returns_them() {
    let s = shop("100/1s");
    hold_sale(&s).await;
    let a = held_order(&s, "alice").await;
    held_order(&s, "bob").await;
    assert_eq!(levels(&s, "seat").await.available, 2);
    assert_eq!(s.engine.expire_holds().await.unwrap(), 0);
    s.clock.advance(Duration::from_secs(60));
    // Confirming after the deadline fails even before any sweep.
    assert_eq!(
        s.engine.confirm(&as_("alice"), &a).await,
        Outcome::OrderClosed(OrderStatus::Expired)
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sweeper = s
        .engine
        .spawn_sweeper(Duration::from_millis(5), async move {
            let _ = stopped.await;
        });
    for _ in 0..200 {
        if levels(&s, "seat").await.available == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();
    sweeper.await.unwrap();
    let l = levels(&s, "seat").await;
    assert_eq!((l.available, l.held), (4, 0), "{l:?}");
}

#[tokio::test]
async fn validation_happens_before_any_port_is_called() {
    let s = shop("1/1h");
    let sale = Sale::builder(pid("p"), 10)
        .per_order_max(2)
        .starts_at(T0.saturating_add(Duration::from_secs(10)))
        .build()
        .unwrap();
    s.engine.create_sale(&sale).await.unwrap();
    // None of these spend alice's only rate-limit token.
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 3)).await.code(),
        "invalid_request"
    );
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 1)).await,
        Outcome::NotOnSale
    );
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("nope", 1)).await,
        Outcome::UnknownProduct
    );
    s.clock.advance(Duration::from_secs(10));
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 2)).await.code(),
        "purchased"
    );
    assert_eq!(
        s.engine
            .purchase(&Credentials::none(), buy("p", 1))
            .await
            .code(),
        "unauthenticated"
    );
}

#[tokio::test]
async fn restock_is_seen_at_once_and_cannot_go_below_sold() {
    let s = shop("100/1s");
    s.engine
        .create_sale(&Sale::builder(pid("p"), 1).build().unwrap())
        .await
        .unwrap();
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 1)).await.code(),
        "purchased"
    );
    assert_eq!(
        s.engine.purchase(&as_("bob"), buy("p", 1)).await,
        Outcome::SoldOut
    );
    let below = Sale::builder(pid("p"), 0).build().unwrap();
    assert!(matches!(
        s.engine.create_sale(&below).await.unwrap(),
        flashsale::ports::SaleWrite::StockBelowSold {
            held_or_committed: 1
        }
    ));
    s.engine
        .create_sale(&Sale::builder(pid("p"), 2).build().unwrap())
        .await
        .unwrap();
    assert_eq!(
        s.engine.purchase(&as_("bob"), buy("p", 1)).await.code(),
        "purchased"
    );
}

#[test]
fn builder_says_what_is_missing_or_inconsistent() {
    let err = Engine::builder().build().unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("stock store")),
        "{err}"
    );
    let err = Engine::builder()
        .stock_store(Arc::new(MemoryStockStore::new()))
        .rate_limiter(Arc::new(MemoryRateLimiter::per_second(1).unwrap()))
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(Arc::new(StaticAuthenticator::new()))
        .port_timeout(Duration::from_secs(20))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("pending_ttl")),
        "{err}"
    );
}

#[tokio::test]
async fn a_retry_after_a_crash_finishes_the_original_purchase_once() {
    use flashsale::StockStore;
    use flashsale::ports::{ReserveOutcome, ReserveRequest};
    // A first request reserved under its key, then its server died before
    // the order reached the sink: the hold sits there, uncommitted.
    let clock = ManualClock::new(T0);
    let store = Arc::new(MemoryStockStore::new());
    let sale = Sale::builder(pid("p"), 5).build().unwrap();
    store.create_sale(&sale).await.unwrap();
    let key = IdempotencyKey::new("crash-1").unwrap();
    let first = ReserveRequest {
        order_id: flashsale::OrderId::new(T0),
        product: pid("p"),
        user: UserId::new("alice").unwrap(),
        quantity: Quantity::new(2).unwrap(),
        idempotency_key: Some(key.clone()),
        now: T0,
        pending_ttl: Duration::from_secs(30),
    };
    let ReserveOutcome::Reserved(orphan) = store.reserve(&first).await.unwrap() else {
        panic!()
    };
    let sink = Arc::new(MemoryOrderSink::new());
    let engine = Engine::builder()
        .stock_store(store.clone())
        .rate_limiter(Arc::new(MemoryRateLimiter::per_second(100).unwrap()))
        .order_sink(sink.clone())
        .authenticator(Arc::new(
            StaticAuthenticator::new()
                .with_token("alice", Principal::user(UserId::new("alice").unwrap())),
        ))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    // The client retries with its key on another server.
    let retry = engine
        .purchase(&as_("alice"), buy("p", 2).with_idempotency_key(key.clone()))
        .await;
    match &retry {
        Outcome::Replayed(p) => {
            assert_eq!(p.order.order_id, orphan.order_id);
            assert_eq!(p.status, OrderStatus::Confirmed);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sink.orders(),
        vec![orphan.to_order()],
        "the order reached the sink once"
    );
    let l = engine.snapshot(&pid("p")).await.unwrap().unwrap();
    assert_eq!((l.held, l.committed), (0, 2));
    // And again: a plain replay, still one order.
    let again = engine
        .purchase(&as_("alice"), buy("p", 2).with_idempotency_key(key))
        .await;
    assert_eq!(again.code(), "replayed");
    assert_eq!(sink.len(), 1);
}
