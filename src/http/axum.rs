//! The axum 0.8 adapter (feature `axum`): a [`Router`] serving every route
//! of the [HTTP contract](crate::http), and [`IntoResponse`] for
//! [`ApiResponse`].
//!
//! ```no_run
//! # async fn run(engine: flashsale::Engine) -> std::io::Result<()> {
//! let app = flashsale::http::axum::router(flashsale::http::Api::new(engine));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::{Api, ApiResponse, BadRequest, CONTENT_TYPE, RequestParts, paths};

impl IntoResponse for ApiResponse {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        response
    }
}

/// A router serving every route of the contract on `api`, with `404` and
/// `405` answered as JSON like everything else.
///
/// Merge it into an application's own router, or nest it under a prefix.
pub fn router(api: Api) -> Router {
    Router::new()
        .route(paths::BUY, post(buy).layer(SpawnOnCall))
        .route(paths::PRODUCT, get(product))
        .route(paths::ADMIN_PRODUCT, put(put_sale))
        .route(paths::CONFIRM, post(confirm))
        .route(paths::CANCEL, post(cancel))
        .route(paths::HEALTHZ, get(healthz))
        .route(paths::READYZ, get(readyz))
        .route(paths::OPENAPI, get(openapi))
        .fallback(|| async { ApiResponse::not_found() })
        .method_not_allowed_fallback(|| async { ApiResponse::method_not_allowed() })
        .with_state(api)
}

/// Runs the wrapped route as its own task from the moment hyper hands it
/// the request (`Service::call`), not from its first poll: hyper drops a
/// connection's in-flight future when the client goes away, possibly
/// before polling it once, and a purchase must not depend on that.
#[derive(Debug, Clone, Copy)]
struct SpawnOnCall;

impl<S> tower_layer::Layer<S> for SpawnOnCall {
    type Service = Spawned<S>;
    fn layer(&self, inner: S) -> Spawned<S> {
        Spawned(inner)
    }
}

/// The service [`SpawnOnCall`] makes.
#[derive(Debug, Clone)]
struct Spawned<S>(S);

impl<S> tower_service::Service<axum::extract::Request> for Spawned<S>
where
    S: tower_service::Service<axum::extract::Request, Error = Infallible>,
    S::Response: IntoResponse + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        // The task keeps the caller's span (e.g. the request id's).
        let task = tokio::spawn(tracing::Instrument::in_current_span(self.0.call(req)));
        Box::pin(async move {
            Ok(match task.await {
                Ok(Ok(response)) => response.into_response(),
                Ok(Err(never)) => match never {},
                Err(error) => {
                    tracing::error!(%error, "purchase task failed");
                    ApiResponse::error(500, "internal", "the server failed; see its logs")
                        .into_response()
                }
            })
        })
    }
}

/// Reads the whole body, stopping at `limit` bytes.
///
/// A declared `Content-Length` over the limit is refused before reading.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<axum::body::Bytes, ApiResponse> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiResponse::payload_too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiResponse::payload_too_large(limit)),
        Err(e) => Err(ApiResponse::bad_request(&BadRequest::new(
            "body",
            format!("the request body could not be read: {e}"),
        ))),
    }
}

/// The path parameter, or a `400` naming `field` when it cannot be
/// decoded (e.g. percent-encoded bytes that are not UTF-8).
fn path_param(
    raw: Result<Path<String>, axum::extract::rejection::PathRejection>,
    field: &'static str,
) -> Result<String, ApiResponse> {
    raw.map(|Path(p)| p).map_err(|e| {
        ApiResponse::bad_request(&BadRequest::new(
            field,
            format!("invalid {field}: {}", e.body_text()),
        ))
    })
}

fn parts<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> RequestParts<'a> {
    RequestParts {
        authorization: headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        idempotency_key: headers.get("idempotency-key").map(HeaderValue::as_bytes),
        if_none_match: headers
            .get(header::IF_NONE_MATCH)
            .map(HeaderValue::as_bytes),
        body,
    }
}

async fn buy(
    State(api): State<Api>,
    product: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResponse {
    let body = match read_body(&headers, body, api.body_limit()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match path_param(product, "product_id") {
        // `SpawnOnCall` runs this route as its own task already.
        Ok(product) => {
            api.buy_in_route_task(&product, parts(&headers, &body))
                .await
        }
        Err(r) => r,
    }
}

async fn product(
    State(api): State<Api>,
    product: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> ApiResponse {
    match path_param(product, "product_id") {
        Ok(product) => api.product(&product, parts(&headers, &[])).await,
        Err(r) => r,
    }
}

async fn put_sale(
    State(api): State<Api>,
    product: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResponse {
    let body = match read_body(&headers, body, api.body_limit()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match path_param(product, "product_id") {
        Ok(product) => api.put_sale(&product, parts(&headers, &body)).await,
        Err(r) => r,
    }
}

async fn confirm(
    State(api): State<Api>,
    order: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResponse {
    let body = match read_body(&headers, body, api.body_limit()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match path_param(order, "order_id") {
        Ok(order) => api.confirm(&order, parts(&headers, &body)).await,
        Err(r) => r,
    }
}

async fn cancel(
    State(api): State<Api>,
    order: Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResponse {
    let body = match read_body(&headers, body, api.body_limit()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match path_param(order, "order_id") {
        Ok(order) => api.cancel(&order, parts(&headers, &body)).await,
        Err(r) => r,
    }
}

async fn healthz(State(api): State<Api>) -> ApiResponse {
    api.healthz()
}

async fn openapi(State(api): State<Api>) -> ApiResponse {
    api.openapi()
}

async fn readyz(State(api): State<Api>) -> ApiResponse {
    api.readyz().await
}
