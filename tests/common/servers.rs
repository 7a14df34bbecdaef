//! Example programs as real processes, for the end-to-end tests: built
//! once per test binary, started on ephemeral loopback ports, killed when
//! dropped. Included with `#[path]` by each e2e test file.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

/// Builds the examples once and returns the directory holding them.
pub fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(manifest).args([
            "build",
            "--example",
            "axum_server",
            "--example",
            "actix_server",
            "--example",
            "loadtest",
        ]);
        // The same features in every test binary that builds examples, so
        // one binary's build never replaces the examples another is running.
        let features: Vec<&str> = [
            ("redis", cfg!(feature = "redis")),
            ("mysql", cfg!(feature = "mysql")),
            ("kafka", cfg!(feature = "kafka")),
        ]
        .into_iter()
        .filter_map(|(f, on)| on.then_some(f))
        .collect();
        if features.contains(&"kafka") && features.contains(&"mysql") {
            cmd.args(["--example", "order_worker"]);
        }
        if !features.is_empty() {
            cmd.args(["--features", &features.join(",")]);
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "building the examples failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| manifest.join("target"));
        let target = if target.is_absolute() {
            target
        } else {
            manifest.join(target)
        };
        target.join("debug").join("examples")
    })
}

/// A running example server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `example` on a free port with `env`, and waits for its
/// "listening on http://..." line. Its logs go to the test's stderr.
pub fn start(example: &str, env: &[(&str, &str)]) -> Server {
    start_logging_to(example, env, Stdio::inherit())
}

/// [`start`], with the server's stderr (its logs) going to `stderr`.
pub fn start_logging_to(example: &str, env: &[(&str, &str)], stderr: Stdio) -> Server {
    let mut cmd = Command::new(examples_dir().join(example));
    // Only what this test says: the test runner exports FLASHSALE_REDIS_URL.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FLASHSALE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("FLASHSALE_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {example}: {e}"));
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.trim().to_owned());
            }
        }
    });
    let base = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(base) => base,
        Err(_) => {
            let _ = child.kill();
            panic!("{example} did not say where it listens within 60 s");
        }
    };
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    Server { child, base }
}

pub fn loadtest(args: &[&str]) -> Output {
    Command::new(examples_dir().join("loadtest"))
        .args(args)
        .args(["--max-duration", "120"])
        .stdin(Stdio::null())
        .output()
        .expect("the load test runs")
}

/// The number on the load test's `200 OK` line.
pub fn count_200(stdout: &str) -> u64 {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with("200 "))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub async fn levels(base: &str, product: &str) -> serde_json::Value {
    let body = reqwest::get(format!("{base}/products/{product}"))
        .await
        .expect("GET /products answers")
        .text()
        .await
        .expect("a body");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}
