//! MySQL / MariaDB backend (feature `mysql`): [`MySqlStockStore`] and
//! [`MySqlOrderTable`], on `sqlx` (MySQL protocol; MariaDB ≥ 10.6, MySQL 8).
//!
//! A relational home for sales, reservations and the outbox of order
//! events, shared by every app instance that uses the same database and
//! table prefix.
//!
//! * Every [`StockStore`](crate::StockStore) operation is ONE transaction
//!   at `READ COMMITTED`. `reserve` writes, in this order, the per-user
//!   count (a guarded update of a (product, buyer) row), the reservation
//!   row (whose unique key makes one idempotency key yield one
//!   reservation), the `placed` event in the outbox, and last the sale's
//!   hot stock row, so that row's lock is held as briefly as possible.
//! * Hot-row batching (on by default, [`MySqlOptions::batching`]):
//!   concurrent reserves of one product in one process are coalesced into
//!   one transaction with one update of the stock row for the whole batch
//!   and multi-row inserts of reservations and events; each request still
//!   gets its own exact answer, first come, first served.
//!   [`MySqlStockStore::batch_stats`] says how much batching happened.
//! * Deadlocks (1213), lock-wait timeouts (1205) and snapshot conflicts
//!   (1020) roll the transaction back and run it again, a bounded number of
//!   times ([`MySqlOptions::max_retries`]).
//! * The relay claims outbox rows with `FOR UPDATE SKIP LOCKED`, so relays
//!   on many instances never wait for each other; the sweeper finds due
//!   holds through an index on `(state, expires_at)`, at most `max` per
//!   call.
//! * Queries are built at run time (no database is needed to compile the
//!   crate). The schema lives in `backends/mysql/migrations/*.sql`,
//!   embedded with `sqlx::migrate!`, and is applied by an explicit call to
//!   [`MySqlStockStore::migrate`] (idempotent; safe to run from several
//!   instances at once). Table names carry a configurable prefix
//!   ([`MySqlOptions::table_prefix`]) so the store can share a database.
//!
//! * [`MySqlOrderTable`] is the read side downstream of the sink: the
//!   `orders` projection the order worker folds consumed order events into
//!   (one row per order, its status only ever moving forward; duplicates
//!   and late events change nothing), with exact applied / ignored counts
//!   ([`ApplyStats`]). It shares the migrations, and may share the prefix,
//!   of the stock store.
//!
//! Driver types never appear in this module's public signatures: every
//! infrastructure failure is a [`crate::Error::Backend`] with backend
//! `"mysql"` (an event the order table cannot store is a
//! [`crate::Error::Invalid`]; see [`MySqlOrderTable::apply`]).
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
//!     .table_prefix("shop_")
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
mod migrate;
mod orders;
mod pool;
mod retry;
mod stock;

use std::time::Duration;

pub use batch::BatchStats;
pub use orders::{ApplyStats, MySqlOrderTable, OrderRow};
pub use stock::MySqlStockStore;

use crate::error::{Error, Result};

/// How to connect a MySQL backend. Start with [`MySqlOptions::new`]; the
/// defaults suit production.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct MySqlOptions {
    pub(crate) url: String,
    pub(crate) table_prefix: String,
    pub(crate) max_connections: u32,
    pub(crate) acquire_timeout: Duration,
    pub(crate) lock_wait_timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) lazy: bool,
    pub(crate) batching: bool,
    pub(crate) batch_max: usize,
    pub(crate) batch_wait: Duration,
    pub(crate) batch_lanes: usize,
    pub(crate) replay_claim_ttl: Duration,
}

impl MySqlOptions {
    /// The default table prefix.
    pub const DEFAULT_PREFIX: &'static str = "flashsale_";

