//! The [`StockStore`] conformance cases: sales, reservations, holds,
//! voids, the per-user and per-order limits, the events every state change
//! appends, and the invariants under a deterministic mix and under
//! concurrency. The outbox's claim/lease/ack cases are in
//! [`outbox`](super::outbox). Run them all with
//! [`stock_store_conformance!`](crate::stock_store_conformance).
//!
//! Every case passes `now` explicitly and never sleeps.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::model::{
    EventType, IdempotencyKey, OrderEvent, OrderId, ProductId, Quantity, Reservation,
    ReservationState, Sale, StockLevels, Timestamp, UserId,
};
use crate::{
    CancelOutcome, ConfirmOutcome, ReserveOutcome, ReserveRequest, SaleWrite, StockStore,
    VoidOutcome,
};

use super::ledger::{EventLedger, drain_outbox};
use super::{unique_product, user};

/// A fixed, arbitrary "now" for the cases (2026-01-01T00:00:00Z).
pub const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

/// The hold the hold-sale cases use, unless they say otherwise.
pub const HOLD: Duration = Duration::from_secs(60);

pub(super) async fn fresh<F, Fut, S>(make: &F) -> Arc<dyn StockStore>
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    Arc::new(make().await)
}

/// `T0 + offset`.
pub fn at(offset: Duration) -> Timestamp {
    T0.saturating_add(offset)
}

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A reservation request for `q` units by `u` at `now`, with a fresh order
/// id and no idempotency key.
pub fn request(product: &ProductId, u: &UserId, q: u32, now: Timestamp) -> ReserveRequest {
    ReserveRequest {
        order_id: OrderId::new(now),
        product: product.clone(),
        user: u.clone(),
        quantity: Quantity::new(i64::from(q)).expect("cases use valid quantities"),
        idempotency_key: None,
        now,
    }
}

/// [`request`] carrying the idempotency key `key`.
pub fn keyed(
    product: &ProductId,
    u: &UserId,
    q: u32,
    now: Timestamp,
    key: &IdempotencyKey,
) -> ReserveRequest {
    ReserveRequest {
        idempotency_key: Some(key.clone()),
        ..request(product, u, q, now)
    }
}

pub(super) fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).expect("cases use valid keys")
}

pub(super) async fn create(store: &dyn StockStore, s: &Sale) {
    assert_eq!(store.create_sale(s).await.unwrap(), SaleWrite::Created);
}

/// A sale without holds (sold at once) of `stock` units.
pub(super) async fn sale(store: &dyn StockStore, case: &str, stock: u32) -> ProductId {
    let p = unique_product(case);
    create(store, &Sale::builder(p.clone(), stock).build().unwrap()).await;
    p
}

/// A sale whose purchases are held for `hold` awaiting confirmation.
pub(super) async fn hold_sale(
    store: &dyn StockStore,
    case: &str,
    stock: u32,
    hold: Duration,
) -> ProductId {
    let p = unique_product(case);
    create(
        store,
        &Sale::builder(p.clone(), stock).hold(hold).build().unwrap(),
    )
    .await;
    p
}

pub(super) async fn levels(store: &dyn StockStore, p: &ProductId) -> StockLevels {
    let l = store.snapshot(p).await.unwrap().expect("the sale exists");
    assert!(l.is_consistent(), "invariant broken: {l:?}");
    l
}

pub(super) async fn reserved(store: &dyn StockStore, req: &ReserveRequest) -> Reservation {
    match store.reserve(req).await.unwrap() {
        ReserveOutcome::Reserved(r) => {
            assert_eq!(r.order_id, req.order_id, "Reserved names another order");
            r
        }
        other => panic!("expected Reserved for {req:?}, got {other:?}"),
    }
}

pub(super) async fn duplicate_of(store: &dyn StockStore, req: &ReserveRequest) -> Reservation {
    match store.reserve(req).await.unwrap() {
        ReserveOutcome::Duplicate(r) => r,
        other => panic!("expected Duplicate for {req:?}, got {other:?}"),
    }
}

pub(super) fn lv(total: u64, available: u64, held: u64, committed: u64) -> StockLevels {
    StockLevels {
        total,
        available,
        held,
        committed,
    }
}

/// Drains the outbox at `now` and returns `(order, type)` per event.
async fn drained(store: &dyn StockStore, now: Timestamp) -> Vec<(OrderId, EventType)> {
    drain_outbox(store, now)
        .await
        .iter()
        .map(|e| (e.order.order_id, e.event_type))
        .collect()
}

/// The events of each order, in the order handed out.
fn by_order(events: &[OrderEvent]) -> HashMap<OrderId, Vec<OrderEvent>> {
    let mut m: HashMap<OrderId, Vec<OrderEvent>> = HashMap::new();
    for e in events {
        m.entry(e.order.order_id).or_default().push(e.clone());
    }
    m
}

/// Asserts `events` hold exactly `expected` (order, type) pairs, in any
/// order across orders (an order's own events are in seq order by
/// [`drain_outbox`]).
fn assert_event_set(events: &[(OrderId, EventType)], expected: &[(OrderId, EventType)]) {
    let mut got = events.to_vec();
    let mut want = expected.to_vec();
    got.sort_by_key(|(o, t)| (*o, t.seq()));
    want.sort_by_key(|(o, t)| (*o, t.seq()));
    assert_eq!(got, want, "the outbox's events");
}

/// Creating a sale makes it readable with full stock available, and
/// appends no event.
pub async fn create_sale_and_snapshot<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("create");
    let s = Sale::builder(p.clone(), 7)
        .per_user_limit(2)
        .per_order_max(2)
        .starts_at(T0)
        .ends_at(at(secs(3600)))
        .hold(secs(60))
        .build()
        .unwrap();
    create(&*store, &s).await;
    assert_eq!(store.sale(&p).await.unwrap(), Some(s));
    assert_eq!(levels(&*store, &p).await, lv(7, 7, 0, 0));
    let other = unique_product("never-created");
    assert_eq!(store.sale(&other).await.unwrap(), None);
    assert_eq!(store.snapshot(&other).await.unwrap(), None);
    assert!(drained(&*store, T0).await.is_empty());
}

/// A sale without holds sells at reserve: the reservation is `Committed`
/// at once and its `placed` event (exactly the order reserved) is
/// claimable. Confirm is then a no-op, cancel is refused, expiry never
/// touches it.
pub async fn no_hold_sale_sells_at_once<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = sale(&*store, "sell-at-once", 10).await;
    let req = keyed(&p, &user(1), 3, T0, &key("k-sell"));
    let r = reserved(&*store, &req).await;
    assert_eq!(r, req.to_reservation(None));
    assert_eq!(r.state, ReservationState::Committed);
    assert_eq!(levels(&*store, &p).await, lv(10, 7, 0, 3));
    assert_eq!(
        store.reservation(&r.order_id).await.unwrap(),
        Some(r.clone())
    );

    let events = drain_outbox(&*store, T0).await;
    assert_eq!(events, vec![OrderEvent::placed(&r)]);
    let e = &events[0];
    assert_eq!((e.event_type, e.seq, e.at), (EventType::Placed, 1, T0));
    assert_eq!(e.order.order_id, req.order_id);
    assert_eq!(e.order.product_id, p);
    assert_eq!(e.order.user_id, user(1));
    assert_eq!(e.order.quantity.get(), 3);
    assert_eq!(e.order.idempotency_key, req.idempotency_key);
    assert_eq!(e.order.hold_expires_at, None);

    assert_eq!(
        store.confirm(&p, &r.order_id, at(secs(1))).await.unwrap(),
        ConfirmOutcome::AlreadyConfirmed
    );
    assert_eq!(
        store.cancel(&p, &r.order_id, at(secs(1))).await.unwrap(),
        CancelOutcome::NotHeld(ReservationState::Committed)
    );
    assert!(
        store
            .expire(at(secs(86_400)), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(levels(&*store, &p).await, lv(10, 7, 0, 3));
    assert!(
        drained(&*store, at(secs(2))).await.is_empty(),
        "no-ops append nothing"
    );
}

/// A hold sale's reserve holds; confirm sells (once, with a `confirmed`
/// event); a confirmed hold cannot be cancelled and never expires.
pub async fn hold_then_confirm<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = hold_sale(&*store, "confirm", 10, HOLD).await;
    let req = request(&p, &user(1), 3, T0);
    let r = reserved(&*store, &req).await;
    assert_eq!(r, req.to_reservation(Some(HOLD)));
    assert_eq!(r.state, ReservationState::Held);
    assert!(r.awaits_confirmation);
    assert_eq!(r.expires_at, at(HOLD));
    assert_eq!(levels(&*store, &p).await, lv(10, 7, 3, 0));

    let t1 = at(secs(1));
    assert_eq!(
        store.confirm(&p, &r.order_id, t1).await.unwrap(),
        ConfirmOutcome::Confirmed
    );
    assert_eq!(levels(&*store, &p).await, lv(10, 7, 0, 3));
    assert_eq!(
        store.confirm(&p, &r.order_id, at(secs(2))).await.unwrap(),
        ConfirmOutcome::AlreadyConfirmed
    );
    assert_eq!(
        store.cancel(&p, &r.order_id, at(secs(2))).await.unwrap(),
        CancelOutcome::NotHeld(ReservationState::Committed)
    );
    assert!(store.expire(at(HOLD * 10), 100).await.unwrap().is_empty());
    assert_eq!(levels(&*store, &p).await, lv(10, 7, 0, 3));
    let found = store.reservation(&r.order_id).await.unwrap().unwrap();
    assert_eq!(found.state, ReservationState::Committed);
    assert_eq!(found.product, p);

    let events = drain_outbox(&*store, at(secs(3))).await;
    assert_eq!(
        events,
        vec![
            OrderEvent::placed(&r),
            OrderEvent::closing(&r, EventType::Confirmed, t1)
        ]
    );
    assert_eq!(events[0].order.hold_expires_at, Some(at(HOLD)));
    assert_eq!(events[1].seq, 2);
}

