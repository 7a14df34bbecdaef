//! The engine against failing ports: mockall mocks where a single call's
//! failure matters, and scripted wrappers around the in-memory backends
//! that fail, time out (before or after applying the call), answer late or
//! land late, in the order a proptest script says. Time is tokio's paused
//! time, so every timeout is exact and every run deterministic.
//!
//! What is checked (design.md, "Invariants"): no order is lost and none is
//! doubled; one Idempotency-Key yields at most one standing order; units
//! never go back on sale without the event that says why; every 503 leaves
//! the buyer owning nothing; `total == available + held + committed` at
//! every moment; a slow or dead sink never costs a buyer the units, and the
//! relay delivers every event once the sink is back.
//!
//! The fixture (mocks, scripted wrappers, helpers) is here; the cases are in
//! one module per kind of failure: `single_failures`, `sink`, `client_gone`,
//! `arbitrary` (the proptest) and `replay_races` (reduced cases of the race
//! between a replay and the void of the request it replays).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flashsale::RelayConfig;
use flashsale::http::ApiResponse;
use flashsale::machine::HandOff;
use flashsale::memory::{
    MemoryOrderSink, MemoryRateLimiter, MemoryStockStore, StaticAuthenticator,
};
use flashsale::testing::hooked::{Answer, Hooked, StockCall, StockHook};
use flashsale::{
    AuthRejection, Credentials, EventType, IdempotencyKey, OrderEvent, OrderId, OrderStatus,
    Principal, ProductId, Reservation, ReservationState, StockLevels, Timestamp, UserId,
};
use flashsale::{Authenticator, Clock, Engine, Error, Outcome, PurchaseRequest, Quantity, Sale};
use flashsale::{
    CancelOutcome, ConfirmOutcome, OrderSink, RateDecision, RateLimiter, ReserveOutcome,
    ReserveRequest, SaleWrite, StockStore, VoidOutcome,
};
use mockall::mock;
use proptest::prelude::*;

const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);
const PORT_TIMEOUT: Duration = Duration::from_millis(100);
const SINK_TIMEOUT: Duration = Duration::from_millis(50);
const LEASE: Duration = Duration::from_secs(1);

// ------------------------------------------------------------------ mocks

mock! {
    Sink {}
    #[async_trait]
    impl OrderSink for Sink {
        async fn submit(&self, events: &[OrderEvent]) -> flashsale::Result<()>;
    }
}

mock! {
    Limiter {}
    #[async_trait]
    impl RateLimiter for Limiter {
        async fn check(&self, key: &str, cost: u32) -> flashsale::Result<RateDecision>;
    }
}

mock! {
    Auth {}
    #[async_trait]
    impl Authenticator for Auth {
        async fn authenticate(&self, credentials: &Credentials)
            -> flashsale::Result<Result<Principal, AuthRejection>>;
    }
}

mock! {
    Store {}
    #[async_trait]
    impl StockStore for Store {
        async fn create_sale(&self, sale: &Sale) -> flashsale::Result<SaleWrite>;
        async fn sale(&self, product: &ProductId) -> flashsale::Result<Option<Sale>>;
        async fn reserve(&self, req: &ReserveRequest) -> flashsale::Result<ReserveOutcome>;
        async fn confirm(&self, product: &ProductId, order: &OrderId, now: Timestamp)
            -> flashsale::Result<ConfirmOutcome>;
        async fn cancel(&self, product: &ProductId, order: &OrderId, now: Timestamp)
            -> flashsale::Result<CancelOutcome>;
        async fn void(&self, req: &ReserveRequest, now: Timestamp) -> flashsale::Result<VoidOutcome>;
        async fn reservation(&self, order: &OrderId) -> flashsale::Result<Option<Reservation>>;
        async fn expire(&self, now: Timestamp, max: usize) -> flashsale::Result<Vec<Reservation>>;
        async fn snapshot(&self, product: &ProductId) -> flashsale::Result<Option<StockLevels>>;
        async fn claim(&self, now: Timestamp, max: usize, lease: Duration)
            -> flashsale::Result<Vec<OrderEvent>>;
        async fn ack(&self, events: &[OrderEvent]) -> flashsale::Result<()>;
    }
}

// ------------------------------------------------------ scripted wrappers

/// What one port call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Applies and answers.
    Pass,
    /// Fails without applying.
    FailBefore,
    /// Applies, then the answer is lost as an error (a dropped connection).
    FailAfter,
    /// Applies, then never answers: the engine's timeout fires after the
    /// call took effect.
    HangAfter,
    /// Never answers and never applies.
    Hang,
    /// Never answers, but the call lands this many ms later anyway (a
    /// request still in flight on the wire when the caller gave up).
    Late(u64),
    /// Answers (and applies) after this many ms, unless the caller gave up
    /// first, in which case it never applies.
    Slow(u64),
    /// A store that is slow but alive: the call takes this many ms, then
    /// applies and answers, whether or not the caller is still waiting
    /// (the request is on the wire; the server works through it).
    SlowAlive(u64),
}

