//! Whole-engine cases: the full purchase flow against a store under test,
//! with in-memory limiter, sink and authenticator.

use std::collections::HashSet;
use std::sync::Arc;

use crate::engine::Engine;
use crate::memory::{MemoryOrderSink, MemoryRateLimiter, StaticAuthenticator};
use crate::model::{Credentials, Outcome, Principal, PurchaseRequest, Quantity, RateQuota, Sale};
use crate::ports::StockStore;

use super::{unique_product, user};

/// 1,000 buyers, three attempts each, race for 100 units through one engine
/// per store handle (pass several handles to one backend to play several
/// app servers). Exactly 100 purchases succeed, every one of them reached
/// the sink once, every other attempt is `SoldOut`, and the levels end at
/// `100 committed, 0 held, 0 available`.
pub async fn concurrent_buyers(stores: Vec<Arc<dyn StockStore>>) {
    const BUYERS: usize = 1_000;
    const ATTEMPTS: usize = 3;
    const STOCK: u32 = 100;
    assert!(!stores.is_empty());
    let mut auth = StaticAuthenticator::new();
    for b in 0..BUYERS {
        auth.insert(format!("token-{b}"), Principal::user(user(b)));
    }
    let auth = Arc::new(auth);
    let sink = Arc::new(MemoryOrderSink::new());
    let limiter = Arc::new(MemoryRateLimiter::new(
        RateQuota::per_second(1_000).expect("valid quota"),
    ));
    let engines: Vec<Engine> = stores
        .iter()
        .map(|s| {
            Engine::builder()
                .stock_store(s.clone())
                .rate_limiter(limiter.clone())
                .order_sink(sink.clone())
                .authenticator(auth.clone())
                .build()
                .expect("valid engine")
        })
        .collect();
    let p = unique_product("engine-hot");
    let sale = Sale::builder(p.clone(), STOCK).build().expect("valid sale");
    engines[0].create_sale(&sale).await.expect("sale created");

    let mut tasks = Vec::with_capacity(BUYERS);
    for b in 0..BUYERS {
        let engine = engines[b % engines.len()].clone();
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let creds = Credentials::bearer(format!("token-{b}"));
            let mut won = 0u32;
            for _ in 0..ATTEMPTS {
                let req = PurchaseRequest::new(p.clone(), Quantity::ONE);
                match engine.purchase(&creds, req).await {
                    Outcome::Purchased(_) => won += 1,
                    Outcome::SoldOut => {}
                    other => panic!("buyer {b}: unexpected {other:?}"),
                }
            }
            won
        }));
    }
    let mut purchased = 0;
    for t in tasks {
        purchased += t.await.expect("buyer task panicked");
    }
    assert_eq!(purchased, STOCK, "purchases != stock");
    let orders = sink.orders();
    assert_eq!(
        orders.len(),
        STOCK as usize,
        "every purchase reached the sink"
    );
    let ids: HashSet<_> = orders.iter().map(|o| o.order_id).collect();
    assert_eq!(ids.len(), orders.len(), "order ids are unique");
    let l = engines[0]
        .snapshot(&p)
        .await
        .expect("snapshot")
        .expect("sale exists");
    assert!(l.is_consistent(), "{l:?}");
    assert_eq!((l.available, l.held, l.committed), (0, 0, u64::from(STOCK)));
}