/// Cancelling a hold returns its units once, with a `cancelled` event; a
/// cancelled hold cannot be confirmed.
pub async fn hold_then_cancel<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = hold_sale(&*store, "cancel", 5, HOLD).await;
    let r = reserved(&*store, &request(&p, &user(1), 2, T0)).await;
    assert_eq!(levels(&*store, &p).await, lv(5, 3, 2, 0));
    let t1 = at(secs(1));
    assert_eq!(
        store.cancel(&p, &r.order_id, t1).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(levels(&*store, &p).await, lv(5, 5, 0, 0));
    assert_eq!(
        store.cancel(&p, &r.order_id, at(secs(2))).await.unwrap(),
        CancelOutcome::AlreadyCancelled
    );
    assert_eq!(
        store.confirm(&p, &r.order_id, at(secs(2))).await.unwrap(),
        ConfirmOutcome::NotHeld(ReservationState::Cancelled)
    );
    assert!(store.expire(at(HOLD * 10), 100).await.unwrap().is_empty());
    assert_eq!(levels(&*store, &p).await, lv(5, 5, 0, 0));
    let found = store.reservation(&r.order_id).await.unwrap().unwrap();
    assert_eq!(found.state, ReservationState::Cancelled);
    assert_eq!(
        drain_outbox(&*store, at(secs(3))).await,
        vec![
            OrderEvent::placed(&r),
            OrderEvent::closing(&r, EventType::Cancelled, t1)
        ]
    );
}

/// A hold is confirmable until just before its expiry. At or after
/// `expires_at`, confirm and cancel both find it expired before the sweeper
/// ran: they answer `NotHeld(Expired)`, its units go back at once, and one
/// `expired` event is appended (not two, however often it is asked).
pub async fn confirm_or_cancel_past_expiry_expires<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let hold = secs(10);
    let p = hold_sale(&*store, "late", 10, hold).await;
    let a = reserved(&*store, &request(&p, &user(1), 1, T0)).await;
    let b = reserved(&*store, &request(&p, &user(2), 2, T0)).await;
    let c = reserved(&*store, &request(&p, &user(3), 3, T0)).await;
    assert_eq!(levels(&*store, &p).await, lv(10, 4, 6, 0));

    let just_before = Timestamp::from_millis(at(hold).as_millis() - 1);
    assert_eq!(
        store.confirm(&p, &c.order_id, just_before).await.unwrap(),
        ConfirmOutcome::Confirmed
    );
    assert_eq!(
        store.confirm(&p, &a.order_id, at(hold)).await.unwrap(),
        ConfirmOutcome::NotHeld(ReservationState::Expired)
    );
    assert_eq!(levels(&*store, &p).await, lv(10, 5, 2, 3));
    let b_late = at(hold + secs(1));
    assert_eq!(
        store.cancel(&p, &b.order_id, b_late).await.unwrap(),
        CancelOutcome::NotHeld(ReservationState::Expired)
    );
    assert_eq!(levels(&*store, &p).await, lv(10, 7, 0, 3));
    for r in [&a, &b] {
        let found = store.reservation(&r.order_id).await.unwrap().unwrap();
        assert_eq!(found.state, ReservationState::Expired);
        assert_eq!(
            store.confirm(&p, &r.order_id, b_late).await.unwrap(),
            ConfirmOutcome::NotHeld(ReservationState::Expired)
        );
        assert_eq!(
            store.cancel(&p, &r.order_id, b_late).await.unwrap(),
            CancelOutcome::NotHeld(ReservationState::Expired)
        );
    }
    assert!(store.expire(at(hold * 10), 100).await.unwrap().is_empty());
    assert_eq!(levels(&*store, &p).await, lv(10, 7, 0, 3));

    let events = drain_outbox(&*store, at(hold * 10)).await;
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.order.order_id, e.event_type))
        .collect();
    assert_event_set(
        &got,
        &[
            (a.order_id, EventType::Placed),
            (a.order_id, EventType::Expired),
            (b.order_id, EventType::Placed),
            (b.order_id, EventType::Expired),
            (c.order_id, EventType::Placed),
            (c.order_id, EventType::Confirmed),
        ],
    );
    let orders = by_order(&events);
    for (r, noticed) in [(&a, at(hold)), (&b, b_late)] {
        let expired = &orders[&r.order_id][1];
        assert_eq!(expired.seq, 2);
        assert_eq!(expired.order, r.to_order());
        assert!(
            expired.at >= r.expires_at && expired.at <= noticed,
            "the expired event is stamped between the expiry and the call that noticed it: {expired:?}"
        );
    }
    assert_eq!(orders[&c.order_id][1].at, just_before);
}

/// Reserving the same ORDER ID again is a retry of the same request below
/// the store's API: it answers `Reserved` with the record as it stands
/// (not `Duplicate`, even with a key; not `SoldOut` nor `LimitExceeded`
/// though the first attempts used the last units and the product was
/// since refused as sold out), reserves nothing more and appends no second
/// `placed` event.
pub async fn same_order_id_is_the_same_request<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("same-id");
    create(
        &*store,
        &Sale::builder(p.clone(), 4)
            .per_user_limit(4)
            .build()
            .unwrap(),
    )
    .await;
    let plain = request(&p, &user(1), 2, T0);
    let with_key = keyed(&p, &user(1), 2, T0, &key("k-same"));
    let first = reserved(&*store, &plain).await;
    let second = reserved(&*store, &with_key).await;
    assert_eq!(levels(&*store, &p).await, lv(4, 0, 0, 4));
    assert_eq!(
        store.reserve(&request(&p, &user(2), 1, T0)).await.unwrap(),
        ReserveOutcome::SoldOut
    );
    for _ in 0..2 {
        for (req, r) in [(&plain, &first), (&with_key, &second)] {
            assert_eq!(
                store.reserve(req).await.unwrap(),
                ReserveOutcome::Reserved(r.clone()),
                "retry of {req:?}"
            );
        }
    }
    assert_eq!(levels(&*store, &p).await, lv(4, 0, 0, 4));

    // On a hold sale, the record as it stands: held, then cancelled (and
    // the retry does not take the units again).
    let h = hold_sale(&*store, "same-id-hold", 5, HOLD).await;
    let hreq = request(&h, &user(2), 2, T0);
    let held = reserved(&*store, &hreq).await;
    assert_eq!(
        store.reserve(&hreq).await.unwrap(),
        ReserveOutcome::Reserved(held.clone())
    );
    assert_eq!(levels(&*store, &h).await, lv(5, 3, 2, 0));
    store.cancel(&h, &held.order_id, at(secs(1))).await.unwrap();
    match store.reserve(&hreq).await.unwrap() {
        ReserveOutcome::Reserved(r) => {
            assert_eq!(r.order_id, held.order_id);
            assert_eq!(r.state, ReservationState::Cancelled);
        }
        other => panic!("expected Reserved(cancelled), got {other:?}"),
    }
    assert_eq!(levels(&*store, &h).await, lv(5, 5, 0, 0));

    assert_event_set(
        &drained(&*store, at(secs(2))).await,
        &[
            (first.order_id, EventType::Placed),
            (second.order_id, EventType::Placed),
            (held.order_id, EventType::Placed),
            (held.order_id, EventType::Cancelled),
        ],
    );
}

/// A repeated idempotency key (new order id: a client retry) answers
/// `Duplicate` with the first reservation as it stands and reserves
/// nothing, whatever the quantity; keys are scoped per buyer and product.
pub async fn idempotency_key_replays<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = hold_sale(&*store, "idem", 10, HOLD).await;
    let q = sale(&*store, "idem-other", 10).await;
    let k = key("k-1");
    let first = reserved(&*store, &keyed(&p, &user(1), 2, T0, &k)).await;
    assert_eq!(first.idempotency_key.as_ref(), Some(&k));
    assert_eq!(
        duplicate_of(&*store, &keyed(&p, &user(1), 2, at(secs(1)), &k)).await,
        first
    );
    // Same key, different quantity: still the original (the caller decides
    // it is a conflict).
    let other_q = duplicate_of(&*store, &keyed(&p, &user(1), 3, at(secs(1)), &k)).await;
    assert_eq!(other_q.order_id, first.order_id);
    assert_eq!(levels(&*store, &p).await, lv(10, 8, 2, 0));
    // Another buyer, or another product, with the same key: independent.
    let b = reserved(&*store, &keyed(&p, &user(2), 1, T0, &k)).await;
    let c = reserved(&*store, &keyed(&q, &user(1), 1, T0, &k)).await;
    assert_eq!(levels(&*store, &p).await, lv(10, 7, 3, 0));
    assert_eq!(levels(&*store, &q).await, lv(10, 9, 0, 1));
    // After confirm the key answers with the (now sold) original.
    assert_eq!(
        store
            .confirm(&p, &first.order_id, at(secs(2)))
            .await
            .unwrap(),
        ConfirmOutcome::Confirmed
    );
    let after = duplicate_of(&*store, &keyed(&p, &user(1), 2, at(secs(3)), &k)).await;
    assert_eq!(after.order_id, first.order_id);
    assert_eq!(after.state, ReservationState::Committed);
    assert_eq!(levels(&*store, &p).await, lv(10, 7, 1, 2));
    assert_event_set(
        &drained(&*store, at(secs(4))).await,
        &[
            (first.order_id, EventType::Placed),
            (first.order_id, EventType::Confirmed),
            (b.order_id, EventType::Placed),
            (c.order_id, EventType::Placed),
        ],
    );
}

