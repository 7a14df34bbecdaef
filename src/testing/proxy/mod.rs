//! A TCP proxy that injects faults between a client and a server, for
//! fault tests on real connections (toxiproxy's job, in process).
//!
//! [`FaultProxy::start`] listens on an ephemeral loopback port and opens one
//! upstream connection per client connection. Each direction
//! ([`Direction::ToServer`], [`Direction::ToClient`]) has its own
//! [`Fault`], which can be changed at any time and applies at once to every
//! open connection, including bytes already read and waiting:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use flashsale::testing::proxy::{Direction, Fault, FaultProxy};
//!
//! let proxy = FaultProxy::start("127.0.0.1:6379").await?;
//! let url = format!("redis://{}", proxy.local_addr());
//! // ... connect the store under test to `url` ...
//! proxy.set(Direction::ToClient, Fault::Delay(Duration::from_millis(500)));
//! // ... every reply now arrives half a second late ...
//! proxy.heal();
//! # Ok(()) }
//! ```
//!
//! Bytes are forwarded in the order they arrive, one read at a time per
//! direction; the proxy never reorders or duplicates them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Which way bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client (the code under test) to the server: requests.
    ToServer,
    /// From the server to the client: replies.
    ToClient,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }
}

/// What happens to the bytes of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forwarded at once.
    #[default]
    Pass,
    /// Each read is forwarded after this long: a slow link or a slow but
    /// alive server.
    Delay(Duration),
    /// Held back (connections stay open) until the fault changes, then
    /// forwarded: a stall, then recovery.
    Stall,
    /// Swallowed: the connection stays open and the bytes are never
    /// delivered (a black hole; a client waits for its timeout).
    Drop,
    /// The next byte that arrives resets the connection (RST to both ends)
    /// instead of being forwarded.
    Reset,
    /// Per connection, forwards this many more bytes (counted from when the
    /// fault is set, or from when a later connection opens), then closes
    /// the connection (FIN to both ends). `CloseAfter(0)` closes at the
    /// next byte; a cut in the middle of a reply or a transaction.
    CloseAfter(u64),
}

/// Counters of what went through a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub connections: u64,
    /// Bytes forwarded to the server.
    pub bytes_to_server: u64,
    /// Bytes forwarded to the client.
    pub bytes_to_client: u64,
    /// Bytes swallowed by [`Fault::Drop`].
    pub bytes_dropped: u64,
    /// Connections the proxy cut: reset ([`Fault::Reset`],
    /// [`FaultProxy::reset_all`], [`FaultProxy::set_down`]) or closed
    /// ([`Fault::CloseAfter`]).
    pub cuts: u64,
}

/// The proxy's settings; every connection watches them.
#[derive(Debug, Clone, Copy, Default)]
struct Settings {
    faults: [Fault; 2],
    /// Bumped whenever a direction's fault is set, so `CloseAfter` budgets
    /// restart.
    generations: [u64; 2],
    /// Bumped by `reset_all`: every connection open at that moment is reset.
    reset_epoch: u64,
    /// New and open connections are reset while set.
    down: bool,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    forwarded: [AtomicU64; 2],
    dropped: AtomicU64,
    cuts: AtomicU64,
}

