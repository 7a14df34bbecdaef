//! The flashsale HTTP API on actix-web: `cargo run --example actix_server
//! --features actix,jwt` (add `-- --help` for the configuration).
//!
//! Everything but starting actix-web lives in `server/mod.rs`, shared with
//! `axum_server.rs`, so both servers behave the same.

#[path = "server/mod.rs"]
mod shared;

use std::process::ExitCode;

use actix_web::{App, HttpServer};

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
    let bound = HttpServer::new(move || {
        App::new().configure(flashsale::http::actix::configure(api.clone()))
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
