//! Races: many buyers for one hot product, and the same buyers against
//! their cap.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::model::{EventType, OrderId, ReservationState, Sale};
use crate::testing::ledger::{EventLedger, drain_outbox};
use crate::testing::{unique_product, user};
use crate::{ReserveOutcome, StockStore, VoidOutcome};

use super::{T0, create, fresh, levels, lv, request, sale};

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
