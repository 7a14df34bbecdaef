//! Hot-row batching of `MySqlStockStore::reserve` against a real MySQL /
//! MariaDB at `FLASHSALE_DATABASE_URL` (default
//! `mysql://root@127.0.0.1:3306/test`).
//!
//! * Exactness: a batch answers every request exactly as the same requests
//!   run one by one on a store without batching would (outcomes, levels,
//!   reservations, outbox events): the last units straddled, per-user caps,
//!   idempotency keys and same-order-id re-sends inside one batch, holds,
//!   closed windows, and random batches.
//! * Concurrency: one hot product, many products, mixed quantities, two
//!   app servers batching the same product; exact sell-out, caps and one
//!   `placed` event per reservation.
//! * Failure: a batch whose transaction dies answers every request with
//!   the error and applies none of them.
//!
//! Run through `backends/mysql/with-mysql.sh cargo test --all-features
//! --test mysql_batching`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use flashsale::OrderEvent;
use flashsale::mysql::{MySqlOptions, MySqlStockStore};
use flashsale::testing::ledger::drain_outbox;
use flashsale::testing::{unique_product, user};
use flashsale::{IdempotencyKey, OrderId, ProductId, Quantity, Sale, StockStore, Timestamp};
use flashsale::{ReserveOutcome, ReserveRequest, VoidOutcome};

/// 2026-01-01T00:00:00Z.
const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn database_url() -> String {
    std::env::var("FLASHSALE_DATABASE_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

fn prefix() -> String {
    format!("fst_{}_", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

async fn open(opts: MySqlOptions, migrate: bool) -> MySqlStockStore {
    let url = database_url();
    let store = MySqlStockStore::with_options(opts)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "MySQL at {url} is not answering ({e}). These tests need a real MySQL or \
                 MariaDB: run them through backends/mysql/with-mysql.sh"
            )
        });
    if migrate {
        store.migrate().await.expect("migrations apply");
    }
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

/// A batching store whose batches run when `size` requests are queued (or
/// after a second), and a store without batching, on separate tables.
async fn batched_and_serial(size: usize) -> (MySqlStockStore, MySqlStockStore) {
    let batched = open(
        options(&prefix())
            .batching(true)
            .batch_lanes(1)
            .batch_max(size)
            .batch_wait(Duration::from_secs(1)),
        true,
    )
    .await;
    let serial = open(options(&prefix()).batching(false), true).await;
    assert!(batched.is_batching() && !serial.is_batching());
    (batched, serial)
}

fn req(p: &ProductId, buyer: usize, quantity: u32) -> ReserveRequest {
    ReserveRequest {
        order_id: OrderId::new(T0),
        product: p.clone(),
        user: user(buyer),
        quantity: Quantity::new(i64::from(quantity)).unwrap(),
        idempotency_key: None,
        now: T0,
    }
}

fn keyed(mut r: ReserveRequest, key: &str) -> ReserveRequest {
    r.idempotency_key = Some(IdempotencyKey::new(key).unwrap());
    r
}

/// Sends `reqs` to `store` at once, in this order, and checks they ran as
/// ONE batch. (`join_all` polls its futures in order, so each request is
/// queued in turn; at most 30 of them, below which it polls a plain list.)
async fn in_one_batch(store: &MySqlStockStore, reqs: &[ReserveRequest]) -> Vec<ReserveOutcome> {
    assert!(reqs.len() <= 30);
    let before = store.batch_stats().expect("batching");
    let outs = futures::future::join_all(reqs.iter().map(|r| store.reserve(r))).await;
    let after = store.batch_stats().expect("batching");
    assert_eq!(
        (
            after.batches - before.batches,
            after.requests - before.requests
        ),
        (1, reqs.len() as u64),
        "the requests did not run as one batch"
    );
    outs.into_iter()
        .map(|o| o.expect("reserve answers"))
        .collect()
}

/// The same requests one by one.
async fn one_by_one(store: &MySqlStockStore, reqs: &[ReserveRequest]) -> Vec<ReserveOutcome> {
    let mut outs = Vec::with_capacity(reqs.len());
    for r in reqs {
        outs.push(store.reserve(r).await.expect("reserve answers"));
    }
    outs
}

/// Runs `reqs` as one batch on `batched` and one by one on `serial`, and
/// checks every answer, the levels and every reservation are the same.
async fn same_as_one_by_one(
    batched: &MySqlStockStore,
    serial: &MySqlStockStore,
    reqs: &[ReserveRequest],
) -> Vec<ReserveOutcome> {
    let got = in_one_batch(batched, reqs).await;
    let want = one_by_one(serial, reqs).await;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "request {i} of the batch: {:?}", reqs[i]);
    }
    let p = &reqs[0].product;
    assert_eq!(
        batched.snapshot(p).await.unwrap(),
        serial.snapshot(p).await.unwrap()
    );
    for r in reqs {
        assert_eq!(
            batched.reservation(&r.order_id).await.unwrap(),
            serial.reservation(&r.order_id).await.unwrap()
        );
    }
    got
}

