//! The [`StockStore`] conformance cases. Run them all with
//! [`stock_store_conformance!`](crate::stock_store_conformance).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::model::{
    IdempotencyKey, OrderId, ProductId, Quantity, Reservation, ReservationState, Sale, StockLevels,
    Timestamp, UserId,
};
use crate::ports::{
    CommitOutcome, ReleaseOutcome, ReleaseReason, ReserveOutcome, ReserveRequest, SaleWrite,
    StockStore,
};

use super::{unique_product, user};

/// A fixed, arbitrary "now" for the cases (2026-01-01T00:00:00Z).
pub const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);
/// The pending TTL the cases reserve with.
pub const PENDING: Duration = Duration::from_secs(30);

async fn fresh<F, Fut, S>(make: &F) -> Arc<dyn StockStore>
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    Arc::new(make().await)
}

fn at(offset: Duration) -> Timestamp {
    T0.saturating_add(offset)
}

/// A reservation request for `q` units by `u` at `now`.
pub fn request(product: &ProductId, u: &UserId, q: u32, now: Timestamp) -> ReserveRequest {
    ReserveRequest {
        order_id: OrderId::new(now),
        product: product.clone(),
        user: u.clone(),
        quantity: Quantity::new(i64::from(q)).expect("cases use valid quantities"),
        idempotency_key: None,
        now,
        pending_ttl: PENDING,
    }
}

async fn sale(store: &dyn StockStore, case: &str, stock: u32) -> ProductId {
    let p = unique_product(case);
    let s = Sale::builder(p.clone(), stock).build().expect("valid sale");
    assert_eq!(store.create_sale(&s).await.unwrap(), SaleWrite::Created);
    p
}

async fn levels(store: &dyn StockStore, p: &ProductId) -> StockLevels {
    let l = store.snapshot(p).await.unwrap().expect("the sale exists");
    assert!(l.is_consistent(), "invariant broken: {l:?}");
    l
}

async fn reserved(store: &dyn StockStore, req: &ReserveRequest) -> Reservation {
    match store.reserve(req).await.unwrap() {
        ReserveOutcome::Reserved(r) => r,
        other => panic!("expected Reserved for {req:?}, got {other:?}"),
    }
}

fn lv(total: u64, available: u64, held: u64, committed: u64) -> StockLevels {
    StockLevels {
        total,
        available,
        held,
        committed,
    }
}

/// Creating a sale makes it readable with full stock available.
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
        .ends_at(at(Duration::from_secs(3600)))
        .hold(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(store.create_sale(&s).await.unwrap(), SaleWrite::Created);
    assert_eq!(store.sale(&p).await.unwrap(), Some(s));
    assert_eq!(levels(&*store, &p).await, lv(7, 7, 0, 0));
    let other = unique_product("never-created");
    assert_eq!(store.sale(&other).await.unwrap(), None);
    assert_eq!(store.snapshot(&other).await.unwrap(), None);
}

/// Reserve holds units; commit sells them; both are idempotent.
pub async fn reserve_then_commit<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = sale(&*store, "commit", 10).await;
    let req = request(&p, &user(1), 3, T0);
    let r = reserved(&*store, &req).await;
    assert_eq!(r.order_id, req.order_id);
    assert_eq!(r.state, ReservationState::Held);
    assert_eq!(r.quantity.get(), 3);
    assert_eq!(r.created_at, T0);
    assert_eq!(r.expires_at, at(PENDING));
    assert!(!r.awaits_confirmation);
    assert_eq!(levels(&*store, &p).await, lv(10, 7, 3, 0));

    let c = store.commit(&p, &r.order_id, T0).await.unwrap();
    assert_eq!(c, CommitOutcome::Committed);
    assert_eq!(levels(&*store, &p).await, lv(10, 7, 0, 3));
    let again = store.commit(&p, &r.order_id, T0).await.unwrap();
    assert_eq!(again, CommitOutcome::AlreadyCommitted);
    let release = store
        .release(&p, &r.order_id, ReleaseReason::Cancelled)
        .await
        .unwrap();
    assert_eq!(release, ReleaseOutcome::AlreadyCommitted);
    assert_eq!(levels(&*store, &p).await, lv(10, 7, 0, 3));
    let found = store.reservation(&r.order_id).await.unwrap().unwrap();
    assert_eq!(found.state, ReservationState::Committed);
    assert_eq!(found.product, p);
}

