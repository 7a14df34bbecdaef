//! The HTTP contract of design.md, independent of any web framework.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /buy/{productId}` | bearer token | buy; optional body `{"quantity": n}` (default 1); optional `Idempotency-Key` header |
//! | `GET /products/{productId}` | anyone | the sale's terms and live `{"total","available","held","sold"}` |
//! | `PUT /admin/products/{productId}` | role `admin` | create or restock a sale |
//! | `POST /orders/{orderId}/confirm`, `/cancel` | the buyer or an admin | end a hold |
//! | `GET /healthz`, `GET /readyz` | anyone | liveness; readiness of every port |
//! | `GET /openapi.json` | anyone | the [OpenAPI 3.1 document](openapi) of all of the above |
//!
//! Everything a server does lives here: [`request`] parses path ids,
//! headers and JSON bodies (a `400` that names the field), [`Api`] runs the
//! routes against an [`Engine`], and [`ApiResponse`] is the answer (status,
//! headers, JSON bytes) with the mapping of every [`Outcome`] and
//! [`Error`](crate::Error). The framework adapters (features `axum` and
//! `actix`) only move bytes in and out, so both frameworks answer every
//! request identically.
//!
//! Order of checks, for every route: the request body's size (`413`), then
//! its shape and the path's ids (`400`), then credentials (`401`/`403`),
//! then the engine. Bad input never reaches a backend, so it changes
//! nothing. The one exception is the admin route, which authenticates
//! before it reads the body, so only admins learn how to phrase one.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), flashsale::Error> {
//! use std::sync::Arc;
//! use flashsale::http::{Api, RequestParts};
//! use flashsale::memory::*;
//! use flashsale::{Principal, UserId};
//! use flashsale::{Engine, ProductId, Sale};
//!
//! let auth = StaticAuthenticator::new().with_token("t", Principal::user(UserId::new("ann")?));
//! let engine = Engine::builder()
//!     .stock_store(Arc::new(MemoryStockStore::new()))
//!     .rate_limiter(Arc::new(MemoryRateLimiter::per_second(10)?))
//!     .order_sink(Arc::new(MemoryOrderSink::new()))
//!     .authenticator(Arc::new(auth))
//!     .build()?;
//! engine.create_sale(&Sale::builder(ProductId::new("p1")?, 5).build()?).await?;
//! let api = Api::new(engine);
//!
//! let parts = RequestParts { authorization: Some(b"Bearer t"), body: br#"{"quantity": 2}"#, ..Default::default() };
//! let response = api.buy("p1", parts).await;
//! assert_eq!(response.status, 200);
//! assert_eq!(api.buy("p1", RequestParts { body: b"{", ..parts }).await.status, 400);
//! # Ok(()) }
//! ```

pub mod openapi;
pub mod request;
pub mod request_id;
mod response;

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "axum")]
pub mod axum;

use serde_json::json;
use tracing::warn;

pub use openapi::OPENAPI_JSON;
pub use request::BadRequest;
pub use response::{ApiResponse, CONTENT_TYPE, product_body, purchase_body};

use crate::SaleWrite;
use crate::engine::{Engine, RenderedPage};
use crate::model::{Outcome, PurchaseRequest};

/// The route paths, in the `{param}` syntax both axum 0.8 and actix-web
/// use.
pub mod paths {
    /// `POST`: buy.
    pub const BUY: &str = "/buy/{product_id}";
    /// `GET`: a sale and its stock levels.
    pub const PRODUCT: &str = "/products/{product_id}";
    /// `PUT` (admin): create or restock a sale.
    pub const ADMIN_PRODUCT: &str = "/admin/products/{product_id}";
    /// `POST`: confirm a held order.
    pub const CONFIRM: &str = "/orders/{order_id}/confirm";
    /// `POST`: cancel a held order.
    pub const CANCEL: &str = "/orders/{order_id}/cancel";
    /// `GET`: liveness.
    pub const HEALTHZ: &str = "/healthz";
    /// `GET`: readiness.
    pub const READYZ: &str = "/readyz";
    /// `GET`: the OpenAPI document.
    pub const OPENAPI: &str = "/openapi.json";

    /// Every route, as `(method, path)`: what both adapters serve and the
    /// OpenAPI document describes (a test holds the three together).
    pub const ROUTES: &[(&str, &str)] = &[
        ("POST", BUY),
        ("GET", PRODUCT),
        ("PUT", ADMIN_PRODUCT),
        ("POST", CONFIRM),
        ("POST", CANCEL),
        ("GET", HEALTHZ),
        ("GET", READYZ),
        ("GET", OPENAPI),
    ];
}

