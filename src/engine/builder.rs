//! Assembling an [`Engine`] from its ports and settings.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::machine::{HandOff, MachineConfig};
use crate::metrics::EngineMetrics;
use crate::{Authenticator, OrderSink, RateLimiter, StockStore};

use super::product_cache::ProductCache;
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
    /// How long [`Engine::product`](super::Engine::product) reuses a
    /// product's terms and levels (default 250 ms; zero reads the store
    /// every time). It holds as many products as the sale cache.
    pub product_staleness: Duration,
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
            product_staleness: Duration::from_millis(250),
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
    /// How long claimed events stay invisible to other relays (default
    /// 90 s). A relay that dies holding a batch delays it by up to this
    /// long.
    ///
    /// Must exceed the longest a pass can take, or a slow pass could still
    /// be delivering its batch after another relay claimed it, and an
    /// order's `placed` could reach the sink after its `cancelled`. A pass
    /// is the claim ([`EngineConfig::port_timeout`]), the submit
    /// (`submit_timeout`), then the longer of the ack (a port timeout) and
    /// the sink's late deliveries ([`OrderSink::delivery_timeout`]; the
    /// Kafka sink's 60 s by default). [`EngineBuilder::build`] checks it. The default fits the defaults
    /// (2 s + 10 s + 60 s) with 18 s to spare; the more to spare, the
    /// longer after its claim a batch whose submit failed is still resent
    /// at once rather than left to lapse (see
    /// [`Engine::relay_once`](super::Engine::relay_once)).
    pub lease: Duration,
    /// Longest wait for the sink to acknowledge one batch.
    pub submit_timeout: Duration,
}

impl RelayConfig {
    /// The longest a pass can still be delivering a batch it holds, from
    /// the moment it holds it (the claim returned, or a resend starts):
    /// the submit, then either the ack (a port timeout) or, after a failed
    /// or abandoned submit, the sink's late deliveries
    /// ([`OrderSink::delivery_timeout`]). Never both: a submit that
    /// succeeded left nothing in flight.
    pub(super) fn delivery_window(
        &self,
        port_timeout: Duration,
        sink_delivery_timeout: Option<Duration>,
    ) -> Duration {
        let after_submit = port_timeout.max(sink_delivery_timeout.unwrap_or(Duration::ZERO));
        self.submit_timeout.saturating_add(after_submit)
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            // Above 2 s claim + 10 s submit + 60 s of Kafka's late
            // deliveries.
            lease: Duration::from_secs(90),
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

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The ports are trait objects: say which are set.
        f.debug_struct("EngineBuilder")
            .field("stock_store", &self.stock.is_some())
            .field("rate_limiter", &self.limiter.is_some())
            .field("order_sink", &self.sink.is_some())
            .field("authenticator", &self.auth.is_some())
            .field("clock", &self.clock.is_some())
            .field("config", &self.config)
            .finish()
    }
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
    /// How long product pages reuse a product's terms and levels (default
    /// 250 ms; zero: never cached).
    pub fn product_staleness(mut self, d: Duration) -> Self {
        self.config.product_staleness = d;
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
        check_lease(c, self.sink.as_ref().and_then(|s| s.delivery_timeout()))?;
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
        let stock = self.stock.ok_or_else(|| missing("stock store"))?;
        // A replay's claim must outlive every void that can still arrive for
        // it (the first attempt and its background retries).
        let voids_for = c.void_retry_for + c.port_timeout * 2;
        if stock.replay_claim_ttl() <= voids_for {
            return Err(Error::Config(format!(
                "the stock store keeps replay claims for {:?}, not longer than void_retry_for \
                 plus two port timeouts ({voids_for:?}): a late void could undo an order a \
                 replay was answered with. Raise the store's replay_claim_ttl or lower \
                 void_retry_for",
                stock.replay_claim_ttl()
            )));
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                stock,
                limiter: self.limiter.ok_or_else(|| missing("rate limiter"))?,
                sink: self.sink.ok_or_else(|| missing("order sink"))?,
                auth: self.auth.ok_or_else(|| missing("authenticator"))?,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                sales: SaleCache::new(self.config.sale_cache_ttl, self.config.sale_cache_capacity),
                products: ProductCache::new(
                    self.config.product_staleness,
                    self.config.sale_cache_capacity,
                ),
                config: self.config,
                relay_wake: tokio::sync::Notify::new(),
                relay_retry: parking_lot::Mutex::new(None),
                metrics: EngineMetrics::new(self.config.stock_gauge_products),
            }),
        })
    }
}

/// Refuses a relay lease that a whole pass can outlast (see
/// [`RelayConfig::lease`]), saying what to change.
fn check_lease(c: &EngineConfig, sink_delivery_timeout: Option<Duration>) -> Result<()> {
    let lease = c.relay.lease;
    let pass = c.port_timeout.saturating_add(
        c.relay
            .delivery_window(c.port_timeout, sink_delivery_timeout),
    );
    if lease > pass {
        return Ok(());
    }
    let why = "or a slow relay pass could still be delivering its batch when another relay \
               claims it, and an order's events could reach the sink out of order";
    Err(Error::Config(match sink_delivery_timeout {
        Some(Duration::MAX) => format!(
            "the order sink sets no delivery timeout (its late deliveries have no bound, e.g. \
             Kafka's delivery.timeout.ms=0), so no RelayConfig::lease ({lease:?}) covers a relay \
             pass; give the sink one (KafkaOptions::delivery_timeout) well below the lease, {why}"
        ),
        Some(late) if late > c.port_timeout => format!(
            "RelayConfig::lease ({lease:?}) must exceed a whole relay pass: the claim (port \
             timeout {:?}), the submit (RelayConfig::submit_timeout {:?}) and the order sink's \
             late deliveries (its delivery timeout {late:?}, for Kafka \
             KafkaOptions::delivery_timeout), {pass:?} in all; raise the lease above {pass:?} or \
             shorten those timeouts, {why}",
            c.port_timeout, c.relay.submit_timeout
        ),
        _ => format!(
            "RelayConfig::lease ({lease:?}) must exceed a whole relay pass: the claim and the ack \
             (a port timeout each, {:?}) and the submit (RelayConfig::submit_timeout {:?}), \
             {pass:?} in all; raise the lease above {pass:?} or shorten those timeouts, {why}",
            c.port_timeout, c.relay.submit_timeout
        ),
    }))
}
