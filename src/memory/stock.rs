//! An in-process [`StockStore`]: one mutex per product, so unrelated
//! products never contend, and every operation on a product is one critical
//! section (hence atomic).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::error::Result;
use crate::fast_hash::{HashMap, RandomState};
use crate::model::{
    IdempotencyKey, OrderId, ProductId, Reservation, ReservationState, Sale, StockLevels,
    Timestamp, UserId,
};
use crate::ports::{
    CommitOutcome, ReleaseOutcome, ReleaseReason, ReserveOutcome, ReserveRequest, SaleWrite,
    StockStore,
};

/// In-memory stock, for a single process (tests, demos, single-node
/// deployments). Nothing survives a restart.
#[derive(Debug, Default)]
pub struct MemoryStockStore {
    products: DashMap<ProductId, Arc<Mutex<ProductState>>, RandomState>,
    /// Which product each reservation belongs to, for lookups by order id.
    orders: DashMap<OrderId, ProductId, RandomState>,
}

#[derive(Debug)]
struct ProductState {
    sale: Sale,
    levels: StockLevels,
    /// Units held + committed per buyer.
    per_user: HashMap<UserId, u64>,
    reservations: HashMap<OrderId, Reservation>,
    /// Idempotency keys per buyer.
    keys: HashMap<UserId, HashMap<IdempotencyKey, OrderId>>,
    /// Held reservations by expiry, for the sweeper.
    expiry: BTreeSet<(Timestamp, OrderId)>,
}

impl ProductState {
    fn new(sale: Sale) -> Self {
        let total = u64::from(sale.stock());
        Self {
            sale,
            levels: StockLevels {
                total,
                available: total,
                held: 0,
                committed: 0,
            },
            per_user: HashMap::default(),
            reservations: HashMap::default(),
            keys: HashMap::default(),
            expiry: BTreeSet::new(),
        }
    }

    fn reserve(&mut self, req: &ReserveRequest) -> ReserveOutcome {
        if let Some(existing) = self.reservations.get(&req.order_id) {
            return ReserveOutcome::Duplicate(existing.clone());
        }
        if let Some(id) = req
            .idempotency_key
            .as_ref()
            .and_then(|key| self.keys.get(&req.user)?.get(key))
        {
            return ReserveOutcome::Duplicate(self.reservations[id].clone());
        }
        if !self.sale.is_open(req.now) {
            return ReserveOutcome::NotOnSale;
        }
        let q = u64::from(req.quantity.get());
        if req.quantity.get() > self.sale.per_order_max() {
            return ReserveOutcome::OverOrderMax {
                max: self.sale.per_order_max(),
            };
        }
        if self.levels.available < q {
            return ReserveOutcome::SoldOut;
        }
        let owned = self.per_user.get(&req.user).copied().unwrap_or(0);
        if owned + q > u64::from(self.sale.per_user_limit()) {
            return ReserveOutcome::LimitExceeded;
        }
        let reservation = req.to_reservation(self.sale.hold());
        self.levels.available -= q;
        self.levels.held += q;
        *self.per_user.entry(req.user.clone()).or_insert(0) += q;
        if let Some(key) = &req.idempotency_key {
            self.keys
                .entry(req.user.clone())
                .or_default()
                .insert(key.clone(), req.order_id);
        }
        self.expiry.insert((reservation.expires_at, req.order_id));
        self.reservations.insert(req.order_id, reservation.clone());
        ReserveOutcome::Reserved(reservation)
    }

    /// Moves a held reservation's units back to `available` and marks it
    /// `state`. The caller has checked it is held.
    fn return_units(&mut self, order: &OrderId, state: ReservationState) -> Reservation {
        let r = self
            .reservations
            .get_mut(order)
            .expect("caller checked the reservation exists");
        debug_assert_eq!(r.state, ReservationState::Held);
        r.state = state;
        let q = u64::from(r.quantity.get());
        self.levels.held -= q;
        self.levels.available += q;
        if let Some(n) = self.per_user.get_mut(&r.user) {
            *n -= q;
            if *n == 0 {
                self.per_user.remove(&r.user);
            }
        }
        self.expiry.remove(&(r.expires_at, *order));
        r.clone()
    }

