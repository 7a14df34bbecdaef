//! The CI soak (issue 10): the axum example server on Redis under the load
//! test's mixed workload (buy, replay, confirm, cancel, restock) for 30
//! seconds, on a hold sale whose holds expire during the run. The load test
//! must exit 0 and print every invariant as OK; the server's resident
//! memory is sampled and reported, with a deliberately loose bound (see
//! [`rss_bound_kib`]). `scripts/soak.sh` is the five-minute version.
//!
//! Needs the Redis that `scripts/test-all.sh` provides (it exports
//! `FLASHSALE_REDIS_URL`); without one the server cannot start and the test
//! fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flashsale::jwt::{Claims, DEV_SECRET, sign_hs256};
use flashsale::{Clock, SystemClock, UserId};

#[path = "common/servers.rs"]
mod servers;
use servers::{loadtest, start};

const SECONDS: &str = "30";
const MIX: &str = "buy=70,replay=10,confirm=8,cancel=7,restock=5";
/// Short holds, so that most of them expire during the run and the
/// server's sweeper is part of the soak; the load test waits out the last
/// ones (at most this long) before it checks the stock.
const HOLD_SECONDS: u64 = 10;

/// The invariant lines a passing mixed run prints.
const INVARIANTS: [&str; 7] = [
    "levels", "oversell", "units", "restock", "replays", "user cap", "states",
];

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The order events the server's relay delivered, from `GET /metrics`.
async fn delivered_events(base: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("GET /metrics answers")
        .text()
        .await
        .expect("a body");
    text.lines()
        .filter(|l| l.starts_with("flashsale_relay_delivered_events_total"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Deletes the test's keys when dropped (even when the test fails), so
/// a run outside `scripts/test-all.sh` leaves no trace either. On a
/// standalone Redis every order has its own index key, so there are many.
struct Keys {
    url: String,
    prefix: String,
}

impl Drop for Keys {
    fn drop(&mut self) {
        let Ok(mut con) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        for pattern in [format!("{}*", self.prefix), format!("{{{}*", self.prefix)] {
            let mut cursor = 0u64;
            loop {
                let Ok((next, keys)) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query::<(u64, Vec<String>)>(&mut con)
                else {
                    break;
                };
                if !keys.is_empty() {
                    let _ = redis::cmd("UNLINK").arg(&keys).query::<()>(&mut con);
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
    }
}

/// How far above its starting RSS the server may end, in KiB.
///
/// Without Kafka the example server's order sink is
/// `MemoryOrderSink::bounded(10_000)`, so the RSS should level off once
/// the runtime's threads, connection buffers and the metrics registry are
/// warm: 17.9 -> 24.7 MiB (+6.8) in a measured debug run of this test,
/// flat after the first 20 s, and 7.5 -> 18.3 MiB over a 5-minute release
/// soak. 24 MiB of growth is 3.5 times what was measured, and below what
/// a sink that kept every event would add here (about 300 bytes for each
/// of the ~70,000 events of a run, on top of the same warm-up).
fn rss_bound_kib(start_kib: u64) -> u64 {
    start_kib + 24 * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_30_second_mixed_soak_on_redis_keeps_every_invariant() {
    let url = std::env::var("FLASHSALE_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let prefix = format!("flashsale-test:soak-{}", uuid::Uuid::now_v7().simple());
    let _keys = Keys {
        url: url.clone(),
        prefix: prefix.clone(),
    };
    let server = start(
        "axum_server",
        &[
            ("FLASHSALE_REDIS_URL", url.as_str()),
            ("FLASHSALE_REDIS_PREFIX", prefix.as_str()),
        ],
    );
    let pid = server.child.id();

    // The soak sale: a hold sale with room for many buyers.
    let admin = Claims::new(
        &UserId::new("soak-admin").unwrap(),
        SystemClock.now(),
        Duration::from_secs(600),
    )
    .with_roles(["admin"]);
    let token = sign_hs256(DEV_SECRET, &admin).unwrap();
    let created = reqwest::Client::new()
        .put(format!("{}/admin/products/soak", server.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"stock\": 2000, \"per_user_limit\": 50, \"per_order_max\": 2, \
             \"hold_seconds\": {HOLD_SECONDS}}}"
        ))
        .send()
        .await
        .expect("PUT answers");
    assert_eq!(created.status(), 201, "{:?}", created.text().await);

    let start_kib = rss_kib(pid).expect("the server's /proc status");
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(u64, u64)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, stop) = (samples.clone(), stop.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let secs = t0.elapsed().as_secs();
                let mut s = samples.lock().unwrap();
                if secs >= 5 * (s.len() as u64 + 1)
                    && let Some(kib) = rss_kib(pid)
                {
                    s.push((secs, kib));
                }
            }
        })
    };

    let base = server.base.clone();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        loadtest(&[
            "--url",
            &base,
            "--product",
            "soak",
            "--duration",
            SECONDS,
            "--mix",
            MIX,
            "--users",
            "1000",
            "--concurrency",
            "32",
        ])
    })
    .await
    .unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let end_kib = rss_kib(pid).expect("the server is still running");
    let events = delivered_events(&server.base).await;

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let trail: Vec<String> = samples
        .lock()
        .unwrap()
        .iter()
        .map(|(s, k)| format!("{s}s {:.1}", mib(*k)))
        .collect();
    eprintln!(
        "soak: {SECONDS} s mixed load ({:.1} s with settling); server RSS start {:.1} MiB, \
         end {:.1} MiB (samples, MiB: {}); {events} order events delivered",
        took.as_secs_f64(),
        mib(start_kib),
        mib(end_kib),
        trail.join(", ")
    );
    eprintln!("{stdout}");

    assert!(
        out.status.success(),
        "the soak failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("\nresult      PASS"), "{stdout}");
    for name in INVARIANTS {
        let ok = format!("  {name:<10} OK: ");
        assert!(stdout.contains(&ok), "no {ok:?} line:\n{stdout}");
    }
    assert!(!stdout.contains(" FAIL"), "{stdout}");
    assert!(!stdout.contains("<- unexpected"), "{stdout}");
    // Every operation of the mix was exercised.
    for op in ["buy", "replay", "confirm", "cancel", "restock"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{op} ")) && l.contains(" 200 ")),
            "no answered {op}:\n{stdout}"
        );
    }
    let bound = rss_bound_kib(start_kib);
    assert!(
        end_kib <= bound,
        "the server's RSS grew from {:.1} MiB to {:.1} MiB, above the {:.1} MiB bound for \
         {events} order events",
        mib(start_kib),
        mib(end_kib),
        mib(bound)
    );
}
