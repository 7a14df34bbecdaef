//! Fault tests for the Redis backends, on real servers:
//!
//! * Redis unreachable (a closed port) and Redis hung (a port that accepts
//!   but never answers): a purchase through the `Engine` ends `Unavailable`
//!   within the configured port timeout, and nothing is reserved.
//! * Redis killed (SIGKILL) and restarted in the middle of a load: no
//!   oversell, every `Purchased` answer is a committed unit whose order
//!   reached the sink, and the same engine recovers without a restart.
//!
//! The restart test starts its own throwaway `redis-server` (AOF with
//! `appendfsync always`, data in a temp dir) on a spare loopback port.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use flashsale::memory::{MemoryOrderSink, MemoryRateLimiter, StaticAuthenticator};
use flashsale::model::Principal;
use flashsale::redis::{RedisOptions, RedisRateLimiter, RedisStockStore};
use flashsale::{
    Credentials, Engine, Outcome, ProductId, PurchaseRequest, Quantity, RateQuota, Sale,
    StockLevels, StockStore,
};

const PORT_TIMEOUT: Duration = Duration::from_millis(300);

fn prefix() -> String {
    format!("flashsale-test:{}", uuid::Uuid::now_v7().simple())
}

fn spare_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn engine(stock: Arc<dyn StockStore>, users: usize) -> (Engine, Arc<MemoryOrderSink>) {
    let mut auth = StaticAuthenticator::new();
    for u in 0..users {
        auth.insert(
            format!("token-{u}"),
            Principal::user(flashsale::testing::user(u)),
        );
    }
    let sink = Arc::new(MemoryOrderSink::new());
    let engine = Engine::builder()
        .stock_store(stock)
        .rate_limiter(Arc::new(MemoryRateLimiter::new(
            RateQuota::per_second(10_000).unwrap(),
        )))
        .order_sink(sink.clone())
        .authenticator(Arc::new(auth))
        .port_timeout(PORT_TIMEOUT)
        .pending_ttl(Duration::from_secs(2))
        .build()
        .unwrap();
    (engine, sink)
}

async fn buy_one(engine: &Engine, product: &ProductId) -> (Outcome, Duration) {
    let started = Instant::now();
    let outcome = engine
        .purchase(
            &Credentials::bearer("token-0"),
            PurchaseRequest::new(product.clone(), Quantity::ONE),
        )
        .await;
    (outcome, started.elapsed())
}

#[tokio::test]
async fn unreachable_redis_means_unavailable_within_the_timeout() {
    let url = format!("redis://127.0.0.1:{}", spare_port());
    // Not lazy: connecting to a closed port fails at once, with a clear error.
    let err = RedisStockStore::connect(&url, "x").await.unwrap_err();
    assert!(err.to_string().contains("redis"), "{err}");
    // Lazy: the server can start later; meanwhile every call fails.
    let store =
        RedisStockStore::with_options(RedisOptions::single(&url).prefix(prefix()).lazy(true))
            .await
            .unwrap();
    let (engine, sink) = engine(Arc::new(store), 1);
    let p = ProductId::new("unreachable").unwrap();
    for _ in 0..3 {
        let (outcome, took) = buy_one(&engine, &p).await;
        assert!(
            matches!(outcome, Outcome::Unavailable { .. }),
            "{outcome:?}"
        );
        assert!(
            took <= PORT_TIMEOUT + Duration::from_millis(150),
            "{took:?}"
        );
    }
    assert!(sink.is_empty(), "nothing was sold");
    assert!(engine.readiness().await.checks[0].1.is_err());
}

