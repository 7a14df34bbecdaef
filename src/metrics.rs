//! Metrics, through the [`metrics`] facade: the engine records,
//! the application picks the exporter.
//!
//! The crate never installs a recorder. To export its metrics, install one
//! at start-up, **before the engine serves traffic** (for Prometheus, e.g.
//! `metrics-exporter-prometheus`'s `PrometheusBuilder::install_recorder`),
//! call [`describe`] so the exporter knows each metric's help text and
//! unit, and serve the exporter's output. The example servers do exactly
//! that on `GET /metrics`; docs/operations.md shows it step by step.
//!
//! Each [`Engine`](crate::Engine) registers a metric's handle with the
//! recorder the first time it records that metric, and keeps it: the hot
//! path then updates a handle, with no lookup in the recorder, no
//! allocation, no formatting. With no recorder installed the handles are
//! no-ops; what a purchase still pays is reading the clock around it and
//! around each port call (docs/operations.md has the numbers).
//!
//! Every name the crate records is a constant here, with its type, labels
//! and unit. Names follow Prometheus conventions: counters end in
//! `_total`, durations are in seconds and end in `_seconds`. No label ever
//! carries a user id; every label has a fixed set of values except
//! `product` on [`STOCK_UNITS`], and at most
//! [`EngineConfig::stock_gauge_products`](crate::EngineConfig::stock_gauge_products)
//! products (default [`DEFAULT_STOCK_GAUGE_PRODUCTS`]) get one.
//!
//! Histograms are recorded as raw values; the exporter decides how to
//! bucket them. [`LATENCY_BUCKETS`] suits every histogram here (500 µs to
//! 10 s).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Unit};
use parking_lot::Mutex;

use crate::model::{Outcome, ProductId, StockLevels};

/// Counter: purchase attempts by how they ended ([`Engine::purchase`](crate::Engine::purchase)).
///
/// Label `outcome`: the outcome's stable code ([`Outcome::code`]):
/// `purchased`, `accepted`, `replayed`, `idempotency_conflict`,
/// `rate_limited`, `sold_out`, `limit_exceeded`, `sale_not_active`,
/// `invalid_request`, `unknown_product`, `unauthenticated` or
/// `unavailable`.
pub const PURCHASES_TOTAL: &str = "flashsale_purchases_total";

/// Histogram, seconds: how long [`Engine::purchase`](crate::Engine::purchase)
/// took, from the start of the attempt to its outcome (every port call
/// included). No labels.
pub const PURCHASE_DURATION_SECONDS: &str = "flashsale_purchase_duration_seconds";

/// Histogram, seconds: how long each port call took, timeouts included
/// (they end at the engine's port timeout).
///
/// Labels: `port` ([`PORTS`]) and `operation` (see [`PORT_CALL_FAILURES_TOTAL`]).
pub const PORT_CALL_DURATION_SECONDS: &str = "flashsale_port_call_duration_seconds";

/// Counter: port calls that failed.
///
/// Labels: `port` (`stock_store`, `rate_limiter`, `order_sink`,
/// `authenticator`), `operation` (`authenticate`; `rate_check`; `sale`,
/// `reserve`, `void`, `confirm`, `cancel`, `reservation`, `create_sale`,
/// `snapshot`, `expire`, `claim`, `ack`; `submit`; and `ping` on every
/// port but the authenticator) and `kind`: `timeout` (no answer within
/// the engine's port timeout) or `error` (the backend answered with an
/// error).
pub const PORT_CALL_FAILURES_TOTAL: &str = "flashsale_port_call_failures_total";

/// Counter: purchase attempts refused by the rate limiter (HTTP 429). The
/// same attempts are also counted in [`PURCHASES_TOTAL`] with
/// `outcome="rate_limited"`. No labels.
pub const RATE_LIMITED_TOTAL: &str = "flashsale_rate_limited_total";

/// Counter: purchase attempts a [`SoldOutCache`](crate::SoldOutCache)
/// answered `SoldOut` itself (through the engine, before the rate check;
/// or a `reserve` called on the cache directly), without asking its store.
/// No labels.
pub const SOLD_OUT_CACHE_HITS_TOTAL: &str = "flashsale_sold_out_cache_hits_total";