/// Every event of both stores' outboxes, the same on both.
async fn same_outbox(batched: &MySqlStockStore, serial: &MySqlStockStore) -> Vec<OrderEvent> {
    let mut a = drain_outbox(batched, T0).await;
    let mut b = drain_outbox(serial, T0).await;
    a.sort_by_key(|e| e.event_id);
    b.sort_by_key(|e| e.event_id);
    assert_eq!(a, b);
    a
}

async fn create(stores: &[&MySqlStockStore], sale: &Sale) {
    for s in stores {
        s.create_sale(sale).await.unwrap();
    }
}

fn is_reserved(o: &ReserveOutcome) -> bool {
    matches!(o, ReserveOutcome::Reserved(_))
}

/// A batch that asks for more than is left: first come, first served;
/// later requests that no longer fit are sold out, smaller ones behind them
/// still fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_straddles_the_last_units() {
    let (b, s) = batched_and_serial(6).await;
    let p = unique_product("straddle");
    create(&[&b, &s], &Sale::builder(p.clone(), 5).build().unwrap()).await;
    let reqs: Vec<_> = [2, 2, 2, 1, 1, 1]
        .iter()
        .enumerate()
        .map(|(i, &q)| req(&p, i, q))
        .collect();
    let outs = same_as_one_by_one(&b, &s, &reqs).await;
    let shape: Vec<bool> = outs.iter().map(is_reserved).collect();
    assert_eq!(shape, [true, true, false, true, false, false]);
    assert_eq!(outs[2], ReserveOutcome::SoldOut);
    let l = b.snapshot(&p).await.unwrap().unwrap();
    assert_eq!((l.available, l.committed), (0, 5));
    assert_eq!(same_outbox(&b, &s).await.len(), 3);
}

/// Several requests of one buyer in one batch: the per-user cap counts
/// the earlier ones of the same batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_caps_inside_one_batch() {
    let (b, s) = batched_and_serial(8).await;
    let p = unique_product("caps");
    let sale = Sale::builder(p.clone(), 100)
        .per_user_limit(3)
        .build()
        .unwrap();
    create(&[&b, &s], &sale).await;
    // A buyer with one unit already.
    let first = req(&p, 1, 1);
    assert!(is_reserved(&b.reserve(&first).await.unwrap()));
    assert!(is_reserved(&s.reserve(&first).await.unwrap()));
    let reqs = vec![
        req(&p, 1, 1), // 2 of 3
        req(&p, 2, 2), // 2 of 3
        req(&p, 1, 2), // 4: over
        req(&p, 1, 1), // 3 of 3
        req(&p, 2, 4), // above the cap by itself
        req(&p, 2, 1), // 3 of 3
        req(&p, 1, 1), // 4: over
        req(&p, 3, 3), // 3 of 3
    ];
    let outs = same_as_one_by_one(&b, &s, &reqs).await;
    use ReserveOutcome::LimitExceeded as L;
    let refused: Vec<bool> = outs.iter().map(|o| *o == L).collect();
    assert_eq!(
        refused,
        [false, false, true, false, true, false, true, false]
    );
    assert_eq!(same_outbox(&b, &s).await.len(), 6);
}

