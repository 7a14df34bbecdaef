//! The in-memory backends against the shared conformance suites.

use flashsale::memory::{MemoryOrderSink, MemoryRateLimiter, MemoryStockStore};

flashsale::stock_store_conformance!(|| async { MemoryStockStore::new() });
flashsale::rate_limiter_conformance!(|quota| async move { MemoryRateLimiter::new(quota) });
flashsale::order_sink_conformance!(|| async { MemoryOrderSink::new() });

/// The sold-out cache keeps every stock contract (it short-circuits only
/// requests that could not succeed given the store's last answer).
mod sold_out_cache {
    use flashsale::SoldOutCache;
    use flashsale::memory::MemoryStockStore;

    flashsale::stock_store_conformance!(|| async { SoldOutCache::new(MemoryStockStore::new()) });
}

/// A record waits for its events' delivery before it is purged.
#[tokio::test]
async fn purge_waits_for_delivery() {
    flashsale::testing::stock::purge_waits_for_delivery(&|| async { MemoryStockStore::new() })
        .await;
}
