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
use flashsale::{
    CancelOutcome, ConfirmOutcome, ReserveOutcome, ReserveRequest, SaleWrite, VoidOutcome,
};
use flashsale::{
    Engine, Error, ManualClock, OrderSink, ProductId, RateQuota, Result, Sale, StockStore,
    Timestamp, UserId,
};
use flashsale::{EventType, OrderEvent, OrderId, Reservation, StockLevels};
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

/// A memory stock store that fails every call while its switch is on.
pub struct FlakyStock {
    inner: MemoryStockStore,
    fail: Switch,
}

#[async_trait]
impl StockStore for FlakyStock {
    async fn create_sale(&self, sale: &Sale) -> Result<SaleWrite> {
        self.fail.check("create_sale")?;
        self.inner.create_sale(sale).await
    }
    async fn sale(&self, product: &ProductId) -> Result<Option<Sale>> {
        self.fail.check("sale")?;
        self.inner.sale(product).await
    }
    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome> {
        self.fail.check("reserve")?;
        self.inner.reserve(req).await
    }
    async fn confirm(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<ConfirmOutcome> {
        self.fail.check("confirm")?;
        self.inner.confirm(product, order, now).await
    }
    async fn cancel(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<CancelOutcome> {
        self.fail.check("cancel")?;
        self.inner.cancel(product, order, now).await
    }
    async fn void(&self, req: &ReserveRequest, now: Timestamp) -> Result<VoidOutcome> {
        self.fail.check("void")?;
        self.inner.void(req, now).await
    }
    async fn reservation(&self, order: &OrderId) -> Result<Option<Reservation>> {
        self.fail.check("reservation")?;
        self.inner.reservation(order).await
    }
    async fn expire(&self, now: Timestamp, max: usize) -> Result<Vec<Reservation>> {
        self.fail.check("expire")?;
        self.inner.expire(now, max).await
    }
    async fn snapshot(&self, product: &ProductId) -> Result<Option<StockLevels>> {
        self.fail.check("snapshot")?;
        self.inner.snapshot(product).await
    }
    async fn claim(&self, now: Timestamp, max: usize, lease: Duration) -> Result<Vec<OrderEvent>> {
        self.fail.check("claim")?;
        self.inner.claim(now, max, lease).await
    }
    async fn ack(&self, events: &[OrderEvent]) -> Result<()> {
        self.fail.check("ack")?;
        self.inner.ack(events).await
    }
    async fn ping(&self) -> Result<()> {
        self.fail.check("ping")
    }
}

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
            .stock_store(Arc::new(FlakyStock {
                inner: MemoryStockStore::new(),
                fail: stock_fails.clone(),
            }))
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

// ----------------------------------------------------------------- cases

pub async fn buy_succeeds<C: Client>(c: &C, f: &Fixture) {
    let r = c
        .send(
            buy(WIDGET)
                .bearer(&f.token("ann"))
                .json(json!({ "quantity": 2 })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body["product_id"], WIDGET);
    assert_eq!(r.body["quantity"], 2);
    assert_eq!(r.body["status"], "confirmed");
    assert_eq!(r.body["user_id"], "ann");
    assert_eq!(r.body["replayed"], false);
    assert!(
        r.body["order_id"]
            .as_str()
            .unwrap()
            .parse::<OrderId>()
            .is_ok()
    );
    let l = f.levels(WIDGET).await;
    assert_eq!((l.available, l.held, l.committed), (8, 0, 2));
    assert_eq!(f.orders().await, 1);
    assert_eq!(
        f.sink.inner.orders()[0].order_id.to_string(),
        r.body["order_id"].as_str().unwrap()
    );
}

pub async fn body_is_optional<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let r = c.send(buy(WIDGET).bearer(&t)).await;
    assert_eq!((r.status, &r.body["quantity"]), (200, &json!(1)));
    let r = c.send(buy(WIDGET).bearer(&t).json(json!({}))).await;
    assert_eq!((r.status, &r.body["quantity"]), (200, &json!(1)));
    assert_eq!(f.levels(WIDGET).await.committed, 2);
}

pub async fn bad_tokens_are_401_and_change_nothing<C: Client>(c: &C, f: &Fixture) {
    let before = f.levels(WIDGET).await;
    for (name, token) in bad_tokens(f) {
        let mut req = buy(WIDGET).json(json!({ "quantity": 1 }));
        if let Some(t) = &token {
            req = req.bearer(t);
        }
        let r = c.send(req).await;
        assert_eq!(r.status, 401, "{name}: {:?}", r.body);
        assert_eq!(r.code(), "unauthenticated", "{name}");
        assert!(
            r.header("www-authenticate")
                .unwrap_or("")
                .starts_with("Bearer"),
            "{name}: {:?}",
            r.headers
        );
        unchanged(f, WIDGET, before, 0, name).await;
    }
    // Other schemes are not bearer tokens.
    let r = c
        .send(buy(WIDGET).header("authorization", "Basic YWxpY2U6cHc="))
        .await;
    assert_eq!(
        (r.status, r.header("www-authenticate")),
        (401, Some("Bearer"))
    );
    unchanged(f, WIDGET, before, 0, "basic auth").await;
}

pub async fn bad_quantities_are_400_and_change_nothing<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let before = f.levels(WIDGET).await;
    for body in [
        "{\"quantity\": 0}",
        "{\"quantity\": -1}",
        "{\"quantity\": -9223372036854775808}",
        "{\"quantity\": 1.5}",
        "{\"quantity\": \"1\"}",
        "{\"quantity\": true}",
        "{\"quantity\": null}",
        "{\"quantity\": [1]}",
        "{\"quantity\": 1e30}",
        "{\"quantity\": 99999999999999999999999999}",
        "{\"quantity\": 4294967297}",
        "{\"quantity\": 3}", // above widget's per-order max of 2
    ] {
        let r = c
            .send(
                buy(WIDGET)
                    .bearer(&t)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(r.code(), "invalid_request", "{body}");
        assert_eq!(r.body["field"], "quantity", "{body}");
        assert!(r.body["message"].as_str().unwrap().contains("quantity"));
        unchanged(f, WIDGET, before, 0, body).await;
    }
}

pub async fn bad_bodies_are_400_or_413_and_change_nothing<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let before = f.levels(WIDGET).await;
    for (body, field) in [
        ("{", "body"),
        ("{\"quantity\": 1", "body"),
        ("{\"quantity\": 1,}", "body"),
        ("quantity=1", "body"),
        ("[{\"quantity\": 1}]", "body"),
        ("1", "body"),
        ("\"1\"", "body"),
        ("null", "body"),
        ("{\"quantity\": 1, \"price\": 0}", "price"),
        ("{\"qty\": 1}", "qty"),
    ] {
        let r = c.send(buy(WIDGET).bearer(&t).body(body)).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(r.body["field"], field, "{body}");
        unchanged(f, WIDGET, before, 0, body).await;
    }
    let r = c
        .send(buy(WIDGET).bearer(&t).body(vec![0xff, 0xfe, 0x00]))
        .await;
    assert_eq!((r.status, r.body["field"].as_str()), (400, Some("body")));

    // Oversized: 413 whatever the content, before anything else.
    let big = format!("{{\"quantity\": 1, \"pad\": \"{}\"}}", "x".repeat(5000));
    let r = c.send(buy(WIDGET).bearer(&t).body(big.clone())).await;
    assert_eq!(
        (r.status, r.code()),
        (413, "payload_too_large"),
        "{:?}",
        r.body
    );
    let r = c.send(buy(WIDGET).body(vec![b' '; 4097])).await;
    assert_eq!(r.status, 413);
    // The same without a declared size (chunked): 413 too, not 400.
    for body in [big.clone().into_bytes(), vec![b' '; 4097]] {
        let r = c.send(buy(WIDGET).bearer(&t).body(body).chunked()).await;
        assert_eq!(
            (r.status, r.code()),
            (413, "payload_too_large"),
            "chunked: {:?}",
            r.body
        );
    }
    unchanged(f, WIDGET, before, 0, "oversized bodies").await;
    // A small chunked body buys as usual.
    let r = c
        .send(buy(WIDGET).bearer(&t).body("{\"quantity\": 1}").chunked())
        .await;
    assert_eq!(r.status, 200, "chunked: {:?}", r.body);
    // Exactly at the limit is fine (whitespace is an empty body).
    let r = c.send(buy(WIDGET).bearer(&t).body(vec![b' '; 4096])).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let after = f.levels(WIDGET).await;
    assert_eq!(after.committed, before.committed + 2);
}

pub async fn bad_product_ids<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let before = f.levels(WIDGET).await;
    for path in [
        format!("/buy/{}", "p".repeat(65)),
        "/buy/a%20b".into(),
        "/buy/a$b".into(),
        "/buy/%C3%A9t%C3%A9".into(),
        "/buy/a%2Fb".into(),
        "/buy/%FF".into(),
    ] {
        let r = c.send(Req::post(path.clone()).bearer(&t)).await;
        assert_eq!(r.status, 400, "{path}: {:?}", r.body);
        assert_eq!(r.body["field"], "product_id", "{path}");
        let r = c.send(Req::get(path.replace("/buy/", "/products/"))).await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (400, Some("product_id")),
            "{path}"
        );
    }
    let r = c.send(buy("no-such-thing").bearer(&t)).await;
    assert_eq!((r.status, r.code()), (404, "unknown_product"));
    let r = c.send(Req::get("/products/no-such-thing")).await;
    assert_eq!((r.status, r.code()), (404, "unknown_product"));
    // The longest valid id is fine (unknown here).
    let r = c.send(buy(&"p".repeat(64)).bearer(&t)).await;
    assert_eq!(r.status, 404);
    unchanged(f, WIDGET, before, 0, "bad ids").await;
}

