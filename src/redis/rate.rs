//! [`RedisRateLimiter`]: GCRA in one Lua script per check, on the server's
//! clock.

use std::sync::LazyLock;
use std::time::Duration;

use ::redis::Script;
use async_trait::async_trait;

use super::conn::Conn;
use super::{RedisOptions, backend_err, bad_reply};
use crate::error::Result;
use crate::model::RateQuota;
use crate::{RateDecision, RateLimiter};

static GCRA: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../backends/redis/gcra.lua")));

/// A keyed GCRA limiter shared by every app instance using the same Redis
/// and prefix.
///
/// Each check is one script (one round trip) that reads the server's clock
/// (`TIME`), so instances with skewed clocks still agree. A key holds one
/// timestamp and expires as soon as it has fully replenished, so idle
/// buyers cost no memory. Refused attempts write nothing.
///
/// # Clock steps on the Redis host
///
/// `TIME` is the Redis host's wall clock, and the stored timestamps are
/// wall-clock times, so a step of that clock (NTP, a resumed VM, or a
/// failover to a replica whose clock differs) acts on every key:
///
/// * a step **back** by Δ puts every recently used key's timestamp up to Δ
///   in the future: those buyers are refused, with a `Retry-After` of about
///   Δ, until the clock catches up (keys idle for a full period are
///   unaffected, having expired);
/// * a step **forward** by Δ makes every key look Δ older: quotas
///   replenish early, by up to a full burst, once.
///
/// Keep the Redis hosts' clocks slewed, not stepped (e.g. chrony with
/// `makestep` limited to boot). The in-process `MemoryRateLimiter` (cargo
/// feature `memory`) measures monotonic time instead and is immune.
///
/// Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    conn: Conn,
    prefix: String,
    quota: RateQuota,
    interval_us: u64,
}

impl RedisRateLimiter {
    /// Connects to the standalone Redis at `url`, enforcing `quota` per key
    /// under `prefix`. Fails if Redis does not answer.
    pub async fn connect(url: &str, prefix: &str, quota: RateQuota) -> Result<Self> {
        Self::with_options(RedisOptions::single(url).prefix(prefix), quota).await
    }

    /// Connects to the Redis Cluster reachable through any of `urls`.
    pub async fn connect_cluster(urls: &[&str], prefix: &str, quota: RateQuota) -> Result<Self> {
        Self::with_options(
            RedisOptions::cluster(urls.iter().copied()).prefix(prefix),
            quota,
        )
        .await
    }

    /// Connects with explicit options.
    pub async fn with_options(opts: RedisOptions, quota: RateQuota) -> Result<Self> {
        let conn = Conn::connect(&opts).await?;
        if !opts.lazy {
            conn.preload(&[&GCRA]).await?;
        }
        let interval_us =
            u64::try_from(quota.emission_interval().as_micros().max(1)).unwrap_or(u64::MAX);
        Ok(Self {
            conn,
            prefix: opts.prefix,
            quota,
            interval_us,
        })
    }

    /// The quota enforced per key.
    pub fn quota(&self) -> RateQuota {
        self.quota
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, cost: u32) -> Result<RateDecision> {
        const OP: &str = "rate_check";
        let cost = cost.max(1);
        if cost > self.quota.count() {
            // More than a whole burst can never be admitted: say when a full
            // burst will have replenished (as the in-memory limiter does),
            // without a round trip.
            return Ok(RateDecision::Limited {
                retry_after: self.quota.period().max(Duration::from_millis(1)),
            });
        }
        let mut inv = GCRA.key(format!("{}|rate:{}", self.prefix, key));
        inv.arg(self.interval_us).arg(self.quota.count()).arg(cost);
        let reply: Vec<i64> = self.conn.script(&inv).await.map_err(backend_err(OP))?;
        match reply.as_slice() {
            [1, _] => Ok(RateDecision::Allowed),
            [0, wait_us] => Ok(RateDecision::Limited {
                retry_after: Duration::from_micros(u64::try_from(*wait_us).unwrap_or(0).max(1)),
            }),
            _ => Err(bad_reply(OP, format!("{reply:?}"))),
        }
    }

    async fn ping(&self) -> Result<()> {
        self.conn.ping("ping").await
    }
}
