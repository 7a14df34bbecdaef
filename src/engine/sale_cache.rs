//! A short-lived, bounded cache of sale terms, so that the pure validation
//! step (quantity, window) costs no round trip on the hot path. The store
//! re-checks everything atomically, so a stale entry can never oversell; it
//! can only let an attempt through to the store that would have been
//! refused locally, or the reverse for at most one TTL.
//!
//! Answers that a product does not exist are cached too, so a client
//! repeating an unknown id costs one lookup per TTL. Eviction is
//! `quick_cache`'s scan-resistant S3-FIFO-like policy: a bot cycling random
//! ids only churns the cache's small probationary part, while sales that
//! are asked for again and again stay in its main part. Ages are measured
//! on the engine clock's monotonic time, so a wall-clock step neither
//! stretches nor shortens them.

use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::Cache;

use crate::model::{ProductId, Sale};

/// One cached answer of [`StockStore::sale`](crate::StockStore::sale).
#[derive(Debug, Clone)]
struct Entry {
    sale: Option<Arc<Sale>>,
    /// The engine clock's monotonic time when it was fetched.
    fetched_at: Duration,
}

pub(crate) struct SaleCache {
    ttl: Duration,
    /// `None` when caching is off (a zero TTL).
    entries: Option<Cache<ProductId, Entry>>,
}

impl std::fmt::Debug for SaleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaleCache")
            .field("ttl", &self.ttl)
            .field("len", &self.entries.as_ref().map_or(0, Cache::len))
            .finish()
    }
}

impl SaleCache {
    /// A cache keeping answers for `ttl`, holding about `capacity` products
    /// (at least one).
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            entries: (!ttl.is_zero()).then(|| Cache::new(capacity.max(1))),
        }
    }

    /// `Some(answer)` if a fresh answer is cached (`answer` itself is `None`
    /// for a product known not to exist). `now` is monotonic time.
    pub(crate) fn get(&self, product: &ProductId, now: Duration) -> Option<Option<Arc<Sale>>> {
        let e = self.entries.as_ref()?.get(product)?;
        now.checked_sub(e.fetched_at)
            .is_some_and(|age| age < self.ttl)
            .then_some(e.sale)
    }

    /// Caches `sale` as the answer for `product`, fetched at monotonic time
    /// `now`.
    pub(crate) fn put(&self, product: ProductId, sale: Option<Arc<Sale>>, now: Duration) {
        if let Some(entries) = &self.entries {
            entries.insert(
                product,
                Entry {
                    sale,
                    fetched_at: now,
                },
            );
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, Cache::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(id: &str) -> Arc<Sale> {
        Arc::new(
            Sale::builder(ProductId::new(id).unwrap(), 5)
                .build()
                .unwrap(),
        )
    }

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn entries_expire_after_ttl() {
        let cache = SaleCache::new(ms(100), 16);
        let p = ProductId::new("p").unwrap();
        cache.put(p.clone(), Some(sale("p")), ms(1_000));
        assert!(cache.get(&p, ms(1_099)).unwrap().is_some());
        assert!(cache.get(&p, ms(1_100)).is_none());
        // A reading from before the fetch (another clock) is not trusted.
        assert!(cache.get(&p, ms(500)).is_none());
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = SaleCache::new(Duration::ZERO, 16);
        let p = ProductId::new("p").unwrap();
        cache.put(p.clone(), Some(sale("p")), ms(0));
        assert!(cache.get(&p, ms(0)).is_none());
    }

    #[test]
    fn negative_answers_are_cached_and_size_is_bounded() {
        const CAP: usize = 1_000;
        let cache = SaleCache::new(Duration::from_secs(60), CAP);
        for i in 0..(CAP * 10) {
            cache.put(ProductId::new(format!("bot-{i}")).unwrap(), None, ms(0));
        }
        assert!(cache.len() <= CAP + CAP / 10, "{} entries", cache.len());
        let last = ProductId::new(format!("bot-{}", CAP * 10 - 1)).unwrap();
        assert_eq!(cache.get(&last, ms(0)), Some(None));
    }

    #[test]
    fn a_flood_of_random_ids_does_not_evict_a_hot_sale() {
        const CAP: usize = 1_000;
        let cache = SaleCache::new(Duration::from_secs(60), CAP);
        let hot = ProductId::new("hot").unwrap();
        cache.put(hot.clone(), Some(sale("hot")), ms(0));
        for i in 0..(CAP * 100) {
            // The hot sale is asked for between the bot's requests...
            if i % 10 == 0 {
                assert!(
                    cache.get(&hot, ms(0)).is_some(),
                    "the hot sale was evicted after {i} bot ids"
                );
            }
            // ...while the bot asks for an id nobody asks for again.
            let bot = ProductId::new(format!("bot-{i}")).unwrap();
            assert!(cache.get(&bot, ms(0)).is_none());
            cache.put(bot, None, ms(0));
        }
    }
}
