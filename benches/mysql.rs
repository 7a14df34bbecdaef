//! Purchases per second through the `Engine` on MySQL / MariaDB (its
//! outbox relay running beside it), with hot-row batching on and off,
//! against a baseline measured in the same run: `mariadb-slap` running the
//! bare hot-row statement
//! `UPDATE <table> SET available = available - 1 WHERE id = 1 AND available >= 1`
//! (autocommit) at the same concurrency.
//!
//! ```text
//! backends/mysql/with-mysql.sh cargo bench --bench mysql --features mysql
//! ```
//!
//! Env: `FLASHSALE_DATABASE_URL` (default `mysql://root@127.0.0.1:3306/test`;
//! `mariadb-slap` is pointed at the same host, port, user and database),
//! `BENCH_CONCURRENCY` (comma-separated buyer counts, default `32`),
//! `BENCH_SECONDS` per phase (default 5), `BENCH_PRODUCTS` for the
//! many-products phase (default 16), `BENCH_LANES` (`MySqlOptions::batch_lanes`,
//! default 1), `BENCH_RAW=1` to call the store directly instead of the
//! `Engine`. Needs `mariadb-slap` on PATH (Debian
//! package `mariadb-client`). Run it on an otherwise idle server: every
//! other client slows every phase down.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flashsale::memory::{MemoryOrderSink, MemoryRateLimiter, StaticAuthenticator};
use flashsale::mysql::{MySqlOptions, MySqlStockStore};
use flashsale::{
    Credentials, Engine, Outcome, ProductId, PurchaseRequest, Quantity, RateLimiter, RateQuota,
    Sale, StockStore,
};
use flashsale::{Principal, UserId};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where the server is, as `mariadb-slap` needs it.
struct Server {
    url: String,
    host: String,
    port: String,
    user: String,
    password: Option<String>,
    database: String,
}

impl Server {
    fn from_url(url: &str) -> Self {
        let rest = url.trim_start_matches("mysql://");
        let (auth, rest) = rest.rsplit_once('@').unwrap_or(("root", rest));
        let (user, password) = match auth.split_once(':') {
            Some((u, p)) => (u.to_owned(), Some(p.to_owned())),
            None => (auth.to_owned(), None),
        };
        let (hostport, database) = rest.split_once('/').unwrap_or((rest, "test"));
        let database = database.split('?').next().unwrap_or("test").to_owned();
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
        Self {
            url: url.to_owned(),
            host: host.to_owned(),
            port: port.to_owned(),
            user,
            password,
            database,
        }
    }
}

/// An engine on `stock`, its orders going to an in-memory sink through
/// the outbox relay; `users` buyers with static tokens, a limiter that
/// never refuses them.
fn engine(stock: Arc<dyn StockStore>, users: usize) -> Engine {
    let mut auth = StaticAuthenticator::new();
    for u in 0..users {
        auth.insert(
            format!("token-{u}"),
            Principal::user(UserId::new(format!("bench-user-{u}")).unwrap()),
        );
    }
    let quota = RateQuota::per_second(1_000_000).unwrap();
    let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new(quota));
    Engine::builder()
        .stock_store(stock)
        .rate_limiter(limiter)
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(Arc::new(auth))
        .build()
        .expect("valid engine")
}

