//! A sale's life on the store: creation, selling at once, holds that are
//! confirmed, cancelled or found expired.

use std::future::Future;

use crate::model::{EventType, OrderEvent, ReservationState, Sale, Timestamp};
use crate::testing::ledger::drain_outbox;
use crate::testing::{unique_product, user};
use crate::{CancelOutcome, ConfirmOutcome, StockStore};

use super::{
    HOLD, T0, assert_event_set, at, by_order, create, drained, fresh, hold_sale, key, keyed,
    levels, lv, request, reserved, sale, secs,
};

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