/// Replays win: the key is checked before the window, the per-order
/// maximum, the per-user cap and the stock, so a retry with the key gets
/// the original with the buyer at the cap, after a restock lowered the
/// per-order maximum, with the product sold out and after the sale ended.
/// Fresh requests in the same situations are refused as usual.
pub async fn replays_win<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("replay-wins");
    let end = at(secs(60));
    let terms = |order_max: u32| {
        Sale::builder(p.clone(), 5)
            .per_user_limit(2)
            .per_order_max(order_max)
            .ends_at(end)
            .build()
            .unwrap()
    };
    create(&*store, &terms(2)).await;
    let k = key("k-win");
    let first = reserved(&*store, &keyed(&p, &user(1), 2, T0, &k)).await;
    let other = reserved(&*store, &request(&p, &user(2), 2, T0)).await;
    assert_eq!(levels(&*store, &p).await, lv(5, 1, 0, 4));
    let replay = |q: u32, now: Timestamp| keyed(&p, &user(1), q, now, &k);
    let fresh_key = key("k-fresh");

    // At the cap (one unit left).
    assert_eq!(duplicate_of(&*store, &replay(2, at(secs(1)))).await, first);
    assert_eq!(duplicate_of(&*store, &replay(1, at(secs(1)))).await, first);
    assert_eq!(
        store
            .reserve(&keyed(&p, &user(1), 1, at(secs(1)), &fresh_key))
            .await
            .unwrap(),
        ReserveOutcome::LimitExceeded
    );
    // After a restock that lowers the per-order maximum below the original.
    assert_eq!(
        store.create_sale(&terms(1)).await.unwrap(),
        SaleWrite::Updated
    );
    assert_eq!(duplicate_of(&*store, &replay(2, at(secs(2)))).await, first);
    assert_eq!(
        store
            .reserve(&request(&p, &user(3), 2, at(secs(2))))
            .await
            .unwrap(),
        ReserveOutcome::OverOrderMax { max: 1 }
    );
    // Sold out.
    let last = reserved(&*store, &request(&p, &user(3), 1, at(secs(3)))).await;
    assert_eq!(duplicate_of(&*store, &replay(2, at(secs(4)))).await, first);
    assert_eq!(
        store
            .reserve(&request(&p, &user(4), 1, at(secs(4))))
            .await
            .unwrap(),
        ReserveOutcome::SoldOut
    );
    // After the sale's end. Another buyer's use of the same key is a fresh
    // request, refused (ended and sold out: either reason will do).
    assert_eq!(duplicate_of(&*store, &replay(2, end)).await, first);
    assert_eq!(
        duplicate_of(&*store, &replay(2, at(secs(3600)))).await,
        first
    );
    for req in [
        request(&p, &user(4), 1, end),
        keyed(&p, &user(4), 1, end, &k),
    ] {
        let out = store.reserve(&req).await.unwrap();
        assert!(
            matches!(out, ReserveOutcome::NotOnSale | ReserveOutcome::SoldOut),
            "{req:?} gave {out:?}"
        );
    }
    assert_eq!(levels(&*store, &p).await, lv(5, 0, 0, 5));
    assert_event_set(
        &drained(&*store, at(secs(3600))).await,
        &[
            (first.order_id, EventType::Placed),
            (other.order_id, EventType::Placed),
            (last.order_id, EventType::Placed),
        ],
    );
}

/// Voiding a sold order (a sale without holds) whose answer was lost: the
/// units come back, the buyer's per-user count is restored, the key is
/// free, a `voided` event stamped `now` follows the `placed` one, and a
/// late retry of that very reserve reserves nothing.
pub async fn void_returns_sold_units<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("void-sold");
    create(
        &*store,
        &Sale::builder(p.clone(), 5)
            .per_user_limit(1)
            .build()
            .unwrap(),
    )
    .await;
    let k = key("k-void");
    let req = keyed(&p, &user(1), 1, T0, &k);
    let r = reserved(&*store, &req).await;
    assert_eq!(r.state, ReservationState::Committed);
    assert_eq!(levels(&*store, &p).await, lv(5, 4, 0, 1));
    let t1 = at(secs(1));
    assert_eq!(store.void(&req, t1).await.unwrap(), VoidOutcome::Voided);
    assert_eq!(levels(&*store, &p).await, lv(5, 5, 0, 0));
    check_voided_record(&*store, &p, &req).await;
    assert_eq!(levels(&*store, &p).await, lv(5, 5, 0, 0));

    // The key is free and the cap has room again: a client retry (new
    // order id, same key) is a new purchase.
    let retry = keyed(&p, &user(1), 1, at(secs(2)), &k);
    let again = reserved(&*store, &retry).await;
    assert_eq!(again.state, ReservationState::Committed);
    assert_eq!(levels(&*store, &p).await, lv(5, 4, 0, 1));

    assert_eq!(
        drain_outbox(&*store, at(secs(3))).await,
        vec![
            OrderEvent::placed(&r),
            OrderEvent::closing(&r, EventType::Voided, t1),
            OrderEvent::placed(&again),
        ]
    );
}

/// What every voided record must look like: `Voided`, void again is
/// `AlreadyVoided`, confirm/cancel refuse with `NotHeld(Voided)`, and a
/// late retry of the reserve (same order id) answers `Reserved` with the
/// voided record and reserves nothing.
async fn check_voided_record(store: &dyn StockStore, p: &ProductId, req: &ReserveRequest) {
    let later = req.now.saturating_add(secs(5));
    let found = store.reservation(&req.order_id).await.unwrap();
    assert_eq!(
        found.as_ref().map(|r| r.state),
        Some(ReservationState::Voided),
        "reservation({}) after void: {found:?}",
        req.order_id
    );
    assert_eq!(
        store.void(req, later).await.unwrap(),
        VoidOutcome::AlreadyVoided
    );
    assert_eq!(
        store.confirm(p, &req.order_id, later).await.unwrap(),
        ConfirmOutcome::NotHeld(ReservationState::Voided)
    );
    assert_eq!(
        store.cancel(p, &req.order_id, later).await.unwrap(),
        CancelOutcome::NotHeld(ReservationState::Voided)
    );
    match store.reserve(req).await.unwrap() {
        ReserveOutcome::Reserved(r) => {
            assert_eq!(r.order_id, req.order_id);
            assert_eq!(r.state, ReservationState::Voided);
        }
        other => panic!("a late retry of a voided reserve gave {other:?}"),
    }
}

/// Voiding a hold whose answer was lost: the same as for a sold order, and
/// a voided hold never expires (no `expired` event after `voided`).
pub async fn void_returns_held_units<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("void-held");
    create(
        &*store,
        &Sale::builder(p.clone(), 5)
            .per_user_limit(2)
            .hold(HOLD)
            .build()
            .unwrap(),
    )
    .await;
    let k = key("k-void-hold");
    let req = keyed(&p, &user(1), 2, T0, &k);
    let r = reserved(&*store, &req).await;
    assert_eq!(r.state, ReservationState::Held);
    assert_eq!(levels(&*store, &p).await, lv(5, 3, 2, 0));
    let t1 = at(secs(1));
    assert_eq!(store.void(&req, t1).await.unwrap(), VoidOutcome::Voided);
    assert_eq!(levels(&*store, &p).await, lv(5, 5, 0, 0));
    check_voided_record(&*store, &p, &req).await;
    assert!(store.expire(at(HOLD * 10), 100).await.unwrap().is_empty());
    assert_eq!(levels(&*store, &p).await, lv(5, 5, 0, 0));

    let retry = keyed(&p, &user(1), 2, at(secs(2)), &k);
    let again = reserved(&*store, &retry).await;
    assert_eq!(again.state, ReservationState::Held);
    assert_eq!(levels(&*store, &p).await, lv(5, 3, 2, 0));
    assert_eq!(
        drain_outbox(&*store, at(secs(3))).await,
        vec![
            OrderEvent::placed(&r),
            OrderEvent::closing(&r, EventType::Voided, t1),
            OrderEvent::placed(&again),
        ]
    );
}

/// Voiding a reserve that never ran (on both kinds of sale) answers
/// `NothingReserved` and leaves a `Voided` tombstone: the late reserve
/// answers `Reserved` with that tombstone and reserves nothing, no event
/// is ever appended for it, and the key stays free for a real retry.
pub async fn void_before_reserve_leaves_tombstone<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let plain = sale(&*store, "tomb", 3).await;
    let held = hold_sale(&*store, "tomb-hold", 3, HOLD).await;
    for (p, state) in [
        (&plain, ReservationState::Committed),
        (&held, ReservationState::Held),
    ] {
        let k = key("k-tomb");
        let req = keyed(p, &user(1), 2, T0, &k);
        assert_eq!(
            store.void(&req, T0).await.unwrap(),
            VoidOutcome::NothingReserved
        );
        assert_eq!(levels(&*store, p).await, lv(3, 3, 0, 0));
        check_voided_record(&*store, p, &req).await;
        assert_eq!(levels(&*store, p).await, lv(3, 3, 0, 0));
        assert!(
            drained(&*store, T0).await.is_empty(),
            "a tombstone appends no event"
        );
        let retry = keyed(p, &user(1), 2, at(secs(1)), &k);
        let r = reserved(&*store, &retry).await;
        assert_eq!(r.state, state);
        assert_eq!(levels(&*store, p).await.available, 1);
        assert_eq!(
            drain_outbox(&*store, at(secs(2))).await,
            vec![OrderEvent::placed(&r)]
        );
    }
}

