//! [`MemoryOptions`]: how long a memory stock store keeps finished
//! reservations and replay claims.

use std::time::Duration;

#[cfg(doc)]
use super::MemoryStockStore;

/// How to build a [`MemoryStockStore`]: start with
/// [`MemoryOptions::new`] (the defaults [`MemoryStockStore::new`] uses) and
/// pass it to [`MemoryStockStore::with_options`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct MemoryOptions {
    pub(crate) record_ttl: Duration,
    pub(crate) replay_claim_ttl: Duration,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        Self {
            record_ttl: Self::DEFAULT_RECORD_TTL,
            replay_claim_ttl: crate::DEFAULT_REPLAY_CLAIM_TTL,
        }
    }
}

impl MemoryOptions {
    /// The default retention of finished reservations and their
    /// idempotency keys: 24 hours, as the other stores'.
    pub const DEFAULT_RECORD_TTL: Duration = Duration::from_secs(24 * 3600);

    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps finished reservations (and their idempotency keys) for `ttl`
    /// after they finish (default
    /// [`DEFAULT_RECORD_TTL`](Self::DEFAULT_RECORD_TTL)), by the times the
    /// store is given: a key replays its purchase at least that long.
    pub fn record_ttl(mut self, ttl: Duration) -> Self {
        self.record_ttl = ttl;
        self
    }

    /// Keeps a same-request replay's claim on the order it was answered
    /// with for `ttl` (default
    /// [`DEFAULT_REPLAY_CLAIM_TTL`](crate::DEFAULT_REPLAY_CLAIM_TTL)), by
    /// the times the store is given.
    pub fn replay_claim_ttl(mut self, ttl: Duration) -> Self {
        self.replay_claim_ttl = ttl;
        self
    }
}
