//! `RedisStockStore` against a real Redis at `FLASHSALE_REDIS_URL` (default
//! `redis://127.0.0.1:6379`): the whole stock conformance suite, the same
//! suite through the sold-out cache (each with four app servers, four
//! independent connections, selling one product), and the standalone-only
//! bookkeeping of the outbox. Run through
//! `backends/redis/with-redis.sh cargo test --all-features`.

use std::time::Duration;

use flashsale::redis::{RedisOptions, RedisStockStore};
use flashsale::testing::{unique_product, user};
use flashsale::{OrderId, Quantity, Sale, StockStore, Timestamp};
use flashsale::{ReserveOutcome, ReserveRequest};

fn redis_url() -> String {
    std::env::var("FLASHSALE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn prefix() -> String {
    format!("flashsale-test:{}", uuid::Uuid::now_v7().simple())
}

async fn store_with(opts: RedisOptions) -> RedisStockStore {
    let url = redis_url();
    RedisStockStore::with_options(opts)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis at {url} is not answering ({e}). These tests need a real Redis: \
                 run them through backends/redis/with-redis.sh"
            )
        })
}

/// A store on its own key prefix, so cases run in parallel.
async fn store() -> RedisStockStore {
    store_with(RedisOptions::single(redis_url()).prefix(prefix())).await
}

/// `n` app servers: independent connections (as `n` processes would have)
/// on one fresh prefix.
async fn app_servers(n: usize) -> Vec<RedisStockStore> {
    let prefix = prefix();
    let mut stores = Vec::with_capacity(n);
    for _ in 0..n {
        stores.push(store_with(RedisOptions::single(redis_url()).prefix(prefix.clone())).await);
    }
    stores
}

// Its `engine_concurrent_buyers` race runs four engines on four
// connections: four app servers sharing one Redis.
flashsale::stock_store_conformance!(store, app_servers: app_servers);

/// The sold-out cache in front of Redis keeps every contract.
mod through_sold_out_cache {
    use flashsale::SoldOutCache;

    async fn cached() -> SoldOutCache<flashsale::redis::RedisStockStore> {
        SoldOutCache::new(super::store().await)
    }

    /// App servers with a sold-out cache each, over their own connection.
    async fn cached_app_servers(n: usize) -> Vec<SoldOutCache<flashsale::redis::RedisStockStore>> {
        super::app_servers(n)
            .await
            .into_iter()
            .map(SoldOutCache::new)
            .collect()
    }

    flashsale::stock_store_conformance!(cached, app_servers: cached_app_servers);
}

/// 2026-01-01T00:00:00Z.
const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);
const LEASE: Duration = Duration::from_secs(30);

