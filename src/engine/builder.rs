//! Assembling an [`Engine`] from its ports and settings.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::machine::MachineConfig;
use crate::ports::{Authenticator, OrderSink, RateLimiter, StockStore};

use super::sale_cache::SaleCache;
use super::{Engine, Inner};

/// The engine's settings. [`Default`] gives production-sensible values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Longest wait for any single port call; past it the call counts as
    /// failed, the attempt ends `Unavailable` and nothing stays reserved.
    pub port_timeout: Duration,
    /// How long fetched sale terms are reused for validation.
    pub sale_cache_ttl: Duration,
    /// The purchase flow's own tunables.
    pub machine: MachineConfig,
    /// Most holds the sweeper expires per store call.
    pub sweep_batch: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            port_timeout: Duration::from_secs(2),
            sale_cache_ttl: Duration::from_secs(1),
            machine: MachineConfig::default(),
            sweep_batch: 1_000,
        }
    }
}

/// Builds an [`Engine`]. All four ports are required.
#[derive(Default)]
#[must_use]
pub struct EngineBuilder {
    stock: Option<Arc<dyn StockStore>>,
    limiter: Option<Arc<dyn RateLimiter>>,
    sink: Option<Arc<dyn OrderSink>>,
    auth: Option<Arc<dyn Authenticator>>,
    clock: Option<Arc<dyn Clock>>,
    config: EngineConfig,
}

impl EngineBuilder {
    /// Where sales, stock and reservations live.
    pub fn stock_store(mut self, s: Arc<dyn StockStore>) -> Self {
        self.stock = Some(s);
        self
    }
    /// Who throttles buyers.
    pub fn rate_limiter(mut self, l: Arc<dyn RateLimiter>) -> Self {
        self.limiter = Some(l);
        self
    }
    /// Where accepted orders go.
    pub fn order_sink(mut self, s: Arc<dyn OrderSink>) -> Self {
        self.sink = Some(s);
        self
    }
    /// Who verifies credentials.
    pub fn authenticator(mut self, a: Arc<dyn Authenticator>) -> Self {
        self.auth = Some(a);
        self
    }
    /// The time source (default: the system clock).
    pub fn clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = Some(c);
        self
    }
    /// All settings at once.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }
    /// Longest wait for any single port call.
    pub fn port_timeout(mut self, d: Duration) -> Self {
        self.config.port_timeout = d;
        self
    }
    /// How long a reservation of a sale without holds may stay uncommitted
    /// (must exceed five port timeouts).
    pub fn pending_ttl(mut self, d: Duration) -> Self {
        self.config.machine.pending_ttl = d;
        self
    }
    /// How long fetched sale terms are reused (zero: never cached).
    pub fn sale_cache_ttl(mut self, d: Duration) -> Self {
        self.config.sale_cache_ttl = d;
        self
    }

    /// Checks the settings and builds the engine.
    pub fn build(self) -> Result<Engine> {
        let missing = |what: &str| {
            Error::Config(format!(
                "the engine needs a {what}; call EngineBuilder::{}",
                what.replace(' ', "_")
            ))
        };
        let c = &self.config;
        if c.port_timeout.is_zero() {
            return Err(Error::Config("port_timeout must be above zero".into()));
        }
        // A purchase makes up to five port calls before it commits (sale
        // lookup, authenticate, rate check, reserve, submit).
        if c.machine.pending_ttl <= c.port_timeout * 5 {
            return Err(Error::Config(format!(
                "pending_ttl ({:?}) must exceed five port timeouts ({:?}) so that a slow \
                 purchase is not swept before it commits",
                c.machine.pending_ttl,
                c.port_timeout * 5
            )));
        }
        if c.machine.rate_cost == 0 || c.sweep_batch == 0 {
            return Err(Error::Config(
                "rate_cost and sweep_batch must be at least 1".into(),
            ));
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                stock: self.stock.ok_or_else(|| missing("stock store"))?,
                limiter: self.limiter.ok_or_else(|| missing("rate limiter"))?,
                sink: self.sink.ok_or_else(|| missing("order sink"))?,
                auth: self.auth.ok_or_else(|| missing("authenticator"))?,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                sales: SaleCache::new(self.config.sale_cache_ttl),
                config: self.config,
            }),
        })
    }
}
