//! [`RedisOptions`]: where a Redis backend connects, under which prefix,
//! with which timeouts and durability.

use std::time::Duration;

use super::durability::WaitReplicas;
#[cfg(doc)]
use super::{Durability, RedisStockStore};
use crate::error::{Error, Result};

/// Where the Redis data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One standalone server (or a primary behind a proxy), by URL:
    /// `redis://[user:password@]host:port[/db]`.
    Single(String),
    /// A Redis Cluster, by the URLs of one or more of its nodes (the rest
    /// are discovered).
    Cluster(Vec<String>),
}

/// How to connect a Redis backend. Start with [`RedisOptions::single`] or
/// [`RedisOptions::cluster`]; the defaults suit production.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct RedisOptions {
    pub(crate) target: RedisTarget,
    pub(crate) prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) record_ttl: Duration,
    pub(crate) replay_claim_ttl: Duration,
    pub(crate) lazy: bool,
    pub(crate) wait: Option<WaitReplicas>,
    pub(crate) require_durable: bool,
}

impl RedisOptions {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "flashsale";
    /// The default retention of idempotency keys and finished reservations.
    pub const DEFAULT_RECORD_TTL: Duration = Duration::from_secs(24 * 3600);

    fn new(target: RedisTarget) -> Self {
        Self {
            target,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(5),
            record_ttl: Self::DEFAULT_RECORD_TTL,
            replay_claim_ttl: crate::DEFAULT_REPLAY_CLAIM_TTL,
            lazy: false,
            wait: None,
            require_durable: false,
        }
    }

    /// One standalone server at `url`.
    pub fn single(url: impl Into<String>) -> Self {
        Self::new(RedisTarget::Single(url.into()))
    }

    /// A Redis Cluster reachable through any of `urls`.
    pub fn cluster<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(RedisTarget::Cluster(
            urls.into_iter().map(Into::into).collect(),
        ))
    }

    /// The key prefix (default `flashsale`): every key this backend writes
    /// starts with it (or with `{` followed by it). Instances with different
    /// prefixes share nothing. It must be non-empty, at most 64 bytes, and
    /// contain no `{`, `}` or whitespace.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Longest wait for a TCP connection to be made (default 1 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Longest wait for one reply (default 5 s): a backstop that notices a
    /// hung connection. For purchases the engine's own, shorter
    /// `port_timeout` is the bound that matters; a burst of thousands of
    /// concurrent calls can queue for over a second on a small machine, so
    /// keep this well above it.
    pub fn response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d;
        self
    }

    /// How long idempotency keys and finished (sold, cancelled, expired,
    /// voided) reservations are kept after they finish (default 24 h): an
    /// idempotency key replays its purchase at least this long. The
    /// sweeper ([`StockStore::expire`](crate::StockStore::expire)) purges
    /// them afterwards. Events waiting in the outbox are not affected: they
    /// stay until the relay delivers them. Only used by
    /// [`RedisStockStore`].
    pub fn record_ttl(mut self, d: Duration) -> Self {
        self.record_ttl = d;
        self
    }

    /// How long a same-request replay's claim on the order it was answered
    /// with is kept (default
    /// [`DEFAULT_REPLAY_CLAIM_TTL`](crate::DEFAULT_REPLAY_CLAIM_TTL)):
    /// as long as that replay's own void may still arrive. The engine
    /// refuses to build when its `void_retry_for` does not fit in it. Only
    /// used by [`RedisStockStore`].
    pub fn replay_claim_ttl(mut self, d: Duration) -> Self {
        self.replay_claim_ttl = d;
        self
    }

    /// Standalone only: do not connect until the first call (default:
    /// connect, and fail, at construction). A lazy backend starts even
    /// while Redis is down; its calls fail until Redis answers.
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    /// After each reserve that places an order, send `WAIT replicas
    /// timeout` to the primary that ran it (on a cluster, the master of the
    /// product's slot) and answer the purchase only once at least
    /// `replicas` replicas have the order (default: off). Fewer within
    /// `timeout` fails the reserve, so the engine voids it and answers 503:
    /// the buyer owns nothing. For replicated setups whose failover can
    /// promote a replica (Sentinel, Cluster), where a 200 otherwise only
    /// means "in the primary's memory". See [`Durability`].
    ///
    /// Costs one more round trip per purchase plus the replicas' lag, and
    /// the `WAIT` holds the shared connection meanwhile: other calls on
    /// this store queue behind it, up to `timeout` while replicas are
    /// missing. Keep `timeout` short (tens of milliseconds), at least 1 ms
    /// and below [`response_timeout`](Self::response_timeout) and the
    /// engine's port timeout. `replicas` must be at least 1. Only used by
    /// [`RedisStockStore`].
    pub fn wait_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = Some(WaitReplicas { replicas, timeout });
        self
    }

    /// Refuse to connect unless the store can tell that an answered
    /// purchase survives a crash ([`Durability::is_durable`]): AOF with
    /// `appendfsync always` on every primary, or
    /// [`wait_replicas`](Self::wait_replicas). Default `false`: connect and
    /// log a warning. Needs a connection at start, so it cannot be combined
    /// with [`lazy`](Self::lazy) unless `wait_replicas` is set. Only used
    /// by [`RedisStockStore`].
    pub fn require_durable(mut self, require: bool) -> Self {
        self.require_durable = require;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        super::durability::validate(self)?;
        let p = &self.prefix;
        if p.is_empty()
            || p.len() > 64
            || p.chars()
                .any(|c| matches!(c, '{' | '}' | '|') || c.is_whitespace() || c.is_control())
        {
            // `|` ends the prefix in every key, so no two prefixes share one.
            return Err(Error::Config(format!(
                "redis key prefix {p:?} must be 1-64 bytes with no braces, `|` or whitespace"
            )));
        }
        match &self.target {
            RedisTarget::Single(url) if url.is_empty() => {
                Err(Error::Config("the redis URL is empty".into()))
            }
            RedisTarget::Cluster(urls) if urls.is_empty() => Err(Error::Config(
                "a redis cluster needs at least one node URL".into(),
            )),
            _ if self.connect_timeout.is_zero() || self.response_timeout.is_zero() => {
                Err(Error::Config("redis timeouts must be above zero".into()))
            }
            _ => Ok(()),
        }
    }
}
