//! The outbox cases of the [`StockStore`] conformance suite: claim, lease,
//! acknowledge, the order of an order's events, and relays racing (one of
//! them dying mid-batch). Run with the rest of the stock cases by
//! [`stock_store_conformance!`](crate::stock_store_conformance).
//!
//! Every case passes `now` explicitly and never sleeps: a lease "lapses"
//! because a later claim passes a later `now`. The cases never claim at the
//! exact instant a lease ends (the boundary is the store's choice).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::model::{EventId, EventType, OrderEvent, OrderId, Timestamp};
use crate::{CancelOutcome, ConfirmOutcome, ReserveOutcome, StockStore, VoidOutcome};

use super::ledger::{EventLedger, check_batch};
use super::stock::{T0, at, fresh, hold_sale, ms, request, reserved, sale, secs};
use super::user;

/// Sets its flag when dropped: on return and on panic alike.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The lease the outbox cases claim with.
pub const CASE_LEASE: Duration = Duration::from_secs(30);

fn ids(events: &[OrderEvent]) -> HashSet<EventId> {
    events.iter().map(|e| e.event_id).collect()
}

async fn claim(store: &dyn StockStore, now: Timestamp, max: usize) -> Vec<OrderEvent> {
    let batch = store.claim(now, max, CASE_LEASE).await.expect("claim");
    assert!(batch.len() <= max, "claimed {} > max {max}", batch.len());
    check_batch(&batch);
    batch
}

/// `claim` hands out at most `max` events, each pending event to one
/// claim only while its lease runs, exactly as the store recorded it; a
/// lapsed lease makes unacknowledged events claimable again (same ids,
/// same content), acknowledged ones never.
pub async fn claim_respects_max_and_leases<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = sale(&*store, "claim", 100).await;
    let mut placed: Vec<OrderEvent> = Vec::new();
    for u in 0..5 {
        let r = reserved(&*store, &request(&p, &user(u), 1, T0)).await;
        placed.push(OrderEvent::placed(&r));
    }
    let b1 = claim(&*store, T0, 2).await;
    let b2 = claim(&*store, T0, 2).await;
    let b3 = claim(&*store, T0, 2).await;
    assert_eq!((b1.len(), b2.len(), b3.len()), (2, 2, 1));
    assert!(
        claim(&*store, T0, 2).await.is_empty(),
        "all five are leased"
    );
    let mut all: Vec<OrderEvent> = [b1.clone(), b2.clone(), b3.clone()].concat();
    assert_eq!(ids(&all).len(), 5, "an event was handed out twice");
    all.sort_by_key(|e| e.event_id);
    placed.sort_by_key(|e| e.event_id);
    assert_eq!(
        all, placed,
        "claimed events are the placed events as recorded"
    );

    // Still leased just before the lease ends.
    let before_lapse = Timestamp::from_millis(at(CASE_LEASE).as_millis() - 1);
    assert!(claim(&*store, before_lapse, 10).await.is_empty());
    store.ack(&b2).await.unwrap();
    // After the lapse: every unacknowledged event again, and only those.
    let after_lapse = at(CASE_LEASE + ms(1));
    let again = claim(&*store, after_lapse, 10).await;
    let mut want = ids(&b1);
    want.extend(ids(&b3));
    assert_eq!(ids(&again), want);
    for e in &again {
        assert!(all.contains(e), "a re-claimed event changed: {e:?}");
    }
    assert!(claim(&*store, after_lapse, 10).await.is_empty());
    store.ack(&again).await.unwrap();
    assert!(claim(&*store, at(CASE_LEASE * 100), 10).await.is_empty());
}

/// `ack` is idempotent: acknowledging twice, acknowledging nothing,
/// acknowledging events the store never had, and a late acknowledgement by
/// a relay whose lease lapsed (after another relay re-claimed the batch)
/// all succeed; acknowledged events are gone for good and the others stay.
pub async fn ack_is_idempotent<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = sale(&*store, "ack", 100).await;
    for u in 0..3 {
        reserved(&*store, &request(&p, &user(u), 1, T0)).await;
    }
    let batch = claim(&*store, T0, 10).await;
    assert_eq!(batch.len(), 3);
    store.ack(&batch[..1]).await.unwrap();
    store.ack(&batch[..1]).await.unwrap();
    store.ack(&[]).await.unwrap();
    let stranger = request(&p, &user(9), 1, T0).to_reservation(None);
    store.ack(&[OrderEvent::placed(&stranger)]).await.unwrap();
    // The two unacknowledged ones come back after the lease, not the first.
    let t1 = at(CASE_LEASE * 2);
    let relay2 = claim(&*store, t1, 10).await;
    assert_eq!(ids(&relay2), ids(&batch[1..]));
    // Relay 1's sink finally answers: its late ack removes them, and relay
    // 2's own ack is then a no-op.
    store.ack(&batch).await.unwrap();
    store.ack(&relay2).await.unwrap();
    assert!(claim(&*store, at(CASE_LEASE * 10), 10).await.is_empty());
    // New events still flow after all that.
    let r = reserved(&*store, &request(&p, &user(4), 1, t1)).await;
    let last = claim(&*store, at(CASE_LEASE * 10), 10).await;
    assert_eq!(last, vec![OrderEvent::placed(&r)]);
    store.ack(&last).await.unwrap();
    store.ack(&last).await.unwrap();
}