/// A replay (same key, same request) may answer its buyer 2xx with the
/// order the key names, so the first request's void must not undo that
/// order behind the replay's back: it is `Kept`, and undone only when the
/// replay's own answer is lost too (the replay voids its request). In the
/// other order (the replay voids first) the first request's void undoes it
/// at once. A replay that was answered keeps the order for good, and a
/// request for another quantity (a conflict, answered 409) claims nothing.
pub async fn a_replayed_order_is_kept_until_its_replays_void<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let plain = sale(&*store, "replay-void", 5).await;
    let held = hold_sale(&*store, "replay-void-hold", 5, HOLD).await;
    for p in [&plain, &held] {
        let owned = |r: &Reservation| {
            if r.awaits_confirmation {
                lv(5, 3, 2, 0)
            } else {
                lv(5, 3, 0, 2)
            }
        };
        // First request's void arrives before the replay's.
        let k = key("k-a");
        let first = keyed(p, &user(1), 2, T0, &k);
        let r = reserved(&*store, &first).await;
        let replay = keyed(p, &user(1), 2, at(ms(10)), &k);
        assert_eq!(
            store.reserve(&replay).await.unwrap(),
            ReserveOutcome::Duplicate(r.clone())
        );
        let conflict = keyed(p, &user(1), 1, at(ms(20)), &k);
        assert!(matches!(
            store.reserve(&conflict).await.unwrap(),
            ReserveOutcome::Duplicate(_)
        ));
        assert_eq!(
            store.void(&first, at(ms(30))).await.unwrap(),
            VoidOutcome::Kept
        );
        assert_eq!(levels(&*store, p).await, owned(&r), "kept for the replay");
        // The conflicting request claimed nothing: its void changes nothing.
        assert_eq!(
            store.void(&conflict, at(ms(40))).await.unwrap(),
            VoidOutcome::NothingReserved
        );
        assert_eq!(levels(&*store, p).await, owned(&r));
        // The replay's answer was lost too: now nobody holds the order.
        assert_eq!(
            store.void(&replay, at(ms(50))).await.unwrap(),
            VoidOutcome::NothingReserved
        );
        assert_eq!(levels(&*store, p).await, lv(5, 5, 0, 0));
        let found = store.reservation(&r.order_id).await.unwrap().unwrap();
        assert_eq!(found.state, ReservationState::Voided);
        assert_eq!(
            drained(&*store, at(ms(60))).await,
            vec![
                (r.order_id, EventType::Placed),
                (r.order_id, EventType::Voided)
            ]
        );
        assert_eq!(
            store.void(&first, at(ms(70))).await.unwrap(),
            VoidOutcome::AlreadyVoided
        );
        // The key is free again: a retry is a fresh purchase.
        let again = keyed(p, &user(1), 2, at(ms(80)), &k);
        let fresh_order = reserved(&*store, &again).await;
        assert_ne!(fresh_order.order_id, r.order_id);
        assert_eq!(
            store.void(&again, at(ms(90))).await.unwrap(),
            VoidOutcome::Voided
        );
        drained(&*store, at(ms(95))).await;

        // The replay's void arrives first: the first request's void then
        // undoes the order at once.
        let k = key("k-b");
        let first = keyed(p, &user(2), 2, at(secs(1)), &k);
        let r = reserved(&*store, &first).await;
        let replay = keyed(p, &user(2), 2, at(secs(2)), &k);
        store.reserve(&replay).await.unwrap();
        assert_eq!(
            store.void(&replay, at(secs(3))).await.unwrap(),
            VoidOutcome::NothingReserved
        );
        assert_eq!(levels(&*store, p).await, owned(&r));
        assert_eq!(
            store.void(&first, at(secs(4))).await.unwrap(),
            VoidOutcome::Voided
        );
        assert_eq!(levels(&*store, p).await, lv(5, 5, 0, 0));
        drained(&*store, at(secs(5))).await;

        // A replay that was answered (it never voids) keeps the order.
        let k = key("k-c");
        let first = keyed(p, &user(3), 2, at(secs(6)), &k);
        let r = reserved(&*store, &first).await;
        store
            .reserve(&keyed(p, &user(3), 2, at(secs(7)), &k))
            .await
            .unwrap();
        assert_eq!(
            store.void(&first, at(secs(8))).await.unwrap(),
            VoidOutcome::Kept
        );
        assert_eq!(levels(&*store, p).await, owned(&r));
        let found = store.reservation(&r.order_id).await.unwrap().unwrap();
        assert!(found.state.owns_units(), "{found:?}");
        assert_eq!(
            drained(&*store, at(secs(9))).await,
            vec![(r.order_id, EventType::Placed)]
        );
    }
}

/// Ten thousand same-request replays of one purchase change neither the
/// record they are answered with nor the order's events (a claim per
/// replay is kept outside both), and a replay's claim lapses after
/// [`replay_claim_ttl`](StockStore::replay_claim_ttl): a void of the first
/// request arriving later undoes the order, and what the claims held is
/// gone.
pub async fn many_replays_stay_flat<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    const REPLAYS: u64 = 10_000;
    const WAVE: u64 = 100;
    let store = fresh(make).await;
    let p = hold_sale(&*store, "replays-flat", 5, HOLD).await;
    let (ka, kb) = (key("k-flat-a"), key("k-flat-b"));
    let first = keyed(&p, &user(1), 1, T0, &ka);
    let r = reserved(&*store, &first).await;
    // The same purchase by another buyer, never replayed: what flat means.
    let control = reserved(&*store, &keyed(&p, &user(2), 1, T0, &kb)).await;
    for wave in 0..REPLAYS / WAVE {
        let mut tasks = Vec::new();
        for i in 0..WAVE {
            let store = store.clone();
            let req = keyed(&p, &user(1), 1, at(ms(1 + wave * WAVE + i)), &ka);
            tasks.push(tokio::spawn(async move { store.reserve(&req).await }));
        }
        for t in tasks {
            let answer = t.await.expect("task panicked").unwrap();
            assert_eq!(answer, ReserveOutcome::Duplicate(r.clone()));
        }
    }
    let late = at(secs(20));
    for order in [&r, &control] {
        assert_eq!(
            store.confirm(&p, &order.order_id, late).await.unwrap(),
            ConfirmOutcome::Confirmed
        );
    }
    let events = by_order(&drain_outbox(&*store, late).await);
    let size = |e: &OrderEvent| serde_json::to_vec(e).expect("events serialize").len();
    let (mine, theirs) = (&events[&r.order_id], &events[&control.order_id]);
    assert_eq!(mine.len(), 2, "{mine:?}");
    for (m, t) in mine.iter().zip(theirs) {
        assert_eq!(m.event_type, t.event_type);
        assert_eq!(size(m), size(t), "a replayed order's event grew: {m:?}");
    }
    let found = store.reservation(&r.order_id).await.unwrap().unwrap();
    assert_eq!(found.state, ReservationState::Committed);

    // A claim lapses: the first request's void, arriving after it, undoes
    // the order a replay was answered with (within it, it is kept).
    let lapse = store.replay_claim_ttl();
    let plain = sale(&*store, "replays-lapse", 5).await;
    let k = key("k-lapse");
    let first = keyed(&plain, &user(3), 2, at(secs(30)), &k);
    let r = reserved(&*store, &first).await;
    duplicate_of(&*store, &keyed(&plain, &user(3), 2, at(secs(31)), &k)).await;
    let after = at(secs(31)).saturating_add(lapse).saturating_add(secs(1));
    assert_eq!(
        store.void(&first, after).await.unwrap(),
        VoidOutcome::Voided
    );
    assert_eq!(levels(&*store, &plain).await, lv(5, 5, 0, 0));
    assert_eq!(
        drained(&*store, after).await,
        vec![
            (r.order_id, EventType::Placed),
            (r.order_id, EventType::Voided)
        ]
    );
}

/// A finished record is not purged while its events wait in the outbox (a
/// relay down for longer than the record TTL): a replay with its key still
/// finds it and reserves nothing new, so no key yields two `placed`
/// events. Once delivered, a later sweep purges it.
///
/// Not part of [`stock_store_conformance!`](crate::stock_store_conformance),
/// for stores that purge finished records: `make` must build a store whose
/// record TTL is at most a day.
pub async fn purge_waits_for_delivery<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    const DAY: u64 = 24 * 3600;
    let store = fresh(make).await;
    let p = sale(&*store, "purge-waits", 5).await;
    let k = key("k-purge");
    let r = reserved(&*store, &keyed(&p, &user(1), 1, T0, &k)).await;
    // Past the TTL, with sweeps in between; the relay is down.
    for i in 0..5 {
        store
            .expire(at(secs(DAY + 60 + i * 120)), 100)
            .await
            .unwrap();
    }
    let found = store.reservation(&r.order_id).await.unwrap();
    assert_eq!(
        found.map(|f| f.order_id),
        Some(r.order_id),
        "purged before its events were delivered"
    );
    let replay = keyed(&p, &user(1), 1, at(secs(DAY + 900)), &k);
    assert_eq!(duplicate_of(&*store, &replay).await.order_id, r.order_id);
    assert_eq!(levels(&*store, &p).await, lv(5, 4, 0, 1));
    assert_eq!(
        drained(&*store, at(secs(DAY + 900))).await,
        vec![(r.order_id, EventType::Placed)]
    );
    // Delivered: a later sweep purges it (a put-off purge waits at most a
    // minute).
    for i in 0..5 {
        store
            .expire(at(secs(DAY + 1000 + i * 120)), 100)
            .await
            .unwrap();
    }
    assert_eq!(
        store.reservation(&r.order_id).await.unwrap(),
        None,
        "never purged after delivery"
    );
}

