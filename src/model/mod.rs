//! Validated domain types.
//!
//! Every type here checks its value on construction and cannot hold a bad
//! one: a [`ProductId`] is always a well-formed id, a [`Quantity`] is always
//! between 1 and [`Quantity::MAX`], a [`Sale`] always has a sane window and
//! limits. Constructors return an [`InvalidInput`] that names the field and
//! says what was wrong, so the HTTP layer can answer `400` precisely.

mod admit;
mod auth;
mod event;
mod ids;
mod order;
mod outcome;
mod quota;
mod sale;
mod store;

pub(crate) use admit::admit;
pub use auth::{AuthRejection, Credentials, Principal};
pub use event::{EventId, EventType, OrderEvent};
pub use ids::{IdempotencyKey, InvalidInput, OrderId, ProductId, Quantity, Timestamp, UserId};
pub use order::{Order, PurchaseRequest, Reservation, ReservationState};
pub(crate) use outcome::retry_after_secs;
pub use outcome::{OrderStatus, Outcome, PurchaseSummary};
pub use quota::{RateDecision, RateQuota};
pub use sale::{Sale, SaleBuilder, StockLevels};
pub use store::{
    CancelOutcome, ConfirmOutcome, ReserveOutcome, ReserveRequest, SaleWrite, VoidOutcome,
};