/// An order's closing event (`cancelled`, `expired`) is not handed out
/// while its `placed` event is leased to another relay; other orders'
/// events are. Once the `placed` event is acknowledged, or its lease
/// lapses, the closing event follows (with `placed` first, in one claim,
/// when both are pending). A claim of one event hands out `placed` before
/// the closing event of the same order.
pub async fn closing_event_waits_for_leased_placed<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let hold = secs(60);
    let h = hold_sale(&*store, "order", 100, hold).await;
    let n = sale(&*store, "order-plain", 100).await;
    let id = |o: OrderId, t: EventType| EventId::new(o, t.seq());

    // Cancelled while relay 1 holds its `placed`.
    let a = reserved(&*store, &request(&h, &user(1), 1, T0))
        .await
        .order_id;
    let relay1 = claim(&*store, T0, 10).await;
    assert_eq!(ids(&relay1), HashSet::from([id(a, EventType::Placed)]));
    let b = reserved(&*store, &request(&n, &user(2), 1, T0))
        .await
        .order_id;
    store.cancel(&h, &a, at(secs(1))).await.unwrap();
    let relay2 = claim(&*store, at(secs(2)), 10).await;
    assert_eq!(
        ids(&relay2),
        HashSet::from([id(b, EventType::Placed)]),
        "a's cancelled went out while its placed was leased to relay 1"
    );
    store.ack(&relay2).await.unwrap();
    store.ack(&relay1).await.unwrap();
    let relay2 = claim(&*store, at(secs(3)), 10).await;
    assert_eq!(ids(&relay2), HashSet::from([id(a, EventType::Cancelled)]));
    store.ack(&relay2).await.unwrap();

    // Expired while relay 1 holds its `placed`; relay 1 then dies.
    let c = reserved(&*store, &request(&h, &user(3), 1, at(secs(10))))
        .await
        .order_id;
    let t_claim = at(secs(65));
    let relay1 = claim(&*store, t_claim, 10).await;
    assert_eq!(ids(&relay1), HashSet::from([id(c, EventType::Placed)]));
    let swept = store.expire(at(hold + secs(10)), 10).await.unwrap();
    assert_eq!(swept.len(), 1);
    assert!(
        claim(&*store, t_claim.saturating_add(secs(1)), 10)
            .await
            .is_empty(),
        "c's expired went out while its placed was leased to relay 1"
    );
    let lapsed = t_claim.saturating_add(CASE_LEASE + secs(1));
    let relay2 = claim(&*store, lapsed, 10).await;
    let types: Vec<_> = relay2
        .iter()
        .map(|e| (e.order.order_id, e.event_type))
        .collect();
    assert_eq!(
        types,
        vec![(c, EventType::Placed), (c, EventType::Expired)],
        "both pending: one claim, placed first"
    );
    store.ack(&relay2).await.unwrap();

    // Both pending before anyone claims: a claim of one takes `placed`.
    let t2 = lapsed.saturating_add(secs(1));
    let d = reserved(&*store, &request(&h, &user(4), 1, t2))
        .await
        .order_id;
    store.cancel(&h, &d, t2).await.unwrap();
    let relay1 = claim(&*store, t2, 1).await;
    assert_eq!(ids(&relay1), HashSet::from([id(d, EventType::Placed)]));
    assert!(
        claim(&*store, t2, 10).await.is_empty(),
        "d's cancelled went out while its placed was leased"
    );
    store.ack(&relay1).await.unwrap();
    let relay2 = claim(&*store, t2, 10).await;
    assert_eq!(ids(&relay2), HashSet::from([id(d, EventType::Cancelled)]));
    store.ack(&relay2).await.unwrap();
    assert!(claim(&*store, at(secs(86_400)), 10).await.is_empty());
}

