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

/// Where a reservation stands. Every reservation ends `Committed`,
/// `Cancelled` or `Expired` (or is aborted, which deletes it).
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
    /// When an uncommitted reservation is released by the sweeper.
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
            schema_version: Order::SCHEMA_VERSION,
            order_id: self.order_id,
            product_id: self.product.clone(),
            user_id: self.user.clone(),
            quantity: self.quantity,
            created_at: self.created_at,
            idempotency_key: self.idempotency_key.clone(),
            hold_expires_at: self.awaits_confirmation.then_some(self.expires_at),
        }
    }
}

/// An accepted order, as handed to the [`OrderSink`](crate::ports::OrderSink).
///
/// Its JSON form is a stable, versioned contract (see `docs/orders.md`):
/// consumers must check `schema_version` and ignore fields they do not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Version of this schema; [`Order::SCHEMA_VERSION`] for orders made by
    /// this crate.
    pub schema_version: u16,
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

impl Order {
    /// The schema version this crate writes.
    pub const SCHEMA_VERSION: u16 = 1;
}

/// Proof that an order is durable in the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The order.
    pub order_id: OrderId,
    /// Where the sink put it, e.g. `orders/3@1207` (topic, partition,
    /// offset); free-form, for logs.
    pub location: String,
}
