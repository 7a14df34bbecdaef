//! A restart of the MySQL-protocol server in the middle of a purchase rush:
//! a throwaway `mariadbd` (its own temp data directory, a spare loopback
//! port, InnoDB with its default durability) is SIGKILLed while two engines
//! (two pools, hot-row batching on, a relay each) sell one hot product to
//! many concurrent buyers, and restarted on the same data directory. No
//! purchase succeeds while it is down (503s); after recovery the sale sells
//! out exactly, and once the outbox is drained and the engines' background
//! voids have landed, the sink's standing orders (placed minus voided,
//! distinct event ids) are exactly the units sold and exactly the buyers'
//! 200s; no order is doubled.
//!
//! Needs `mariadbd` and `mariadb-install-db` (or `mysqld` /
//! `mysql_install_db`), Debian package `mariadb-server`; it does not use the
//! shared server at `FLASHSALE_DATABASE_URL`. Without them the test is
//! skipped with a message, except under `CI=true`, where it fails.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashsale::RelayConfig;
use flashsale::memory::{MemoryOrderSink, MemoryRateLimiter, StaticAuthenticator};
use flashsale::mysql::{MySqlOptions, MySqlStockStore};
use flashsale::{
    Credentials, Engine, Outcome, PurchaseRequest, Quantity, RateQuota, Sale, StockLevels,
    StockStore,
};
use flashsale::{EventType, OrderId, Principal};
use sqlx::Connection;

/// The throwaway server's database is its own: one fixed prefix will do.
const PREFIX: &str = "fsf_";

fn spare_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The first of `names` found on `PATH` or in the usual sbin directories.
fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(
        ["/usr/sbin", "/usr/local/sbin", "/usr/libexec", "/usr/bin"]
            .into_iter()
            .map(PathBuf::from),
    );
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// The last lines of the server's error log, for failure messages.
fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A throwaway `mariadbd` with its data in a temp dir; SIGKILLed and its
/// directory removed on drop (a failing test included).
struct Throwaway {
    port: u16,
    dir: PathBuf,
    server: PathBuf,
    child: Option<Child>,
}

impl Throwaway {
    /// Initialises a data directory and starts the server on it; `None`
    /// (the test skips) when the binaries are missing, outside CI.
    async fn start() -> Option<Self> {
        let server = find_binary(&["mariadbd", "mysqld"]);
        let install = find_binary(&["mariadb-install-db", "mysql_install_db"]);
        let (Some(server), Some(install)) = (server, install) else {
            let msg = "mariadbd and mariadb-install-db are needed for the restart test \
                       (apt-get install -y mariadb-server)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        };
        let port = spare_port();
        let dir =
            std::env::temp_dir().join(format!("flashsale-mariadb-{port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut t = Throwaway {
            port,
            dir,
            server,
            child: None,
        };
        let mut init = Command::new(&install);
        init.arg("--no-defaults")
            .arg(format!("--datadir={}", t.dir.join("data").display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db");
        if running_as_root() {
            init.arg("--user=root");
        }
        let out = init
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", install.display()));
        assert!(
            out.status.success(),
            "{} failed: {}\n{}",
            install.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        t.spawn();
        t.wait_ready().await;
        let mut conn = sqlx::MySqlConnection::connect(&t.server_url())
            .await
            .unwrap();
        sqlx::query("CREATE DATABASE flashsale")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        Some(t)
    }

    fn server_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("{}/flashsale", self.server_url())
    }

    /// Starts `mariadbd` on the data directory (does not wait for it).
    fn spawn(&mut self) {
        let mut cmd = Command::new(&self.server);
        // `--no-defaults` must come first.
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!(
                "--socket={}",
                self.dir.join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mysqld.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                self.dir.join("error.log").display()
            ))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-grant-tables",
                // The default, spelled out: every commit is on disk, so a
                // SIGKILL loses no acknowledged transaction.
                "--innodb-flush-log-at-trx-commit=1",
                "--innodb-buffer-pool-size=64M",
                "--max-connections=200",
            ]);
        if running_as_root() {
            cmd.arg("--user=root");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.server.display()));
        self.child = Some(child);
    }

