//! `MySqlOrderTable` (the `orders` projection the order worker folds order
//! events into) against a real MySQL / MariaDB at `FLASHSALE_DATABASE_URL`
//! (default `mysql://root@127.0.0.1:3306/test`): statuses only move
//! forward, duplicates and late events change nothing and are counted as
//! ignored, any delivery order (and concurrent, overlapping deliveries)
//! yields the same table, and errors are classified transient or
//! permanent. Each case gets its own table prefix (`fst_…_`), so cases run
//! in parallel. Run through `backends/mysql/with-mysql.sh cargo test
//! --all-features`, which starts MariaDB if needed and drops the test
//! tables afterwards. Without a server these tests fail, never skip.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flashsale::mysql::{ApplyStats, MySqlOptions, MySqlOrderTable, MySqlStockStore, OrderRow};
use flashsale::testing::{unique_product, user};
use flashsale::{Error, IdempotencyKey, OrderId, ProductId, Quantity, Timestamp};
use flashsale::{EventType, OrderEvent, Reservation, ReservationState};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn database_url() -> String {
    std::env::var("FLASHSALE_DATABASE_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A table prefix of its own for one case.
fn prefix() -> String {
    format!("fst_{}_", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

fn options(prefix: &str) -> MySqlOptions {
    MySqlOptions::new(database_url())
        .prefix(prefix)
        .max_connections(8)
}

async fn connect(opts: MySqlOptions) -> MySqlOrderTable {
    let url = database_url();
    MySqlOrderTable::with_options(opts)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "MySQL at {url} is not answering ({e}). These tests need a real MySQL or \
                 MariaDB: run them through backends/mysql/with-mysql.sh"
            )
        })
}

/// An order table on its own, migrated, prefix.
async fn table() -> MySqlOrderTable {
    let t = connect(options(&prefix())).await;
    t.migrate().await.expect("migrations apply");
    t
}

async fn admin() -> sqlx::MySqlPool {
    sqlx::MySqlPool::connect(&database_url()).await.unwrap()
}

/// 2026-01-01T00:00:00Z.
const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(T0.as_millis() + ms)
}

/// A hold of `buyer`'s on `product`, placed at T0.
fn hold(product: &ProductId, buyer: usize) -> Reservation {
    Reservation {
        order_id: OrderId::new(T0),
        product: product.clone(),
        user: user(buyer),
        quantity: Quantity::new(2).unwrap(),
        idempotency_key: Some(IdempotencyKey::new(format!("key-{buyer}")).unwrap()),
        created_at: T0,
        expires_at: at(60_000),
        awaits_confirmation: true,
        state: ReservationState::Held,
    }
}

/// The `placed` event of `r` and its closing event of type `closing` at
/// T0 + 1 s.
fn events(r: &Reservation, closing: EventType) -> (OrderEvent, OrderEvent) {
    (
        OrderEvent::placed(r),
        OrderEvent::closing(r, closing, at(1_000)),
    )
}

/// A batch of one.
fn one(e: &OrderEvent) -> &[OrderEvent] {
    std::slice::from_ref(e)
}

fn stats(applied: usize, ignored: usize) -> ApplyStats {
    ApplyStats { applied, ignored }
}

/// The row as `apply` must leave it: the order, and the last event.
fn row(e: &OrderEvent) -> OrderRow {
    OrderRow::from(e)
}

fn assert_permanent(e: &Error, needle: &str) {
    assert!(matches!(e, Error::Invalid(_)), "not permanent: {e}");
    assert!(!e.is_transient(), "{e}");
    assert!(e.to_string().contains(needle), "{needle:?} not in {e}");
}

fn assert_transient(e: &Error) {
    assert!(
        matches!(
            e,
            Error::Backend {
                backend: "mysql",
                ..
            }
        ),
        "not a mysql backend error: {e}"
    );
    assert!(e.is_transient(), "{e}");
}

