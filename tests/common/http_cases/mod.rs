//! The HTTP contract suite, shared by `tests/http_axum.rs` and
//! `tests/http_actix.rs`: every case runs, unchanged, against both
//! frameworks through a [`Client`] that sends one in-process request.
//!
//! Each case builds a fresh [`Fixture`]: memory backends behind switches
//! that make a port fail, a manual clock, the real HS256 JWT
//! authenticator, and four sales.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flashsale::http::Api;
use flashsale::jwt::{Claims, JwtAuthenticator, sign_hs256};
use flashsale::machine::HandOff;
use flashsale::memory::{MemoryOrderSink, MemoryRateLimiter, MemoryStockStore};
use flashsale::testing::hooked::{Answer, Hooked, StockCall, StockHook};
use flashsale::{
    Engine, Error, ManualClock, OrderSink, ProductId, RateQuota, Result, Sale, Timestamp, UserId,
};
use flashsale::{EventType, OrderEvent, OrderId, StockLevels};
use serde_json::{Value, json};

/// The HS256 secret the fixture's authenticator trusts.
pub const SECRET: &[u8] = b"test-secret-for-the-http-suite-0123456789";
/// The fixture clock's start: 2026-01-01T00:00:00Z.
pub const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);
/// Per-user quota of the fixture's rate limiter.
pub const QUOTA: &str = "10/1m";

/// One request.
#[derive(Debug, Clone)]
pub struct Req {
    /// `GET`, `POST`, `PUT`, ...
    pub method: &'static str,
    /// Path (already percent-encoded as needed).
    pub path: String,
    /// Headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Send the body without `Content-Length`, as a stream of chunks
    /// (`Transfer-Encoding: chunked` on the wire), so that its size is only
    /// known once it has been read.
    pub chunked: bool,
}

impl Req {
    fn new(method: &'static str, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
        }
    }
    pub fn get(path: impl Into<String>) -> Self {
        Self::new("GET", path)
    }
    pub fn post(path: impl Into<String>) -> Self {
        Self::new("POST", path)
    }
    pub fn put(path: impl Into<String>) -> Self {
        Self::new("PUT", path)
    }
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    /// Sends the body as a stream of chunks, without `Content-Length`.
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }
    pub fn json(self, v: Value) -> Self {
        self.header("content-type", "application/json")
            .body(v.to_string())
    }
}

/// One response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// Header names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The `error` code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

/// Sends one request through a framework, in process.
pub trait Client {
    /// Sends `req` and reads the whole response.
    fn send(&self, req: Req) -> impl Future<Output = Resp>;
}

/// A switch that makes a wrapped port fail.
#[derive(Debug, Default, Clone)]
pub struct Switch(Arc<AtomicBool>);

impl Switch {
    pub fn set(&self, failing: bool) {
        self.0.store(failing, Ordering::SeqCst);
    }
    fn check(&self, operation: &'static str) -> Result<()> {
        if self.0.load(Ordering::SeqCst) {
            Err(Error::backend("test", operation, "injected failure"))
        } else {
            Ok(())
        }
    }
}

/// Fails every stock call while its switch is on.
pub struct FailWhileOn(Switch);

#[async_trait]
impl StockHook for FailWhileOn {
    async fn around<T: Send + 'static>(&self, call: StockCall<'_>, answer: Answer<T>) -> Result<T> {
        self.0.check(call.name())?;
        answer.await
    }
}

/// A memory stock store that fails every call while its switch is on.
pub type FlakyStock = Hooked<MemoryStockStore, FailWhileOn>;

/// A memory order sink that fails while its switch is on.
pub struct FlakySink {
    pub inner: MemoryOrderSink,
    fail: Switch,
}

#[async_trait]
impl OrderSink for FlakySink {
    async fn submit(&self, events: &[OrderEvent]) -> Result<()> {
        self.fail.check("submit")?;
        self.inner.submit(events).await
    }
    async fn ping(&self) -> Result<()> {
        self.fail.check("ping")
    }
}

/// A fresh engine and the handles a case needs to inspect it.
pub struct Fixture {
    pub api: Api,
    pub engine: Engine,
    pub clock: ManualClock,
    pub stock_fails: Switch,
    pub sink_fails: Switch,
    pub sink: Arc<FlakySink>,
}

/// `widget`: 10 units, 3 per buyer, 2 per order.
pub const WIDGET: &str = "widget";
/// `tickets`: 5 units held 60 s awaiting confirmation.
pub const TICKETS: &str = "tickets";
/// `later`: opens an hour after [`T0`].
pub const LATER: &str = "later";
/// `bulk`: 1,000 units, no practical per-buyer cap.
pub const BULK: &str = "bulk";

