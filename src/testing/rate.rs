//! The [`RateLimiter`] conformance cases. They run on real time with short
//! periods, because a distributed limiter uses its server's clock. Run them
//! all with [`rate_limiter_conformance!`](crate::rate_limiter_conformance).

use std::future::Future;
use std::time::Duration;

use crate::model::RateQuota;
use crate::{RateDecision, RateLimiter};

/// A key unique to this run.
fn key(case: &str) -> String {
    format!("{case}:{}", uuid::Uuid::now_v7().simple())
}

fn limited(d: RateDecision) -> Duration {
    match d {
        RateDecision::Limited { retry_after } => retry_after,
        RateDecision::Allowed => panic!("expected Limited, got Allowed"),
    }
}

/// A fresh key admits a full burst, then refuses with a wait of about one
/// emission interval.
pub async fn burst_then_limited<F, Fut, L>(make: &F)
where
    F: Fn(RateQuota) -> Fut,
    Fut: Future<Output = L>,
    L: RateLimiter,
{
    let quota = RateQuota::new(5, Duration::from_secs(10)).unwrap();
    let limiter = make(quota).await;
    let k = key("burst");
    for i in 0..5 {
        assert_eq!(
            limiter.check(&k, 1).await.unwrap(),
            RateDecision::Allowed,
            "attempt {i} of the burst"
        );
    }
    let wait = limited(limiter.check(&k, 1).await.unwrap());
    // One emission interval (2 s) minus the time the burst took.
    assert!(wait > Duration::from_millis(1_000), "{wait:?}");
    assert!(wait <= Duration::from_secs(2), "{wait:?}");
}

/// Waiting the advised time is enough to be admitted again.
pub async fn retry_after_is_honoured<F, Fut, L>(make: &F)
where
    F: Fn(RateQuota) -> Fut,
    Fut: Future<Output = L>,
    L: RateLimiter,
{
    let quota = RateQuota::new(2, Duration::from_millis(400)).unwrap();
    let limiter = make(quota).await;
    let k = key("retry");
    limiter.check(&k, 1).await.unwrap();
    limiter.check(&k, 1).await.unwrap();
    let wait = limited(limiter.check(&k, 1).await.unwrap());
    assert!(wait <= Duration::from_millis(200), "{wait:?}");
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    assert_eq!(limiter.check(&k, 1).await.unwrap(), RateDecision::Allowed);
    // Steady state: one more per emission interval, not a new burst.
    assert!(matches!(
        limiter.check(&k, 1).await.unwrap(),
        RateDecision::Limited { .. }
    ));
}

/// One key's exhaustion does not affect another.
pub async fn keys_are_independent<F, Fut, L>(make: &F)
where
    F: Fn(RateQuota) -> Fut,
    Fut: Future<Output = L>,
    L: RateLimiter,
{
    let quota = RateQuota::new(1, Duration::from_secs(60)).unwrap();
    let limiter = make(quota).await;
    let (a, b) = (key("a"), key("b"));
    assert_eq!(limiter.check(&a, 1).await.unwrap(), RateDecision::Allowed);
    limited(limiter.check(&a, 1).await.unwrap());
    assert_eq!(limiter.check(&b, 1).await.unwrap(), RateDecision::Allowed);
}

/// Refused attempts are not charged: hammering does not push the wait out.
pub async fn refusals_are_not_charged<F, Fut, L>(make: &F)
where
    F: Fn(RateQuota) -> Fut,
    Fut: Future<Output = L>,
    L: RateLimiter,
{
    let quota = RateQuota::new(1, Duration::from_secs(5)).unwrap();
    let limiter = make(quota).await;
    let k = key("hammer");
    limiter.check(&k, 1).await.unwrap();
    let first = limited(limiter.check(&k, 1).await.unwrap());
    let mut last = first;
    for _ in 0..50 {
        last = limited(limiter.check(&k, 1).await.unwrap());
    }
    assert!(
        last <= first,
        "refusals were charged: {first:?} -> {last:?}"
    );
}

/// A cost of `n` uses `n` of the burst.
pub async fn cost_is_charged<F, Fut, L>(make: &F)
where
    F: Fn(RateQuota) -> Fut,
    Fut: Future<Output = L>,
    L: RateLimiter,
{
    let quota = RateQuota::new(5, Duration::from_secs(60)).unwrap();
    let limiter = make(quota).await;
    let k = key("cost");
    assert_eq!(limiter.check(&k, 3).await.unwrap(), RateDecision::Allowed);
    limited(limiter.check(&k, 3).await.unwrap());
    assert_eq!(limiter.check(&k, 2).await.unwrap(), RateDecision::Allowed);
    limited(limiter.check(&k, 1).await.unwrap());
    // More than the whole burst can never be admitted.
    limited(limiter.check(&key("huge"), 6).await.unwrap());
}
