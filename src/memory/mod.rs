//! In-memory implementations of all four ports (feature `memory`, on by
//! default): for tests, demos and single-process deployments.
//!
//! | port | type |
//! |---|---|
//! | [`StockStore`](crate::StockStore) | [`MemoryStockStore`]: one lock per product |
//! | [`RateLimiter`](crate::RateLimiter) | [`MemoryRateLimiter`]: keyed GCRA on `governor`, idle keys evicted |
//! | [`OrderSink`](crate::OrderSink) | [`MemoryOrderSink`]: a log you can read, drain or subscribe to |
//! | [`Authenticator`](crate::Authenticator) | [`StaticAuthenticator`]: a fixed token table |

mod auth;
mod options;
mod product;
mod rate;
mod sink;
mod stock;

pub use auth::StaticAuthenticator;
pub use options::MemoryOptions;
pub use rate::MemoryRateLimiter;
pub use sink::MemoryOrderSink;
pub use stock::MemoryStockStore;
