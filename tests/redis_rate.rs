//! `RedisRateLimiter` against a real Redis at `FLASHSALE_REDIS_URL`
//! (default `redis://127.0.0.1:6379`). Run through
//! `backends/redis/with-redis.sh cargo test --features redis,test-util`.

use std::time::Duration;

use flashsale::RateDecision;
use flashsale::redis::RedisRateLimiter;
use flashsale::{RateLimiter, RateQuota};

fn redis_url() -> String {
    std::env::var("FLASHSALE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn prefix() -> String {
    format!("flashsale-test:{}", uuid::Uuid::now_v7().simple())
}

async fn limiter_on(prefix: &str, quota: RateQuota) -> RedisRateLimiter {
    let url = redis_url();
    RedisRateLimiter::connect(&url, prefix, quota)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis at {url} is not answering ({e}). These tests need a real Redis: \
                 run them through backends/redis/with-redis.sh"
            )
        })
}

async fn limiter(quota: RateQuota) -> RedisRateLimiter {
    limiter_on(&prefix(), quota).await
}

flashsale::rate_limiter_conformance!(limiter);

/// Two app servers share one buyer's quota.
#[tokio::test]
async fn instances_share_the_quota() {
    let p = prefix();
    let quota = RateQuota::new(4, Duration::from_secs(60)).unwrap();
    let a = limiter_on(&p, quota).await;
    let b = limiter_on(&p, quota).await;
    for l in [&a, &b, &a, &b] {
        assert_eq!(l.check("alice", 1).await.unwrap(), RateDecision::Allowed);
    }
    assert!(matches!(
        b.check("alice", 1).await.unwrap(),
        RateDecision::Limited { .. }
    ));
    assert!(matches!(
        a.check("alice", 1).await.unwrap(),
        RateDecision::Limited { .. }
    ));
}

/// A key expires once fully replenished: idle buyers cost no memory.
#[tokio::test]
async fn idle_keys_expire() {
    let p = prefix();
    let quota = RateQuota::new(2, Duration::from_millis(200)).unwrap();
    let l = limiter_on(&p, quota).await;
    l.check("bob", 2).await.unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{p}|rate:bob");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 202, "pttl {ttl}");
    // Redis expires the key by itself once the quota has replenished.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        if exists == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the idle key never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(l.check("bob", 2).await.unwrap(), RateDecision::Allowed);
}
