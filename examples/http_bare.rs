//! A bare `POST /buy/{productId}` and `GET /products/{productId}` handler, for the HTTP benchmark
//! (`scripts/bench-http.sh`): the same framework, the same workers and a
//! response of the same size as the real server, but no parsing, no JWT,
//! no engine. The ratio of the real server's requests/s to this one's is
//! what the flashsale layer costs.
//!
//! `FLASHSALE_LISTEN=127.0.0.1:8081 cargo run --release --example http_bare
//! --features axum,actix -- axum|actix`

use std::process::ExitCode;

/// The example servers' allocator (see `server/mod.rs`), so the benchmark
/// compares like with like.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// About the size of a real purchase answer.
const BODY: &str = r#"{"created_at":"2026-11-25T04:35:59.184Z","order_id":"01a210fd-3450-7acf-87a0-aa5eb825d471","product_id":"bench","quantity":1,"replayed":false,"status":"confirmed","user_id":"bench-buyer"}"#;

/// About the size of a real product answer.
const PRODUCT: &str = r#"{"available":999999000,"ends_at":null,"held":0,"hold_seconds":null,"on_sale":true,"per_order_max":10,"per_user_limit":4294967295,"product_id":"bench","sold":1000,"starts_at":null,"stock":1000000000,"total":1000000000}"#;

fn main() -> ExitCode {
    let listen = std::env::var("FLASHSALE_LISTEN").unwrap_or_else(|_| "127.0.0.1:8081".into());
    match std::env::args().nth(1).as_deref() {
        Some("axum") => axum_main(&listen),
        Some("actix") => actix_main(&listen),
        _ => {
            eprintln!("usage: http_bare axum|actix   (listens on $FLASHSALE_LISTEN)");
            ExitCode::from(2)
        }
    }
}

fn axum_main(listen: &str) -> ExitCode {
    use axum::http::header;
    use axum::routing::{get, post};

    async fn buy(
        axum::extract::Path(_product): axum::extract::Path<String>,
        _body: axum::body::Bytes,
    ) -> impl axum::response::IntoResponse {
        ([(header::CONTENT_TYPE, "application/json")], BODY)
    }

    async fn product(
        axum::extract::Path(_product): axum::extract::Path<String>,
    ) -> impl axum::response::IntoResponse {
        ([(header::CONTENT_TYPE, "application/json")], PRODUCT)
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let app = axum::Router::new()
            .route("/buy/{product_id}", post(buy))
            .route("/products/{product_id}", get(product));
        let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
        println!(
            "bare axum listening on http://{}",
            listener.local_addr().unwrap()
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .expect("serve");
    });
    ExitCode::SUCCESS
}

fn actix_main(listen: &str) -> ExitCode {
    use actix_web::{App, HttpResponse, HttpServer, web};

    async fn buy(_product: web::Path<String>, _body: web::Bytes) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("application/json")
            .body(BODY)
    }

    async fn product(_product: web::Path<String>) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("application/json")
            .body(PRODUCT)
    }

    let listen = listen.to_owned();
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new()
                .route("/buy/{product_id}", web::post().to(buy))
                .route("/products/{product_id}", web::get().to(product))
        })
        .bind(&listen)
        .expect("bind");
        println!("bare actix listening on http://{}", server.addrs()[0]);
        server.run().await.expect("serve");
    });
    ExitCode::SUCCESS
}
