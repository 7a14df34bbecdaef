//! Replaying one purchase 10,000 times leaves its Redis record, its events
//! and each replay's reply the same size as after 10 (they used to grow by
//! one order id per replay, and each replay rewrote the whole record), and
//! the claims the replays leave lapse.
//!
//! Also prints the mean time of a replay after 10 and after 10,000 replays,
//! for the record; the assertions are on sizes, which do not depend on the
//! machine.

use std::time::{Duration, Instant};

use flashsale::redis::{RedisOptions, RedisStockStore};
use flashsale::testing::{unique_product, user};
use flashsale::{IdempotencyKey, OrderId, ProductId, Quantity, Sale, StockStore, Timestamp};
use flashsale::{ReserveOutcome, ReserveRequest};

const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn redis_url() -> String {
    std::env::var("FLASHSALE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn keyed(p: &ProductId, now: Timestamp) -> ReserveRequest {
    ReserveRequest {
        order_id: OrderId::new(now),
        product: p.clone(),
        user: user(1),
        quantity: Quantity::ONE,
        idempotency_key: Some(IdempotencyKey::new("replayed-key").unwrap()),
        now,
    }
}

async fn strlen(c: &mut redis::aio::MultiplexedConnection, key: &str, field: &str) -> u64 {
    redis::cmd("HSTRLEN")
        .arg(key)
        .arg(field)
        .query_async(c)
        .await
        .unwrap()
}

/// Replays `n` more times (one at a time, as one buyer would) and returns
/// the mean time of one.
async fn replay(store: &RedisStockStore, p: &ProductId, from: u64, n: u64) -> Duration {
    let started = Instant::now();
    for i in from..from + n {
        let req = keyed(p, T0.saturating_add(Duration::from_millis(1 + i)));
        assert!(matches!(
            store.reserve(&req).await.unwrap(),
            ReserveOutcome::Duplicate(_)
        ));
    }
    started.elapsed() / u32::try_from(n).unwrap()
}

#[tokio::test]
async fn ten_thousand_replays_stay_flat() {
    let prefix = format!("flashsale-test:{}", uuid::Uuid::now_v7().simple());
    let store = RedisStockStore::with_options(RedisOptions::single(redis_url()).prefix(&prefix))
        .await
        .expect("Redis is not answering: run through backends/redis/with-redis.sh");
    let mut raw = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let p = unique_product("replays");
    let sale = Sale::builder(p.clone(), 5)
        .hold(Duration::from_secs(3600))
        .build()
        .unwrap();
    store.create_sale(&sale).await.unwrap();
    let first = keyed(&p, T0);
    let ReserveOutcome::Reserved(r) = store.reserve(&first).await.unwrap() else {
        panic!("not reserved");
    };
    let oid = r.order_id.to_string();
    let res = format!("{{{prefix}|{p}}}:res");
    let events = format!("{{{prefix}|{p}}}:events");

    let at_10 = replay(&store, &p, 0, 10).await;
    let record_10 = strlen(&mut raw, &res, &oid).await;
    let mean_late = {
        replay(&store, &p, 10, 9_890).await;
        replay(&store, &p, 9_900, 100).await
    };
    let record_10k = strlen(&mut raw, &res, &oid).await;
    println!(
        "record {record_10} B after 10 replays, {record_10k} B after 10,000; \
         a replay took {at_10:?} after 10, {mean_late:?} after 10,000 (mean of 100)"
    );
    assert_eq!(record_10k, record_10, "the record grew with the replays");

    // The closing event carries the record: the same size as a control
    // order's, never replayed.
    let control = ReserveRequest {
        user: user(2),
        ..keyed(&p, T0)
    };
    let ReserveOutcome::Reserved(c) = store.reserve(&control).await.unwrap() else {
        panic!("not reserved");
    };
    let late = T0.saturating_add(Duration::from_secs(60));
    for order in [&r.order_id, &c.order_id] {
        store.confirm(&p, order, late).await.unwrap();
    }
    let mine = strlen(&mut raw, &events, &format!("{oid}.2")).await;
    let theirs = strlen(&mut raw, &events, &format!("{}.2", c.order_id)).await;
    assert!(mine > 0, "no confirmed event found under {events}");
    assert_eq!(mine, theirs, "the replayed order's confirmed event grew");

    // The claims lapse with their lifetime: a replay after it finds only
    // its own.
    let claims = format!("{{{prefix}|{p}}}:claims:{oid}");
    let n: u64 = redis::cmd("ZCARD")
        .arg(&claims)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(n, 10_000);
    // (Confirmed: a replay no longer claims; the claims simply lapse.)
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&claims)
        .query_async(&mut raw)
        .await
        .unwrap();
    let lifetime = store.replay_claim_ttl();
    assert!(
        ttl > 0 && u128::try_from(ttl).unwrap() <= lifetime.as_millis() + 60_000,
        "the claims key expires with its last claim: PTTL {ttl}"
    );
}