/// Idempotency keys and re-sent order ids inside one batch: the second
/// request with a key is a replay of the first (and claims it), a key
/// with another quantity is a replay that claims nothing, a re-send of an
/// order id is that order, keys are per buyer. Voids then behave as the
/// contract says for replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_inside_one_batch() {
    let (b, s) = batched_and_serial(7).await;
    let p = unique_product("idem");
    create(&[&b, &s], &Sale::builder(p.clone(), 10).build().unwrap()).await;
    let a = keyed(req(&p, 1, 1), "k1");
    let replay = keyed(req(&p, 1, 1), "k1");
    let other_qty = keyed(req(&p, 1, 2), "k1");
    let other_user = keyed(req(&p, 2, 1), "k1");
    let c = keyed(req(&p, 3, 2), "k3");
    let reqs = vec![
        a.clone(),
        replay.clone(),
        other_qty.clone(),
        a.clone(),
        other_user.clone(),
        c.clone(),
        c.clone(),
    ];
    let outs = same_as_one_by_one(&b, &s, &reqs).await;
    let ReserveOutcome::Reserved(ra) = &outs[0] else {
        panic!("{:?}", outs[0])
    };
    assert_eq!(outs[1], ReserveOutcome::Duplicate(ra.clone()));
    assert_eq!(outs[2], ReserveOutcome::Duplicate(ra.clone()));
    assert_eq!(outs[3], ReserveOutcome::Reserved(ra.clone()));
    assert!(is_reserved(&outs[4]));
    assert_eq!(outs[5], outs[6]);
    let l = b.snapshot(&p).await.unwrap().unwrap();
    assert_eq!(l.committed, 4, "{l:?}");

    // The replay claimed the order: a void of the first request keeps it
    // until the replay voids too.
    for st in [&b, &s] {
        assert_eq!(st.void(&a, T0).await.unwrap(), VoidOutcome::Kept);
        assert_eq!(
            st.void(&replay, T0).await.unwrap(),
            VoidOutcome::NothingReserved
        );
        assert_eq!(
            st.reservation(&a.order_id).await.unwrap().unwrap().state,
            flashsale::ReservationState::Voided
        );
    }
    let l = b.snapshot(&p).await.unwrap().unwrap();
    assert_eq!(l.committed, 3, "{l:?}");
    assert_eq!(b.snapshot(&p).await.unwrap(), s.snapshot(&p).await.unwrap());
    same_outbox(&b, &s).await;
}

/// A void that ran before its reserve (a tombstone) and a retry of an
/// order that already stands, in one batch with new requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_and_standing_orders_inside_one_batch() {
    let (b, s) = batched_and_serial(4).await;
    let p = unique_product("tomb");
    create(&[&b, &s], &Sale::builder(p.clone(), 3).build().unwrap()).await;
    let voided = req(&p, 1, 1);
    let standing = keyed(req(&p, 2, 1), "k");
    for st in [&b, &s] {
        assert_eq!(
            st.void(&voided, T0).await.unwrap(),
            VoidOutcome::NothingReserved
        );
        assert!(is_reserved(&st.reserve(&standing).await.unwrap()));
    }
    let reqs = vec![
        voided.clone(),
        standing.clone(),
        req(&p, 3, 2),
        req(&p, 4, 1),
    ];
    let outs = same_as_one_by_one(&b, &s, &reqs).await;
    let ReserveOutcome::Reserved(t) = &outs[0] else {
        panic!("{:?}", outs[0])
    };
    assert_eq!(t.state, flashsale::ReservationState::Voided);
    assert!(is_reserved(&outs[2]));
    assert_eq!(outs[3], ReserveOutcome::SoldOut);
    same_outbox(&b, &s).await;
}

/// Holds, a closed window, the per-order maximum and an unknown product,
/// batched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_windows_and_refusals_inside_one_batch() {
    let (b, s) = batched_and_serial(5).await;
    let p = unique_product("holds");
    let sale = Sale::builder(p.clone(), 6)
        .per_order_max(3)
        .starts_at(T0)
        .hold(Duration::from_secs(60))
        .build()
        .unwrap();
    create(&[&b, &s], &sale).await;
    let mut early = req(&p, 9, 1);
    early.now = Timestamp::from_millis(T0.as_millis() - 1);
    let reqs = vec![
        req(&p, 1, 3),
        early,
        req(&p, 2, 4),
        req(&p, 3, 2),
        req(&p, 4, 2),
    ];
    let outs = same_as_one_by_one(&b, &s, &reqs).await;
    assert_eq!(outs[1], ReserveOutcome::NotOnSale);
    assert_eq!(outs[2], ReserveOutcome::OverOrderMax { max: 3 });
    assert_eq!(outs[4], ReserveOutcome::SoldOut);
    let l = b.snapshot(&p).await.unwrap().unwrap();
    assert_eq!((l.available, l.held, l.committed), (1, 5, 0));

    let unknown = unique_product("nosuch");
    let reqs: Vec<_> = (0..5).map(|i| req(&unknown, i, 1)).collect();
    let outs = same_as_one_by_one(&b, &s, &reqs).await;
    assert!(outs.iter().all(|o| *o == ReserveOutcome::UnknownProduct));
    same_outbox(&b, &s).await;
}

