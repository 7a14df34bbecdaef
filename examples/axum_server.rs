//! The flashsale HTTP API on axum: `cargo run --example axum_server
//! --features axum,jwt` (add `-- --help` for the configuration).
//!
//! Everything but starting axum lives in `server/mod.rs`, shared with
//! `actix_server.rs`, so both servers behave the same.

#[path = "server/mod.rs"]
mod shared;

use std::process::ExitCode;

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
    let router = flashsale::http::axum::router(app.api.clone());
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