/// The parts of a request the routes read, borrowed from whatever the
/// framework parsed. Header values are raw bytes; [`request`] validates
/// them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestParts<'a> {
    /// The `Authorization` header.
    pub authorization: Option<&'a [u8]>,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<&'a [u8]>,
    /// The `If-None-Match` header (`GET /products/{productId}`).
    pub if_none_match: Option<&'a [u8]>,
    /// The whole request body (the adapter stops reading past
    /// [`Api::body_limit`] and answers [`ApiResponse::payload_too_large`]).
    pub body: &'a [u8],
}

/// How a purchase outlives a client that goes away.
#[derive(Debug, Clone, Copy)]
enum Completion {
    /// Spawned as its own task ([`Engine::purchase_to_completion`]).
    Spawned,
    /// Run in place: the caller already runs in a task of its own that
    /// nobody cancels.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    InPlace,
}

/// The HTTP API over an [`Engine`]: one method per route. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Api {
    engine: Engine,
    body_limit: usize,
}

impl Api {
    /// The default request body limit: 4 KiB (a buy body is a few bytes,
    /// an admin body a few hundred).
    pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024;

    /// The API over `engine`, with the default body limit.
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            body_limit: Self::DEFAULT_BODY_LIMIT,
        }
    }

    /// Sets the largest accepted request body, in bytes (`413` beyond).
    #[must_use]
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The largest accepted request body, in bytes.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Answers `413` if `body` is over the limit (for adapters that read
    /// the whole body before calling a route).
    fn oversized(&self, body: &[u8]) -> Option<ApiResponse> {
        (body.len() > self.body_limit).then(|| ApiResponse::payload_too_large(self.body_limit))
    }

    /// `POST /buy/{productId}`. The purchase runs as its own task, so it
    /// completes even if the caller stops waiting (a client that
    /// disconnects: hyper and actix both drop the handler's future).
    pub async fn buy(&self, product: &str, req: RequestParts<'_>) -> ApiResponse {
        self.buy_in(product, req, Completion::Spawned).await
    }

    /// [`buy`](Self::buy) for an adapter that already runs the whole route
    /// as its own task (the axum adapter's spawn-on-call layer): the
    /// purchase runs in place, saving a second task per request.
    #[cfg(feature = "axum")]
    pub(crate) async fn buy_in_route_task(
        &self,
        product: &str,
        req: RequestParts<'_>,
    ) -> ApiResponse {
        self.buy_in(product, req, Completion::InPlace).await
    }

    async fn buy_in(
        &self,
        product: &str,
        req: RequestParts<'_>,
        completion: Completion,
    ) -> ApiResponse {
        if let Some(r) = self.oversized(req.body) {
            return r;
        }
        let parsed = (|| {
            let product = request::product_id(product)?;
            let quantity = request::buy_quantity(req.body)?;
            let key = request::idempotency_key(req.idempotency_key)?;
            let mut purchase = PurchaseRequest::new(product, quantity);
            purchase.idempotency_key = key;
            Ok::<_, BadRequest>(purchase)
        })();
        let purchase = match parsed {
            Ok(p) => p,
            Err(e) => return ApiResponse::bad_request(&e),
        };
        let credentials = request::credentials(req.authorization);
        let outcome = match completion {
            Completion::Spawned => {
                self.engine
                    .purchase_to_completion(credentials, purchase)
                    .await
            }
            Completion::InPlace => self.engine.purchase(&credentials, purchase).await,
        };
        ApiResponse::from_outcome(&outcome)
    }

    /// `GET /products/{productId}`: the sale's terms and levels, up to the
    /// engine's [`product_staleness`](crate::EngineConfig::product_staleness)
    /// old, with an `ETag`; `304` with no body when `If-None-Match` names
    /// it.
    pub async fn product(&self, product: &str, req: RequestParts<'_>) -> ApiResponse {
        let product = match request::product_id(product) {
            Ok(p) => p,
            Err(e) => return ApiResponse::bad_request(&e),
        };
        let view = match self.engine.product(&product).await {
            Ok(Some(view)) => view,
            Ok(None) => return ApiResponse::from_outcome(&Outcome::UnknownProduct),
            Err(e) => return ApiResponse::from_error(&e),
        };
        let now = self.engine.clock().now();
        let on_sale = view.sale.is_open(now);
        let page = view.page(on_sale, || {
            let body = serde_json::to_vec(&product_body(&product, &view.sale, &view.levels, now))
                .unwrap_or_default();
            RenderedPage {
                on_sale,
                etag: response::etag(&body),
                body,
            }
        });
        let staleness = self.engine.config().product_staleness;
        ApiResponse::cacheable(&page.body, &page.etag, staleness, req.if_none_match)
    }

    /// `PUT /admin/products/{productId}`: create a sale (`201`) or restock
    /// one (`200`); the body is the product as `GET` shows it. Only for
    /// the `admin` role (`403` otherwise). A stock below the units already
    /// held or sold is refused with `409 stock_below_sold`.
    pub async fn put_sale(&self, product: &str, req: RequestParts<'_>) -> ApiResponse {
        if let Some(r) = self.oversized(req.body) {
            return r;
        }
        let product = match request::product_id(product) {
            Ok(p) => p,
            Err(e) => return ApiResponse::bad_request(&e),
        };
        let principal = match self
            .engine
            .authenticate(&request::credentials(req.authorization))
            .await
        {
            Ok(p) => p,
            Err(outcome) => return ApiResponse::from_outcome(&outcome),
        };
        if !principal.is_admin() {
            warn!(user = %principal.user, %product, "non-admin tried an admin route");
            return ApiResponse::from_outcome(&Outcome::Forbidden);
        }
        let sale = match request::sale(&product, req.body) {
            Ok(s) => s,
            Err(e) => return ApiResponse::bad_request(&e),
        };
        let status = match self.engine.create_sale(&sale).await {
            Ok(SaleWrite::Created) => 201,
            Ok(SaleWrite::Updated) => 200,
            Ok(SaleWrite::StockBelowSold { held_or_committed }) => {
                return ApiResponse::json(
                    409,
                    &json!({
                        "error": "stock_below_sold",
                        "message": format!(
                            "stock {} is below the {held_or_committed} units already held or sold",
                            sale.stock()
                        ),
                        "field": "stock",
                    }),
                );
            }
            Err(e) => return ApiResponse::from_error(&e),
        };
        tracing::info!(user = %principal.user, %product, stock = sale.stock(), "sale written by admin");
        let mut r = self
            .product(product.as_str(), RequestParts::default())
            .await;
        if r.status == 200 {
            r.status = status;
        }
        r
    }

    /// `POST /orders/{orderId}/confirm`.
    pub async fn confirm(&self, order: &str, req: RequestParts<'_>) -> ApiResponse {
        self.end_hold(order, req, HoldEnd::Confirm).await
    }

    /// `POST /orders/{orderId}/cancel`.
    pub async fn cancel(&self, order: &str, req: RequestParts<'_>) -> ApiResponse {
        self.end_hold(order, req, HoldEnd::Cancel).await
    }

    /// The shared shape of confirm and cancel: size check, order id, engine.
    async fn end_hold(&self, order: &str, req: RequestParts<'_>, how: HoldEnd) -> ApiResponse {
        if let Some(r) = self.oversized(req.body) {
            return r;
        }
        let order = match request::order_id(order) {
            Ok(o) => o,
            Err(e) => return ApiResponse::bad_request(&e),
        };
        let credentials = request::credentials(req.authorization);
        let outcome = match how {
            HoldEnd::Confirm => self.engine.confirm(&credentials, &order).await,
            HoldEnd::Cancel => self.engine.cancel(&credentials, &order).await,
        };
        ApiResponse::from_outcome(&outcome)
    }

    /// `GET /healthz`: the process is up.
    pub fn healthz(&self) -> ApiResponse {
        ApiResponse::json(200, &json!({ "status": "ok" }))
    }

    /// `GET /openapi.json`: [`OPENAPI_JSON`].
    pub fn openapi(&self) -> ApiResponse {
        ApiResponse {
            status: 200,
            headers: vec![("cache-control", "public, max-age=300".to_owned())],
            body: OPENAPI_JSON.as_bytes().to_vec(),
        }
    }

    /// `GET /readyz`: `200` when every port answers, else `503` naming the
    /// ones that did not (their errors are logged, not sent).
    pub async fn readyz(&self) -> ApiResponse {
        let readiness = self.engine.readiness().await;
        let mut checks = serde_json::Map::new();
        for (name, result) in &readiness.checks {
            let state = match result {
                Ok(()) => "ok",
                Err(error) => {
                    warn!(port = name, %error, "readiness check failed");
                    "failed"
                }
            };
            checks.insert((*name).to_owned(), json!(state));
        }
        if readiness.is_ready() {
            ApiResponse::json(200, &json!({ "status": "ready", "checks": checks }))
        } else {
            ApiResponse::json(
                503,
                &json!({
                    "error": "unavailable",
                    "message": "a backend is not answering",
                    "checks": checks,
                }),
            )
            .with_header("retry-after", "1")
        }
    }
}

/// Which way a hold ends.
#[derive(Debug, Clone, Copy)]
enum HoldEnd {
    Confirm,
    Cancel,
}
