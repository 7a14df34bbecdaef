//! What the machine asks the driver to do, and how port calls can fail.

use std::time::Duration;

use crate::model::{Order, OrderId, Outcome, ProductId, UserId};
use crate::ports::{ReleaseReason, ReserveRequest};

/// The next thing the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'a> {
    /// Call [`Authenticator::authenticate`](crate::ports::Authenticator)
    /// with the request's credentials; feed
    /// [`PurchaseMachine::handle_authenticated`](super::PurchaseMachine::handle_authenticated).
    Authenticate,
    /// Call [`RateLimiter::check`](crate::ports::RateLimiter) for the buyer;
    /// feed `handle_rate_checked`.
    CheckRate {
        /// The buyer whose quota is charged.
        user: &'a UserId,
        /// How much to charge.
        cost: u32,
    },
    /// Call [`StockStore::reserve`](crate::ports::StockStore); feed
    /// `handle_reserved`.
    Reserve(&'a ReserveRequest),
    /// Call [`OrderSink::submit`](crate::ports::OrderSink); feed
    /// `handle_submitted`.
    Submit(&'a Order),
    /// Call [`StockStore::commit`](crate::ports::StockStore) with the
    /// current time (a hold that lapsed while the order was being submitted
    /// must not be committed); feed `handle_committed`.
    Commit {
        /// The product.
        product: &'a ProductId,
        /// The reservation.
        order_id: &'a OrderId,
    },
    /// Call [`StockStore::release`](crate::ports::StockStore); feed
    /// `handle_released`.
    Release {
        /// The product.
        product: &'a ProductId,
        /// The reservation.
        order_id: &'a OrderId,
        /// Why.
        reason: ReleaseReason,
    },
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

/// Tunables of the purchase flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineConfig {
    /// How long a reservation of a sale without holds may stay uncommitted
    /// before the sweeper returns it (covers a crash between reserve and
    /// commit).
    pub pending_ttl: Duration,
    /// The `Retry-After` hint when a backend is unavailable.
    pub unavailable_retry_after: Duration,
    /// The rate-limit cost of one attempt.
    pub rate_cost: u32,
}

impl Default for MachineConfig {
    fn default() -> Self {
        Self {
            pending_ttl: Duration::from_secs(30),
            unavailable_retry_after: Duration::from_secs(1),
            rate_cost: 1,
        }
    }
}
