//! `MySqlStockStore` against a real MySQL / MariaDB at
//! `FLASHSALE_DATABASE_URL` (default `mysql://root@127.0.0.1:3306/test`):
//! the whole stock conformance suite, the same suite through the sold-out
//! cache (each with four app servers, four independent pools, selling one
//! product), migrations and errors. Each case gets its own table prefix (`fst_…_`),
//! so cases run in parallel. Run through
//! `backends/mysql/with-mysql.sh cargo test --all-features`, which starts
//! MariaDB if needed and drops the test tables afterwards.

use std::time::Duration;

use flashsale::mysql::{MySqlOptions, MySqlStockStore};
use flashsale::testing::{unique_product, user};
use flashsale::{Error, OrderId, Quantity, Sale, StockStore, Timestamp};
use flashsale::{ReserveOutcome, ReserveRequest};

fn database_url() -> String {
    std::env::var("FLASHSALE_DATABASE_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A table prefix of its own for one case.
fn prefix() -> String {
    format!("fst_{}_", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

async fn store_with(opts: MySqlOptions) -> MySqlStockStore {
    let url = database_url();
    let store = MySqlStockStore::with_options(opts)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "MySQL at {url} is not answering ({e}). These tests need a real MySQL or \
                 MariaDB: run them through backends/mysql/with-mysql.sh"
            )
        });
    store.migrate().await.expect("migrations apply");
    store
}

/// Eight connections. The races queue a thousand buyers on them, which
/// on a starved CI machine can outlast the default 5 s acquire timeout:
/// these cases check what is sold, not how fast.
fn options(prefix: &str) -> MySqlOptions {
    MySqlOptions::new(database_url())
        .prefix(prefix)
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(60))
}

/// A store on its own tables, so cases run in parallel.
async fn store() -> MySqlStockStore {
    let s = store_with(options(&prefix())).await;
    assert!(s.is_batching(), "batching is on by default");
    s
}

/// `n` app servers: independent pools (as `n` processes would have) on
/// one fresh prefix, migrated once.
async fn app_servers(n: usize) -> Vec<MySqlStockStore> {
    app_servers_with(n, true).await
}

/// `n` app servers, batching reserves or not.
async fn app_servers_with(n: usize, batching: bool) -> Vec<MySqlStockStore> {
    let prefix = prefix();
    let mut stores = vec![store_with(options(&prefix).batching(batching)).await];
    for _ in 1..n {
        stores.push(
            MySqlStockStore::with_options(options(&prefix).batching(batching))
                .await
                .expect("connects"),
        );
    }
    stores
}

// Hot-row batching on (the default). Its `engine_concurrent_buyers` race
// runs four engines on four pools: four app servers sharing one database.
flashsale::stock_store_conformance!(store, app_servers: app_servers);

/// The same suite with hot-row batching off: every reserve in its own
/// transaction.
mod unbatched {
    use flashsale::mysql::MySqlStockStore;

    async fn store() -> MySqlStockStore {
        let s = super::store_with(super::options(&super::prefix()).batching(false)).await;
        assert!(!s.is_batching());
        s
    }

    async fn app_servers(n: usize) -> Vec<MySqlStockStore> {
        super::app_servers_with(n, false).await
    }

    flashsale::stock_store_conformance!(store, app_servers: app_servers);
}

/// The sold-out cache in front of MySQL keeps every contract.
mod through_sold_out_cache {
    use flashsale::SoldOutCache;
    use flashsale::mysql::MySqlStockStore;

    async fn cached() -> SoldOutCache<MySqlStockStore> {
        SoldOutCache::new(super::store().await)
    }

    /// App servers with a sold-out cache each, over their own pool.
    async fn cached_app_servers(n: usize) -> Vec<SoldOutCache<MySqlStockStore>> {
        super::app_servers(n)
            .await
            .into_iter()
            .map(SoldOutCache::new)
            .collect()
    }

    flashsale::stock_store_conformance!(cached, app_servers: cached_app_servers);
}

/// 2026-01-01T00:00:00Z.
const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn request(p: &flashsale::ProductId, buyer: usize, now: Timestamp) -> ReserveRequest {
    ReserveRequest {
        order_id: OrderId::new(now),
        product: p.clone(),
        user: user(buyer),
        quantity: Quantity::ONE,
        idempotency_key: None,
        now,
    }
}

/// Migrating twice (and from two stores on the same prefix at once) is a
/// no-op; the tables, the orders table included, exist afterwards.
#[tokio::test]
async fn migrate_is_idempotent_and_creates_every_table() {
    let prefix = prefix();
    let a = store_with(options(&prefix)).await;
    let b = MySqlStockStore::with_options(options(&prefix))
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    let pool = sqlx::MySqlPool::connect(&database_url()).await.unwrap();
    for table in [
        "sales",
        "user_units",
        "reservations",
        "replays",
        "outbox",
        "orders",
        "schema_migrations",
    ] {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = ?",
        )
        .bind(format!("{prefix}{table}"))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(n, 1, "{prefix}{table}");
    }
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM {prefix}schema_migrations ORDER BY version"
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4]);
}

