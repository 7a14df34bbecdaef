//! The Redis backends against a real Redis Cluster at
//! `FLASHSALE_REDIS_CLUSTER_URLS` (comma-separated node URLs), which
//! `backends/redis/with-redis.sh` starts (three masters on loopback). The
//! same conformance suites as on one server: every script touches one hash
//! slot, the sweeper visits each product's slot in turn, and the relay
//! visits each product with pending events. On a cluster the set of
//! products with pending events lives in another slot than the outboxes,
//! so it is kept by separate commands: the tests below race it and lose it
//! on purpose.

#[path = "common/redis_kit.rs"]
mod redis_kit;

use redis_kit::cluster_urls;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use flashsale::redis::{RedisRateLimiter, RedisStockStore};
use flashsale::testing::{unique_product, user};
use flashsale::{EventType, OrderEvent, ProductId};
use flashsale::{OrderId, Quantity, RateQuota, Sale, StockStore, Timestamp};
use flashsale::{ReserveOutcome, ReserveRequest};

fn prefix() -> String {
    format!("flashsale-test:{}", uuid::Uuid::now_v7().simple())
}

async fn store_on(prefix: &str) -> RedisStockStore {
    let urls = cluster_urls();
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    RedisStockStore::connect_cluster(&refs, prefix)
        .await
        .unwrap_or_else(|e| panic!("Redis Cluster at {urls:?} is not answering ({e})"))
}

async fn store() -> RedisStockStore {
    store_on(&prefix()).await
}

async fn limiter(quota: RateQuota) -> RedisRateLimiter {
    let urls = cluster_urls();
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    RedisRateLimiter::connect_cluster(&refs, &prefix(), quota)
        .await
        .unwrap_or_else(|e| panic!("Redis Cluster at {urls:?} is not answering ({e})"))
}

/// A plain cluster connection, for looking at (and breaking) the keys.
async fn raw() -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(cluster_urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

/// `n` app servers: independent cluster connections on one fresh prefix.
async fn app_servers(n: usize) -> Vec<RedisStockStore> {
    let prefix = prefix();
    let mut stores = Vec::with_capacity(n);
    for _ in 0..n {
        stores.push(store_on(&prefix).await);
    }
    stores
}

flashsale::stock_store_conformance!(store, app_servers: app_servers);

mod rate {
    flashsale::rate_limiter_conformance!(super::limiter);
}

/// 2026-01-01T00:00:00Z.
const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);
const LEASE: Duration = Duration::from_secs(30);

fn request(p: &ProductId, buyer: usize, now: Timestamp) -> ReserveRequest {
    ReserveRequest {
        order_id: OrderId::new(now),
        product: p.clone(),
        user: user(buyer),
        quantity: Quantity::ONE,
        idempotency_key: None,
        now,
    }
}

async fn reserve(s: &RedisStockStore, req: &ReserveRequest) {
    let outcome = s.reserve(req).await.unwrap();
    assert!(
        matches!(outcome, ReserveOutcome::Reserved(_)),
        "{outcome:?}"
    );
}

/// Claims and acknowledges everything claimable at `now`.
async fn drain(s: &RedisStockStore, now: Timestamp) -> Vec<OrderEvent> {
    let mut all = Vec::new();
    loop {
        let batch = s.claim(now, 7, LEASE).await.unwrap();
        if batch.is_empty() {
            return all;
        }
        s.ack(&batch).await.unwrap();
        all.extend(batch);
    }
}

async fn pending_set(prefix: &str) -> HashSet<String> {
    redis::cmd("SMEMBERS")
        .arg(format!("{{{prefix}}}|pending"))
        .query_async(&mut raw().await)
        .await
        .unwrap()
}

/// Products land on different masters; one sweep expires holds on all of
/// them, and the relay collects every product's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_and_relay_span_every_master() {
    let prefix = prefix();
    let s = store_on(&prefix).await;
    let mut products = Vec::new();
    for i in 0..12 {
        let p = unique_product(&format!("slot-{i}"));
        let sale = Sale::builder(p.clone(), 3)
            .hold(Duration::from_secs(60))
            .build()
            .unwrap();
        s.create_sale(&sale).await.unwrap();
        reserve(&s, &request(&p, i, T0)).await;
        products.push(p);
    }
    let late = T0.saturating_add(Duration::from_secs(3600));
    let expired = s.expire(late, 100).await.unwrap();
    assert_eq!(expired.len(), products.len());
    for p in &products {
        assert_eq!(s.snapshot(p).await.unwrap().unwrap().available, 3);
    }
    let events = drain(&s, late).await;
    assert_eq!(events.len(), 2 * products.len(), "{events:?}");
    for kind in [EventType::Placed, EventType::Expired] {
        let of_kind: HashSet<&ProductId> = events
            .iter()
            .filter(|e| e.event_type == kind)
            .map(|e| &e.order.product_id)
            .collect();
        assert_eq!(of_kind.len(), products.len(), "{kind:?}");
    }
    assert!(
        pending_set(&prefix).await.is_empty(),
        "every acknowledged outbox left the pending set"
    );
}

