//! What the two example servers share: configuration from the environment,
//! `--help`, building the engine, the demo seed, the banner, the hold
//! sweeper, the shutdown signal, and metrics: the Prometheus recorder, the
//! `GET /metrics` body and the per-route HTTP metrics. `axum_server.rs` and
//! `actix_server.rs` only start their framework's server on top of it.

#![allow(dead_code)]

mod healthcheck;
pub mod logging;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flashsale::http::Api;
use flashsale::jwt::{Claims, DEV_SECRET, JwtAuthenticator, sign_hs256};
use flashsale::memory::{MemoryOrderSink, MemoryRateLimiter, MemoryStockStore};
use flashsale::{
    Clock, Engine, OrderSink, ProductId, RateLimiter, RateQuota, Sale, StockStore, SystemClock,
    UserId,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use parking_lot::RwLock;
use tokio::sync::watch;

/// The servers allocate with jemalloc: under load glibc's malloc spent about
/// a tenth of a `POST /buy`'s server time in its own code and in futex waits
/// on its arena locks (docs/performance.md, "Issue 12"). `http_bare.rs`
/// uses it too, so the benchmark's ratio compares like with like.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `--help` text (the framework's name is filled in).
pub fn help(framework: &str, example: &str) -> String {
    format!(
        "\
flashsale {framework} server: the HTTP contract of design.md on {framework}.

USAGE:
    cargo run --release --example {example} [--features redis,mysql] [-- --help]
    {example} --healthcheck     exit 0 if the server at FLASHSALE_LISTEN answers
                                GET /healthz with 200 (the container's HEALTHCHECK)

ROUTES:
    POST /buy/{{productId}}               bearer JWT; body {{\"quantity\": n}} (optional, default 1);
                                        optional Idempotency-Key header
    GET  /products/{{productId}}          the sale and its live total/available/held/sold
    PUT  /admin/products/{{productId}}    JWT with role admin; body {{\"stock\", \"per_user_limit\",
                                        \"per_order_max\", \"starts_at\"?, \"ends_at\"?, \"hold_seconds\"?}}
    POST /orders/{{orderId}}/confirm      the buyer or an admin: confirm a held order
    POST /orders/{{orderId}}/cancel       the buyer or an admin: cancel a held order
    GET  /healthz, GET /readyz          liveness; readiness of every backend
    GET  /openapi.json                  the OpenAPI 3.1 document of these routes
    GET  /metrics                       Prometheus text format (docs/operations.md)

ENVIRONMENT:
    FLASHSALE_LISTEN         address to listen on [default: 127.0.0.1:8080; port 0 picks one]
    FLASHSALE_JWT_SECRET     HS256 secret for bearer tokens [default: the PUBLIC development
                             secret, with a loud warning; demo tokens are printed only then]
    FLASHSALE_RATE_LIMIT     per-user quota <count>/<period>, e.g. 10/1m, 5/s, 100/30s:
                             on average <count> attempts per <period>, bursts of up to
                             <count> [default: {DEFAULT_RATE}]
    FLASHSALE_REDIS_URL      Redis for stock and rate limits [default: in memory]
                             (needs --features redis); servers sharing one Redis and
                             one prefix sell the same stock as one shop
    FLASHSALE_REDIS_PREFIX   key prefix in Redis [default: flashsale]
    FLASHSALE_DATABASE_URL   MySQL/MariaDB for sales, reservations and the outbox, e.g.
                             mysql://root@127.0.0.1:3306/test [default: in memory]
                             (needs --features mysql); tables flashsale_*, created or
                             upgraded at start; with FLASHSALE_REDIS_URL too, Redis
                             holds only the rate limits
    FLASHSALE_KAFKA_BROKERS  Kafka bootstrap servers, e.g. 127.0.0.1:9092: every order event
                             goes to Kafka through an idempotent producer, relayed from
                             the store's outbox [default: in memory] (needs --features kafka;
                             the topic must exist; /readyz checks it)
    FLASHSALE_KAFKA_TOPIC    Kafka topic for order events [default: flashsale.orders]
    RUST_LOG                 log level: error, warn, info, debug or trace [default: info]
    FLASHSALE_LOG_FORMAT     text or json (one object per line) [default: text]; every line
                             of a request carries its X-Request-Id (taken from the
                             request when it is usable, made otherwise; sent back)

With nothing set, every backend is in memory, two demo sales are seeded, and
the banner prints a buyer token, an admin token and a curl command to try.
Ctrl-C or SIGTERM stops accepting connections and drains in-flight requests.
",
    )
}

/// The default per-user quota.
pub const DEFAULT_RATE: &str = "10/1s";

/// The settings read from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    /// `None`: the development secret.
    pub jwt_secret: Option<Vec<u8>>,
    pub rate: RateQuota,
    /// `FLASHSALE_RATE_LIMIT` as given.
    pub rate_text: String,
    pub redis_url: Option<String>,
    /// `FLASHSALE_REDIS_PREFIX`: the key prefix in Redis.
    pub redis_prefix: String,
    pub database_url: Option<String>,
    pub kafka_brokers: Option<String>,
    pub kafka_topic: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Config {
    /// Reads `FLASHSALE_*`; an error says which variable is wrong and how.
    pub fn from_env() -> Result<Self, String> {
        let listen = var("FLASHSALE_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into());
        let rate_raw = var("FLASHSALE_RATE_LIMIT").unwrap_or_else(|| DEFAULT_RATE.into());
        let rate = rate_raw
            .parse::<RateQuota>()
            .map_err(|e| format!("FLASHSALE_RATE_LIMIT: {}", e.reason))?;
        let jwt_secret = var("FLASHSALE_JWT_SECRET").map(String::into_bytes);
        if jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(
                "FLASHSALE_JWT_SECRET must be at least 32 bytes (256 bits) for HS256".into(),
            );
        }
        Ok(Self {
            listen,
            jwt_secret,
            rate,
            rate_text: rate_raw,
            redis_url: var("FLASHSALE_REDIS_URL"),
            redis_prefix: var("FLASHSALE_REDIS_PREFIX").unwrap_or_else(|| "flashsale".into()),
            database_url: var("FLASHSALE_DATABASE_URL"),
            kafka_brokers: var("FLASHSALE_KAFKA_BROKERS"),
            kafka_topic: var("FLASHSALE_KAFKA_TOPIC").unwrap_or_else(|| "flashsale.orders".into()),
        })
    }

    /// Whether everything is in memory (then the demo sales are seeded).
    pub fn all_in_memory(&self) -> bool {
        self.redis_url.is_none() && self.database_url.is_none() && self.kafka_brokers.is_none()
    }
}

/// Handles `--help`/`-h` and rejects other arguments. `Some(code)` means:
/// exit now with it.
pub fn handle_args(framework: &str, example: &str) -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => None,
        Some("-h" | "--help") => {
            print!("{}", help(framework, example));
            Some(ExitCode::SUCCESS)
        }
        Some("--healthcheck") => {
            let listen = var("FLASHSALE_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into());
            Some(healthcheck::run(&listen))
        }
        Some(other) => {
            eprintln!(
                "error: unexpected argument {other:?}; configuration is by environment (see --help)"
            );
            Some(ExitCode::from(2))
        }
    }
}

/// A feature-gated backend that was asked for but not compiled in.
fn missing_feature(var: &str, feature: &str, example: &str) -> String {
    format!(
        "{var} is set, but this build has no `{feature}` backend.\n\
         Rebuild with it: cargo run --example {example} --features {feature},... \n\
         or unset {var} to use the in-memory backend."
    )
}

/// The running application: the engine, the API and how to stop the
/// sweeper.
pub struct App {
    pub config: Config,
    pub engine: Engine,
    pub api: Api,
    /// Demo `(buyer, admin)` tokens, when the development secret is used.
    pub demo_tokens: Option<(String, String)>,
    /// Demo sales seeded: `(product, description)`.
    pub seeded: Vec<(ProductId, String)>,
    /// The installed Prometheus recorder; `GET /metrics` renders it.
    pub metrics: PrometheusHandle,
    stop_background: watch::Sender<bool>,
    sweeper: tokio::task::JoinHandle<()>,
    relay: tokio::task::JoinHandle<()>,
    upkeep: tokio::task::JoinHandle<()>,
}

/// Builds the engine from `config`: in-memory ports unless a backend URL is
/// set (and compiled in), JWT HS256, the demo seed when all is in memory,
/// the hold sweeper (once a second) and the outbox relay (on every new
/// order, and every 200 ms). Must run inside a tokio runtime. `metrics` is
/// the installed recorder ([`install_metrics`]), kept up by a background
/// task.
pub async fn build(
    config: Config,
    example: &str,
    metrics: PrometheusHandle,
) -> Result<App, String> {
    // Fail fast and clearly for backends this build cannot serve.
    if config.redis_url.is_some() && !cfg!(feature = "redis") {
        return Err(missing_feature("FLASHSALE_REDIS_URL", "redis", example));
    }
    if config.database_url.is_some() && !cfg!(feature = "mysql") {
        return Err(missing_feature("FLASHSALE_DATABASE_URL", "mysql", example));
    }
    if config.kafka_brokers.is_some() && !cfg!(feature = "kafka") {
        return Err(missing_feature("FLASHSALE_KAFKA_BROKERS", "kafka", example));
    }

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (stock, limiter): (Arc<dyn StockStore>, Arc<dyn RateLimiter>) = match &config.redis_url {
        // MySQL holds the stock (its tables are created or upgraded here);
        // the rate limiter is Redis's when FLASHSALE_REDIS_URL is set too.
        #[cfg(feature = "mysql")]
        _ if config.database_url.is_some() => {
            let url = config.database_url.as_deref().unwrap_or_default();
            let stock = flashsale::mysql::MySqlStockStore::connect(
                url,
                flashsale::mysql::MySqlOptions::DEFAULT_PREFIX,
            )
            .await
            .map_err(|e| format!("FLASHSALE_DATABASE_URL: {e}"))?;
            stock
                .migrate()
                .await
                .map_err(|e| format!("FLASHSALE_DATABASE_URL: migrations failed: {e}"))?;
            let stock = flashsale::SoldOutCache::new(stock);
            let limiter: Arc<dyn RateLimiter> = match &config.redis_url {
                #[cfg(feature = "redis")]
                Some(redis) => Arc::new(
                    flashsale::redis::RedisRateLimiter::connect(
                        redis,
                        &config.redis_prefix,
                        config.rate,
                    )
                    .await
                    .map_err(|e| format!("FLASHSALE_REDIS_URL: {e}"))?,
                ),
                _ => Arc::new(MemoryRateLimiter::with_clock(config.rate, clock.clone())),
            };
            (Arc::new(stock), limiter)
        }
        #[cfg(feature = "redis")]
        Some(url) => {
            let prefix = &config.redis_prefix;
            let stock = flashsale::redis::RedisStockStore::connect(url, prefix)
                .await
                .map_err(|e| format!("FLASHSALE_REDIS_URL: {e}"))?;
            // After a sell-out, refuse locally for a moment instead of
            // sending every late buyer to Redis.
            let stock = flashsale::SoldOutCache::new(stock);
            let limiter = flashsale::redis::RedisRateLimiter::connect(url, prefix, config.rate)
                .await
                .map_err(|e| format!("FLASHSALE_REDIS_URL: {e}"))?;
            (Arc::new(stock), Arc::new(limiter))
        }
        _ => (
            Arc::new(MemoryStockStore::new()),
            Arc::new(MemoryRateLimiter::with_clock(config.rate, clock.clone())),
        ),
    };
    let sink: Arc<dyn OrderSink> = match &config.kafka_brokers {
        #[cfg(feature = "kafka")]
        Some(brokers) => {
            let opts = flashsale::kafka::KafkaOptions::new(brokers).topic(&config.kafka_topic);
            let sink = flashsale::kafka::KafkaOrderSink::new(&opts)
                .map_err(|e| format!("FLASHSALE_KAFKA_BROKERS: {e}"))?;
            // Orders are safe in the outbox while Kafka is away, so a broker
            // that is down only delays them: warn, don't refuse to start.
            if let Err(e) = flashsale::OrderSink::ping(&sink).await {
                tracing::warn!(
                    "Kafka at {brokers} is not ready ({e}); orders wait in the outbox \
                     until it is (check FLASHSALE_KAFKA_BROKERS and FLASHSALE_KAFKA_TOPIC)"
                );
            }
            Arc::new(sink)
        }
        // No Kafka: the newest 10,000 events stay in memory (a few MB), so
        // a server that runs for days does not grow without bound.
        _ => Arc::new(MemoryOrderSink::bounded(10_000)),
    };
    let secret = config.jwt_secret.as_deref().unwrap_or(DEV_SECRET);
    let engine = Engine::builder()
        .stock_store(stock)
        .rate_limiter(limiter)
        .order_sink(sink)
        .authenticator(Arc::new(JwtAuthenticator::hs256(secret)))
        .clock(clock.clone())
        .build()
        .map_err(|e| e.to_string())?;

    let mut seeded = Vec::new();
    if config.all_in_memory() {
        let id = |s: &str| ProductId::new(s).expect("valid demo id");
        for (sale, what) in [
            (
                Sale::builder(id("demo-sneakers"), 100)
                    .per_user_limit(2)
                    .per_order_max(2)
                    .build(),
                "100 units, at most 2 per buyer",
            ),
            (
                Sale::builder(id("demo-tickets"), 500)
                    .per_user_limit(4)
                    .per_order_max(4)
                    .hold(Duration::from_secs(120))
                    .build(),
                "500 units, at most 4 per buyer, held 120 s until confirmed",
            ),
        ] {
            let sale = sale.map_err(|e| e.to_string())?;
            engine
                .create_sale(&sale)
                .await
                .map_err(|e| format!("seeding {}: {e}", sale.product()))?;
            seeded.push((sale.product().clone(), what.to_owned()));
        }
    }

    let demo_tokens = if config.jwt_secret.is_none() {
        let now = clock.now();
        let month = Duration::from_secs(30 * 86_400);
        let mint = |user: &str, roles: &[&str]| {
            let claims = Claims::new(&UserId::new(user).expect("valid demo user"), now, month)
                .with_roles(roles.iter().copied());
            sign_hs256(DEV_SECRET, &claims).map_err(|e| e.to_string())
        };
        Some((mint("demo-buyer", &[])?, mint("demo-admin", &["admin"])?))
    } else {
        None
    };

    let (stop_background, stopped) = watch::channel(false);
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let sweeper = engine.spawn_sweeper(Duration::from_secs(1), until_stopped(stopped.clone()));
    let relay = engine.spawn_relay(Duration::from_millis(200), until_stopped(stopped.clone()));
    let upkeep = spawn_metrics_upkeep(metrics.clone(), until_stopped(stopped));
    Ok(App {
        api: Api::new(engine.clone()),
        engine,
        config,
        demo_tokens,
        seeded,
        metrics,
        stop_background,
        sweeper,
        relay,
        upkeep,
    })
}

impl App {
    /// The first-run banner, for the address actually bound.
    pub fn banner(&self, framework: &str, addr: SocketAddr) -> String {
        let base = format!("http://{addr}");
        let mut b = String::new();
        let rule = "=".repeat(78);
        let _ = writeln!(b, "{rule}");
        let _ = writeln!(b, " flashsale ({framework}) listening on {base}");
        let _ = writeln!(
            b,
            " backends: stock={} rate_limit={} orders={}   rate limit per user: {}",
            if self.config.database_url.is_some() {
                "mysql"
            } else if self.config.redis_url.is_some() {
                "redis"
            } else {
                "memory"
            },
            if self.config.redis_url.is_some() {
                "redis"
            } else {
                "memory"
            },
            match &self.config.kafka_brokers {
                Some(b) => format!("kafka({b}, topic {})", self.config.kafka_topic),
                None => "memory".to_owned(),
            },
            self.config.rate_text,
        );
        let _ = writeln!(
            b,
            " order events: relayed from the store's outbox every 200 ms and on every order"
        );
        for (p, what) in &self.seeded {
            let _ = writeln!(b, " demo sale: {p} ({what})");
        }
        if let Some((buyer, admin)) = &self.demo_tokens {
            let warn = "!".repeat(78);
            let _ = writeln!(b, "{warn}");
            let _ = writeln!(
                b,
                " !! WARNING: FLASHSALE_JWT_SECRET is not set. Tokens are checked against the\n \
                 !! PUBLIC DEVELOPMENT SECRET: anyone can mint an admin token. For local\n \
                 !! development only. NEVER expose this server; set FLASHSALE_JWT_SECRET."
            );
            let _ = writeln!(b, "{warn}");
            let _ = writeln!(b, " buyer token (sub demo-buyer, 30 days):\n{buyer}");
            let _ = writeln!(
                b,
                " admin token (sub demo-admin, role admin, 30 days):\n{admin}"
            );
            let product = self
                .seeded
                .first()
                .map(|(p, _)| p.to_string())
                .unwrap_or_else(|| "<productId>".into());
            let _ = writeln!(b, " try:");
            let _ = writeln!(
                b,
                "curl -i -X POST {base}/buy/{product} -H 'Authorization: Bearer {buyer}' \
                 -H 'Content-Type: application/json' -H 'Idempotency-Key: try-1' -d '{{\"quantity\": 1}}'"
            );
            let _ = writeln!(b, "curl -s {base}/products/{product}");
        } else {
            let _ = writeln!(
                b,
                " bearer tokens: HS256 with FLASHSALE_JWT_SECRET (claims: sub, exp, roles)"
            );
        }
        let _ = write!(b, "{rule}");
        b
    }

    /// Stops the sweeper and the relay (after a last pass, so orders taken
    /// before the signal are delivered) and waits for both.
    pub async fn shutdown(self) {
        let _ = self.stop_background.send(true);
        let _ = self.sweeper.await;
        let _ = self.relay.await;
        let _ = self.upkeep.await;
        match self.engine.drain_outbox().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(delivered = n, "outbox drained"),
            Err(error) => {
                tracing::warn!(%error, "outbox not drained; another instance or the next start delivers it")
            }
        }
        tracing::info!("stopped");
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received: draining in-flight requests");
}

/// Reads the configuration and builds the app, or prints why not.
pub async fn start(example: &str) -> Result<App, ExitCode> {
    let config = logging::init()
        .and_then(|()| Config::from_env())
        .map_err(|e| {
            eprintln!("error: {e}\n(see --help)");
            ExitCode::from(2)
        })?;
    let metrics = install_metrics().map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    build(config, example, metrics).await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

// ---------------------------------------------------------------- metrics

/// `Content-Type` of `GET /metrics`: the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route of the metrics endpoint.
pub const METRICS_PATH: &str = "/metrics";

/// Installs the Prometheus recorder as the process's global `metrics`
/// recorder, with histogram buckets from 500 µs to 10 s (so every
/// histogram is exported with `_bucket` series, ready for
/// `histogram_quantile`), and registers the help text of every metric.
/// Call once, before building the engine.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(flashsale::metrics::LATENCY_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| format!("cannot install the Prometheus recorder: {e}"))?;
    flashsale::metrics::describe();
    Ok(handle)
}

/// Keeps the recorder's histograms drained between scrapes (the
/// recorder's upkeep; without it, samples pile up until the next scrape).
fn spawn_metrics_upkeep(
    handle: PrometheusHandle,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => handle.run_upkeep(),
            }
        }
    })
}

