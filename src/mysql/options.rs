//! [`MySqlOptions`]: how a MySQL backend connects, batches and retries.

use std::time::Duration;

#[cfg(doc)]
use super::MySqlStockStore;
use crate::error::{Error, Result};

/// How to connect a MySQL backend. Start with [`MySqlOptions::new`]; the
/// defaults suit production.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct MySqlOptions {
    pub(crate) url: String,
    pub(crate) prefix: String,
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
    pub(crate) record_ttl: Duration,
}

impl MySqlOptions {
    /// The default table prefix.
    pub const DEFAULT_PREFIX: &'static str = "flashsale_";
    /// The default retention of finished reservations and their
    /// idempotency keys: 24 hours, as the other stores'.
    pub const DEFAULT_RECORD_TTL: Duration = Duration::from_secs(24 * 3600);

    /// The database at `url`: `mysql://user[:password]@host[:port]/database`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: Self::DEFAULT_PREFIX.to_owned(),
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
            record_ttl: Self::DEFAULT_RECORD_TTL,
        }
    }

    /// The table prefix (default `flashsale_`): every table this backend
    /// creates and uses is named `<prefix><table>`. Stores with different
    /// prefixes share nothing. At most 32 bytes of `A-Z a-z 0-9 _`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
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

    /// How long finished reservations (sold, confirmed, cancelled,
    /// expired, voided) and their idempotency keys are kept after they
    /// finish (default [`DEFAULT_RECORD_TTL`](Self::DEFAULT_RECORD_TTL)),
    /// by the times the store is given: a key replays its purchase at least
    /// that long. The sweeper's [`expire`](crate::StockStore::expire) then
    /// deletes them, except one whose events the relay has not delivered
    /// yet. Only used by [`MySqlStockStore`].
    pub fn record_ttl(mut self, d: Duration) -> Self {
        self.record_ttl = d;
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
        let p = &self.prefix;
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
