//! The four ports the engine runs against.
//!
//! Each trait is `async` (via `async-trait`, so `Arc<dyn StockStore>` works
//! for backends chosen at run time), `Send + Sync`, and documents the
//! contract every implementation must keep. The conformance suites in
//! [`testing`](crate::testing) (feature `test-util`) enforce those contracts
//! for every backend.
//!
//! Errors: every method returns [`crate::Error`] only for infrastructure
//! failures. Business answers (sold out, limited, rejected) are values.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{
    AuthRejection, Credentials, IdempotencyKey, Order, OrderId, Principal, ProductId, Quantity,
    Receipt, Reservation, ReservationState, Sale, StockLevels, Timestamp, UserId,
};

/// One atomic reservation attempt, as the state machine asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    /// The id the reservation (and its order) will carry. Reserving the same
    /// id twice answers [`ReserveOutcome::Duplicate`] with the first.
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
    /// How long the reservation lives when the sale has no hold of its own:
    /// the window between reserving and committing. If the process dies in
    /// between, the sweeper returns the units once it has passed.
    pub pending_ttl: Duration,
}

impl ReserveRequest {
    /// The `Held` reservation this request makes when it succeeds, given
    /// the sale's hold TTL (`None`: a sale without holds, which uses
    /// [`pending_ttl`](Self::pending_ttl)).
    pub fn to_reservation(&self, sale_hold: Option<Duration>) -> Reservation {
        Reservation {
            order_id: self.order_id,
            product: self.product.clone(),
            user: self.user.clone(),
            quantity: self.quantity,
            idempotency_key: self.idempotency_key.clone(),
            created_at: self.now,
            expires_at: self
                .now
                .saturating_add(sale_hold.unwrap_or(self.pending_ttl)),
            awaits_confirmation: sale_hold.is_some(),
            state: ReservationState::Held,
        }
    }
}

/// The answer to [`StockStore::reserve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Units set aside; the new reservation (state `Held`).
    Reserved(Reservation),
    /// The idempotency key (or the order id) already names a reservation;
    /// here it is, unchanged. Nothing new was reserved.
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

/// The answer to [`StockStore::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The hold is now sold for good.
    Committed,
    /// It was already committed (commit is idempotent).
    AlreadyCommitted,
    /// The hold was cancelled or had expired; it can no longer be committed.
    NotHeld(ReservationState),
    /// No such reservation.
    Unknown,
}

/// Why a hold is being released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseReason {
    /// The purchase failed before the buyer was told it succeeded (e.g. the
    /// order sink failed): the reservation is deleted together with its
    /// idempotency key, so a retry with the same key starts afresh.
    Aborted,
    /// The buyer (or an admin) cancelled the hold: the reservation stays on
    /// record as `Cancelled` and its idempotency key keeps answering.
    Cancelled,
}

/// The answer to [`StockStore::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The units went back on sale.
    Released,
    /// It had already been cancelled or had expired (release is idempotent).
    AlreadyReleased(ReservationState),
    /// It is committed; committed units are never released.
    AlreadyCommitted,
    /// No such reservation (never made, or already aborted).
    Unknown,
}

/// The answer to [`StockStore::create_sale`].
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

/// Owns sales, stock and reservations.
///
/// # Contract
///
/// * [`reserve`](StockStore::reserve) is ONE atomic step over the
///   idempotency key, the sale window, the per-order maximum, the per-user
///   cap and the stock: it is applied entirely or not at all, and concurrent
///   calls never sell a unit twice.
/// * At every moment, for every product,
///   `total == available + held + committed` (see [`StockLevels`]).
/// * A buyer's held + committed units never exceed the sale's per-user cap.
/// * [`commit`](StockStore::commit) and [`release`](StockStore::release) are
///   idempotent; a cancelled or expired hold can never be committed, and a
///   committed one never released.
/// * A hold past its `expires_at` counts as expired: `commit` refuses it even
///   before the sweeper ([`expire`](StockStore::expire)) has run.
#[async_trait]
pub trait StockStore: Send + Sync + 'static {
    /// Creates the sale, or replaces an existing sale's terms and total
    /// stock (a restock), keeping its holds and commitments.
    async fn create_sale(&self, sale: &Sale) -> Result<SaleWrite>;

    /// The sale's terms, if it exists.
    async fn sale(&self, product: &ProductId) -> Result<Option<Sale>>;

    /// Reserves units atomically; see the trait's contract.
    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome>;

    /// Turns a hold into a sale, if it is still held and not past its expiry
    /// at `now`.
    async fn commit(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<CommitOutcome>;

    /// Returns a hold's units to the stock.
    async fn release(
        &self,
        product: &ProductId,
        order: &OrderId,
        reason: ReleaseReason,
    ) -> Result<ReleaseOutcome>;

    /// Looks a reservation up by its order id (any product).
    async fn reservation(&self, order: &OrderId) -> Result<Option<Reservation>>;

    /// Releases up to `max` holds whose `expires_at <= now` and returns them
    /// (state `Expired`). The servers' sweeper calls it about once a second.
    async fn expire(&self, now: Timestamp, max: usize) -> Result<Vec<Reservation>>;

    /// The product's live stock levels, if the sale exists.
    async fn snapshot(&self, product: &ProductId) -> Result<Option<StockLevels>>;

    /// Checks the backend answers (for readiness probes).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// The answer to [`RateLimiter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Admitted; the cost was charged.
    Allowed,
    /// Not admitted; nothing was charged.
    Limited {
        /// When an attempt of the same cost will next be admitted.
        retry_after: Duration,
    },
}

/// Admits or refuses attempts per key (a buyer, an IP, a product).
///
/// # Contract
///
/// GCRA semantics for a quota of `count` per `period`: a key idle for long
/// enough may make `count` attempts at once, after which attempts are
/// admitted at the steady rate of one per `period / count`, with no bursts at
/// window edges. A refused attempt is not charged and says how long until
/// the same cost would be admitted. Keys are independent.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Charges `cost` (at least 1) to `key` if the quota allows.
    async fn check(&self, key: &str, cost: u32) -> Result<RateDecision>;

    /// Checks the backend answers (for readiness probes).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// Where accepted orders go (Kafka in production).
///
/// # Contract
///
/// [`submit`](OrderSink::submit) returns only once the order is durable in
/// the sink (for Kafka: acknowledged by all in-sync replicas). It is
/// idempotent by [`OrderId`]: submitting the same order twice stores it at
/// most once, or at least lets consumers drop the copy by its id.
#[async_trait]
pub trait OrderSink: Send + Sync + 'static {
    /// Makes `order` durable.
    async fn submit(&self, order: &Order) -> Result<Receipt>;

    /// Checks the backend answers (for readiness probes).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// Turns credentials into a [`Principal`], or a typed rejection.
///
/// # Contract
///
/// Never accepts a token it cannot verify; returns `Ok(Err(_))` for bad
/// credentials (a client problem, `401`) and `Err(_)` only when it could not
/// decide (e.g. a key server is down, `503`).
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Verifies `credentials`.
    async fn authenticate(
        &self,
        credentials: &Credentials,
    ) -> Result<std::result::Result<Principal, AuthRejection>>;
}
