//! Purchase requests, reservations and the orders handed to the sink.

use serde::{Deserialize, Serialize};

use super::{IdempotencyKey, OrderId, ProductId, Quantity, Timestamp, UserId};

/// What a buyer asks for: `quantity` units of `product`, optionally under an
/// idempotency key. The buyer comes from authentication, not from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRequest {
    /// The product to buy.
    pub product: ProductId,
    /// How many units.
    pub quantity: Quantity,
    /// Repeating a request with the same key returns the first answer.
    pub idempotency_key: Option<IdempotencyKey>,
}

impl PurchaseRequest {
    /// A request for `quantity` units of `product` with no idempotency key.
    pub fn new(product: ProductId, quantity: Quantity) -> Self {
        Self {
            product,
            quantity,
            idempotency_key: None,
        }
    }

    /// Sets the idempotency key.
    #[must_use]
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }
}

/// Where a reservation stands. A sale without holds sells at once
/// (`Committed`); a hold starts `Held` and ends `Committed` (confirmed),
/// `Cancelled` or `Expired`. Any live reservation whose request answered
/// 503 ends `Voided`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Units are set aside; neither sold nor returned yet.
    Held,
    /// Units are sold for good.
    Committed,
    /// The buyer (or an admin) cancelled the hold; units returned.
    Cancelled,
    /// The hold ran past its expiry; units returned.
    Expired,
    /// The request that made it failed (its answer was 503), so it was
    /// undone: units returned, its idempotency key freed. Also the state of
    /// a tombstone left by voiding a reserve that never ran, so that a late
    /// retry of that reserve reserves nothing.
    Voided,
}

impl ReservationState {
    /// Whether the reservation still owns its units (held or sold).
    pub fn owns_units(self) -> bool {
        matches!(self, ReservationState::Held | ReservationState::Committed)
    }

    /// The stable lower-case name (`held`, `committed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Held => "held",
            ReservationState::Committed => "committed",
            ReservationState::Cancelled => "cancelled",
            ReservationState::Expired => "expired",
            ReservationState::Voided => "voided",
        }
    }
}

/// Units set aside for one buyer; identified by the id of the order it
/// becomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The order (and reservation) id.
    pub order_id: OrderId,
    /// The product.
    pub product: ProductId,
    /// The buyer.
    pub user: UserId,
    /// Units held.
    pub quantity: Quantity,
    /// The key the request came with, if any.
    pub idempotency_key: Option<IdempotencyKey>,
    /// When the reservation was made.
    pub created_at: Timestamp,
    /// For holds: when an unconfirmed hold is released by the sweeper.
    /// Equal to `created_at` for a sale without holds (sold at once).
    pub expires_at: Timestamp,
    /// Whether the sale holds purchases awaiting confirmation (the buyer
    /// confirms or cancels), rather than committing them at once.
    pub awaits_confirmation: bool,
    /// Where it stands.
    pub state: ReservationState,
}

impl Reservation {
    /// The order this reservation becomes.
    pub fn to_order(&self) -> Order {
        Order {
            order_id: self.order_id,
            product_id: self.product.clone(),
            user_id: self.user.clone(),
            quantity: self.quantity,
            created_at: self.created_at,
            idempotency_key: self.idempotency_key.clone(),
            hold_expires_at: self.awaits_confirmation.then_some(self.expires_at),
        }
    }

    /// The order this reservation becomes, taking its ids rather than
    /// cloning them.
    pub(crate) fn into_order(self) -> Order {
        Order {
            order_id: self.order_id,
            product_id: self.product,
            user_id: self.user,
            quantity: self.quantity,
            created_at: self.created_at,
            idempotency_key: self.idempotency_key,
            hold_expires_at: self.awaits_confirmation.then_some(self.expires_at),
        }
    }
}

/// An accepted order, as carried by every [`OrderEvent`](super::OrderEvent).
///
/// Its JSON form is part of the versioned event contract (see
/// `docs/orders.md`); consumers ignore fields they do not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Unique, time-ordered id; also the sink's deduplication key.
    pub order_id: OrderId,
    /// The product bought.
    pub product_id: ProductId,
    /// The buyer.
    pub user_id: UserId,
    /// Units bought.
    pub quantity: Quantity,
    /// When the purchase was accepted.
    pub created_at: Timestamp,
    /// The buyer's idempotency key, if the request had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<IdempotencyKey>,
    /// For sales with holds: when the unconfirmed hold lapses. A consumer
    /// must treat such an order as provisional until it is confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_expires_at: Option<Timestamp>,
}
