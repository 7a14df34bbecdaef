//! The flashsale HTTP API on actix-web: `cargo run --example actix_server
//! --features actix,jwt` (add `-- --help` for the configuration).
//!
//! Everything but starting actix-web lives in `server/mod.rs`, shared with
//! `axum_server.rs`, so both servers behave the same.

#[path = "server/mod.rs"]
mod shared;

use std::process::ExitCode;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use metrics_exporter_prometheus::PrometheusHandle;
use tracing::Instrument;

const REQUEST_ID: HeaderName = HeaderName::from_static(flashsale::http::request_id::HEADER);

#[actix_web::main]
async fn main() -> ExitCode {
    if let Some(code) = shared::handle_args("actix-web", "actix_server") {
        return code;
    }
    let app = match shared::start("actix_server").await {
        Ok(app) => app,
        Err(code) => return code,
    };
    let api = app.api.clone();
    let metrics = app.metrics.clone();
    let bound = HttpServer::new(move || {
        App::new()
            .configure(flashsale::http::actix::configure(api.clone()))
            .app_data(web::Data::new(metrics.clone()))
            .route(shared::METRICS_PATH, web::get().to(render_metrics))
            .wrap(from_fn(per_request))
    })
    // Signals are handled below, the same way as the axum server does.
    .disable_signals()
    .shutdown_timeout(30)
    .bind(&app.config.listen);
    let http = match bound {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {}: {e} (FLASHSALE_LISTEN)",
                app.config.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let addr = http.addrs()[0];
    println!("{}", app.banner("actix-web", addr));
    let running = http.run();
    let handle = running.handle();
    actix_web::rt::spawn(async move {
        shared::shutdown_signal().await;
        // Graceful: stop accepting, let in-flight requests finish.
        handle.stop(true).await;
    });
    let served = running.await;
    app.shutdown().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `GET /metrics`: the Prometheus text format.
async fn render_metrics(handle: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(shared::METRICS_CONTENT_TYPE)
        .body(handle.render())
}

/// Runs every request in its span under its `X-Request-Id`, sends the id
/// back, and records the request's count and latency by method, route
/// template and status (`server/mod.rs`, `RequestScope`).
async fn per_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let scope = shared::RequestScope::begin(
        req.method().as_str(),
        req.path(),
        req.headers().get(REQUEST_ID).map(HeaderValue::as_bytes),
    );
    let mut result = next.call(req).instrument(scope.span.clone()).await;
    let status = match &mut result {
        Ok(response) => {
            if let Ok(id) = HeaderValue::from_str(scope.id.as_str()) {
                response.headers_mut().insert(REQUEST_ID, id);
            }
            response.status().as_u16()
        }
        Err(error) => error.as_response_error().status_code().as_u16(),
    };
    scope.finish(status);
    result
}
