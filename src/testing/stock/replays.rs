//! Retries and replays: the same order id, a repeated idempotency key, replays
//! that win over every refusal, replay claims and their lapse, and purging.

use std::future::Future;

use crate::model::{EventType, OrderEvent, Reservation, ReservationState, Sale, Timestamp};
use crate::testing::ledger::drain_outbox;
use crate::testing::{unique_product, user};
use crate::{ConfirmOutcome, ReserveOutcome, SaleWrite, StockStore, VoidOutcome};

use super::{
    HOLD, T0, assert_event_set, at, by_order, create, drained, duplicate_of, fresh, hold_sale, key,
    keyed, levels, lv, ms, request, reserved, sale, secs,
};

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
