//! An in-process [`StockStore`]: one mutex per product, so unrelated
//! products never contend, and every operation on a product (the
//! reservation, its stock, its outbox event) is one critical section, hence
//! atomic.
//!
//! Finished reservations (sold at once, confirmed, cancelled, expired,
//! voided, void tombstones), their idempotency keys, their entries in the
//! order index and the replay claims on them are purged by
//! [`expire`](StockStore::expire) once the record TTL has passed since they
//! finished, as the Redis store does, so a long-lived process does not grow
//! without bound. A held reservation is never purged, nor one whose events
//! are still in the outbox.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use parking_lot::Mutex;

use super::MemoryOptions;
use super::product::{ProductState, Step};
use crate::error::Result;
use crate::fast_hash::RandomState;
use crate::model::{OrderEvent, OrderId, ProductId, Reservation, Sale, StockLevels, Timestamp};
use crate::{
    CancelOutcome, ConfirmOutcome, ReserveOutcome, ReserveRequest, SaleWrite, StockStore,
    VoidOutcome,
};

/// In-memory stock, for a single process (tests, demos, single-node
/// deployments). Nothing survives a restart, the outbox included.
///
/// Finished reservations are kept for
/// [`MemoryOptions::record_ttl`] (default 24 h) after they finish, by the
/// times the store is given (`now` of each call): an idempotency key
/// replays its purchase at least that long. Each
/// [`expire`](StockStore::expire) call then purges up to
/// [`PURGE_BATCH`](Self::PURGE_BATCH) of them per product; one whose events
/// the relay has not yet delivered waits until it has.
#[derive(Debug)]
pub struct MemoryStockStore {
    products: DashMap<ProductId, Arc<Mutex<ProductState>>, RandomState>,
    /// Which product each reservation belongs to, for lookups by order id.
    orders: DashMap<OrderId, ProductId, RandomState>,
    /// Products whose outbox is not empty: what a claim visits, so its cost
    /// follows the pending events, not the number of products. Changed only
    /// under the product's lock, together with its outbox.
    pending: DashMap<ProductId, (), RandomState>,
    /// How long finished reservations are kept.
    record_ttl: Duration,
    /// How long a replay's claim on an order is kept.
    replay_claim_ttl: Duration,
}

impl Default for MemoryStockStore {
    fn default() -> Self {
        Self::with_options(MemoryOptions::default())
    }
}

impl MemoryStockStore {
    /// Most finished reservations purged per product per
    /// [`expire`](StockStore::expire) call.
    pub const PURGE_BATCH: usize = 1_000;

    /// An empty store with the default [`MemoryOptions`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with `opts`.
    pub fn with_options(opts: MemoryOptions) -> Self {
        Self {
            products: DashMap::default(),
            orders: DashMap::default(),
            pending: DashMap::default(),
            record_ttl: opts.record_ttl,
            replay_claim_ttl: opts.replay_claim_ttl,
        }
    }

    fn product(&self, id: &ProductId) -> Option<Arc<Mutex<ProductState>>> {
        self.products.get(id).map(|p| Arc::clone(&p))
    }

    /// Runs `f` under `product`'s lock, marking the product pending when
    /// `f` put the first event in its outbox.
    fn with_product<T>(
        &self,
        product: &ProductId,
        f: impl FnOnce(&mut ProductState) -> Step<T>,
    ) -> Option<T> {
        let p = self.product(product)?;
        let mut state = p.lock();
        let Step {
            answer,
            first_event,
        } = f(&mut state);
        if first_event {
            self.pending.insert(product.clone(), ());
        }
        Some(answer)
    }
}

#[async_trait]
impl StockStore for MemoryStockStore {
    async fn create_sale(&self, sale: &Sale) -> Result<SaleWrite> {
        let entry = self.products.entry(sale.product().clone());
        match entry {
            dashmap::Entry::Vacant(v) => {
                v.insert(Arc::new(Mutex::new(ProductState::new(
                    sale.clone(),
                    self.record_ttl,
                    self.replay_claim_ttl,
                ))));
                Ok(SaleWrite::Created)
            }
            dashmap::Entry::Occupied(o) => {
                let mut p = o.get().lock();
                let taken = p.levels.held + p.levels.committed;
                let total = u64::from(sale.stock());
                if total < taken {
                    return Ok(SaleWrite::StockBelowSold {
                        held_or_committed: taken,
                    });
                }
                p.levels.total = total;
                p.levels.available = total - taken;
                p.sale = sale.clone();
                Ok(SaleWrite::Updated)
            }
        }
    }

