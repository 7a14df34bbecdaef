//! The proxy against a local echo server: each fault does what it says,
//! on open connections too, and healing brings traffic back.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Direction, Fault, FaultProxy};

/// An echo server on an ephemeral port; returns its address.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn proxied() -> (FaultProxy, TcpStream) {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    (proxy, client)
}

/// Sends `msg` and reads exactly its length back, within `within`.
async fn round_trip(client: &mut TcpStream, msg: &[u8], within: Duration) -> Option<Vec<u8>> {
    client.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    match tokio::time::timeout(within, client.read_exact(&mut back)).await {
        Ok(Ok(_)) => Some(back),
        Ok(Err(e)) => panic!("read failed: {e}"),
        Err(_) => None,
    }
}

/// Reads until EOF or error; returns the bytes and how it ended.
async fn read_to_end(client: &mut TcpStream) -> (Vec<u8>, std::io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf)).await {
            Err(_) => panic!("the connection neither closed nor reset"),
            Ok(Ok(0)) => return (got, Ok(())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return (got, Err(e)),
        }
    }
}

const SOON: Duration = Duration::from_secs(5);
const SILENCE: Duration = Duration::from_millis(300);

#[tokio::test]
async fn pass_forwards_both_ways_and_counts() {
    let (proxy, mut c) = proxied().await;
    assert_eq!(round_trip(&mut c, b"hello", SOON).await.unwrap(), b"hello");
    let s = proxy.stats();
    assert_eq!(
        (s.connections, s.bytes_to_server, s.bytes_to_client),
        (1, 5, 5)
    );
    assert_eq!(s.cuts, 0);
}

#[tokio::test]
async fn delay_holds_each_read_for_its_duration() {
    let (proxy, mut c) = proxied().await;
    proxy.set(
        Direction::ToClient,
        Fault::Delay(Duration::from_millis(250)),
    );
    let started = Instant::now();
    assert_eq!(round_trip(&mut c, b"slow", SOON).await.unwrap(), b"slow");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn stall_holds_bytes_until_healed_then_delivers_them() {
    let (proxy, mut c) = proxied().await;
    proxy.set_both(Fault::Stall);
    assert_eq!(round_trip(&mut c, b"held", SILENCE).await, None);
    proxy.heal();
    let mut back = [0u8; 4];
    tokio::time::timeout(SOON, c.read_exact(&mut back))
        .await
        .expect("delivered after the stall")
        .unwrap();
    assert_eq!(&back, b"held");
}

#[tokio::test]
async fn drop_swallows_bytes_for_good() {
    let (proxy, mut c) = proxied().await;
    proxy.set(Direction::ToServer, Fault::Drop);
    assert_eq!(round_trip(&mut c, b"lost", SILENCE).await, None);
    assert_eq!(proxy.stats().bytes_dropped, 4);
    proxy.heal();
    // The connection still works; the swallowed bytes never arrive.
    assert_eq!(round_trip(&mut c, b"next", SOON).await.unwrap(), b"next");
}

#[tokio::test]
async fn reset_resets_the_connection_at_the_next_byte() {
    let (proxy, mut c) = proxied().await;
    assert!(round_trip(&mut c, b"ok", SOON).await.is_some());
    proxy.set(Direction::ToClient, Fault::Reset);
    c.write_all(b"x").await.unwrap();
    let (got, end) = read_to_end(&mut c).await;
    assert!(got.is_empty());
    assert_eq!(end.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(proxy.stats().cuts, 1);
}

#[tokio::test]
async fn close_after_cuts_in_the_middle_of_a_reply() {
    let (proxy, mut c) = proxied().await;
    assert!(round_trip(&mut c, b"before", SOON).await.is_some());
    // Counted from now, not from the connection's start.
    proxy.set(Direction::ToClient, Fault::CloseAfter(3));
    c.write_all(b"abcdef").await.unwrap();
    let (got, end) = read_to_end(&mut c).await;
    assert_eq!(got, b"abc");
    end.expect("closed, not reset");
    assert_eq!(proxy.stats().cuts, 1);
}

#[tokio::test]
async fn close_after_counts_per_connection() {
    let (proxy, mut first) = proxied().await;
    proxy.set(Direction::ToServer, Fault::CloseAfter(4));
    assert_eq!(
        round_trip(&mut first, b"abcd", SOON).await.unwrap(),
        b"abcd"
    );
    // A new connection has its own budget of 4.
    let mut second = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(
        round_trip(&mut second, b"wxyz", SOON).await.unwrap(),
        b"wxyz"
    );
    first.write_all(b"e").await.unwrap();
    let (got, _) = read_to_end(&mut first).await;
    assert!(got.is_empty(), "{got:?}");
}

#[tokio::test]
async fn reset_all_cuts_idle_connections_but_not_later_ones() {
    let (proxy, mut c) = proxied().await;
    assert!(round_trip(&mut c, b"ok", SOON).await.is_some());
    proxy.reset_all();
    let (_, end) = read_to_end(&mut c).await;
    assert_eq!(end.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
    let mut later = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert!(round_trip(&mut later, b"ok", SOON).await.is_some());
}

#[tokio::test]
async fn down_resets_open_and_new_connections_until_up() {
    let (proxy, mut c) = proxied().await;
    assert!(round_trip(&mut c, b"ok", SOON).await.is_some());
    proxy.set_down(true);
    let (_, end) = read_to_end(&mut c).await;
    assert!(end.is_err(), "the open connection is reset");
    let mut refused = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (got, end) = read_to_end(&mut refused).await;
    assert!(got.is_empty());
    assert!(end.is_err(), "a new connection is reset");
    proxy.set_down(false);
    let mut back = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(round_trip(&mut back, b"up", SOON).await.unwrap(), b"up");
    assert!(proxy.stats().cuts >= 2);
}

#[tokio::test]
async fn a_close_is_passed_on_both_ways() {
    let (_proxy, mut c) = proxied().await;
    assert!(round_trip(&mut c, b"ok", SOON).await.is_some());
    // Our FIN reaches the echo server, which closes; its FIN comes back.
    c.shutdown().await.unwrap();
    let (got, end) = read_to_end(&mut c).await;
    assert!(got.is_empty());
    end.expect("a clean close");
}
