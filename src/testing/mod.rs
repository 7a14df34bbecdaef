//! Conformance suites every backend must pass (feature `test-util`).
//!
//! Each suite is a set of plain `async fn`s taking the port under test, and
//! a macro that turns them into one `#[tokio::test]` per case for a
//! backend, so failures name the case:
//!
//! ```ignore
//! // tests/my_backend.rs
//! flashsale::stock_store_conformance!(|| async { MyStore::connect_fresh().await });
//! flashsale::rate_limiter_conformance!(|quota| async move { MyLimiter::new(quota) });
//! flashsale::order_sink_conformance!(|| async { MySink::new() });
//! ```
//!
//! The factory is called once per case and must return an isolated
//! instance (its own key prefix, schema or topic), because the cases run in
//! parallel and some (`expire`) act on everything the store holds.
//!
//! Stock cases pass `now` explicitly and never sleep; rate-limiter cases run
//! on real time (a distributed limiter uses its server's clock) with short
//! periods.

pub mod engine;
pub mod rate;
pub mod sink;
pub mod stock;

use crate::model::{ProductId, UserId};

/// A product id unique to this run, tagged with `case` for debugging.
pub fn unique_product(case: &str) -> ProductId {
    let tag: String = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
    let case: String = case.chars().take(40).collect();
    ProductId::new(format!("{case}-{tag}")).expect("generated ids are valid")
}

/// The user id `user-{n}`.
pub fn user(n: usize) -> UserId {
    UserId::new(format!("user-{n}")).expect("generated ids are valid")
}

/// Runs every [`stock`] case against the store made by `$make`, an
/// expression callable as `$make()` returning a future of a type that
/// implements [`StockStore`](crate::StockStore).
#[macro_export]
macro_rules! stock_store_conformance {
    ($make:expr) => {
        $crate::__conformance_cases!(stock, $make;
            create_sale_and_snapshot,
            reserve_then_commit,
            cancel_returns_units,
            abort_forgets_reservation_and_key,
            idempotency_key_replays,
            same_order_id_is_duplicate,
            sold_out_is_exact,
            per_user_cap,
            per_order_max,
            sale_window,
            unknown_product,
            holds_expire,
            commit_after_expiry_refused,
            expire_respects_max,
            restock,
            invariant_under_mixed_operations,
            concurrent_buyers_never_oversell,
            concurrent_per_user_cap,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn engine_concurrent_buyers() {
            let store: ::std::sync::Arc<dyn $crate::StockStore> =
                ::std::sync::Arc::new(($make)().await);
            // Four engines (four app servers) on one store.
            $crate::testing::engine::concurrent_buyers(vec![store; 4]).await;
        }
    };
}

/// Runs every [`rate`] case against limiters made by `$make`, an
/// expression callable as `$make(quota: RateQuota)` returning a future of a
/// type that implements [`RateLimiter`](crate::RateLimiter).
#[macro_export]
macro_rules! rate_limiter_conformance {
    ($make:expr) => {
        $crate::__conformance_cases!(rate, $make;
            burst_then_limited,
            retry_after_is_honoured,
            keys_are_independent,
            refusals_are_not_charged,
            cost_is_charged,
        );
    };
}

/// Runs every [`sink`] case against sinks made by `$make`, an expression
/// callable as `$make()` returning a future of a type that implements
/// [`OrderSink`](crate::OrderSink).
#[macro_export]
macro_rules! order_sink_conformance {
    ($make:expr) => {
        $crate::__conformance_cases!(sink, $make;
            submit_returns_receipt,
            resubmit_is_idempotent,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($suite:ident, $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::testing::$suite::$case(&$make).await;
            }
        )*
    };
}