impl Fixture {
    pub async fn new() -> Self {
        Self::with_hand_off(HandOff::Outbox).await
    }

    pub async fn with_hand_off(hand_off: HandOff) -> Self {
        let clock = ManualClock::new(T0);
        let stock_fails = Switch::default();
        let sink_fails = Switch::default();
        let sink = Arc::new(FlakySink {
            inner: MemoryOrderSink::new(),
            fail: sink_fails.clone(),
        });
        let quota: RateQuota = QUOTA.parse().unwrap();
        let engine = Engine::builder()
            .stock_store(Arc::new(FlakyStock::new(
                Arc::new(MemoryStockStore::new()),
                FailWhileOn(stock_fails.clone()),
            )))
            .rate_limiter(Arc::new(MemoryRateLimiter::with_clock(
                quota,
                Arc::new(clock.clone()),
            )))
            .order_sink(sink.clone())
            .authenticator(Arc::new(
                JwtAuthenticator::hs256(SECRET).with_clock(Arc::new(clock.clone())),
            ))
            .clock(Arc::new(clock.clone()))
            .hand_off(hand_off)
            .build()
            .unwrap();
        let p = |s: &str| ProductId::new(s).unwrap();
        for sale in [
            Sale::builder(p(WIDGET), 10)
                .per_user_limit(3)
                .per_order_max(2)
                .build(),
            Sale::builder(p(TICKETS), 5)
                .per_user_limit(5)
                .per_order_max(5)
                .hold(Duration::from_secs(60))
                .build(),
            Sale::builder(p(LATER), 5)
                .starts_at(T0.saturating_add(Duration::from_secs(3600)))
                .build(),
            Sale::builder(p(BULK), 1000).per_order_max(10).build(),
        ] {
            engine.create_sale(&sale.unwrap()).await.unwrap();
        }
        Self {
            api: Api::new(engine.clone()),
            engine,
            clock,
            stock_fails,
            sink_fails,
            sink,
        }
    }

    /// A valid token for `user` with `roles`, valid for an hour.
    pub fn token_with(&self, user: &str, roles: &[&str]) -> String {
        let claims = Claims::new(
            &UserId::new(user).unwrap(),
            self.clock_now(),
            Duration::from_secs(3600),
        )
        .with_roles(roles.iter().copied());
        sign_hs256(SECRET, &claims).unwrap()
    }

    pub fn token(&self, user: &str) -> String {
        self.token_with(user, &[])
    }

    pub fn admin(&self) -> String {
        self.token_with("root", &["admin"])
    }

    fn clock_now(&self) -> Timestamp {
        use flashsale::Clock as _;
        self.clock.now()
    }

    pub async fn levels(&self, product: &str) -> StockLevels {
        self.engine
            .snapshot(&ProductId::new(product).unwrap())
            .await
            .unwrap()
            .unwrap()
    }

    /// Relays the outbox to the sink, then counts the orders that stand
    /// there: distinct `placed` events not followed by `voided`.
    pub async fn orders(&self) -> usize {
        self.engine.drain_outbox().await.unwrap();
        let events = self.sink.inner.events();
        let voided = events
            .iter()
            .filter(|e| e.event_type == EventType::Voided)
            .count();
        self.sink.inner.orders().len() - voided
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A token signed with `secret` under `alg` over any payload.
fn forge(alg: jsonwebtoken::Algorithm, payload: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        payload,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Every token a client might wrongly present, with a name for messages.
pub fn bad_tokens(f: &Fixture) -> Vec<(&'static str, Option<String>)> {
    let now = T0.as_millis() / 1000;
    let user = UserId::new("mallory").unwrap();
    let claims = json!({ "sub": "mallory", "exp": now + 3600 });
    vec![
        ("missing", None),
        ("empty", Some(String::new())),
        ("garbage", Some("not-a-jwt".into())),
        ("three garbage parts", Some("a.b.c".into())),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                b64(&json!({ "alg": "none", "typ": "JWT" })),
                b64(&claims)
            )),
        ),
        (
            "wrong signature",
            Some(
                sign_hs256(
                    b"some-other-secret-entirely-0123456789",
                    &Claims::new(&user, T0, Duration::from_secs(3600)),
                )
                .unwrap(),
            ),
        ),
        (
            "tampered payload",
            Some({
                let good = f.token("mallory");
                let mut parts: Vec<&str> = good.split('.').collect();
                let evil = b64(&json!({ "sub": "mallory", "exp": now + 3600, "roles": ["admin"] }));
                parts[1] = &evil;
                parts.join(".")
            }),
        ),
        (
            "expired",
            Some(
                sign_hs256(
                    SECRET,
                    &Claims {
                        exp: now - 3600,
                        iat: Some(now - 7200),
                        ..Claims::new(&user, T0, Duration::from_secs(1))
                    },
                )
                .unwrap(),
            ),
        ),
        (
            "not yet valid",
            Some(
                sign_hs256(
                    SECRET,
                    &Claims::new(&user, T0, Duration::from_secs(7200))
                        .with_not_before(T0.saturating_add(Duration::from_secs(3600))),
                )
                .unwrap(),
            ),
        ),
        (
            "disallowed algorithm HS512",
            Some(forge(jsonwebtoken::Algorithm::HS512, &claims, SECRET)),
        ),
        (
            "no sub",
            Some(forge(
                jsonwebtoken::Algorithm::HS256,
                &json!({ "exp": now + 3600 }),
                SECRET,
            )),
        ),
        (
            "no exp",
            Some(forge(
                jsonwebtoken::Algorithm::HS256,
                &json!({ "sub": "mallory" }),
                SECRET,
            )),
        ),
        ("oversized", Some(format!("{}.{}.x", "a".repeat(9000), "b"))),
    ]
}

