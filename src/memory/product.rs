//! One product's state in the in-memory store: its sale and levels, its
//! reservations and keys, its replay claims and its outbox. Every operation
//! is a method run under the product's lock, answering a [`Step`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use dashmap::DashMap;

use crate::fast_hash::{HashMap, RandomState};
use crate::model::{
    EventId, EventType, IdempotencyKey, OrderEvent, OrderId, ProductId, Reservation,
    ReservationState, Sale, StockLevels, Timestamp, UserId, admit,
};
use crate::{CancelOutcome, ConfirmOutcome, ReserveOutcome, ReserveRequest, VoidOutcome};

#[derive(Debug)]
pub(super) struct ProductState {
    pub(super) sale: Sale,
    pub(super) levels: StockLevels,
    /// Units held + committed per buyer.
    pub(super) per_user: HashMap<UserId, u64>,
    pub(super) reservations: HashMap<OrderId, Record>,
    /// Idempotency keys per buyer.
    pub(super) keys: HashMap<UserId, HashMap<IdempotencyKey, OrderId>>,
    /// Held reservations by expiry, for the sweeper.
    pub(super) expiry: BTreeSet<(Timestamp, OrderId)>,
    /// Events not yet acknowledged, in event-id order (order id, then seq).
    /// Boxed: a B-tree shifts its entries within a node on every insert and
    /// remove, and an unboxed event is well over a hundred bytes.
    pub(super) outbox: BTreeMap<EventId, Box<Pending>>,
    /// Orders that a replay (same key, same request) was handed: who else
    /// may hold a 2xx naming them. See [`Claims`].
    pub(super) claims: HashMap<OrderId, Claims>,
    /// Every claim by the time it lapses, (lapse, order, replay), in the
    /// order made: the times the store is given only grow (up to the skew
    /// between concurrent calls), so the front lapses first.
    pub(super) claim_lapses: VecDeque<(Timestamp, OrderId, OrderId)>,
    /// How long a replay's claim is kept.
    pub(super) claim_ttl: Duration,
    /// Finished reservations with their purge time (record TTL after they
    /// finished), in the order they finished: the times the store is given
    /// only grow (up to the skew between concurrent calls), so the front is
    /// the next due, and a push costs O(1) on the purchase path.
    pub(super) purges: VecDeque<(Timestamp, OrderId)>,
    /// Purges put off because the reservation's events were still pending,
    /// in the same manner.
    pub(super) retries: VecDeque<(Timestamp, OrderId)>,
    /// How long finished reservations are kept.
    pub(super) record_ttl: Duration,
}

/// A reservation, and when it is purged once it finished.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) reservation: Reservation,
    /// The current purge time, if scheduled: a queue entry with another
    /// time is stale (the order finished again, e.g. sold then voided) and
    /// is skipped. Kept here rather than in a map of its own, which would
    /// cost a second insert per sale.
    pub(super) purge_at: Option<Timestamp>,
}

/// Who may have been answered with an order besides the request that made
/// it: the replays the store answered `Duplicate` with it. A void of the
/// order's own request undoes it only if no replay may still hold a 2xx
/// for it; a replay whose own answer was lost voids its request, which
/// takes it off the list (and undoes the order if the first request's void
/// is already waiting).
#[derive(Debug, Default)]
pub(super) struct Claims {
    /// Replays (by their own order id) not known to have failed, with the
    /// time their claim lapses.
    pub(super) replays: HashMap<OrderId, Timestamp>,
    /// The order's own request asked for a void.
    pub(super) void_waiting: bool,
}

#[derive(Debug)]
pub(super) struct Pending {
    pub(super) event: OrderEvent,
    /// Claimable from this time on (a lease pushes it forward).
    pub(super) visible_at: Timestamp,
}

/// The answer of one product's critical section, and whether its outbox
/// went from empty to not empty (the caller then marks it pending).
#[derive(Debug)]
pub(super) struct Step<T> {
    pub(super) answer: T,
    pub(super) first_event: bool,
}

impl<T> Step<T> {
    fn new(answer: T, first_event: bool) -> Self {
        Self {
            answer,
            first_event,
        }
    }

    /// An answer that appended no event.
    fn quiet(answer: T) -> Self {
        Self::new(answer, false)
    }
}

/// How long a due purge waits when the reservation's events are still in
/// the outbox.
pub(super) const PURGE_RETRY: Duration = Duration::from_secs(60);

