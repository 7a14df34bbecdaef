//! The actix-web 4 adapter (feature `actix`): [`configure`] registers every
//! route of the [HTTP contract](crate::http) on an app, and
//! [`Responder`] is implemented for [`ApiResponse`].
//!
//! ```no_run
//! # async fn run(engine: flashsale::Engine) -> std::io::Result<()> {
//! use actix_web::{App, HttpServer};
//! use flashsale::http::{Api, actix::configure};
//!
//! let api = Api::new(engine);
//! HttpServer::new(move || App::new().configure(configure(api.clone())))
//!     .bind("127.0.0.1:8080")?
//!     .run()
//!     .await
//! # }
//! ```

use actix_web::body::BoxBody;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, Responder, web};

use super::{Api, ApiResponse, BadRequest, CONTENT_TYPE, RequestParts, paths};

impl Responder for ApiResponse {
    type Body = BoxBody;

    fn respond_to(self, _req: &HttpRequest) -> HttpResponse<BoxBody> {
        HttpResponse::from(self)
    }
}

impl From<ApiResponse> for HttpResponse {
    fn from(r: ApiResponse) -> Self {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = HttpResponse::with_body(status, r.body).map_into_boxed_body();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        for (name, value) in r.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        response
    }
}

/// Registers every route of the contract on `api`, with `404` and `405`
/// answered as JSON like everything else. Call it once per worker:
/// `App::new().configure(configure(api.clone()))`.
pub fn configure(api: Api) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        let not_allowed = || web::to(|| async { ApiResponse::method_not_allowed() });
        cfg.app_data(web::Data::new(api))
            .service(
                web::resource(paths::BUY)
                    .route(web::post().to(buy))
                    .default_service(not_allowed()),
            )
            .service(
                web::resource(paths::PRODUCT)
                    .route(web::get().to(product))
                    .default_service(not_allowed()),
            )
            .service(
                web::resource(paths::ADMIN_PRODUCT)
                    .route(web::put().to(put_sale))
                    .default_service(not_allowed()),
            )
            .service(
                web::resource(paths::CONFIRM)
                    .route(web::post().to(confirm))
                    .default_service(not_allowed()),
            )
            .service(
                web::resource(paths::CANCEL)
                    .route(web::post().to(cancel))
                    .default_service(not_allowed()),
            )
            .service(
                web::resource(paths::HEALTHZ)
                    .route(web::get().to(healthz))
                    .default_service(not_allowed()),
            )
            .service(
                web::resource(paths::READYZ)
                    .route(web::get().to(readyz))
                    .default_service(not_allowed()),
            )
            .service(
                web::resource(paths::OPENAPI)
                    .route(web::get().to(openapi))
                    .default_service(not_allowed()),
            )
            .default_service(web::to(|| async { ApiResponse::not_found() }));
    }
}

/// Reads the whole body, stopping at `limit` bytes: a body over the limit
/// is `413 payload_too_large` whether it declares its size or not.
///
/// A declared `Content-Length` over the limit is refused before reading; a
/// body without one (`Transfer-Encoding: chunked`) is read up to the limit
/// and refused as soon as it goes over. A body that cannot be read (the
/// connection broke, bad chunk framing) is `400` naming `body`.
pub(crate) async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiResponse> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiResponse::payload_too_large(limit));
    }
    // The outer result is the limit, the inner one the stream.
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(ApiResponse::bad_request(&BadRequest::new(
            "body",
            format!("the request body could not be read: {e}"),
        ))),
        Err(actix_web::body::BodyLimitExceeded { .. }) => {
            Err(ApiResponse::payload_too_large(limit))
        }
    }
}

type PathParam = Result<web::Path<String>, actix_web::Error>;

/// The path parameter, or a `400` naming `field` when it cannot be
/// decoded.
fn path_param(raw: PathParam, field: &'static str) -> Result<String, ApiResponse> {
    raw.map(web::Path::into_inner).map_err(|e| {
        ApiResponse::bad_request(&BadRequest::new(field, format!("invalid {field}: {e}")))
    })
}

fn parts<'a>(req: &'a HttpRequest, body: &'a [u8]) -> RequestParts<'a> {
    let h = req.headers();
    RequestParts {
        authorization: h.get(header::AUTHORIZATION).map(HeaderValue::as_bytes),
        idempotency_key: h.get("idempotency-key").map(HeaderValue::as_bytes),
        if_none_match: h.get(header::IF_NONE_MATCH).map(HeaderValue::as_bytes),
        body,
    }
}

async fn buy(
    api: web::Data<Api>,
    product: PathParam,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResponse {
    let body = match read_body(&req, payload, api.body_limit()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match path_param(product, "product_id") {
        Ok(product) => api.buy(&product, parts(&req, &body)).await,
        Err(r) => r,
    }
}

async fn product(api: web::Data<Api>, product: PathParam, req: HttpRequest) -> ApiResponse {
    match path_param(product, "product_id") {
        Ok(product) => api.product(&product, parts(&req, &[])).await,
        Err(r) => r,
    }
}

async fn put_sale(
    api: web::Data<Api>,
    product: PathParam,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResponse {
    let body = match read_body(&req, payload, api.body_limit()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match path_param(product, "product_id") {
        Ok(product) => api.put_sale(&product, parts(&req, &body)).await,
        Err(r) => r,
    }
}

async fn confirm(
    api: web::Data<Api>,
    order: PathParam,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResponse {
    let body = match read_body(&req, payload, api.body_limit()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match path_param(order, "order_id") {
        Ok(order) => api.confirm(&order, parts(&req, &body)).await,
        Err(r) => r,
    }
}

async fn cancel(
    api: web::Data<Api>,
    order: PathParam,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResponse {
    let body = match read_body(&req, payload, api.body_limit()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match path_param(order, "order_id") {
        Ok(order) => api.cancel(&order, parts(&req, &body)).await,
        Err(r) => r,
    }
}

async fn healthz(api: web::Data<Api>) -> ApiResponse {
    api.healthz()
}

async fn readyz(api: web::Data<Api>) -> ApiResponse {
    api.readyz().await
}

async fn openapi(api: web::Data<Api>) -> ApiResponse {
    api.openapi()
}
