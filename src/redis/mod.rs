//! Redis backends (feature `redis`): [`RedisStockStore`] and
//! [`RedisRateLimiter`], on standalone Redis or Redis Cluster.
//!
//! Redis is the shared state that lets many app instances sell the same
//! stock without overselling and throttle the same buyer together.
//!
//! * Every mutating [`StockStore`](crate::StockStore) operation is ONE Lua
//!   script (`backends/redis/*.lua`, embedded at compile time), run by SHA
//!   (`EVALSHA`) with a fallback to loading it when the server has lost its
//!   script cache (after a restart or `SCRIPT FLUSH`). Reads are one atomic
//!   command each.
//! * Each product keeps its own outbox of order events in its slot, written
//!   by the same script as the state change; a purchase is one round trip.
//! * All keys of one product share one hash tag, `{prefix|product}`, so every
//!   script touches a single slot and the same code runs on Redis Cluster.
//! * The rate limiter is GCRA in one script per check, on the server's clock
//!   (`TIME`), so every app instance agrees on "now".
//!
//! The key layout is documented in `docs/backends.md`. Driver types never
//! appear in this module's public signatures: every failure is a
//! [`crate::Error::Backend`] with backend `"redis"`.
//!
//! ```no_run
//! # async fn demo() -> flashsale::Result<()> {
//! use flashsale::RateQuota;
//! use flashsale::redis::{RedisOptions, RedisRateLimiter, RedisStockStore};
//!
//! // One standalone server.
//! let stock = RedisStockStore::connect("redis://127.0.0.1:6379", "shop").await?;
//! let limiter =
//!     RedisRateLimiter::connect("redis://127.0.0.1:6379", "shop", "10/1m".parse()?).await?;
//!
//! // A cluster, with explicit timeouts.
//! let opts = RedisOptions::cluster(["redis://127.0.0.1:7101", "redis://127.0.0.1:7102"])
//!     .prefix("shop")
//!     .response_timeout(std::time::Duration::from_millis(500));
//! let stock = RedisStockStore::with_options(opts).await?;
//! # Ok(()) }
//! ```

mod codec;
mod conn;
mod durability;
mod index;
mod keys;
mod options;
mod rate;
mod scripts;
mod stock;

pub use durability::Durability;
pub use options::{RedisOptions, RedisTarget};
pub use rate::RedisRateLimiter;
pub use stock::RedisStockStore;

use crate::error::Error;

/// The backend name in this backend's errors.
pub(crate) const BACKEND: &str = "redis";

/// Maps a driver error into the crate's error.
pub(crate) fn backend_err(operation: &'static str) -> impl FnOnce(::redis::RedisError) -> Error {
    move |e| Error::backend(BACKEND, operation, e)
}

/// A reply that does not have the shape the script promises.
pub(crate) fn bad_reply(operation: &'static str, what: impl std::fmt::Display) -> Error {
    Error::backend(BACKEND, operation, format!("unexpected reply: {what}"))
}