/// A small deterministic generator (xorshift), so failures replay.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Random batches (few buyers, few keys, re-sends, quantities 1..=3)
/// answer exactly as the same requests one by one, round after round,
/// until the sale is sold out; then random voids agree too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_batches_match_one_by_one() {
    let seed = std::env::var("BATCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) * 0x9E37_79B9 + 1);
    println!("BATCH_SEED={seed}");
    let mut rng = Rng(seed);
    let (b, s) = batched_and_serial(16).await;
    let p = unique_product("random");
    // 30 buyers × a cap of 5 > 80 units: rounds reach the cap and the end.
    let sale = Sale::builder(p.clone(), 80)
        .per_user_limit(5)
        .per_order_max(3)
        .build()
        .unwrap();
    create(&[&b, &s], &sale).await;
    let mut sent: Vec<ReserveRequest> = Vec::new();
    let mut seen = [0u32; 5];
    for _round in 0..12 {
        let mut reqs = Vec::new();
        for _ in 0..16 {
            let r = if !sent.is_empty() && rng.below(8) == 0 {
                // A re-send of an earlier request, or of one in this batch.
                let pool = if reqs.is_empty() || rng.below(2) == 0 {
                    &sent
                } else {
                    &reqs
                };
                pool[rng.below(pool.len() as u64) as usize].clone()
            } else {
                let r = req(&p, rng.below(30) as usize, 1 + rng.below(4) as u32);
                match rng.below(3) {
                    0 => keyed(r, &format!("k{}", rng.below(4))),
                    _ => r,
                }
            };
            reqs.push(r);
        }
        // A second request with a key used earlier in this batch.
        if let Some(first) = reqs.iter().find(|r| r.idempotency_key.is_some()) {
            let mut again = first.clone();
            again.order_id = OrderId::new(T0);
            reqs[15] = again;
        }
        for o in same_as_one_by_one(&b, &s, &reqs).await {
            let kind = match o {
                ReserveOutcome::Reserved(_) => 0,
                ReserveOutcome::Duplicate(_) => 1,
                ReserveOutcome::LimitExceeded => 2,
                ReserveOutcome::SoldOut => 3,
                _ => 4,
            };
            seen[kind] += 1;
        }
        sent.extend(reqs);
    }
    // The rounds covered every kind of answer (`Reserved` includes
    // re-sends of standing orders).
    assert!(seen[..4].iter().all(|&n| n > 0), "{seen:?}");
    for _ in 0..20 {
        let r = &sent[rng.below(sent.len() as u64) as usize];
        assert_eq!(b.void(r, T0).await.unwrap(), s.void(r, T0).await.unwrap());
    }
    assert_eq!(b.snapshot(&p).await.unwrap(), s.snapshot(&p).await.unwrap());
    same_outbox(&b, &s).await;
}