/// Voiding a hold that already ended (cancelled, expired by the sweeper,
/// or found expired by a late confirm) answers `AlreadyClosed` with its
/// state and changes nothing: no units move, no `voided` event.
pub async fn void_of_closed_hold_changes_nothing<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let hold = secs(10);
    let p = hold_sale(&*store, "void-closed", 10, hold).await;
    let reqs: Vec<_> = (1..=3).map(|u| request(&p, &user(u), 1, T0)).collect();
    for r in &reqs {
        reserved(&*store, r).await;
    }
    store
        .cancel(&p, &reqs[0].order_id, at(secs(1)))
        .await
        .unwrap();
    // Find reqs[2] expired through a late confirm, then sweep reqs[1].
    assert_eq!(
        store
            .confirm(&p, &reqs[2].order_id, at(hold))
            .await
            .unwrap(),
        ConfirmOutcome::NotHeld(ReservationState::Expired)
    );
    let swept = store.expire(at(hold), 100).await.unwrap();
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].order_id, reqs[1].order_id);
    assert_eq!(levels(&*store, &p).await, lv(10, 10, 0, 0));

    let late = at(hold + secs(1));
    let want = [
        ReservationState::Cancelled,
        ReservationState::Expired,
        ReservationState::Expired,
    ];
    for (req, state) in reqs.iter().zip(want) {
        assert_eq!(
            store.void(req, late).await.unwrap(),
            VoidOutcome::AlreadyClosed(state)
        );
        let found = store.reservation(&req.order_id).await.unwrap().unwrap();
        assert_eq!(found.state, state);
    }
    assert_eq!(levels(&*store, &p).await, lv(10, 10, 0, 0));
    assert_event_set(
        &drained(&*store, late).await,
        &[
            (reqs[0].order_id, EventType::Placed),
            (reqs[0].order_id, EventType::Cancelled),
            (reqs[1].order_id, EventType::Placed),
            (reqs[1].order_id, EventType::Expired),
            (reqs[2].order_id, EventType::Placed),
            (reqs[2].order_id, EventType::Expired),
        ],
    );
}

/// Voiding a hold that was already confirmed answers
/// `AlreadyClosed(Committed)` and changes nothing: its `confirmed` event
/// already took the order's one closing slot (`seq` 2), so a `voided`
/// event would share its event id and be deduplicated away by consumers
/// (or overwrite it in the outbox), leaving units back on sale that the
/// events say are sold.
pub async fn void_of_confirmed_hold_changes_nothing<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = hold_sale(&*store, "void-confirmed", 5, HOLD).await;
    let relayed = request(&p, &user(1), 2, T0);
    let pending = request(&p, &user(2), 1, T0);
    for req in [&relayed, &pending] {
        reserved(&*store, req).await;
        assert_eq!(
            store.confirm(&p, &req.order_id, at(secs(1))).await.unwrap(),
            ConfirmOutcome::Confirmed
        );
        if req == &relayed {
            // This one's `confirmed` event is delivered before the void.
            let mut ledger = EventLedger::new();
            ledger.extend(&drain_outbox(&*store, at(secs(1))).await);
            assert_eq!(ledger.closing(&req.order_id), Some(EventType::Confirmed));
        }
    }
    for req in [&relayed, &pending] {
        assert_eq!(
            store.void(req, at(secs(2))).await.unwrap(),
            VoidOutcome::AlreadyClosed(ReservationState::Committed),
            "void of a confirmed hold"
        );
        let found = store.reservation(&req.order_id).await.unwrap().unwrap();
        assert_eq!(found.state, ReservationState::Committed);
    }
    assert_eq!(levels(&*store, &p).await, lv(5, 2, 0, 3));
    assert_event_set(
        &drained(&*store, at(secs(2))).await,
        &[
            (pending.order_id, EventType::Placed),
            (pending.order_id, EventType::Confirmed),
        ],
    );
}

/// The last unit sells; one more does not, whatever the quantity mix.
pub async fn sold_out_is_exact<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = sale(&*store, "soldout", 3).await;
    reserved(&*store, &request(&p, &user(1), 2, T0)).await;
    let too_many = store.reserve(&request(&p, &user(2), 2, T0)).await.unwrap();
    assert_eq!(too_many, ReserveOutcome::SoldOut);
    reserved(&*store, &request(&p, &user(2), 1, T0)).await;
    let none_left = store.reserve(&request(&p, &user(3), 1, T0)).await.unwrap();
    assert_eq!(none_left, ReserveOutcome::SoldOut);
    assert_eq!(levels(&*store, &p).await, lv(3, 0, 0, 3));
    assert_eq!(
        drained(&*store, T0).await.len(),
        2,
        "refusals append nothing"
    );
}

/// A buyer's held + sold units never exceed the cap; cancelling and expiry
/// free room under it.
pub async fn per_user_cap<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("cap");
    let s = Sale::builder(p.clone(), 100)
        .per_user_limit(3)
        .hold(HOLD)
        .build()
        .unwrap();
    create(&*store, &s).await;
    let a = reserved(&*store, &request(&p, &user(1), 2, T0)).await;
    store.confirm(&p, &a.order_id, T0).await.unwrap();
    let over = store.reserve(&request(&p, &user(1), 2, T0)).await.unwrap();
    assert_eq!(over, ReserveOutcome::LimitExceeded);
    let b = reserved(&*store, &request(&p, &user(1), 1, T0)).await;
    let full = store.reserve(&request(&p, &user(1), 1, T0)).await.unwrap();
    assert_eq!(full, ReserveOutcome::LimitExceeded);
    // Other buyers are unaffected.
    reserved(&*store, &request(&p, &user(2), 3, T0)).await;
    // Cancelling frees room under the cap.
    assert_eq!(
        store.cancel(&p, &b.order_id, T0).await.unwrap(),
        CancelOutcome::Cancelled
    );
    reserved(&*store, &request(&p, &user(1), 1, T0)).await;
    assert_eq!(levels(&*store, &p).await, lv(100, 94, 4, 2));
    assert_eq!(
        store.reserve(&request(&p, &user(1), 1, T0)).await.unwrap(),
        ReserveOutcome::LimitExceeded
    );
    // Expiry frees room too.
    assert_eq!(store.expire(at(HOLD), 100).await.unwrap().len(), 2);
    assert_eq!(levels(&*store, &p).await, lv(100, 98, 0, 2));
    reserved(&*store, &request(&p, &user(1), 1, at(HOLD))).await;
    assert_eq!(
        store
            .reserve(&request(&p, &user(1), 1, at(HOLD)))
            .await
            .unwrap(),
        ReserveOutcome::LimitExceeded
    );
    assert_eq!(levels(&*store, &p).await, lv(100, 97, 1, 2));
}

/// A quantity above the per-order maximum is refused and changes nothing.
pub async fn per_order_max<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("order-max");
    let s = Sale::builder(p.clone(), 100)
        .per_order_max(2)
        .build()
        .unwrap();
    create(&*store, &s).await;
    let over = store.reserve(&request(&p, &user(1), 3, T0)).await.unwrap();
    assert_eq!(over, ReserveOutcome::OverOrderMax { max: 2 });
    reserved(&*store, &request(&p, &user(1), 2, T0)).await;
    assert_eq!(levels(&*store, &p).await, lv(100, 98, 0, 2));
    assert_eq!(drained(&*store, T0).await.len(), 1);
}

/// Outside `[starts_at, ends_at)` nothing can be reserved.
pub async fn sale_window<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("window");
    let start = at(secs(60));
    let end = at(secs(120));
    let s = Sale::builder(p.clone(), 10)
        .starts_at(start)
        .ends_at(end)
        .build()
        .unwrap();
    create(&*store, &s).await;
    let early = Timestamp::from_millis(start.as_millis() - 1);
    assert_eq!(
        store
            .reserve(&request(&p, &user(1), 1, early))
            .await
            .unwrap(),
        ReserveOutcome::NotOnSale
    );
    reserved(&*store, &request(&p, &user(1), 1, start)).await;
    let last = Timestamp::from_millis(end.as_millis() - 1);
    reserved(&*store, &request(&p, &user(2), 1, last)).await;
    assert_eq!(
        store.reserve(&request(&p, &user(3), 1, end)).await.unwrap(),
        ReserveOutcome::NotOnSale
    );
    assert_eq!(levels(&*store, &p).await, lv(10, 8, 0, 2));
    assert_eq!(drained(&*store, end).await.len(), 2);
}

/// Unknown products and orders are answered, not errors, and append
/// nothing.
pub async fn unknown_product<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("unknown");
    assert_eq!(
        store.reserve(&request(&p, &user(1), 1, T0)).await.unwrap(),
        ReserveOutcome::UnknownProduct
    );
    let id = OrderId::new(T0);
    assert_eq!(
        store.confirm(&p, &id, T0).await.unwrap(),
        ConfirmOutcome::Unknown
    );
    assert_eq!(
        store.cancel(&p, &id, T0).await.unwrap(),
        CancelOutcome::Unknown
    );
    assert_eq!(store.reservation(&id).await.unwrap(), None);
    // An unknown order of a known product, too.
    let known = hold_sale(&*store, "known", 1, HOLD).await;
    assert_eq!(
        store.confirm(&known, &id, T0).await.unwrap(),
        ConfirmOutcome::Unknown
    );
    assert_eq!(
        store.cancel(&known, &id, T0).await.unwrap(),
        CancelOutcome::Unknown
    );
    assert!(drained(&*store, T0).await.is_empty());
}

