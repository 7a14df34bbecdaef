//! What the machine asks the driver to do, and how port calls can fail.

use std::time::Duration;

use crate::ReserveRequest;
use crate::model::{OrderEvent, Outcome, ProductId, UserId};

/// The next thing the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'a> {
    /// Call [`Authenticator::authenticate`](crate::Authenticator)
    /// with the request's credentials; feed
    /// [`PurchaseMachine::handle_authenticated`](super::PurchaseMachine::handle_authenticated).
    Authenticate,
    /// The buyer is authenticated: find the sale's terms of `product`
    /// ([`StockStore::sale`](crate::StockStore), or a cache of its
    /// answers); feed
    /// [`PurchaseMachine::handle_sale`](super::PurchaseMachine::handle_sale).
    LoadSale {
        /// The product the request names.
        product: &'a ProductId,
    },
    /// Ask [`StockStore::known_sold_out`](crate::StockStore::known_sold_out)
    /// about this request: a local question (no I/O) whose `true` means the
    /// store already knows the reserve would answer `SoldOut`. Feed
    /// `handle_sold_out_checked`. Asked only for a request without an
    /// idempotency key whose sale is open and allows its quantity.
    CheckSoldOut(&'a ReserveRequest),
    /// Call [`RateLimiter::check`](crate::RateLimiter) for the buyer;
    /// feed `handle_rate_checked`.
    CheckRate {
        /// The buyer whose quota is charged.
        user: &'a UserId,
        /// How much to charge.
        cost: u32,
    },
    /// Call [`StockStore::reserve`](crate::StockStore); feed
    /// `handle_reserved`.
    Reserve(&'a ReserveRequest),
    /// The reserve's answer was lost: call
    /// [`StockStore::void`](crate::StockStore) with this request;
    /// feed `handle_voided`. If the void fails too, the driver must keep
    /// retrying it in the background: the attempt answers `Unavailable`,
    /// which promises the buyer owns nothing.
    Void(&'a ReserveRequest),
    /// [`HandOff::AwaitSink`] only: call
    /// [`OrderSink::submit`](crate::OrderSink) with this one event
    /// under the hand-off timeout; feed `handle_submitted`.
    Submit(&'a OrderEvent),
    /// Finished; nothing more to do.
    Done(&'a Outcome),
}

/// How a port call failed, as far as the machine cares. The driver logs
/// the underlying error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The port returned an error.
    Error,
    /// The port did not answer in time; the call may or may not have been
    /// applied.
    Timeout,
}

/// A result was fed that does not answer the pending action. The machine
/// is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the machine is waiting for {expected}, not {got}")]
pub struct StepError {
    /// The result the machine is waiting for.
    pub expected: &'static str,
    /// The result that was fed.
    pub got: &'static str,
}

/// When a purchase answers, relative to the order reaching the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HandOff {
    /// Answer 200 once the order is in the store's outbox (written in the
    /// same atomic step as the reservation). The relay delivers it to the
    /// sink in the background. One store round trip per purchase.
    #[default]
    Outbox,
    /// Also hand the order's `placed` event to the sink before answering:
    /// 200 once the sink acknowledged it; 202 (`Outcome::Accepted`) if the
    /// sink failed or did not answer within `timeout`. Either way the order
    /// stands and the relay delivers it; no unit is ever released because a
    /// sink failed.
    AwaitSink {
        /// Longest wait for the sink's acknowledgement.
        timeout: Duration,
    },
}

/// Tunables of the purchase flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineConfig {
    /// When a purchase answers relative to the sink.
    pub hand_off: HandOff,
    /// The `Retry-After` hint when a backend is unavailable.
    pub unavailable_retry_after: Duration,
    /// The rate-limit cost of one attempt.
    pub rate_cost: u32,
}

impl Default for MachineConfig {
    fn default() -> Self {
        Self {
            hand_off: HandOff::Outbox,
            unavailable_retry_after: Duration::from_secs(1),
            rate_cost: 1,
        }
    }
}
