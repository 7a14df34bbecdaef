//! The Redis backends against a real Redis Cluster at
//! `FLASHSALE_REDIS_CLUSTER_URLS` (comma-separated node URLs), which
//! `backends/redis/with-redis.sh` starts (three masters on loopback). The
//! same conformance suites as on one server: every script touches one hash
//! slot, and the sweeper visits each product's slot in turn.

use std::time::Duration;

use flashsale::RateQuota;
use flashsale::redis::{RedisRateLimiter, RedisStockStore};

fn cluster_urls() -> Vec<String> {
    let raw = std::env::var("FLASHSALE_REDIS_CLUSTER_URLS").unwrap_or_default();
    let urls: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        !urls.is_empty(),
        "FLASHSALE_REDIS_CLUSTER_URLS is not set. The cluster tests need a real Redis \
         Cluster: run them through backends/redis/with-redis.sh, which starts one"
    );
    urls
}

fn prefix() -> String {
    format!("flashsale-test:{}", uuid::Uuid::now_v7().simple())
}

async fn store() -> RedisStockStore {
    let urls = cluster_urls();
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    RedisStockStore::connect_cluster(&refs, &prefix())
        .await
        .unwrap_or_else(|e| panic!("Redis Cluster at {urls:?} is not answering ({e})"))
}

async fn limiter(quota: RateQuota) -> RedisRateLimiter {
    let urls = cluster_urls();
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    RedisRateLimiter::connect_cluster(&refs, &prefix(), quota)
        .await
        .unwrap_or_else(|e| panic!("Redis Cluster at {urls:?} is not answering ({e})"))
}

flashsale::stock_store_conformance!(store);

mod rate {
    flashsale::rate_limiter_conformance!(super::limiter);
}

/// Products land on different masters, and one sweep expires holds on all
/// of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_spans_every_master() {
    use flashsale::ports::{ReserveOutcome, ReserveRequest};
    use flashsale::testing::stock::{T0, request};
    use flashsale::{Sale, StockStore};

    let s = store().await;
    let mut products = Vec::new();
    for i in 0..12 {
        let p = flashsale::testing::unique_product(&format!("slot-{i}"));
        let sale = Sale::builder(p.clone(), 3).build().unwrap();
        s.create_sale(&sale).await.unwrap();
        let req: ReserveRequest = request(&p, &flashsale::testing::user(i), 1, T0);
        assert!(matches!(
            s.reserve(&req).await.unwrap(),
            ReserveOutcome::Reserved(_)
        ));
        products.push(p);
    }
    let late = T0.saturating_add(Duration::from_secs(3600));
    let expired = s.expire(late, 100).await.unwrap();
    assert_eq!(expired.len(), products.len());
    for p in &products {
        assert_eq!(s.snapshot(p).await.unwrap().unwrap().available, 3);
    }
}