/// Cancelling returns units once; a cancelled hold cannot be committed.
pub async fn cancel_returns_units<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = sale(&*store, "cancel", 5).await;
    let r = reserved(&*store, &request(&p, &user(1), 2, T0)).await;
    let rel = store
        .release(&p, &r.order_id, ReleaseReason::Cancelled)
        .await
        .unwrap();
    assert_eq!(rel, ReleaseOutcome::Released);
    assert_eq!(levels(&*store, &p).await, lv(5, 5, 0, 0));
    let again = store
        .release(&p, &r.order_id, ReleaseReason::Cancelled)
        .await
        .unwrap();
    assert_eq!(
        again,
        ReleaseOutcome::AlreadyReleased(ReservationState::Cancelled)
    );
    let c = store.commit(&p, &r.order_id, T0).await.unwrap();
    assert_eq!(c, CommitOutcome::NotHeld(ReservationState::Cancelled));
    assert_eq!(levels(&*store, &p).await, lv(5, 5, 0, 0));
    let found = store.reservation(&r.order_id).await.unwrap().unwrap();
    assert_eq!(found.state, ReservationState::Cancelled);
}

/// An aborted reservation disappears with its idempotency key, so a retry
/// with the same key starts afresh.
pub async fn abort_forgets_reservation_and_key<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = sale(&*store, "abort", 5).await;
    let key = IdempotencyKey::new("retry-me").unwrap();
    let mut req = request(&p, &user(1), 1, T0);
    req.idempotency_key = Some(key.clone());
    let r = reserved(&*store, &req).await;
    let rel = store
        .release(&p, &r.order_id, ReleaseReason::Aborted)
        .await
        .unwrap();
    assert_eq!(rel, ReleaseOutcome::Released);
    assert_eq!(store.reservation(&r.order_id).await.unwrap(), None);
    assert_eq!(levels(&*store, &p).await, lv(5, 5, 0, 0));
    let gone = store
        .release(&p, &r.order_id, ReleaseReason::Aborted)
        .await
        .unwrap();
    assert_eq!(gone, ReleaseOutcome::Unknown);
    assert_eq!(
        store.commit(&p, &r.order_id, T0).await.unwrap(),
        CommitOutcome::Unknown
    );

    let mut retry = request(&p, &user(1), 1, T0);
    retry.idempotency_key = Some(key);
    let again = reserved(&*store, &retry).await;
    assert_eq!(again.order_id, retry.order_id);
    assert_eq!(levels(&*store, &p).await, lv(5, 4, 1, 0));
}