/// One request as both servers' middleware sees it: its id (taken from
/// `X-Request-Id` when usable, made otherwise), the span every log line of
/// the request is written in, and what its metrics are labelled with.
pub struct RequestScope {
    /// The request's id, sent back in `X-Request-Id`.
    pub id: flashsale::http::request_id::RequestId,
    /// `request{request_id=…}`: run the request's future inside it.
    pub span: tracing::Span,
    started: std::time::Instant,
    method: &'static str,
    route: &'static str,
}

impl RequestScope {
    /// Starts a request: `method`, `path` and its `X-Request-Id` header.
    pub fn begin(method: &str, path: &str, request_id: Option<&[u8]>) -> Self {
        let id = flashsale::http::request_id::RequestId::from_header(request_id);
        Self {
            span: id.span(),
            id,
            started: std::time::Instant::now(),
            method: method_label(method),
            route: route_template(path),
        }
    }

    /// Ends it: records its metrics ([`record_http`]) and, at `debug`, logs
    /// one line for it in its span.
    pub fn finish(self, status: u16) {
        let took = self.started.elapsed();
        record_http(self.method, self.route, status, took);
        // In scope, not `parent:`: formatters list the entered spans.
        self.span.in_scope(|| {
            tracing::debug!(
                method = self.method,
                route = self.route,
                status,
                micros = took.as_micros() as u64,
                "request served"
            );
        });
    }
}