    /// The database at `url`: `mysql://user[:password]@host[:port]/database`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            table_prefix: Self::DEFAULT_PREFIX.to_owned(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            lock_wait_timeout: Duration::from_secs(5),
            max_retries: 20,
            lazy: false,
            batching: true,
            batch_max: 128,
            batch_wait: Duration::ZERO,
            batch_lanes: 1,
            replay_claim_ttl: crate::DEFAULT_REPLAY_CLAIM_TTL,
        }
    }

    /// The table prefix (default `flashsale_`): every table this backend
    /// creates and uses is named `<prefix><table>`. Stores with different
    /// prefixes share nothing. At most 32 bytes of `A-Z a-z 0-9 _`.
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }

    /// Most connections in the pool (default 16). Every operation holds
    /// one connection for the length of its transaction.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Longest wait for a connection from the pool, including making a new
    /// one (default 5 s): a backstop. For purchases the engine's own,
    /// shorter `port_timeout` is the bound that matters.
    pub fn acquire_timeout(mut self, d: Duration) -> Self {
        self.acquire_timeout = d;
        self
    }

    /// The session's `innodb_lock_wait_timeout`, rounded up to whole
    /// seconds (default 5 s). A transaction that waits longer for a row
    /// lock is rolled back and retried.
    pub fn lock_wait_timeout(mut self, d: Duration) -> Self {
        self.lock_wait_timeout = d;
        self
    }

    /// How often one operation is run again after a deadlock, a lock-wait
    /// timeout or a snapshot conflict before its error is returned
    /// (default 20).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Do not connect until the first call (default: connect, and fail, at
    /// construction). A lazy store starts even while the database is down;
    /// its calls fail until it answers.
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    /// Hot-row batching of `reserve` (default on): concurrent reserves of
    /// one product in this process are coalesced into one transaction, with
    /// one update of the sale's stock row for the whole batch and multi-row
    /// inserts of reservations and `placed` events. Every request still
    /// gets its own exact answer, as if the batch's requests had run one
    /// after the other in arrival order (first come, first served). `false`
    /// runs every reserve in its own transaction.
    pub fn batching(mut self, on: bool) -> Self {
        self.batching = on;
        self
    }

    /// Most reserves in one batch (default 128; at most
    /// [`MAX_BATCH`](Self::MAX_BATCH)).
    pub fn batch_max(mut self, n: usize) -> Self {
        self.batch_max = n;
        self
    }

    /// Longest wait for a batch to fill before it runs (default zero: a
    /// batch takes whatever queued while the previous one ran, which is
    /// what batches under load). At most one second.
    pub fn batch_wait(mut self, d: Duration) -> Self {
        self.batch_wait = d;
        self
    }

    /// Most batches of one product in flight at once in this process
    /// (default 1: one product's batches run one after the other, each
    /// taking whatever queued meanwhile). More lanes run concurrent
    /// transactions, each on its own connection, that meet only at the hot
    /// stock row; they overlap their other statements but make smaller
    /// batches, which on a small server (2 cores, docs/performance.md)
    /// costs more than it gains.
    pub fn batch_lanes(mut self, n: usize) -> Self {
        self.batch_lanes = n;
        self
    }

    /// How long a same-request replay's claim on the order it was answered
    /// with is kept (default
    /// [`DEFAULT_REPLAY_CLAIM_TTL`](crate::DEFAULT_REPLAY_CLAIM_TTL)),
    /// by the times the store is given; the sweeper deletes lapsed claims.
    /// Only used by [`MySqlStockStore`].
    pub fn replay_claim_ttl(mut self, d: Duration) -> Self {
        self.replay_claim_ttl = d;
        self
    }

    /// The largest [`batch_max`](Self::batch_max).
    pub const MAX_BATCH: usize = 1000;

    pub(crate) fn validate(&self) -> Result<()> {
        self.validate_connection()?;
        if self.batch_max == 0 || self.batch_max > Self::MAX_BATCH {
            return Err(Error::Config(format!(
                "mysql batch_max must be between 1 and {}",
                Self::MAX_BATCH
            )));
        }
        if self.batch_lanes == 0 {
            return Err(Error::Config("mysql batch_lanes must be at least 1".into()));
        }
        if self.batch_wait > Duration::from_secs(1) {
            return Err(Error::Config(
                "mysql batch_wait must be at most one second".into(),
            ));
        }
        Ok(())
    }

    /// Checks the options every MySQL backend uses (not the batching ones).
    pub(crate) fn validate_connection(&self) -> Result<()> {
        let p = &self.table_prefix;
        if p.len() > 32 || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Error::Config(format!(
                "mysql table prefix {p:?} must be at most 32 bytes of A-Z a-z 0-9 _"
            )));
        }
        if self.url.is_empty() {
            return Err(Error::Config("the mysql URL is empty".into()));
        }
        if self.max_connections == 0 {
            return Err(Error::Config(
                "mysql max_connections must be at least 1".into(),
            ));
        }
        if self.acquire_timeout.is_zero() || self.lock_wait_timeout.is_zero() {
            return Err(Error::Config("mysql timeouts must be above zero".into()));
        }
        Ok(())
    }
}

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