/// A fault-injecting TCP proxy in front of one server. Dropping it stops
/// accepting and closes every connection it carries.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: String,
    settings: watch::Sender<Settings>,
    counters: Arc<Counters>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` forwarding to `upstream`
    /// (`host:port`). Faults start as [`Fault::Pass`].
    pub async fn start(upstream: impl Into<String>) -> io::Result<Self> {
        Self::bind("127.0.0.1:0", upstream).await
    }

    /// Starts a proxy listening on `listen` (e.g. a port a server must be
    /// told about before the proxy exists).
    pub async fn bind(listen: &str, upstream: impl Into<String>) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        Self::from_listener(listener, upstream.into())
    }

    /// Starts a proxy on an already bound listener.
    pub fn from_listener(listener: TcpListener, upstream: String) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let (settings, watcher) = watch::channel(Settings::default());
        let counters = Arc::new(Counters::default());
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream.clone(),
            watcher,
            counters.clone(),
        ));
        Ok(Self {
            addr,
            upstream,
            settings,
            counters,
            accept,
        })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server it forwards to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Sets the fault of one direction, for open and future connections.
    pub fn set(&self, direction: Direction, fault: Fault) {
        self.settings.send_modify(|s| {
            let i = direction.index();
            s.faults[i] = fault;
            s.generations[i] += 1;
        });
    }

    /// Sets the same fault on both directions.
    pub fn set_both(&self, fault: Fault) {
        self.set(Direction::ToServer, fault);
        self.set(Direction::ToClient, fault);
    }

    /// The fault currently set on `direction`.
    pub fn fault(&self, direction: Direction) -> Fault {
        self.settings.borrow().faults[direction.index()]
    }

    /// Resets every connection open now (RST to both ends). Later
    /// connections are not affected.
    pub fn reset_all(&self) {
        self.settings.send_modify(|s| s.reset_epoch += 1);
    }

    /// `true`: the server looks down: every open connection is reset and
    /// every new one is reset as soon as it is accepted. `false`: it is back.
    pub fn set_down(&self, down: bool) {
        self.settings.send_modify(|s| s.down = down);
    }

    /// Back to normal: both directions [`Fault::Pass`], not down.
    pub fn heal(&self) {
        self.set_both(Fault::Pass);
        self.set_down(false);
    }

    /// What went through so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &*self.counters;
        ProxyStats {
            connections: c.connections.load(Ordering::Relaxed),
            bytes_to_server: c.forwarded[0].load(Ordering::Relaxed),
            bytes_to_client: c.forwarded[1].load(Ordering::Relaxed),
            bytes_dropped: c.dropped.load(Ordering::Relaxed),
            cuts: c.cuts.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Open connections end when they see the settings' sender go.
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: String,
    settings: watch::Receiver<Settings>,
    counters: Arc<Counters>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off, keep serving.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let (upstream, settings, counters) = (upstream.clone(), settings.clone(), counters.clone());
        tokio::spawn(async move {
            if settings.borrow().down {
                counters.cuts.fetch_add(1, Ordering::Relaxed);
                reset(&client);
                return;
            }
            // A server that refuses: the client sees its connection close.
            let Ok(server) = TcpStream::connect(upstream.as_str()).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            carry(client, server, settings, &counters).await;
        });
    }
}

/// How a pump ended.
enum End {
    /// Its source closed: pass the close on, keep the other direction.
    Eof,
    /// An I/O error, or the proxy went away: close both.
    Gone,
    /// Close both ends (FIN).
    Close,
    /// Reset both ends (RST).
    Reset,
}

/// Carries one connection until it ends or a fault cuts it.
async fn carry(
    mut client: TcpStream,
    mut server: TcpStream,
    settings: watch::Receiver<Settings>,
    counters: &Counters,
) {
    let epoch = settings.borrow().reset_epoch;
    let end = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let to_server = pump(
            Direction::ToServer,
            &mut client_read,
            &mut server_write,
            settings.clone(),
            counters,
        );
        let to_client = pump(
            Direction::ToClient,
            &mut server_read,
            &mut client_write,
            settings.clone(),
            counters,
        );
        let mut watcher = settings.clone();
        let cut_from_outside = async move {
            loop {
                {
                    let s = watcher.borrow_and_update();
                    if s.down || s.reset_epoch != epoch {
                        return End::Reset;
                    }
                }
                if watcher.changed().await.is_err() {
                    return End::Gone;
                }
            }
        };
        tokio::pin!(to_server, to_client, cut_from_outside);
        // A direction whose source closed stays closed; the other may
        // still carry an answer.
        let (mut server_bound_open, mut client_bound_open) = (true, true);
        loop {
            let end = tokio::select! {
                e = &mut to_server, if server_bound_open => {
                    server_bound_open = false;
                    e
                }
                e = &mut to_client, if client_bound_open => {
                    client_bound_open = false;
                    e
                }
                e = &mut cut_from_outside => break e,
            };
            match end {
                End::Eof if server_bound_open || client_bound_open => {}
                other => break other,
            }
        }
    };
    match end {
        End::Reset => {
            counters.cuts.fetch_add(1, Ordering::Relaxed);
            reset(&client);
            reset(&server);
        }
        End::Close => {
            counters.cuts.fetch_add(1, Ordering::Relaxed);
        }
        End::Eof | End::Gone => {}
    }
    // Dropping both streams closes them (FIN, or RST after zero linger).
}

/// Makes the socket's close send RST instead of FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Forwards one direction, applying its fault to every read.
async fn pump<R, W>(
    direction: Direction,
    from: &mut R,
    to: &mut W,
    mut settings: watch::Receiver<Settings>,
    counters: &Counters,
) -> End
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let i = direction.index();
    let mut buf = vec![0u8; 16 * 1024];
    // The `CloseAfter` budget: (the fault's generation, bytes sent since).
    let mut budget = (settings.borrow().generations[i], 0u64);
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return End::Eof;
            }
            Ok(n) => n,
            Err(_) => return End::Gone,
        };
        let chunk = &buf[..n];
        loop {
            let (fault, generation) = {
                let s = settings.borrow_and_update();
                (s.faults[i], s.generations[i])
            };
            if generation != budget.0 {
                budget = (generation, 0);
            }
            match fault {
                Fault::Pass => {
                    if forward(to, chunk, &counters.forwarded[i]).await.is_err() {
                        return End::Gone;
                    }
                    budget.1 += n as u64;
                }
                Fault::Delay(d) => {
                    tokio::time::sleep(d).await;
                    if forward(to, chunk, &counters.forwarded[i]).await.is_err() {
                        return End::Gone;
                    }
                    budget.1 += n as u64;
                }
                Fault::Stall => {
                    if settings.changed().await.is_err() {
                        return End::Gone;
                    }
                    continue;
                }
                Fault::Drop => {
                    counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
                }
                Fault::Reset => return End::Reset,
                Fault::CloseAfter(limit) => {
                    let room = limit.saturating_sub(budget.1);
                    let take = usize::try_from(room).unwrap_or(usize::MAX).min(n);
                    if take > 0
                        && forward(to, &chunk[..take], &counters.forwarded[i])
                            .await
                            .is_err()
                    {
                        return End::Gone;
                    }
                    budget.1 += take as u64;
                    if take < n {
                        return End::Close;
                    }
                }
            }
            break;
        }
    }
}

async fn forward<W>(to: &mut W, bytes: &[u8], counter: &AtomicU64) -> io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    // Counted first, so a client that has read the bytes sees them counted.
    counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    to.write_all(bytes).await
}

#[cfg(test)]
mod tests;