/// Gauge, units: a product's stock, as last read by
/// [`Engine::snapshot`](crate::Engine::snapshot) on this instance (`GET
/// /products/{id}` and the admin `PUT` read it).
///
/// Labels: `product` (the product id; only the first
/// [`EngineConfig::stock_gauge_products`](crate::EngineConfig::stock_gauge_products)
/// products this engine reads get a series) and `state`: `available`,
/// `held` (reserved, not yet confirmed) or `sold`. The three states of a
/// product add up to its total stock.
pub const STOCK_UNITS: &str = "flashsale_stock_units";

/// Gauge, events: how many order events the outbox relay's latest pass
/// claimed and is delivering. `0` once a pass found nothing to claim, so
/// when the relay keeps up it reads `0` most of the time; a value that
/// stays at the relay's batch size means events are waiting. No labels.
pub const RELAY_BACKLOG_EVENTS: &str = "flashsale_relay_backlog_events";

/// Gauge, seconds: age of the oldest order event in the batch the relay
/// last handed to the sink (now minus the event's `at`), `0` once a pass
/// found nothing to claim. How far the sink is behind the store. No
/// labels.
pub const RELAY_LAG_SECONDS: &str = "flashsale_relay_lag_seconds";

/// Counter: order events the relay delivered to the sink and acknowledged
/// in the store. No labels.
pub const RELAY_DELIVERED_EVENTS_TOTAL: &str = "flashsale_relay_delivered_events_total";

/// Counter: failed relay passes. The events stay in the outbox and are
/// retried. Label `stage`: `claim` (reading the outbox), `submit` (the sink
/// refused or timed out) or `ack` (the store could not mark them
/// delivered; they will be delivered again).
pub const RELAY_ERRORS_TOTAL: &str = "flashsale_relay_errors_total";

/// Counter: holds the sweeper released because they expired. No labels.
pub const HOLDS_EXPIRED_TOTAL: &str = "flashsale_holds_expired_total";

/// Counter: HTTP requests served. Not recorded by the library (its HTTP
/// adapters record nothing): the example servers' middleware records it,
/// under this name so that dashboards work for any server that does the
/// same.
///
/// Labels: `method`, `route` (the route *template*, e.g.
/// `/buy/{product_id}`, never the raw path; `unmatched` for a 404 that
/// matched no route) and `status` (the HTTP status code).
pub const HTTP_REQUESTS_TOTAL: &str = "flashsale_http_requests_total";

/// Histogram, seconds: HTTP request latency, from the request reaching the
/// router to its response. Same labels as [`HTTP_REQUESTS_TOTAL`], and
/// likewise recorded by the example servers, not the library.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "flashsale_http_request_duration_seconds";

/// The metrics the engine itself records.
pub const ENGINE_METRICS: &[&str] = &[
    PURCHASES_TOTAL,
    PURCHASE_DURATION_SECONDS,
    PORT_CALL_DURATION_SECONDS,
    PORT_CALL_FAILURES_TOTAL,
    RATE_LIMITED_TOTAL,
    SOLD_OUT_CACHE_HITS_TOTAL,
    STOCK_UNITS,
    RELAY_BACKLOG_EVENTS,
    RELAY_LAG_SECONDS,
    RELAY_DELIVERED_EVENTS_TOTAL,
    RELAY_ERRORS_TOTAL,
    HOLDS_EXPIRED_TOTAL,
];

/// The HTTP metrics a server records around the routes (the example
/// servers do).
pub const HTTP_METRICS: &[&str] = &[HTTP_REQUESTS_TOTAL, HTTP_REQUEST_DURATION_SECONDS];

/// The values of the `port` label.
pub const PORTS: &[&str] = &["stock_store", "rate_limiter", "order_sink", "authenticator"];

/// The default of
/// [`EngineConfig::stock_gauge_products`](crate::EngineConfig::stock_gauge_products):
/// how many products get [`STOCK_UNITS`] series.
pub const DEFAULT_STOCK_GAUGE_PRODUCTS: usize = 100;