/// Holds expire exactly at their expiry, once, each with one `expired`
/// event; sold orders (confirmed holds, sales without holds) never expire.
pub async fn holds_expire<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let hold = secs(10);
    let p = hold_sale(&*store, "expire", 5, hold).await;
    let q = sale(&*store, "expire-plain", 5).await;
    let r = reserved(&*store, &request(&p, &user(1), 2, T0)).await;
    let sold = reserved(&*store, &request(&q, &user(1), 1, T0)).await;
    assert!(r.awaits_confirmation);
    assert_eq!(r.expires_at, at(hold));
    let before = store
        .expire(Timestamp::from_millis(at(hold).as_millis() - 1), 100)
        .await
        .unwrap();
    assert!(before.is_empty(), "expired too early: {before:?}");
    let expired = store.expire(at(hold), 100).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].order_id, r.order_id);
    assert_eq!(expired[0].state, ReservationState::Expired);
    assert_eq!(levels(&*store, &p).await, lv(5, 5, 0, 0));
    assert_eq!(levels(&*store, &q).await, lv(5, 4, 0, 1));
    assert!(store.expire(at(hold * 2), 100).await.unwrap().is_empty());
    assert_eq!(
        store.confirm(&p, &r.order_id, at(hold)).await.unwrap(),
        ConfirmOutcome::NotHeld(ReservationState::Expired)
    );
    assert_eq!(
        store.cancel(&p, &r.order_id, at(hold)).await.unwrap(),
        CancelOutcome::NotHeld(ReservationState::Expired)
    );
    let found = store.reservation(&r.order_id).await.unwrap().unwrap();
    assert_eq!(found.state, ReservationState::Expired);
    // Confirmed holds never expire.
    let c = reserved(&*store, &request(&p, &user(2), 1, T0)).await;
    store.confirm(&p, &c.order_id, T0).await.unwrap();
    assert!(store.expire(at(hold * 3), 100).await.unwrap().is_empty());
    assert_eq!(levels(&*store, &p).await, lv(5, 4, 0, 1));
    assert_eq!(levels(&*store, &q).await, lv(5, 4, 0, 1));

    let events = drain_outbox(&*store, at(hold * 3)).await;
    assert_eq!(events.len(), 5, "{events:?}");
    let orders = by_order(&events);
    assert_eq!(
        orders[&r.order_id],
        vec![
            OrderEvent::placed(&r),
            OrderEvent::closing(&r, EventType::Expired, at(hold))
        ]
    );
    assert_eq!(orders[&sold.order_id], vec![OrderEvent::placed(&sold)]);
    let c_types: Vec<_> = orders[&c.order_id].iter().map(|e| e.event_type).collect();
    assert_eq!(c_types, vec![EventType::Placed, EventType::Confirmed]);
}

/// `expire` releases at most `max` holds per call, each with its event.
pub async fn expire_respects_max<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = hold_sale(&*store, "expire-max", 10, HOLD).await;
    for u in 0..5 {
        let now = at(ms(u as u64));
        reserved(&*store, &request(&p, &user(u), 1, now)).await;
    }
    let late = at(HOLD * 2);
    let mut counts = Vec::new();
    for _ in 0..4 {
        counts.push(store.expire(late, 2).await.unwrap().len());
    }
    assert_eq!(counts, vec![2, 2, 1, 0]);
    assert_eq!(levels(&*store, &p).await, lv(10, 10, 0, 0));
    let mut ledger = EventLedger::new();
    ledger.extend(&drain_outbox(&*store, late).await);
    assert_eq!(ledger.count(EventType::Placed), 5);
    assert_eq!(ledger.count(EventType::Expired), 5);
    assert_eq!(ledger.len(), 10);
}

/// A restock replaces the terms and the total and keeps holds and sales
/// (a hold stays confirmable); it cannot go below what is already held or
/// sold, and appends no event.
pub async fn restock<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = hold_sale(&*store, "restock", 5, HOLD).await;
    let a = reserved(&*store, &request(&p, &user(1), 2, T0)).await;
    store.confirm(&p, &a.order_id, T0).await.unwrap();
    let b = reserved(&*store, &request(&p, &user(2), 1, T0)).await;
    let below = Sale::builder(p.clone(), 2).hold(HOLD).build().unwrap();
    assert_eq!(
        store.create_sale(&below).await.unwrap(),
        SaleWrite::StockBelowSold {
            held_or_committed: 3
        }
    );
    assert_eq!(levels(&*store, &p).await, lv(5, 2, 1, 2));
    let more = Sale::builder(p.clone(), 20)
        .per_user_limit(4)
        .hold(HOLD)
        .build()
        .unwrap();
    assert_eq!(store.create_sale(&more).await.unwrap(), SaleWrite::Updated);
    assert_eq!(store.sale(&p).await.unwrap(), Some(more));
    assert_eq!(levels(&*store, &p).await, lv(20, 17, 1, 2));
    assert_eq!(
        store.confirm(&p, &b.order_id, at(secs(1))).await.unwrap(),
        ConfirmOutcome::Confirmed
    );
    assert_eq!(levels(&*store, &p).await, lv(20, 17, 0, 3));
    assert_event_set(
        &drained(&*store, at(secs(1))).await,
        &[
            (a.order_id, EventType::Placed),
            (a.order_id, EventType::Confirmed),
            (b.order_id, EventType::Placed),
            (b.order_id, EventType::Confirmed),
        ],
    );
}

/// A scripted sequence over both kinds of sale appends exactly one event
/// per state change and none for no-ops, refusals, replays, retries and
/// tombstones; closing events appended after their `placed` was already
/// acknowledged still arrive.
pub async fn one_event_per_state_change<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let hold = secs(10);
    let h = hold_sale(&*store, "events-hold", 100, hold).await;
    let n = unique_product("events-plain");
    create(
        &*store,
        &Sale::builder(n.clone(), 100)
            .per_user_limit(5)
            .per_order_max(3)
            .ends_at(at(secs(3600)))
            .build()
            .unwrap(),
    )
    .await;
    let mut ledger = EventLedger::new();

    // Hold sale: six holds, whose `placed` events are relayed at once.
    let hreqs: Vec<_> = (1..=6).map(|u| request(&h, &user(u), 1, T0)).collect();
    for r in &hreqs {
        reserved(&*store, r).await;
    }
    ledger.extend(&drain_outbox(&*store, T0).await);
    assert_eq!(ledger.len(), 6);
    let [a, b, c, d, e, f] = [0, 1, 2, 3, 4, 5].map(|i| hreqs[i].order_id);
    let t1 = at(secs(1));
    assert_eq!(
        store.confirm(&h, &a, t1).await.unwrap(),
        ConfirmOutcome::Confirmed
    );
    assert_eq!(
        store.confirm(&h, &a, t1).await.unwrap(),
        ConfirmOutcome::AlreadyConfirmed
    );
    assert_eq!(
        store.cancel(&h, &b, t1).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        store.cancel(&h, &b, t1).await.unwrap(),
        CancelOutcome::AlreadyCancelled
    );
    assert_eq!(
        store.confirm(&h, &b, t1).await.unwrap(),
        ConfirmOutcome::NotHeld(ReservationState::Cancelled)
    );
    assert_eq!(
        store.void(&hreqs[5], t1).await.unwrap(),
        VoidOutcome::Voided
    );
    assert_eq!(
        store.void(&hreqs[5], t1).await.unwrap(),
        VoidOutcome::AlreadyVoided
    );
    assert_eq!(
        store.confirm(&h, &c, at(hold)).await.unwrap(),
        ConfirmOutcome::NotHeld(ReservationState::Expired)
    );
    assert_eq!(
        store.cancel(&h, &c, at(hold)).await.unwrap(),
        CancelOutcome::NotHeld(ReservationState::Expired)
    );
    assert_eq!(
        store.confirm(&h, &c, at(hold)).await.unwrap(),
        ConfirmOutcome::NotHeld(ReservationState::Expired)
    );
    let swept: HashSet<_> = store
        .expire(at(hold * 2), 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.order_id)
        .collect();
    assert_eq!(swept, HashSet::from([d, e]));
    assert!(store.expire(at(hold * 2), 100).await.unwrap().is_empty());
    assert_eq!(
        store.void(&hreqs[3], at(hold * 2)).await.unwrap(),
        VoidOutcome::AlreadyClosed(ReservationState::Expired)
    );

    // Sale without holds.
    let k = key("k-events");
    let g_req = keyed(&n, &user(1), 3, T0, &k);
    let g = reserved(&*store, &g_req).await.order_id;
    duplicate_of(&*store, &keyed(&n, &user(1), 3, t1, &k)).await;
    reserved(&*store, &g_req).await;
    let refusals = [
        (request(&n, &user(1), 3, t1), ReserveOutcome::LimitExceeded),
        (
            request(&n, &user(2), 4, t1),
            ReserveOutcome::OverOrderMax { max: 3 },
        ),
        (
            request(&n, &user(2), 1, at(secs(3600))),
            ReserveOutcome::NotOnSale,
        ),
        (
            request(&unique_product("events-none"), &user(2), 1, t1),
            ReserveOutcome::UnknownProduct,
        ),
    ];
    for (req, want) in refusals {
        assert_eq!(store.reserve(&req).await.unwrap(), want);
    }
    let h_req = request(&n, &user(2), 3, t1);
    let hh = reserved(&*store, &h_req).await.order_id;
    assert_eq!(store.void(&h_req, t1).await.unwrap(), VoidOutcome::Voided);
    assert_eq!(
        store.void(&h_req, t1).await.unwrap(),
        VoidOutcome::AlreadyVoided
    );
    let tomb = request(&n, &user(3), 1, t1);
    assert_eq!(
        store.void(&tomb, t1).await.unwrap(),
        VoidOutcome::NothingReserved
    );
    match store.reserve(&tomb).await.unwrap() {
        ReserveOutcome::Reserved(r) => assert_eq!(r.state, ReservationState::Voided),
        other => panic!("late reserve after a tombstone gave {other:?}"),
    }
    assert_eq!(
        store.cancel(&n, &g, t1).await.unwrap(),
        CancelOutcome::NotHeld(ReservationState::Committed)
    );

    let more = drain_outbox(&*store, at(hold * 2)).await;
    assert_eq!(
        ledger.extend(&more),
        more.len(),
        "an event handed out twice"
    );
    let counts: Vec<_> = [
        EventType::Placed,
        EventType::Confirmed,
        EventType::Cancelled,
        EventType::Expired,
        EventType::Voided,
    ]
    .map(|t| (t, ledger.count(t)))
    .to_vec();
    assert_eq!(
        counts,
        vec![
            (EventType::Placed, 8),
            (EventType::Confirmed, 1),
            (EventType::Cancelled, 1),
            (EventType::Expired, 3),
            (EventType::Voided, 2),
        ]
    );
    assert_eq!(ledger.len(), 15);
    assert_eq!(ledger.arrivals(), 15);
    let closings = [
        (a, Some(EventType::Confirmed)),
        (b, Some(EventType::Cancelled)),
        (c, Some(EventType::Expired)),
        (d, Some(EventType::Expired)),
        (e, Some(EventType::Expired)),
        (f, Some(EventType::Voided)),
        (g, None),
        (hh, Some(EventType::Voided)),
    ];
    for (order, closing) in closings {
        assert!(ledger.placed(&order), "{order}: no placed event");
        assert_eq!(ledger.closing(&order), closing, "{order}");
    }
    assert!(!ledger.placed(&tomb.order_id));
    for p in [&h, &n] {
        let l = levels(&*store, p).await;
        assert_eq!(ledger.live_units(p), l.held + l.committed, "{p}: {l:?}");
    }
    assert_eq!(levels(&*store, &h).await, lv(100, 99, 0, 1));
    assert_eq!(levels(&*store, &n).await, lv(100, 97, 0, 3));
}