#[tokio::test]
async fn placed_then_confirmed() {
    let t = table().await;
    let p = unique_product("confirm");
    let r = hold(&p, 1);
    let (placed, confirmed) = events(&r, EventType::Confirmed);

    assert_eq!(t.apply(&[]).await.unwrap(), stats(0, 0));
    assert_eq!(t.get(&r.order_id).await.unwrap(), None);
    assert_eq!(t.apply(one(&placed)).await.unwrap(), stats(1, 0));
    let got = t.get(&r.order_id).await.unwrap().unwrap();
    assert_eq!(got, row(&placed));
    assert_eq!(got.status, EventType::Placed);
    assert_eq!(got.last_seq, 1);
    assert_eq!(got.quantity.get(), 2);
    assert_eq!(got.hold_expires_at, Some(at(60_000)));
    assert_eq!(got.idempotency_key.as_ref().unwrap().as_str(), "key-1");
    assert_eq!(got.updated_at, T0);

    assert_eq!(t.apply(one(&confirmed)).await.unwrap(), stats(1, 0));
    let got = t.get(&r.order_id).await.unwrap().unwrap();
    assert_eq!(got, row(&confirmed));
    assert_eq!(
        (got.status, got.last_seq, got.updated_at, got.created_at),
        (EventType::Confirmed, 2, at(1_000), T0)
    );
    assert_eq!(got.last_event_id.to_string(), format!("{}.2", r.order_id));
    assert_eq!(
        t.count_by_status(Some(&p)).await.unwrap(),
        vec![(EventType::Confirmed, 1)]
    );
    assert_eq!(t.order_ids(Some(&p)).await.unwrap(), vec![r.order_id]);
}

/// A sale without holds: the order is sold at `placed`, no hold expiry.
#[tokio::test]
async fn sold_at_once_has_no_hold_and_no_key() {
    let t = table().await;
    let p = unique_product("sold");
    let r = Reservation {
        idempotency_key: None,
        expires_at: T0,
        awaits_confirmation: false,
        state: ReservationState::Committed,
        ..hold(&p, 2)
    };
    let placed = OrderEvent::placed(&r);
    assert_eq!(t.apply(one(&placed)).await.unwrap(), stats(1, 0));
    let got = t.get(&r.order_id).await.unwrap().unwrap();
    assert_eq!(got, row(&placed));
    assert_eq!((got.hold_expires_at, got.idempotency_key), (None, None));
}

#[tokio::test]
async fn duplicates_are_ignored_and_counted() {
    let t = table().await;
    let p = unique_product("dup");
    let r = hold(&p, 1);
    let (placed, cancelled) = events(&r, EventType::Cancelled);

    assert_eq!(t.apply(one(&placed)).await.unwrap(), stats(1, 0));
    assert_eq!(t.apply(one(&placed)).await.unwrap(), stats(0, 1));
    assert_eq!(t.get(&r.order_id).await.unwrap(), Some(row(&placed)));
    assert_eq!(t.apply(one(&cancelled)).await.unwrap(), stats(1, 0));
    // The closing event again, and the `placed` again (late): nothing.
    assert_eq!(
        t.apply(&[cancelled.clone(), placed.clone(), cancelled.clone()])
            .await
            .unwrap(),
        stats(0, 3)
    );
    assert_eq!(t.get(&r.order_id).await.unwrap(), Some(row(&cancelled)));
    assert_eq!(t.order_ids(None).await.unwrap(), vec![r.order_id]);
}

/// A closing event that arrives first (a dead-letter replay) creates the
/// row already closed; the late `placed` changes nothing.
#[tokio::test]
async fn closing_before_placed_creates_the_closed_row() {
    let t = table().await;
    let p = unique_product("early");
    let r = hold(&p, 3);
    let (placed, expired) = events(&r, EventType::Expired);

    assert_eq!(t.apply(one(&expired)).await.unwrap(), stats(1, 0));
    let got = t.get(&r.order_id).await.unwrap().unwrap();
    assert_eq!(got, row(&expired));
    assert_eq!((got.status, got.last_seq), (EventType::Expired, 2));
    assert_eq!(got.product, p);
    assert_eq!(got.user, user(3));
    assert_eq!(got.created_at, T0);

    assert_eq!(t.apply(one(&placed)).await.unwrap(), stats(0, 1));
    assert_eq!(t.get(&r.order_id).await.unwrap(), Some(row(&expired)));
    // Both again, in one batch, in either order.
    assert_eq!(
        t.apply(&[placed.clone(), expired.clone()]).await.unwrap(),
        stats(0, 2)
    );
    assert_eq!(t.get(&r.order_id).await.unwrap(), Some(row(&expired)));
}