    fn replay_claim_ttl(&self) -> Duration {
        self.replay_claim_ttl
    }

    async fn sale(&self, product: &ProductId) -> Result<Option<Sale>> {
        Ok(self.product(product).map(|p| p.lock().sale.clone()))
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome> {
        let reserved = self.with_product(&req.product, |p| p.reserve(req));
        if let Some(ReserveOutcome::Reserved(r)) = &reserved {
            // After the product's lock, not under it: on a hot product the
            // index insert (a hash into a table as large as the orders kept)
            // was the biggest single cost inside the critical section. The
            // gap is harmless: until the index names the order,
            // `reservation` answers `None` for it, as it did a moment
            // earlier; and a purge cannot drop the record in between (its
            // `placed` event is still pending, and purges wait for
            // delivery), short of a relay delivering and acknowledging it
            // and a record TTL passing within that gap.
            self.orders.insert(r.order_id, r.product.clone());
        }
        Ok(reserved.unwrap_or(ReserveOutcome::UnknownProduct))
    }

    async fn confirm(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<ConfirmOutcome> {
        Ok(self
            .with_product(product, |p| p.confirm(order, now))
            .unwrap_or(ConfirmOutcome::Unknown))
    }

    async fn cancel(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<CancelOutcome> {
        Ok(self
            .with_product(product, |p| p.cancel(order, now))
            .unwrap_or(CancelOutcome::Unknown))
    }

    async fn void(&self, req: &ReserveRequest, now: Timestamp) -> Result<VoidOutcome> {
        let voided = self.with_product(&req.product, |p| {
            let step = p.void(req, now);
            self.orders.insert(req.order_id, req.product.clone());
            step
        });
        // No such sale: nothing was, or ever will be, reserved.
        Ok(voided.unwrap_or(VoidOutcome::NothingReserved))
    }

    async fn reservation(&self, order: &OrderId) -> Result<Option<Reservation>> {
        let Some(product) = self.orders.get(order).map(|p| p.clone()) else {
            return Ok(None);
        };
        Ok(self
            .product(&product)
            .and_then(|p| p.lock().reservation(order).cloned()))
    }

    async fn expire(&self, now: Timestamp, max: usize) -> Result<Vec<Reservation>> {
        let products: Vec<_> = self
            .products
            .iter()
            .map(|e| (e.key().clone(), Arc::clone(e.value())))
            .collect();
        let mut expired = Vec::new();
        for (id, product) in products {
            let mut p = product.lock();
            p.purge(now, Self::PURGE_BATCH, &self.orders);
            while expired.len() < max {
                let Some(&(at, order)) = p.expiry.first() else {
                    break;
                };
                if at > now {
                    break;
                }
                let Step {
                    answer: r,
                    first_event: first,
                } = p.expire_one(&order, now);
                if first {
                    self.pending.insert(id.clone(), ());
                }
                expired.push(r);
            }
            if expired.len() >= max {
                break;
            }
        }
        Ok(expired)
    }

    async fn snapshot(&self, product: &ProductId) -> Result<Option<StockLevels>> {
        Ok(self.product(product).map(|p| p.lock().levels))
    }

    async fn claim(&self, now: Timestamp, max: usize, lease: Duration) -> Result<Vec<OrderEvent>> {
        let until = now.saturating_add(lease);
        let pending: Vec<ProductId> = self.pending.iter().map(|e| e.key().clone()).collect();
        let mut out = Vec::new();
        for id in pending {
            if out.len() >= max {
                break;
            }
            if let Some(p) = self.product(&id) {
                p.lock().claim(now, max, until, &mut out);
            }
        }
        Ok(out)
    }

    async fn ack(&self, events: &[OrderEvent]) -> Result<()> {
        // A claimed batch comes product by product: one lookup and one lock
        // per run of events of the same product.
        let mut rest = events;
        while let Some(first) = rest.first() {
            let product = &first.order.product_id;
            let run = rest
                .iter()
                .take_while(|e| e.order.product_id == *product)
                .count();
            let (acked, tail) = rest.split_at(run);
            rest = tail;
            let Some(p) = self.product(product) else {
                continue;
            };
            let mut state = p.lock();
            for e in acked {
                state.outbox.remove(&e.event_id);
            }
            if state.outbox.is_empty() {
                // Under the product's lock, so no append can slip between
                // the check and the removal.
                self.pending.remove(product);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast_hash::HashMap;
    use crate::memory::product::PURGE_RETRY;
    use crate::model::{IdempotencyKey, Quantity, ReservationState, UserId};

    const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);
    const TTL: Duration = Duration::from_secs(3600);

    fn at(after: Duration) -> Timestamp {
        T0.saturating_add(after)
    }

    fn pid() -> ProductId {
        ProductId::new("p").unwrap()
    }

    fn req(user: &str, key: Option<&str>, now: Timestamp) -> ReserveRequest {
        ReserveRequest {
            order_id: OrderId::new(now),
            product: pid(),
            user: UserId::new(user).unwrap(),
            quantity: Quantity::ONE,
            idempotency_key: key.map(|k| IdempotencyKey::new(k).unwrap()),
            now,
        }
    }

    async fn store_with(sale: crate::model::SaleBuilder) -> MemoryStockStore {
        let store = MemoryStockStore::with_options(MemoryOptions::new().record_ttl(TTL));
        store.create_sale(&sale.build().unwrap()).await.unwrap();
        store
    }

    /// Delivers (claims and acknowledges) every pending event.
    async fn relay(store: &MemoryStockStore, now: Timestamp) {
        let events = store
            .claim(now, 10_000, Duration::from_secs(30))
            .await
            .unwrap();
        store.ack(&events).await.unwrap();
    }

    /// How many records of each kind the product and the store keep.
    fn sizes(store: &MemoryStockStore) -> (usize, usize, usize, usize, usize) {
        let p = store.product(&pid()).unwrap();
        let p = p.lock();
        (
            p.reservations.len(),
            p.keys.values().map(HashMap::len).sum(),
            p.claims.len(),
            store.orders.len(),
            p.purges.len().max(p.retries.len()).max(
                p.reservations
                    .values()
                    .filter(|rec| rec.purge_at.is_some())
                    .count(),
            ),
        )
    }

    #[tokio::test]
    async fn a_sold_order_is_purged_a_record_ttl_later_once_delivered() {
        let store = store_with(Sale::builder(pid(), 10)).await;
        let first = req("alice", Some("k"), T0);
        let ReserveOutcome::Reserved(r) = store.reserve(&first).await.unwrap() else {
            panic!("not reserved");
        };
        assert_eq!(sizes(&store), (1, 1, 0, 1, 1));
        // Before the TTL: kept.
        store
            .expire(at(TTL - Duration::from_millis(1)), 100)
            .await
            .unwrap();
        assert!(store.reservation(&r.order_id).await.unwrap().is_some());
        // Due, but its `placed` event was never delivered: kept.
        store.expire(at(TTL), 100).await.unwrap();
        assert!(store.reservation(&r.order_id).await.unwrap().is_some());
        relay(&store, at(TTL)).await;
        // Looked at again a minute later, delivered by then: purged.
        store.expire(at(TTL + PURGE_RETRY), 100).await.unwrap();
        assert_eq!(store.reservation(&r.order_id).await.unwrap(), None);
        assert_eq!(sizes(&store), (0, 0, 0, 0, 0), "something was kept");
        // The units stay sold; the key is free for a new purchase.
        let l = store.snapshot(&pid()).await.unwrap().unwrap();
        assert_eq!((l.available, l.committed), (9, 1));
        let again = req("alice", Some("k"), at(TTL + PURGE_RETRY));
        assert!(matches!(
            store.reserve(&again).await.unwrap(),
            ReserveOutcome::Reserved(n) if n.order_id == again.order_id
        ));
    }

    #[tokio::test]
    async fn a_hold_is_never_purged_while_held_and_is_after_it_ends() {
        let hold = Duration::from_secs(2 * 3600);
        let store = store_with(Sale::builder(pid(), 10).hold(hold)).await;
        let first = req("alice", None, T0);
        store.reserve(&first).await.unwrap();
        relay(&store, T0).await;
        // Past the record TTL, still held: kept.
        store.expire(at(TTL + TTL / 2), 100).await.unwrap();
        let r = store.reservation(&first.order_id).await.unwrap().unwrap();
        assert_eq!(r.state, ReservationState::Held);
        // Expired at 2 h; its `expired` event delivered; purged a TTL later.
        assert_eq!(store.expire(at(hold), 100).await.unwrap().len(), 1);
        relay(&store, at(hold)).await;
        store
            .expire(at(hold + TTL - Duration::from_millis(1)), 100)
            .await
            .unwrap();
        assert!(store.reservation(&first.order_id).await.unwrap().is_some());
        store.expire(at(hold + TTL), 100).await.unwrap();
        assert_eq!(store.reservation(&first.order_id).await.unwrap(), None);
        assert_eq!(sizes(&store), (0, 0, 0, 0, 0));
    }

    #[tokio::test]
    async fn replay_claims_and_void_tombstones_are_purged_too() {
        let store = store_with(Sale::builder(pid(), 10)).await;
        let first = req("alice", Some("k"), T0);
        store.reserve(&first).await.unwrap();
        // A replay of the same request: the order is claimed by it.
        let replay = req("alice", Some("k"), at(Duration::from_secs(1)));
        assert!(matches!(
            store.reserve(&replay).await.unwrap(),
            ReserveOutcome::Duplicate(_)
        ));
        // A void of a reserve that never ran: a tombstone.
        let lost = req("bob", None, at(Duration::from_secs(2)));
        assert_eq!(
            store.void(&lost, lost.now).await.unwrap(),
            VoidOutcome::NothingReserved
        );
        assert_eq!(sizes(&store), (2, 1, 1, 2, 2));
        relay(&store, lost.now).await;
        store
            .expire(at(TTL + Duration::from_secs(2)), 100)
            .await
            .unwrap();
        assert_eq!(sizes(&store), (0, 0, 0, 0, 0), "something was kept");
        // A late reserve of the tombstoned request now finds nothing: it
        // is a record TTL late, like on Redis.
        let l = store.snapshot(&pid()).await.unwrap().unwrap();
        assert!(l.is_consistent(), "{l:?}");
    }

    #[tokio::test]
    async fn a_purge_is_bounded_per_call() {
        let store = store_with(Sale::builder(pid(), 5_000)).await;
        let n = MemoryStockStore::PURGE_BATCH * 2 + 500;
        for i in 0..n {
            let now = at(Duration::from_millis(i as u64));
            store
                .reserve(&req(&format!("u{i}"), None, now))
                .await
                .unwrap();
        }
        relay(&store, T0).await;
        let late = at(TTL + Duration::from_secs(60));
        store.expire(late, 100).await.unwrap();
        assert_eq!(sizes(&store).0, n - MemoryStockStore::PURGE_BATCH);
        store.expire(late, 100).await.unwrap();
        store.expire(late, 100).await.unwrap();
        assert_eq!(sizes(&store), (0, 0, 0, 0, 0));
    }

    /// Replays of one key keep one claim each only until it lapses: the
    /// claims and their lapse queue shrink back once the claim TTL passed.
    #[tokio::test]
    async fn replay_claims_lapse() {
        let store = store_with(Sale::builder(pid(), 5)).await;
        let first = req("alice", Some("k"), T0);
        store.reserve(&first).await.unwrap();
        for i in 0..1_000 {
            let replay = req("alice", Some("k"), at(Duration::from_millis(i)));
            assert!(matches!(
                store.reserve(&replay).await.unwrap(),
                ReserveOutcome::Duplicate(_)
            ));
        }
        let claims = |store: &MemoryStockStore| {
            let p = store.product(&pid()).unwrap();
            let p = p.lock();
            (
                p.claims.values().map(|c| c.replays.len()).sum::<usize>(),
                p.claim_lapses.len(),
            )
        };
        assert_eq!(claims(&store), (1_000, 1_000));
        let later = at(crate::DEFAULT_REPLAY_CLAIM_TTL + Duration::from_secs(2));
        store
            .reserve(&req("alice", Some("k"), later))
            .await
            .unwrap();
        assert_eq!(claims(&store), (1, 1), "only the newest claim is left");
    }
}