/// Per-operation queues of faults; an empty queue means [`Fault::Pass`].
#[derive(Debug, Default)]
struct Script {
    queues: Mutex<HashMap<&'static str, VecDeque<Fault>>>,
    calls: Mutex<HashMap<&'static str, usize>>,
}

impl Script {
    fn set(&self, op: &'static str, faults: impl IntoIterator<Item = Fault>) {
        self.queues
            .lock()
            .unwrap()
            .insert(op, faults.into_iter().collect());
    }

    /// Every call passes from now on.
    fn clear(&self) {
        self.queues.lock().unwrap().clear();
    }

    fn calls(&self, op: &'static str) -> usize {
        self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
    }

    fn next(&self, op: &'static str) -> Fault {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
        self.queues
            .lock()
            .unwrap()
            .get_mut(op)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Fault::Pass)
    }

    /// Runs `call` (which applies the operation) as the next fault of `op`
    /// says.
    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        call: impl Future<Output = flashsale::Result<T>> + Send + 'static,
    ) -> flashsale::Result<T> {
        match self.next(op) {
            Fault::Pass => call.await,
            Fault::FailBefore => Err(boom(op)),
            Fault::FailAfter => {
                let _ = call.await;
                Err(boom(op))
            }
            Fault::HangAfter => {
                let _ = call.await;
                std::future::pending().await
            }
            Fault::Hang => std::future::pending().await,
            Fault::Late(ms) => {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let _ = call.await;
                });
                std::future::pending().await
            }
            Fault::Slow(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                call.await
            }
            Fault::SlowAlive(ms) => {
                let server = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    call.await
                });
                server.await.expect("the store's task panicked")
            }
        }
    }
}

/// Runs a [`MemoryStockStore`]'s calls as a [`Script`] says (`create_sale`,
/// `reservation`, `snapshot` and `ping` always pass) and records every
/// reserve request. With `twice`, runs every reserve twice and answers the
/// second run, as a cluster client re-sending after a dropped connection
/// does.
struct ScriptHook {
    script: Arc<Script>,
    twice: Option<Arc<MemoryStockStore>>,
    reserves: Mutex<Vec<ReserveRequest>>,
}

impl ScriptHook {
    fn reserve_requests(&self) -> Vec<ReserveRequest> {
        self.reserves.lock().unwrap().clone()
    }
}

#[async_trait]
impl StockHook for ScriptHook {
    async fn around<T: Send + 'static>(
        &self,
        call: StockCall<'_>,
        answer: Answer<T>,
    ) -> flashsale::Result<T> {
        match call {
            StockCall::CreateSale(_)
            | StockCall::Reservation(_)
            | StockCall::Snapshot(_)
            | StockCall::Ping => answer.await,
            StockCall::Reserve(req) => {
                self.reserves.lock().unwrap().push(req.clone());
                let first = self.twice.clone().map(|inner| (inner, req.clone()));
                let answer = async move {
                    if let Some((inner, req)) = first {
                        inner.reserve(&req).await?;
                    }
                    answer.await
                };
                self.script.run(call.name(), answer).await
            }
            _ => self.script.run(call.name(), answer).await,
        }
    }
}

type ScriptedStore = Hooked<MemoryStockStore, ScriptHook>;

/// `inner` behind `script`.
fn scripted(inner: Arc<MemoryStockStore>, script: Arc<Script>) -> ScriptedStore {
    let hook = ScriptHook {
        script,
        twice: None,
        reserves: Mutex::new(Vec::new()),
    };
    Hooked::new(inner, hook)
}

/// `inner`, running every reserve twice.
fn scripted_twice(inner: Arc<MemoryStockStore>) -> ScriptedStore {
    let hook = ScriptHook {
        script: Arc::new(Script::default()),
        twice: Some(inner.clone()),
        reserves: Mutex::new(Vec::new()),
    };
    Hooked::new(inner, hook)
}

/// A [`MemoryOrderSink`] behind a [`Script`] (operation `submit`).
struct ScriptedSink {
    inner: Arc<MemoryOrderSink>,
    script: Arc<Script>,
}

#[async_trait]
impl OrderSink for ScriptedSink {
    async fn submit(&self, events: &[OrderEvent]) -> flashsale::Result<()> {
        let (i, e) = (self.inner.clone(), events.to_vec());
        self.script
            .run("submit", async move { i.submit(&e).await })
            .await
    }
}

/// A generous [`MemoryRateLimiter`] behind a [`Script`] (operation `check`).
struct ScriptedLimiter {
    inner: Arc<MemoryRateLimiter>,
    script: Arc<Script>,
}

#[async_trait]
impl RateLimiter for ScriptedLimiter {
    async fn check(&self, key: &str, cost: u32) -> flashsale::Result<RateDecision> {
        let (i, k) = (self.inner.clone(), key.to_owned());
        self.script
            .run("check", async move { i.check(&k, cost).await })
            .await
    }
}

/// A [`StaticAuthenticator`] behind a [`Script`] (operation `authenticate`).
struct ScriptedAuth {
    inner: Arc<StaticAuthenticator>,
    script: Arc<Script>,
}