    /// Waits until the server accepts connections (crash recovery included).
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = self.server_url();
        loop {
            if let Ok(conn) = sqlx::MySqlConnection::connect(&url).await {
                let _ = conn.close().await;
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "mariadbd on port {} exited ({status}):\n{}",
                    self.port,
                    log_tail(&self.dir)
                );
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd on port {} did not answer within 20 s:\n{}",
                self.port,
                log_tail(&self.dir)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL: no shutdown, no final flush
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

fn auth(users: usize) -> Arc<StaticAuthenticator> {
    let mut auth = StaticAuthenticator::new();
    for u in 0..users {
        auth.insert(
            format!("token-{u}"),
            Principal::user(flashsale::testing::user(u)),
        );
    }
    Arc::new(auth)
}

/// What the sink's events say: orders placed and not voided.
fn standing_orders(sink: &MemoryOrderSink) -> (HashSet<OrderId>, HashMap<OrderId, Vec<EventType>>) {
    let mut by_order: HashMap<OrderId, Vec<EventType>> = HashMap::new();
    for e in sink.events() {
        by_order
            .entry(e.order.order_id)
            .or_default()
            .push(e.event_type);
    }
    let standing = by_order
        .iter()
        .filter(|(_, kinds)| {
            kinds.contains(&EventType::Placed) && !kinds.contains(&EventType::Voided)
        })
        .map(|(id, _)| *id)
        .collect();
    (standing, by_order)
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with
/// `what` after `within`.
async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn store_options(url: &str) -> MySqlOptions {
    MySqlOptions::new(url)
        .prefix(PREFIX)
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(1))
        .batching(true)
}

/// SIGKILL of the server mid-rush, restart on the same data directory:
/// 503s while it is down, then an exact sell-out with every 200 standing in
/// the sink once, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_restarted_mid_rush_sells_out_exactly() {
    const STOCK: u32 = 1_200;
    const ENGINES: usize = 2;
    const BUYERS: usize = 60;
    let Some(mut server) = Throwaway::start().await else {
        return;
    };
    let url = server.url();
    let first = MySqlStockStore::with_options(store_options(&url))
        .await
        .unwrap();
    first.migrate().await.expect("migrations apply");
    let mut stores = vec![first];
    for _ in 1..ENGINES {
        stores.push(
            MySqlStockStore::with_options(store_options(&url))
                .await
                .unwrap(),
        );
    }
    let sink = Arc::new(MemoryOrderSink::new());
    let auth = auth(BUYERS);
    let limiter = Arc::new(MemoryRateLimiter::new(
        RateQuota::per_second(10_000).unwrap(),
    ));
    let mut engines = Vec::new();
    let (stop_relays, relays_stopped) = tokio::sync::watch::channel(false);
    let mut relays = Vec::new();
    for store in stores {
        assert!(store.is_batching());
        let engine = Engine::builder()
            .stock_store(Arc::new(store))
            .rate_limiter(limiter.clone())
            .order_sink(sink.clone())
            .authenticator(auth.clone())
            .port_timeout(Duration::from_millis(500))
            .relay(RelayConfig {
                batch: 64,
                lease: Duration::from_secs(2),
                submit_timeout: Duration::from_millis(500),
            })
            .build()
            .unwrap();
        let mut stop = relays_stopped.clone();
        relays.push(engine.spawn_relay(Duration::from_millis(50), async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
        engines.push(engine);
    }
    let p = flashsale::testing::unique_product("restarted");
    engines[0]
        .create_sale(&Sale::builder(p.clone(), STOCK).build().unwrap())
        .await
        .unwrap();
    // Reads the levels and the outbox without going through an engine.
    let probe = MySqlStockStore::with_options(
        store_options(&url)
            .max_connections(2)
            .acquire_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    let admin = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(&url)
        .unwrap();
    let outbox_left = || async {
        sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {PREFIX}outbox"))
            .fetch_one(&admin)
            .await
            .ok()
    };

    let purchased = Arc::new(AtomicU32::new(0));
    let unavailable = Arc::new(AtomicU32::new(0));
    let after_restart = Arc::new(AtomicU32::new(0));
    let restarted = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // Every order answered 200, as it is answered.
    let won = Arc::new(Mutex::new(Vec::<OrderId>::new()));
    // Rung by the buyer whose purchase reaches a quarter of the stock.
    let crash_now = Arc::new(tokio::sync::Notify::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for b in 0..BUYERS {
        let (engine, p) = (engines[b % ENGINES].clone(), p.clone());
        let (purchased, unavailable, after_restart, restarted, stop, crash_now, won) = (
            purchased.clone(),
            unavailable.clone(),
            after_restart.clone(),
            restarted.clone(),
            stop.clone(),
            crash_now.clone(),
            won.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let creds = Credentials::bearer(format!("token-{b}"));
            while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                let req = PurchaseRequest::new(p.clone(), Quantity::ONE);
                match engine.purchase(&creds, req).await {
                    Outcome::Purchased(s) => {
                        won.lock().unwrap().push(s.order.order_id);
                        if purchased.fetch_add(1, Ordering::AcqRel) + 1 == STOCK / 4 {
                            crash_now.notify_one();
                        }
                        if restarted.load(Ordering::Acquire) {
                            after_restart.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Pacing while the server is down, or until voided
                    // units come back on sale.
                    Outcome::Unavailable { .. } => {
                        unavailable.fetch_add(1, Ordering::AcqRel);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Outcome::SoldOut => tokio::time::sleep(Duration::from_millis(10)).await,
                    other => panic!("buyer {b}: unexpected {other:?}"),
                }
            }
        }));
    }

    // Kill the server in the middle of the rush.
    tokio::time::timeout(Duration::from_secs(10), crash_now.notified())
        .await
        .expect("the rush never got going");
    let before_kill = unavailable.load(Ordering::Acquire);
    server.kill();
    let killed_at = Instant::now();
    // Every buyer has had time to meet the dead server when twice as many
    // attempts as there are buyers failed; none may succeed from then on.
    let failures = |n: u32| {
        let unavailable = unavailable.clone();
        move || {
            let seen = unavailable.load(Ordering::Acquire);
            async move { (seen >= n).then_some(()) }
        }
    };
    let buyers = BUYERS as u32;
    wait_for(
        "buyers to notice the crash",
        Duration::from_secs(10),
        failures(before_kill + 2 * buyers),
    )
    .await;
    let at_crash = purchased.load(Ordering::Acquire);
    wait_for(
        "more failures while down",
        Duration::from_secs(10),
        failures(before_kill + 4 * buyers),
    )
    .await;
    assert_eq!(
        purchased.load(Ordering::Acquire),
        at_crash,
        "purchases succeeded while the server was down"
    );
    assert!(
        at_crash < STOCK,
        "sold out before the crash: {at_crash} purchases"
    );
    let down_for = killed_at.elapsed();
    server.spawn();
    server.wait_ready().await;
    restarted.store(true, Ordering::Release);
    let recovered_in = killed_at.elapsed() - down_for;

    // Keep the buyers going until the sale is sold out AND the drained sink
    // agrees with the store and with the buyers' answers: then no
    // background void is left to put a unit back on sale (an order whose
    // answer was lost stands in the sink until its void lands, and is not
    // among the 200s). The sink is read before the levels and again after
    // the outbox: a void writes its event in the same transaction as it
    // returns the units, so if one lands meanwhile, either the outbox is
    // not empty or the two readings of the sink differ.
    let mut last: String;
    let settle_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // `last` says why, should the deadline pass with no good reading.
        if let Err(e) = engines[0].drain_outbox().await {
            last = format!("the relay could not drain the outbox: {e}");
        } else {
            let (before, _) = standing_orders(&sink);
            let levels = probe.snapshot(&p).await;
            let left = outbox_left().await;
            if let (Ok(Some(l)), Some(left)) = (&levels, left) {
                assert!(l.is_consistent(), "{l:?}");
                assert!(l.held + l.committed <= u64::from(STOCK), "oversold: {l:?}");
                let (standing, _) = standing_orders(&sink);
                let answered: HashSet<OrderId> = won.lock().unwrap().iter().copied().collect();
                if left == 0
                    && l.available == 0
                    && before == standing
                    && standing.len() as u64 == l.held + l.committed
                    && standing == answered
                {
                    break;
                }
                last = format!(
                    "{left} events left, {l:?}, {} standing orders, {} purchases answered",
                    standing.len(),
                    answered.len()
                );
            } else {
                last = format!("the probe read {levels:?} and {left:?} events left");
            }
        }
        assert!(
            Instant::now() < settle_deadline,
            "never sold out in agreement with the buyers' answers: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Release);
    for t in tasks {
        t.await.expect("buyer task panicked");
    }
    let _ = stop_relays.send(true);
    for r in relays {
        r.await.unwrap();
    }

    // The final accounting, with every buyer stopped.
    engines[0].drain_outbox().await.expect("the outbox drains");
    let levels = probe.snapshot(&p).await.unwrap().unwrap();
    assert_eq!(outbox_left().await, Some(0), "the outbox is drained");
    let (standing, by_order) = standing_orders(&sink);
    let won = std::mem::take(&mut *won.lock().unwrap());
    let n = purchased.load(Ordering::Acquire);
    eprintln!(
        "purchased {n} ({at_crash} before the kill), unavailable {}, after restart {}, \
         down {down_for:?}, recovery {recovered_in:?}, levels {levels:?}, orders placed {}, \
         standing {}, duplicate deliveries {}",
        unavailable.load(Ordering::Relaxed),
        after_restart.load(Ordering::Relaxed),
        by_order.len(),
        standing.len(),
        sink.duplicates(),
    );
    // Distinct event ids: at most one `placed` and one closing event per
    // order, and only `voided` closes an order of a sale without holds.
    for (order, kinds) in &by_order {
        let mut sorted = kinds.clone();
        sorted.sort_unstable_by_key(|k| k.seq());
        assert!(
            sorted == [EventType::Placed] || sorted == [EventType::Placed, EventType::Voided],
            "order {order}: {kinds:?}"
        );
    }
    // No order id answered twice; every 200 is one standing order and every
    // standing order a 200; exactly the stock sold.
    let ids: HashSet<OrderId> = won.iter().copied().collect();
    assert_eq!(ids.len(), won.len(), "order ids are unique");
    assert_eq!(ids, standing, "the standing orders are the buyers' 200s");
    assert_eq!(won.len() as u64, u64::from(STOCK), "sold == stock");
    assert_eq!(n as usize, won.len());
    assert_eq!(
        levels,
        StockLevels {
            total: STOCK.into(),
            available: 0,
            held: 0,
            committed: STOCK.into(),
        }
    );
    // Each engine sells again with the client it had before the crash, on
    // a fresh sale: this holds even when the rush had sold out before the
    // kill took effect (on a loaded machine it can); `after restart` above
    // counts the rush's own purchases after the restart.
    let buyers: Vec<Credentials> = (0..ENGINES)
        .map(|i| Credentials::bearer(format!("token-{i}")))
        .collect();
    flashsale::testing::faults::each_engine_sells_again(&engines, &buyers, Duration::from_secs(15))
        .await;
    drop(admin);
    drop(server);
}

/// The shared fault scenarios of `flashsale::testing::faults`: two engines
/// sell through a `FaultProxy` in front of the test kit's MariaDB while it
/// delays replies, cuts connections in the middle of transactions,
/// stalls, or goes down; then every invariant is checked.
/// `FAULT_SEED=<n>` replays a run's choices.
mod scenarios {
    use std::sync::Arc;
    use std::time::Duration;

    use flashsale::StockStore;
    use flashsale::mysql::{MySqlOptions, MySqlStockStore};
    use flashsale::testing::faults::FaultTarget;

    fn database_url() -> String {
        std::env::var("FLASHSALE_DATABASE_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
    }

    /// `host:port` of a `mysql://user@host:port/db` URL, and the URL with
    /// them replaced by `addr`.
    fn split(url: &str) -> (String, String) {
        let (scheme, rest) = url.split_once("://").expect("a mysql:// URL");
        let (auth, rest) = rest.rsplit_once('@').map_or(("", rest), |(a, r)| (a, r));
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:3306")
        };
        let at = if auth.is_empty() { "" } else { "@" };
        (host, format!("{scheme}://{auth}{at}{{addr}}/{path}"))
    }

    /// One table prefix (`fst_…`, dropped by with-mysql.sh afterwards).
    struct MySqlTarget {
        prefix: String,
    }

    impl MySqlTarget {
        async fn fresh() -> Self {
            let prefix = format!("fst_{}_", &uuid::Uuid::now_v7().simple().to_string()[20..]);
            let url = database_url();
            let store = MySqlStockStore::with_options(MySqlOptions::new(&url).prefix(&prefix))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "MySQL at {url} is not answering ({e}); run the tests through \
                         backends/mysql/with-mysql.sh"
                    )
                });
            store.migrate().await.expect("migrations apply");
            Self { prefix }
        }
    }

    #[async_trait::async_trait]
    impl FaultTarget for MySqlTarget {
        fn upstream(&self) -> String {
            split(&database_url()).0
        }

        async fn connect(&self, addr: &str) -> Arc<dyn StockStore> {
            let url = split(&database_url()).1.replace("{addr}", addr);
            let store = MySqlStockStore::with_options(
                MySqlOptions::new(&url)
                    .prefix(&self.prefix)
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(1)),
            )
            .await
            .unwrap_or_else(|e| panic!("MySQL is not answering at {addr} ({e})"));
            Arc::new(store)
        }
    }

    flashsale::fault_scenarios!(MySqlTarget::fresh);
}
