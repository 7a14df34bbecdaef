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
    AuthRejection, Credentials, IdempotencyKey, OrderEvent, OrderId, Principal, ProductId,
    Quantity, Reservation, ReservationState, Sale, StockLevels, Timestamp, UserId,
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

    /// The tombstone [`StockStore::void`] leaves when this request's
    /// reserve never ran: state `Voided`, owning nothing.
    pub fn to_tombstone(&self) -> Reservation {
        Reservation {
            state: ReservationState::Voided,
            ..self.to_reservation(None)
        }
    }
}

/// The answer to [`StockStore::reserve`].
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

/// The answer to [`StockStore::confirm`].
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

/// The answer to [`StockStore::cancel`].
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

/// The answer to [`StockStore::void`].
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

/// How long stores keep a same-request replay's claim on the order it was
/// answered with, by default (15 min): longer than the engine's default
/// [`void_retry_for`](crate::EngineConfig::void_retry_for) (10 min) plus
/// its port timeouts, so every void that can still arrive finds the claim.
pub const DEFAULT_REPLAY_CLAIM_TTL: Duration = Duration::from_secs(15 * 60);

/// Owns sales, stock, reservations and the outbox of order events.
///
/// # Contract
///
/// * [`reserve`](StockStore::reserve) is ONE atomic step over the
///   idempotency key, the sale window, the per-order maximum, the per-user
///   cap, the stock, the reservation and its `placed` event in the outbox:
///   it is applied entirely or not at all, and concurrent calls never sell a
///   unit twice. The idempotency key is checked before the window, the
///   per-order maximum, the cap and the stock, so a replay always wins.
/// * A sale without holds sells at once (`Committed`). A hold sale's
///   reservation is `Held` until [`confirm`](StockStore::confirm),
///   [`cancel`](StockStore::cancel) or [`expire`](StockStore::expire); each
///   appends its event (`confirmed`, `cancelled`, `expired`) in the same
///   atomic step as its state change. A hold past its `expires_at` counts as
///   expired even before the sweeper has run.
/// * [`void`](StockStore::void) undoes a reserve whose answer was lost: the
///   units come back and a `voided` event follows the `placed` one; if the
///   reserve never ran, a tombstone makes a late one reserve nothing. An
///   order a replay was handed stands until every request that may answer
///   with it has voided (see [`ReserveOutcome::Duplicate`]). A replay's
///   claim is kept for [`replay_claim_ttl`](StockStore::replay_claim_ttl),
///   outside the reservation and its events, so neither grows with the
///   number of replays.
/// * At every moment, for every product,
///   `total == available + held + committed` (see [`StockLevels`]), and a
///   buyer's held + committed units never exceed the per-user cap.
/// * Every unit held or sold belongs to a reservation whose `placed` event
///   is in the outbox (or was acknowledged); every return of units to sale
///   appends the event that says why.
/// * The outbox: [`claim`](StockStore::claim) hands out pending events under
///   a lease (claimed events are invisible to other claims until the lease
///   lapses) and never hands out an order's later event while an earlier one
///   of the same order is leased to someone else; within one claim an
///   order's events come in `seq` order. [`ack`](StockStore::ack) removes
///   events for good. The cost of a claim follows the pending events, not
///   the number of products.
#[async_trait]
pub trait StockStore: Send + Sync + 'static {
    /// Creates the sale, or replaces an existing sale's terms and total
    /// stock (a restock), keeping its holds and commitments.
    async fn create_sale(&self, sale: &Sale) -> Result<SaleWrite>;

    /// The sale's terms, if it exists.
    async fn sale(&self, product: &ProductId) -> Result<Option<Sale>>;

    /// Reserves units atomically; see the trait's contract.
    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome>;

    /// Whether this instance already knows, without any I/O, that
    /// [`reserve`](Self::reserve) of `req` would answer
    /// [`ReserveOutcome::SoldOut`]. The engine asks before it charges the
    /// rate limiter, so a `true` spares both the limiter's and the store's
    /// round trips.
    ///
    /// Must be cheap and never block on I/O. Must answer `false` for a
    /// request with an idempotency key (its key may name a finished
    /// purchase, whose replay wins) and once this instance knows units came
    /// back; units returned elsewhere may stay unseen only for a bounded
    /// time. The default knows nothing; [`SoldOutCache`](crate::SoldOutCache)
    /// answers from the sell-outs it saw, for its TTL.
    fn known_sold_out(&self, req: &ReserveRequest) -> bool {
        let _ = req;
        false
    }

    /// How long a replay's claim on an order is kept
    /// ([`ReserveOutcome::Duplicate`]): a void of that replay arriving later
    /// no longer finds it. The engine refuses to build unless its
    /// [`void_retry_for`](crate::EngineConfig::void_retry_for) plus two port
    /// timeouts is shorter.
    fn replay_claim_ttl(&self) -> Duration {
        DEFAULT_REPLAY_CLAIM_TTL
    }

    /// Turns a hold into a sale, if it is still held and not past its expiry
    /// at `now`; appends `confirmed`.
    async fn confirm(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<ConfirmOutcome>;

    /// Returns a hold's units to the stock, if it is still held and not
    /// past its expiry at `now`; appends `cancelled`.
    async fn cancel(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<CancelOutcome>;

    /// Undoes `req`'s reserve, whose answer was lost (a timeout, a dropped
    /// connection): see [`VoidOutcome`]. Only the request that made the
    /// reserve may void it; `now` stamps the `voided` event.
    async fn void(&self, req: &ReserveRequest, now: Timestamp) -> Result<VoidOutcome>;

    /// Looks a reservation up by its order id (any product).
    async fn reservation(&self, order: &OrderId) -> Result<Option<Reservation>>;

    /// Releases up to `max` holds whose `expires_at <= now`, appending an
    /// `expired` event for each, and returns them (state `Expired`). The
    /// servers' sweeper calls it about once a second.
    async fn expire(&self, now: Timestamp, max: usize) -> Result<Vec<Reservation>>;

    /// The product's live stock levels, if the sale exists.
    async fn snapshot(&self, product: &ProductId) -> Result<Option<StockLevels>>;

    /// Claims up to `max` pending outbox events that are not leased at
    /// `now`, leasing them until `now + lease`. An order's events come in
    /// `seq` order.
    async fn claim(&self, now: Timestamp, max: usize, lease: Duration) -> Result<Vec<OrderEvent>>;

    /// Removes delivered events from the outbox (idempotent; unknown or
    /// already acknowledged events are ignored).
    async fn ack(&self, events: &[OrderEvent]) -> Result<()>;

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

/// Where order events go (Kafka in production).
///
/// # Contract
///
/// [`submit`](OrderSink::submit) returns `Ok` only once EVERY event of the
/// batch is durable in the sink (for Kafka: acknowledged with `acks=all` by
/// an idempotent producer); an error means some may not be, and the whole
/// batch will be submitted again. Events of one order are written in the
/// order given. Submitting an event twice is allowed: consumers dedupe by
/// [`EventId`](crate::model::EventId).
///
/// An event may become durable after `submit` returned an error or was
/// abandoned (its future dropped, e.g. on the relay's submit timeout) only
/// within [`delivery_timeout`](OrderSink::delivery_timeout) of that.
#[async_trait]
pub trait OrderSink: Send + Sync + 'static {
    /// Makes every event of `events` durable.
    async fn submit(&self, events: &[OrderEvent]) -> Result<()>;

    /// Checks the backend answers (for readiness probes).
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    /// The longest an event given to [`submit`](OrderSink::submit) may
    /// still become durable in the sink after that call returned an error
    /// or was abandoned: `None` (the default) when nothing outlives the
    /// call, `Some(Duration::MAX)` when there is no bound. A sink that
    /// queues events and delivers them in the background reports its
    /// queue's bound (the Kafka sink: librdkafka's `delivery.timeout.ms`).
    ///
    /// The relay counts it as part of every pass: such a late delivery
    /// must land while the relay still holds the batch's lease, or it could
    /// reach the sink after another relay delivered the same orders' later
    /// events. [`EngineBuilder::build`](crate::engine::EngineBuilder::build)
    /// refuses a lease too short for it, and a kept batch is resent only
    /// with that much lease left.
    fn delivery_timeout(&self) -> Option<Duration> {
        None
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
