//! What one sweep (`RedisStockStore::expire`) costs with 10,000 products,
//! on one Redis and on the Redis Cluster that `backends/redis/with-redis.sh`
//! starts: counted on the servers with `INFO commandstats` deltas. It used
//! to run one script per product every tick; now it reads the due index and
//! runs one script per product that has something due.
//!
//! One test in this binary on purpose: the counts are server-wide, and the
//! test binaries run one after the other.

#[path = "common/redis_kit.rs"]
mod redis_kit;

use redis_kit::{cluster_urls, env_urls};

use std::collections::HashMap;
use std::time::Duration;

use flashsale::ReservationState;
use flashsale::redis::{RedisOptions, RedisStockStore};
use flashsale::testing::{unique_product, user};
use flashsale::{OrderId, ProductId, Quantity, Sale, StockStore, Timestamp};
use flashsale::{ReserveOutcome, ReserveRequest};

const PRODUCTS: usize = 10_000;
const DUE: usize = 5;
const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);
const HOLD: Duration = Duration::from_secs(60);

/// Command calls by name, summed over `nodes` (commands run inside scripts
/// included; the bookkeeping of the count itself left out).
async fn calls(nodes: &[String]) -> HashMap<String, u64> {
    let mut total = HashMap::new();
    for url in nodes {
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("Redis at {url} is not answering ({e})"));
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await
            .unwrap();
        for line in info.lines() {
            let Some((name, rest)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            if matches!(
                name,
                "info" | "ping" | "cluster" | "client" | "hello" | "readonly"
            ) {
                continue;
            }
            let n: u64 = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            *total.entry(name.to_owned()).or_insert(0) += n;
        }
    }
    total
}

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> HashMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn hold_request(p: &ProductId, n: usize) -> ReserveRequest {
    ReserveRequest {
        order_id: OrderId::new(T0),
        product: p.clone(),
        user: user(n),
        quantity: Quantity::ONE,
        idempotency_key: None,
        now: T0,
    }
}

/// Creates `PRODUCTS` sales, checks an idle sweep and a sweep with `DUE`
/// holds due, and prints the counts.
async fn check(label: &str, store: RedisStockStore, nodes: &[String]) {
    let store = std::sync::Arc::new(store);
    let mut products = Vec::with_capacity(PRODUCTS);
    for chunk in 0..PRODUCTS / 500 {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..500 {
            let store = store.clone();
            let p = unique_product(&format!("sweep-{}", chunk * 500 + i));
            products.push(p.clone());
            set.spawn(async move {
                let sale = Sale::builder(p, 10).hold(HOLD).build().unwrap();
                store.create_sale(&sale).await.unwrap();
            });
        }
        set.join_all().await;
    }
    // Idle: nothing is due.
    let before = calls(nodes).await;
    assert!(store.expire(T0, 1_000).await.unwrap().is_empty());
    let idle = delta(&before, &calls(nodes).await);
    let idle_total: u64 = idle.values().sum();
    println!("{label}: idle sweep over {PRODUCTS} products: {idle_total} commands {idle:?}");
    assert_eq!(
        idle.get("evalsha"),
        None,
        "an idle sweep ran scripts: {idle:?}"
    );
    assert!(
        idle_total <= 2,
        "an idle sweep sent {idle_total} commands: {idle:?}"
    );

    // `DUE` holds on as many products, due once the hold has passed.
    for (n, p) in products.iter().take(DUE).enumerate() {
        assert!(matches!(
            store.reserve(&hold_request(p, n)).await.unwrap(),
            ReserveOutcome::Reserved(_)
        ));
    }
    let late = T0.saturating_add(HOLD + Duration::from_secs(1));
    let before = calls(nodes).await;
    let expired = store.expire(late, 1_000).await.unwrap();
    let busy = delta(&before, &calls(nodes).await);
    println!("{label}: sweep with {DUE} holds due: {busy:?}");
    assert_eq!(expired.len(), DUE);
    assert!(expired.iter().all(|r| r.state == ReservationState::Expired));
    assert_eq!(
        busy.get("evalsha").copied(),
        Some(DUE as u64),
        "one script per due product: {busy:?}"
    );
    // The records now wait for their purge, a day later: idle again.
    let before = calls(nodes).await;
    assert!(store.expire(late, 1_000).await.unwrap().is_empty());
    let idle = delta(&before, &calls(nodes).await);
    assert_eq!(idle.get("evalsha"), None, "{idle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_costs_what_is_due_not_the_number_of_products() {
    let prefix = format!("flashsale-test:{}", uuid::Uuid::now_v7().simple());
    let single = env_urls("FLASHSALE_REDIS_URL", "redis://127.0.0.1:6379");
    let store = RedisStockStore::with_options(RedisOptions::single(&single[0]).prefix(&prefix))
        .await
        .expect("Redis is not answering: run through backends/redis/with-redis.sh");
    check("standalone", store, &single).await;

    let cluster = cluster_urls();
    let store =
        RedisStockStore::with_options(RedisOptions::cluster(cluster.clone()).prefix(&prefix))
            .await
            .expect("the Redis Cluster is not answering");
    check("cluster", store, &cluster).await;
}
