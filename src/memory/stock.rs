//! An in-process [`StockStore`]: one mutex per product, so unrelated
//! products never contend, and every operation on a product (the
//! reservation, its stock, its outbox event) is one critical section, hence
//! atomic.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::error::Result;
use crate::fast_hash::{HashMap, HashSet, RandomState};
use crate::model::{
    EventId, EventType, IdempotencyKey, OrderEvent, OrderId, ProductId, Reservation,
    ReservationState, Sale, StockLevels, Timestamp, UserId,
};
use crate::ports::{
    CancelOutcome, ConfirmOutcome, ReserveOutcome, ReserveRequest, SaleWrite, StockStore,
    VoidOutcome,
};

/// In-memory stock, for a single process (tests, demos, single-node
/// deployments). Nothing survives a restart, the outbox included.
#[derive(Debug, Default)]
pub struct MemoryStockStore {
    products: DashMap<ProductId, Arc<Mutex<ProductState>>, RandomState>,
    /// Which product each reservation belongs to, for lookups by order id.
    orders: DashMap<OrderId, ProductId, RandomState>,
    /// Products whose outbox is not empty: what a claim visits, so its cost
    /// follows the pending events, not the number of products. Changed only
    /// under the product's lock, together with its outbox.
    pending: DashMap<ProductId, (), RandomState>,
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
    /// Events not yet acknowledged, in event-id order (order id, then seq).
    outbox: BTreeMap<EventId, Pending>,
    /// Orders that a replay (same key, same request) was handed: who else
    /// may hold a 2xx naming them. See [`Claims`].
    claims: HashMap<OrderId, Claims>,
}

/// Who may have been answered with an order besides the request that made
/// it: the replays the store answered `Duplicate` with it. A void of the
/// order's own request undoes it only if no replay may still hold a 2xx
/// for it; a replay whose own answer was lost voids its request, which
/// takes it off the list (and undoes the order if the first request's void
/// is already waiting).
#[derive(Debug, Default)]
struct Claims {
    /// Replays (by their own order id) not known to have failed.
    replays: HashSet<OrderId>,
    /// The order's own request asked for a void.
    void_waiting: bool,
}

#[derive(Debug)]
struct Pending {
    event: OrderEvent,
    /// Claimable from this time on (a lease pushes it forward).
    visible_at: Timestamp,
}

