//! The outbox as a log: exactly one event per state change.

use std::collections::HashSet;
use std::future::Future;

use crate::model::{EventType, ReservationState, Sale};
use crate::testing::ledger::{EventLedger, drain_outbox};
use crate::testing::{unique_product, user};
use crate::{CancelOutcome, ConfirmOutcome, ReserveOutcome, StockStore, VoidOutcome};

use super::{
    T0, at, create, duplicate_of, fresh, hold_sale, key, keyed, levels, lv, request, reserved, secs,
};

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
