//! The engine end to end on the in-memory backends, with a manual clock:
//! rate limiting, idempotency and replays (which win over a closed window,
//! changed terms and the per-user cap), holds (confirm, cancel, expiry,
//! sweeper) with one outbox event per state change, the two hand-off
//! modes, the relay, and configuration errors.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flashsale::RelayConfig;
use flashsale::http::ApiResponse;
use flashsale::machine::HandOff;
use flashsale::memory::{
    MemoryOrderSink, MemoryRateLimiter, MemoryStockStore, StaticAuthenticator,
};
use flashsale::{
    Clock, Credentials, Engine, Error, IdempotencyKey, ManualClock, OrderId, Outcome, ProductId,
    PurchaseRequest, Quantity, RateQuota, Sale, SoldOutCache, StockStore, Timestamp,
};
use flashsale::{EventType, OrderEvent, OrderStatus, Principal, StockLevels, UserId};
use flashsale::{RateDecision, RateLimiter, ReserveOutcome, ReserveRequest, SaleWrite};

const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

struct Shop {
    engine: Engine,
    clock: ManualClock,
    store: Arc<MemoryStockStore>,
    sink: Arc<MemoryOrderSink>,
}

fn auth() -> StaticAuthenticator {
    StaticAuthenticator::new()
        .with_token("alice", Principal::user(UserId::new("alice").unwrap()))
        .with_token("bob", Principal::user(UserId::new("bob").unwrap()))
        .with_token(
            "root",
            Principal {
                user: UserId::new("root").unwrap(),
                roles: vec!["admin".into()],
            },
        )
}

fn shop_with(quota: &str, hand_off: HandOff) -> Shop {
    let clock = ManualClock::new(T0);
    let store = Arc::new(MemoryStockStore::new());
    let sink = Arc::new(MemoryOrderSink::new());
    let quota: RateQuota = quota.parse().unwrap();
    let engine = Engine::builder()
        .stock_store(store.clone())
        .rate_limiter(Arc::new(MemoryRateLimiter::with_clock(
            quota,
            Arc::new(clock.clone()),
        )))
        .order_sink(sink.clone())
        .authenticator(Arc::new(auth()))
        .clock(Arc::new(clock.clone()))
        .hand_off(hand_off)
        .build()
        .unwrap();
    Shop {
        engine,
        clock,
        store,
        sink,
    }
}

fn shop(quota: &str) -> Shop {
    shop_with(quota, HandOff::Outbox)
}

fn pid(s: &str) -> ProductId {
    ProductId::new(s).unwrap()
}

fn buy(p: &str, q: i64) -> PurchaseRequest {
    PurchaseRequest::new(pid(p), Quantity::new(q).unwrap())
}

fn keyed(p: &str, q: i64, key: &str) -> PurchaseRequest {
    buy(p, q).with_idempotency_key(IdempotencyKey::new(key).unwrap())
}

fn as_(token: &str) -> Credentials {
    Credentials::bearer(token)
}

async fn levels(s: &Shop, p: &str) -> StockLevels {
    s.engine.snapshot(&pid(p)).await.unwrap().unwrap()
}

fn order_of(o: &Outcome) -> OrderId {
    o.purchase()
        .unwrap_or_else(|| panic!("not a purchase: {o:?}"))
        .order
        .order_id
}

/// Relays everything and returns the sink's distinct events as
/// `(type, order id)`.
async fn delivered(s: &Shop) -> Vec<(EventType, OrderId)> {
    s.engine.drain_outbox().await.unwrap();
    s.sink
        .events()
        .iter()
        .map(|e| (e.event_type, e.event_id.order_id()))
        .collect()
}

/// Asserts `o` is the 200 replay of `original`: same order, the
/// `Idempotent-Replayed` header, and nothing new reserved.
fn assert_replay_of(o: &Outcome, original: OrderId) {
    assert!(matches!(o, Outcome::Replayed(_)), "{o:?}");
    assert_eq!(order_of(o), original);
    let http = ApiResponse::from_outcome(o);
    assert_eq!(http.status, 200);
    assert_eq!(http.header("idempotent-replayed"), Some("true"));
}

/// A hold sale of 4 units of `seat`, held for 60 s.
async fn hold_sale(s: &Shop) {
    let sale = Sale::builder(pid("seat"), 4)
        .hold(Duration::from_secs(60))
        .build()
        .unwrap();
    s.engine.create_sale(&sale).await.unwrap();
}

async fn held_order(s: &Shop, who: &str) -> OrderId {
    match s.engine.purchase(&as_(who), buy("seat", 1)).await {
        Outcome::Purchased(p) => {
            assert_eq!(
                p.status,
                OrderStatus::Held {
                    expires_at: s.clock.now().saturating_add(Duration::from_secs(60))
                }
            );
            assert!(p.order.hold_expires_at.is_some());
            p.order.order_id
        }
        other => panic!("{other:?}"),
    }
}

mod builder;
mod hand_off;
mod holds;
mod lookups;
mod purchases;
mod replays;
