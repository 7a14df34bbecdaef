//! Assembling an [`Engine`] from its ports and settings.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::machine::{HandOff, MachineConfig};
use crate::metrics::EngineMetrics;
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
    /// About how many products' terms the sale cache holds (answers that a
    /// product does not exist included). Eviction is scan-resistant: ids
    /// asked for once (a bot cycling random ids) do not push out the sales
    /// buyers keep asking for.
    pub sale_cache_capacity: usize,
    /// The purchase flow's own tunables.
    pub machine: MachineConfig,
    /// Most holds the sweeper expires per store call.
    pub sweep_batch: usize,
    /// The outbox relay's settings.
    pub relay: RelayConfig,
    /// How long a failed void (of a reserve whose answer was lost) is
    /// retried in the background before it is given up and logged as an
    /// error.
    pub void_retry_for: Duration,
    /// How many products get [`STOCK_UNITS`](crate::metrics::STOCK_UNITS)
    /// gauges: the first this many products whose levels the engine reads
    /// ([`Engine::snapshot`](super::Engine::snapshot)) keep a series; the
    /// gauges of later ones are not recorded, so the exporter's memory
    /// stays bounded whatever ids clients ask for. `0` records none.
    /// Default [`DEFAULT_STOCK_GAUGE_PRODUCTS`](crate::metrics::DEFAULT_STOCK_GAUGE_PRODUCTS)
    /// (100).
    pub stock_gauge_products: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            port_timeout: Duration::from_secs(2),
            sale_cache_ttl: Duration::from_secs(1),
            sale_cache_capacity: 10_000,
            machine: MachineConfig::default(),
            sweep_batch: 1_000,
            relay: RelayConfig::default(),
            void_retry_for: Duration::from_secs(600),
            stock_gauge_products: crate::metrics::DEFAULT_STOCK_GAUGE_PRODUCTS,
        }
    }
}

/// The outbox relay's settings (see [`Engine::spawn_relay`](super::Engine::spawn_relay)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayConfig {
    /// Most events claimed, and submitted to the sink, per pass.
    pub batch: usize,
    /// How long claimed events stay invisible to other relays. Must exceed
    /// `submit_timeout` plus a port timeout (the ack), or a slow pass lets
    /// another relay deliver the same events again.
    pub lease: Duration,
    /// Longest wait for the sink to acknowledge one batch.
    pub submit_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            lease: Duration::from_secs(30),
            submit_timeout: Duration::from_secs(10),
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
    /// When a purchase answers relative to the sink (default
    /// [`HandOff::Outbox`]).
    pub fn hand_off(mut self, h: HandOff) -> Self {
        self.config.machine.hand_off = h;
        self
    }
    /// The outbox relay's settings.
    pub fn relay(mut self, r: RelayConfig) -> Self {
        self.config.relay = r;
        self
    }
    /// How long fetched sale terms are reused (zero: never cached).
    pub fn sale_cache_ttl(mut self, d: Duration) -> Self {
        self.config.sale_cache_ttl = d;
        self
    }
    /// About how many products' terms the sale cache holds (default
    /// 10,000).
    pub fn sale_cache_capacity(mut self, n: usize) -> Self {
        self.config.sale_cache_capacity = n;
        self
    }

    /// How many products get per-product stock gauges (default 100; see
    /// [`EngineConfig::stock_gauge_products`]).
    pub fn stock_gauge_products(mut self, n: usize) -> Self {
        self.config.stock_gauge_products = n;
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
        if let HandOff::AwaitSink { timeout } = c.machine.hand_off
            && timeout.is_zero()
        {
            return Err(Error::Config(
                "HandOff::AwaitSink needs a timeout above zero".into(),
            ));
        }
        if c.relay.lease <= c.relay.submit_timeout + c.port_timeout {
            return Err(Error::Config(format!(
                "the relay lease ({:?}) must exceed its submit timeout plus a port timeout \
                 ({:?}), or a slow relay pass lets another relay deliver the same events again",
                c.relay.lease,
                c.relay.submit_timeout + c.port_timeout
            )));
        }
        if c.machine.rate_cost == 0
            || c.sweep_batch == 0
            || c.relay.batch == 0
            || c.sale_cache_capacity == 0
        {
            return Err(Error::Config(
                "rate_cost, sweep_batch, relay.batch and sale_cache_capacity must be at least 1"
                    .into(),
            ));
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                stock: self.stock.ok_or_else(|| missing("stock store"))?,
                limiter: self.limiter.ok_or_else(|| missing("rate limiter"))?,
                sink: self.sink.ok_or_else(|| missing("order sink"))?,
                auth: self.auth.ok_or_else(|| missing("authenticator"))?,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                sales: SaleCache::new(self.config.sale_cache_ttl, self.config.sale_cache_capacity),
                config: self.config,
                relay_wake: tokio::sync::Notify::new(),
                relay_retry: parking_lot::Mutex::new(None),
                metrics: EngineMetrics::new(self.config.stock_gauge_products),
            }),
        })
    }
}
