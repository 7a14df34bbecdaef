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
pub mod faults;
pub mod hooked;
pub mod ledger;
pub mod outbox;
pub mod proxy;
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
/// [`engine::concurrent_buyers`] (four engines), against the store made by
/// `$make`, an expression callable as `$make()` returning a future of a
/// type that implements [`StockStore`](crate::StockStore).
///
/// Two forms:
///
/// * `stock_store_conformance!(make)`: the four engines of the race share
///   ONE store handle made by `make` (for a backend that lives in the test
///   process, such as the in-memory store, where one handle is all there
///   is).
/// * `stock_store_conformance!(make, app_servers: clients)`: the race plays
///   four app servers: `clients` is callable as `clients(n: usize)` and
///   returns a future of a `Vec` of `n` independent clients (own
///   connections, own caches) of ONE fresh, isolated backend namespace,
///   and each engine gets its own. Use it for every backend reached over a
///   network, so the race covers what separate processes do.
///
/// ```ignore
/// async fn clients(n: usize) -> Vec<MyStore> {
///     let namespace = fresh_namespace();
///     let mut v = Vec::new();
///     for _ in 0..n {
///         v.push(MyStore::connect(&namespace).await);
///     }
///     v
/// }
/// flashsale::stock_store_conformance!(|| async { MyStore::connect(&fresh_namespace()).await },
///     app_servers: clients);
/// ```
#[macro_export]
macro_rules! stock_store_conformance {
    ($make:expr $(,)?) => {
        $crate::__stock_store_cases!($make);
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn engine_concurrent_buyers() {
            let store: ::std::sync::Arc<dyn $crate::StockStore> =
                ::std::sync::Arc::new(($make)().await);
            // Four engines sharing one store handle (one client).
            $crate::testing::engine::concurrent_buyers(vec![store; 4]).await;
        }
    };
    ($make:expr, app_servers: $clients:expr $(,)?) => {
        $crate::__stock_store_cases!($make);
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn engine_concurrent_buyers() {
            // Four app servers: four independent clients of one backend.
            let clients = ($clients)(4).await;
            assert_eq!(clients.len(), 4, "app_servers(4) must make four clients");
            let stores: ::std::vec::Vec<::std::sync::Arc<dyn $crate::StockStore>> = clients
                .into_iter()
                .map(|c| ::std::sync::Arc::new(c) as ::std::sync::Arc<dyn $crate::StockStore>)
                .collect();
            $crate::testing::engine::concurrent_buyers(stores).await;
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __stock_store_cases {
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
            many_replays_stay_flat,
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
