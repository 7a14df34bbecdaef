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

#[tokio::test]
async fn burst_then_rate_limited_with_retry_after_then_admitted() {
    let s = shop("2/1m");
    let sale = Sale::builder(pid("p"), 100).build().unwrap();
    s.engine.create_sale(&sale).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            s.engine.purchase(&as_("alice"), buy("p", 1)).await.code(),
            "purchased"
        );
    }
    let limited = s.engine.purchase(&as_("alice"), buy("p", 1)).await;
    assert_eq!(
        limited,
        Outcome::RateLimited {
            retry_after: Duration::from_secs(30)
        }
    );
    let http = ApiResponse::from_outcome(&limited);
    assert_eq!(http.status, 429);
    assert_eq!(http.header("retry-after"), Some("30"));
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
    assert_eq!(
        delivered(&s).await.len(),
        4,
        "one placed event per purchase"
    );
}

#[tokio::test]
async fn idempotent_replay_returns_the_original_and_conflict_is_refused() {
    let s = shop("100/1s");
    s.engine
        .create_sale(&Sale::builder(pid("p"), 10).build().unwrap())
        .await
        .unwrap();
    let first = s
        .engine
        .purchase(&as_("alice"), keyed("p", 2, "checkout-42"))
        .await;
    let Outcome::Purchased(original) = &first else {
        panic!("{first:?}")
    };
    assert_eq!(
        ApiResponse::from_outcome(&first).header("idempotent-replayed"),
        None
    );
    let again = s
        .engine
        .purchase(&as_("alice"), keyed("p", 2, "checkout-42"))
        .await;
    assert_replay_of(&again, original.order.order_id);
    assert_eq!(again.purchase().unwrap().status, OrderStatus::Confirmed);
    assert_eq!(again.purchase().unwrap().order, original.order);
    let conflict = s
        .engine
        .purchase(&as_("alice"), keyed("p", 3, "checkout-42"))
        .await;
    assert_eq!(conflict, Outcome::IdempotencyConflict);
    assert_eq!(conflict.http_status(), 409);
    // Bob's use of the same key is his own request.
    let bobs = s
        .engine
        .purchase(&as_("bob"), keyed("p", 1, "checkout-42"))
        .await;
    assert_eq!(bobs.code(), "purchased");
    assert_eq!(levels(&s, "p").await.committed, 3);
    let events = delivered(&s).await;
    assert_eq!(
        events,
        {
            let mut want = vec![
                (EventType::Placed, original.order.order_id),
                (EventType::Placed, order_of(&bobs)),
            ];
            want.sort_by_key(|(_, id)| *id);
            want
        },
        "one order per key and buyer"
    );
}

// ------------------------------------------------------------ replays win

async fn keyed_purchase(s: &Shop, q: i64, key: &str) -> OrderId {
    let o = s.engine.purchase(&as_("alice"), keyed("p", q, key)).await;
    assert_eq!(o.code(), "purchased", "{o:?}");
    order_of(&o)
}

#[tokio::test]
async fn a_replay_after_the_sale_ended_gets_the_original_answer() {
    let s = shop("100/1s");
    let sale = Sale::builder(pid("p"), 10)
        .ends_at(T0.saturating_add(Duration::from_secs(10)))
        .build()
        .unwrap();
    s.engine.create_sale(&sale).await.unwrap();
    s.clock.advance(Duration::from_secs(9));
    let original = keyed_purchase(&s, 2, "late-answer").await;
    s.clock.advance(Duration::from_secs(5));
    // The answer was lost; the client retries after the end.
    let replay = s
        .engine
        .purchase(&as_("alice"), keyed("p", 2, "late-answer"))
        .await;
    assert_replay_of(&replay, original);
    // A new purchase after the end is refused, key or not.
    assert_eq!(
        s.engine.purchase(&as_("alice"), keyed("p", 2, "new")).await,
        Outcome::NotOnSale
    );
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 2)).await,
        Outcome::NotOnSale
    );
    assert_eq!(levels(&s, "p").await.committed, 2);
    assert_eq!(delivered(&s).await, vec![(EventType::Placed, original)]);
}