/// Histogram bucket bounds, in seconds, suited to every histogram here:
/// from 500 µs (an in-memory purchase) to 10 s (past every default
/// timeout). For Prometheus: `PrometheusBuilder::set_buckets(LATENCY_BUCKETS)`.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Registers the help text and unit of every metric in [`ENGINE_METRICS`]
/// and [`HTTP_METRICS`] with the installed recorder. Call it once, after
/// installing the recorder (a recorder installed later knows nothing of
/// it). Without it, metrics are still recorded, only undescribed.
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        PURCHASES_TOTAL,
        Unit::Count,
        "Purchase attempts by outcome (the outcome's stable code)."
    );
    describe_histogram!(
        PURCHASE_DURATION_SECONDS,
        Unit::Seconds,
        "Time from the start of a purchase attempt to its outcome, every port call included."
    );
    describe_histogram!(
        PORT_CALL_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of each port call (stock store, rate limiter, order sink, authenticator), by port and operation."
    );
    describe_counter!(
        PORT_CALL_FAILURES_TOTAL,
        Unit::Count,
        "Port calls that failed (kind=error) or timed out (kind=timeout), by port and operation."
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        Unit::Count,
        "Purchase attempts refused by the per-user rate limiter (HTTP 429)."
    );
    describe_counter!(
        SOLD_OUT_CACHE_HITS_TOTAL,
        Unit::Count,
        "Reserves answered sold out by the local sold-out cache, without a store round trip."
    );
    describe_gauge!(
        STOCK_UNITS,
        Unit::Count,
        "Stock units of a product by state (available, held, sold), as last read by this instance."
    );
    describe_gauge!(
        RELAY_BACKLOG_EVENTS,
        Unit::Count,
        "Order events claimed by the outbox relay's latest pass (0 once the outbox was empty)."
    );
    describe_gauge!(
        RELAY_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest order event in the batch the relay last handed to the sink (0 once the outbox was empty)."
    );
    describe_counter!(
        RELAY_DELIVERED_EVENTS_TOTAL,
        Unit::Count,
        "Order events delivered to the sink and acknowledged in the store by the relay."
    );
    describe_counter!(
        RELAY_ERRORS_TOTAL,
        Unit::Count,
        "Failed outbox relay passes, by stage (claim, submit, ack); the events are retried."
    );
    describe_counter!(
        HOLDS_EXPIRED_TOTAL,
        Unit::Count,
        "Holds released by the sweeper because they expired."
    );
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        Unit::Count,
        "HTTP requests by method, route template and status."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "HTTP request latency by method, route template and status."
    );
}

// ------------------------------------------------------------- recording
//
// Every key is a `static`, built at compile time with its hash. An engine
// registers each handle with the recorder on the handle's first use and
// keeps it, so the hot path neither looks the key up in the recorder nor
// allocates: it updates a handle (with no recorder installed, a no-op
// handle). Handles stay with the recorder current at that first use (the
// thread's local recorder, else the global one).

/// Where every recording says it comes from.
static METADATA: Metadata<'static> = Metadata::new("flashsale", Level::INFO, Some(module_path!()));

/// A `static` [`Key`] with literal labels.
macro_rules! static_key {
    ($name:expr $(,)?) => {{
        static KEY: Key = Key::from_static_name($name);
        &KEY
    }};
    ($name:expr $(, $k:literal => $v:literal)+ $(,)?) => {{
        static LABELS: [Label; [$($k),*].len()] = [$(Label::from_static_parts($k, $v)),*];
        static KEY: Key = Key::from_static_parts($name, &LABELS);
        &KEY
    }};
}

/// A handle registered on first use.
struct Lazy<H> {
    key: &'static Key,
    handle: OnceLock<H>,
}

impl<H> Lazy<H> {
    const fn new(key: &'static Key) -> Self {
        Self {
            key,
            handle: OnceLock::new(),
        }
    }
}

impl Lazy<Counter> {
    fn get(&self) -> &Counter {
        self.handle
            .get_or_init(|| ::metrics::with_recorder(|r| r.register_counter(self.key, &METADATA)))
    }
}

impl Lazy<Gauge> {
    fn get(&self) -> &Gauge {
        self.handle
            .get_or_init(|| ::metrics::with_recorder(|r| r.register_gauge(self.key, &METADATA)))
    }
}

impl Lazy<Histogram> {
    fn get(&self) -> &Histogram {
        self.handle
            .get_or_init(|| ::metrics::with_recorder(|r| r.register_histogram(self.key, &METADATA)))
    }
}

