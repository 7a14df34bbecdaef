//! Criterion benches of the purchase path on the in-memory backends.
//!
//! `cargo bench --bench purchase` runs them all; figures are recorded in
//! docs/performance.md.
//!
//! * `machine/*`: one full pass of the pure state machine (no I/O).
//! * `engine/purchase_single_task`: `Engine::purchase` on a current-thread
//!   runtime, each attempt a success (huge stock, many buyers).
//! * `engine/sold_out_rejection`: attempts after the product sold out.
//! * `contended/*`: 1,024 purchases per iteration spread over 64 tasks, on a
//!   multi-thread runtime with 1 and then 2 workers, either on one hot
//!   product or on 64 products (one per task).
//! * `bot/*`: a bot cycling a million random product ids, without and with
//!   valid credentials (the latter interleaved with purchases of one hot
//!   sale).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use flashsale::machine::{Action, MachineConfig, PurchaseMachine};
use flashsale::memory::{
    MemoryOrderSink, MemoryRateLimiter, MemoryStockStore, StaticAuthenticator,
};
use flashsale::{
    Credentials, Engine, OrderId, Outcome, ProductId, PurchaseRequest, Quantity, RateQuota, Sale,
    Timestamp,
};
use flashsale::{Principal, UserId};
use flashsale::{RateDecision, ReserveOutcome};

const USERS: usize = 4_096;
const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn machine_pass(c: &mut Criterion) {
    let sale = Sale::builder(ProductId::new("p").unwrap(), 100)
        .build()
        .unwrap();
    let principal = Principal::user(UserId::new("u").unwrap());
    let req = PurchaseRequest::new(ProductId::new("p").unwrap(), Quantity::ONE);
    let order_id = OrderId::new(NOW);
    c.bench_function("machine/full_pass", |b| {
        b.iter(|| {
            let mut m = PurchaseMachine::new(req.clone(), order_id, NOW, MachineConfig::default());
            m.handle_authenticated(Ok(Ok(principal.clone()))).unwrap();
            m.handle_sale(Ok(Some(&sale))).unwrap();
            m.handle_sold_out_checked(false).unwrap();
            m.handle_rate_checked(Ok(RateDecision::Allowed)).unwrap();
            let Action::Reserve(r) = m.poll_action() else {
                unreachable!()
            };
            let held = r.to_reservation(None);
            m.handle_reserved(Ok(ReserveOutcome::Reserved(held)))
                .unwrap();
            black_box(m.into_outcome())
        })
    });
}

fn tokens() -> (Arc<StaticAuthenticator>, Vec<Credentials>) {
    let mut auth = StaticAuthenticator::new();
    let mut creds = Vec::with_capacity(USERS);
    for u in 0..USERS {
        let token = format!("token-{u}");
        auth.insert(
            token.clone(),
            Principal::user(UserId::new(format!("u{u}")).unwrap()),
        );
        creds.push(Credentials::bearer(token));
    }
    (Arc::new(auth), creds)
}

/// An engine whose sink is drained now and then so memory stays flat.
fn engine(auth: Arc<StaticAuthenticator>) -> (Engine, Arc<MemoryOrderSink>) {
    let sink = Arc::new(MemoryOrderSink::new());
    let engine = Engine::builder()
        .stock_store(Arc::new(MemoryStockStore::new()))
        .rate_limiter(Arc::new(MemoryRateLimiter::new(
            RateQuota::new(1_000_000, Duration::from_secs(1)).unwrap(),
        )))
        .order_sink(sink.clone())
        .authenticator(auth)
        .build()
        .unwrap();
    (engine, sink)
}

async fn big_sale(engine: &Engine, id: &str) -> ProductId {
    let p = ProductId::new(id).unwrap();
    let sale = Sale::builder(p.clone(), Sale::MAX_STOCK).build().unwrap();
    engine.create_sale(&sale).await.unwrap();
    p
}

fn single_task(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (auth, creds) = tokens();
    let (mut engine, mut sink) = engine(auth.clone());
    let mut p = rt.block_on(big_sale(&engine, "single"));
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("purchase_single_task", |b| {
        b.iter(|| {
            i += 1;
            // A fresh shop every 100,000 purchases: the memory store keeps
            // every reservation, and a store grown to millions of them
            // measures cache misses, not the purchase path (a real drop
            // sells hundreds to thousands of units).
            if i.is_multiple_of(100_000) {
                (engine, sink) = self::engine(auth.clone());
                p = rt.block_on(big_sale(&engine, "single"));
            }
            let req = PurchaseRequest::new(p.clone(), Quantity::ONE);
            let out = rt.block_on(engine.purchase(&creds[i % USERS], req));
            debug_assert!(matches!(out, Outcome::Purchased(_)));
            black_box(out)
        })
    });
    drop(sink);
    let sold_out = ProductId::new("gone").unwrap();
    rt.block_on(async {
        let sale = Sale::builder(sold_out.clone(), 0).build().unwrap();
        engine.create_sale(&sale).await.unwrap();
    });
    g.bench_function("sold_out_rejection", |b| {
        b.iter(|| {
            i += 1;
            let req = PurchaseRequest::new(sold_out.clone(), Quantity::ONE);
            let out = rt.block_on(engine.purchase(&creds[i % USERS], req));
            assert_eq!(out, Outcome::SoldOut);
        })
    });
    g.finish();
}