pub async fn idempotent_replay_and_conflict<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let req = |q: u32, key: &str| {
        buy(WIDGET)
            .bearer(&t)
            .header("idempotency-key", key)
            .json(json!({ "quantity": q }))
    };
    let first = c.send(req(2, "order-1")).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let again = c.send(req(2, "order-1")).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["order_id"], first.body["order_id"]);
    assert_eq!(again.body["replayed"], true);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["idempotency_key"], "order-1");
    let conflict = c.send(req(1, "order-1")).await;
    assert_eq!(
        (conflict.status, conflict.code()),
        (409, "idempotency_conflict")
    );
    assert_eq!(f.levels(WIDGET).await.committed, 2);
    assert_eq!(f.orders().await, 1);
    // A bad key is a 400 naming the header.
    for key in ["", &"k".repeat(129), "caf\u{e9}"] {
        let r = c
            .send(buy(WIDGET).bearer(&t).header("idempotency-key", key))
            .await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (400, Some("idempotency_key")),
            "{key:?}"
        );
    }
    assert_eq!(f.orders().await, 1);
}

pub async fn rate_limited_is_429_with_retry_after<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("bot");
    let mut limited = None;
    for _ in 0..11 {
        let r = c.send(buy(BULK).bearer(&t)).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = limited.expect("the 11th attempt in a minute is limited");
    assert_eq!(r.code(), "rate_limited");
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=6).contains(&secs), "{secs}");
    assert_eq!(f.levels(BULK).await.committed, 10);
    // Another buyer is not affected.
    let r = c.send(buy(BULK).bearer(&f.token("ann"))).await;
    assert_eq!(r.status, 200);
}