/// A repeated idempotency key answers with the first reservation and
/// reserves nothing; keys are scoped per buyer and product.
pub async fn idempotency_key_replays<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = sale(&*store, "idem", 10).await;
    let q = sale(&*store, "idem-other", 10).await;
    let key = IdempotencyKey::new("k-1").unwrap();
    let keyed = |product: &ProductId, u: usize, n: u32| {
        let mut r = request(product, &user(u), n, T0);
        r.idempotency_key = Some(key.clone());
        r
    };
    let first = reserved(&*store, &keyed(&p, 1, 2)).await;
    assert_eq!(first.idempotency_key.as_ref(), Some(&key));
    // Same key, same buyer, new order id (a client retry): the original.
    match store.reserve(&keyed(&p, 1, 2)).await.unwrap() {
        ReserveOutcome::Duplicate(r) => assert_eq!(r, first),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    // Same key, different quantity: still the original (the caller decides
    // it is a conflict).
    match store.reserve(&keyed(&p, 1, 3)).await.unwrap() {
        ReserveOutcome::Duplicate(r) => assert_eq!(r.order_id, first.order_id),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert_eq!(levels(&*store, &p).await, lv(10, 8, 2, 0));
    // Another buyer, or another product, with the same key: independent.
    reserved(&*store, &keyed(&p, 2, 1)).await;
    reserved(&*store, &keyed(&q, 1, 1)).await;
    assert_eq!(levels(&*store, &p).await, lv(10, 7, 3, 0));
    assert_eq!(levels(&*store, &q).await, lv(10, 9, 1, 0));
    // After commit the key still answers with the (now committed) original.
    store.commit(&p, &first.order_id, T0).await.unwrap();
    match store.reserve(&keyed(&p, 1, 2)).await.unwrap() {
        ReserveOutcome::Duplicate(r) => {
            assert_eq!(r.order_id, first.order_id);
            assert_eq!(r.state, ReservationState::Committed);
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
}

/// Reserving the same order id twice reserves once.
pub async fn same_order_id_is_duplicate<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = sale(&*store, "dup-id", 10).await;
    let req = request(&p, &user(1), 4, T0);
    let first = reserved(&*store, &req).await;
    match store.reserve(&req).await.unwrap() {
        ReserveOutcome::Duplicate(r) => assert_eq!(r, first),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert_eq!(levels(&*store, &p).await, lv(10, 6, 4, 0));
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
    assert_eq!(levels(&*store, &p).await, lv(3, 0, 3, 0));
}

/// A buyer's held + committed units never exceed the cap; releases free
/// room under it.
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
        .build()
        .unwrap();
    store.create_sale(&s).await.unwrap();
    let a = reserved(&*store, &request(&p, &user(1), 2, T0)).await;
    store.commit(&p, &a.order_id, T0).await.unwrap();
    let over = store.reserve(&request(&p, &user(1), 2, T0)).await.unwrap();
    assert_eq!(over, ReserveOutcome::LimitExceeded);
    let b = reserved(&*store, &request(&p, &user(1), 1, T0)).await;
    let full = store.reserve(&request(&p, &user(1), 1, T0)).await.unwrap();
    assert_eq!(full, ReserveOutcome::LimitExceeded);
    // Other buyers are unaffected.
    reserved(&*store, &request(&p, &user(2), 3, T0)).await;
    // Cancelling frees room under the cap.
    store
        .release(&p, &b.order_id, ReleaseReason::Cancelled)
        .await
        .unwrap();
    reserved(&*store, &request(&p, &user(1), 1, T0)).await;
    assert_eq!(levels(&*store, &p).await, lv(100, 94, 4, 2));
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
    store.create_sale(&s).await.unwrap();
    let over = store.reserve(&request(&p, &user(1), 3, T0)).await.unwrap();
    assert_eq!(over, ReserveOutcome::OverOrderMax { max: 2 });
    reserved(&*store, &request(&p, &user(1), 2, T0)).await;
    assert_eq!(levels(&*store, &p).await, lv(100, 98, 2, 0));
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
    let start = at(Duration::from_secs(60));
    let end = at(Duration::from_secs(120));
    let s = Sale::builder(p.clone(), 10)
        .starts_at(start)
        .ends_at(end)
        .build()
        .unwrap();
    store.create_sale(&s).await.unwrap();
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
    assert_eq!(levels(&*store, &p).await, lv(10, 8, 2, 0));
}

/// Unknown products and orders are answered, not errors.
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
        store.commit(&p, &id, T0).await.unwrap(),
        CommitOutcome::Unknown
    );
    assert_eq!(
        store
            .release(&p, &id, ReleaseReason::Cancelled)
            .await
            .unwrap(),
        ReleaseOutcome::Unknown
    );
    assert_eq!(store.reservation(&id).await.unwrap(), None);
    // An unknown order of a known product, too.
    let known = sale(&*store, "known", 1).await;
    assert_eq!(
        store.commit(&known, &id, T0).await.unwrap(),
        CommitOutcome::Unknown
    );
}