/// Buyers racing through one or more batching stores: returns every
/// `Reserved` answer.
async fn race(
    stores: Vec<MySqlStockStore>,
    products: Vec<ProductId>,
    buyers: usize,
    attempts: usize,
) -> Vec<flashsale::Reservation> {
    let stores = Arc::new(stores);
    let products = Arc::new(products);
    let mut tasks = Vec::new();
    for buyer in 0..buyers {
        let (stores, products) = (stores.clone(), products.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(buyer as u64 * 7919 + 17);
            let store = &stores[buyer % stores.len()];
            let mut mine = Vec::new();
            for _ in 0..attempts {
                let p = &products[rng.below(products.len() as u64) as usize];
                let q = 1 + rng.below(3) as u32;
                match store.reserve(&req(p, buyer % 40, q)).await.unwrap() {
                    ReserveOutcome::Reserved(r) => mine.push(r),
                    ReserveOutcome::SoldOut | ReserveOutcome::LimitExceeded => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Every product sold out exactly, per-user caps kept, one `placed` event
/// per reservation, nothing else in the outbox.
async fn check_sold_out(
    store: &MySqlStockStore,
    products: &[ProductId],
    stock: u64,
    cap: u64,
    got: &[flashsale::Reservation],
) {
    let mut per_user: HashMap<(ProductId, flashsale::UserId), u64> = HashMap::new();
    for r in got {
        *per_user
            .entry((r.product.clone(), r.user.clone()))
            .or_default() += u64::from(r.quantity.get());
    }
    assert!(per_user.values().all(|&n| n <= cap), "a cap was broken");
    for p in products {
        let l = store.snapshot(p).await.unwrap().unwrap();
        let sold: u64 = got
            .iter()
            .filter(|r| &r.product == p)
            .map(|r| u64::from(r.quantity.get()))
            .sum();
        assert_eq!(l.total, l.available + l.held + l.committed, "{l:?}");
        assert_eq!(l.committed, sold, "{p}: {l:?}");
        assert_eq!(l.available, 0, "{p} was not sold out: {l:?}");
        assert!(sold <= stock);
    }
    let events = drain_outbox(store, T0).await;
    assert_eq!(events.len(), got.len());
    let mut ids: Vec<_> = events.iter().map(|e| e.order.order_id).collect();
    ids.sort();
    let mut want: Vec<_> = got.iter().map(|r| r.order_id).collect();
    want.sort();
    assert_eq!(ids, want);
}

/// One hot product, 64 buyers, quantities 1..=3: sold out exactly, in
/// batches (one lane, the default, and four lanes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hot_product_mixed_quantities() {
    for lanes in [1, 4] {
        one_hot_product(lanes).await;
    }
}

async fn one_hot_product(lanes: usize) {
    let store = open(options(&prefix()).batch_lanes(lanes), true).await;
    let p = unique_product("hot");
    let sale = Sale::builder(p.clone(), 600)
        .per_user_limit(20)
        .per_order_max(3)
        .build()
        .unwrap();
    store.create_sale(&sale).await.unwrap();
    let got = race(vec![store.clone()], vec![p.clone()], 64, 30).await;
    check_sold_out(&store, &[p], 600, 20, &got).await;
    let stats = store.batch_stats().unwrap();
    assert!(
        stats.mean_batch() > if lanes == 1 { 2.0 } else { 1.0 },
        "64 buyers of one product hardly batched ({lanes} lanes): {stats:?}"
    );
}

/// Sixteen products at once, one store: each sells out exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_products_at_once() {
    let store = open(options(&prefix()), true).await;
    let mut products = Vec::new();
    for i in 0..16 {
        let p = unique_product(&format!("many{i}"));
        let sale = Sale::builder(p.clone(), 40)
            .per_user_limit(10)
            .per_order_max(3)
            .build()
            .unwrap();
        store.create_sale(&sale).await.unwrap();
        products.push(p);
    }
    let got = race(vec![store.clone()], products.clone(), 64, 60).await;
    check_sold_out(&store, &products, 40, 10, &got).await;
}

/// Two app servers (two pools, two batchers) selling the same product,
/// with caps that bind: exact sell-out, caps kept across servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_batch_one_product() {
    let prefix = prefix();
    let a = open(options(&prefix), true).await;
    let b = open(options(&prefix).batch_lanes(2), false).await;
    let p = unique_product("twosrv");
    let sale = Sale::builder(p.clone(), 300)
        .per_user_limit(8)
        .per_order_max(3)
        .build()
        .unwrap();
    a.create_sale(&sale).await.unwrap();
    let got = race(vec![a.clone(), b.clone()], vec![p.clone()], 64, 30).await;
    check_sold_out(&a, &[p], 300, 8, &got).await;
}

/// A batch whose transaction dies (its connection is killed while it waits
/// for the stock row): every request of the batch gets the error, and
/// none of them was applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_batch_answers_every_request_and_applies_nothing() {
    let store = open(
        options(&prefix())
            .batch_lanes(1)
            .batch_max(3)
            .batch_wait(Duration::from_secs(1)),
        true,
    )
    .await;
    let prefix = store.prefix().to_owned();
    let p = unique_product("killbatch");
    store
        .create_sale(&Sale::builder(p.clone(), 5).build().unwrap())
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

    let reqs: Vec<_> = (1..=3).map(|b| req(&p, b, 1)).collect();
    let reserving = {
        let (store, reqs) = (store.clone(), reqs.clone());
        tokio::spawn(async move {
            futures::future::join_all(reqs.iter().map(|r| store.reserve(r))).await
        })
    };
    // The batch's writes are one multi-statement query that ends with the
    // stock row's UPDATE.
    let pattern = format!("%UPDATE {prefix}sales%");
    let mut victim = None;
    for _ in 0..300 {
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
    let victim = victim.expect("the batch never reached the stock row");
    sqlx::query(&format!("KILL CONNECTION {victim}"))
        .execute(&admin)
        .await
        .unwrap();
    let answers = reserving.await.unwrap();
    blocker.rollback().await.unwrap();
    assert_eq!(store.batch_stats().unwrap().batches, 1);
    for a in &answers {
        let e = a.as_ref().expect_err("the batch's connection was killed");
        assert!(
            matches!(
                e,
                flashsale::Error::Backend {
                    backend: "mysql",
                    operation: "reserve",
                    ..
                }
            ),
            "{e}"
        );
    }
    for r in &reqs {
        assert_eq!(store.reservation(&r.order_id).await.unwrap(), None);
    }
    let l = store.snapshot(&p).await.unwrap().unwrap();
    assert_eq!((l.available, l.committed), (5, 0));
    assert!(drain_outbox(&store, T0).await.is_empty());
    // The store batches on.
    let outs = in_one_batch(&store, &reqs).await;
    assert!(outs.iter().all(is_reserved));
}