/// Within one claim, each order's events come in `seq` order, whatever
/// the mix of orders and closing types.
pub async fn claim_returns_seq_order<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let h = hold_sale(&*store, "seq", 100, secs(60)).await;
    let n = sale(&*store, "seq-plain", 100).await;
    let mut want = HashSet::new();
    for u in 0..12 {
        let (p, q) = if u % 2 == 0 { (&h, 1) } else { (&n, 2) };
        let req = request(p, &user(u), q, at(ms(u as u64)));
        let r = reserved(&*store, &req).await;
        want.insert(EventId::new(r.order_id, 1));
        let t = at(secs(1));
        let closed = match u % 4 {
            0 => store.confirm(p, &r.order_id, t).await.unwrap() == ConfirmOutcome::Confirmed,
            2 => store.cancel(p, &r.order_id, t).await.unwrap() == CancelOutcome::Cancelled,
            1 => store.void(&req, t).await.unwrap() == VoidOutcome::Voided,
            _ => false,
        };
        assert_eq!(closed, u % 4 != 3, "order {u}");
        if closed {
            want.insert(EventId::new(r.order_id, 2));
        }
    }
    let batch = claim(&*store, at(secs(2)), 100).await;
    assert_eq!(ids(&batch), want);
    let mut first_seen: HashMap<OrderId, usize> = HashMap::new();
    for (i, e) in batch.iter().enumerate() {
        if e.seq == 1 {
            first_seen.insert(e.order.order_id, i);
        } else {
            assert!(
                first_seen.contains_key(&e.order.order_id),
                "a closing event came before its placed: {batch:?}"
            );
        }
    }
    store.ack(&batch).await.unwrap();
}