pub async fn sold_out_limit_and_window_are_400<C: Client>(c: &C, f: &Fixture) {
    let mut sold = 0;
    for user in ["a", "b", "c", "d", "e"] {
        let t = f.token(user);
        let r = c
            .send(buy(WIDGET).bearer(&t).json(json!({ "quantity": 2 })))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        sold += 2;
        if user == "a" {
            // Per-buyer cap of 3: 2 + 2 is too many.
            let r = c
                .send(buy(WIDGET).bearer(&t).json(json!({ "quantity": 2 })))
                .await;
            assert_eq!((r.status, r.code()), (400, "limit_exceeded"));
        }
    }
    assert_eq!(sold, 10);
    let r = c.send(buy(WIDGET).bearer(&f.token("f"))).await;
    assert_eq!((r.status, r.code()), (400, "sold_out"));
    let l = f.levels(WIDGET).await;
    assert_eq!((l.available, l.committed), (0, 10));
    let r = c.send(buy(LATER).bearer(&f.token("f"))).await;
    assert_eq!((r.status, r.code()), (400, "sale_not_active"));
    assert_eq!(f.orders().await, 5);
}

pub async fn failing_ports_are_503_and_reserve_nothing<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let before = f.levels(WIDGET).await;
    // A sink that is down costs nothing: the order is in the store's
    // outbox, and the relay delivers it once the sink is back.
    f.sink_fails.set(true);
    let r = c.send(buy(WIDGET).bearer(&t)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(f.engine.drain_outbox().await.is_err(), "the sink is down");
    assert!(f.sink.inner.is_empty());
    f.sink_fails.set(false);
    assert_eq!(f.orders().await, 1, "delivered after recovery");
    let before = StockLevels {
        available: before.available - 1,
        committed: before.committed + 1,
        ..before
    };

    f.stock_fails.set(true);
    let r = c.send(buy(WIDGET).bearer(&t)).await;
    assert_eq!((r.status, r.code()), (503, "unavailable"));
    assert!(r.header("retry-after").is_some());
    let r = c.send(Req::get(format!("/products/{WIDGET}"))).await;
    assert_eq!((r.status, r.code()), (503, "unavailable"));
    assert!(r.header("retry-after").is_some());
    let r = c.send(Req::get("/readyz")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["checks"]["stock_store"], "failed");
    let r = c.send(Req::get("/healthz")).await;
    assert_eq!(r.status, 200, "liveness does not depend on backends");
    f.stock_fails.set(false);
    unchanged(f, WIDGET, before, 1, "a failed store").await;
    let r = c.send(buy(WIDGET).bearer(&t)).await;
    assert_eq!(r.status, 200, "recovers: {:?}", r.body);
}