/// The `outcome` label values, in [`outcome_index`] order.
static OUTCOME_KEYS: [&Key; 16] = [
    static_key!(PURCHASES_TOTAL, "outcome" => "purchased"),
    static_key!(PURCHASES_TOTAL, "outcome" => "accepted"),
    static_key!(PURCHASES_TOTAL, "outcome" => "replayed"),
    static_key!(PURCHASES_TOTAL, "outcome" => "idempotency_conflict"),
    static_key!(PURCHASES_TOTAL, "outcome" => "rate_limited"),
    static_key!(PURCHASES_TOTAL, "outcome" => "sold_out"),
    static_key!(PURCHASES_TOTAL, "outcome" => "limit_exceeded"),
    static_key!(PURCHASES_TOTAL, "outcome" => "sale_not_active"),
    static_key!(PURCHASES_TOTAL, "outcome" => "invalid_request"),
    static_key!(PURCHASES_TOTAL, "outcome" => "unknown_product"),
    static_key!(PURCHASES_TOTAL, "outcome" => "unauthenticated"),
    static_key!(PURCHASES_TOTAL, "outcome" => "forbidden"),
    static_key!(PURCHASES_TOTAL, "outcome" => "order_updated"),
    static_key!(PURCHASES_TOTAL, "outcome" => "unknown_order"),
    static_key!(PURCHASES_TOTAL, "outcome" => "order_not_held"),
    static_key!(PURCHASES_TOTAL, "outcome" => "unavailable"),
];

/// Where `outcome`'s counter is in [`OUTCOME_KEYS`].
fn outcome_index(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Purchased(_) => 0,
        Outcome::Accepted(_) => 1,
        Outcome::Replayed(_) => 2,
        Outcome::IdempotencyConflict => 3,
        Outcome::RateLimited { .. } => 4,
        Outcome::SoldOut => 5,
        Outcome::LimitExceeded => 6,
        Outcome::NotOnSale => 7,
        Outcome::Invalid(_) => 8,
        Outcome::UnknownProduct => 9,
        Outcome::Unauthenticated(_) => 10,
        Outcome::Forbidden => 11,
        Outcome::OrderUpdated(_) => 12,
        Outcome::UnknownOrder => 13,
        Outcome::OrderClosed(_) => 14,
        Outcome::Unavailable { .. } => 15,
    }
}

/// How a port call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallEnd {
    /// It answered.
    Ok,
    /// It answered with an error.
    Error,
    /// It did not answer in time.
    Timeout,
}

/// One kind of port call: its name and its labels, as `static` keys.
pub(crate) struct PortOp {
    /// The operation's name, for logs and [`Error::Timeout`](crate::Error::Timeout).
    pub(crate) operation: &'static str,
    /// Its place in [`ops::ALL`].
    index: usize,
    duration: &'static Key,
    errors: &'static Key,
    timeouts: &'static Key,
}

