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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::error::Result;
use crate::fast_hash::{HashMap, RandomState};
use crate::model::{
    EventId, EventType, IdempotencyKey, OrderEvent, OrderId, ProductId, Reservation,
    ReservationState, Sale, StockLevels, Timestamp, UserId, admit,
};
use crate::{
    CancelOutcome, ConfirmOutcome, ReserveOutcome, ReserveRequest, SaleWrite, StockStore,
    VoidOutcome,
};

/// In-memory stock, for a single process (tests, demos, single-node
/// deployments). Nothing survives a restart, the outbox included.
///
/// Finished reservations are kept for [`record_ttl`](Self::record_ttl)
/// (default 24 h, [`DEFAULT_RECORD_TTL`](Self::DEFAULT_RECORD_TTL)) after
/// they finish, by the times the store is given (`now` of each call): an
/// idempotency key replays its purchase at least that long. Each
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

#[derive(Debug)]
struct ProductState {
    sale: Sale,
    levels: StockLevels,
    /// Units held + committed per buyer.
    per_user: HashMap<UserId, u64>,
    reservations: HashMap<OrderId, Record>,
    /// Idempotency keys per buyer.
    keys: HashMap<UserId, HashMap<IdempotencyKey, OrderId>>,
    /// Held reservations by expiry, for the sweeper.
    expiry: BTreeSet<(Timestamp, OrderId)>,
    /// Events not yet acknowledged, in event-id order (order id, then seq).
    /// Boxed: a B-tree shifts its entries within a node on every insert and
    /// remove, and an unboxed event is well over a hundred bytes.
    outbox: BTreeMap<EventId, Box<Pending>>,
    /// Orders that a replay (same key, same request) was handed: who else
    /// may hold a 2xx naming them. See [`Claims`].
    claims: HashMap<OrderId, Claims>,
    /// Every claim by the time it lapses, (lapse, order, replay), in the
    /// order made: the times the store is given only grow (up to the skew
    /// between concurrent calls), so the front lapses first.
    claim_lapses: VecDeque<(Timestamp, OrderId, OrderId)>,
    /// How long a replay's claim is kept.
    claim_ttl: Duration,
    /// Finished reservations with their purge time (record TTL after they
    /// finished), in the order they finished: the times the store is given
    /// only grow (up to the skew between concurrent calls), so the front is
    /// the next due, and a push costs O(1) on the purchase path.
    purges: VecDeque<(Timestamp, OrderId)>,
    /// Purges put off because the reservation's events were still pending,
    /// in the same manner.
    retries: VecDeque<(Timestamp, OrderId)>,
    /// How long finished reservations are kept.
    record_ttl: Duration,
}

/// A reservation, and when it is purged once it finished.
#[derive(Debug)]
struct Record {
    reservation: Reservation,
    /// The current purge time, if scheduled: a queue entry with another
    /// time is stale (the order finished again, e.g. sold then voided) and
    /// is skipped. Kept here rather than in a map of its own, which would
    /// cost a second insert per sale.
    purge_at: Option<Timestamp>,
}

/// Who may have been answered with an order besides the request that made
/// it: the replays the store answered `Duplicate` with it. A void of the
/// order's own request undoes it only if no replay may still hold a 2xx
/// for it; a replay whose own answer was lost voids its request, which
/// takes it off the list (and undoes the order if the first request's void
/// is already waiting).
#[derive(Debug, Default)]
struct Claims {
    /// Replays (by their own order id) not known to have failed, with the
    /// time their claim lapses.
    replays: HashMap<OrderId, Timestamp>,
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

/// How long a due purge waits when the reservation's events are still in
/// the outbox.
const PURGE_RETRY: Duration = Duration::from_secs(60);

impl ProductState {
    fn new(sale: Sale, record_ttl: Duration, claim_ttl: Duration) -> Self {
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
            claim_lapses: VecDeque::new(),
            claim_ttl,
            purges: VecDeque::new(),
            retries: VecDeque::new(),
            record_ttl,
        }
    }

    /// `order` finished at `at`: purge it a record TTL later (replacing an
    /// earlier schedule).
    fn finished(&mut self, order: OrderId, at: Timestamp) {
        let when = at.saturating_add(self.record_ttl);
        if let Some(rec) = self.reservations.get_mut(&order) {
            rec.purge_at = Some(when);
        }
        self.purges.push_back((when, order));
    }