/// Asserts that nothing changed: `product`'s levels are `before` and the
/// sink holds `orders` orders.
async fn unchanged(f: &Fixture, product: &str, before: StockLevels, orders: usize, what: &str) {
    assert_eq!(
        f.levels(product).await,
        before,
        "stock changed after {what}"
    );
    assert_eq!(f.orders().await, orders, "an order was made after {what}");
}

fn buy(product: &str) -> Req {
    Req::post(format!("/buy/{product}"))
}

pub async fn fixture_for(case: &str) -> Fixture {
    if case.starts_with("await_sink") {
        Fixture::with_hand_off(HandOff::AwaitSink {
            timeout: Duration::from_millis(500),
        })
        .await
    } else {
        Fixture::new().await
    }
}

/// Declares one test per case for a framework: `$attr` is the test
/// attribute (`tokio::test`, `actix_web::test`) and `$client` an async fn
/// turning an [`Api`] into a [`Client`].
macro_rules! http_suite {
    ($attr:meta, $client:path) => {
        http_suite!(@cases $attr, $client,
            buy_succeeds,
            body_is_optional,
            bad_tokens_are_401_and_change_nothing,
            bad_quantities_are_400_and_change_nothing,
            bad_bodies_are_400_or_413_and_change_nothing,
            bad_product_ids,
            idempotent_replay_and_conflict,
            rate_limited_is_429_with_retry_after,
            sold_out_limit_and_window_are_400,
            failing_ports_are_503_and_reserve_nothing,
            await_sink_is_202_when_the_sink_is_down,
            replays_win_after_the_terms_change,
            product_view,
            product_reads_are_cached_with_an_etag,
            admin_route,
            confirm_and_cancel_holds,
            probes_and_unknown_routes,
            openapi_document_matches_the_router,
            bad_input_table,
        );
    };
    (@cases $attr:meta, $client:path, $($case:ident),* $(,)?) => {
        $(
            #[$attr]
            async fn $case() {
                let f = http_cases::fixture_for(stringify!($case)).await;
                let c = $client(f.api.clone()).await;
                http_cases::$case(&c, &f).await;
            }
        )*
    };
}

mod admin;
mod bad_input;
mod buying;
mod holds;
mod input_table;
mod product_reads;
mod routes;

pub use admin::{admin_route, product_view};
pub use bad_input::{
    bad_bodies_are_400_or_413_and_change_nothing, bad_product_ids,
    bad_quantities_are_400_and_change_nothing, bad_tokens_are_401_and_change_nothing,
};
pub use buying::{
    await_sink_is_202_when_the_sink_is_down, body_is_optional, buy_succeeds,
    failing_ports_are_503_and_reserve_nothing, idempotent_replay_and_conflict,
    rate_limited_is_429_with_retry_after, replays_win_after_the_terms_change,
    sold_out_limit_and_window_are_400,
};
pub use holds::confirm_and_cancel_holds;
pub use input_table::bad_input_table;
pub use product_reads::product_reads_are_cached_with_an_etag;
pub use routes::{openapi_document_matches_the_router, probes_and_unknown_routes};
