//! `GET /metrics` on both example servers, as real processes: after a
//! purchase the Prometheus text has the engine's and the HTTP series
//! (route templates, never raw paths, and `_bucket` series for quantiles),
//! and `promtool check metrics` accepts it. `promtool check config` also
//! accepts docs/prometheus.yml.
//!
//! promtool comes from Debian's `prometheus` package
//! (`scripts/install-promtool.sh`, run by `scripts/test-all.sh`). Where it
//! is missing the promtool checks are skipped with a message, except under
//! `CI=true`, where that is a failure.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use flashsale::jwt::{Claims, DEV_SECRET, sign_hs256};
use flashsale::metrics as m;
use flashsale::{Clock, SystemClock, UserId};

#[path = "common/servers.rs"]
mod servers;
use servers::start;

/// One sample line of the text format: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the sample lines of a Prometheus text body (label values here
/// hold no escaped quotes).
fn samples(body: &str) -> Vec<Sample> {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let name_end = line.find(['{', ' ']).expect("a name");
            let name = line[..name_end].to_owned();
            let mut labels = BTreeMap::new();
            let mut rest = &line[name_end..];
            if let Some(inner) = rest.strip_prefix('{') {
                let mut chars = inner.char_indices();
                let (mut key, mut value, mut in_value) = (String::new(), String::new(), false);
                let close = loop {
                    let (i, c) = chars.next().unwrap_or_else(|| panic!("unclosed: {line}"));
                    match (in_value, c) {
                        (false, '}') => break i,
                        (false, '=') => {}
                        (false, ',') => {}
                        (false, '"') => in_value = true,
                        (false, c) => key.push(c),
                        (true, '"') => {
                            labels.insert(std::mem::take(&mut key), std::mem::take(&mut value));
                            in_value = false;
                        }
                        (true, c) => value.push(c),
                    }
                };
                rest = &inner[close + 1..];
            }
            let value = rest
                .split_whitespace()
                .next()
                .unwrap_or_else(|| panic!("no value: {line}"));
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|e| panic!("{e}: {line}")),
            };
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    all.iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Runs `promtool <args>` with `stdin`, or says why it cannot.
fn promtool(args: &[&str], stdin: &str) -> Option<std::process::Output> {
    let child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is missing under CI=true (scripts/install-promtool.sh installs it)"
            );
            eprintln!(
                "SKIPPED `promtool {}`: promtool is not installed (scripts/install-promtool.sh)",
                args.join(" ")
            );
            return None;
        }
        Err(e) => panic!("running promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())
        .expect("writing to promtool");
    Some(child.wait_with_output().expect("promtool runs"))
}

async fn get_metrics(client: &reqwest::Client, base: &str) -> String {
    let response = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics answers");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.expect("a body")
}