/// One call with several orders, each repeated, in mixed order: the
/// counts are exact and every row ends at its highest event.
#[tokio::test]
async fn one_batch_with_repeats() {
    let t = table().await;
    let p = unique_product("batch");
    let q = unique_product("batch-other");
    let a = hold(&p, 1);
    let b = hold(&p, 2);
    let c = hold(&p, 3);
    let d = hold(&q, 4);
    let (a1, a2) = events(&a, EventType::Confirmed);
    let (b1, b2) = events(&b, EventType::Voided);
    let (c1, _) = events(&c, EventType::Cancelled);
    let (d1, d2) = events(&d, EventType::Cancelled);
    let batch = [
        a1.clone(), // applied: creates a
        b2.clone(), // applied: creates b, closed
        a1.clone(), // ignored
        c1.clone(), // applied: creates c
        b1.clone(), // ignored: late
        a2.clone(), // applied: moves a
        c1.clone(), // ignored
        a2.clone(), // ignored
        a1.clone(), // ignored
        d1.clone(), // applied
        d2.clone(), // applied
        b2.clone(), // ignored
    ];
    assert_eq!(t.apply(&batch).await.unwrap(), stats(6, 6));
    assert_eq!(t.get(&a.order_id).await.unwrap(), Some(row(&a2)));
    assert_eq!(t.get(&b.order_id).await.unwrap(), Some(row(&b2)));
    assert_eq!(t.get(&c.order_id).await.unwrap(), Some(row(&c1)));
    assert_eq!(t.get(&d.order_id).await.unwrap(), Some(row(&d2)));
    // The same batch again changes nothing.
    assert_eq!(t.apply(&batch).await.unwrap(), stats(0, 12));

    let mut of_p = vec![a.order_id, b.order_id, c.order_id];
    of_p.sort();
    assert_eq!(t.order_ids(Some(&p)).await.unwrap(), of_p);
    assert_eq!(t.order_ids(Some(&q)).await.unwrap(), vec![d.order_id]);
    assert_eq!(t.order_ids(None).await.unwrap().len(), 4);
    assert_eq!(
        t.count_by_status(Some(&p)).await.unwrap(),
        vec![
            (EventType::Placed, 1),
            (EventType::Confirmed, 1),
            (EventType::Voided, 1)
        ]
    );
    assert_eq!(
        t.count_by_status(None).await.unwrap(),
        vec![
            (EventType::Placed, 1),
            (EventType::Confirmed, 1),
            (EventType::Cancelled, 1),
            (EventType::Voided, 1)
        ]
    );
    assert!(
        t.count_by_status(Some(&unique_product("none")))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A few orders, each with its `placed` and maybe a closing event.
fn orders_strategy() -> impl Strategy<Value = Vec<Option<EventType>>> {
    let closing = prop_oneof![
        Just(None),
        Just(Some(EventType::Confirmed)),
        Just(Some(EventType::Cancelled)),
        Just(Some(EventType::Expired)),
        Just(Some(EventType::Voided)),
    ];
    proptest::collection::vec(closing, 1..=4)
}

/// Any delivery of a few orders' events (a random sequence with repeats,
/// cut into random batches) leaves each row at its order's highest event
/// delivered, and the counts are those of a one-event-at-a-time fold.
#[test]
fn any_delivery_order_folds_to_the_highest_seq() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // One table for every case: each case has orders of its own.
    let t = rt.block_on(table());
    let strategy = (
        orders_strategy(),
        proptest::collection::vec((0usize..4, any::<bool>()), 1..30),
        proptest::collection::vec(1usize..8, 1..8),
    );
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(orders, deliveries, cuts)| {
            rt.block_on(async {
                let p = unique_product("prop");
                let made: Vec<(Reservation, OrderEvent, Option<OrderEvent>)> = orders
                    .iter()
                    .enumerate()
                    .map(|(i, closing)| {
                        let r = hold(&p, i);
                        let placed = OrderEvent::placed(&r);
                        let closing = closing.map(|c| OrderEvent::closing(&r, c, at(5)));
                        (r, placed, closing)
                    })
                    .collect();
                let sequence: Vec<OrderEvent> = deliveries
                    .iter()
                    .map(|(i, second)| {
                        let (_, placed, closing) = &made[i % made.len()];
                        match closing {
                            Some(c) if *second => c.clone(),
                            _ => placed.clone(),
                        }
                    })
                    .collect();
                // The model: one event at a time, the highest seq wins.
                let mut highest: BTreeMap<OrderId, &OrderEvent> = BTreeMap::new();
                let mut want = ApplyStats::default();
                for e in &sequence {
                    let slot = highest.entry(e.order.order_id).or_insert(e);
                    if std::ptr::eq(*slot, e) || e.seq > slot.seq {
                        *slot = e;
                        want.applied += 1;
                    } else {
                        want.ignored += 1;
                    }
                }
                let mut got = ApplyStats::default();
                let mut rest = sequence.as_slice();
                let mut cut = cuts.iter().cycle();
                while !rest.is_empty() {
                    let n = (*cut.next().unwrap()).min(rest.len());
                    let (batch, tail) = rest.split_at(n);
                    let s = t
                        .apply(batch)
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(s.applied + s.ignored, batch.len());
                    got.applied += s.applied;
                    got.ignored += s.ignored;
                    rest = tail;
                }
                prop_assert_eq!(got, want);
                for (r, _, _) in &made {
                    let expected = highest.get(&r.order_id).map(|e| row(e));
                    prop_assert_eq!(t.get(&r.order_id).await.unwrap(), expected);
                }
                let ids: Vec<OrderId> = highest.keys().copied().collect();
                prop_assert_eq!(t.order_ids(Some(&p)).await.unwrap(), ids);
                Ok(())
            })
        })
        .unwrap();
}