fn request(p: &flashsale::ProductId, buyer: usize, now: Timestamp) -> ReserveRequest {
    ReserveRequest {
        order_id: OrderId::new(now),
        product: p.clone(),
        user: user(buyer),
        quantity: Quantity::ONE,
        idempotency_key: None,
        now,
    }
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn marked(prefix: &str, p: &flashsale::ProductId) -> bool {
    redis::cmd("SISMEMBER")
        .arg(format!("{{{prefix}}}|pending"))
        .arg(p.as_str())
        .query_async(&mut raw().await)
        .await
        .unwrap()
}

/// On one server the set of products with pending events is kept inside
/// the scripts: a reserve marks its product, the ack that empties the
/// outbox unmarks it, and a claim that finds a marked outbox empty unmarks
/// it too.
#[tokio::test]
async fn pending_mark_follows_the_outbox() {
    let s = store().await;
    let prefix = s.prefix().to_owned();
    let p = unique_product("mark");
    s.create_sale(&Sale::builder(p.clone(), 5).build().unwrap())
        .await
        .unwrap();
    assert!(!marked(&prefix, &p).await, "a sale alone has no events");
    let req = request(&p, 1, T0);
    assert!(matches!(
        s.reserve(&req).await.unwrap(),
        ReserveOutcome::Reserved(_)
    ));
    assert!(marked(&prefix, &p).await);
    let batch = s.claim(T0, 10, LEASE).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert!(marked(&prefix, &p).await, "claimed, not yet acknowledged");
    s.ack(&batch).await.unwrap();
    assert!(!marked(&prefix, &p).await);

    // A stale mark (an outbox emptied by hand) is dropped by the next claim.
    let _: i64 = redis::cmd("SADD")
        .arg(format!("{{{prefix}}}|pending"))
        .arg(p.as_str())
        .query_async(&mut raw().await)
        .await
        .unwrap();
    assert!(s.claim(T0, 10, LEASE).await.unwrap().is_empty());
    assert!(!marked(&prefix, &p).await);
}

/// A record waits for its events' delivery before it is purged.
#[tokio::test]
async fn purge_waits_for_delivery() {
    flashsale::testing::stock::purge_waits_for_delivery(&store).await;
}

/// Prefixes and product ids may both hold `:`; no two (prefix, product)
/// pairs share a key, nor does a prefix's store-wide set meet another's.
#[tokio::test]
async fn prefixes_never_share_keys() {
    let base = prefix();
    let shop = store_with(RedisOptions::single(redis_url()).prefix(base.clone())).await;
    let eu = store_with(RedisOptions::single(redis_url()).prefix(format!("{base}:eu"))).await;
    let outbox =
        store_with(RedisOptions::single(redis_url()).prefix(format!("{base}:outbox"))).await;
    let eu_x = flashsale::ProductId::new("eu:x").unwrap();
    let x = flashsale::ProductId::new("x").unwrap();
    assert_eq!(
        shop.create_sale(&Sale::builder(eu_x.clone(), 5).build().unwrap())
            .await
            .unwrap(),
        flashsale::SaleWrite::Created
    );
    assert_eq!(
        eu.create_sale(&Sale::builder(x.clone(), 7).build().unwrap())
            .await
            .unwrap(),
        flashsale::SaleWrite::Created,
        "prefix `{base}:eu` product `x` met prefix `{base}` product `eu:x`"
    );
    reserve_one(&shop, &eu_x).await;
    assert_eq!(shop.snapshot(&eu_x).await.unwrap().unwrap().available, 4);
    assert_eq!(eu.snapshot(&x).await.unwrap().unwrap().available, 7);
    // The other prefix's relay sees none of these events.
    assert!(outbox.claim(T0, 10, LEASE).await.unwrap().is_empty());
    assert!(eu.claim(T0, 10, LEASE).await.unwrap().is_empty());
    assert_eq!(shop.claim(T0, 10, LEASE).await.unwrap().len(), 1);
    // `|` ends the prefix in every key, so a prefix may not hold one.
    let err = RedisStockStore::with_options(RedisOptions::single(redis_url()).prefix("a|b"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains('|'), "{err}");
}

async fn reserve_one(s: &RedisStockStore, p: &flashsale::ProductId) {
    assert!(matches!(
        s.reserve(&request(p, 1, T0)).await.unwrap(),
        ReserveOutcome::Reserved(_)
    ));
}

/// A reserve writes its record once: its `placed` event has no payload of
/// its own and is read from the record at claim time. The record may have
/// changed meanwhile (here: confirmed), and the event still carries the
/// order exactly as it was placed.
#[tokio::test]
async fn a_placed_event_is_read_from_its_record() {
    let s = store().await;
    let prefix = s.prefix().to_owned();
    let p = unique_product("placed");
    let sale = Sale::builder(p.clone(), 5)
        .hold(Duration::from_secs(600))
        .build()
        .unwrap();
    s.create_sale(&sale).await.unwrap();
    let ReserveOutcome::Reserved(r) = s.reserve(&request(&p, 1, T0)).await.unwrap() else {
        panic!("not reserved");
    };
    let events = format!("{{{prefix}|{p}}}:events");
    let payloads = |key: String| async move {
        let n: u64 = redis::cmd("HLEN")
            .arg(key)
            .query_async(&mut raw().await)
            .await
            .unwrap();
        n
    };
    assert_eq!(
        payloads(events.clone()).await,
        0,
        "a reserve copied its record"
    );
    let later = T0.saturating_add(Duration::from_secs(5));
    s.confirm(&p, &r.order_id, later).await.unwrap();
    assert_eq!(
        payloads(events.clone()).await,
        1,
        "the confirmed event's payload"
    );

    let batch = s.claim(later, 10, LEASE).await.unwrap();
    assert_eq!(batch.len(), 2, "{batch:?}");
    assert_eq!(batch[0], flashsale::OrderEvent::placed(&r));
    assert_eq!(batch[0].at, T0);
    assert_eq!(batch[1].event_type, flashsale::EventType::Confirmed);
    assert_eq!(batch[1].order, r.to_order());
    s.ack(&batch).await.unwrap();
    assert_eq!(payloads(events).await, 0);
}

/// An outbox written by an earlier version, whose `placed` events carry a
/// payload in the events hash, is still delivered once, and acknowledging
/// it removes that payload.
#[tokio::test]
async fn a_placed_payload_of_an_earlier_version_is_delivered_and_removed() {
    let s = store().await;
    let prefix = s.prefix().to_owned();
    let p = unique_product("old-placed");
    s.create_sale(&Sale::builder(p.clone(), 5).build().unwrap())
        .await
        .unwrap();
    let ReserveOutcome::Reserved(r) = s.reserve(&request(&p, 1, T0)).await.unwrap() else {
        panic!("not reserved");
    };
    let oid = r.order_id.to_string();
    let res = format!("{{{prefix}|{p}}}:res");
    let events = format!("{{{prefix}|{p}}}:events");
    let mut c = raw().await;
    let record: String = redis::cmd("HGET")
        .arg(&res)
        .arg(&oid)
        .query_async(&mut c)
        .await
        .unwrap();
    // What the earlier reserve.lua wrote beside the record.
    let _: i64 = redis::cmd("HSET")
        .arg(&events)
        .arg(format!("{oid}.1"))
        .arg(format!("placed|{}|{record}", T0.as_millis()))
        .query_async(&mut c)
        .await
        .unwrap();
    let batch = s.claim(T0, 10, LEASE).await.unwrap();
    assert_eq!(batch, vec![flashsale::OrderEvent::placed(&r)]);
    s.ack(&batch).await.unwrap();
    let left: u64 = redis::cmd("HLEN")
        .arg(&events)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert!(s.claim(T0, 10, LEASE).await.unwrap().is_empty());
}

/// A record too corrupt to give its `placed` event a time stalls nobody:
/// the other orders' events are claimed, and its event stays in the
/// outbox for an operator.
#[tokio::test]
async fn a_corrupt_record_leaves_its_placed_event_and_stalls_no_other() {
    let s = store().await;
    let prefix = s.prefix().to_owned();
    let p = unique_product("corrupt");
    s.create_sale(&Sale::builder(p.clone(), 5).build().unwrap())
        .await
        .unwrap();
    let mut orders = Vec::new();
    for buyer in 1..=2 {
        let ReserveOutcome::Reserved(r) = s.reserve(&request(&p, buyer, T0)).await.unwrap() else {
            panic!("not reserved");
        };
        orders.push(r);
    }
    let bad = orders[0].order_id.to_string();
    let mut c = raw().await;
    let _: i64 = redis::cmd("HSET")
        .arg(format!("{{{prefix}|{p}}}:res"))
        .arg(&bad)
        .arg(r#"{"o":"x"}"#)
        .query_async(&mut c)
        .await
        .unwrap();
    let batch = s.claim(T0, 10, LEASE).await.unwrap();
    assert_eq!(batch, vec![flashsale::OrderEvent::placed(&orders[1])]);
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("{{{prefix}|{p}}}:outbox"))
        .arg(format!("{bad}.1"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(score.is_some(), "the corrupt order's event left the outbox");
}