/// One reservation as the mixed-operations model sees it.
#[derive(Debug)]
struct Entry {
    req: ReserveRequest,
    product: usize,
    expires_at: Timestamp,
    state: ReservationState,
}

/// A deterministic mix of every operation (reserves with and without keys,
/// store-level retries, confirm, cancel, void, tombstones, sweeps) over a
/// hold sale and a sale without holds. After each step the outbox is
/// drained (claim + ack) and: the invariant holds; the levels match a
/// model kept alongside; every answer matches the model; every
/// reservation's events say where it stands; and the units held + sold
/// equal the units of `placed` events not followed by `cancelled`,
/// `expired` or `voided`.
pub async fn invariant_under_mixed_operations<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    const CAP: u32 = 6;
    let store = fresh(make).await;
    let hold = secs(10);
    let products = [unique_product("mixed-hold"), unique_product("mixed-plain")];
    create(
        &*store,
        &Sale::builder(products[0].clone(), 40)
            .per_user_limit(CAP)
            .hold(hold)
            .build()
            .unwrap(),
    )
    .await;
    create(
        &*store,
        &Sale::builder(products[1].clone(), 40)
            .per_user_limit(CAP)
            .build()
            .unwrap(),
    )
    .await;
    let keys: Vec<_> = (0..4).map(|i| key(&format!("k-{i}"))).collect();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut entries: Vec<Entry> = Vec::new();
    let mut tombstones: Vec<ReserveRequest> = Vec::new();
    let mut ledger = EventLedger::new();
    let mut now = T0;
    for step in 0..400 {
        now = now.saturating_add(ms(next(800)));
        match next(9) {
            0..=2 => {
                let pi = next(2) as usize;
                let mut req = request(
                    &products[pi],
                    &user(next(8) as usize),
                    next(3) as u32 + 1,
                    now,
                );
                if next(3) == 0 {
                    req.idempotency_key = Some(keys[next(4) as usize].clone());
                }
                let holder = req.idempotency_key.as_ref().and_then(|k| {
                    entries.iter().find(|e| {
                        e.product == pi
                            && e.req.user == req.user
                            && e.req.idempotency_key.as_ref() == Some(k)
                            && e.state != ReservationState::Voided
                    })
                });
                match store.reserve(&req).await.unwrap() {
                    ReserveOutcome::Reserved(r) => {
                        assert!(holder.is_none(), "step {step}: key reused: {req:?}");
                        let want = if pi == 0 {
                            ReservationState::Held
                        } else {
                            ReservationState::Committed
                        };
                        assert_eq!(r.state, want, "step {step}");
                        entries.push(Entry {
                            expires_at: r.expires_at,
                            req,
                            product: pi,
                            state: want,
                        });
                    }
                    ReserveOutcome::Duplicate(r) => {
                        let holder = holder.unwrap_or_else(|| {
                            panic!("step {step}: Duplicate {r:?} for an unused key: {req:?}")
                        });
                        assert_eq!(r.order_id, holder.req.order_id, "step {step}");
                    }
                    ReserveOutcome::SoldOut | ReserveOutcome::LimitExceeded => {
                        assert!(holder.is_none(), "step {step}: a replay was refused");
                    }
                    other => panic!("step {step}: reserve gave {other:?}"),
                }
            }
            3 if !entries.is_empty() => {
                let i = next(entries.len() as u64) as usize;
                let e = &mut entries[i];
                let p = &products[e.product];
                let out = store.confirm(p, &e.req.order_id, now).await.unwrap();
                let (want, state) = match e.state {
                    ReservationState::Held if now < e.expires_at => {
                        (ConfirmOutcome::Confirmed, ReservationState::Committed)
                    }
                    ReservationState::Held => (
                        ConfirmOutcome::NotHeld(ReservationState::Expired),
                        ReservationState::Expired,
                    ),
                    ReservationState::Committed => (
                        ConfirmOutcome::AlreadyConfirmed,
                        ReservationState::Committed,
                    ),
                    s => (ConfirmOutcome::NotHeld(s), s),
                };
                assert_eq!(out, want, "step {step}: confirm of {e:?}");
                e.state = state;
            }
            4 if !entries.is_empty() => {
                let i = next(entries.len() as u64) as usize;
                let e = &mut entries[i];
                let p = &products[e.product];
                let out = store.cancel(p, &e.req.order_id, now).await.unwrap();
                let (want, state) = match e.state {
                    ReservationState::Held if now < e.expires_at => {
                        (CancelOutcome::Cancelled, ReservationState::Cancelled)
                    }
                    ReservationState::Held => (
                        CancelOutcome::NotHeld(ReservationState::Expired),
                        ReservationState::Expired,
                    ),
                    ReservationState::Cancelled => {
                        (CancelOutcome::AlreadyCancelled, ReservationState::Cancelled)
                    }
                    s => (CancelOutcome::NotHeld(s), s),
                };
                assert_eq!(out, want, "step {step}: cancel of {e:?}");
                e.state = state;
            }
            5 if !entries.is_empty() => {
                let i = next(entries.len() as u64) as usize;
                let e = &mut entries[i];
                let out = store.void(&e.req, now).await.unwrap();
                let state = match (e.state, out) {
                    // Past its expiry but not swept, either answer is sound.
                    (ReservationState::Held, VoidOutcome::Voided) => ReservationState::Voided,
                    (
                        ReservationState::Held,
                        VoidOutcome::AlreadyClosed(ReservationState::Expired),
                    ) if now >= e.expires_at => ReservationState::Expired,
                    // A confirmed hold already has its closing event.
                    (
                        ReservationState::Committed,
                        VoidOutcome::AlreadyClosed(ReservationState::Committed),
                    ) if e.product == 0 => ReservationState::Committed,
                    (ReservationState::Committed, VoidOutcome::Voided) if e.product == 1 => {
                        ReservationState::Voided
                    }
                    (ReservationState::Voided, VoidOutcome::AlreadyVoided) => {
                        ReservationState::Voided
                    }
                    (s, VoidOutcome::AlreadyClosed(t))
                        if s == t
                            && matches!(
                                s,
                                ReservationState::Cancelled | ReservationState::Expired
                            ) =>
                    {
                        s
                    }
                    (s, out) => panic!("step {step}: void of {e:?} ({s:?}) gave {out:?}"),
                };
                e.state = state;
            }
            6 => {
                let swept = store.expire(now, next(5) as usize + 1).await.unwrap();
                for r in swept {
                    assert_eq!(r.state, ReservationState::Expired, "step {step}");
                    let e = entries
                        .iter_mut()
                        .find(|e| e.req.order_id == r.order_id)
                        .unwrap_or_else(|| panic!("step {step}: swept unknown {r:?}"));
                    assert_eq!(e.state, ReservationState::Held, "step {step}: {e:?}");
                    assert!(e.expires_at <= now, "step {step}: swept early: {e:?}");
                    e.state = ReservationState::Expired;
                }
            }
            7 if !entries.is_empty() => {
                // A store-level retry: the record as it stands.
                let i = next(entries.len() as u64) as usize;
                let e = &mut entries[i];
                match store.reserve(&e.req).await.unwrap() {
                    ReserveOutcome::Reserved(r) => {
                        assert_eq!(r.order_id, e.req.order_id, "step {step}");
                        let lapsed = e.state == ReservationState::Held && now >= e.expires_at;
                        if lapsed && r.state == ReservationState::Expired {
                            e.state = ReservationState::Expired;
                        }
                        assert_eq!(r.state, e.state, "step {step}: retry of {e:?}");
                    }
                    other => panic!("step {step}: retry of {e:?} gave {other:?}"),
                }
            }
            _ => {
                // A reserve whose answer was lost before it ran.
                let pi = next(2) as usize;
                let req = request(&products[pi], &user(next(8) as usize), 1, now);
                assert_eq!(
                    store.void(&req, now).await.unwrap(),
                    VoidOutcome::NothingReserved,
                    "step {step}"
                );
                match store.reserve(&req).await.unwrap() {
                    ReserveOutcome::Reserved(r) => {
                        assert_eq!(r.state, ReservationState::Voided, "step {step}")
                    }
                    other => panic!("step {step}: reserve after tombstone gave {other:?}"),
                }
                tombstones.push(req);
            }
        }

        // Relay everything, then reconcile: a store may expire a lapsed
        // hold on its own (its event says so).
        ledger.extend(&drain_outbox(&*store, now).await);
        for e in &mut entries {
            let id = e.req.order_id;
            assert!(ledger.placed(&id), "step {step}: no placed event for {e:?}");
            if e.state == ReservationState::Held
                && e.expires_at <= now
                && ledger.closing(&id) == Some(EventType::Expired)
            {
                e.state = ReservationState::Expired;
            }
            let want = match e.state {
                ReservationState::Held => None,
                ReservationState::Committed if e.product == 0 => Some(EventType::Confirmed),
                ReservationState::Committed => None,
                ReservationState::Cancelled => Some(EventType::Cancelled),
                ReservationState::Expired => Some(EventType::Expired),
                ReservationState::Voided => Some(EventType::Voided),
            };
            assert_eq!(ledger.closing(&id), want, "step {step}: events of {e:?}");
        }
        for t in &tombstones {
            assert!(
                !ledger.placed(&t.order_id),
                "step {step}: tombstone relayed"
            );
        }
        for (pi, p) in products.iter().enumerate() {
            let l = levels(&*store, p).await;
            let units = |s: ReservationState| -> u64 {
                entries
                    .iter()
                    .filter(|e| e.product == pi && e.state == s)
                    .map(|e| u64::from(e.req.quantity.get()))
                    .sum()
            };
            assert_eq!(
                l.committed,
                units(ReservationState::Committed),
                "step {step}: {p} {l:?}"
            );
            assert_eq!(
                l.held,
                units(ReservationState::Held),
                "step {step}: {p} {l:?}"
            );
            assert_eq!(
                ledger.live_units(p),
                l.held + l.committed,
                "step {step}: {p}: events disagree with {l:?}"
            );
            for u in 0..8 {
                assert!(
                    ledger.user_units(p, &user(u)) <= u64::from(CAP),
                    "step {step}"
                );
            }
        }
    }
    // The mix really exercised every path.
    for t in [
        EventType::Confirmed,
        EventType::Cancelled,
        EventType::Expired,
        EventType::Voided,
    ] {
        assert!(ledger.count(t) > 0, "the script never produced {t:?}");
    }
}

