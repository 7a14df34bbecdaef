//! The body limit over real sockets, on both frameworks: a body over
//! [`Api::body_limit`] answers `413 payload_too_large` whether it declares
//! its size (`Content-Length`) or streams it (`Transfer-Encoding:
//! chunked`), and changes nothing. The in-process suite
//! (`tests/common/http_cases/`) covers the chunked case too where the
//! framework's test client can send one (axum); actix's test request always
//! sets `Content-Length`, hence this file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use flashsale::Principal;
use flashsale::http::Api;
use flashsale::memory::{
    MemoryOrderSink, MemoryRateLimiter, MemoryStockStore, StaticAuthenticator,
};
use flashsale::{Engine, ProductId, RateQuota, Sale, UserId};

const PRODUCT: &str = "body-limit";

fn engine_and_api() -> (Engine, Api) {
    let auth = StaticAuthenticator::new()
        .with_token("ann-token", Principal::user(UserId::new("ann").unwrap()));
    let engine = Engine::builder()
        .stock_store(Arc::new(MemoryStockStore::new()))
        .rate_limiter(Arc::new(MemoryRateLimiter::new(
            RateQuota::per_second(1_000).unwrap(),
        )))
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(Arc::new(auth))
        .build()
        .unwrap();
    let api = Api::new(engine.clone());
    (engine, api)
}

async fn with_sale(engine: &Engine) {
    engine
        .create_sale(
            &Sale::builder(ProductId::new(PRODUCT).unwrap(), 5)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy)]
enum Framing {
    ContentLength,
    /// One chunk per `chunk` bytes.
    Chunked {
        chunk: usize,
    },
}

/// Sends `POST /buy/{PRODUCT}` with `body` framed as told; returns the
/// status and the response text.
fn post_buy(addr: SocketAddr, body: &[u8], framing: Framing) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "POST /buy/{PRODUCT} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer ann-token\r\n\
         Content-Type: application/json\r\nConnection: close\r\n"
    );
    let mut wire = Vec::new();
    match framing {
        Framing::ContentLength => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            wire.extend_from_slice(head.as_bytes());
            wire.extend_from_slice(body);
        }
        Framing::Chunked { chunk } => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            wire.extend_from_slice(head.as_bytes());
            for part in body.chunks(chunk) {
                wire.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                wire.extend_from_slice(part);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        }
    }
    // The server may answer (and close) before it read everything; a
    // failed write is then expected, the answer is what counts.
    let _ = s.write_all(&wire);
    let _ = s.flush();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    (status, text)
}

fn oversized() -> Vec<u8> {
    format!("{{\"quantity\": 1, \"pad\": \"{}\"}}", "x".repeat(5_000)).into_bytes()
}

/// Every framing of an oversized body is 413 and sells nothing; a small
/// chunked body still buys.
async fn check(addr: SocketAddr, engine: &Engine) {
    let cases = [
        Framing::ContentLength,
        Framing::Chunked { chunk: 5_100 },
        Framing::Chunked { chunk: 1_000 },
        Framing::Chunked { chunk: 7 },
    ];
    for framing in cases {
        let (status, text) =
            tokio::task::spawn_blocking(move || post_buy(addr, &oversized(), framing))
                .await
                .unwrap();
        assert_eq!(status, 413, "{framing:?}: {text}");
        assert!(text.contains("payload_too_large"), "{framing:?}: {text}");
    }
    let l = engine
        .snapshot(&ProductId::new(PRODUCT).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((l.available, l.committed), (5, 0), "an oversized body sold");
    let (status, text) = tokio::task::spawn_blocking(move || {
        post_buy(addr, br#"{"quantity": 2}"#, Framing::Chunked { chunk: 4 })
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_answers_413_to_oversized_bodies_however_framed() {
    let (engine, api) = engine_and_api();
    with_sale(&engine).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = flashsale::http::axum::router(api);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    check(addr, &engine).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_answers_413_to_oversized_bodies_however_framed() {
    let (engine, api) = engine_and_api();
    with_sale(&engine).await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new().configure(flashsale::http::actix::configure(api.clone()))
            })
            .workers(1)
            .listen(listener)
            .unwrap()
            .run();
            handle_tx.send(server.handle()).unwrap();
            server.await
        })
    });
    let handle = handle_rx.recv().unwrap();
    check(addr, &engine).await;
    handle.stop(false).await;
    server.join().unwrap().unwrap();
}
