//! The engine refuses settings that would break a promise, with a message
//! that says what to change.

use std::sync::Arc;
use std::time::Duration;

use flashsale::memory::{
    MemoryOptions, MemoryOrderSink, MemoryRateLimiter, MemoryStockStore, StaticAuthenticator,
};
use flashsale::{Engine, Error, RateQuota};

fn builder(stock: MemoryStockStore) -> flashsale::EngineBuilder {
    Engine::builder()
        .stock_store(Arc::new(stock))
        .rate_limiter(Arc::new(MemoryRateLimiter::new(
            RateQuota::per_second(10).unwrap(),
        )))
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(Arc::new(StaticAuthenticator::new()))
}

/// A replay's claim must outlive the voids that may still arrive for it:
/// a store keeping claims shorter than `void_retry_for` is refused.
#[test]
fn replay_claims_shorter_than_void_retries_are_refused() {
    let short = MemoryStockStore::with_options(
        MemoryOptions::new().replay_claim_ttl(Duration::from_secs(60)),
    );
    let Err(Error::Config(msg)) = builder(short).build() else {
        panic!("an engine whose voids outlive the store's replay claims was built");
    };
    assert!(msg.contains("replay_claim_ttl"), "{msg}");
    assert!(builder(MemoryStockStore::new()).build().is_ok());
}