/// `buyers` buyers buying one unit at a time of `products` (buyer `b`
/// buys product `b % products.len()`) for `seconds`; purchases/s.
async fn load(engine: &Engine, products: &[ProductId], buyers: usize, seconds: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let bought = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for b in 0..buyers {
        let engine = engine.clone();
        let product = products[b % products.len()].clone();
        let (stop, bought) = (stop.clone(), bought.clone());
        tasks.push(tokio::spawn(async move {
            let creds = Credentials::bearer(format!("token-{b}"));
            while !stop.load(Ordering::Relaxed) {
                let req = PurchaseRequest::new(product.clone(), Quantity::ONE);
                match engine.purchase(&creds, req).await {
                    Outcome::Purchased(_) => {
                        bought.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    bought.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Like [`load`], straight on the store (no engine): reserves/s.
async fn raw_load(
    store: &MySqlStockStore,
    products: &[ProductId],
    buyers: usize,
    seconds: u64,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let bought = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for b in 0..buyers {
        let store = store.clone();
        let product = products[b % products.len()].clone();
        let (stop, bought) = (stop.clone(), bought.clone());
        tasks.push(tokio::spawn(async move {
            let user = UserId::new(format!("bench-user-{b}")).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let now = flashsale::Timestamp::from_millis(1_767_225_600_000);
                let req = flashsale::ReserveRequest {
                    order_id: flashsale::OrderId::new(now),
                    product: product.clone(),
                    user: user.clone(),
                    quantity: Quantity::ONE,
                    idempotency_key: None,
                    now,
                };
                match store.reserve(&req).await {
                    Ok(flashsale::ReserveOutcome::Reserved(_)) => {
                        bought.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    bought.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// One engine phase on a fresh table prefix: purchases/s, and the mean
/// batch size (batching on).
async fn engine_phase(
    server: &Server,
    batching: bool,
    buyers: usize,
    products: usize,
    seconds: u64,
) -> (f64, Option<f64>) {
    let prefix = format!(
        "fst_bench_{}_",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let opts = MySqlOptions::new(&server.url)
        .prefix(&prefix)
        .max_connections(u32::try_from(buyers).unwrap_or(u32::MAX).max(4))
        .batching(batching)
        .batch_lanes(env_or("BENCH_LANES", 1));
    let store = MySqlStockStore::with_options(opts)
        .await
        .expect("MySQL answers; run through backends/mysql/with-mysql.sh");
    store.migrate().await.expect("migrations apply");
    let e = engine(Arc::new(store.clone()), buyers);
    let mut ids = Vec::new();
    for i in 0..products {
        let p = ProductId::new(format!("bench-{i}")).unwrap();
        e.create_sale(&Sale::builder(p.clone(), Sale::MAX_STOCK).build().unwrap())
            .await
            .unwrap();
        ids.push(p);
    }
    let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = e.spawn_relay(Duration::from_millis(100), async move {
        let _ = relay_stopped.await;
    });
    let rate = if std::env::var_os("BENCH_RAW").is_some() {
        raw_load(&store, &ids, buyers, seconds).await
    } else {
        load(&e, &ids, buyers, seconds).await
    };
    let _ = stop_relay.send(());
    let _ = relay.await;
    let mean = store.batch_stats().map(|s| s.mean_batch());
    drop_tables(server, &prefix).await;
    (rate, mean)
}

async fn admin(server: &Server) -> sqlx::MySqlPool {
    sqlx::MySqlPool::connect(&server.url)
        .await
        .expect("MySQL answers")
}

async fn drop_tables(server: &Server, prefix: &str) {
    let pool = admin(server).await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_name LIKE ?",
    )
    .bind(format!("{prefix}%"))
    .fetch_all(&pool)
    .await
    .unwrap_or_default();
    for t in tables {
        let _ = sqlx::query(&format!("DROP TABLE IF EXISTS `{t}`"))
            .execute(&pool)
            .await;
    }
}

/// `mariadb-slap` running the bare hot-row statement at `concurrency`
/// connections; rows actually decremented per second of its run.
async fn slap(server: &Server, concurrency: usize, seconds: u64) -> f64 {
    let table = format!(
        "fst_bench_slap_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let pool = admin(server).await;
    sqlx::query(&format!(
        "CREATE TABLE {table} (id INT NOT NULL PRIMARY KEY, available BIGINT NOT NULL) \
         ENGINE = InnoDB"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let start_units: i64 = 1_000_000_000_000;
    sqlx::query(&format!(
        "INSERT INTO {table} (id, available) VALUES (1, {start_units})"
    ))
    .execute(&pool)
    .await
    .unwrap();
    // About `seconds` of work at ~15k/s; the rate is measured, not assumed.
    let queries = (15_000 * seconds as usize).max(concurrency * 100);
    let statement =
        format!("UPDATE {table} SET available = available - 1 WHERE id = 1 AND available >= 1");
    let mut cmd = Command::new("mariadb-slap");
    cmd.args([
        "--protocol=tcp",
        &format!("--host={}", server.host),
        &format!("--port={}", server.port),
        &format!("--user={}", server.user),
        &format!("--create-schema={}", server.database),
        &format!("--concurrency={concurrency}"),
        "--iterations=1",
        &format!("--number-of-queries={queries}"),
        &format!("--query={statement}"),
    ]);
    if let Some(p) = &server.password {
        cmd.arg(format!("--password={p}"));
    }
    let started = Instant::now();
    let out = cmd
        .output()
        .expect("mariadb-slap on PATH (Debian package mariadb-client)");
    let wall = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "mariadb-slap failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "Average number of seconds to run all queries: 1.234 seconds"
    let secs = text
        .lines()
        .find(|l| l.contains("to run all queries"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(wall);
    let left: i64 = sqlx::query_scalar(&format!("SELECT available FROM {table} WHERE id = 1"))
        .fetch_one(&pool)
        .await
        .unwrap();
    let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute(&pool)
        .await;
    let done = (start_units - left) as f64;
    done / secs.max(1e-9)
}

fn main() {
    let url = std::env::var("FLASHSALE_DATABASE_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let server = Server::from_url(&url);
    let concurrencies: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "32".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    assert!(!concurrencies.is_empty(), "BENCH_CONCURRENCY: no numbers");
    let seconds: u64 = env_or("BENCH_SECONDS", 5);
    let products: usize = env_or("BENCH_PRODUCTS", 16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "mysql bench: buyers {concurrencies:?}, {seconds} s per phase, server at {}",
        server.url
    );
    let mut summary = Vec::new();
    rt.block_on(async {
        for &c in &concurrencies {
            let bare = slap(&server, c, seconds).await;
            println!(
                "  {c:>4} connections: mariadb-slap bare UPDATE (autocommit): {bare:>8.0} rows/s"
            );
            let (off, _) = engine_phase(&server, false, c, 1, seconds).await;
            println!("  {c:>4} buyers, one product, batching off: {off:>8.0} purchases/s");
            let (on, mean) = engine_phase(&server, true, c, 1, seconds).await;
            let mean = mean.unwrap_or(0.0);
            println!(
                "  {c:>4} buyers, one product, batching on:  {on:>8.0} purchases/s \
                 (mean batch {mean:.1})"
            );
            summary.push((c, bare, off, on, mean));
        }
        let c = concurrencies.iter().copied().max().unwrap_or(32).min(32);
        let (off, _) = engine_phase(&server, false, c, products, seconds).await;
        let (on, mean) = engine_phase(&server, true, c, products, seconds).await;
        println!(
            "  {c:>4} buyers, {products} products, batching off: {off:>8.0} purchases/s; \
             on: {on:.0} purchases/s (mean batch {:.1})",
            mean.unwrap_or(0.0)
        );
    });
    println!("summary (one hot product):");
    println!("  buyers | bare UPDATE/s | engine off/s | engine on/s | off/bare | on/bare | on/off");
    for (c, bare, off, on, _) in summary {
        println!(
            "  {c:>6} | {bare:>13.0} | {off:>12.0} | {on:>11.0} | {:>8.2} | {:>7.2} | {:>6.2}",
            off / bare,
            on / bare,
            on / off
        );
    }
}