/// Many buyers race for one hot product (a sale without holds). Every
/// fifth winner's answer is "lost" and the reserve voided, so units churn
/// back into the race. While it runs, a monitor samples: `S1 = snapshot`,
/// drain the outbox, `S2 = snapshot`; the units the events name so far
/// (`placed` minus `voided`) must lie between S1's held + sold and S2's
/// (voids pause during a sample, so units only grow within it). After the
/// race, fresh buyers buy until sold out; then exactly the stock is sold,
/// nothing is held, and the events name exactly the orders that were kept.
pub async fn concurrent_buyers_never_oversell<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    const BUYERS: usize = 1_000;
    const ATTEMPTS: usize = 3;
    const STOCK: u32 = 100;
    let store = fresh(make).await;
    let p = sale(&*store, "hot", STOCK).await;
    let kept: Arc<Mutex<Vec<OrderId>>> = Arc::default();
    let voids = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(tokio::sync::RwLock::new(()));
    let monitor = {
        let (store, p, done, gate) = (store.clone(), p.clone(), done.clone(), gate.clone());
        tokio::spawn(async move {
            let mut ledger = EventLedger::new();
            let mut samples = 0u32;
            loop {
                let finished = done.load(Ordering::Acquire);
                let (s1, s2) = {
                    let _no_voids = gate.write().await;
                    let s1 = store.snapshot(&p).await.unwrap().unwrap();
                    ledger.extend(&drain_outbox(&*store, T0).await);
                    let s2 = store.snapshot(&p).await.unwrap().unwrap();
                    (s1, s2)
                };
                for l in [s1, s2] {
                    assert!(l.is_consistent(), "invariant broken mid-run: {l:?}");
                    assert!(l.committed <= u64::from(STOCK), "oversold: {l:?}");
                }
                let live = ledger.live_units(&p);
                assert!(
                    s1.held + s1.committed <= live && live <= s2.held + s2.committed,
                    "events name {live} units, outside [{s1:?}, {s2:?}]"
                );
                samples += 1;
                if finished {
                    return (samples, ledger);
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut tasks = Vec::with_capacity(BUYERS);
    for b in 0..BUYERS {
        let (store, p, kept, voids, gate) = (
            store.clone(),
            p.clone(),
            kept.clone(),
            voids.clone(),
            gate.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for a in 0..ATTEMPTS {
                let req = request(&p, &user(b), 1, T0);
                match store.reserve(&req).await.unwrap() {
                    ReserveOutcome::Reserved(r) if (b + a) % 5 == 0 => {
                        assert_eq!(r.state, ReservationState::Committed);
                        let _sampling_waits = gate.read().await;
                        let out = store.void(&req, T0).await.unwrap();
                        assert_eq!(out, VoidOutcome::Voided);
                        voids.fetch_add(1, Ordering::Relaxed);
                    }
                    ReserveOutcome::Reserved(r) => {
                        assert_eq!(r.state, ReservationState::Committed);
                        kept.lock().push(r.order_id);
                    }
                    ReserveOutcome::SoldOut => {}
                    other => panic!("buyer {b}: unexpected {other:?}"),
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("buyer task panicked");
    }
    // Drain phase: fresh buyers buy whatever the churn left, so the end
    // state is exact by construction.
    let mut late = 0;
    for b in BUYERS.. {
        match store.reserve(&request(&p, &user(b), 1, T0)).await.unwrap() {
            ReserveOutcome::Reserved(r) => {
                kept.lock().push(r.order_id);
                late += 1;
            }
            ReserveOutcome::SoldOut => break,
            other => panic!("drain buyer {b}: unexpected {other:?}"),
        }
        assert!(late <= STOCK, "sold more than the stock");
    }
    done.store(true, Ordering::Release);
    let (samples, mut ledger) = monitor.await.expect("monitor saw a broken invariant");
    assert!(samples > 0);
    ledger.extend(&drain_outbox(&*store, T0).await);

    let l = levels(&*store, &p).await;
    assert_eq!(l, lv(STOCK.into(), 0, 0, STOCK.into()));
    let kept: HashSet<OrderId> = kept.lock().iter().copied().collect();
    assert_eq!(
        kept.len(),
        STOCK as usize,
        "kept orders (late buyers: {late})"
    );
    assert_eq!(
        ledger.live_orders(&p),
        kept,
        "the events name exactly the kept orders"
    );
    assert_eq!(ledger.live_units(&p), u64::from(STOCK));
    let voids = voids.load(Ordering::Relaxed) as usize;
    assert_eq!(ledger.count(EventType::Voided), voids);
    assert_eq!(ledger.count(EventType::Placed), STOCK as usize + voids);
}

/// Many concurrent attempts by the same buyers never break the per-user
/// cap, and the events agree per buyer.
pub async fn concurrent_per_user_cap<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    const USERS: usize = 50;
    const ATTEMPTS: usize = 20;
    const CAP: u32 = 2;
    let store = fresh(make).await;
    let p = unique_product("cap-race");
    let s = Sale::builder(p.clone(), 10_000)
        .per_user_limit(CAP)
        .build()
        .unwrap();
    create(&*store, &s).await;
    let per_user: Arc<Vec<AtomicU64>> = Arc::new((0..USERS).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::new();
    for u in 0..USERS {
        for _ in 0..ATTEMPTS {
            let (store, p, per_user) = (store.clone(), p.clone(), per_user.clone());
            tasks.push(tokio::spawn(async move {
                let req = request(&p, &user(u), 1, T0);
                match store.reserve(&req).await.unwrap() {
                    ReserveOutcome::Reserved(_) => {
                        per_user[u].fetch_add(1, Ordering::Relaxed);
                    }
                    ReserveOutcome::LimitExceeded => {}
                    other => panic!("unexpected {other:?}"),
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("task panicked");
    }
    for (u, n) in per_user.iter().enumerate() {
        assert_eq!(n.load(Ordering::Relaxed), u64::from(CAP), "user {u}");
    }
    let l = levels(&*store, &p).await;
    assert_eq!(l.committed, (USERS as u64) * u64::from(CAP));
    assert_eq!(l.held, 0);
    let mut ledger = EventLedger::new();
    ledger.extend(&drain_outbox(&*store, T0).await);
    assert_eq!(ledger.count(EventType::Placed), USERS * CAP as usize);
    for u in 0..USERS {
        assert_eq!(ledger.user_units(&p, &user(u)), u64::from(CAP), "user {u}");
    }
}
