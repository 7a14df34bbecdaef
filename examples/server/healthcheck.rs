//! `--healthcheck`: asks this machine's server for `GET /healthz` and exits
//! 0 on a `200`, 1 otherwise. It is the container image's `HEALTHCHECK`
//! (the image holds no shell and no curl), and needs nothing but std.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

/// Probes `listen` (the `FLASHSALE_LISTEN` value); a wildcard address is
/// probed on loopback.
pub fn run(listen: &str) -> ExitCode {
    match probe(listen) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("unhealthy: {why}");
            ExitCode::FAILURE
        }
    }
}

fn probe(listen: &str) -> Result<(), String> {
    let mut addr: SocketAddr = listen
        .to_socket_addrs()
        .map_err(|e| format!("FLASHSALE_LISTEN={listen:?} is not an address: {e}"))?
        .next()
        .ok_or_else(|| format!("FLASHSALE_LISTEN={listen:?} resolves to nothing"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).ok();
    stream.set_write_timeout(Some(TIMEOUT)).ok();
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    // "HTTP/1.1 200": the status is bytes 9 to 12 of the status line.
    if head.starts_with(b"HTTP/") && &head[8..] == b" 200" {
        Ok(())
    } else {
        Err(format!(
            "GET /healthz on {addr} answered {:?}",
            String::from_utf8_lossy(&head)
        ))
    }
}
