//! Purchases per second through the `Engine` on Redis (its outbox relay
//! running beside it), against the ceiling `redis-benchmark` reaches running
//! the same reserve script by EVALSHA, and the same for a baseline: the
//! common stream-based "seckill" script ([`SECKILL`]); the Redis round trips per purchase,
//! counted with `MONITOR` (commands run inside scripts excluded), relay
//! included; the post-sellout path with and without the sold-out cache; and
//! the cost of `RedisOptions::wait_replicas(1, ..)`: purchases/s with and
//! without `WAIT` on a throwaway primary with one replica (both started
//! here with `redis-server` on spare loopback ports; skipped without it).
//!
//! ```text
//! backends/redis/with-redis.sh cargo bench --bench redis --features redis
//! ```
//!
//! Env: `FLASHSALE_REDIS_URL` (default `redis://127.0.0.1:6379`),
//! `BENCH_CONCURRENCY` (default 64), `BENCH_SECONDS` per phase (default 5),
//! `BENCH_PIPELINE` for redis-benchmark (default 16). Needs `redis-benchmark`
//! and `redis-cli` on PATH. Prints one line per phase and a summary. Run it
//! on an otherwise idle Redis: the round-trip count filters `MONITOR` by the
//! bench's key prefix, but other clients still slow every phase down.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flashsale::memory::{MemoryOrderSink, MemoryRateLimiter, StaticAuthenticator};
use flashsale::redis::{RedisOptions, RedisRateLimiter, RedisStockStore};
use flashsale::{
    Credentials, Engine, Outcome, ProductId, PurchaseRequest, Quantity, RateLimiter, RateQuota,
    Sale, SoldOutCache, StockStore,
};
use flashsale::{Principal, UserId};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone)]
struct Setup {
    url: String,
    host: String,
    port: String,
    concurrency: usize,
    seconds: u64,
    pipeline: usize,
    prefix: String,
}

/// An engine on `stock` and `limiter`, its orders going to an in-memory
/// sink (through the outbox relay, when one is spawned).
fn engine(stock: Arc<dyn StockStore>, limiter: Arc<dyn RateLimiter>, users: usize) -> Engine {
    let mut auth = StaticAuthenticator::new();
    for u in 0..users {
        auth.insert(
            format!("token-{u}"),
            Principal::user(UserId::new(format!("bench-user-{u}")).unwrap()),
        );
    }
    Engine::builder()
        .stock_store(stock)
        .rate_limiter(limiter)
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(Arc::new(auth))
        .build()
        .expect("valid engine")
}

