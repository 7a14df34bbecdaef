//! Voids of orders whose answer was lost: sold and held units come back,
//! tombstones for reserves that never ran, closed holds stay closed.

use std::future::Future;

use crate::model::{EventType, OrderEvent, ProductId, ReservationState, Sale};
use crate::testing::ledger::{EventLedger, drain_outbox};
use crate::testing::{unique_product, user};
use crate::{
    CancelOutcome, ConfirmOutcome, ReserveOutcome, ReserveRequest, StockStore, VoidOutcome,
};

use super::{
    HOLD, T0, assert_event_set, at, create, drained, fresh, hold_sale, key, keyed, levels, lv,
    request, reserved, sale, secs,
};

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
