//! A fixed workload for instruction-count profiling of `POST /buy` through
//! the axum adapter, in process (no sockets): `N` purchases with an HS256
//! token and a JSON body through `flashsale::http::axum::router`, or, with
//! `bare`, the same requests through a bare axum handler that answers a
//! body of the same size. The difference per request is what the flashsale
//! layer costs a request, whatever hyper and the kernel cost both.
//!
//! ```sh
//! cargo build --release --example http_profile --features axum,jwt
//! for mode in route bare; do for n in 5000 10000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$mode.$n \
//!     target/release/examples/http_profile $mode $n 2>&1 | grep refs
//! done; done
//! ```
//!
//! Instructions per request = (refs at 10000 - refs at 5000) / 5000.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use flashsale::UserId;
use flashsale::http::Api;
use flashsale::jwt::{Claims, DEV_SECRET, JwtAuthenticator, sign_hs256};
use flashsale::memory::{MemoryOrderSink, MemoryRateLimiter, MemoryStockStore};
use flashsale::{Clock, Engine, ProductId, RateQuota, Sale, SystemClock};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// About the size of a real purchase answer (as `examples/http_bare.rs`).
const BODY: &str = r#"{"created_at":"2026-11-25T04:35:59.184Z","order_id":"01a210fd-3450-7acf-87a0-aa5eb825d471","product_id":"bench","quantity":1,"replayed":false,"status":"confirmed","user_id":"bench-buyer"}"#;

const USERS: usize = 1_024;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "route".into());
    let n: usize = args
        .next()
        .map(|s| s.parse().expect("N is a number"))
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let app = match mode.as_str() {
            "route" => route().await,
            "bare" => bare(),
            other => panic!("mode is route or bare, not {other:?}"),
        };
        let tokens: Vec<String> = (0..USERS)
            .map(|u| {
                let user = UserId::new(format!("buyer-{u}")).unwrap();
                let claims = Claims::new(&user, SystemClock.now(), Duration::from_secs(3_600));
                format!("Bearer {}", sign_hs256(DEV_SECRET, &claims).unwrap())
            })
            .collect();
        let mut ok = 0;
        for i in 0..n {
            let request = Request::post("/buy/bench")
                .header(header::AUTHORIZATION, &tokens[i % USERS])
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"quantity":1}"#))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert!(status.is_success(), "{status}: {body:?}");
            ok += usize::from(!body.is_empty());
        }
        println!("{mode}: {ok} purchases answered");
    });
}

async fn route() -> axum::Router {
    let engine = Engine::builder()
        .stock_store(Arc::new(MemoryStockStore::new()))
        .rate_limiter(Arc::new(MemoryRateLimiter::new(
            RateQuota::per_second(1_000_000).unwrap(),
        )))
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(Arc::new(JwtAuthenticator::hs256(DEV_SECRET)))
        .build()
        .unwrap();
    let p = ProductId::new("bench").unwrap();
    engine
        .create_sale(
            &Sale::builder(p, 1_000_000_000)
                .per_user_limit(1_000_000_000)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    flashsale::http::axum::router(Api::new(engine))
}

fn bare() -> axum::Router {
    async fn buy(
        axum::extract::Path(_product): axum::extract::Path<String>,
        _body: axum::body::Bytes,
    ) -> impl axum::response::IntoResponse {
        ([(header::CONTENT_TYPE, "application/json")], BODY)
    }
    axum::Router::new().route("/buy/{product_id}", axum::routing::post(buy))
}
