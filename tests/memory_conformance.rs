//! The in-memory backends against the shared conformance suites.

use flashsale::memory::{MemoryOrderSink, MemoryRateLimiter, MemoryStockStore};

flashsale::stock_store_conformance!(|| async { MemoryStockStore::new() });
flashsale::rate_limiter_conformance!(|quota| async move { MemoryRateLimiter::new(quota) });
flashsale::order_sink_conformance!(|| async { MemoryOrderSink::new() });