/// Declares the port operations, one `static` [`PortOp`] each, and
/// [`ops::ALL`].
macro_rules! port_ops {
    ($($(#[$doc:meta])* $id:ident = $index:literal, $port:literal, $op:literal;)*) => {
        /// Every port call the engine makes, as label sets.
        pub(crate) mod ops {
            use super::*;
            $(
                $(#[$doc])*
                pub(crate) static $id: PortOp = PortOp {
                    operation: $op,
                    index: $index,
                    duration: static_key!(PORT_CALL_DURATION_SECONDS, "port" => $port, "operation" => $op),
                    errors: static_key!(PORT_CALL_FAILURES_TOTAL, "port" => $port, "operation" => $op, "kind" => "error"),
                    timeouts: static_key!(PORT_CALL_FAILURES_TOTAL, "port" => $port, "operation" => $op, "kind" => "timeout"),
                };
            )*
            /// All of them, each at its `index`.
            pub(crate) static ALL: [&PortOp; [$($index),*].len()] = [$(&$id),*];
        }
    };
}

port_ops! {
    /// `Authenticator::authenticate`.
    AUTHENTICATE = 0, "authenticator", "authenticate";
    /// `RateLimiter::check`.
    RATE_CHECK = 1, "rate_limiter", "rate_check";
    /// `RateLimiter::ping`.
    RATE_PING = 2, "rate_limiter", "ping";
    /// `StockStore::sale`.
    SALE = 3, "stock_store", "sale";
    /// `StockStore::reserve`.
    RESERVE = 4, "stock_store", "reserve";
    /// `StockStore::void`.
    VOID = 5, "stock_store", "void";
    /// `StockStore::confirm`.
    CONFIRM = 6, "stock_store", "confirm";
    /// `StockStore::cancel`.
    CANCEL = 7, "stock_store", "cancel";
    /// `StockStore::reservation`.
    RESERVATION = 8, "stock_store", "reservation";
    /// `StockStore::create_sale`.
    CREATE_SALE = 9, "stock_store", "create_sale";
    /// `StockStore::snapshot`.
    SNAPSHOT = 10, "stock_store", "snapshot";
    /// `StockStore::expire`.
    EXPIRE = 11, "stock_store", "expire";
    /// `StockStore::claim`.
    CLAIM = 12, "stock_store", "claim";
    /// `StockStore::ack`.
    ACK = 13, "stock_store", "ack";
    /// `StockStore::ping`.
    STOCK_PING = 14, "stock_store", "ping";
    /// `OrderSink::submit`.
    SUBMIT = 15, "order_sink", "submit";
    /// `OrderSink::ping`.
    SINK_PING = 16, "order_sink", "ping";
}

/// One port operation's handles.
struct PortHandles {
    duration: Lazy<Histogram>,
    errors: Lazy<Counter>,
    timeouts: Lazy<Counter>,
}

/// Which step of a relay pass failed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RelayStage {
    Claim = 0,
    Submit = 1,
    Ack = 2,
}

/// One engine's metric handles, each registered on its first use.
pub(crate) struct EngineMetrics {
    outcomes: [Lazy<Counter>; 16],
    rate_limited: Lazy<Counter>,
    purchase_duration: Lazy<Histogram>,
    ports: [PortHandles; ops::ALL.len()],
    holds_expired: Lazy<Counter>,
    relay_errors: [Lazy<Counter>; 3],
    relay_backlog: Lazy<Gauge>,
    relay_lag: Lazy<Gauge>,
    relay_delivered: Lazy<Counter>,
    /// The per-product stock gauges.
    pub(crate) stock: StockGauges,
}

impl EngineMetrics {
    /// Handles for an engine whose stock gauges cover at most
    /// `stock_gauge_products` products.
    pub(crate) fn new(stock_gauge_products: usize) -> Self {
        Self {
            outcomes: OUTCOME_KEYS.map(Lazy::new),
            rate_limited: Lazy::new(static_key!(RATE_LIMITED_TOTAL)),
            purchase_duration: Lazy::new(static_key!(PURCHASE_DURATION_SECONDS)),
            ports: ops::ALL.map(|op| PortHandles {
                duration: Lazy::new(op.duration),
                errors: Lazy::new(op.errors),
                timeouts: Lazy::new(op.timeouts),
            }),
            holds_expired: Lazy::new(static_key!(HOLDS_EXPIRED_TOTAL)),
            relay_errors: [
                Lazy::new(static_key!(RELAY_ERRORS_TOTAL, "stage" => "claim")),
                Lazy::new(static_key!(RELAY_ERRORS_TOTAL, "stage" => "submit")),
                Lazy::new(static_key!(RELAY_ERRORS_TOTAL, "stage" => "ack")),
            ],
            relay_backlog: Lazy::new(static_key!(RELAY_BACKLOG_EVENTS)),
            relay_lag: Lazy::new(static_key!(RELAY_LAG_SECONDS)),
            relay_delivered: Lazy::new(static_key!(RELAY_DELIVERED_EVENTS_TOTAL)),
            stock: StockGauges::new(stock_gauge_products),
        }
    }

    /// A finished purchase: its outcome and how long it took.
    pub(crate) fn purchase_finished(&self, outcome: &Outcome, took: Duration) {
        let i = outcome_index(outcome);
        debug_assert_eq!(
            OUTCOME_KEYS[i].labels().next().map(Label::value),
            Some(outcome.code())
        );
        self.outcomes[i].get().increment(1);
        if matches!(outcome, Outcome::RateLimited { .. }) {
            self.rate_limited.get().increment(1);
        }
        self.purchase_duration.get().record(took.as_secs_f64());
    }

    /// One port call that took `took` and ended `end`.
    pub(crate) fn port_call(&self, op: &PortOp, took: Duration, end: CallEnd) {
        let h = &self.ports[op.index];
        h.duration.get().record(took.as_secs_f64());
        match end {
            CallEnd::Ok => {}
            CallEnd::Error => h.errors.get().increment(1),
            CallEnd::Timeout => h.timeouts.get().increment(1),
        }
    }

    /// `n` holds expired by the sweeper.
    pub(crate) fn holds_expired(&self, n: usize) {
        self.holds_expired.get().increment(n as u64);
    }

    /// A failed relay pass.
    pub(crate) fn relay_failed(&self, stage: RelayStage) {
        self.relay_errors[stage as usize].get().increment(1);
    }

    /// A relay pass is delivering `events` events, the oldest `lag` old.
    pub(crate) fn relay_batch(&self, events: usize, lag: Duration) {
        self.relay_backlog.get().set(events as f64);
        self.relay_lag.get().set(lag.as_secs_f64());
    }

    /// A relay pass delivered `n` events.
    pub(crate) fn relay_delivered(&self, n: usize) {
        self.relay_delivered.get().increment(n as u64);
    }
}

impl std::fmt::Debug for EngineMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineMetrics")
            .field("stock", &self.stock)
            .finish_non_exhaustive()
    }
}