    /// The reservation `order`, if the product has it.
    fn reservation(&self, order: &OrderId) -> Option<&Reservation> {
        self.reservations.get(order).map(|rec| &rec.reservation)
    }

    /// The next purge due at `now`, from either queue.
    fn next_due(&mut self, now: Timestamp) -> Option<(Timestamp, OrderId)> {
        for queue in [&mut self.purges, &mut self.retries] {
            if queue.front().is_some_and(|&(at, _)| at <= now) {
                return queue.pop_front();
            }
        }
        None
    }

    /// Whether any event of `order` is still in the outbox.
    fn has_pending_events(&self, order: OrderId) -> bool {
        self.outbox
            .range(EventId::new(order, 0)..=EventId::new(order, u16::MAX))
            .next()
            .is_some()
    }

    /// Purges up to `max` finished reservations due at `now`, with their
    /// idempotency keys, replay claims and order-index entries; returns how
    /// many. One whose events are still pending is looked at again
    /// [`PURGE_RETRY`] later.
    fn purge(
        &mut self,
        now: Timestamp,
        max: usize,
        index: &DashMap<OrderId, ProductId, RandomState>,
    ) -> usize {
        let mut purged = 0;
        let mut waiting = Vec::new();
        for _ in 0..max {
            let Some((at, order)) = self.next_due(now) else {
                break;
            };
            let Some(rec) = self.reservations.get_mut(&order) else {
                continue;
            };
            if rec.purge_at != Some(at) {
                continue; // Stale: rescheduled since.
            }
            rec.purge_at = None;
            if rec.reservation.state == ReservationState::Held {
                // Live again? Never scheduled while held; be safe.
                continue;
            }
            if self.has_pending_events(order) {
                waiting.push(order);
                continue;
            }
            let rec = self.reservations.remove(&order).expect("looked up above");
            self.free_key(&rec.reservation);
            self.claims.remove(&order);
            index.remove_if(&order, |_, p| p == self.sale.product());
            purged += 1;
        }
        let when = now.saturating_add(PURGE_RETRY);
        for order in waiting {
            if let Some(rec) = self.reservations.get_mut(&order) {
                rec.purge_at = Some(when);
            }
            self.retries.push_back((when, order));
        }
        purged
    }

    /// Appends `event`; true if the outbox was empty before.
    fn append(&mut self, event: OrderEvent) -> bool {
        let was_empty = self.outbox.is_empty();
        self.outbox.insert(
            event.event_id,
            Box::new(Pending {
                visible_at: Timestamp::EPOCH,
                event,
            }),
        );
        was_empty
    }