/// A process that dies between a reserve's script and its follow-up `SADD`
/// leaves an event that no pending mark points at; the relay's periodic
/// repair pass finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_pending_mark_is_repaired() {
    let prefix = prefix();
    let s = store_on(&prefix).await;
    let p = unique_product("lost-mark");
    s.create_sale(&Sale::builder(p.clone(), 5).build().unwrap())
        .await
        .unwrap();
    // The relay's first claim runs the repair pass; the next one within a
    // minute does not.
    assert!(s.claim(T0, 10, LEASE).await.unwrap().is_empty());
    let req = request(&p, 1, T0);
    reserve(&s, &req).await;
    let _: i64 = redis::cmd("SREM")
        .arg(format!("{{{prefix}}}|pending"))
        .arg(p.as_str())
        .query_async(&mut raw().await)
        .await
        .unwrap();
    let soon = T0.saturating_add(Duration::from_secs(10));
    assert!(
        s.claim(soon, 10, LEASE).await.unwrap().is_empty(),
        "without its mark the event is not visited"
    );
    let later = T0.saturating_add(Duration::from_secs(61));
    let found = s.claim(later, 10, LEASE).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].event_id.order_id(), req.order_id);
    s.ack(&found).await.unwrap();
    assert!(pending_set(&prefix).await.is_empty());
}

/// Buyers reserve while a relay claims and acknowledges: the relay's
/// `SREM` of an outbox it saw empty races the buyers' `SADD`s; no event is
/// left behind unmarked (the repair pass cannot help here: it already ran).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_racing_buyers_leaves_no_event_behind() {
    const BUYERS: usize = 8;
    const EACH: usize = 40;
    let prefix = prefix();
    let s = Arc::new(store_on(&prefix).await);
    let p = unique_product("race-mark");
    s.create_sale(
        &Sale::builder(p.clone(), (BUYERS * EACH) as u32)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(s.claim(T0, 10, LEASE).await.unwrap().is_empty());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let relay = {
        let (s, done) = (s.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let batch = s.claim(T0, 5, LEASE).await.unwrap();
                s.ack(&batch).await.unwrap();
                seen.extend(batch);
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let mut buyers = Vec::new();
    for b in 0..BUYERS {
        let (s, p) = (s.clone(), p.clone());
        buyers.push(tokio::spawn(async move {
            for _ in 0..EACH {
                reserve(&s, &request(&p, b, T0)).await;
            }
        }));
    }
    for b in buyers {
        b.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let mut seen = relay.await.unwrap();
    // Within the same minute: no repair pass, only the pending marks.
    seen.extend(drain(&s, T0).await);
    let ids: HashSet<_> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), seen.len(), "an event was handed out twice");
    assert_eq!(ids.len(), BUYERS * EACH, "events left in the outbox");
    assert!(pending_set(&prefix).await.is_empty());
}

/// A record waits for its events' delivery before it is purged.
#[tokio::test]
async fn purge_waits_for_delivery() {
    flashsale::testing::stock::purge_waits_for_delivery(&store).await;
}

/// A void whose script ran but whose follow-ups (the order index and the
/// pending mark, in other slots) were lost, as when its answer never came
/// back: the engine retries it, the script answers `already_voided`, and
/// the retry writes both again.
#[tokio::test]
async fn a_retried_void_writes_what_the_first_lost() {
    let prefix = prefix();
    let s = store_on(&prefix).await;
    let p = unique_product("void-retry");
    s.create_sale(&Sale::builder(p.clone(), 5).build().unwrap())
        .await
        .unwrap();
    let mut c = raw().await;
    // A tombstone (the reserve never ran) and a voided order (with events).
    let never = request(&p, 1, T0);
    let sold = request(&p, 2, T0);
    reserve(&s, &sold).await;
    for req in [&never, &sold] {
        s.void(req, T0).await.unwrap();
        let _: i64 = redis::cmd("DEL")
            .arg(format!("{prefix}|order:{}", req.order_id))
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let _: i64 = redis::cmd("SREM")
        .arg(format!("{{{prefix}}}|pending"))
        .arg(p.as_str())
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(s.reservation(&never.order_id).await.unwrap(), None);
    for req in [&never, &sold] {
        assert_eq!(
            s.void(req, T0).await.unwrap(),
            flashsale::VoidOutcome::AlreadyVoided
        );
        let found = s.reservation(&req.order_id).await.unwrap();
        assert_eq!(
            found.map(|r| r.state),
            Some(flashsale::ReservationState::Voided),
            "the retry wrote the order index again"
        );
    }
    let marked: bool = redis::cmd("SISMEMBER")
        .arg(format!("{{{prefix}}}|pending"))
        .arg(p.as_str())
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        marked,
        "the retry marked the product's outbox pending again"
    );
}
