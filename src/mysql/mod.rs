//! MySQL / MariaDB backend (feature `mysql`): [`MySqlStockStore`] and
//! [`MySqlOrderTable`], on `sqlx` (MySQL protocol; MariaDB ≥ 10.6, MySQL 8).
//!
//! Every [`StockStore`](crate::StockStore) operation is one `READ
//! COMMITTED` transaction, run again on deadlocks and lock-wait timeouts;
//! concurrent reserves of one product are batched into one transaction
//! ([`MySqlOptions::batching`]); relays claim the outbox with `FOR UPDATE
//! SKIP LOCKED`. [`MySqlOrderTable`] is the `orders` projection the order
//! worker folds events into. The tables, every statement and the batching
//! protocol are described in `docs/backends.md` ("MySQL / MariaDB").
//! Every failure is a [`crate::Error::Backend`] with backend `"mysql"`.
//!
//! ```no_run
//! # async fn demo() -> flashsale::Result<()> {
//! use flashsale::mysql::{MySqlOptions, MySqlStockStore};
//!
//! let stock = MySqlStockStore::connect("mysql://root@127.0.0.1:3306/test", "shop_").await?;
//! // Creates or upgrades the tables (once per deployment, or at every start).
//! stock.migrate().await?;
//!
//! // Everything configurable.
//! let opts = MySqlOptions::new("mysql://root@127.0.0.1:3306/test")
//!     .prefix("shop_")
//!     .max_connections(32)
//!     .acquire_timeout(std::time::Duration::from_secs(2))
//!     // Hot-row batching (the default) with its bounds; `false` turns it off.
//!     .batching(true)
//!     .batch_max(128)
//!     .batch_wait(std::time::Duration::ZERO);
//! let stock = MySqlStockStore::with_options(opts).await?;
//! # Ok(()) }
//! ```

mod batch;
mod codec;
mod migrate;
mod options;
mod orders;
mod pool;
mod retry;
mod sql;
mod stock;
mod tx;

pub use batch::BatchStats;
pub use options::MySqlOptions;
pub use orders::{ApplyStats, MySqlOrderTable, OrderRow};
pub use stock::MySqlStockStore;

use crate::error::Error;

/// The backend name in this backend's errors.
pub(crate) const BACKEND: &str = "mysql";

/// Maps a driver error into the crate's error.
pub(crate) fn backend_err(operation: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| Error::backend(BACKEND, operation, e)
}

/// A row that does not have the shape the schema promises (named as the
/// other backends name a reply they cannot decode).
pub(crate) fn bad_reply(operation: &'static str, what: impl std::fmt::Display) -> Error {
    Error::backend(BACKEND, operation, format!("unexpected row: {what}"))
}