#[tokio::test]
async fn a_replay_after_a_restock_lowered_the_per_order_max_gets_the_original_answer() {
    let s = shop("100/1s");
    let sale = Sale::builder(pid("p"), 10)
        .per_order_max(3)
        .build()
        .unwrap();
    s.engine.create_sale(&sale).await.unwrap();
    let original = keyed_purchase(&s, 3, "big-order").await;
    let restock = Sale::builder(pid("p"), 20)
        .per_order_max(1)
        .build()
        .unwrap();
    assert_eq!(
        s.engine.create_sale(&restock).await.unwrap(),
        SaleWrite::Updated
    );
    let replay = s
        .engine
        .purchase(&as_("alice"), keyed("p", 3, "big-order"))
        .await;
    assert_replay_of(&replay, original);
    // A new order of 3 is above the new maximum, key or not.
    for req in [keyed("p", 3, "other"), buy("p", 3)] {
        match s.engine.purchase(&as_("alice"), req).await {
            Outcome::Invalid(e) => assert_eq!(e.field, "quantity"),
            other => panic!("{other:?}"),
        }
    }
    let l = levels(&s, "p").await;
    assert_eq!((l.total, l.committed), (20, 3));
    assert_eq!(delivered(&s).await, vec![(EventType::Placed, original)]);
}

#[tokio::test]
async fn a_replay_when_the_buyer_is_at_the_cap_or_stock_is_gone_gets_the_original_answer() {
    let s = shop("100/1s");
    let sale = Sale::builder(pid("p"), 3)
        .per_user_limit(2)
        .build()
        .unwrap();
    s.engine.create_sale(&sale).await.unwrap();
    let original = keyed_purchase(&s, 2, "at-cap").await;
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 1)).await,
        Outcome::LimitExceeded
    );
    let replay = s
        .engine
        .purchase(&as_("alice"), keyed("p", 2, "at-cap"))
        .await;
    assert_replay_of(&replay, original);
    // Bob takes the last unit: sold out, and the replay still wins.
    assert_eq!(
        s.engine.purchase(&as_("bob"), buy("p", 1)).await.code(),
        "purchased"
    );
    assert_eq!(
        s.engine.purchase(&as_("bob"), buy("p", 1)).await,
        Outcome::SoldOut
    );
    let replay = s
        .engine
        .purchase(&as_("alice"), keyed("p", 2, "at-cap"))
        .await;
    assert_replay_of(&replay, original);
    assert_eq!(levels(&s, "p").await.available, 0);
}

#[tokio::test]
async fn a_replay_under_await_sink_is_the_original_and_the_sink_keeps_one_order() {
    let s = shop_with(
        "100/1s",
        HandOff::AwaitSink {
            timeout: Duration::from_millis(200),
        },
    );
    s.engine
        .create_sale(&Sale::builder(pid("p"), 5).build().unwrap())
        .await
        .unwrap();
    let original = keyed_purchase(&s, 1, "k").await;
    // AwaitSink: the sink had the order before the 200.
    assert_eq!(s.sink.orders().len(), 1);
    let replay = s.engine.purchase(&as_("alice"), keyed("p", 1, "k")).await;
    assert_replay_of(&replay, original);
    assert_eq!(delivered(&s).await, vec![(EventType::Placed, original)]);
}

#[tokio::test]
async fn a_replay_of_a_cancelled_hold_answers_the_order_as_it_stands() {
    let s = shop("100/1s");
    hold_sale(&s).await;
    let o = s
        .engine
        .purchase(&as_("alice"), keyed("seat", 1, "seat-1"))
        .await;
    let id = order_of(&o);
    s.engine.cancel(&as_("alice"), &id).await;
    let replay = s
        .engine
        .purchase(&as_("alice"), keyed("seat", 1, "seat-1"))
        .await;
    assert_replay_of(&replay, id);
    assert_eq!(replay.purchase().unwrap().status, OrderStatus::Cancelled);
    assert_eq!(
        levels(&s, "seat").await.available,
        4,
        "the replay reserved nothing"
    );
}

