//! The ports: the four the engine runs against, and the one an order
//! worker hands events to.
//!
//! Each trait is `async` (via `async-trait`, so `Arc<dyn StockStore>` works
//! for backends chosen at run time), `Send + Sync`, and documents the
//! contract every implementation must keep. The conformance suites in
//! [`testing`](crate::testing) (feature `test-util`) enforce those contracts
//! for every backend.
//!
//! Errors: every method returns [`crate::Error`] only for infrastructure
//! failures. Business answers (sold out, limited, rejected) are values.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{
    AuthRejection, CancelOutcome, ConfirmOutcome, Credentials, OrderEvent, OrderId, Principal,
    ProductId, RateDecision, Reservation, ReserveOutcome, ReserveRequest, Sale, SaleWrite,
    StockLevels, Timestamp, VoidOutcome,
};

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

/// What an order worker (such as `kafka::OrderWorker`) hands decoded
/// order events to, in batches, in the
/// order they were read (one order's events arrive in `seq` order, as
/// they sit on one partition).
///
/// Delivery is at least once: the same events can come again (after a
/// rebalance, a crash, a dead-letter replay), so `handle` must be
/// idempotent. It is called with one batch at a time, never
/// concurrently by one worker.
///
/// Return `Ok` only when every event is processed durably. An error
/// whose [`is_transient`](crate::Error::is_transient) is true (a backend or a
/// timeout: the database is down) is retried with backoff for as long as
/// it lasts, with consumption paused; it never dead-letters an event. Any
/// other error is permanent: the worker hands the batch's events over one
/// at a time, and dead-letters those that fail permanently on their own.
///
/// So return a permanent error for what retrying cannot fix (a value the
/// database refuses): a transient error that never clears stalls the
/// worker until it is fixed or the worker is stopped.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Processes `events` (never empty).
    async fn handle(&self, events: &[OrderEvent]) -> Result<()>;
}

#[async_trait]
impl<T: EventHandler + ?Sized> EventHandler for Arc<T> {
    async fn handle(&self, events: &[OrderEvent]) -> Result<()> {
        (**self).handle(events).await
    }
}