    fn commit(&mut self, order: &OrderId, now: Timestamp) -> CommitOutcome {
        let Some(r) = self.reservations.get_mut(order) else {
            return CommitOutcome::Unknown;
        };
        match r.state {
            ReservationState::Committed => CommitOutcome::AlreadyCommitted,
            s @ (ReservationState::Cancelled | ReservationState::Expired) => {
                CommitOutcome::NotHeld(s)
            }
            ReservationState::Held if now >= r.expires_at => {
                self.return_units(order, ReservationState::Expired);
                CommitOutcome::NotHeld(ReservationState::Expired)
            }
            ReservationState::Held => {
                r.state = ReservationState::Committed;
                let q = u64::from(r.quantity.get());
                let expires_at = r.expires_at;
                self.levels.held -= q;
                self.levels.committed += q;
                self.expiry.remove(&(expires_at, *order));
                CommitOutcome::Committed
            }
        }
    }

    fn release(&mut self, order: &OrderId, reason: ReleaseReason) -> ReleaseOutcome {
        let Some(r) = self.reservations.get(order) else {
            return ReleaseOutcome::Unknown;
        };
        match r.state {
            ReservationState::Committed => return ReleaseOutcome::AlreadyCommitted,
            s @ (ReservationState::Cancelled | ReservationState::Expired) => {
                return ReleaseOutcome::AlreadyReleased(s);
            }
            ReservationState::Held => {}
        }
        let r = self.return_units(order, ReservationState::Cancelled);
        if reason == ReleaseReason::Aborted {
            self.reservations.remove(order);
            if let (Some(key), Some(user_keys)) = (&r.idempotency_key, self.keys.get_mut(&r.user)) {
                user_keys.remove(key);
                if user_keys.is_empty() {
                    self.keys.remove(&r.user);
                }
            }
        }
        ReleaseOutcome::Released
    }
}

impl MemoryStockStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn product(&self, id: &ProductId) -> Option<Arc<Mutex<ProductState>>> {
        self.products.get(id).map(|p| Arc::clone(&p))
    }
}

#[async_trait]
impl StockStore for MemoryStockStore {
    async fn create_sale(&self, sale: &Sale) -> Result<SaleWrite> {
        let entry = self.products.entry(sale.product().clone());
        match entry {
            dashmap::Entry::Vacant(v) => {
                v.insert(Arc::new(Mutex::new(ProductState::new(sale.clone()))));
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

    async fn sale(&self, product: &ProductId) -> Result<Option<Sale>> {
        Ok(self.product(product).map(|p| p.lock().sale.clone()))
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome> {
        let Some(product) = self.product(&req.product) else {
            return Ok(ReserveOutcome::UnknownProduct);
        };
        let outcome = product.lock().reserve(req);
        if let ReserveOutcome::Reserved(r) = &outcome {
            self.orders.insert(r.order_id, r.product.clone());
        }
        Ok(outcome)
    }

    async fn commit(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<CommitOutcome> {
        Ok(match self.product(product) {
            Some(p) => p.lock().commit(order, now),
            None => CommitOutcome::Unknown,
        })
    }

    async fn release(
        &self,
        product: &ProductId,
        order: &OrderId,
        reason: ReleaseReason,
    ) -> Result<ReleaseOutcome> {
        let Some(p) = self.product(product) else {
            return Ok(ReleaseOutcome::Unknown);
        };
        let outcome = p.lock().release(order, reason);
        if outcome == ReleaseOutcome::Released && reason == ReleaseReason::Aborted {
            self.orders.remove(order);
        }
        Ok(outcome)
    }

    async fn reservation(&self, order: &OrderId) -> Result<Option<Reservation>> {
        let Some(product) = self.orders.get(order).map(|p| p.clone()) else {
            return Ok(None);
        };
        Ok(self
            .product(&product)
            .and_then(|p| p.lock().reservations.get(order).cloned()))
    }

    async fn expire(&self, now: Timestamp, max: usize) -> Result<Vec<Reservation>> {
        let products: Vec<_> = self
            .products
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect();
        let mut expired = Vec::new();
        for product in products {
            let mut p = product.lock();
            while expired.len() < max {
                let Some(&(at, order)) = p.expiry.first() else {
                    break;
                };
                if at > now {
                    break;
                }
                expired.push(p.return_units(&order, ReservationState::Expired));
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
}