async fn serves_prometheus_metrics(example: &str) {
    let server = start(example, &[]);
    let base = &server.base;
    let client = reqwest::Client::new();
    let token = sign_hs256(
        DEV_SECRET,
        &Claims::new(
            &UserId::new("metrics-buyer").unwrap(),
            SystemClock.now(),
            Duration::from_secs(600),
        ),
    )
    .unwrap();

    let bought = client
        .post(format!("{base}/buy/demo-sneakers"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("POST /buy answers");
    assert_eq!(bought.status(), 200, "{:?}", bought.text().await);
    let unknown = client
        .post(format!("{base}/buy/no-such-product"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let product = client
        .get(format!("{base}/products/demo-sneakers"))
        .send()
        .await
        .unwrap();
    assert_eq!(product.status(), 200);
    let nowhere = client
        .get(format!("{base}/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), 404);

    // The relay delivers the order in the background (at once, or within
    // its 200 ms tick).
    let mut body = String::new();
    for _ in 0..100 {
        body = get_metrics(&client, base).await;
        if value(&samples(&body), m::RELAY_DELIVERED_EVENTS_TOTAL, &[]) == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = samples(&body);

    // The engine's series.
    let buy_route = [("method", "POST"), ("route", "/buy/{product_id}")];
    assert_eq!(
        value(&all, m::PURCHASES_TOTAL, &[("outcome", "purchased")]),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        value(&all, m::PURCHASES_TOTAL, &[("outcome", "unknown_product")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &all,
            &format!("{}_count", m::PURCHASE_DURATION_SECONDS),
            &[]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &all,
            &format!("{}_bucket", m::PURCHASE_DURATION_SECONDS),
            &[("le", "+Inf")]
        ),
        Some(2.0)
    );
    assert!(
        value(
            &all,
            &format!("{}_bucket", m::PORT_CALL_DURATION_SECONDS),
            &[
                ("port", "stock_store"),
                ("operation", "reserve"),
                ("le", "0.0005")
            ]
        )
        .is_some(),
        "{body}"
    );
    assert_eq!(
        value(
            &all,
            m::STOCK_UNITS,
            &[("product", "demo-sneakers"), ("state", "sold")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &all,
            m::STOCK_UNITS,
            &[("product", "demo-sneakers"), ("state", "available")]
        ),
        Some(99.0)
    );
    assert_eq!(value(&all, m::RELAY_DELIVERED_EVENTS_TOTAL, &[]), Some(1.0));
    assert!(value(&all, m::RELAY_BACKLOG_EVENTS, &[]).is_some());
    assert!(value(&all, m::RELAY_LAG_SECONDS, &[]).is_some());

    // The HTTP series: route templates, statuses.
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut labels = buy_route.to_vec();
        labels.extend_from_slice(extra);
        labels
    };
    assert_eq!(
        value(&all, m::HTTP_REQUESTS_TOTAL, &with(&[("status", "200")])),
        Some(1.0)
    );
    assert_eq!(
        value(&all, m::HTTP_REQUESTS_TOTAL, &with(&[("status", "404")])),
        Some(1.0)
    );
    assert_eq!(
        value(
            &all,
            m::HTTP_REQUESTS_TOTAL,
            &[("route", "/products/{product_id}"), ("status", "200")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &all,
            m::HTTP_REQUESTS_TOTAL,
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0)
    );
    let buckets: Vec<&Sample> = all
        .iter()
        .filter(|s| {
            s.name == format!("{}_bucket", m::HTTP_REQUEST_DURATION_SECONDS)
                && s.labels.get("route").map(String::as_str) == Some("/buy/{product_id}")
                && s.labels.get("status").map(String::as_str) == Some("200")
        })
        .collect();
    assert_eq!(
        buckets.len(),
        m::LATENCY_BUCKETS.len() + 1,
        "one series per bucket and +Inf"
    );
    assert_eq!(buckets.last().map(|s| s.value), Some(1.0));
    // Ids never become label values.
    for s in &all {
        for v in s.labels.values() {
            assert!(
                !v.contains("no-such-product") && !v.contains("metrics-buyer"),
                "{s:?}"
            );
        }
        if let Some(route) = s.labels.get("route") {
            use flashsale::http::paths;
            let templates = [
                paths::BUY,
                paths::PRODUCT,
                paths::ADMIN_PRODUCT,
                paths::CONFIRM,
                paths::CANCEL,
                paths::HEALTHZ,
                paths::READYZ,
                "/metrics",
                "unmatched",
            ];
            assert!(templates.contains(&route.as_str()), "{s:?}");
        }
    }
    // Every flashsale series is described.
    for name in m::ENGINE_METRICS.iter().chain(m::HTTP_METRICS) {
        if all.iter().any(|s| {
            s.name
                .strip_prefix(name)
                .is_some_and(|r| r.is_empty() || r.starts_with('_'))
        }) {
            assert!(body.contains(&format!("# HELP {name} ")), "{name}: {body}");
            assert!(body.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }

    if let Some(out) = promtool(&["check", "metrics"], &body) {
        assert!(
            out.status.success(),
            "promtool check metrics failed:\n{}{}\n{body}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn axum_example_serves_prometheus_metrics() {
    serves_prometheus_metrics("axum_server").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn actix_example_serves_prometheus_metrics() {
    serves_prometheus_metrics("actix_server").await;
}

#[test]
fn the_prometheus_scrape_config_example_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/prometheus.yml");
    let config = std::fs::read_to_string(path).expect("docs/prometheus.yml");
    assert!(config.contains("metrics_path: /metrics"), "{config}");
    if let Some(out) = promtool(&["check", "config", path], "") {
        assert!(
            out.status.success(),
            "promtool check config failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