/// The route template a request path matched, as the routers of both
/// frameworks match it (`{param}`: one non-empty segment), for the `route`
/// label: never the raw path, so ids never become label values. A path
/// that matches no route is `unmatched`.
pub fn route_template(path: &str) -> &'static str {
    use flashsale::http::paths;
    let Some(rest) = path.strip_prefix('/') else {
        return "unmatched";
    };
    let mut parts = rest.split('/');
    let s: [Option<&str>; 5] = std::array::from_fn(|_| parts.next());
    let param = |p: Option<&str>| p.is_some_and(|p| !p.is_empty());
    match s {
        [Some("buy"), id, None, ..] if param(id) => paths::BUY,
        [Some("products"), id, None, ..] if param(id) => paths::PRODUCT,
        [Some("admin"), Some("products"), id, None, _] if param(id) => paths::ADMIN_PRODUCT,
        [Some("orders"), id, Some("confirm"), None, _] if param(id) => paths::CONFIRM,
        [Some("orders"), id, Some("cancel"), None, _] if param(id) => paths::CANCEL,
        [Some("healthz"), None, ..] => paths::HEALTHZ,
        [Some("readyz"), None, ..] => paths::READYZ,
        [Some("openapi.json"), None, ..] => paths::OPENAPI,
        [Some("metrics"), None, ..] => METRICS_PATH,
        _ => "unmatched",
    }
}