impl ProductState {
    pub(super) fn new(sale: Sale, record_ttl: Duration, claim_ttl: Duration) -> Self {
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
    pub(super) fn finished(&mut self, order: OrderId, at: Timestamp) {
        let when = at.saturating_add(self.record_ttl);
        if let Some(rec) = self.reservations.get_mut(&order) {
            rec.purge_at = Some(when);
        }
        self.purges.push_back((when, order));
    }

    /// The reservation `order`, if the product has it.
    pub(super) fn reservation(&self, order: &OrderId) -> Option<&Reservation> {
        self.reservations.get(order).map(|rec| &rec.reservation)
    }

    /// The next purge due at `now`, from either queue.
    pub(super) fn next_due(&mut self, now: Timestamp) -> Option<(Timestamp, OrderId)> {
        for queue in [&mut self.purges, &mut self.retries] {
            if queue.front().is_some_and(|&(at, _)| at <= now) {
                return queue.pop_front();
            }
        }
        None
    }

    /// Whether any event of `order` is still in the outbox.
    pub(super) fn has_pending_events(&self, order: OrderId) -> bool {
        self.outbox
            .range(EventId::new(order, 0)..=EventId::new(order, u16::MAX))
            .next()
            .is_some()
    }

    /// Purges up to `max` finished reservations due at `now`, with their
    /// idempotency keys, replay claims and order-index entries; returns how
    /// many. One whose events are still pending is looked at again
    /// [`PURGE_RETRY`] later.
    pub(super) fn purge(
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
    pub(super) fn append(&mut self, event: OrderEvent) -> bool {
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

    pub(super) fn reserve(&mut self, req: &ReserveRequest) -> Step<ReserveOutcome> {
        if let Some(existing) = self.reservation(&req.order_id) {
            // The same request again (a retry below the port): its own
            // reservation, as it stands.
            return Step::quiet(ReserveOutcome::Reserved(existing.clone()));
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
            return Step::quiet(ReserveOutcome::Duplicate(existing));
        }
        let owned = self.per_user.get(&req.user).copied().unwrap_or(0);
        if let Err(refusal) = admit(&self.sale, self.levels.available, owned, req) {
            return Step::quiet(refusal);
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
        Step::new(ReserveOutcome::Reserved(reservation), first)
    }

    /// Returns a live reservation's units to sale, marks it `state` and
    /// appends the event that says why. The caller has checked it owns
    /// units.
    pub(super) fn return_units(
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
        Step::new(r, first)
    }

    pub(super) fn expire_one(&mut self, order: &OrderId, at: Timestamp) -> Step<Reservation> {
        self.return_units(order, ReservationState::Expired, EventType::Expired, at)
    }

    pub(super) fn confirm(&mut self, order: &OrderId, now: Timestamp) -> Step<ConfirmOutcome> {
        let Some(Record { reservation: r, .. }) = self.reservations.get_mut(order) else {
            return Step::quiet(ConfirmOutcome::Unknown);
        };
        match r.state {
            ReservationState::Committed => Step::quiet(ConfirmOutcome::AlreadyConfirmed),
            ReservationState::Held if now >= r.expires_at => {
                let first = self.expire_one(order, now).first_event;
                Step::new(ConfirmOutcome::NotHeld(ReservationState::Expired), first)
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
                Step::new(ConfirmOutcome::Confirmed, first)
            }
            s => Step::quiet(ConfirmOutcome::NotHeld(s)),
        }
    }

    pub(super) fn cancel(&mut self, order: &OrderId, now: Timestamp) -> Step<CancelOutcome> {
        let Some(r) = self.reservation(order) else {
            return Step::quiet(CancelOutcome::Unknown);
        };
        match r.state {
            ReservationState::Cancelled => Step::quiet(CancelOutcome::AlreadyCancelled),
            ReservationState::Held if now >= r.expires_at => {
                let first = self.expire_one(order, now).first_event;
                Step::new(CancelOutcome::NotHeld(ReservationState::Expired), first)
            }
            ReservationState::Held => {
                let state = ReservationState::Cancelled;
                let first = self
                    .return_units(order, state, EventType::Cancelled, now)
                    .first_event;
                Step::new(CancelOutcome::Cancelled, first)
            }
            s => Step::quiet(CancelOutcome::NotHeld(s)),
        }
    }

    pub(super) fn void(&mut self, req: &ReserveRequest, now: Timestamp) -> Step<VoidOutcome> {
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
            return Step::new(VoidOutcome::NothingReserved, first);
        };
        match r.state {
            ReservationState::Voided => Step::quiet(VoidOutcome::AlreadyVoided),
            s @ (ReservationState::Cancelled | ReservationState::Expired) => {
                Step::quiet(VoidOutcome::AlreadyClosed(s))
            }
            // A confirmed hold: its buyer confirmed it, so a purchase was
            // answered for it; it is closed, not this request's to undo.
            ReservationState::Committed if r.awaits_confirmation => {
                Step::quiet(VoidOutcome::AlreadyClosed(ReservationState::Committed))
            }
            ReservationState::Held | ReservationState::Committed => {
                self.prune_claims(now);
                if let Some(claims) = self.claims.get_mut(&req.order_id)
                    && !claims.replays.is_empty()
                {
                    claims.void_waiting = true;
                    return Step::quiet(VoidOutcome::Kept);
                }
                Step::new(VoidOutcome::Voided, self.void_order(&req.order_id, now))
            }
        }
    }

    /// Undoes a live order: units back, key freed, `voided` appended.
    pub(super) fn void_order(&mut self, order: &OrderId, now: Timestamp) -> bool {
        self.claims.remove(order);
        let state = ReservationState::Voided;
        let Step {
            answer: r,
            first_event: first,
        } = self.return_units(order, state, EventType::Voided, now);
        // A retry with the same key starts afresh.
        self.free_key(&r);
        first
    }

    /// Drops the claims that lapsed at `now`; an order left with none
    /// forgets a waiting void (no replay can void it any more: it stands).
    pub(super) fn prune_claims(&mut self, now: Timestamp) {
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
    pub(super) fn free_key(&mut self, r: &Reservation) {
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
    pub(super) fn replay_failed(&mut self, req: &ReserveRequest, now: Timestamp) -> bool {
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
    pub(super) fn claim(
        &mut self,
        now: Timestamp,
        max: usize,
        until: Timestamp,
        out: &mut Vec<OrderEvent>,
    ) {
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
