//! A fixed workload for instruction-count profiling of the in-memory
//! purchase path: `N` successful purchases by 4,096 buyers of one product,
//! on a current-thread runtime, with the outbox relayed to the sink every
//! 256 purchases (as the relay does, one batch at a time), nothing else.
//!
//! callgrind counts repeat exactly on a noisy machine; run it twice with
//! different `N` and divide the difference to get instructions per
//! purchase without the set-up:
//!
//! ```sh
//! cargo build --release --example purchase_profile
//! for n in 10000 20000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \
//!     target/release/examples/purchase_profile $n 2>&1 | grep refs
//! done
//! ```
//!
//! Allocations per purchase, the same way: `valgrind --tool=dhat` for
//! both `N`, and the difference of the `Total: ... in <blocks>` lines.

use std::sync::Arc;

use flashsale::memory::{
    MemoryOrderSink, MemoryRateLimiter, MemoryStockStore, StaticAuthenticator,
};
use flashsale::{
    Credentials, Engine, Outcome, ProductId, PurchaseRequest, Quantity, RateQuota, Sale,
};
use flashsale::{Principal, UserId};

const USERS: usize = 4_096;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("usage: purchase_profile <purchases>"))
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
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
        let engine = Engine::builder()
            .stock_store(Arc::new(MemoryStockStore::new()))
            .rate_limiter(Arc::new(MemoryRateLimiter::new(
                RateQuota::per_second(1_000_000).unwrap(),
            )))
            .order_sink(Arc::new(MemoryOrderSink::new()))
            .authenticator(Arc::new(auth))
            .build()
            .unwrap();
        let p = ProductId::new("profile").unwrap();
        let sale = Sale::builder(p.clone(), 1_000_000_000)
            .per_user_limit(1_000_000_000)
            .per_order_max(10)
            .build()
            .unwrap();
        engine.create_sale(&sale).await.unwrap();
        let mut ok = 0usize;
        for i in 0..n {
            if i % 256 == 255 {
                engine.drain_outbox().await.unwrap();
            }
            let req = PurchaseRequest::new(p.clone(), Quantity::ONE);
            if matches!(
                engine.purchase(&creds[i % USERS], req).await,
                Outcome::Purchased(_)
            ) {
                ok += 1;
            }
        }
        assert_eq!(ok, n, "every purchase succeeds");
        println!("{ok} purchases");
    });
}