/// A request with a key skips local validation so that a replay can win;
/// without a matching finished purchase the store refuses it the same way.
#[tokio::test]
async fn a_keyed_request_is_validated_by_the_store() {
    let s = shop("3/1h");
    let sale = Sale::builder(pid("p"), 10)
        .per_order_max(2)
        .starts_at(T0.saturating_add(Duration::from_secs(10)))
        .build()
        .unwrap();
    s.engine.create_sale(&sale).await.unwrap();
    assert_eq!(
        s.engine.purchase(&as_("alice"), keyed("p", 1, "a")).await,
        Outcome::NotOnSale
    );
    s.clock.advance(Duration::from_secs(10));
    match s.engine.purchase(&as_("alice"), keyed("p", 3, "b")).await {
        Outcome::Invalid(e) => assert_eq!(e.field, "quantity"),
        other => panic!("{other:?}"),
    }
    assert_eq!(levels(&s, "p").await.available, 10);
    // Both reached the store, so both spent one of alice's three tokens.
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 1)).await.code(),
        "purchased"
    );
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 1)).await.code(),
        "rate_limited"
    );
}

// ------------------------------------------------------------------ holds

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
    let l = levels(&s, "seat").await;
    assert_eq!((l.held, l.committed), (0, 1));
    let unknown = OrderId::new(T0);
    assert_eq!(
        s.engine.confirm(&as_("alice"), &unknown).await,
        Outcome::UnknownOrder
    );
    assert_eq!(
        delivered(&s).await,
        vec![(EventType::Placed, order), (EventType::Confirmed, order)],
        "one event per state change, none for the refused ones"
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
    assert_eq!(
        delivered(&s).await,
        vec![(EventType::Placed, order), (EventType::Cancelled, order)]
    );
}

#[tokio::test(start_paused = true)]
async fn unconfirmed_holds_expire_and_the_sweeper_returns_them_with_their_events() {
    let s = shop("100/1s");
    hold_sale(&s).await;
    let a = held_order(&s, "alice").await;
    let b = held_order(&s, "bob").await;
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
    let events: BTreeSet<_> = delivered(&s)
        .await
        .into_iter()
        .map(|(t, id)| (t.as_str(), id))
        .collect();
    let want: BTreeSet<_> = [("placed", a), ("expired", a), ("placed", b), ("expired", b)]
        .into_iter()
        .collect();
    assert_eq!(events, want, "each expiry has its event, once");
}

#[tokio::test]
async fn events_carry_stable_ids_seq_and_the_order() {
    let s = shop("100/1s");
    hold_sale(&s).await;
    let o = s
        .engine
        .purchase(&as_("alice"), keyed("seat", 2, "ev-1"))
        .await;
    let id = order_of(&o);
    s.engine.confirm(&as_("alice"), &id).await;
    s.engine.drain_outbox().await.unwrap();
    let events: Vec<OrderEvent> = s.sink.events();
    assert_eq!(events.len(), 2);
    for (e, (t, seq)) in events
        .iter()
        .zip([(EventType::Placed, 1), (EventType::Confirmed, 2)])
    {
        assert_eq!((e.event_type, e.seq), (t, seq));
        assert_eq!(e.event_id.to_string(), format!("{id}.{seq}"));
        assert_eq!(e.schema_version, OrderEvent::SCHEMA_VERSION);
        assert_eq!(&e.order, &o.purchase().unwrap().order);
    }
    // Relaying again delivers nothing new.
    assert_eq!(s.engine.drain_outbox().await.unwrap(), 0);
    assert_eq!(s.sink.duplicates(), 0);
}

