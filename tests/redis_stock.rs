//! `RedisStockStore` against a real Redis at `FLASHSALE_REDIS_URL` (default
//! `redis://127.0.0.1:6379`): the whole stock conformance suite, the same
//! suite through the sold-out cache, and four app servers (four independent
//! connections) selling one product. Run through
//! `backends/redis/with-redis.sh cargo test --features redis,test-util`.

use std::sync::Arc;

use flashsale::StockStore;
use flashsale::redis::RedisStockStore;

fn redis_url() -> String {
    std::env::var("FLASHSALE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A store on its own key prefix, so cases run in parallel.
async fn store() -> RedisStockStore {
    let url = redis_url();
    let prefix = format!("flashsale-test:{}", uuid::Uuid::now_v7().simple());
    RedisStockStore::connect(&url, &prefix)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis at {url} is not answering ({e}). These tests need a real Redis: \
                 run them through backends/redis/with-redis.sh"
            )
        })
}

flashsale::stock_store_conformance!(store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_app_servers_share_one_redis() {
    let first = store().await;
    let prefix = first.prefix().to_owned();
    let mut stores: Vec<Arc<dyn StockStore>> = vec![Arc::new(first)];
    for _ in 0..3 {
        // Independent connections, as four processes would have.
        let s = RedisStockStore::connect(&redis_url(), &prefix)
            .await
            .unwrap();
        stores.push(Arc::new(s));
    }
    flashsale::testing::engine::concurrent_buyers(stores).await;
}

/// The sold-out cache in front of Redis keeps every contract.
mod through_sold_out_cache {
    use flashsale::SoldOutCache;

    async fn cached() -> SoldOutCache<flashsale::redis::RedisStockStore> {
        SoldOutCache::new(super::store().await)
    }

    flashsale::stock_store_conformance!(cached);
}
