//! A client that closes its socket right after sending `POST /buy` must not
//! leave a purchase half-done: hyper (axum) and actix-web both drop a
//! handler's future when its connection goes away, so the adapters run the
//! purchase as its own task (actix: `Engine::purchase_to_completion`; axum:
//! the whole route, from the moment hyper calls it). Checked over
//! real sockets against both frameworks, with a store whose reserve only
//! starts after the client is gone.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use flashsale::http::Api;
use flashsale::memory::{
    MemoryOrderSink, MemoryRateLimiter, MemoryStockStore, StaticAuthenticator,
};
use flashsale::testing::hooked::{Answer, Hooked, StockCall, StockHook};
use flashsale::{Engine, Principal, ProductId, RateQuota, Result, Sale, UserId};

/// How long `reserve` waits before it reaches the store.
const RESERVE_DELAY: Duration = Duration::from_millis(300);

/// Makes `reserve` start late, so the client can hang up while the
/// purchase is in flight; records that a reserve began.
struct SlowReserve(Arc<AtomicBool>);

#[async_trait]
impl StockHook for SlowReserve {
    async fn around<T: Send + 'static>(&self, call: StockCall<'_>, answer: Answer<T>) -> Result<T> {
        if let StockCall::Reserve(_) = call {
            self.0.store(true, Ordering::SeqCst);
            tokio::time::sleep(RESERVE_DELAY).await;
        }
        answer.await
    }
}

struct Setup {
    /// Set when a reserve began (the purchase reached the store).
    started: Arc<AtomicBool>,
    engine: Engine,
    sink: Arc<MemoryOrderSink>,
    product: ProductId,
}

async fn setup() -> Setup {
    let started = Arc::new(AtomicBool::new(false));
    let sink = Arc::new(MemoryOrderSink::new());
    let auth = StaticAuthenticator::new()
        .with_token("ann-token", Principal::user(UserId::new("ann").unwrap()));
    let engine = Engine::builder()
        .stock_store(Arc::new(Hooked::new(
            Arc::new(MemoryStockStore::new()),
            SlowReserve(started.clone()),
        )))
        .rate_limiter(Arc::new(MemoryRateLimiter::new(
            RateQuota::per_second(100).unwrap(),
        )))
        .order_sink(sink.clone())
        .authenticator(Arc::new(auth))
        .build()
        .unwrap();
    let product = ProductId::new("gone-client").unwrap();
    engine
        .create_sale(&Sale::builder(product.clone(), 5).build().unwrap())
        .await
        .unwrap();
    Setup {
        started,
        engine,
        sink,
        product,
    }
}

/// Sends a complete `POST /buy` and closes the socket at once, without
/// reading the answer.
fn buy_and_hang_up(addr: SocketAddr, product: &ProductId) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /buy/{product} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer ann-token\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s.flush().unwrap();
    drop(s);
}

/// A purchase is never left half-done: once its reserve began, it lands
/// (one unit sold, one `placed` order relayed, nothing left pending). The
/// server may also drop the request before any purchase starts (hyper
/// sometimes sees the hang-up before it hands the request on); then
/// nothing at all may have changed. Returns whether the purchase ran.
async fn assert_never_half_done(s: &Setup) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !s.started.load(Ordering::SeqCst) {
        if tokio::time::Instant::now() >= deadline {
            let l = s.engine.snapshot(&s.product).await.unwrap().unwrap();
            assert_eq!((l.available, l.held, l.committed), (5, 0, 0));
            assert_eq!(s.engine.drain_outbox().await.unwrap(), 0);
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let l = s.engine.snapshot(&s.product).await.unwrap().unwrap();
        if l.committed == 1 {
            assert!(l.is_consistent(), "{l:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the purchase was abandoned when the client hung up: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.engine.drain_outbox().await.unwrap(), 1);
    let orders = s.sink.orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].user_id.as_str(), "ann");
    assert_eq!(s.engine.drain_outbox().await.unwrap(), 0, "outbox empty");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_finishes_a_purchase_whose_client_hung_up() {
    let s = setup().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = flashsale::http::axum::router(Api::new(s.engine.clone()));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let product = s.product.clone();
    tokio::task::spawn_blocking(move || buy_and_hang_up(addr, &product))
        .await
        .unwrap();
    let ran = assert_never_half_done(&s).await;
    eprintln!("purchase ran: {ran}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_finishes_a_purchase_whose_client_hung_up() {
    let s = setup().await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let api = Api::new(s.engine.clone());
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
    let product = s.product.clone();
    tokio::task::spawn_blocking(move || buy_and_hang_up(addr, &product))
        .await
        .unwrap();
    let ran = assert_never_half_done(&s).await;
    eprintln!("purchase ran: {ran}");
    handle.stop(false).await;
    server.join().unwrap().unwrap();
}