// ----------------------------------------------------- hand-off and relay

#[tokio::test]
async fn await_sink_answers_200_once_the_sink_has_the_order() {
    let s = shop_with(
        "100/1s",
        HandOff::AwaitSink {
            timeout: Duration::from_millis(200),
        },
    );
    s.engine
        .create_sale(&Sale::builder(pid("p"), 5).build().unwrap())
        .await
        .unwrap();
    let o = s.engine.purchase(&as_("alice"), buy("p", 2)).await;
    assert_eq!(o.code(), "purchased");
    assert_eq!(s.sink.orders(), vec![o.purchase().unwrap().order.clone()]);
    // Acknowledged in the store at once: the relay has nothing to resend.
    assert_eq!(s.engine.drain_outbox().await.unwrap(), 0);
    assert_eq!(s.sink.duplicates(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_spawned_relay_delivers_each_purchase_promptly() {
    let s = shop("100/1s");
    s.engine
        .create_sale(&Sale::builder(pid("p"), 5).build().unwrap())
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = s
        .engine
        .spawn_relay(Duration::from_secs(3_600), async move {
            let _ = stopped.await;
        });
    let mut live = s.sink.subscribe();
    let o = s.engine.purchase(&as_("alice"), buy("p", 1)).await;
    let started = tokio::time::Instant::now();
    let e = live.recv().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "woken by the purchase, not by its hourly tick"
    );
    assert_eq!(
        (e.event_type, e.order.order_id),
        (EventType::Placed, order_of(&o))
    );
    stop.send(()).unwrap();
    relay.await.unwrap();
}

#[tokio::test]
async fn validation_happens_after_authentication_before_rate_or_store() {
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
    assert_eq!(
        s.engine.create_sale(&below).await.unwrap(),
        SaleWrite::StockBelowSold {
            held_or_committed: 1
        }
    );
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
    let ports = || {
        Engine::builder()
            .stock_store(Arc::new(MemoryStockStore::new()))
            .rate_limiter(Arc::new(MemoryRateLimiter::per_second(1).unwrap()))
            .order_sink(Arc::new(MemoryOrderSink::new()))
            .authenticator(Arc::new(StaticAuthenticator::new()))
    };
    assert!(ports().build().is_ok());
    let relay = RelayConfig {
        batch: 10,
        lease: Duration::from_secs(3),
        submit_timeout: Duration::from_secs(2),
    };
    // The lease must outlast a slow pass: its claim, its submit and its
    // ack (tests/relay_lease.rs has the sink's late deliveries).
    let err = ports()
        .relay(relay)
        .port_timeout(Duration::from_millis(500))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("lease")),
        "{err}"
    );
    assert!(
        ports()
            .relay(relay)
            .port_timeout(Duration::from_millis(499))
            .build()
            .is_ok()
    );
    let err = ports().port_timeout(Duration::ZERO).build().unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("port_timeout")),
        "{err}"
    );
    let err = ports()
        .hand_off(HandOff::AwaitSink {
            timeout: Duration::ZERO,
        })
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("AwaitSink")),
        "{err}"
    );
    let err = ports()
        .relay(RelayConfig {
            batch: 0,
            ..RelayConfig::default()
        })
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("batch")),
        "{err}"
    );
}

