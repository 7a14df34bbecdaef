//! What `RedisStockStore` finds and enforces about Redis durability, on
//! real servers:
//!
//! * the connect-time check of every primary's persistence settings
//!   (`RedisStockStore::durability`), the warning it logs and
//!   `RedisOptions::require_durable`, each on a throwaway `redis-server`
//!   started with the settings under test (no AOF; AOF `everysec`; AOF
//!   `always`; `CONFIG` renamed away, as on managed services);
//! * `RedisOptions::wait_replicas` on a throwaway primary with a replica
//!   (`--replicaof`): an order answered 200 is on the replica; with the
//!   replica gone, or more replicas asked for than there are, the purchase
//!   answers 503 and the buyer owns nothing;
//! * on the Redis Cluster at `FLASHSALE_REDIS_CLUSTER_URLS` (its masters
//!   have no replicas and no AOF): the finding names every master, and the
//!   `WAIT` reaches only the master of the product's slot.
//!
//! Needs `redis-server` and `redis-cli` on PATH. Run through
//! `backends/redis/with-redis.sh`, which also starts the cluster.

#[path = "common/redis_kit.rs"]
mod redis_kit;

use redis_kit::{RedisServer as Server, cli, cluster_urls, spare_port};

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashsale::Principal;
use flashsale::ReserveRequest;
use flashsale::memory::{MemoryOrderSink, MemoryRateLimiter, StaticAuthenticator};
use flashsale::redis::{Durability, RedisOptions, RedisStockStore};
use flashsale::testing::{unique_product, user};
use flashsale::{
    Credentials, Engine, Error, OrderId, Outcome, ProductId, PurchaseRequest, Quantity, RateQuota,
    Sale, StockLevels, StockStore,
};

fn prefix() -> String {
    format!("flashsale-test:{}", uuid::Uuid::now_v7().simple())
}

