//! A short-lived, bounded cache of sale terms, so that the pure validation
//! step (quantity, window) costs no round trip on the hot path. The store
//! re-checks everything atomically, so a stale entry can never oversell; it
//! can only let an attempt through to the store that would have been
//! refused locally, or the reverse for at most one TTL.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use crate::fast_hash::HashMap;
use crate::model::{ProductId, Sale, Timestamp};

/// More entries than this and the cache is emptied (random ids sent by bots
/// must not grow it without bound).
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
pub(crate) struct SaleCache {
    ttl: Duration,
    entries: RwLock<HashMap<ProductId, Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    sale: Option<Arc<Sale>>,
    fetched_at: Timestamp,
}

impl SaleCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::default()),
        }
    }

    /// `Some(answer)` if a fresh answer is cached (`answer` itself is `None`
    /// for a product known not to exist).
    pub(crate) fn get(&self, product: &ProductId, now: Timestamp) -> Option<Option<Arc<Sale>>> {
        let entries = self.entries.read();
        let e = entries.get(product)?;
        (now.saturating_duration_since(e.fetched_at) < self.ttl && now >= e.fetched_at)
            .then(|| e.sale.clone())
    }

    pub(crate) fn put(&self, product: ProductId, sale: Option<Arc<Sale>>, now: Timestamp) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&product) {
            entries.clear();
        }
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
mod tests {
    use super::*;

    fn sale(id: &str) -> Arc<Sale> {
        Arc::new(
            Sale::builder(ProductId::new(id).unwrap(), 5)
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn entries_expire_after_ttl() {
        let cache = SaleCache::new(Duration::from_millis(100));
        let p = ProductId::new("p").unwrap();
        let t0 = Timestamp::from_millis(1_000);
        cache.put(p.clone(), Some(sale("p")), t0);
        assert!(
            cache
                .get(&p, Timestamp::from_millis(1_099))
                .unwrap()
                .is_some()
        );
        assert!(cache.get(&p, Timestamp::from_millis(1_100)).is_none());
        // A clock that went backwards does not serve a stale entry forever.
        assert!(cache.get(&p, Timestamp::from_millis(500)).is_none());
    }

    #[test]
    fn negative_answers_are_cached_and_size_is_bounded() {
        let cache = SaleCache::new(Duration::from_secs(60));
        let t = Timestamp::from_millis(0);
        for i in 0..(MAX_ENTRIES + 10) {
            cache.put(ProductId::new(format!("bot-{i}")).unwrap(), None, t);
        }
        assert!(cache.entries.read().len() <= MAX_ENTRIES);
        let last = ProductId::new(format!("bot-{}", MAX_ENTRIES + 9)).unwrap();
        assert_eq!(cache.get(&last, t), Some(None));
    }
}