#[tokio::test]
async fn hung_redis_means_unavailable_within_the_timeout() {
    // A "server" that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            open.push(sock);
        }
    });
    let store = RedisStockStore::with_options(
        RedisOptions::single(&url)
            .prefix(prefix())
            .lazy(true)
            .response_timeout(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let (engine, sink) = engine(Arc::new(store), 1);
    let p = ProductId::new("hung").unwrap();
    let (outcome, took) = buy_one(&engine, &p).await;
    assert!(
        matches!(outcome, Outcome::Unavailable { .. }),
        "{outcome:?}"
    );
    assert!(took >= PORT_TIMEOUT, "{took:?}");
    assert!(
        took <= PORT_TIMEOUT + Duration::from_millis(150),
        "{took:?}"
    );
    assert!(sink.is_empty());
    hold.abort();
}

/// A throwaway `redis-server` with its data in a temp dir; killed on drop.
struct Throwaway {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Throwaway {
    fn start() -> Self {
        let port = spare_port();
        let dir =
            std::env::temp_dir().join(format!("flashsale-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut t = Throwaway {
            port,
            dir,
            child: None,
        };
        t.spawn();
        t
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}); install it (apt-get install -y \
                     redis-server) or run the tests through backends/redis/with-redis.sh"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let pong = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "ping"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
                .unwrap_or(false);
            if pong {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not come up", self.port);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL: no goodbye, no final flush
            let _ = c.wait();
        }
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_load_never_oversells_and_recovers() {
    const STOCK: u32 = 600;
    const BUYERS: usize = 40;
    let mut server = Throwaway::start();
    let url = server.url();
    let store = Arc::new(
        RedisStockStore::with_options(
            RedisOptions::single(&url)
                .prefix(prefix())
                .response_timeout(Duration::from_millis(250)),
        )
        .await
        .unwrap(),
    );
    let limiter = Arc::new(
        RedisRateLimiter::connect(&url, "faults", RateQuota::per_second(10_000).unwrap())
            .await
            .unwrap(),
    );
    let mut auth = StaticAuthenticator::new();
    for u in 0..BUYERS {
        auth.insert(
            format!("token-{u}"),
            Principal::user(flashsale::testing::user(u)),
        );
    }
    let sink = Arc::new(MemoryOrderSink::new());
    let engine = Engine::builder()
        .stock_store(store.clone())
        .rate_limiter(limiter)
        .order_sink(sink.clone())
        .authenticator(Arc::new(auth))
        .port_timeout(PORT_TIMEOUT)
        .pending_ttl(Duration::from_secs(2))
        .build()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sweeper = engine.spawn_sweeper(Duration::from_millis(100), async move {
        let _ = stop_rx.await;
    });
    let p = flashsale::testing::unique_product("restart");
    engine
        .create_sale(&Sale::builder(p.clone(), STOCK).build().unwrap())
        .await
        .unwrap();

    let purchased = Arc::new(AtomicU32::new(0));
    let unavailable = Arc::new(AtomicU32::new(0));
    let after_restart = Arc::new(AtomicU32::new(0));
    let restarted = Arc::new(AtomicBool::new(false));
    // Set once the store shows nothing available and nothing held.
    let settled = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut tasks = Vec::new();
    for b in 0..BUYERS {
        let (engine, p) = (engine.clone(), p.clone());
        let (purchased, unavailable, after_restart, restarted, settled) = (
            purchased.clone(),
            unavailable.clone(),
            after_restart.clone(),
            restarted.clone(),
            settled.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let creds = Credentials::bearer(format!("token-{b}"));
            let mut won = Vec::new();
            while !settled.load(Ordering::Acquire) && Instant::now() < deadline {
                let req = PurchaseRequest::new(p.clone(), Quantity::ONE);
                match engine.purchase(&creds, req).await {
                    Outcome::Purchased(s) => {
                        purchased.fetch_add(1, Ordering::AcqRel);
                        if restarted.load(Ordering::Acquire) {
                            after_restart.fetch_add(1, Ordering::Relaxed);
                        }
                        won.push(s.order.order_id);
                    }
                    Outcome::Unavailable { .. } => {
                        unavailable.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    // Units held by attempts cut off by the crash come back
                    // when the sweeper expires them.
                    Outcome::SoldOut => tokio::time::sleep(Duration::from_millis(20)).await,
                    other => panic!("buyer {b}: unexpected {other:?}"),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            won
        }));
    }

    // Let the load run, then crash Redis in the middle of it.
    while purchased.load(Ordering::Acquire) < STOCK / 4 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    // Replies already on the wire may still land; after that, nothing can.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let at_crash = purchased.load(Ordering::Acquire);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        purchased.load(Ordering::Acquire) == at_crash,
        "purchases succeeded while Redis was down"
    );
    server.spawn();
    restarted.store(true, Ordering::Release);
    while Instant::now() < deadline {
        if let Ok(Some(l)) = store.snapshot(&p).await {
            assert!(l.is_consistent(), "{l:?}");
            assert!(l.committed <= u64::from(STOCK), "oversold: {l:?}");
            if l.available == 0 && l.held == 0 {
                settled.store(true, Ordering::Release);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut won = Vec::new();
    for t in tasks {
        won.extend(t.await.expect("buyer task panicked"));
    }
    let _ = stop_tx.send(());
    sweeper.await.unwrap();

    let n = purchased.load(Ordering::Acquire);
    let l = engine.snapshot(&p).await.unwrap().unwrap();
    eprintln!(
        "purchased {n}, unavailable {}, after restart {}, levels {l:?}",
        unavailable.load(Ordering::Relaxed),
        after_restart.load(Ordering::Relaxed)
    );
    assert!(
        unavailable.load(Ordering::Relaxed) > 0,
        "the crash was noticed"
    );
    assert!(
        after_restart.load(Ordering::Relaxed) > 0,
        "the engine recovered"
    );
    assert!(l.is_consistent(), "{l:?}");
    assert_eq!(
        l,
        StockLevels {
            total: STOCK.into(),
            available: 0,
            held: 0,
            committed: STOCK.into()
        },
        "everything sold after the restart, nothing left held"
    );
    // A commit applied just before the crash whose reply was lost (and
    // whose compensating release failed too) is a sold unit the buyer was
    // told `Unavailable` about: its order is in the sink all the same. Only
    // attempts in flight at the crash can be such.
    assert!(
        u64::from(n) <= l.committed,
        "purchased {n} > committed: oversold"
    );
    assert!(
        l.committed - u64::from(n) <= BUYERS as u64,
        "{n} purchased vs {l:?}"
    );
    let ids: HashSet<_> = won.iter().collect();
    assert_eq!(ids.len(), won.len(), "order ids are unique");
    let sunk: HashSet<_> = sink.orders().into_iter().map(|o| o.order_id).collect();
    assert!(
        won.iter().all(|id| sunk.contains(id)),
        "every Purchased order reached the sink"
    );
}
