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
//! Stock and outbox cases pass `now` explicitly and never sleep;
//! rate-limiter cases run on real time (a distributed limiter uses its
//! server's clock) with short periods. [`ledger`] folds order events into
//! what they say each order owns, for comparing a store's levels with its
//! outbox.

pub mod engine;
pub mod ledger;
pub mod outbox;
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

/// Runs every [`stock`] and [`outbox`] case, and the whole-engine race of
/// [`engine::concurrent_buyers`] (four engines on one store), against the
/// store made by `$make`, an expression callable as `$make()` returning a
/// future of a type that implements [`StockStore`](crate::StockStore).
#[macro_export]
macro_rules! stock_store_conformance {
    ($make:expr) => {
        $crate::__conformance_cases!(stock, $make;
            create_sale_and_snapshot,
            no_hold_sale_sells_at_once,
            hold_then_confirm,
            hold_then_cancel,
            confirm_or_cancel_past_expiry_expires,
            same_order_id_is_the_same_request,
            idempotency_key_replays,
            replays_win,
            void_returns_sold_units,
            void_returns_held_units,
            void_before_reserve_leaves_tombstone,
            void_of_closed_hold_changes_nothing,
            void_of_confirmed_hold_changes_nothing,
            a_replayed_order_is_kept_until_its_replays_void,
            sold_out_is_exact,
            per_user_cap,
            per_order_max,
            sale_window,
            unknown_product,
            holds_expire,
            expire_respects_max,
            restock,
            one_event_per_state_change,
            invariant_under_mixed_operations,
            concurrent_buyers_never_oversell,
            concurrent_per_user_cap,
        );
        $crate::__conformance_cases!(outbox, $make;
            claim_respects_max_and_leases,
            ack_is_idempotent,
            closing_event_waits_for_leased_placed,
            claim_returns_seq_order,
            two_relays_racing_one_dies,
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
            submit_batch,
            resubmit_same_batch,
            empty_batch,
            ping,
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
