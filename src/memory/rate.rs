//! An in-process keyed GCRA [`RateLimiter`] on `governor`, driven by the
//! engine's [`Clock`] so tests can move time by hand.
//!
//! It runs on the clock's [monotonic](Clock::monotonic) time: a limit only
//! measures time passing inside this process, so a wall-clock step (NTP, a
//! resumed VM) must neither refuse recent keys nor replenish quotas early.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Gcra};

use crate::clock::{Clock, SystemClock};
use crate::error::Result;
use crate::fast_hash::RandomState;
use crate::model::{InvalidInput, RateQuota};
use crate::{RateDecision, RateLimiter};

/// Every this many checks, keys whose state has fully replenished are
/// evicted, so memory follows the number of recently active keys.
const EVICT_EVERY: u64 = 4_096;

/// How many times a refusal whose wait is already over (a stale clock
/// reading) is checked again before it is answered.
const MAX_RECHECKS: u32 = 3;

/// Adapts a [`Clock`]'s monotonic time to governor's clock trait. Not the
/// wall clock: a step back of Δ there would put every recent key's state Δ
/// in the future and refuse it for about Δ.
#[derive(Debug, Clone)]
struct ClockAdapter(Arc<dyn Clock>);

impl GovernorClock for ClockAdapter {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.0.monotonic())
    }
}

/// A keyed GCRA limiter held in memory. Idle keys are evicted, so memory
/// stays bounded by the keys active within one period.
pub struct MemoryRateLimiter {
    gcra: Gcra<String, DashMapStateStore<String, RandomState>, ClockAdapter, NoOpMiddleware<Nanos>>,
    quota: RateQuota,
    clock: ClockAdapter,
    checks: AtomicU64,
}

impl std::fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("quota", &self.quota)
            .field("keys", &self.gcra.len())
            .finish()
    }
}

impl MemoryRateLimiter {
    /// A limiter enforcing `quota` per key, on the system clock.
    pub fn new(quota: RateQuota) -> Self {
        Self::with_clock(quota, Arc::new(SystemClock))
    }

    /// `count` attempts per second per key.
    pub fn per_second(count: u32) -> std::result::Result<Self, InvalidInput> {
        Ok(Self::new(RateQuota::per_second(count)?))
    }