/// The [`SOLD_OUT_CACHE_HITS_TOTAL`] counter of one
/// [`SoldOutCache`](crate::SoldOutCache).
pub(crate) struct SoldOutCacheHits(Lazy<Counter>);

impl SoldOutCacheHits {
    pub(crate) const fn new() -> Self {
        Self(Lazy::new(static_key!(SOLD_OUT_CACHE_HITS_TOTAL)))
    }

    /// A reserve answered by the cache itself.
    pub(crate) fn hit(&self) {
        self.0.get().increment(1);
    }
}

fn gauge(key: &Key, value: f64) {
    ::metrics::with_recorder(|r| r.register_gauge(key, &METADATA)).set(value);
}

/// The [`STOCK_UNITS`] gauges, for at most `max` products: the first ones
/// this engine reads keep their series, later ones get none (a bot asking
/// for random ids cannot grow the exporter's memory; unknown products never
/// get a series at all).
pub(crate) struct StockGauges {
    max: usize,
    /// Per tracked product, its `available`, `held` and `sold` keys.
    products: Mutex<HashMap<ProductId, [Key; 3]>>,
    /// Whether the "cap reached" message was logged.
    warned: AtomicBool,
}

impl StockGauges {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            products: Mutex::new(HashMap::new()),
            warned: AtomicBool::new(false),
        }
    }

    /// Sets `product`'s gauges to `levels`, if it has (or can get) series.
    pub(crate) fn set(&self, product: &ProductId, levels: &StockLevels) {
        let mut products = self.products.lock();
        let len = products.len();
        let keys = match products.get(product) {
            Some(keys) => keys,
            None if len < self.max => {
                let name: Arc<str> = Arc::from(product.as_str());
                let key = |state: &'static str| {
                    Key::from_parts(
                        STOCK_UNITS,
                        vec![
                            Label::new("product", name.clone()),
                            Label::new("state", state),
                        ],
                    )
                };
                products
                    .entry(product.clone())
                    .or_insert_with(|| [key("available"), key("held"), key("sold")])
            }
            None => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        max = self.max,
                        %product,
                        "stock gauges already cover the maximum number of products; \
                         later products get none (EngineBuilder::stock_gauge_products)"
                    );
                }
                return;
            }
        };
        for (key, value) in keys
            .iter()
            .zip([levels.available, levels.held, levels.committed])
        {
            // Stock levels are far below 2^53: exact as f64.
            gauge(key, value as f64);
        }
    }
}

impl std::fmt::Debug for StockGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StockGauges")
            .field("max", &self.max)
            .field("products", &self.products.lock().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_port_op_sits_at_its_index_and_names_a_known_port() {
        for (i, op) in ops::ALL.iter().enumerate() {
            assert_eq!(op.index, i, "{}", op.operation);
            let port = op.duration.labels().next().expect("a port label");
            assert_eq!(port.key(), "port");
            assert!(PORTS.contains(&port.value()), "{}", port.value());
            assert_eq!(op.errors.name(), PORT_CALL_FAILURES_TOTAL);
            assert_eq!(
                op.timeouts.labels().nth(2).map(Label::value),
                Some("timeout")
            );
        }
    }

    #[test]
    fn outcome_keys_carry_the_outcome_codes() {
        let examples = [
            Outcome::IdempotencyConflict,
            Outcome::RateLimited {
                retry_after: Duration::ZERO,
            },
            Outcome::SoldOut,
            Outcome::LimitExceeded,
            Outcome::NotOnSale,
            Outcome::UnknownProduct,
            Outcome::Forbidden,
            Outcome::UnknownOrder,
            Outcome::Unavailable {
                retry_after: Duration::ZERO,
            },
        ];
        for outcome in &examples {
            let key = OUTCOME_KEYS[outcome_index(outcome)];
            assert_eq!(key.name(), PURCHASES_TOTAL);
            assert_eq!(key.labels().next().map(Label::value), Some(outcome.code()));
        }
        let codes: std::collections::HashSet<_> = OUTCOME_KEYS
            .iter()
            .filter_map(|k| k.labels().next().map(Label::value))
            .collect();
        assert_eq!(codes.len(), OUTCOME_KEYS.len(), "no code twice");
    }
}
