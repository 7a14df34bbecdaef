//! # flashsale
//!
//! An embeddable engine for flash sales and ticket drops: thousands of
//! buyers hit `POST /buy/{productId}` at the same instant for a few hundred
//! units. It never oversells, throttles each buyer, authenticates callers,
//! and hands every accepted order to a durable sink before saying yes.
//!
//! The crate is built in three layers:
//!
//! * [`machine`]: the purchase state machine. Pure and deterministic: no
//!   I/O, no async, no clock reads. It is told what happened and says what
//!   to do next.
//! * The ports: four async traits ([`StockStore`], [`RateLimiter`],
//!   [`OrderSink`], [`Authenticator`]) with one contract each, and
//!   backends behind cargo features (`memory`, on by default; [`redis`],
//!   [`mysql`], [`kafka`]). A fifth, [`EventHandler`], is what an order
//!   worker hands consumed events to. Each trait is `async` (via
//!   `async-trait`, so `Arc<dyn StockStore>` works for backends chosen at
//!   run time) and returns an [`Error`] only for infrastructure failures:
//!   business answers (sold out, limited, rejected) are values.
//! * [`Engine`]: the async driver that runs the machine against the ports,
//!   with per-call timeouts, a sale cache, a hold sweeper and the outbox
//!   relay.
//!
//! The domain values ([`Sale`], [`ProductId`], [`Quantity`], ...) check
//! their value on construction and cannot hold a bad one; constructors
//! return an [`InvalidInput`] that names the field, so the HTTP layer can
//! answer `400` precisely. They, the ports, the engine, [`Error`] and the
//! clocks live at the crate root; backends and adapters in their modules.
//!
//! The engine records [metrics] (purchases by outcome,
//! latencies, port failures, stock, relay backlog and lag) through the
//! `metrics` facade; the application installs the exporter it wants, and
//! without one the recordings cost next to nothing.
//!
//! ```
//! use std::sync::Arc;
//! use flashsale::{Engine, PurchaseRequest, ProductId, Quantity, Sale, Outcome, Credentials};
//! use flashsale::memory::{MemoryStockStore, MemoryRateLimiter, MemoryOrderSink, StaticAuthenticator};
//! use flashsale::{Principal, UserId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), flashsale::Error> {
//! let auth = StaticAuthenticator::new()
//!     .with_token("alice-token", Principal::user(UserId::new("alice")?));
//! let sink = Arc::new(MemoryOrderSink::new());
//! let engine = Engine::builder()
//!     .stock_store(Arc::new(MemoryStockStore::new()))
//!     .rate_limiter(Arc::new(MemoryRateLimiter::per_second(10)?))
//!     .order_sink(sink.clone())
//!     .authenticator(Arc::new(auth))
//!     .build()?;
//!
//! let tickets = ProductId::new("concert-2026")?;
//! engine.create_sale(&Sale::builder(tickets.clone(), 300).per_user_limit(4).build()?).await?;
//!
//! let req = PurchaseRequest::new(tickets, Quantity::new(2)?);
//! let outcome = engine.purchase(&Credentials::bearer("alice-token"), req).await;
//! assert!(matches!(outcome, Outcome::Purchased(_)));
//! // The order is in the store's outbox; the relay (`spawn_relay` in a
//! // server) hands it to the sink.
//! engine.drain_outbox().await?;
//! assert_eq!(sink.orders().len(), 1);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![forbid(unsafe_code)]

mod clock;
mod engine;
mod error;
mod fast_hash;
pub mod http;
#[cfg(feature = "jwt")]
pub mod jwt;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod machine;
#[cfg(feature = "memory")]
pub mod memory;
pub mod metrics;
mod model;
#[cfg(feature = "mysql")]
pub mod mysql;
mod ports;
#[cfg(feature = "redis")]
pub mod redis;
mod sold_out_cache;
#[cfg(feature = "test-util")]
pub mod testing;

// One public path per type: the core (domain values, ports, engine, errors,
// clocks) lives at the crate root; backends and adapters in their modules.
pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{Engine, EngineBuilder, EngineConfig, ProductView, Readiness, RelayConfig};
pub use error::{BoxError, Error, Result};
pub use model::{
    AuthRejection, CancelOutcome, ConfirmOutcome, Credentials, EventId, EventType, IdempotencyKey,
    InvalidInput, Order, OrderEvent, OrderId, OrderStatus, Outcome, Principal, ProductId,
    PurchaseRequest, PurchaseSummary, Quantity, RateDecision, RateQuota, Reservation,
    ReservationState, ReserveOutcome, ReserveRequest, Sale, SaleBuilder, SaleWrite, StockLevels,
    Timestamp, UserId, VoidOutcome,
};
pub use ports::{
    Authenticator, DEFAULT_REPLAY_CLAIM_TTL, EventHandler, OrderSink, RateLimiter, StockStore,
};
pub use sold_out_cache::SoldOutCache;

/// The README's code blocks, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