/// The answer of one product's critical section, plus whether its outbox
/// went from empty to not empty (the caller then marks it pending).
type Step<T> = (T, bool);

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
            outbox: BTreeMap::new(),
            claims: HashMap::default(),
        }
    }

    /// Appends `event`; true if the outbox was empty before.
    fn append(&mut self, event: OrderEvent) -> bool {
        let was_empty = self.outbox.is_empty();
        self.outbox.insert(
            event.event_id,
            Pending {
                visible_at: Timestamp::EPOCH,
                event,
            },
        );
        was_empty
    }

    fn reserve(&mut self, req: &ReserveRequest) -> Step<ReserveOutcome> {
        if let Some(existing) = self.reservations.get(&req.order_id) {
            // The same request again (a retry below the port): its own
            // reservation, as it stands.
            return (ReserveOutcome::Reserved(existing.clone()), false);
        }
        if let Some(id) = req
            .idempotency_key
            .as_ref()
            .and_then(|key| self.keys.get(&req.user)?.get(key))
        {
            let existing = self.reservations[id].clone();
            if existing.state.owns_units() && existing.quantity == req.quantity {
                // This replay will answer 2xx with the order: it must stand
                // unless this replay's answer is lost too.
                let claims = self.claims.entry(existing.order_id).or_default();
                claims.replays.insert(req.order_id);
            }
            return (ReserveOutcome::Duplicate(existing), false);
        }
        if !self.sale.is_open(req.now) {
            return (ReserveOutcome::NotOnSale, false);
        }
        let q = u64::from(req.quantity.get());
        if req.quantity.get() > self.sale.per_order_max() {
            let max = self.sale.per_order_max();
            return (ReserveOutcome::OverOrderMax { max }, false);
        }
        if self.levels.available < q {
            return (ReserveOutcome::SoldOut, false);
        }
        let owned = self.per_user.get(&req.user).copied().unwrap_or(0);
        if owned + q > u64::from(self.sale.per_user_limit()) {
            return (ReserveOutcome::LimitExceeded, false);
        }
        let reservation = req.to_reservation(self.sale.hold());
        self.levels.available -= q;
        if reservation.state == ReservationState::Held {
            self.levels.held += q;
            self.expiry.insert((reservation.expires_at, req.order_id));
        } else {
            self.levels.committed += q;
        }
        *self.per_user.entry(req.user.clone()).or_insert(0) += q;
        if let Some(key) = &req.idempotency_key {
            self.keys
                .entry(req.user.clone())
                .or_default()
                .insert(key.clone(), req.order_id);
        }
        let first = self.append(OrderEvent::placed(&reservation));
        self.reservations.insert(req.order_id, reservation.clone());
        (ReserveOutcome::Reserved(reservation), first)
    }

    /// Returns a live reservation's units to sale, marks it `state` and
    /// appends the event that says why. The caller has checked it owns
    /// units.
    fn return_units(
        &mut self,
        order: &OrderId,
        state: ReservationState,
        event: EventType,
        at: Timestamp,
    ) -> Step<Reservation> {
        let r = self
            .reservations
            .get_mut(order)
            .expect("caller checked the reservation exists");
        let q = u64::from(r.quantity.get());
        match r.state {
            ReservationState::Held => {
                self.levels.held -= q;
                self.expiry.remove(&(r.expires_at, *order));
            }
            ReservationState::Committed => self.levels.committed -= q,
            other => unreachable!("{other:?} owns no units"),
        }
        self.levels.available += q;
        r.state = state;
        let r = r.clone();
        if let Some(n) = self.per_user.get_mut(&r.user) {
            *n -= q;
            if *n == 0 {
                self.per_user.remove(&r.user);
            }
        }
        let first = self.append(OrderEvent::closing(&r, event, at));
        (r, first)
    }

    fn expire_one(&mut self, order: &OrderId, at: Timestamp) -> Step<Reservation> {
        self.return_units(order, ReservationState::Expired, EventType::Expired, at)
    }

    fn confirm(&mut self, order: &OrderId, now: Timestamp) -> Step<ConfirmOutcome> {
        let Some(r) = self.reservations.get_mut(order) else {
            return (ConfirmOutcome::Unknown, false);
        };
        match r.state {
            ReservationState::Committed => (ConfirmOutcome::AlreadyConfirmed, false),
            ReservationState::Held if now >= r.expires_at => {
                let (_, first) = self.expire_one(order, now);
                (ConfirmOutcome::NotHeld(ReservationState::Expired), first)
            }
            ReservationState::Held => {
                r.state = ReservationState::Committed;
                let r = r.clone();
                let q = u64::from(r.quantity.get());
                self.levels.held -= q;
                self.levels.committed += q;
                self.expiry.remove(&(r.expires_at, *order));
                let first = self.append(OrderEvent::closing(&r, EventType::Confirmed, now));
                (ConfirmOutcome::Confirmed, first)
            }
            s => (ConfirmOutcome::NotHeld(s), false),
        }
    }

    fn cancel(&mut self, order: &OrderId, now: Timestamp) -> Step<CancelOutcome> {
        let Some(r) = self.reservations.get(order) else {
            return (CancelOutcome::Unknown, false);
        };
        match r.state {
            ReservationState::Cancelled => (CancelOutcome::AlreadyCancelled, false),
            ReservationState::Held if now >= r.expires_at => {
                let (_, first) = self.expire_one(order, now);
                (CancelOutcome::NotHeld(ReservationState::Expired), first)
            }
            ReservationState::Held => {
                let state = ReservationState::Cancelled;
                let (_, first) = self.return_units(order, state, EventType::Cancelled, now);
                (CancelOutcome::Cancelled, first)
            }
            s => (CancelOutcome::NotHeld(s), false),
        }
    }

    fn void(&mut self, req: &ReserveRequest, now: Timestamp) -> Step<VoidOutcome> {
        let Some(r) = self.reservations.get(&req.order_id) else {
            // The reserve never ran (or has not yet), or it was a replay:
            // a tombstone makes a late one find this request voided and
            // reserve nothing.
            self.reservations.insert(req.order_id, req.to_tombstone());
            let first = self.replay_failed(req, now);
            return (VoidOutcome::NothingReserved, first);
        };
        match r.state {
            ReservationState::Voided => (VoidOutcome::AlreadyVoided, false),
            s @ (ReservationState::Cancelled | ReservationState::Expired) => {
                (VoidOutcome::AlreadyClosed(s), false)
            }
            // A confirmed hold: its buyer confirmed it, so a purchase was
            // answered for it; it is closed, not this request's to undo.
            ReservationState::Committed if r.awaits_confirmation => (
                VoidOutcome::AlreadyClosed(ReservationState::Committed),
                false,
            ),
            ReservationState::Held | ReservationState::Committed => {
                if let Some(claims) = self.claims.get_mut(&req.order_id)
                    && !claims.replays.is_empty()
                {
                    claims.void_waiting = true;
                    return (VoidOutcome::Kept, false);
                }
                (VoidOutcome::Voided, self.void_order(&req.order_id, now))
            }
        }
    }

    /// Undoes a live order: units back, key freed, `voided` appended.
    fn void_order(&mut self, order: &OrderId, now: Timestamp) -> bool {
        self.claims.remove(order);
        let state = ReservationState::Voided;
        let (r, first) = self.return_units(order, state, EventType::Voided, now);
        // A retry with the same key starts afresh.
        if let (Some(key), Some(user_keys)) = (&r.idempotency_key, self.keys.get_mut(&r.user)) {
            if user_keys.get(key) == Some(&r.order_id) {
                user_keys.remove(key);
            }
            if user_keys.is_empty() {
                self.keys.remove(&r.user);
            }
        }
        first
    }

    /// `req` was a replay whose answer was lost: it no longer holds the
    /// order its key names, which is undone if nobody else may hold it.
    fn replay_failed(&mut self, req: &ReserveRequest, now: Timestamp) -> bool {
        let Some(&order) = req
            .idempotency_key
            .as_ref()
            .and_then(|key| self.keys.get(&req.user)?.get(key))
        else {
            return false;
        };
        let Some(claims) = self.claims.get_mut(&order) else {
            return false;
        };
        if !claims.replays.remove(&req.order_id) || !claims.replays.is_empty() {
            return false;
        }
        let r = &self.reservations[&order];
        // Still this request's to undo: held, or sold by a sale without
        // holds (a confirmed hold was answered by its buyer's confirm).
        let live = r.state == ReservationState::Held
            || (r.state == ReservationState::Committed && !r.awaits_confirmation);
        if claims.void_waiting && live {
            self.void_order(&order, now)
        } else {
            false
        }
    }

    /// Leases up to `max` claimable events into `out`.
    fn claim(&mut self, now: Timestamp, max: usize, until: Timestamp, out: &mut Vec<OrderEvent>) {
        let mut leased_elsewhere: Option<OrderId> = None;
        for (id, p) in self.outbox.iter_mut() {
            if out.len() >= max {
                break;
            }
            if p.visible_at > now {
                // Leased by another relay: its order's later events wait.
                leased_elsewhere = Some(id.order_id());
                continue;
            }
            if leased_elsewhere == Some(id.order_id()) {
                continue;
            }
            p.visible_at = until;
            out.push(p.event.clone());
        }
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

    /// Runs `f` under `product`'s lock, marking the product pending when
    /// `f` put the first event in its outbox.
    fn with_product<T>(
        &self,
        product: &ProductId,
        f: impl FnOnce(&mut ProductState) -> Step<T>,
    ) -> Option<T> {
        let p = self.product(product)?;
        let mut state = p.lock();
        let (answer, first) = f(&mut state);
        if first {
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
        let Some(outcome) = self.with_product(&req.product, |p| p.reserve(req)) else {
            return Ok(ReserveOutcome::UnknownProduct);
        };
        if let ReserveOutcome::Reserved(r) = &outcome {
            self.orders.insert(r.order_id, r.product.clone());
        }
        Ok(outcome)
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
        let Some(outcome) = self.with_product(&req.product, |p| p.void(req, now)) else {
            // No such sale: nothing was, or ever will be, reserved.
            return Ok(VoidOutcome::NothingReserved);
        };
        self.orders.insert(req.order_id, req.product.clone());
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
            .map(|e| (e.key().clone(), Arc::clone(e.value())))
            .collect();
        let mut expired = Vec::new();
        for (id, product) in products {
            let mut p = product.lock();
            while expired.len() < max {
                let Some(&(at, order)) = p.expiry.first() else {
                    break;
                };
                if at > now {
                    break;
                }
                let (r, first) = p.expire_one(&order, now);
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
        for e in events {
            let product = &e.order.product_id;
            let Some(p) = self.product(product) else {
                continue;
            };
            let mut state = p.lock();
            state.outbox.remove(&e.event_id);
            if state.outbox.is_empty() {
                // Under the product's lock, so no append can slip between
                // the check and the removal.
                self.pending.remove(product);
            }
        }
        Ok(())
    }
}