/// The `method` label: the standard methods, or `OTHER`.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "OTHER",
    }
}

/// The `status` label, without formatting for the statuses the API
/// answers with.
fn status_label(status: u16) -> metrics::SharedString {
    let known = match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        503 => "503",
        other => return other.to_string().into(),
    };
    known.into()
}

/// One route's HTTP handles, by `(method, route, status)`.
type HttpHandles =
    HashMap<(&'static str, &'static str, u16), (metrics::Counter, metrics::Histogram)>;

/// The HTTP handles registered so far with the global recorder (bounded:
/// methods, route templates and statuses are).
static HTTP_HANDLES: OnceLock<RwLock<HttpHandles>> = OnceLock::new();

/// Records one HTTP request: [`flashsale::metrics::HTTP_REQUESTS_TOTAL`]
/// and [`flashsale::metrics::HTTP_REQUEST_DURATION_SECONDS`], labelled by
/// method ([`method_label`]), route template ([`route_template`]) and
/// status. Each label set's handles are registered once and reused, so a
/// request costs a map lookup, not a registration.
pub fn record_http(method: &'static str, route: &'static str, status: u16, took: Duration) {
    use flashsale::metrics::{HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL};
    let handles = HTTP_HANDLES.get_or_init(Default::default);
    let key = (method, route, status);
    let record = |(count, latency): &(metrics::Counter, metrics::Histogram)| {
        count.increment(1);
        latency.record(took.as_secs_f64());
    };
    if let Some(h) = handles.read().get(&key) {
        return record(h);
    }
    let labels = [
        metrics::Label::from_static_parts("method", method),
        metrics::Label::from_static_parts("route", route),
        metrics::Label::new("status", status_label(status)),
    ];
    let mut handles = handles.write();
    let h = handles.entry(key).or_insert_with(|| {
        (
            metrics::counter!(HTTP_REQUESTS_TOTAL, labels.iter()),
            metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, labels.iter()),
        )
    });
    record(h);
}