/// Holds of a sale with a hold TTL expire exactly at their expiry, once.
pub async fn holds_expire<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("expire");
    let hold = Duration::from_secs(10);
    let s = Sale::builder(p.clone(), 5).hold(hold).build().unwrap();
    store.create_sale(&s).await.unwrap();
    let r = reserved(&*store, &request(&p, &user(1), 2, T0)).await;
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
    assert!(store.expire(at(hold * 2), 100).await.unwrap().is_empty());
    assert_eq!(
        store.commit(&p, &r.order_id, at(hold)).await.unwrap(),
        CommitOutcome::NotHeld(ReservationState::Expired)
    );
    assert_eq!(
        store
            .release(&p, &r.order_id, ReleaseReason::Cancelled)
            .await
            .unwrap(),
        ReleaseOutcome::AlreadyReleased(ReservationState::Expired)
    );
    let found = store.reservation(&r.order_id).await.unwrap().unwrap();
    assert_eq!(found.state, ReservationState::Expired);
    // Committed holds never expire.
    let c = reserved(&*store, &request(&p, &user(2), 1, T0)).await;
    store.commit(&p, &c.order_id, T0).await.unwrap();
    assert!(store.expire(at(hold * 3), 100).await.unwrap().is_empty());
    assert_eq!(levels(&*store, &p).await, lv(5, 4, 0, 1));
}

/// A hold past its expiry cannot be committed even before the sweeper ran;
/// its units go back at once.
pub async fn commit_after_expiry_refused<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = sale(&*store, "late-commit", 4).await;
    let r = reserved(&*store, &request(&p, &user(1), 1, T0)).await;
    let late = store.commit(&p, &r.order_id, at(PENDING)).await.unwrap();
    assert_eq!(late, CommitOutcome::NotHeld(ReservationState::Expired));
    assert_eq!(levels(&*store, &p).await, lv(4, 4, 0, 0));
    assert!(store.expire(at(PENDING * 2), 10).await.unwrap().is_empty());
}

/// `expire` releases at most `max` holds per call.
pub async fn expire_respects_max<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = sale(&*store, "expire-max", 10).await;
    for u in 0..5 {
        let now = at(Duration::from_millis(u as u64));
        reserved(&*store, &request(&p, &user(u), 1, now)).await;
    }
    let late = at(PENDING * 2);
    let mut counts = Vec::new();
    for _ in 0..4 {
        counts.push(store.expire(late, 2).await.unwrap().len());
    }
    assert_eq!(counts, vec![2, 2, 1, 0]);
    assert_eq!(levels(&*store, &p).await, lv(10, 10, 0, 0));
}

/// A restock replaces the total and keeps holds and sales; it cannot go
/// below what is already held or sold.
pub async fn restock<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = sale(&*store, "restock", 5).await;
    let a = reserved(&*store, &request(&p, &user(1), 2, T0)).await;
    store.commit(&p, &a.order_id, T0).await.unwrap();
    reserved(&*store, &request(&p, &user(2), 1, T0)).await;
    let below = Sale::builder(p.clone(), 2).build().unwrap();
    assert_eq!(
        store.create_sale(&below).await.unwrap(),
        SaleWrite::StockBelowSold {
            held_or_committed: 3
        }
    );
    assert_eq!(levels(&*store, &p).await, lv(5, 2, 1, 2));
    let more = Sale::builder(p.clone(), 20)
        .per_user_limit(4)
        .build()
        .unwrap();
    assert_eq!(store.create_sale(&more).await.unwrap(), SaleWrite::Updated);
    assert_eq!(store.sale(&p).await.unwrap(), Some(more));
    assert_eq!(levels(&*store, &p).await, lv(20, 17, 1, 2));
}

