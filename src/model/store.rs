//! What the stock store is asked and what it answers: the values the state
//! machine and every [`StockStore`](crate::StockStore) exchange.

use std::time::Duration;

use super::{
    IdempotencyKey, OrderId, ProductId, Quantity, Reservation, ReservationState, Timestamp, UserId,
};

/// One atomic reservation attempt, as the state machine asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    /// The id the reservation (and its order) will carry. Reserving the same
    /// id again (a store-level retry of this very request) answers
    /// [`ReserveOutcome::Reserved`] with the reservation as it stands.
    pub order_id: OrderId,
    /// The product.
    pub product: ProductId,
    /// The buyer.
    pub user: UserId,
    /// Units asked for.
    pub quantity: Quantity,
    /// The request's idempotency key, if any (scoped to buyer and product).
    pub idempotency_key: Option<IdempotencyKey>,
    /// The time of the request.
    pub now: Timestamp,
}

impl ReserveRequest {
    /// The reservation this request makes when it succeeds, given the
    /// sale's hold (`None`: a sale without holds, sold at once).
    pub fn to_reservation(&self, sale_hold: Option<Duration>) -> Reservation {
        let (expires_at, state) = match sale_hold {
            Some(hold) => (self.now.saturating_add(hold), ReservationState::Held),
            None => (self.now, ReservationState::Committed),
        };
        Reservation {
            order_id: self.order_id,
            product: self.product.clone(),
            user: self.user.clone(),
            quantity: self.quantity,
            idempotency_key: self.idempotency_key.clone(),
            created_at: self.now,
            expires_at,
            awaits_confirmation: sale_hold.is_some(),
            state,
        }
    }

    /// The tombstone [`StockStore::void`](crate::StockStore::void) leaves when this request's
    /// reserve never ran: state `Voided`, owning nothing.
    pub fn to_tombstone(&self) -> Reservation {
        Reservation {
            state: ReservationState::Voided,
            ..self.to_reservation(None)
        }
    }
}

/// The answer to [`StockStore::reserve`](crate::StockStore::reserve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// This request's reservation: just made (its `placed` event is in the
    /// outbox; state `Committed` for a sale without holds, `Held` for a hold
    /// sale), or found again under the same order id because the reserve
    /// was retried below the store's API. The state is as it stands now.
    Reserved(Reservation),
    /// The idempotency key already names another request's reservation;
    /// here it is, unchanged. Nothing new was reserved. If it owns units and
    /// this is the same request (same quantity), the store remembers this
    /// request as one that may answer with it: a void of the first request
    /// then keeps the order ([`VoidOutcome::Kept`]) until this request
    /// voids too, and a void of this request (its order id names no
    /// reservation) releases that claim.
    Duplicate(Reservation),
    /// Fewer units available than asked for.
    SoldOut,
    /// The buyer's held + committed units would exceed the per-user cap.
    LimitExceeded,
    /// The sale is outside its window at `now`.
    NotOnSale,
    /// The quantity is above the sale's per-order maximum.
    OverOrderMax {
        /// The sale's per-order maximum.
        max: u32,
    },
    /// No sale exists for the product.
    UnknownProduct,
}

/// The answer to [`StockStore::confirm`](crate::StockStore::confirm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// The hold is now sold for good; a `confirmed` event was appended.
    Confirmed,
    /// It was already sold (confirm is idempotent; an order of a sale
    /// without holds is sold from the start).
    AlreadyConfirmed,
    /// The hold was cancelled, had expired (possibly just now, in which case
    /// its `expired` event was appended) or was voided.
    NotHeld(ReservationState),
    /// No such reservation.
    Unknown,
}

/// The answer to [`StockStore::cancel`](crate::StockStore::cancel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The units went back on sale; a `cancelled` event was appended.
    Cancelled,
    /// It was already cancelled (cancel is idempotent).
    AlreadyCancelled,
    /// It is sold (`Committed`), has expired (possibly just now, with its
    /// `expired` event) or was voided: nothing changed.
    NotHeld(ReservationState),
    /// No such reservation.
    Unknown,
}

/// The answer to [`StockStore::void`](crate::StockStore::void).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoidOutcome {
    /// The reservation owned units: they are back on sale, its idempotency
    /// key is free again and a `voided` event follows its `placed` event.
    Voided,
    /// The reserve had not run: a `Voided` tombstone now stands under the
    /// order id, so a late retry of that reserve reserves nothing.
    NothingReserved,
    /// It was already voided (void is idempotent).
    AlreadyVoided,
    /// Kept for now: a replay (same idempotency key, same request) was
    /// handed this order and may have answered its buyer 2xx with it. It is
    /// undone later if that replay's answer is lost too (the replay then
    /// voids its own request), and stands otherwise.
    Kept,
    /// The hold had already ended: cancelled or expired (the buyer owns
    /// nothing), or confirmed by its buyer (`Committed`: a purchase that was
    /// answered and confirmed is not undone). Unchanged.
    AlreadyClosed(ReservationState),
}

/// The answer to [`StockStore::create_sale`](crate::StockStore::create_sale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleWrite {
    /// A new sale.
    Created,
    /// An existing sale's terms and total stock were replaced; holds and
    /// commitments are kept.
    Updated,
    /// Refused: the new stock is below the units already held or sold.
    StockBelowSold {
        /// Units held or committed right now.
        held_or_committed: u64,
    },
}