pub async fn product_view<C: Client>(c: &C, f: &Fixture) {
    let r = c
        .send(
            buy(TICKETS)
                .bearer(&f.token("ann"))
                .json(json!({"quantity": 2})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c.send(Req::get(format!("/products/{TICKETS}"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let b = &r.body;
    assert_eq!(b["product_id"], TICKETS);
    assert_eq!(
        (&b["total"], &b["available"], &b["held"], &b["sold"]),
        (&json!(5), &json!(3), &json!(2), &json!(0))
    );
    assert_eq!(
        (&b["stock"], &b["per_user_limit"], &b["per_order_max"]),
        (&json!(5), &json!(5), &json!(5))
    );
    assert_eq!(b["hold_seconds"], 60);
    assert_eq!(b["on_sale"], true);
    let r = c.send(Req::get(format!("/products/{LATER}"))).await;
    assert_eq!(r.body["on_sale"], false);
    assert_eq!(r.body["starts_at"], "2026-01-01T01:00:00.000Z");
}

pub async fn admin_route<C: Client>(c: &C, f: &Fixture) {
    let path = "/admin/products/new-drop";
    let body = json!({ "stock": 50, "per_user_limit": 2, "per_order_max": 1,
                       "starts_at": "2026-01-01T00:00:00Z", "hold_seconds": 30 });
    let r = c.send(Req::put(path).json(body.clone())).await;
    assert_eq!(
        (r.status, r.header("www-authenticate")),
        (401, Some("Bearer"))
    );
    for (_, token) in bad_tokens(f).into_iter().skip(1) {
        let r = c
            .send(Req::put(path).bearer(&token.unwrap()).json(body.clone()))
            .await;
        assert_eq!(r.status, 401);
    }
    let r = c
        .send(Req::put(path).bearer(&f.token("ann")).json(body.clone()))
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = c.send(Req::get("/products/new-drop")).await;
    assert_eq!(r.status, 404, "a refused admin call creates nothing");

    let admin = f.admin();
    let r = c
        .send(Req::put(path).bearer(&admin).json(body.clone()))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        (&r.body["total"], &r.body["hold_seconds"]),
        (&json!(50), &json!(30))
    );
    let r = c
        .send(
            Req::put(path)
                .bearer(&admin)
                .json(json!({ "stock": 80, "per_user_limit": 2, "per_order_max": 1 })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (&r.body["available"], &r.body["hold_seconds"]),
        (&json!(80), &Value::Null)
    );

    for (bad, field) in [
        (json!({ "per_user_limit": 2, "per_order_max": 1 }), "stock"),
        (
            json!({ "stock": -5, "per_user_limit": 2, "per_order_max": 1 }),
            "stock",
        ),
        (
            json!({ "stock": 5, "per_user_limit": 0, "per_order_max": 1 }),
            "per_user_limit",
        ),
        (
            json!({ "stock": 5, "per_user_limit": 1, "per_order_max": 1, "starts_at": "tomorrow" }),
            "starts_at",
        ),
        (
            json!({ "stock": 5, "per_user_limit": 1, "per_order_max": 1,
                 "starts_at": "2026-02-01T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z" }),
            "ends_at",
        ),
        (
            json!({ "stock": 5, "per_user_limit": 1, "per_order_max": 1, "colour": "red" }),
            "colour",
        ),
        (json!([1, 2]), "body"),
    ] {
        let r = c
            .send(Req::put(path).bearer(&admin).json(bad.clone()))
            .await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (400, Some(field)),
            "{bad}"
        );
    }
    assert_eq!(f.levels("new-drop").await.total, 80);
    let r = c
        .send(
            Req::put("/admin/products/bad$id")
                .bearer(&admin)
                .json(body.clone()),
        )
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (400, Some("product_id"))
    );

    // A restock below what is already sold is a conflict.
    let r = c
        .send(
            buy(WIDGET)
                .bearer(&f.token("ann"))
                .json(json!({"quantity": 2})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .send(
            Req::put(format!("/admin/products/{WIDGET}"))
                .bearer(&admin)
                .json(json!({ "stock": 1, "per_user_limit": 3, "per_order_max": 2 })),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "stock_below_sold"));
    assert_eq!(f.levels(WIDGET).await.total, 10);
}

pub async fn confirm_and_cancel_holds<C: Client>(c: &C, f: &Fixture) {
    let ann = f.token("ann");
    let held = |q: u32| buy(TICKETS).bearer(&ann).json(json!({ "quantity": q }));
    let r = c.send(held(2)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "held");
    assert_eq!(r.body["hold_expires_at"], "2026-01-01T00:01:00.000Z");
    let first = r.body["order_id"].as_str().unwrap().to_owned();
    assert_eq!(f.levels(TICKETS).await.held, 2);

    // Only the buyer (or an admin) may touch it.
    let r = c
        .send(Req::post(format!("/orders/{first}/confirm")).bearer(&f.token("eve")))
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = c.send(Req::post(format!("/orders/{first}/cancel"))).await;
    assert_eq!(r.status, 401);
    let r = c
        .send(Req::post(format!("/orders/{first}/confirm")).bearer(&ann))
        .await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (200, &json!("confirmed")),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["order_id"], first.as_str());
    let r = c
        .send(Req::post(format!("/orders/{first}/confirm")).bearer(&ann))
        .await;
    assert_eq!(r.status, 200, "confirming twice answers the status again");
    let r = c
        .send(Req::post(format!("/orders/{first}/cancel")).bearer(&ann))
        .await;
    assert_eq!(
        (r.status, r.code(), r.body["status"].as_str()),
        (409, "order_not_held", Some("confirmed"))
    );
    let l = f.levels(TICKETS).await;
    assert_eq!((l.available, l.held, l.committed), (3, 0, 2));

    // Cancel returns the units; an admin may cancel anyone's hold.
    let r = c.send(held(1)).await;
    let second = r.body["order_id"].as_str().unwrap().to_owned();
    let r = c
        .send(Req::post(format!("/orders/{second}/cancel")).bearer(&f.admin()))
        .await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (200, &json!("cancelled")),
        "{:?}",
        r.body
    );
    let r = c
        .send(Req::post(format!("/orders/{second}/confirm")).bearer(&ann))
        .await;
    assert_eq!((r.status, r.code()), (409, "order_not_held"));
    assert_eq!(f.levels(TICKETS).await.available, 3);

    // An unconfirmed hold lapses.
    let r = c.send(held(1)).await;
    let third = r.body["order_id"].as_str().unwrap().to_owned();
    f.clock.advance(Duration::from_secs(61));
    assert_eq!(f.engine.expire_holds().await.unwrap(), 1);
    let ann = f.token("ann");
    let r = c
        .send(Req::post(format!("/orders/{third}/confirm")).bearer(&ann))
        .await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (409, Some("expired"))
    );
    assert_eq!(f.levels(TICKETS).await.available, 3);

    // Unknown and ill-formed order ids.
    let unknown = OrderId::new(T0);
    let r = c
        .send(Req::post(format!("/orders/{unknown}/confirm")).bearer(&ann))
        .await;
    assert_eq!((r.status, r.code()), (404, "unknown_order"));
    let r = c
        .send(Req::post("/orders/not-a-uuid/cancel").bearer(&ann))
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (400, Some("order_id"))
    );
}