/// A first request reserved under its key, then its server died before
/// answering: the order stands, with its `placed` event in the outbox. The
/// client's retry on another server gets that order back, and the sink
/// gets it exactly once.
#[tokio::test]
async fn a_retry_after_a_crash_replays_the_orphaned_order_once() {
    let s = shop("100/1s");
    s.engine
        .create_sale(&Sale::builder(pid("p"), 5).build().unwrap())
        .await
        .unwrap();
    let key = IdempotencyKey::new("crash-1").unwrap();
    let first = ReserveRequest {
        order_id: OrderId::new(T0),
        product: pid("p"),
        user: UserId::new("alice").unwrap(),
        quantity: Quantity::new(2).unwrap(),
        idempotency_key: Some(key.clone()),
        now: T0,
    };
    let ReserveOutcome::Reserved(orphan) = s.store.reserve(&first).await.unwrap() else {
        panic!()
    };
    let retry = s
        .engine
        .purchase(&as_("alice"), keyed("p", 2, "crash-1"))
        .await;
    assert_replay_of(&retry, orphan.order_id);
    assert_eq!(retry.purchase().unwrap().status, OrderStatus::Confirmed);
    let l = levels(&s, "p").await;
    assert_eq!((l.held, l.committed), (0, 2));
    // And again: a plain replay, still one order.
    let again = s
        .engine
        .purchase(&as_("alice"), keyed("p", 2, "crash-1"))
        .await;
    assert_replay_of(&again, orphan.order_id);
    assert_eq!(
        delivered(&s).await,
        vec![(EventType::Placed, orphan.order_id)]
    );
    assert_eq!(s.sink.orders(), vec![orphan.to_order()]);
}

/// A memory store that counts `sale` lookups per product.
struct CountingLookups {
    inner: MemoryStockStore,
    lookups: parking_lot::Mutex<std::collections::HashMap<ProductId, usize>>,
}

impl CountingLookups {
    fn lookups_of(&self, p: &str) -> usize {
        self.lookups.lock().get(&pid(p)).copied().unwrap_or(0)
    }
    fn total_lookups(&self) -> usize {
        self.lookups.lock().values().sum()
    }
}

#[async_trait::async_trait]
impl StockStore for CountingLookups {
    async fn create_sale(&self, sale: &Sale) -> flashsale::Result<SaleWrite> {
        self.inner.create_sale(sale).await
    }
    async fn sale(&self, p: &ProductId) -> flashsale::Result<Option<Sale>> {
        *self.lookups.lock().entry(p.clone()).or_default() += 1;
        self.inner.sale(p).await
    }
    async fn reserve(&self, r: &ReserveRequest) -> flashsale::Result<ReserveOutcome> {
        self.inner.reserve(r).await
    }
    async fn confirm(
        &self,
        p: &ProductId,
        o: &OrderId,
        now: Timestamp,
    ) -> flashsale::Result<flashsale::ConfirmOutcome> {
        self.inner.confirm(p, o, now).await
    }
    async fn cancel(
        &self,
        p: &ProductId,
        o: &OrderId,
        now: Timestamp,
    ) -> flashsale::Result<flashsale::CancelOutcome> {
        self.inner.cancel(p, o, now).await
    }
    async fn void(
        &self,
        r: &ReserveRequest,
        now: Timestamp,
    ) -> flashsale::Result<flashsale::VoidOutcome> {
        self.inner.void(r, now).await
    }
    async fn reservation(&self, o: &OrderId) -> flashsale::Result<Option<flashsale::Reservation>> {
        self.inner.reservation(o).await
    }
    async fn expire(
        &self,
        now: Timestamp,
        max: usize,
    ) -> flashsale::Result<Vec<flashsale::Reservation>> {
        self.inner.expire(now, max).await
    }
    async fn snapshot(&self, p: &ProductId) -> flashsale::Result<Option<StockLevels>> {
        self.inner.snapshot(p).await
    }
    async fn claim(
        &self,
        now: Timestamp,
        max: usize,
        lease: Duration,
    ) -> flashsale::Result<Vec<OrderEvent>> {
        self.inner.claim(now, max, lease).await
    }
    async fn ack(&self, events: &[OrderEvent]) -> flashsale::Result<()> {
        self.inner.ack(events).await
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
    let store = Arc::new(CountingLookups {
        inner: MemoryStockStore::new(),
        lookups: Default::default(),
    });
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
        store.total_lookups(),
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
        store.lookups_of("hot"),
        0,
        "the hot sale was evicted by the bot's ids and fetched again"
    );
    assert_eq!(
        store.total_lookups(),
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
