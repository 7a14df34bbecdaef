//! The [`StockStore`] conformance cases: sales, reservations, holds,
//! voids, the per-user and per-order limits, the events every state change
//! appends, and the invariants under a deterministic mix and under
//! concurrency. The outbox's claim/lease/ack cases are in
//! [`outbox`](super::outbox). Run them all with
//! [`stock_store_conformance!`](crate::stock_store_conformance).
//!
//! Every case passes `now` explicitly and never sleeps.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{
    EventType, IdempotencyKey, OrderEvent, OrderId, ProductId, Quantity, Reservation, Sale,
    StockLevels, Timestamp, UserId,
};
use crate::{ReserveOutcome, ReserveRequest, SaleWrite, StockStore};

use super::ledger::drain_outbox;
use super::unique_product;

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

mod concurrent;
mod events;
mod expiry;
mod lifecycle;
mod limits;
mod mixed;
mod replays;
mod voids;

pub use concurrent::{concurrent_buyers_never_oversell, concurrent_per_user_cap};
pub use events::one_event_per_state_change;
pub use expiry::{expire_respects_max, holds_expire};
pub use lifecycle::{
    confirm_or_cancel_past_expiry_expires, create_sale_and_snapshot, hold_then_cancel,
    hold_then_confirm, no_hold_sale_sells_at_once,
};
pub use limits::{
    per_order_max, per_user_cap, restock, sale_window, sold_out_is_exact, unknown_product,
};
pub use mixed::invariant_under_mixed_operations;
pub use replays::{
    a_replayed_order_is_kept_until_its_replays_void, idempotency_key_replays,
    many_replays_stay_flat, purge_waits_for_delivery, replays_win,
    same_order_id_is_the_same_request,
};
pub use voids::{
    void_before_reserve_leaves_tombstone, void_of_closed_hold_changes_nothing,
    void_of_confirmed_hold_changes_nothing, void_returns_held_units, void_returns_sold_units,
};