pub async fn probes_and_unknown_routes<C: Client>(c: &C, _f: &Fixture) {
    let r = c.send(Req::get("/healthz")).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!("ok")));
    let r = c.send(Req::get("/readyz")).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!("ready")));
    assert_eq!(r.body["checks"]["order_sink"], "ok");
    let r = c.send(Req::get("/nope")).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = c.send(Req::get(format!("/buy/{WIDGET}"))).await;
    assert_eq!((r.status, r.code()), (405, "method_not_allowed"));
    let r = c.send(Req::post("/healthz")).await;
    assert_eq!(r.status, 405);
}

pub async fn await_sink_is_202_when_the_sink_is_down<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let r = c.send(buy(WIDGET).bearer(&t)).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!("confirmed")));
    assert_eq!(f.sink.inner.orders().len(), 1, "acked before the 200");
    f.sink_fails.set(true);
    let r = c
        .send(buy(WIDGET).bearer(&t).header("idempotency-key", "k-202"))
        .await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (202, &json!("pending")),
        "{:?}",
        r.body
    );
    let pending = r.body["order_id"].clone();
    // The order stands: units sold, never released for a sink failure.
    assert_eq!(f.levels(WIDGET).await.committed, 2);
    // A replay while the sink is still down is pending too, same order.
    let again = c
        .send(buy(WIDGET).bearer(&t).header("idempotency-key", "k-202"))
        .await;
    assert_eq!((again.status, &again.body["order_id"]), (202, &pending));
    f.sink_fails.set(false);
    assert_eq!(f.orders().await, 2, "the relay delivered the pending order");
    let again = c
        .send(buy(WIDGET).bearer(&t).header("idempotency-key", "k-202"))
        .await;
    assert_eq!((again.status, &again.body["order_id"]), (200, &pending));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(f.levels(WIDGET).await.committed, 2);
}

