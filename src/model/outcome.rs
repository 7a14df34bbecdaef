//! What a purchase attempt ended in. Business results are values, not errors.

use std::time::Duration;

use super::{AuthRejection, InvalidInput, Order, Reservation, ReservationState, Timestamp};

/// Where a purchased order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    /// Sold for good.
    Confirmed,
    /// Held until `expires_at` awaiting the buyer's confirmation.
    Held {
        /// When the unconfirmed hold lapses.
        expires_at: Timestamp,
    },
    /// The hold was cancelled.
    Cancelled,
    /// The hold lapsed unconfirmed.
    Expired,
    /// The purchase was undone because its request failed.
    Voided,
}

impl OrderStatus {
    /// The stable string used in JSON bodies.
    pub fn as_str(&self) -> &'static str {
        match self {
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Held { .. } => "held",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
            OrderStatus::Voided => "voided",
        }
    }

    /// The status of `r` as a buyer sees it.
    pub fn of(r: &Reservation) -> Self {
        match r.state {
            ReservationState::Held => OrderStatus::Held {
                expires_at: r.expires_at,
            },
            ReservationState::Committed => OrderStatus::Confirmed,
            ReservationState::Cancelled => OrderStatus::Cancelled,
            ReservationState::Expired => OrderStatus::Expired,
            ReservationState::Voided => OrderStatus::Voided,
        }
    }
}

/// A purchase the buyer got: the order and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseSummary {
    /// The order as handed to the sink.
    pub order: Order,
    /// Where it stands.
    pub status: OrderStatus,
}

/// How a purchase attempt ended. See [`Outcome::code`] for the stable codes
/// and [`Outcome::http_status`] for the HTTP mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Bought. With [`HandOff::Outbox`](crate::machine::HandOff) (the
    /// default) the order is durable in the store's outbox, and the relay
    /// delivers it to the sink; with `HandOff::AwaitSink` the sink has also
    /// acknowledged it.
    Purchased(PurchaseSummary),
    /// Bought, but (`HandOff::AwaitSink` only) the sink did not acknowledge
    /// the order in time. The order stands and the relay delivers it
    /// (HTTP 202, `"status": "pending"`).
    Accepted(PurchaseSummary),
    /// Same `Idempotency-Key`, same request: the original purchase.
    Replayed(PurchaseSummary),
    /// Same `Idempotency-Key`, different request.
    IdempotencyConflict,
    /// Too many attempts by this buyer; retry after the given time.
    RateLimited {
        /// How long to wait before the next attempt will be admitted.
        retry_after: Duration,
    },
    /// No units left.
    SoldOut,
    /// The buyer would exceed the per-user cap.
    LimitExceeded,
    /// The sale has not started or has ended.
    NotOnSale,
    /// The request itself is wrong; names the field.
    Invalid(InvalidInput),
    /// No sale exists for the product.
    UnknownProduct,
    /// Credentials missing or refused.
    Unauthenticated(AuthRejection),
    /// Authenticated, but not allowed (admin routes, someone else's order).
    Forbidden,
    /// Confirm/cancel: the order's new status.
    OrderUpdated(PurchaseSummary),
    /// Confirm/cancel: no such order.
    UnknownOrder,
    /// Confirm/cancel: the order is no longer held (it was confirmed,
    /// cancelled or has expired), so it cannot change that way.
    OrderClosed(OrderStatus),
    /// A backend failed or timed out; nothing stays reserved.
    Unavailable {
        /// A hint for `Retry-After`.
        retry_after: Duration,
    },
}

impl Outcome {
    /// The stable machine-readable code (the `error` field of JSON error
    /// bodies, or `"purchased"`/`"replayed"`). These strings are a contract.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Purchased(_) => "purchased",
            Outcome::Accepted(_) => "accepted",
            Outcome::Replayed(_) => "replayed",
            Outcome::IdempotencyConflict => "idempotency_conflict",
            Outcome::RateLimited { .. } => "rate_limited",
            Outcome::SoldOut => "sold_out",
            Outcome::LimitExceeded => "limit_exceeded",
            Outcome::NotOnSale => "sale_not_active",
            Outcome::Invalid(_) => "invalid_request",
            Outcome::UnknownProduct => "unknown_product",
            Outcome::Unauthenticated(_) => "unauthenticated",
            Outcome::Forbidden => "forbidden",
            Outcome::OrderUpdated(_) => "order_updated",
            Outcome::UnknownOrder => "unknown_order",
            Outcome::OrderClosed(_) => "order_not_held",
            Outcome::Unavailable { .. } => "unavailable",
        }
    }

    /// The HTTP status this outcome maps to (design.md's table).
    pub fn http_status(&self) -> u16 {
        match self {
            Outcome::Purchased(_) | Outcome::Replayed(_) | Outcome::OrderUpdated(_) => 200,
            Outcome::Accepted(_) => 202,
            Outcome::IdempotencyConflict | Outcome::OrderClosed(_) => 409,
            Outcome::RateLimited { .. } => 429,
            Outcome::SoldOut
            | Outcome::LimitExceeded
            | Outcome::NotOnSale
            | Outcome::Invalid(_) => 400,
            Outcome::UnknownProduct | Outcome::UnknownOrder => 404,
            Outcome::Unauthenticated(_) => 401,
            Outcome::Forbidden => 403,
            Outcome::Unavailable { .. } => 503,
        }
    }

    /// The order, for `Purchased`, `Accepted`, `Replayed` and
    /// `OrderUpdated`.
    pub fn purchase(&self) -> Option<&PurchaseSummary> {
        match self {
            Outcome::Purchased(p)
            | Outcome::Accepted(p)
            | Outcome::Replayed(p)
            | Outcome::OrderUpdated(p) => Some(p),
            _ => None,
        }
    }

    /// A human-readable message for the JSON error body.
    pub fn message(&self) -> String {
        match self {
            Outcome::Purchased(_) => "purchase accepted".into(),
            Outcome::Accepted(_) => {
                "purchase accepted; the order stands and its delivery is pending".into()
            }
            Outcome::Replayed(_) => {
                "this request was already processed; here is the original order".into()
            }
            Outcome::IdempotencyConflict => {
                "this Idempotency-Key was already used for a different request".into()
            }
            Outcome::RateLimited { retry_after } => format!(
                "too many attempts; retry in {} s",
                retry_after_secs(*retry_after)
            ),
            Outcome::SoldOut => "the product is sold out".into(),
            Outcome::LimitExceeded => "this purchase would exceed the per-buyer limit".into(),
            Outcome::NotOnSale => "the sale is not active right now".into(),
            Outcome::Invalid(e) => e.to_string(),
            Outcome::UnknownProduct => "no sale exists for this product".into(),
            Outcome::Unauthenticated(_) => "a valid bearer token is required".into(),
            Outcome::Forbidden => "you are not allowed to do this".into(),
            Outcome::OrderUpdated(p) => format!("the order is now {}", p.status.as_str()),
            Outcome::UnknownOrder => "no such order".into(),
            Outcome::OrderClosed(status) => format!(
                "the order is {} and no longer held, so it cannot change",
                status.as_str()
            ),
            Outcome::Unavailable { .. } => {
                "a backend is unavailable; you own nothing from this attempt, retry shortly".into()
            }
        }
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}