#[async_trait]
impl Authenticator for ScriptedAuth {
    async fn authenticate(
        &self,
        credentials: &Credentials,
    ) -> flashsale::Result<Result<Principal, AuthRejection>> {
        let (i, c) = (self.inner.clone(), credentials.clone());
        self.script
            .run("authenticate", async move { i.authenticate(&c).await })
            .await
    }
}

/// A sink that can be switched down (failing) or hanging, and back up.
#[derive(Default)]
struct SwitchSink {
    inner: Arc<MemoryOrderSink>,
    /// 0 up, 1 failing, 2 hanging.
    mode: AtomicU8,
    /// Submissions that reached the sink while it was not up.
    refused: AtomicUsize,
}

impl SwitchSink {
    const UP: u8 = 0;
    const FAILING: u8 = 1;
    const HANGING: u8 = 2;

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

#[async_trait]
impl OrderSink for SwitchSink {
    async fn submit(&self, events: &[OrderEvent]) -> flashsale::Result<()> {
        match self.mode.load(Ordering::SeqCst) {
            Self::UP => self.inner.submit(events).await,
            Self::FAILING => {
                self.refused.fetch_add(1, Ordering::SeqCst);
                Err(boom("submit"))
            }
            _ => {
                self.refused.fetch_add(1, Ordering::SeqCst);
                std::future::pending().await
            }
        }
    }
}

/// Wall-clock time that follows tokio's (paused) clock, so leases and the
/// sale cache age as the test's virtual time passes.
#[derive(Debug)]
struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        T0.saturating_add(self.start.elapsed())
    }
}

// ---------------------------------------------------------------- helpers

fn boom(op: &'static str) -> Error {
    Error::backend("test", op, "injected failure")
}

fn product() -> ProductId {
    ProductId::new("gpu").unwrap()
}

fn user(n: u8) -> UserId {
    UserId::new(format!("u{n}")).unwrap()
}

fn creds() -> Credentials {
    creds_of(0)
}

fn creds_of(n: u8) -> Credentials {
    Credentials::bearer(format!("t{n}"))
}

fn authenticator() -> Arc<StaticAuthenticator> {
    let mut a = StaticAuthenticator::new();
    for n in 0..4 {
        a.insert(format!("t{n}"), Principal::user(user(n)));
    }
    Arc::new(a)
}

fn limiter() -> Arc<MemoryRateLimiter> {
    Arc::new(MemoryRateLimiter::per_second(100_000).unwrap())
}

fn buy(q: i64) -> PurchaseRequest {
    PurchaseRequest::new(product(), Quantity::new(q).unwrap())
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::new(s).unwrap()
}

fn unavailable() -> Outcome {
    Outcome::Unavailable {
        retry_after: Duration::from_secs(1),
    }
}

fn relay_config() -> RelayConfig {
    RelayConfig {
        batch: 4,
        lease: LEASE,
        submit_timeout: Duration::from_millis(200),
    }
}

async fn memory_store(sale: Sale) -> Arc<MemoryStockStore> {
    let store = Arc::new(MemoryStockStore::new());
    store.create_sale(&sale).await.unwrap();
    store
}

async fn store_with_sale(stock: u32) -> Arc<MemoryStockStore> {
    memory_store(Sale::builder(product(), stock).build().unwrap()).await
}

async fn levels(store: &MemoryStockStore) -> StockLevels {
    store.snapshot(&product()).await.unwrap().unwrap()
}

fn full(total: u64) -> StockLevels {
    StockLevels {
        total,
        available: total,
        held: 0,
        committed: 0,
    }
}

/// An engine over `store` and `sink` with the test timeouts.
fn engine_over(store: Arc<dyn StockStore>, sink: Arc<dyn OrderSink>, hand_off: HandOff) -> Engine {
    Engine::builder()
        .stock_store(store)
        .rate_limiter(limiter())
        .order_sink(sink)
        .authenticator(authenticator())
        .clock(Arc::new(TokioClock::new()))
        .port_timeout(PORT_TIMEOUT)
        .hand_off(hand_off)
        .relay(relay_config())
        .build()
        .unwrap()
}

/// The outbox's events that no relay holds a lease on, without delivering
/// them: a claim at the engine's `now` with a zero lease, which leaves them
/// claimable by everyone.
async fn outbox(engine: &Engine, store: &MemoryStockStore) -> Vec<OrderEvent> {
    store
        .claim(engine.clock().now(), usize::MAX, Duration::ZERO)
        .await
        .unwrap()
}

/// `(event type, order id)` of each event, as a set.
fn kinds(events: &[OrderEvent]) -> BTreeSet<(&'static str, OrderId)> {
    events
        .iter()
        .map(|e| (e.event_type.as_str(), e.event_id.order_id()))
        .collect()
}

fn set<const N: usize>(items: [(EventType, OrderId); N]) -> BTreeSet<(&'static str, OrderId)> {
    items.iter().map(|(t, id)| (t.as_str(), *id)).collect()
}

fn ordered(o: &Outcome) -> OrderId {
    o.purchase()
        .unwrap_or_else(|| panic!("not a purchase: {o:?}"))
        .order
        .order_id
}

mod arbitrary;
mod client_gone;
mod replay_races;
mod single_failures;
mod sink;