    fn reserve(&mut self, req: &ReserveRequest) -> Step<ReserveOutcome> {
        if let Some(existing) = self.reservation(&req.order_id) {
            // The same request again (a retry below the port): its own
            // reservation, as it stands.
            return (ReserveOutcome::Reserved(existing.clone()), false);
        }
        if let Some(id) = req
            .idempotency_key
            .as_ref()
            .and_then(|key| self.keys.get(&req.user)?.get(key))
        {
            let existing = self.reservations[id].reservation.clone();
            if existing.state.owns_units() && existing.quantity == req.quantity {
                // This replay will answer 2xx with the order: it must stand
                // unless this replay's answer is lost too.
                self.prune_claims(req.now);
                let until = req.now.saturating_add(self.claim_ttl);
                let claims = self.claims.entry(existing.order_id).or_default();
                claims.replays.insert(req.order_id, until);
                self.claim_lapses
                    .push_back((until, existing.order_id, req.order_id));
            }
            return (ReserveOutcome::Duplicate(existing), false);
        }
        let owned = self.per_user.get(&req.user).copied().unwrap_or(0);
        if let Err(refusal) = admit(&self.sale, self.levels.available, owned, req) {
            return (refusal, false);
        }
        let q = u64::from(req.quantity.get());
        let reservation = req.to_reservation(self.sale.hold());
        self.levels.available -= q;
        let mut purge_at = None;
        if reservation.state == ReservationState::Held {
            self.levels.held += q;
            self.expiry.insert((reservation.expires_at, req.order_id));
        } else {
            self.levels.committed += q;
            // Sold at once: finished.
            let when = req.now.saturating_add(self.record_ttl);
            purge_at = Some(when);
            self.purges.push_back((when, req.order_id));
        }
        *self.per_user.entry(req.user.clone()).or_insert(0) += q;
        if let Some(key) = &req.idempotency_key {
            self.keys
                .entry(req.user.clone())
                .or_default()
                .insert(key.clone(), req.order_id);
        }
        let first = self.append(OrderEvent::placed(&reservation));
        let record = Record {
            reservation: reservation.clone(),
            purge_at,
        };
        self.reservations.insert(req.order_id, record);
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
        let r = &mut self
            .reservations
            .get_mut(order)
            .expect("caller checked the reservation exists")
            .reservation;
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
        self.finished(*order, at);
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
        let Some(Record { reservation: r, .. }) = self.reservations.get_mut(order) else {
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
                self.finished(*order, now);
                let first = self.append(OrderEvent::closing(&r, EventType::Confirmed, now));
                (ConfirmOutcome::Confirmed, first)
            }
            s => (ConfirmOutcome::NotHeld(s), false),
        }
    }

    fn cancel(&mut self, order: &OrderId, now: Timestamp) -> Step<CancelOutcome> {
        let Some(r) = self.reservation(order) else {
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
        let Some(r) = self.reservation(&req.order_id) else {
            // The reserve never ran (or has not yet), or it was a replay:
            // a tombstone makes a late one find this request voided and
            // reserve nothing.
            let tombstone = Record {
                reservation: req.to_tombstone(),
                purge_at: None,
            };
            self.reservations.insert(req.order_id, tombstone);
            self.finished(req.order_id, now);
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
                self.prune_claims(now);
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
        self.free_key(&r);
        first
    }

    /// Drops the claims that lapsed at `now`; an order left with none
    /// forgets a waiting void (no replay can void it any more: it stands).
    fn prune_claims(&mut self, now: Timestamp) {
        while let Some(&(until, order, replay)) = self.claim_lapses.front() {
            if until > now {
                break;
            }
            self.claim_lapses.pop_front();
            if let Some(claims) = self.claims.get_mut(&order) {
                if claims.replays.get(&replay) == Some(&until) {
                    claims.replays.remove(&replay);
                }
                if claims.replays.is_empty() {
                    self.claims.remove(&order);
                }
            }
        }
    }

    /// Deletes `r`'s idempotency key, if it still names `r`.
    fn free_key(&mut self, r: &Reservation) {
        if let (Some(key), Some(user_keys)) = (&r.idempotency_key, self.keys.get_mut(&r.user)) {
            if user_keys.get(key) == Some(&r.order_id) {
                user_keys.remove(key);
            }
            if user_keys.is_empty() {
                self.keys.remove(&r.user);
            }
        }
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
        self.prune_claims(now);
        let Some(claims) = self.claims.get_mut(&order) else {
            return false;
        };
        if claims.replays.remove(&req.order_id).is_none() || !claims.replays.is_empty() {
            return false;
        }
        let r = &self.reservations[&order].reservation;
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

impl Default for MemoryStockStore {
    fn default() -> Self {
        Self {
            products: DashMap::default(),
            orders: DashMap::default(),
            pending: DashMap::default(),
            record_ttl: Self::DEFAULT_RECORD_TTL,
            replay_claim_ttl: crate::DEFAULT_REPLAY_CLAIM_TTL,
        }
    }
}

impl MemoryStockStore {
    /// The default retention of finished reservations and their
    /// idempotency keys: 24 hours, as the Redis store's.
    pub const DEFAULT_RECORD_TTL: Duration = Duration::from_secs(24 * 3600);

    /// Most finished reservations purged per product per
    /// [`expire`](StockStore::expire) call.
    pub const PURGE_BATCH: usize = 1_000;

    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps finished reservations (and their idempotency keys) for `ttl`
    /// after they finish, instead of [`DEFAULT_RECORD_TTL`](Self::DEFAULT_RECORD_TTL).
    /// Set it before the first sale is created: each sale keeps the TTL it
    /// was created with.
    #[must_use]
    pub fn record_ttl(mut self, ttl: Duration) -> Self {
        self.record_ttl = ttl;
        self
    }

    /// Keeps a same-request replay's claim on the order it was answered
    /// with for `ttl` (default
    /// [`DEFAULT_REPLAY_CLAIM_TTL`](crate::DEFAULT_REPLAY_CLAIM_TTL)),
    /// by the times the store is given. Set it before the first sale is
    /// created, as [`record_ttl`](Self::record_ttl).
    #[must_use]
    pub fn replay_claim_ttl(mut self, ttl: Duration) -> Self {
        self.replay_claim_ttl = ttl;
        self
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
    use crate::model::Quantity;

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
        let store = MemoryStockStore::new().record_ttl(TTL);
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