/// Three relays share one outbox while a producer keeps appending events.
/// One relay claims a batch and dies (never acknowledges); two live relays
/// race, claiming and acknowledging concurrently. While the dead relay's
/// lease runs: no event is handed out twice, none of the dead batch is
/// handed out, no closing event of an order whose `placed` is in the dead
/// batch is handed out, and every other event is. After the lease lapses
/// the two relays race again and deliver the rest. In the end every event
/// was delivered by the live relays exactly once (counted by distinct event
/// id), none is missing, and each order's `placed` was delivered before its
/// closing event.
pub async fn two_relays_racing_one_dies<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    const PRE: usize = 40;
    const MORE: usize = 60;
    let store = fresh(make).await;
    let h = hold_sale(&*store, "relays-hold", 100_000, secs(600)).await;
    let n = sale(&*store, "relays-plain", 100_000).await;
    let expected: Arc<Mutex<HashSet<EventId>>> = Arc::default();
    let now1 = at(secs(1));
    let now2 = now1.saturating_add(CASE_LEASE + secs(1));

    let mut pre = Vec::new();
    for i in 0..PRE {
        let p = if i % 2 == 0 { &h } else { &n };
        let req = request(p, &user(i), 1, T0);
        let r = reserved(&*store, &req).await;
        expected.lock().insert(EventId::new(r.order_id, 1));
        pre.push((req, i % 2 == 0));
    }
    // The relay that dies: claims and never acknowledges.
    let dead = claim(&*store, now1, 25).await;
    assert_eq!(dead.len(), 25);
    let dead_ids = Arc::new(ids(&dead));

    let producer_done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (store, h, n) = (store.clone(), h.clone(), n.clone());
        let (expected, done) = (expected.clone(), producer_done.clone());
        tokio::spawn(async move {
            // Ends the race even if this task panics, so that the panic is
            // reported (below) instead of the relays waiting forever.
            let _finished = SetOnDrop(done);
            // Close every pre-made hold (many of them in the dead batch)
            // and void some sold orders, then keep placing and closing.
            for (i, (req, is_hold)) in pre.iter().enumerate() {
                let closed = if *is_hold {
                    if i % 4 == 0 {
                        store.cancel(&h, &req.order_id, now1).await.unwrap();
                    } else {
                        store.confirm(&h, &req.order_id, now1).await.unwrap();
                    }
                    true
                } else if i % 3 == 0 {
                    store.void(req, now1).await.unwrap();
                    true
                } else {
                    false
                };
                if closed {
                    expected.lock().insert(EventId::new(req.order_id, 2));
                }
                tokio::task::yield_now().await;
            }
            for i in 0..MORE {
                let p = if i % 2 == 0 { &h } else { &n };
                let req = request(p, &user(PRE + i), 1, now1);
                let ReserveOutcome::Reserved(r) = store.reserve(&req).await.unwrap() else {
                    panic!("producer could not reserve");
                };
                expected.lock().insert(EventId::new(r.order_id, 1));
                if i % 3 == 0 {
                    if i % 2 == 0 {
                        store.cancel(p, &r.order_id, now1).await.unwrap();
                    } else {
                        store.void(&req, now1).await.unwrap();
                    }
                    expected.lock().insert(EventId::new(r.order_id, 2));
                }
                tokio::task::yield_now().await;
            }
        })
    };

    let log: Arc<Mutex<Vec<OrderEvent>>> = Arc::default();
    let race = |now: Timestamp, stop: Arc<AtomicBool>| {
        let handed: Arc<Mutex<HashSet<EventId>>> = Arc::default();
        let relays: Vec<_> = (0..2)
            .map(|_| {
                let (store, log, handed, stop) =
                    (store.clone(), log.clone(), handed.clone(), stop.clone());
                let dead_ids = dead_ids.clone();
                tokio::spawn(async move {
                    loop {
                        let stopping = stop.load(Ordering::Acquire);
                        let batch = claim(&*store, now, 8).await;
                        if batch.is_empty() {
                            if stopping {
                                return;
                            }
                            tokio::task::yield_now().await;
                            continue;
                        }
                        {
                            let mut handed = handed.lock();
                            for e in &batch {
                                assert!(
                                    handed.insert(e.event_id),
                                    "{} handed out twice while leased",
                                    e.event_id
                                );
                                if now < now2 {
                                    assert!(
                                        !dead_ids.contains(&e.event_id),
                                        "{} of the dead relay's batch handed out before its lease lapsed",
                                        e.event_id
                                    );
                                    assert!(
                                        e.seq == 1
                                            || !dead_ids
                                                .contains(&EventId::new(e.order.order_id, 1)),
                                        "{} handed out while its placed is leased to the dead relay",
                                        e.event_id
                                    );
                                }
                            }
                            log.lock().extend(batch.iter().cloned());
                        }
                        store.ack(&batch).await.expect("ack");
                    }
                })
            })
            .collect();
        async move {
            for r in relays {
                r.await.expect("relay panicked");
            }
            Arc::try_unwrap(handed)
                .map(Mutex::into_inner)
                .unwrap_or_else(|h| h.lock().clone())
        }
    };

    // Phase 1: the dead relay's lease runs.
    let phase1 = race(now1, producer_done.clone()).await;
    producer.await.expect("producer panicked");
    let expected = expected.lock().clone();
    let blocked: HashSet<EventId> = expected
        .iter()
        .filter(|e| e.seq() == 2 && dead_ids.contains(&EventId::new(e.order_id(), 1)))
        .copied()
        .collect();
    let mut waiting: HashSet<EventId> = dead_ids.iter().copied().collect();
    waiting.extend(blocked.iter().copied());
    let want1: HashSet<EventId> = expected.difference(&waiting).copied().collect();
    assert_eq!(
        phase1.len(),
        want1.len(),
        "phase 1 delivered {} events, {} were claimable ({} missing: {:?})",
        phase1.len(),
        want1.len(),
        want1.difference(&phase1).count(),
        want1.difference(&phase1).take(5).collect::<Vec<_>>()
    );
    assert_eq!(phase1, want1);
    assert!(!blocked.is_empty(), "the case meant to block some closings");

    // Phase 2: the lease has lapsed; the live relays deliver the rest.
    let phase2 = race(now2, Arc::new(AtomicBool::new(true))).await;
    assert_eq!(
        phase2, waiting,
        "after the lapse, exactly the waiting events"
    );
    assert!(phase1.is_disjoint(&phase2));

    let log = log.lock().clone();
    let mut ledger = EventLedger::new();
    assert_eq!(
        ledger.extend(&log),
        expected.len(),
        "distinct events delivered"
    );
    assert_eq!(
        ledger.arrivals(),
        expected.len(),
        "every event exactly once"
    );
    assert_eq!(ledger.event_ids(), expected, "none missing, none extra");
    let mut placed_at: HashMap<OrderId, usize> = HashMap::new();
    for (i, e) in log.iter().enumerate() {
        if e.seq == 1 {
            placed_at.insert(e.order.order_id, i);
        } else {
            assert!(
                placed_at.contains_key(&e.order.order_id),
                "{} delivered before its placed",
                e.event_id
            );
        }
    }
    for p in [&h, &n] {
        let l = store.snapshot(p).await.unwrap().unwrap();
        assert!(l.is_consistent());
        assert_eq!(ledger.live_units(p), l.held + l.committed, "{p}: {l:?}");
    }
    assert!(
        claim(&*store, now2.saturating_add(CASE_LEASE * 10), 100)
            .await
            .is_empty()
    );
}
