//! A deterministic mix of every operation, checked against a model after
//! each step.

use std::future::Future;

use crate::model::{EventType, ReservationState, Sale, Timestamp};
use crate::testing::ledger::{EventLedger, drain_outbox};
use crate::testing::{unique_product, user};
use crate::{
    CancelOutcome, ConfirmOutcome, ReserveOutcome, ReserveRequest, StockStore, VoidOutcome,
};

use super::{T0, create, fresh, key, levels, ms, request, secs};

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