/// `redis-cli -p port` reading `commands` (one a line) on one connection.
fn piped(port: u16, commands: &str) -> String {
    let mut child = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli on PATH (apt-get install -y redis-server)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// What only these tests ask of a server: replication.
trait Replication {
    fn replica_of(primary: &Server) -> Server;
    fn wait_until_replicas(&self, n: usize);
}

impl Replication for Server {
    /// A replica of `primary`, once the primary counts it for `WAIT`.
    fn replica_of(primary: &Server) -> Server {
        let replica = Server::start(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
        // "Synchronization succeeded" comes before the primary streams
        // writes to the replica (from its first ACK, up to 1 s later), so
        // probe with a write and a WAIT on one connection.
        primary.wait_until("the replica acknowledges writes", || {
            piped(primary.port, "SET flashsale-test:probe 1\nWAIT 1 100\n").ends_with("\n1")
        });
        replica
    }

    fn wait_until_replicas(&self, n: usize) {
        let want = format!("connected_slaves:{n}");
        self.wait_until(&want, || {
            cli(self.port, &["info", "replication"])
                .lines()
                .any(|l| l.trim() == want)
        });
    }
}

/// Collects what the store logs while the guard lives (this thread only).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn warnings(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(" WARN "))
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn opts(server: &Server) -> RedisOptions {
    RedisOptions::single(server.url()).prefix(prefix())
}

fn config_error(result: flashsale::Result<RedisStockStore>) -> String {
    match result {
        Err(e @ Error::Config(_)) => e.to_string(),
        Err(other) => panic!("expected a configuration error, got {other}"),
        Ok(store) => panic!("connected although not durable: {}", store.durability()),
    }
}

#[tokio::test]
async fn no_aof_is_not_durable_warns_and_require_durable_refuses() {
    let server = Server::start(&["--appendonly", "no"]);
    let logs = Logs::default();
    let store = {
        let _guard = logs.capture();
        RedisStockStore::with_options(opts(&server)).await.unwrap()
    };
    let d = store.durability();
    assert!(!d.is_durable(), "{d}");
    let Durability::NotDurable { reason } = d else {
        panic!("{d:?}");
    };
    assert!(
        reason.starts_with(&format!("{}: appendonly no", server.address())),
        "{reason}"
    );
    let warnings = logs.warnings();
    assert!(
        warnings.iter().any(|w| w.contains("NOT durable")
            && w.contains("appendfsync always")
            && w.contains("wait_replicas")
            && w.contains("sold again")),
        "{warnings:#?}"
    );

    let refused =
        config_error(RedisStockStore::with_options(opts(&server).require_durable(true)).await);
    for says in [
        "appendonly no",
        "appendfsync always",
        "wait_replicas",
        "require_durable",
    ] {
        assert!(refused.contains(says), "{refused}");
    }
}

#[tokio::test]
async fn aof_everysec_is_not_durable() {
    let server = Server::start(&["--appendonly", "yes", "--appendfsync", "everysec"]);
    let store = RedisStockStore::with_options(opts(&server)).await.unwrap();
    assert!(
        matches!(store.durability(), Durability::NotDurable { reason }
            if reason.contains("appendfsync everysec")),
        "{}",
        store.durability()
    );
    config_error(RedisStockStore::with_options(opts(&server).require_durable(true)).await);
}

#[tokio::test]
async fn aof_always_is_durable_without_a_warning() {
    let server = Server::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let logs = Logs::default();
    let store = {
        let _guard = logs.capture();
        RedisStockStore::with_options(opts(&server).require_durable(true))
            .await
            .unwrap()
    };
    assert_eq!(store.durability(), &Durability::Fsynced);
    assert!(store.durability().is_durable());
    assert_eq!(logs.warnings(), Vec::<String>::new());
}

#[tokio::test]
async fn a_disabled_config_is_unknown_but_connects() {
    // Managed services often rename CONFIG away; "" disables it.
    let server = Server::start(&["--appendonly", "yes", "--rename-command", "CONFIG", ""]);
    let logs = Logs::default();
    let store = {
        let _guard = logs.capture();
        RedisStockStore::with_options(opts(&server)).await.unwrap()
    };
    assert!(
        matches!(store.durability(), Durability::Unknown { reason } if reason.contains("CONFIG")),
        "{}",
        store.durability()
    );
    let warnings = logs.warnings();
    assert!(
        warnings.iter().any(|w| w.contains("could not be checked")),
        "{warnings:#?}"
    );
    let refused =
        config_error(RedisStockStore::with_options(opts(&server).require_durable(true)).await);
    assert!(refused.contains("CONFIG"), "{refused}");
    // WAIT needs no CONFIG: it satisfies require_durable here too.
    let _primary_alone_is_fine = RedisStockStore::with_options(
        opts(&server)
            .wait_replicas(1, Duration::from_millis(10))
            .require_durable(true),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn unusable_wait_settings_are_refused_before_connecting() {
    // Nothing listens there: each error must come from the options alone.
    let closed = RedisOptions::single(format!("redis://127.0.0.1:{}", spare_port()));
    for (o, says) in [
        (
            closed.clone().wait_replicas(0, Duration::from_millis(10)),
            "at least 1 replica",
        ),
        (
            closed.clone().wait_replicas(1, Duration::ZERO),
            "at least 1 ms",
        ),
        (
            closed
                .clone()
                .response_timeout(Duration::from_millis(100))
                .wait_replicas(1, Duration::from_millis(100)),
            "below the response timeout",
        ),
        (closed.clone().lazy(true).require_durable(true), "lazy"),
    ] {
        let refused = config_error(RedisStockStore::with_options(o).await);
        assert!(refused.contains(says), "{refused}");
    }
}

const STOCK: u32 = 10;

/// A primary that syncs a new replica at once (the default waits 5 s for
/// more replicas to share the transfer).
const PRIMARY: &[&str] = &["--repl-diskless-sync-delay", "0"];

fn engine(stock: RedisStockStore) -> Engine {
    let mut auth = StaticAuthenticator::new();
    auth.insert("token", Principal::user(user(1)));
    Engine::builder()
        .stock_store(Arc::new(stock))
        .rate_limiter(Arc::new(MemoryRateLimiter::new(
            RateQuota::per_second(10_000).unwrap(),
        )))
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(Arc::new(auth))
        .port_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

async fn on_sale(engine: &Engine, case: &str) -> ProductId {
    let product = unique_product(case);
    engine
        .create_sale(&Sale::builder(product.clone(), STOCK).build().unwrap())
        .await
        .unwrap();
    product
}

async fn buy(engine: &Engine, product: &ProductId) -> Outcome {
    engine
        .purchase(
            &Credentials::bearer("token"),
            PurchaseRequest::new(product.clone(), Quantity::ONE),
        )
        .await
}

async fn levels(store: &RedisStockStore, product: &ProductId) -> StockLevels {
    store.snapshot(product).await.unwrap().expect("a sale")
}

fn sold(n: u64) -> StockLevels {
    StockLevels {
        total: u64::from(STOCK),
        available: u64::from(STOCK) - n,
        held: 0,
        committed: n,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_replicas_answers_once_the_replica_has_the_order() {
    let primary = Server::start(PRIMARY);
    let replica = Server::replica_of(&primary);
    let store =
        RedisStockStore::with_options(opts(&primary).wait_replicas(1, Duration::from_millis(1000)))
            .await
            .unwrap();
    assert_eq!(store.durability(), &Durability::Replicated { replicas: 1 });
    let e = engine(store.clone());
    let product = on_sale(&e, "wait-ok").await;
    for n in 1..=3 {
        let outcome = buy(&e, &product).await;
        assert!(matches!(outcome, Outcome::Purchased(_)), "{outcome:?}");
        assert_eq!(levels(&store, &product).await, sold(n));
        // Acknowledged means the replica has it already, no waiting here.
        let on_replica = RedisStockStore::with_options(
            RedisOptions::single(replica.url()).prefix(store.prefix()),
        )
        .await
        .unwrap();
        assert_eq!(levels(&on_replica, &product).await, sold(n));
    }
}

/// Buys once while the replica is there, then `break_it`, then buys again:
/// 503, and the levels are as before the second purchase (voided).
async fn shortfall_owns_nothing(wait_for: u32, break_it: impl FnOnce(&mut Server, &Server)) {
    let primary = Server::start(PRIMARY);
    let mut replica = Server::replica_of(&primary);
    let store = RedisStockStore::with_options(
        opts(&primary).wait_replicas(wait_for, Duration::from_millis(500)),
    )
    .await
    .unwrap();
    let e = engine(store.clone());
    let product = on_sale(&e, "wait-short").await;
    if wait_for == 1 {
        let outcome = buy(&e, &product).await;
        assert!(matches!(outcome, Outcome::Purchased(_)), "{outcome:?}");
    }
    break_it(&mut replica, &primary);
    let before = levels(&store, &product).await;
    let started = Instant::now();
    let outcome = buy(&e, &product).await;
    assert!(
        matches!(outcome, Outcome::Unavailable { .. }),
        "a purchase no replica acknowledged answered {outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        levels(&store, &product).await,
        before,
        "the buyer owns nothing"
    );
    assert!(before.is_consistent());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_shortfall_after_the_replica_dies_is_a_503_and_owns_nothing() {
    shortfall_owns_nothing(1, |replica, primary| {
        replica.kill();
        primary.wait_until_replicas(0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_more_replicas_than_there_are_is_a_503_and_owns_nothing() {
    shortfall_owns_nothing(2, |_, _| {}).await;
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// `cmdstat_wait` calls on the node at `port`.
fn waits_on(port: u16) -> u64 {
    cli(port, &["info", "commandstats"])
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn cluster_finding_names_every_master() {
    let urls = cluster_urls();
    let store = RedisStockStore::with_options(RedisOptions::cluster(urls.clone()).prefix(prefix()))
        .await
        .unwrap();
    let Durability::NotDurable { reason } = store.durability() else {
        panic!(
            "with-redis.sh's masters run without AOF: {}",
            store.durability()
        );
    };
    for url in &urls {
        let address = url.trim_start_matches("redis://");
        assert!(
            reason.contains(&format!("{address}: appendonly no")),
            "{address} missing from {reason}"
        );
    }
}

#[tokio::test]
async fn cluster_wait_reaches_only_the_products_master() {
    let urls = cluster_urls();
    let store = RedisStockStore::with_options(
        RedisOptions::cluster(urls.clone())
            .prefix(prefix())
            .wait_replicas(1, Duration::from_millis(20)),
    )
    .await
    .unwrap();
    let product = unique_product("cluster-wait");
    store
        .create_sale(&Sale::builder(product.clone(), STOCK).build().unwrap())
        .await
        .unwrap();
    let before: Vec<u64> = urls.iter().map(|u| waits_on(port_of(u))).collect();
    let now = flashsale::Clock::now(&flashsale::SystemClock);
    let req = ReserveRequest {
        order_id: OrderId::new(now),
        product: product.clone(),
        user: user(1),
        quantity: Quantity::ONE,
        idempotency_key: None,
        now,
    };
    // The masters have no replicas: the WAIT falls short.
    let err = store.reserve(&req).await.unwrap_err();
    assert!(err.to_string().contains("only 0 of 1 replica"), "{err}");
    store.void(&req, now).await.unwrap();
    assert_eq!(levels(&store, &product).await, sold(0));

    // Every key of the product names it; other keys of the prefix do not.
    let pattern = format!("*{product}*");
    for (url, before) in urls.iter().zip(before) {
        let port = port_of(url);
        let owns = !cli(port, &["--scan", "--pattern", &pattern]).is_empty();
        let waits = waits_on(port) - before;
        assert_eq!(
            waits,
            u64::from(owns),
            "node {url} (owns the product: {owns}) saw {waits} WAIT(s)"
        );
    }
}
