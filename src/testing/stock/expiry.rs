//! Holds that expire: exactly at their expiry, once, and at most `max` per
//! sweep.

use std::future::Future;

use crate::model::{EventType, OrderEvent, ReservationState, Timestamp};
use crate::testing::ledger::{EventLedger, drain_outbox};
use crate::testing::user;
use crate::{CancelOutcome, ConfirmOutcome, StockStore};

use super::{
    HOLD, T0, at, by_order, fresh, hold_sale, levels, lv, ms, request, reserved, sale, secs,
};

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
