//! Whole-engine cases: the full purchase flow against a store under test,
//! with in-memory limiter, sink and authenticator.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::StockStore;
use crate::engine::Engine;
use crate::memory::{MemoryOrderSink, MemoryRateLimiter, StaticAuthenticator};
use crate::model::{
    Credentials, EventType, OrderId, Outcome, Principal, ProductId, PurchaseRequest, Quantity,
    RateQuota, Sale, UserId,
};

use super::ledger::EventLedger;
use super::{unique_product, user};

/// What a purchase attempt of the race may answer.
enum Answer {
    Bought(OrderId),
    SoldOut,
    Unavailable,
}

/// Checks a purchase's outcome for buyer `b` of product `p`.
fn answer(b: usize, p: &ProductId, outcome: Outcome) -> Answer {
    match outcome {
        Outcome::Purchased(s) => {
            assert_eq!(s.order.user_id, user(b), "buyer {b}: someone else's order");
            assert_eq!(&s.order.product_id, p);
            assert_eq!(s.order.quantity, Quantity::ONE);
            Answer::Bought(s.order.order_id)
        }
        Outcome::SoldOut => Answer::SoldOut,
        Outcome::Unavailable { .. } => Answer::Unavailable,
        other => panic!("buyer {b}: unexpected {other:?}"),
    }
}

/// 1,000 buyers, three attempts each, race for 100 units through one engine
/// per store handle. To play several app servers, pass independent clients
/// of one backend (own connections, own caches), as
/// [`stock_store_conformance!`](crate::stock_store_conformance)'s
/// `app_servers:` form does; clones of one handle are one client. A purchase may answer `SoldOut`, or `Unavailable` (503)
/// if a backend call failed, in which case the buyer must own nothing from
/// that attempt. After the race, fresh buyers buy until `SoldOut`, so the
/// end state is exact by construction whatever the race left over.
///
/// Then: exactly 100 purchases answered `Purchased`, with unique order
/// ids; the levels are `100 sold, 0 held, 0 available`; after the outbox is
/// drained into a [`MemoryOrderSink`], the orders that stand in the sink
/// (distinct `placed` events not followed by a closing event) are exactly
/// the purchased orders, so every buyer owns exactly what it was told it
/// bought; every other `placed` order in the sink was voided.
pub async fn concurrent_buyers(stores: Vec<Arc<dyn StockStore>>) {
    const BUYERS: usize = 1_000;
    const ATTEMPTS: usize = 3;
    const STOCK: u32 = 100;
    /// Fresh buyers available to the drain phase (it needs at most STOCK,
    /// plus one per 503).
    const LATE_BUYERS: usize = 1_000;
    assert!(!stores.is_empty());
    let mut auth = StaticAuthenticator::new();
    for b in 0..BUYERS + LATE_BUYERS {
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
            let mut won = Vec::new();
            let mut unavailable = 0usize;
            for _ in 0..ATTEMPTS {
                let req = PurchaseRequest::new(p.clone(), Quantity::ONE);
                match answer(b, &p, engine.purchase(&creds, req).await) {
                    Answer::Bought(order) => won.push((user(b), order)),
                    Answer::SoldOut => {}
                    Answer::Unavailable => unavailable += 1,
                }
            }
            (won, unavailable)
        }));
    }
    let mut purchased: Vec<(UserId, OrderId)> = Vec::new();
    let mut unavailable = 0;
    for t in tasks {
        let (won, n) = t.await.expect("buyer task panicked");
        purchased.extend(won);
        unavailable += n;
    }
    let raced = purchased.len();

    // Drain phase: fresh buyers buy until sold out.
    let mut sold_out = false;
    for (i, b) in (BUYERS..BUYERS + LATE_BUYERS).enumerate() {
        let engine = &engines[i % engines.len()];
        let creds = Credentials::bearer(format!("token-{b}"));
        let req = PurchaseRequest::new(p.clone(), Quantity::ONE);
        match answer(b, &p, engine.purchase(&creds, req).await) {
            Answer::Bought(order) => purchased.push((user(b), order)),
            Answer::SoldOut => {
                sold_out = true;
                break;
            }
            Answer::Unavailable => unavailable += 1,
        }
    }
    assert!(sold_out, "never sold out: {} purchases", purchased.len());
    assert_eq!(
        purchased.len(),
        STOCK as usize,
        "purchases != stock ({raced} in the race, {unavailable} answered 503)"
    );
    let ids: HashSet<OrderId> = purchased.iter().map(|(_, o)| *o).collect();
    assert_eq!(ids.len(), purchased.len(), "order ids are unique");
    let l = engines[0]
        .snapshot(&p)
        .await
        .expect("snapshot")
        .expect("sale exists");
    assert!(l.is_consistent(), "{l:?}");
    assert_eq!((l.available, l.held, l.committed), (0, 0, u64::from(STOCK)));

    // Relay everything to the sink.
    let relayed = engines[0].drain_outbox().await.expect("relay");
    assert_eq!(engines[0].drain_outbox().await.expect("relay"), 0);
    let events = sink.events();
    assert!(
        relayed >= events.len(),
        "{relayed} relayed, {} in the sink",
        events.len()
    );
    let mut ledger = EventLedger::new();
    assert_eq!(
        ledger.extend(&events),
        events.len(),
        "the sink dedupes by event id"
    );
    assert_eq!(
        ledger.live_orders(&p),
        ids,
        "the orders standing in the sink are exactly the purchased ones"
    );
    assert_eq!(ledger.live_units(&p), u64::from(STOCK));
    let mut per_user: HashMap<&UserId, u64> = HashMap::new();
    for (u, _) in &purchased {
        *per_user.entry(u).or_default() += 1;
    }
    for (u, n) in per_user {
        assert_eq!(ledger.user_units(&p, u), n, "{u} owns what it was told");
    }
    let orders = sink.orders();
    let distinct: HashSet<OrderId> = orders.iter().map(|o| o.order_id).collect();
    assert_eq!(distinct.len(), orders.len(), "one placed event per order");
    for o in &orders {
        assert!(
            ids.contains(&o.order_id) || ledger.closing(&o.order_id) == Some(EventType::Voided),
            "order {} reached the sink but was neither purchased nor voided",
            o.order_id
        );
    }
    if unavailable == 0 {
        assert_eq!(
            orders.len(),
            STOCK as usize,
            "distinct placed orders == units sold"
        );
    }
}