/// A deterministic mix of every operation keeps the invariant after each
/// step, and the levels match a model kept alongside.
pub async fn invariant_under_mixed_operations<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("mixed");
    let s = Sale::builder(p.clone(), 40)
        .per_user_limit(6)
        .build()
        .unwrap();
    store.create_sale(&s).await.unwrap();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut held: Vec<Reservation> = Vec::new();
    let mut committed = 0u64;
    let mut now = T0;
    for step in 0..300 {
        now = now.saturating_add(Duration::from_millis(next(500)));
        match next(4) {
            0 | 1 => {
                let req = request(&p, &user(next(8) as usize), next(3) as u32 + 1, now);
                if let ReserveOutcome::Reserved(r) = store.reserve(&req).await.unwrap() {
                    held.push(r);
                }
            }
            2 if !held.is_empty() => {
                let r = held.swap_remove(next(held.len() as u64) as usize);
                match store.commit(&p, &r.order_id, now).await.unwrap() {
                    CommitOutcome::Committed => committed += u64::from(r.quantity.get()),
                    CommitOutcome::NotHeld(ReservationState::Expired) => {}
                    other => panic!("step {step}: commit gave {other:?}"),
                }
            }
            3 if !held.is_empty() => {
                let r = held.swap_remove(next(held.len() as u64) as usize);
                let reason = if next(2) == 0 {
                    ReleaseReason::Aborted
                } else {
                    ReleaseReason::Cancelled
                };
                let out = store.release(&p, &r.order_id, reason).await.unwrap();
                assert!(
                    matches!(
                        out,
                        ReleaseOutcome::Released
                            | ReleaseOutcome::AlreadyReleased(ReservationState::Expired)
                    ),
                    "step {step}: release gave {out:?}"
                );
            }
            _ => {
                let expired = store.expire(now, 1000).await.unwrap();
                held.retain(|h| !expired.iter().any(|e| e.order_id == h.order_id));
            }
        }
        let l = levels(&*store, &p).await;
        assert_eq!(l.committed, committed, "step {step}: {l:?}");
    }
}

/// Many buyers race for one hot product: exactly the stock is sold, the
/// invariant holds throughout, and nothing is left held.
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
    let sold = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (store, p, done) = (store.clone(), p.clone(), done.clone());
        tokio::spawn(async move {
            let mut samples = 0u32;
            while !done.load(Ordering::Acquire) {
                let l = store.snapshot(&p).await.unwrap().unwrap();
                assert!(l.is_consistent(), "invariant broken mid-run: {l:?}");
                assert!(l.committed <= u64::from(STOCK), "oversold: {l:?}");
                samples += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            samples
        })
    };
    let mut tasks = Vec::with_capacity(BUYERS);
    for b in 0..BUYERS {
        let (store, p, sold) = (store.clone(), p.clone(), sold.clone());
        tasks.push(tokio::spawn(async move {
            for a in 0..ATTEMPTS {
                let req = request(&p, &user(b), 1, T0);
                if let ReserveOutcome::Reserved(r) = store.reserve(&req).await.unwrap() {
                    // Every fifth winner's order "fails" and is aborted, so
                    // units churn back into the race.
                    if (b + a) % 5 == 0 {
                        let out = store
                            .release(&p, &r.order_id, ReleaseReason::Aborted)
                            .await
                            .unwrap();
                        assert_eq!(out, ReleaseOutcome::Released);
                    } else {
                        let c = store.commit(&p, &r.order_id, T0).await.unwrap();
                        assert_eq!(c, CommitOutcome::Committed);
                        sold.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("buyer task panicked");
    }
    done.store(true, Ordering::Release);
    let samples = monitor.await.expect("monitor saw a broken invariant");
    assert!(samples > 0);
    let l = levels(&*store, &p).await;
    assert_eq!(sold.load(Ordering::Relaxed), u64::from(STOCK), "{l:?}");
    assert_eq!(l, lv(STOCK.into(), 0, 0, STOCK.into()));
}

/// Many concurrent attempts by the same buyers never break the per-user
/// cap.
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
    store.create_sale(&s).await.unwrap();
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
    assert_eq!(l.held, (USERS as u64) * u64::from(CAP));
}