pub async fn replays_win_after_the_terms_change<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let req = || {
        buy(WIDGET)
            .bearer(&t)
            .header("idempotency-key", "terms")
            .json(json!({ "quantity": 2 }))
    };
    let first = c.send(req()).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    // The admin lowers the per-order maximum to 1 and closes the sale.
    let r = c
        .send(
            Req::put(format!("/admin/products/{WIDGET}"))
                .bearer(&f.admin())
                .json(json!({
                    "stock": 10, "per_user_limit": 2, "per_order_max": 1,
                    "ends_at": T0.to_rfc3339(),
                })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // A new request is refused, but the replay still wins: same order.
    let fresh = c.send(buy(WIDGET).bearer(&f.token("bob"))).await;
    assert_eq!((fresh.status, fresh.code()), (400, "sale_not_active"));
    let again = c.send(req()).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["order_id"], first.body["order_id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(f.orders().await, 1);
}

/// The fixture a case runs on: the `await_sink_*` cases hand orders to the
/// sink before answering ([`HandOff::AwaitSink`]), the others use the
/// default outbox hand-off.
/// `GET /openapi.json` is the crate's document, and every operation it
/// documents is served, answering one of the statuses it documents.
pub async fn openapi_document_matches_the_router<C: Client>(c: &C, f: &Fixture) {
    let r = c.send(Req::get("/openapi.json")).await;
    let doc: Value = serde_json::from_str(flashsale::http::OPENAPI_JSON).unwrap();
    assert_eq!((r.status, &r.body), (200, &doc));
    // A held order of ann's, for confirm and cancel.
    let bought = c
        .send(Req::post(format!("/buy/{TICKETS}")).bearer(&f.token("ann")))
        .await;
    assert_eq!(bought.status, 200, "{:?}", bought.body);
    let order = bought.body["order_id"].as_str().unwrap().to_owned();
    let mut seen = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let url = path
                .replace("{product_id}", WIDGET)
                .replace("{order_id}", &order);
            let mut req = match method.as_str() {
                "get" => Req::get(url),
                "post" => Req::post(url),
                "put" => Req::put(url)
                    .json(json!({"stock": 50, "per_user_limit": 2, "per_order_max": 2})),
                other => panic!("undocumented method {other}"),
            };
            if operation.get("security").is_some() {
                req = req.bearer(&f.admin());
            }
            let r = c.send(req).await;
            let documented = operation["responses"].get(r.status.to_string()).is_some();
            assert!(
                documented && r.code() != "not_found" && r.code() != "method_not_allowed",
                "{method} {path} answered {} {:?}, which is not a documented answer",
                r.status,
                r.body
            );
            seen += 1;
        }
    }
    assert_eq!(seen, flashsale::http::paths::ROUTES.len());
}