/// Runs `concurrency` buyers against `engine` for `seconds`; returns
/// (attempts/s, purchased/s).
async fn load(engine: &Engine, product: &ProductId, s: &Setup) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let bought = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for b in 0..s.concurrency {
        let (engine, product) = (engine.clone(), product.clone());
        let (stop, attempts, bought) = (stop.clone(), attempts.clone(), bought.clone());
        tasks.push(tokio::spawn(async move {
            let creds = Credentials::bearer(format!("token-{b}"));
            while !stop.load(Ordering::Relaxed) {
                let req = PurchaseRequest::new(product.clone(), Quantity::ONE);
                match engine.purchase(&creds, req).await {
                    Outcome::Purchased(_) => {
                        bought.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::SoldOut => {}
                    other => panic!("unexpected {other:?}"),
                }
                attempts.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(s.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    (
        attempts.load(Ordering::Relaxed) as f64 / secs,
        bought.load(Ordering::Relaxed) as f64 / secs,
    )
}

/// Counts the commands clients send to Redis (not those run inside
/// scripts) whose text contains `needle`, while `f` runs; returns `f`'s
/// output and the count.
async fn count_round_trips<T>(
    s: &Setup,
    needle: &str,
    f: impl std::future::Future<Output = T>,
) -> (T, u64) {
    let mut monitor = Command::new("redis-cli")
        .args(["-h", &s.host, "-p", &s.port, "MONITOR"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli on PATH");
    let stdout = monitor.stdout.take().unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let needle_owned = needle.to_owned();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        // `MONITOR` answers `OK` once it is watching.
        let _ = lines.next();
        let _ = started_tx.send(());
        let mut n = 0u64;
        for line in lines.map_while(Result::ok) {
            // Lines look like `<time> [<db> <client addr>] "CMD" ...`;
            // commands run by a script show `[<db> lua]`.
            if !line.contains(" lua] ") && line.contains(&needle_owned) {
                n += 1;
            }
        }
        n
    });
    started_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("MONITOR started");
    let out = f.await;
    // Let the last commands reach the monitor, then stop it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = monitor.kill();
    let _ = monitor.wait();
    (out, reader.join().unwrap())
}

/// `redis-benchmark` running reserve.lua by EVALSHA against its own sale,
/// with the same keys and arguments the store passes; returns requests/s.
fn redis_benchmark(s: &Setup, pipeline: usize) -> f64 {
    // The script exactly as the store sends it: the shared helpers, then
    // reserve.lua.
    let script = concat!(
        include_str!("../backends/redis/holds.lua"),
        include_str!("../backends/redis/reserve.lua")
    );
    let out = Command::new("redis-cli")
        .args(["-h", &s.host, "-p", &s.port, "SCRIPT", "LOAD", script])
        .output()
        .expect("redis-cli on PATH");
    let sha = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(sha.len(), 40, "SCRIPT LOAD answered {sha:?}");
    let tag = format!("{{{}|rb}}", s.prefix);
    // The sale, written directly (as create_sale.lua would): plenty of stock.
    let status = Command::new("redis-cli")
        .args(["-h", &s.host, "-p", &s.port, "HSET", &format!("{tag}:sale")])
        .args([
            "total",
            "1000000000",
            "available",
            "1000000000",
            "held",
            "0",
            "committed",
            "0",
            "limit",
            "4294967295",
            "omax",
            "1000000",
            "start",
            "",
            "end",
            "",
            "hold_ms",
            "0",
            "hold_ns",
            "0",
        ])
        .output()
        .expect("redis-cli on PATH");
    assert!(status.status.success());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let rps = run_redis_benchmark(s, pipeline, |cmd| {
        cmd.args(["EVALSHA", &sha, "12"])
            .args([
                format!("{tag}:sale"),
                format!("{tag}:users"),
                format!("{tag}:res"),
                format!("{tag}:idem"),
                format!("{tag}:exp"),
                format!("{tag}:done"),
                format!("{tag}:outbox"),
                format!("{tag}:events"),
                format!("{tag}:claims"),
                format!("{}|order:__rand_int__", s.prefix),
                format!("{{{}}}|pending", s.prefix),
                format!("{{{}}}|due", s.prefix),
            ])
            // order id, user, quantity, no idempotency key, now, order-index
            // ttl, product, record retention, replay claim lifetime
            .args([
                "__rand_int__",
                "bench-user",
                "1",
                "",
                "",
                &now,
                "180000000",
                "rb",
                "86400000",
                "900000",
            ]);
    });
    let sold: String = String::from_utf8_lossy(
        &Command::new("redis-cli")
            .args([
                "-h",
                &s.host,
                "-p",
                &s.port,
                "HGET",
                &format!("{tag}:sale"),
                "committed",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_owned();
    eprintln!("  (redis-benchmark -P {pipeline}: {sold} units sold by its reserves)");
    rps
}

/// The baseline: the common "seckill" Lua pattern most flash-sale demos
/// run, written here from its usual description. It checks the stock
/// (`GET`) and whether the buyer already bought (`SISMEMBER`), then takes
/// one unit (`DECRBY`), marks the buyer (`SADD`) and appends the order to a
/// stream (`XADD`) for a consumer group. It has no order ids, idempotency,
/// holds, caps by quantity, leases or purge: what our reserve pays on top.
const SECKILL: &str = r#"
local stock = tonumber(redis.call('GET', KEYS[1]) or '-1')
if stock < tonumber(ARGV[2]) then return 0 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 2 end
redis.call('DECRBY', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'user', ARGV[1], 'product', ARGV[3],
  'quantity', ARGV[2], 'order', ARGV[4])
return 1
"#;

/// `redis-benchmark` running [`SECKILL`] by EVALSHA with plenty of stock
/// and a random buyer per call (so every call takes the selling path, as
/// every reserve in [`redis_benchmark`] does); returns requests/s.
fn seckill_benchmark(s: &Setup, pipeline: usize) -> f64 {
    let cli = |args: &[&str]| -> String {
        let out = Command::new("redis-cli")
            .args(["-h", &s.host, "-p", &s.port])
            .args(args)
            .output()
            .expect("redis-cli on PATH");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let sha = cli(&["SCRIPT", "LOAD", SECKILL]);
    assert_eq!(sha.len(), 40, "SCRIPT LOAD answered {sha:?}");
    let tag = format!("{{{}|sk}}", s.prefix);
    let (stock, buyers, orders) = (
        format!("{tag}:stock"),
        format!("{tag}:buyers"),
        format!("{tag}:orders"),
    );
    let _ = cli(&["DEL", &stock, &buyers, &orders]);
    assert_eq!(cli(&["SET", &stock, "1000000000"]), "OK");
    let rps = run_redis_benchmark(s, pipeline, |cmd| {
        cmd.args(["EVALSHA", &sha, "3", &stock, &buyers, &orders])
            .args(["buyer:__rand_int__", "1", "sk", "__rand_int__"]);
    });
    let sold = cli(&["XLEN", &orders]);
    eprintln!("  (redis-benchmark -P {pipeline}: {sold} orders appended by the seckill script)");
    let _ = cli(&["DEL", &stock, &buyers, &orders]);
    rps
}

/// Runs `redis-benchmark` with the bench's clients, `pipeline` and a
/// request count for `BENCH_SECONDS`, on the command `command` adds
/// (`__rand_int__` fresh per call); returns requests/s.
fn run_redis_benchmark(s: &Setup, pipeline: usize, command: impl FnOnce(&mut Command)) -> f64 {
    let requests = (s.seconds as usize * 40_000).max(50_000).to_string();
    let mut cmd = Command::new("redis-benchmark");
    cmd.args(["-h", &s.host, "-p", &s.port])
        .args(["-c", &s.concurrency.to_string()])
        .args(["-P", &pipeline.to_string()])
        .args(["-n", &requests, "-r", "100000000", "--csv"]);
    command(&mut cmd);
    let out = cmd.output().expect("redis-benchmark on PATH");
    csv_rps(&String::from_utf8_lossy(&out.stdout))
}

/// The requests/s of redis-benchmark's CSV output: `"test","rps",...`.
fn csv_rps(text: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.split("\",\"").nth(1))
        .filter_map(|v| v.trim_matches('"').parse::<f64>().ok())
        .next()
        .unwrap_or_else(|| panic!("cannot read redis-benchmark output: {text}"))
}

fn cleanup(s: &Setup) {
    for pattern in [
        format!("{}|*", s.prefix),
        format!("{{{}|*", s.prefix),
        format!("{{{}}}|*", s.prefix),
    ] {
        let keys = Command::new("redis-cli")
            .args([
                "-h",
                &s.host,
                "-p",
                &s.port,
                "--scan",
                "--pattern",
                &pattern,
            ])
            .output()
            .unwrap();
        for chunk in String::from_utf8_lossy(&keys.stdout)
            .lines()
            .collect::<Vec<_>>()
            .chunks(500)
        {
            let _ = Command::new("redis-cli")
                .args(["-h", &s.host, "-p", &s.port, "DEL"])
                .args(chunk)
                .output();
        }
    }
}

/// A throwaway `redis-server` (no persistence, like the CI standalone),
/// killed on drop.
struct Throwaway {
    port: u16,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Throwaway {
    fn start(extra: &[&str]) -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir = std::env::temp_dir().join(format!("flashsale-bench-{port}"));
        std::fs::create_dir_all(&dir).ok()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let t = Throwaway { port, child, dir };
        t.wait_for("PONG", &["ping"]);
        Some(t)
    }

    /// Polls `redis-cli args` until its output contains `want`.
    fn wait_for(&self, want: &str, args: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("redis-cli")
                .args(["-p", &self.port.to_string()])
                .args(args)
                .output()
                .expect("redis-cli on PATH");
            if String::from_utf8_lossy(&out.stdout).contains(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {}: no {want:?} from {args:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cost of `wait_replicas(1, ..)`: purchases/s through the engine on a
/// throwaway primary with one replica, without and with `WAIT`, at the
/// bench's concurrency and with one buyer. Rows of (buyers, without, with);
/// `None` without `redis-server`.
async fn wait_cost(s: &Setup) -> Option<Vec<(usize, f64, f64)>> {
    // Sync the replica at once, not after the default 5 s delay.
    let Some(primary) = Throwaway::start(&["--repl-diskless-sync-delay", "0"]) else {
        println!("WAIT cost: skipped (cannot start redis-server)");
        return None;
    };
    let replica = Throwaway::start(&["--replicaof", "127.0.0.1", &primary.port.to_string()])?;
    // The primary streams writes to a new replica only from its first ACK
    // (up to 1 s after the sync): wait until one WAIT is answered.
    let url = format!("redis://127.0.0.1:{}", primary.port);
    let mut probe = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _: () = redis::cmd("SET")
            .arg(format!("{}:probe", s.prefix))
            .arg(1)
            .query_async(&mut probe)
            .await
            .unwrap();
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(100)
            .query_async(&mut probe)
            .await
            .unwrap();
        if acked == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never acknowledged a write"
        );
    }
    let quota = RateQuota::per_second(1_000_000).unwrap();
    let limiter: Arc<dyn RateLimiter> = Arc::new(
        RedisRateLimiter::connect(&url, &s.prefix, quota)
            .await
            .unwrap(),
    );
    let plain = RedisStockStore::connect(&url, &s.prefix).await.unwrap();
    let waiting = RedisStockStore::with_options(
        RedisOptions::single(&url)
            .prefix(&s.prefix)
            .wait_replicas(1, Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let product = ProductId::new("bench-wait").unwrap();
    let mut rows = Vec::new();
    for buyers in [s.concurrency, 1] {
        let at = Setup {
            concurrency: buyers,
            ..s.clone()
        };
        let mut rates = [0.0; 2];
        for (i, stock) in [plain.clone(), waiting.clone()].into_iter().enumerate() {
            let e = engine(Arc::new(stock), limiter.clone(), buyers);
            e.create_sale(
                &Sale::builder(product.clone(), Sale::MAX_STOCK)
                    .build()
                    .unwrap(),
            )
            .await
            .unwrap();
            rates[i] = load(&e, &product, &at).await.1;
        }
        println!(
            "engine purchases/s, {buyers} buyer(s), primary + 1 replica: {:.0} without WAIT, \
             {:.0} with wait_replicas(1, 100 ms) (ratio {:.2})",
            rates[0],
            rates[1],
            rates[1] / rates[0]
        );
        rows.push((buyers, rates[0], rates[1]));
    }
    drop(replica);
    Some(rows)
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not supported.
    let url =
        std::env::var("FLASHSALE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let hostport = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned();
    let (host, port) = hostport.split_once(':').unwrap_or((&hostport, "6379"));
    let s = Setup {
        url: url.clone(),
        host: host.to_owned(),
        port: port.to_owned(),
        concurrency: env_or("BENCH_CONCURRENCY", 64),
        seconds: env_or("BENCH_SECONDS", 5),
        pipeline: env_or("BENCH_PIPELINE", 16),
        prefix: format!("flashsale-bench:{}", uuid::Uuid::now_v7().simple()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "redis bench: {} concurrent buyers, {} s per phase, Redis at {}",
        s.concurrency, s.seconds, s.url
    );
    let results = rt.block_on(async {
        let store = Arc::new(
            RedisStockStore::connect(&s.url, &s.prefix)
                .await
                .expect("Redis answers; run through backends/redis/with-redis.sh"),
        );
        let quota = RateQuota::per_second(1_000_000).unwrap();
        let limiter: Arc<dyn RateLimiter> = Arc::new(
            RedisRateLimiter::connect(&s.url, &s.prefix, quota)
                .await
                .unwrap(),
        );
        let users = s.concurrency;

        // 1. Purchases through the engine, Redis stock + Redis limiter, the
        //    outbox relay delivering the orders meanwhile.
        let e = engine(store.clone(), limiter.clone(), users);
        let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
        let relay = e.spawn_relay(Duration::from_millis(100), async move {
            let _ = relay_stopped.await;
        });
        let hot = ProductId::new("bench-hot").unwrap();
        e.create_sale(&Sale::builder(hot.clone(), Sale::MAX_STOCK).build().unwrap())
            .await
            .unwrap();
        let (_, purchases) = load(&e, &hot, &s).await;
        println!("engine purchases/s (Redis stock + Redis limiter, relay running): {purchases:.0}");

        // 1b. The same with the in-process limiter: what the GCRA script
        //     costs a purchase (one more round trip and script per buy).
        let local = engine(
            store.clone(),
            Arc::new(MemoryRateLimiter::new(quota)),
            users,
        );
        let (stop_local, local_stopped) = tokio::sync::oneshot::channel::<()>();
        let local_relay = local.spawn_relay(Duration::from_millis(100), async move {
            let _ = local_stopped.await;
        });
        let warm = ProductId::new("bench-hot-local").unwrap();
        local
            .create_sale(&Sale::builder(warm.clone(), Sale::MAX_STOCK).build().unwrap())
            .await
            .unwrap();
        let (_, purchases_local) = load(&local, &warm, &s).await;
        println!(
            "engine purchases/s (Redis stock + memory limiter, relay running): {purchases_local:.0}"
        );
        let _ = local.drain_outbox().await;
        let _ = stop_local.send(());
        let _ = local_relay.await;

        // 2. Round trips per purchase, relay included (a shorter phase:
        //    MONITOR slows Redis down).
        let short = Setup {
            seconds: s.seconds.clamp(1, 2),
            ..s.clone()
        };
        let delivered_before = e.drain_outbox().await.unwrap_or(0);
        let ((_, bought_per_s), commands) =
            count_round_trips(&s, &s.prefix, async {
                let r = load(&e, &hot, &short).await;
                // Whatever the relay has not yet delivered is its share too.
                let _ = e.drain_outbox().await;
                r
            })
            .await;
        let bought = bought_per_s * short.seconds as f64;
        let round_trips = commands as f64 / bought.max(1.0);
        println!(
            "redis round trips per purchase (relay included): {round_trips:.2} \
             ({commands} commands for ~{bought:.0} purchases; {delivered_before} events were pending before)"
        );
        let _ = stop_relay.send(());
        let _ = relay.await;

        // 3. Post-sellout, with and without the sold-out cache.
        let gone = ProductId::new("bench-gone").unwrap();
        e.create_sale(&Sale::builder(gone.clone(), 0).build().unwrap())
            .await
            .unwrap();
        let memory_limiter: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new(quota));
        let cached: Arc<dyn StockStore> = Arc::new(SoldOutCache::new(
            RedisStockStore::connect(&s.url, &s.prefix).await.unwrap(),
        ));
        let mut rows = Vec::new();
        for (name, stock, lim) in [
            (
                "no cache, Redis limiter",
                store.clone() as Arc<dyn StockStore>,
                limiter.clone(),
            ),
            (
                "sold-out cache, Redis limiter",
                cached.clone(),
                limiter.clone(),
            ),
            (
                "no cache, memory limiter",
                store.clone() as Arc<dyn StockStore>,
                memory_limiter.clone(),
            ),
            (
                "sold-out cache, memory limiter",
                cached.clone(),
                memory_limiter.clone(),
            ),
        ] {
            let (attempts, _) = load(&engine(stock, lim, users), &gone, &s).await;
            println!("post-sellout attempts/s ({name}): {attempts:.0}");
            rows.push(attempts);
        }
        (purchases, purchases_local, round_trips, rows)
    });
    let (purchases, purchases_local, round_trips, post) = results;

    // Each script pipelined (`BENCH_PIPELINE`) and not: (pipelined, not).
    let both = |what: &str, run: fn(&Setup, usize) -> f64| -> (f64, f64) {
        let rates = [s.pipeline, 1].map(|pipeline| {
            let rate = run(&s, pipeline);
            println!(
                "redis-benchmark EVALSHA {what}, -c {} -P {pipeline}: {rate:.0} calls/s",
                s.concurrency
            );
            rate
        });
        (rates[0], rates[1])
    };
    // 4. The ceiling: redis-benchmark running reserve.lua by EVALSHA.
    let (pipelined, unpipelined) = both("reserve.lua", redis_benchmark);
    // 5. The baseline: the seckill pattern, the same way.
    let (seckill_pipelined, seckill_unpipelined) = both("seckill pattern", seckill_benchmark);
    cleanup(&s);

    // 6. The cost of WAIT, on its own primary and replica.
    let wait_rows = rt.block_on(wait_cost(&s));

    println!("summary:");
    println!(
        "  reserve.lua / seckill pattern, pipelined = {:.2}, unpipelined = {:.2}",
        pipelined / seckill_pipelined,
        unpipelined / seckill_unpipelined
    );
    println!(
        "  engine purchases/s / pipelined reserve ceiling = {:.2}",
        purchases / pipelined
    );
    println!(
        "  engine purchases/s / unpipelined reserve ceiling = {:.2}",
        purchases / unpipelined
    );
    // A purchase runs two scripts (gcra, reserve) on Redis, plus the
    // relay's share.
    println!(
        "  engine purchases/s / (pipelined ceiling / 2 scripts per purchase) = {:.2}",
        purchases / (pipelined / 2.0)
    );
    println!("  redis round trips per purchase, relay included = {round_trips:.2}");
    println!(
        "  engine purchases/s, Redis limiter / memory limiter = {:.2}",
        purchases / purchases_local
    );
    println!(
        "  post-sellout speed-up from the cache: {:.1}x with the Redis limiter, {:.1}x with the memory limiter",
        post[1] / post[0],
        post[3] / post[2]
    );
    // A known sell-out is answered before the rate check: with the cache,
    // post-sellout attempts cost no round trip, whichever limiter.
    println!(
        "  post-sellout attempts/s (sold-out cache, Redis limiter) / engine purchases/s = {:.1}",
        post[1] / purchases
    );
    for (buyers, without, with) in wait_rows.unwrap_or_default() {
        // At N buyers each purchase takes N / rate seconds on average.
        let extra_us = (buyers as f64 / with - buyers as f64 / without) * 1e6;
        println!(
            "  wait_replicas(1, ..) purchases/s / without WAIT, {buyers} buyer(s) = {:.2} \
             ({extra_us:.0} us more per purchase)",
            with / without
        );
    }
}
