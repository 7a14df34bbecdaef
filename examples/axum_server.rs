//! The flashsale HTTP API on axum: `cargo run --example axum_server
//! --features axum,jwt` (add `-- --help` for the configuration).
//!
//! Everything but starting axum lives in `server/mod.rs`, shared with
//! `actix_server.rs`, so both servers behave the same.

#[path = "server/mod.rs"]
mod shared;

use std::process::ExitCode;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use tracing::Instrument;

const REQUEST_ID: HeaderName = HeaderName::from_static(flashsale::http::request_id::HEADER);

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(code) = shared::handle_args("axum", "axum_server") {
        return code;
    }
    let app = match shared::start("axum_server").await {
        Ok(app) => app,
        Err(code) => return code,
    };
    let listener = match tokio::net::TcpListener::bind(&app.config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {}: {e} (FLASHSALE_LISTEN)",
                app.config.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound socket has an address");
    println!("{}", app.banner("axum", addr));
    let metrics = app.metrics.clone();
    let router = flashsale::http::axum::router(app.api.clone())
        .route(
            shared::METRICS_PATH,
            get(move || {
                let body = metrics.render();
                async move { ([(header::CONTENT_TYPE, shared::METRICS_CONTENT_TYPE)], body) }
            }),
        )
        .layer(middleware::from_fn(per_request));
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shared::shutdown_signal())
        .await;
    app.shutdown().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every request in its span under its `X-Request-Id`, sends the id
/// back, and records the request's count and latency by method, route
/// template and status (`server/mod.rs`, `RequestScope`).
async fn per_request(req: Request, next: Next) -> Response {
    let scope = shared::RequestScope::begin(
        req.method().as_str(),
        req.uri().path(),
        req.headers().get(REQUEST_ID).map(HeaderValue::as_bytes),
    );
    let mut response = next.run(req).instrument(scope.span.clone()).await;
    if let Ok(id) = HeaderValue::from_str(scope.id.as_str()) {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    scope.finish(response.status().as_u16());
    response
}