    /// A limiter on `clock`'s monotonic time (use a
    /// [`ManualClock`](crate::ManualClock) in tests: its `advance` moves the
    /// limiter's time, its `set` does not).
    pub fn with_clock(quota: RateQuota, clock: Arc<dyn Clock>) -> Self {
        let burst = NonZeroU32::new(quota.count()).expect("RateQuota guarantees count >= 1");
        let gq = Quota::with_period(quota.emission_interval())
            .expect("RateQuota guarantees a non-zero interval")
            .allow_burst(burst);
        let clock = ClockAdapter(clock);
        Self {
            gcra: Gcra::dashmap_with_clock_and_hasher(gq, clock.clone(), RandomState::default()),
            quota,
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// The quota enforced per key.
    pub fn quota(&self) -> RateQuota {
        self.quota
    }

    /// How many keys are tracked right now.
    pub fn tracked_keys(&self) -> usize {
        self.gcra.len()
    }

    /// Evicts keys whose state has fully replenished (done automatically
    /// every few thousand checks).
    pub fn evict_idle(&self) {
        self.gcra.retain_recent();
        self.gcra.shrink_to_fit();
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, key: &str, cost: u32) -> Result<RateDecision> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % EVICT_EVERY == EVICT_EVERY - 1 {
            self.evict_idle();
        }
        let n = NonZeroU32::new(cost.max(1)).expect("max(1) is non-zero");
        let key = key.to_owned();
        let mut rechecks = 0;
        Ok(loop {
            match self.gcra.check_key_n(&key, n) {
                Ok(Ok(())) => break RateDecision::Allowed,
                Ok(Err(not_until)) => {
                    // The check read the clock before it saw the key's state; if
                    // the thread was preempted in between while other requests of
                    // the key went ahead, a buyer inside the quota looks early.
                    // A refusal stands only if a fresh reading agrees.
                    let retry_after = not_until.wait_time_from(self.clock.now());
                    if retry_after.is_zero() && rechecks < MAX_RECHECKS {
                        rechecks += 1;
                        continue;
                    }
                    break RateDecision::Limited { retry_after };
                }
                // More than the burst at once can never be admitted; say when a
                // full burst will have replenished, which is the best a caller
                // can do.
                Err(_) => {
                    break RateDecision::Limited {
                        retry_after: self.quota.period().max(Duration::from_millis(1)),
                    };
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::model::Timestamp;

    #[tokio::test]
    async fn idle_keys_are_evicted_so_memory_stays_bounded() {
        let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
        let quota = RateQuota::new(3, Duration::from_secs(1)).unwrap();
        let limiter = MemoryRateLimiter::with_clock(quota, Arc::new(clock.clone()));
        for i in 0..500 {
            limiter.check(&format!("bot-{i}"), 1).await.unwrap();
        }
        assert_eq!(limiter.tracked_keys(), 500);
        // Still inside their replenish window: kept.
        limiter.evict_idle();
        assert_eq!(limiter.tracked_keys(), 500);
        clock.advance(Duration::from_secs(1));
        limiter.evict_idle();
        assert_eq!(limiter.tracked_keys(), 0);
    }

    #[tokio::test]
    async fn eviction_runs_by_itself_every_few_thousand_checks() {
        let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
        let quota = RateQuota::new(1, Duration::from_millis(10)).unwrap();
        let limiter = MemoryRateLimiter::with_clock(quota, Arc::new(clock.clone()));
        for i in 0..(2 * EVICT_EVERY) {
            clock.advance(Duration::from_millis(1));
            limiter.check(&format!("k{i}"), 1).await.unwrap();
        }
        // Only keys touched in the last 10 ms can still be tracked, plus
        // those since the last automatic sweep.
        assert!(
            limiter.tracked_keys() <= EVICT_EVERY as usize,
            "{} keys tracked",
            limiter.tracked_keys()
        );
    }

    /// A manual clock whose next monotonic reading is `lag` old: a `now`
    /// read just before the thread was preempted, while other requests of
    /// the same key went ahead.
    #[derive(Debug)]
    struct LaggingOnce {
        clock: ManualClock,
        lag: parking_lot::Mutex<Option<Duration>>,
    }

    impl Clock for LaggingOnce {
        fn now(&self) -> Timestamp {
            self.clock.now()
        }
        fn monotonic(&self) -> Duration {
            let m = self.clock.monotonic();
            self.lag.lock().take().map_or(m, |lag| m - lag)
        }
    }

    /// A buyer well inside `1000/1ms` whose check read the clock 2 ms
    /// before another of its requests updated the state is admitted: the
    /// refusal is re-checked against a fresh reading. One over the quota is
    /// still refused.
    #[tokio::test]
    async fn a_stale_clock_reading_never_refuses_a_buyer_inside_the_quota() {
        let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
        let lagging = Arc::new(LaggingOnce {
            clock: clock.clone(),
            lag: parking_lot::Mutex::new(None),
        });
        let quota: RateQuota = "1000/1ms".parse().unwrap();
        let limiter = MemoryRateLimiter::with_clock(quota, lagging.clone());
        // The limiter has run a while (its start is not in the lag).
        clock.advance(Duration::from_millis(10));
        assert_eq!(limiter.check("u", 1).await.unwrap(), RateDecision::Allowed);
        *lagging.lag.lock() = Some(Duration::from_millis(2));
        assert_eq!(limiter.check("u", 1).await.unwrap(), RateDecision::Allowed);
        for _ in 0..998 {
            assert_eq!(limiter.check("u", 1).await.unwrap(), RateDecision::Allowed);
        }
        assert!(matches!(
            limiter.check("u", 1).await.unwrap(),
            RateDecision::Limited { retry_after } if !retry_after.is_zero()
        ));
    }

    #[tokio::test]
    async fn a_wall_clock_step_back_neither_limits_recent_keys_nor_lifts_limits() {
        let clock = ManualClock::new(Timestamp::from_millis(10_000_000));
        let quota: RateQuota = "3/1m".parse().unwrap();
        let limiter = MemoryRateLimiter::with_clock(quota, Arc::new(clock.clone()));
        // The process has run for a while before the step (a step back to
        // before the limiter was built would hide the fault).
        clock.advance(Duration::from_secs(3_600));
        let start = clock.now();
        assert_eq!(limiter.check("u", 1).await.unwrap(), RateDecision::Allowed);
        assert_eq!(
            limiter.check("full", 3).await.unwrap(),
            RateDecision::Allowed
        );
        // NTP steps the wall clock back 10 minutes; no time passes.
        clock.set(Timestamp::from_millis(start.as_millis() - 600_000));
        // "u" used 1 of its 3: still admitted, not refused for ~10 min.
        for _ in 0..2 {
            assert_eq!(limiter.check("u", 1).await.unwrap(), RateDecision::Allowed);
        }
        assert_eq!(
            limiter.check("u", 1).await.unwrap(),
            RateDecision::Limited {
                retry_after: Duration::from_secs(20)
            }
        );
        // And limits still hold, measured on monotonic time.
        let RateDecision::Limited { retry_after } = limiter.check("full", 1).await.unwrap() else {
            panic!("a spent quota was admitted after the step")
        };
        assert_eq!(retry_after, Duration::from_secs(20));
        clock.advance(retry_after);
        assert_eq!(
            limiter.check("full", 1).await.unwrap(),
            RateDecision::Allowed
        );
        // A step forward does not replenish quotas early either.
        clock.set(Timestamp::from_millis(start.as_millis() + 3_600_000));
        assert!(matches!(
            limiter.check("full", 1).await.unwrap(),
            RateDecision::Limited { .. }
        ));
    }

    #[tokio::test]
    async fn retry_after_follows_the_injected_clock() {
        let clock = ManualClock::new(Timestamp::from_millis(5_000));
        let quota: RateQuota = "2/1m".parse().unwrap();
        let limiter = MemoryRateLimiter::with_clock(quota, Arc::new(clock.clone()));
        for _ in 0..2 {
            assert_eq!(limiter.check("u", 1).await.unwrap(), RateDecision::Allowed);
        }
        let RateDecision::Limited { retry_after } = limiter.check("u", 1).await.unwrap() else {
            panic!("third attempt admitted")
        };
        assert_eq!(retry_after, Duration::from_secs(30));
        clock.advance(Duration::from_secs(10));
        let RateDecision::Limited { retry_after } = limiter.check("u", 1).await.unwrap() else {
            panic!("admitted too early")
        };
        assert_eq!(retry_after, Duration::from_secs(20));
        clock.advance(retry_after);
        assert_eq!(limiter.check("u", 1).await.unwrap(), RateDecision::Allowed);
    }
}