/// A tiny deterministic generator (the tests need no `rand`).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Several tasks (as several worker instances would) apply overlapping,
/// shuffled batches with repeats at the same time: the table ends as one
/// sequential fold would leave it, and every event is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overlapping_batches_converge() {
    let t = table().await;
    let p = unique_product("race");
    let closings = [
        EventType::Confirmed,
        EventType::Cancelled,
        EventType::Expired,
        EventType::Voided,
    ];
    let mut all = Vec::new();
    let mut last = Vec::new();
    for i in 0..40 {
        let r = hold(&p, i);
        let placed = OrderEvent::placed(&r);
        if i % 5 == 4 {
            // Still open: only its `placed`.
            last.push(placed.clone());
            all.push(placed);
        } else {
            let c = OrderEvent::closing(&r, closings[i % 4], at(i as u64));
            last.push(c.clone());
            all.push(placed);
            all.push(c);
        }
    }
    let tasks = 6;
    let mut handles = Vec::new();
    let mut delivered = 0;
    for k in 0..tasks {
        // Every task gets every event once, plus a third again, shuffled.
        let mut rng = Lcg(k as u64 + 1);
        let mut mine: Vec<OrderEvent> = all.clone();
        for _ in 0..all.len() / 3 {
            mine.push(all[rng.below(all.len())].clone());
        }
        for i in (1..mine.len()).rev() {
            mine.swap(i, rng.below(i + 1));
        }
        delivered += mine.len();
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            let mut total = ApplyStats::default();
            for batch in mine.chunks(7 + k) {
                let s = t.apply(batch).await.expect("apply");
                total.applied += s.applied;
                total.ignored += s.ignored;
            }
            total
        }));
    }
    let mut total = ApplyStats::default();
    for h in handles {
        let s = h.await.unwrap();
        total.applied += s.applied;
        total.ignored += s.ignored;
    }
    assert_eq!(total.applied + total.ignored, delivered);
    // Each order's row was created once, and moved forward at most once.
    let orders = last.len();
    let closed = last.iter().filter(|e| e.seq == 2).count();
    assert!(
        (orders..=orders + closed).contains(&total.applied),
        "{total:?}"
    );
    for e in &last {
        assert_eq!(t.get(&e.order.order_id).await.unwrap(), Some(row(e)));
    }
    let want: BTreeSet<OrderId> = last.iter().map(|e| e.order.order_id).collect();
    let got: BTreeSet<OrderId> = t.order_ids(Some(&p)).await.unwrap().into_iter().collect();
    assert_eq!(got, want);
    // A sequential fold of the same events on fresh tables agrees.
    let fresh = table().await;
    fresh.apply(&all).await.unwrap();
    for e in &last {
        assert_eq!(
            fresh.get(&e.order.order_id).await.unwrap(),
            t.get(&e.order.order_id).await.unwrap()
        );
    }
    assert_eq!(
        fresh.count_by_status(Some(&p)).await.unwrap(),
        t.count_by_status(Some(&p)).await.unwrap()
    );
}

