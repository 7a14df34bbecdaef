//! What the Redis test files share: the server addresses the test script
//! exports, `redis-cli`, and throwaway `redis-server`s. Included with
//! `#[path]` by each Redis test file.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The comma-separated URLs in `var` (or `default`); fails, saying how to
/// run the tests, when there are none.
pub fn env_urls(var: &str, default: &str) -> Vec<String> {
    let raw = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    let urls: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        !urls.is_empty(),
        "{var} is not set: run the Redis tests through backends/redis/with-redis.sh, which \
         starts a Redis and a Redis Cluster"
    );
    urls
}

/// The node URLs of the Redis Cluster the test script started.
pub fn cluster_urls() -> Vec<String> {
    env_urls("FLASHSALE_REDIS_CLUSTER_URLS", "")
}

/// A free loopback port.
pub fn spare_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `redis-cli -p port args...`, its output trimmed.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli on PATH (apt-get install -y redis-server)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A throwaway `redis-server` on a spare loopback port, its data in a temp
/// dir; killed (and the dir removed) on drop.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one with `args` added to its command line (no RDB snapshots),
    /// once it answers `PING`.
    pub fn start(args: &[&str]) -> Self {
        // A port free a moment ago may be taken before redis-server binds
        // it (by another test's server, which would then answer our PING):
        // a server that cannot bind exits, and a fresh port is tried.
        for _ in 0..5 {
            let port = spare_port();
            let dir =
                std::env::temp_dir().join(format!("flashsale-redis-{port}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut server = Self {
                port,
                dir,
                args: args.iter().map(|a| (*a).to_owned()).collect(),
                child: None,
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server could not bind a spare loopback port in 5 tries");
    }

    /// Starts the process again (after [`kill`](Self::kill)), on the same
    /// port and data dir.
    pub fn respawn(&mut self) {
        assert!(
            self.spawn(),
            "redis-server exited at start on port {} (port taken?)",
            self.port
        );
    }

    /// Spawns redis-server and waits until it answers, as itself: `INFO`
    /// names its pid. False if it exited first (it could not bind).
    fn spawn(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}); install it (apt-get install -y \
                     redis-server) or run the tests through backends/redis/with-redis.sh"
                )
            });
        let ours = format!("process_id:{}", child.id());
        let port = self.port;
        let mut exited = false;
        self.wait_until("answers as the process just started", || {
            exited = matches!(child.try_wait(), Ok(Some(_)));
            exited || cli(port, &["info", "server"]).contains(&ours)
        });
        if exited {
            return false;
        }
        self.child = Some(child);
        true
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Polls `ok` for up to 10 s; fails naming `what`.
    pub fn wait_until(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {}: timed out waiting until {what}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no goodbye, no final flush.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
