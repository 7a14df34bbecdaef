//! The flashsale HTTP API on axum: `cargo run --example axum_server
//! --features axum,jwt` (add `-- --help` for the configuration).
//!
//! Everything but starting axum lives in `server/mod.rs`, shared with
//! `actix_server.rs`, so both servers behave the same.

#[path = "server/mod.rs"]
mod shared;

use std::process::ExitCode;
use std::time::Instant;

use axum::extract::Request;
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

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
        .layer(middleware::from_fn(http_metrics));
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

/// Records every request's count and latency by method, route template and
/// status (`server/mod.rs`, `record_http`).
async fn http_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = shared::method_label(req.method().as_str());
    let route = shared::route_template(req.uri().path());
    let response = next.run(req).await.into_response();
    shared::record_http(method, route, response.status().as_u16(), started.elapsed());
    response
}