/// An event of a schema this build does not know is a permanent error,
/// and the whole batch writes nothing; so are inconsistent events.
#[tokio::test]
async fn unknown_schema_version_is_permanent_and_writes_nothing() {
    let t = table().await;
    let p = unique_product("schema");
    let good = OrderEvent::placed(&hold(&p, 1));
    let mut future = OrderEvent::placed(&hold(&p, 2));
    future.schema_version = OrderEvent::SCHEMA_VERSION + 1;
    let e = t
        .apply(&[good.clone(), future.clone()])
        .await
        .expect_err("unknown schema version");
    assert_permanent(&e, "schema version 3");
    assert_permanent(&e, &future.event_id.to_string());
    assert_eq!(t.get(&good.order.order_id).await.unwrap(), None);
    assert_eq!(t.get(&future.order.order_id).await.unwrap(), None);

    // An event id that names another order.
    let mut stray = OrderEvent::placed(&hold(&p, 3));
    stray.event_id = good.event_id;
    let e = t.apply(&[good.clone(), stray]).await.unwrap_err();
    assert_permanent(&e, "event_id");
    // A `placed` that claims seq 2, a closing event with seq 1.
    let r = hold(&p, 4);
    let (mut placed, mut closing) = events(&r, EventType::Cancelled);
    placed.seq = 2;
    placed.event_id = flashsale::EventId::new(r.order_id, 2);
    let e = t.apply(&[placed]).await.unwrap_err();
    assert_permanent(&e, "seq");
    closing.seq = 1;
    closing.event_id = flashsale::EventId::new(r.order_id, 1);
    let e = t.apply(&[closing]).await.unwrap_err();
    assert_permanent(&e, "seq");
    assert!(t.order_ids(Some(&p)).await.unwrap().is_empty());

    // The good event alone still applies.
    assert_eq!(t.apply(&[good]).await.unwrap(), stats(1, 0));
}

/// A value the table cannot store, as the server reports it (here a
/// column narrowed by hand), is permanent, and the batch writes nothing.
#[tokio::test]
async fn value_the_table_cannot_store_is_permanent() {
    let t = table().await;
    let prefix = t.prefix().to_owned();
    let admin = admin().await;
    sqlx::query(&format!(
        "ALTER TABLE {prefix}orders MODIFY user_id VARCHAR(6) \
         CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"
    ))
    .execute(&admin)
    .await
    .unwrap();
    let p = unique_product("too-long");
    // `user-1` fits in 6 characters, `user-12` does not.
    let fits = OrderEvent::placed(&hold(&p, 1));
    let too_long = OrderEvent::placed(&hold(&p, 12));
    let e = t.apply(&[fits.clone(), too_long]).await.unwrap_err();
    assert_permanent(&e, "cannot store");
    assert_permanent(&e, "user_id");
    assert_eq!(t.get(&fits.order.order_id).await.unwrap(), None);
    assert_eq!(t.apply(&[fits]).await.unwrap(), stats(1, 0));
}