/// Bad prefixes are refused before any connection is made.
#[tokio::test]
async fn bad_prefix_is_a_config_error() {
    for bad in ["has space", "semi;colon", "dash-ed", &"x".repeat(33)] {
        let e = MySqlStockStore::with_options(options(bad))
            .await
            .expect_err(bad);
        assert!(matches!(e, Error::Config(_)), "{bad}: {e}");
    }
}

/// An unreachable server is a backend error, quickly, not a hang; a lazy
/// store starts and its calls fail the same way (the engine answers 503).
#[tokio::test]
async fn unreachable_server_is_a_backend_error() {
    // Port 9 (discard) on loopback: nothing listens there.
    let opts = MySqlOptions::new("mysql://root@127.0.0.1:9/test")
        .acquire_timeout(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let e = MySqlStockStore::with_options(opts.clone())
        .await
        .expect_err("nothing listens on port 9");
    assert!(
        matches!(
            e,
            Error::Backend {
                backend: "mysql",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.is_transient());
    let lazy = MySqlStockStore::with_options(opts.lazy(true))
        .await
        .unwrap();
    let p = unique_product("down");
    let e = lazy.reserve(&request(&p, 1, T0)).await.expect_err("down");
    assert!(
        matches!(
            e,
            Error::Backend {
                backend: "mysql",
                operation: "reserve",
                ..
            }
        ),
        "{e}"
    );
    assert!(lazy.ping().await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A sale's terms round-trip exactly, a sub-second hold included.
#[tokio::test]
async fn sale_terms_round_trip() {
    let s = store().await;
    s.ping().await.unwrap();
    let p = unique_product("terms");
    let sale = Sale::builder(p.clone(), 1_000_000_000)
        .per_user_limit(u32::MAX)
        .per_order_max(1_000_000)
        .starts_at(T0)
        .ends_at(T0.saturating_add(Duration::from_secs(1)))
        .hold(Duration::from_millis(1_500))
        .build()
        .unwrap();
    s.create_sale(&sale).await.unwrap();
    assert_eq!(s.sale(&p).await.unwrap(), Some(sale));
    let ReserveOutcome::Reserved(r) = s.reserve(&request(&p, 1, T0)).await.unwrap() else {
        panic!("not reserved");
    };
    assert_eq!(s.reservation(&r.order_id).await.unwrap(), Some(r));
}

/// `KILL CONNECTION` of the store's connection in the middle of a reserve
/// (its transaction has written the buyer's count, the reservation and the
/// `placed` event, and waits for the hot stock row, which the test holds
/// locked): the reserve fails with a backend error (the engine answers
/// 503), and nothing of it is left: no reservation, no event, the levels
/// unchanged. Its void then leaves a tombstone, and the stock sells on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_mid_reserve_writes_nothing() {
    let s = store().await;
    let prefix = s.prefix().to_owned();
    let p = unique_product("killed");
    s.create_sale(&Sale::builder(p.clone(), 5).build().unwrap())
        .await
        .unwrap();
    let admin = sqlx::MySqlPool::connect(&database_url()).await.unwrap();
    let mut blocker = admin.begin().await.unwrap();
    sqlx::query(&format!(
        "SELECT available FROM {prefix}sales WHERE product_id = ? FOR UPDATE"
    ))
    .bind(p.as_str())
    .execute(&mut *blocker)
    .await
    .unwrap();

    let req = request(&p, 1, T0);
    let reserving = {
        let (s, req) = (s.clone(), req.clone());
        tokio::spawn(async move { s.reserve(&req).await })
    };
    // Find the reserve's connection waiting on the stock row, and kill it.
    // `%…%`: a batched reserve sends its writes as one multi-statement
    // query that ends with this UPDATE.
    let pattern = format!("%UPDATE {prefix}sales%");
    let mut victim = None;
    for _ in 0..200 {
        victim = sqlx::query_scalar::<_, i64>(
            "SELECT id FROM information_schema.processlist WHERE info LIKE ?",
        )
        .bind(&pattern)
        .fetch_optional(&admin)
        .await
        .unwrap();
        if victim.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let victim = victim.expect("the reserve never reached the stock row");
    sqlx::query(&format!("KILL CONNECTION {victim}"))
        .execute(&admin)
        .await
        .unwrap();
    let answer = reserving.await.unwrap();
    blocker.rollback().await.unwrap();
    let e = answer.expect_err("the reserve's connection was killed");
    assert!(
        matches!(
            e,
            Error::Backend {
                backend: "mysql",
                operation: "reserve",
                ..
            }
        ),
        "{e}"
    );

    // Nothing half-written.
    assert_eq!(s.reservation(&req.order_id).await.unwrap(), None);
    let levels = s.snapshot(&p).await.unwrap().unwrap();
    assert_eq!((levels.available, levels.held, levels.committed), (5, 0, 0));
    assert!(
        s.claim(T0, 10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    let units: Option<u64> = sqlx::query_scalar(&format!(
        "SELECT units FROM {prefix}user_units WHERE product_id = ? AND user_id = ?"
    ))
    .bind(p.as_str())
    .bind(user(1).as_str())
    .fetch_optional(&admin)
    .await
    .unwrap();
    assert!(
        units.unwrap_or(0) == 0,
        "the buyer's count moved: {units:?}"
    );

    // The engine would void it: a tombstone, and the stock still sells.
    assert_eq!(
        s.void(&req, T0).await.unwrap(),
        flashsale::VoidOutcome::NothingReserved
    );
    for b in 2..7 {
        assert!(matches!(
            s.reserve(&request(&p, b, T0)).await.unwrap(),
            ReserveOutcome::Reserved(_)
        ));
    }
    assert_eq!(
        s.reserve(&request(&p, 9, T0)).await.unwrap(),
        ReserveOutcome::SoldOut
    );
}

/// Replay claims are rows of `replays` only while they may matter: the
/// sweep after their lapse deletes them, so replaying one key forever does
/// not grow the table.
#[tokio::test]
async fn lapsed_replay_claims_are_swept() {
    use flashsale::testing::stock::{T0, at, keyed};
    let p = prefix();
    let s = store_with(options(&p)).await;
    let product = unique_product("lapse");
    s.create_sale(&Sale::builder(product.clone(), 5).build().unwrap())
        .await
        .unwrap();
    let key = flashsale::IdempotencyKey::new("k").unwrap();
    s.reserve(&keyed(&product, &user(1), 1, T0, &key))
        .await
        .unwrap();
    for i in 1..=50 {
        let replay = keyed(&product, &user(1), 1, at(Duration::from_millis(i)), &key);
        s.reserve(&replay).await.unwrap();
    }
    let pool = sqlx::MySqlPool::connect(&database_url()).await.unwrap();
    let rows = || {
        let pool = pool.clone();
        let table = format!("{p}replays");
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(rows().await, 50);
    s.expire(at(Duration::from_secs(60)), 100).await.unwrap();
    assert_eq!(rows().await, 50, "claims swept before they lapsed");
    let lapsed = at(s.replay_claim_ttl() + Duration::from_secs(1));
    s.expire(lapsed, 100).await.unwrap();
    assert_eq!(rows().await, 0);
}

/// A record waits for its events' delivery before it is purged.
#[tokio::test]
async fn purge_waits_for_delivery() {
    flashsale::testing::stock::purge_waits_for_delivery(&store).await;
}

/// A sweep past `record_ttl` deletes a finished, delivered reservation with
/// its idempotency key and its replay claims (the key then buys anew); a
/// younger one and a held one stay.
#[tokio::test]
async fn finished_records_are_purged_after_record_ttl() {
    const TTL: Duration = Duration::from_secs(60);
    let at = |secs: u64| T0.saturating_add(Duration::from_secs(secs));
    let prefix = prefix();
    let s = store_with(options(&prefix).record_ttl(TTL)).await;
    let (p, held) = (unique_product("purged"), unique_product("purge-held"));
    s.create_sale(&Sale::builder(p.clone(), 5).build().unwrap())
        .await
        .unwrap();
    let hold = Duration::from_secs(24 * 3600);
    s.create_sale(&Sale::builder(held.clone(), 5).hold(hold).build().unwrap())
        .await
        .unwrap();
    let key = flashsale::IdempotencyKey::new("k-purge").unwrap();
    let keyed = |now| ReserveRequest {
        idempotency_key: Some(key.clone()),
        ..request(&p, 1, now)
    };
    let reserved = |out| match out {
        ReserveOutcome::Reserved(r) => r,
        other => panic!("not reserved: {other:?}"),
    };
    let old = reserved(s.reserve(&keyed(T0)).await.unwrap());
    // A replay of another request with the key leaves a claim on the order.
    assert!(matches!(
        s.reserve(&keyed(at(1))).await.unwrap(),
        ReserveOutcome::Duplicate(_)
    ));
    let young = reserved(s.reserve(&request(&p, 2, at(50))).await.unwrap());
    let live = reserved(s.reserve(&request(&held, 3, T0)).await.unwrap());
    flashsale::testing::ledger::drain_outbox(&s, at(51)).await;

    s.expire(at(61), 100).await.unwrap();
    assert_eq!(s.reservation(&old.order_id).await.unwrap(), None);
    assert!(s.reservation(&young.order_id).await.unwrap().is_some());
    assert!(s.reservation(&live.order_id).await.unwrap().is_some());
    let pool = sqlx::MySqlPool::connect(&database_url()).await.unwrap();
    let claims: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {prefix}replays WHERE order_id = ?"
    ))
    .bind(&old.order_id.as_uuid().as_bytes()[..])
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(claims, 0, "the purged order's replay claims are gone");
    // The key is free: it buys a new order; the levels still count the old.
    let again = reserved(s.reserve(&keyed(at(62))).await.unwrap());
    assert_ne!(again.order_id, old.order_id);
    let levels = s.snapshot(&p).await.unwrap().unwrap();
    assert_eq!((levels.available, levels.committed), (2, 3));
}