/// The bad-input table: every row is a request a bot or a broken client
/// might send, with the 4xx and error code it must get. After each row no
/// product's stock has moved and no order (outbox event) was made.
pub async fn bad_input_table<C: Client>(c: &C, f: &Fixture) {
    struct Row {
        name: String,
        req: Req,
        status: u16,
        code: &'static str,
        field: Option<&'static str>,
    }
    let row = |name: &str, req: Req, status, code, field| Row {
        name: name.to_owned(),
        req,
        status,
        code,
        field,
    };
    // A user of its own per row, so no row is throttled by another.
    let n = std::sync::atomic::AtomicUsize::new(0);
    let user = || f.token(&format!("bad-input-{}", n.fetch_add(1, Ordering::Relaxed)));
    let admin = f.admin();
    let unknown_order = "0190b0c4-7a50-7cc3-9e4c-6f1a3e1a2b3c";
    let sale = |v: Value| {
        Req::put(format!("/admin/products/{WIDGET}"))
            .bearer(&admin)
            .json(v)
    };
    let big = format!("{{\"quantity\": 1, \"pad\": \"{}\"}}", "x".repeat(5000));
    let mut utf16 = vec![0xff, 0xfe];
    utf16.extend(
        "{\"quantity\": 1}"
            .encode_utf16()
            .flat_map(u16::to_le_bytes),
    );
    let mut rows = vec![
        // Headers.
        row(
            "empty Idempotency-Key",
            buy(WIDGET).bearer(&user()).header("idempotency-key", ""),
            400,
            "invalid_request",
            Some("idempotency_key"),
        ),
        row(
            "129-byte Idempotency-Key",
            buy(WIDGET)
                .bearer(&user())
                .header("idempotency-key", "k".repeat(129)),
            400,
            "invalid_request",
            Some("idempotency_key"),
        ),
        row(
            "non-ASCII Idempotency-Key",
            buy(WIDGET)
                .bearer(&user())
                .header("idempotency-key", "cl\u{e9}"),
            400,
            "invalid_request",
            Some("idempotency_key"),
        ),
        row(
            "tab in Idempotency-Key",
            buy(WIDGET)
                .bearer(&user())
                .header("idempotency-key", "a\tb"),
            400,
            "invalid_request",
            Some("idempotency_key"),
        ),
        row(
            "Authorization: Basic",
            buy(WIDGET).header("authorization", "Basic YWxpY2U6cHc="),
            401,
            "unauthenticated",
            None,
        ),
        row(
            "Authorization: Bearer without a token",
            buy(WIDGET).header("authorization", "Bearer"),
            401,
            "unauthenticated",
            None,
        ),
        row(
            "Authorization: token with spaces",
            buy(WIDGET).header("authorization", "Bearer a b c"),
            401,
            "unauthenticated",
            None,
        ),
        // Ids.
        row(
            "65-character product id",
            buy(&"p".repeat(65)).bearer(&user()),
            400,
            "invalid_request",
            Some("product_id"),
        ),
        row(
            "space in product id",
            buy("a%20b").bearer(&user()),
            400,
            "invalid_request",
            Some("product_id"),
        ),
        row(
            "slash in product id",
            buy("a%2Fb").bearer(&user()),
            400,
            "invalid_request",
            Some("product_id"),
        ),
        row(
            "non-ASCII product id",
            buy("%C3%A9t%C3%A9").bearer(&user()),
            400,
            "invalid_request",
            Some("product_id"),
        ),
        row(
            "invalid UTF-8 in product id",
            buy("%FF").bearer(&user()),
            400,
            "invalid_request",
            Some("product_id"),
        ),
        row(
            "NUL in product id",
            buy("a%00b").bearer(&user()),
            400,
            "invalid_request",
            Some("product_id"),
        ),
        row(
            "unknown product",
            buy("no-such-product").bearer(&user()),
            404,
            "unknown_product",
            None,
        ),
        row(
            "order id not a UUID",
            Req::post("/orders/not-a-uuid/confirm").bearer(&user()),
            400,
            "invalid_request",
            Some("order_id"),
        ),
        row(
            "unknown order",
            Req::post(format!("/orders/{unknown_order}/cancel")).bearer(&user()),
            404,
            "unknown_order",
            None,
        ),
        // Bodies.
        row(
            "truncated JSON",
            buy(WIDGET).bearer(&user()).body("{\"quantity\": 1"),
            400,
            "invalid_request",
            Some("body"),
        ),
        row(
            "JSON array",
            buy(WIDGET).bearer(&user()).body("[1]"),
            400,
            "invalid_request",
            Some("body"),
        ),
        row(
            "JSON null",
            buy(WIDGET).bearer(&user()).body("null"),
            400,
            "invalid_request",
            Some("body"),
        ),
        row(
            "form-encoded body",
            buy(WIDGET)
                .bearer(&user())
                .header("content-type", "application/x-www-form-urlencoded")
                .body("quantity=1"),
            400,
            "invalid_request",
            Some("body"),
        ),
        row(
            "quantity 0",
            buy(WIDGET).bearer(&user()).json(json!({"quantity": 0})),
            400,
            "invalid_request",
            Some("quantity"),
        ),
        row(
            "negative quantity",
            buy(WIDGET).bearer(&user()).json(json!({"quantity": -5})),
            400,
            "invalid_request",
            Some("quantity"),
        ),
        row(
            "fractional quantity",
            buy(WIDGET).bearer(&user()).json(json!({"quantity": 1.5})),
            400,
            "invalid_request",
            Some("quantity"),
        ),
        row(
            "quantity as a string",
            buy(WIDGET).bearer(&user()).json(json!({"quantity": "1"})),
            400,
            "invalid_request",
            Some("quantity"),
        ),
        row(
            "huge quantity",
            buy(WIDGET).bearer(&user()).body("{\"quantity\": 1e300}"),
            400,
            "invalid_request",
            Some("quantity"),
        ),
        row(
            "quantity over the sale's per-order max",
            buy(WIDGET).bearer(&user()).json(json!({"quantity": 3})),
            400,
            "invalid_request",
            Some("quantity"),
        ),
        row(
            "unknown body field",
            buy(WIDGET)
                .bearer(&user())
                .json(json!({"quantity": 1, "price": 0})),
            400,
            "invalid_request",
            Some("price"),
        ),
        row(
            "oversized body",
            buy(WIDGET).bearer(&user()).body(big.clone()),
            413,
            "payload_too_large",
            None,
        ),
        row(
            "oversized chunked body",
            buy(WIDGET).bearer(&user()).body(big.clone()).chunked(),
            413,
            "payload_too_large",
            None,
        ),
        // Encodings.
        row(
            "invalid UTF-8 body",
            buy(WIDGET).bearer(&user()).body(vec![0xff, 0xfe, 0x00]),
            400,
            "invalid_request",
            Some("body"),
        ),
        row(
            "UTF-8 BOM before the JSON",
            buy(WIDGET)
                .bearer(&user())
                .body("\u{feff}{\"quantity\": 1}"),
            400,
            "invalid_request",
            Some("body"),
        ),
        row(
            "UTF-16 body",
            buy(WIDGET).bearer(&user()).body(utf16),
            400,
            "invalid_request",
            Some("body"),
        ),
        row(
            "gzip body",
            buy(WIDGET)
                .bearer(&user())
                .header("content-encoding", "gzip")
                .body(vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03, 0xab, 0x56]),
            400,
            "invalid_request",
            Some("body"),
        ),
        // The admin route.
        row(
            "admin route with a buyer's token",
            Req::put(format!("/admin/products/{WIDGET}"))
                .bearer(&user())
                .json(json!({"stock": 1, "per_user_limit": 1, "per_order_max": 1})),
            403,
            "forbidden",
            None,
        ),
        row(
            "admin route without a token",
            Req::put(format!("/admin/products/{WIDGET}"))
                .json(json!({"stock": 1, "per_user_limit": 1, "per_order_max": 1})),
            401,
            "unauthenticated",
            None,
        ),
        row(
            "negative stock",
            sale(json!({"stock": -1, "per_user_limit": 1, "per_order_max": 1})),
            400,
            "invalid_request",
            Some("stock"),
        ),
        row(
            "stock over u32",
            sale(json!({"stock": 4_294_967_296_u64, "per_user_limit": 1, "per_order_max": 1})),
            400,
            "invalid_request",
            Some("stock"),
        ),
        row(
            "missing per_user_limit",
            sale(json!({"stock": 10, "per_order_max": 1})),
            400,
            "invalid_request",
            Some("per_user_limit"),
        ),
        row(
            "starts_at not RFC 3339",
            sale(
                json!({"stock": 10, "per_user_limit": 1, "per_order_max": 1, "starts_at": "tomorrow"}),
            ),
            400,
            "invalid_request",
            Some("starts_at"),
        ),
        row(
            "product_id differs from the path",
            sale(
                json!({"stock": 10, "per_user_limit": 1, "per_order_max": 1, "product_id": "other"}),
            ),
            400,
            "invalid_request",
            Some("product_id"),
        ),
        row(
            "read-only field in the admin body",
            sale(json!({"stock": 10, "per_user_limit": 1, "per_order_max": 1, "sold": 0})),
            400,
            "invalid_request",
            Some("sold"),
        ),
        // Methods and paths.
        row(
            "GET on the buy route",
            Req::get(format!("/buy/{WIDGET}")),
            405,
            "method_not_allowed",
            None,
        ),
        row(
            "DELETE on a product",
            Req::new("DELETE", format!("/products/{WIDGET}")),
            405,
            "method_not_allowed",
            None,
        ),
        row(
            "PATCH on the admin route",
            Req::new("PATCH", format!("/admin/products/{WIDGET}")).bearer(&admin),
            405,
            "method_not_allowed",
            None,
        ),
        row(
            "GET on confirm",
            Req::get(format!("/orders/{unknown_order}/confirm")),
            405,
            "method_not_allowed",
            None,
        ),
        row(
            "empty product id",
            Req::post("/buy/").bearer(&user()),
            404,
            "not_found",
            None,
        ),
        row(
            "extra path segment",
            Req::post(format!("/buy/{WIDGET}/now")).bearer(&user()),
            404,
            "not_found",
            None,
        ),
    ];
    // Tokens: every bad token of the token suite, on the buy route.
    for (name, token) in bad_tokens(f) {
        let mut req = buy(WIDGET).json(json!({ "quantity": 1 }));
        if let Some(t) = &token {
            req = req.bearer(t);
        }
        rows.push(row(
            &format!("token: {name}"),
            req,
            401,
            "unauthenticated",
            None,
        ));
    }
    let names: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), rows.len(), "row names are distinct");
    assert!(rows.len() >= 40, "only {} rows", rows.len());

    let products = [WIDGET, TICKETS, LATER, BULK];
    let mut before = Vec::new();
    for p in products {
        before.push(f.levels(p).await);
    }
    let orders = f.orders().await;
    for Row {
        name,
        req,
        status,
        code,
        field,
    } in rows
    {
        let r = c.send(req).await;
        assert_eq!((r.status, r.code()), (status, code), "{name}: {:?}", r.body);
        if let Some(field) = field {
            assert_eq!(r.body["field"], field, "{name}: {:?}", r.body);
        }
        assert!(
            !r.body["message"].as_str().unwrap_or("").is_empty(),
            "{name}: an error says what went wrong"
        );
        for (p, b) in products.iter().zip(&before) {
            unchanged(f, p, *b, orders, &name).await;
        }
    }
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