/// Time measured and iterations, summed over a bench's samples.
type Totals = parking_lot::Mutex<(Duration, u64)>;

/// 1,024 purchases over 64 tasks on `workers` threads; `hot`: all on one
/// product, else one product per task. Prints, after the group, how many
/// times one worker's throughput 2 workers reach (from the same samples
/// criterion measured).
fn contended(c: &mut Criterion) {
    const TASKS: usize = 64;
    const PER_TASK: usize = 16;
    // Per configuration (hot, workers): total time and iterations measured.
    let mut measured: Vec<(bool, usize, Arc<Totals>)> = Vec::new();
    let mut g = c.benchmark_group("contended");
    g.throughput(Throughput::Elements((TASKS * PER_TASK) as u64));
    g.measurement_time(Duration::from_secs(8));
    for hot in [true, false] {
        for workers in [1usize, 2] {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .unwrap();
            let (auth, creds) = tokens();
            let creds = Arc::new(creds);
            let (engine, sink) = engine(auth);
            let products: Arc<Vec<ProductId>> = Arc::new(rt.block_on(async {
                let mut v = Vec::new();
                for t in 0..TASKS {
                    let id = if hot {
                        "hot".to_owned()
                    } else {
                        format!("p{t}")
                    };
                    if !hot || t == 0 {
                        big_sale(&engine, &id).await;
                    }
                    v.push(ProductId::new(id).unwrap());
                }
                v
            }));
            let next = Arc::new(AtomicUsize::new(0));
            let name = if hot {
                "one_hot_product"
            } else {
                "many_products"
            };
            let totals = Arc::new(Totals::new((Duration::ZERO, 0)));
            measured.push((hot, workers, totals.clone()));
            g.bench_with_input(BenchmarkId::new(name, workers), &workers, |b, _| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        rt.block_on(async {
                            let mut handles = Vec::with_capacity(TASKS);
                            for t in 0..TASKS {
                                let (engine, creds, products, next) = (
                                    engine.clone(),
                                    creds.clone(),
                                    products.clone(),
                                    next.clone(),
                                );
                                handles.push(tokio::spawn(async move {
                                    for _ in 0..PER_TASK {
                                        let u = next.fetch_add(1, Ordering::Relaxed) % USERS;
                                        let req = PurchaseRequest::new(
                                            products[t].clone(),
                                            Quantity::ONE,
                                        );
                                        black_box(engine.purchase(&creds[u], req).await);
                                    }
                                }));
                            }
                            for h in handles {
                                h.await.unwrap();
                            }
                        });
                        if sink.len() > 1_000_000 {
                            sink.drain();
                        }
                    }
                    let elapsed = start.elapsed();
                    let mut t = totals.lock();
                    t.0 += elapsed;
                    t.1 += iters;
                    elapsed
                })
            });
        }
    }
    g.finish();
    // Scaling: per-iteration time with 1 worker / with 2 workers.
    let per_iter = |hot: bool, workers: usize| {
        measured
            .iter()
            .find(|(h, w, _)| *h == hot && *w == workers)
            .map(|(_, _, t)| {
                let t = t.lock();
                t.0.as_secs_f64() / t.1.max(1) as f64
            })
    };
    for (hot, name) in [(true, "one_hot_product"), (false, "many_products")] {
        if let (Some(one), Some(two)) = (per_iter(hot, 1), per_iter(hot, 2))
            && one > 0.0
            && two > 0.0
        {
            println!(
                "contended/{name}: 2 workers = {:.2}x one worker's throughput",
                one / two
            );
        }
    }
}

/// A bot cycling random product ids: without valid credentials (answered
/// before any store lookup), and with them (each id a sale lookup, cached
/// as unknown), interleaved with a buyer of one hot sale whose cached
/// terms must survive the flood.
fn bot(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (auth, creds) = tokens();
    let (engine, _sink) = engine(auth);
    let hot = rt.block_on(big_sale(&engine, "hot"));
    let bad = Credentials::bearer("no-such-token");
    let ids: Vec<ProductId> = (0..1_000_000)
        .map(|i| ProductId::new(format!("bot-{i}")).unwrap())
        .collect();
    let mut g = c.benchmark_group("bot");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("unknown_ids_unauthenticated", |b| {
        b.iter(|| {
            i += 1;
            let req = PurchaseRequest::new(ids[i % ids.len()].clone(), Quantity::ONE);
            black_box(rt.block_on(engine.purchase(&bad, req)))
        })
    });
    g.bench_function("unknown_ids_authenticated_with_hot_buyer", |b| {
        b.iter(|| {
            i += 1;
            let id = if i.is_multiple_of(16) {
                &hot
            } else {
                &ids[i % ids.len()]
            };
            let req = PurchaseRequest::new(id.clone(), Quantity::ONE);
            black_box(rt.block_on(engine.purchase(&creds[i % USERS], req)))
        })
    });
    g.finish();
}

criterion_group!(benches, machine_pass, single_task, contended, bot);
criterion_main!(benches);