/// Infrastructure failures are transient: a server that does not answer,
/// a table that is not there yet, a row lock held past the lock-wait
/// timeout (after the retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infrastructure_failures_are_transient() {
    let p = unique_product("transient");
    let r = hold(&p, 1);
    let (placed, confirmed) = events(&r, EventType::Confirmed);

    // Port 9 (discard) on loopback: nothing listens there.
    let down = MySqlOptions::new("mysql://root@127.0.0.1:9/test")
        .acquire_timeout(Duration::from_millis(500));
    let e = MySqlOrderTable::with_options(down.clone())
        .await
        .expect_err("nothing listens on port 9");
    assert_transient(&e);
    let lazy = MySqlOrderTable::with_options(down.lazy(true))
        .await
        .unwrap();
    assert_transient(&lazy.apply(one(&placed)).await.unwrap_err());
    assert_transient(&lazy.ping().await.unwrap_err());
    assert_transient(&lazy.get(&r.order_id).await.unwrap_err());

    // Not migrated: no table.
    let bare = connect(options(&prefix())).await;
    assert_transient(&bare.apply(one(&placed)).await.unwrap_err());

    // A row lock held elsewhere: lock-wait timeout (1 s), no retries.
    let prefix = prefix();
    let t = connect(
        options(&prefix)
            .lock_wait_timeout(Duration::from_secs(1))
            .max_retries(0),
    )
    .await;
    t.migrate().await.unwrap();
    t.ping().await.unwrap();
    assert_eq!(t.apply(&[placed]).await.unwrap(), stats(1, 0));
    let admin = admin().await;
    let mut blocker = admin.begin().await.unwrap();
    sqlx::query(&format!(
        "SELECT status FROM {prefix}orders WHERE order_id = ? FOR UPDATE"
    ))
    .bind(r.order_id.as_uuid().as_bytes().as_slice())
    .execute(&mut *blocker)
    .await
    .unwrap();
    let started = Instant::now();
    let e = t.apply(one(&confirmed)).await.unwrap_err();
    assert_transient(&e);
    assert!(
        e.to_string().contains("1205") || e.to_string().contains("Lock wait"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    blocker.rollback().await.unwrap();
    // Retried later, it goes through.
    assert_eq!(t.apply(one(&confirmed)).await.unwrap(), stats(1, 0));
    assert_eq!(t.get(&r.order_id).await.unwrap(), Some(row(&confirmed)));
}

/// A stock store and an order table on one prefix share the migrations:
/// either may migrate first, or both at once, and the other's migrate is
/// then a no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_migrations_with_the_stock_store() {
    let admin = admin().await;
    let versions = |prefix: String| {
        let admin = admin.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!(
                "SELECT version FROM {prefix}schema_migrations ORDER BY version"
            ))
            .fetch_all(&admin)
            .await
            .unwrap()
        }
    };
    // Both at once, twice over (two of each).
    let prefix_a = prefix();
    let stock = MySqlStockStore::with_options(options(&prefix_a))
        .await
        .unwrap();
    let stock2 = MySqlStockStore::with_options(options(&prefix_a))
        .await
        .unwrap();
    let orders = connect(options(&prefix_a)).await;
    let orders2 = connect(options(&prefix_a)).await;
    let (a, b, c, d) = tokio::join!(
        orders.migrate(),
        stock.migrate(),
        orders2.migrate(),
        stock2.migrate()
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    d.unwrap();
    assert_eq!(versions(prefix_a.clone()).await, vec![1, 2, 3, 4]);

    // The order table first, then the stock store; and the other way.
    for orders_first in [true, false] {
        let prefix = prefix();
        let stock = MySqlStockStore::with_options(options(&prefix))
            .await
            .unwrap();
        let orders = connect(options(&prefix)).await;
        if orders_first {
            orders.migrate().await.unwrap();
            stock.migrate().await.unwrap();
        } else {
            stock.migrate().await.unwrap();
            orders.migrate().await.unwrap();
        }
        orders.migrate().await.unwrap();
        assert_eq!(versions(prefix.clone()).await, vec![1, 2, 3, 4]);
        let r = hold(&unique_product("shared"), 1);
        assert_eq!(
            orders.apply(&[OrderEvent::placed(&r)]).await.unwrap(),
            stats(1, 0)
        );
        flashsale::StockStore::ping(&stock).await.unwrap();
    }
}

/// Bad options are refused before any connection is made; the batching
/// options do not concern the order table.
#[tokio::test]
async fn options_are_checked() {
    for bad in ["has space", "dash-ed", &"x".repeat(33)] {
        let e = MySqlOrderTable::with_options(options(bad))
            .await
            .expect_err(bad);
        assert!(matches!(e, Error::Config(_)), "{bad}: {e}");
    }
    let e = MySqlOrderTable::with_options(options(&prefix()).max_connections(0))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    let t = MySqlOrderTable::connect(&database_url(), &prefix())
        .await
        .unwrap();
    t.ping().await.unwrap();
    let t = MySqlOrderTable::with_options(options(&prefix()).batch_max(0))
        .await
        .unwrap();
    assert!(t.prefix().starts_with("fst_"));
}
