//! What the engine records through the `metrics` facade, read back from
//! `metrics-util`'s `DebuggingRecorder` installed locally (per test, on the
//! test's own thread) around engine calls on the memory backends; failing
//! ports are mockall mocks. Also: the Grafana dashboard in docs/grafana
//! references only metrics the crate or the example servers export.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flashsale::memory::{
    MemoryOrderSink, MemoryRateLimiter, MemoryStockStore, StaticAuthenticator,
};
use flashsale::metrics as m;
use flashsale::{
    Credentials, Engine, EngineBuilder, Error, ManualClock, Outcome, ProductId, PurchaseRequest,
    Quantity, Sale, SoldOutCache,
};
use flashsale::{OrderEvent, Principal, Timestamp, UserId};
use flashsale::{OrderSink, RateDecision, RateLimiter, StockStore};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use mockall::mock;

const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

mock! {
    Sink {}
    #[async_trait]
    impl OrderSink for Sink {
        async fn submit(&self, events: &[OrderEvent]) -> flashsale::Result<()>;
    }
}

mock! {
    Limiter {}
    #[async_trait]
    impl RateLimiter for Limiter {
        async fn check(&self, key: &str, cost: u32) -> flashsale::Result<RateDecision>;
    }
}

// ------------------------------------------------------------ harness

/// Everything recorded by one test.
struct Recorded(Vec<(CompositeKey, DebugValue)>);

type Labels<'a> = &'a [(&'a str, &'a str)];

impl Recorded {
    fn find(&self, kind: MetricKind, name: &str, labels: Labels<'_>) -> Option<&DebugValue> {
        let want: BTreeSet<(&str, &str)> = labels.iter().copied().collect();
        self.0
            .iter()
            .find(|(k, _)| {
                let have: BTreeSet<(&str, &str)> =
                    k.key().labels().map(|l| (l.key(), l.value())).collect();
                k.kind() == kind && k.key().name() == name && have == want
            })
            .map(|(_, v)| v)
    }

    /// A counter's value (0 if it was never recorded).
    fn counter(&self, name: &str, labels: Labels<'_>) -> u64 {
        match self.find(MetricKind::Counter, name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            Some(other) => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, labels: Labels<'_>) -> Option<f64> {
        match self.find(MetricKind::Gauge, name, labels)? {
            DebugValue::Gauge(v) => Some(v.into_inner()),
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    /// A histogram's samples (empty if it was never recorded).
    fn histogram(&self, name: &str, labels: Labels<'_>) -> Vec<f64> {
        match self.find(MetricKind::Histogram, name, labels) {
            Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
            None => Vec::new(),
            Some(other) => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    /// Every label set recorded for `name`.
    fn series(&self, name: &str) -> Vec<Vec<(String, String)>> {
        self.0
            .iter()
            .filter(|(k, _)| k.key().name() == name)
            .map(|(k, _)| {
                k.key()
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect()
            })
            .collect()
    }
}

/// Runs `test` on a current-thread runtime (paused time) with a fresh
/// debugging recorder installed for this thread only, and returns what it
/// recorded.
fn recorded<Fut: Future<Output = ()>>(test: impl FnOnce() -> Fut) -> Recorded {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime")
            .block_on(test())
    });
    Recorded(
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(k, _, _, v)| (k, v))
            .collect(),
    )
}

fn user_token(n: usize) -> String {
    format!("token-{n}")
}

/// An authenticator knowing users 0..10 by `token-<n>`.
fn auth() -> Arc<StaticAuthenticator> {
    let mut auth = StaticAuthenticator::new();
    for n in 0..10 {
        auth.insert(
            user_token(n),
            Principal::user(UserId::new(format!("user-{n}")).unwrap()),
        );
    }
    Arc::new(auth)
}

/// Memory ports (the sink is returned for inspection), a manual clock at T0.
fn builder(clock: &ManualClock) -> EngineBuilder {
    Engine::builder()
        .stock_store(Arc::new(MemoryStockStore::new()))
        .rate_limiter(Arc::new(MemoryRateLimiter::with_clock(
            "100/1s".parse().unwrap(),
            Arc::new(clock.clone()),
        )))
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(auth())
        .clock(Arc::new(clock.clone()))
        .port_timeout(Duration::from_millis(100))
}

fn product(id: &str) -> ProductId {
    ProductId::new(id).unwrap()
}

async fn sale(engine: &Engine, id: &str, stock: u32) -> ProductId {
    let p = product(id);
    engine
        .create_sale(
            &Sale::builder(p.clone(), stock)
                .per_user_limit(10)
                .per_order_max(10)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    p
}

async fn buy(engine: &Engine, user: usize, p: &ProductId) -> Outcome {
    engine
        .purchase(
            &Credentials::bearer(user_token(user)),
            PurchaseRequest::new(p.clone(), Quantity::ONE),
        )
        .await
}

fn outcome(code: &str) -> [(&str, &str); 1] {
    [("outcome", code)]
}

// -------------------------------------------------------------- tests

#[test]
fn purchases_are_counted_by_outcome_and_timed() {
    let r = recorded(|| async {
        let engine = builder(&ManualClock::new(T0)).build().unwrap();
        let p = sale(&engine, "drop", 2).await;
        for user in 0..2 {
            assert!(matches!(
                buy(&engine, user, &p).await,
                Outcome::Purchased(_)
            ));
        }
        assert!(matches!(buy(&engine, 2, &p).await, Outcome::SoldOut));
        assert!(matches!(
            engine
                .purchase(
                    &Credentials::bearer("wrong"),
                    PurchaseRequest::new(p.clone(), Quantity::ONE)
                )
                .await,
            Outcome::Unauthenticated(_)
        ));
        assert!(matches!(
            buy(&engine, 3, &product("no-such-drop")).await,
            Outcome::UnknownProduct
        ));
    });
    assert_eq!(r.counter(m::PURCHASES_TOTAL, &outcome("purchased")), 2);
    assert_eq!(r.counter(m::PURCHASES_TOTAL, &outcome("sold_out")), 1);
    assert_eq!(
        r.counter(m::PURCHASES_TOTAL, &outcome("unauthenticated")),
        1
    );
    assert_eq!(
        r.counter(m::PURCHASES_TOTAL, &outcome("unknown_product")),
        1
    );
    assert_eq!(r.counter(m::RATE_LIMITED_TOTAL, &[]), 0);
    let took = r.histogram(m::PURCHASE_DURATION_SECONDS, &[]);
    assert_eq!(took.len(), 5, "one sample per purchase");
    assert!(took.iter().all(|s| (0.0..1.0).contains(s)), "{took:?}");
    // Each attempt that got past authentication checked the rate (the
    // unknown product never got that far); reserves: 2 sold, 1 sold out.
    let op = |port, operation| {
        r.histogram(
            m::PORT_CALL_DURATION_SECONDS,
            &[("port", port), ("operation", operation)],
        )
        .len()
    };
    assert_eq!(op("authenticator", "authenticate"), 5);
    assert_eq!(op("rate_limiter", "rate_check"), 3);
    assert_eq!(op("stock_store", "reserve"), 3);
    assert_eq!(op("stock_store", "create_sale"), 1);
    assert!(r.series(m::PORT_CALL_FAILURES_TOTAL).is_empty());
}

#[test]
fn rate_limited_attempts_are_counted() {
    let r = recorded(|| async {
        let clock = ManualClock::new(T0);
        let engine = builder(&clock)
            .rate_limiter(Arc::new(MemoryRateLimiter::with_clock(
                "1/1m".parse().unwrap(),
                Arc::new(clock.clone()),
            )))
            .build()
            .unwrap();
        let p = sale(&engine, "drop", 10).await;
        assert!(matches!(buy(&engine, 0, &p).await, Outcome::Purchased(_)));
        for _ in 0..3 {
            assert!(matches!(
                buy(&engine, 0, &p).await,
                Outcome::RateLimited { .. }
            ));
        }
    });
    assert_eq!(r.counter(m::RATE_LIMITED_TOTAL, &[]), 3);
    assert_eq!(r.counter(m::PURCHASES_TOTAL, &outcome("rate_limited")), 3);
    assert_eq!(r.counter(m::PURCHASES_TOTAL, &outcome("purchased")), 1);
}

#[test]
fn a_failing_port_is_counted_with_its_port_operation_and_kind() {
    let r = recorded(|| async {
        let mut limiter = MockLimiter::new();
        limiter
            .expect_check()
            .times(1)
            .returning(|_, _| Err(Error::backend("test", "check", "connection reset")));
        let engine = builder(&ManualClock::new(T0))
            .rate_limiter(Arc::new(limiter))
            .build()
            .unwrap();
        let p = sale(&engine, "drop", 10).await;
        assert!(matches!(
            buy(&engine, 0, &p).await,
            Outcome::Unavailable { .. }
        ));
    });
    let labels = [
        ("port", "rate_limiter"),
        ("operation", "rate_check"),
        ("kind", "error"),
    ];
    assert_eq!(r.counter(m::PORT_CALL_FAILURES_TOTAL, &labels), 1);
    assert_eq!(
        r.series(m::PORT_CALL_FAILURES_TOTAL).len(),
        1,
        "nothing else failed"
    );
    assert_eq!(
        r.histogram(
            m::PORT_CALL_DURATION_SECONDS,
            &[("port", "rate_limiter"), ("operation", "rate_check")]
        )
        .len(),
        1,
        "a failed call is timed too"
    );
    assert_eq!(r.counter(m::PURCHASES_TOTAL, &outcome("unavailable")), 1);
}

#[test]
fn a_port_that_hangs_is_counted_as_a_timeout() {
    let r = recorded(|| async {
        let engine = builder(&ManualClock::new(T0))
            .rate_limiter(Arc::new(HangingLimiter))
            .build()
            .unwrap();
        let p = sale(&engine, "drop", 10).await;
        assert!(matches!(
            buy(&engine, 0, &p).await,
            Outcome::Unavailable { .. }
        ));
        // A sink that never answers, under the engine's own timeout.
        let engine = builder(&ManualClock::new(T0))
            .order_sink(Arc::new(Hanging))
            .build()
            .unwrap();
        let p = sale(&engine, "drop", 10).await;
        assert!(matches!(buy(&engine, 0, &p).await, Outcome::Purchased(_)));
        assert!(engine.relay_once().await.is_err());
    });
    let failures = |port, operation, kind| {
        r.counter(
            m::PORT_CALL_FAILURES_TOTAL,
            &[("port", port), ("operation", operation), ("kind", kind)],
        )
    };
    assert_eq!(failures("rate_limiter", "rate_check", "timeout"), 1);
    assert_eq!(failures("order_sink", "submit", "timeout"), 1);
    assert_eq!(failures("order_sink", "submit", "error"), 0);
    let submit = r.histogram(
        m::PORT_CALL_DURATION_SECONDS,
        &[("port", "order_sink"), ("operation", "submit")],
    );
    assert_eq!(submit.len(), 1, "a timed-out call is timed too");
    assert_eq!(r.counter(m::RELAY_ERRORS_TOTAL, &[("stage", "submit")]), 1);
}

/// A rate limiter that never answers.
struct HangingLimiter;

#[async_trait]
impl RateLimiter for HangingLimiter {
    async fn check(&self, _: &str, _: u32) -> flashsale::Result<RateDecision> {
        std::future::pending().await
    }
}

/// An order sink that never answers.
struct Hanging;

#[async_trait]
impl OrderSink for Hanging {
    async fn submit(&self, _: &[OrderEvent]) -> flashsale::Result<()> {
        std::future::pending().await
    }
}

#[test]
fn the_relay_counts_delivered_events_backlog_and_lag() {
    let clock = ManualClock::new(T0);
    let r = recorded(|| async {
        let engine = builder(&clock).build().unwrap();
        let p = sale(&engine, "drop", 10).await;
        for user in 0..3 {
            assert!(matches!(
                buy(&engine, user, &p).await,
                Outcome::Purchased(_)
            ));
        }
        clock.advance(Duration::from_secs(5));
        assert_eq!(engine.relay_once().await.unwrap(), 3);
    });
    assert_eq!(r.counter(m::RELAY_DELIVERED_EVENTS_TOTAL, &[]), 3);
    assert_eq!(r.gauge(m::RELAY_BACKLOG_EVENTS, &[]), Some(3.0));
    assert_eq!(r.gauge(m::RELAY_LAG_SECONDS, &[]), Some(5.0));
    assert!(r.series(m::RELAY_ERRORS_TOTAL).is_empty());

    // Once the outbox is empty, backlog and lag read 0.
    let r = recorded(|| async {
        let engine = builder(&clock).build().unwrap();
        let p = sale(&engine, "drop", 10).await;
        assert!(matches!(buy(&engine, 0, &p).await, Outcome::Purchased(_)));
        assert_eq!(engine.drain_outbox().await.unwrap(), 1);
    });
    assert_eq!(r.counter(m::RELAY_DELIVERED_EVENTS_TOTAL, &[]), 1);
    assert_eq!(r.gauge(m::RELAY_BACKLOG_EVENTS, &[]), Some(0.0));
    assert_eq!(r.gauge(m::RELAY_LAG_SECONDS, &[]), Some(0.0));
}

#[test]
fn a_sink_failure_is_a_relay_error_and_nothing_is_counted_delivered() {
    let r = recorded(|| async {
        let mut sink = MockSink::new();
        sink.expect_submit()
            .times(1)
            .returning(|_| Err(Error::backend("test", "submit", "broker down")));
        sink.expect_submit().returning(|_| Ok(()));
        let engine = builder(&ManualClock::new(T0))
            .order_sink(Arc::new(sink))
            .build()
            .unwrap();
        let p = sale(&engine, "drop", 10).await;
        assert!(matches!(buy(&engine, 0, &p).await, Outcome::Purchased(_)));
        assert!(engine.relay_once().await.is_err());
        // The kept batch is resent on the next pass.
        assert_eq!(engine.relay_once().await.unwrap(), 1);
    });
    assert_eq!(r.counter(m::RELAY_ERRORS_TOTAL, &[("stage", "submit")]), 1);
    assert_eq!(r.counter(m::RELAY_ERRORS_TOTAL, &[("stage", "claim")]), 0);
    assert_eq!(
        r.counter(
            m::PORT_CALL_FAILURES_TOTAL,
            &[
                ("port", "order_sink"),
                ("operation", "submit"),
                ("kind", "error")
            ]
        ),
        1
    );
    assert_eq!(r.counter(m::RELAY_DELIVERED_EVENTS_TOTAL, &[]), 1);
}

#[test]
fn sold_out_cache_hits_are_counted() {
    let clock = ManualClock::new(T0);
    let r = recorded(|| async {
        let store = SoldOutCache::with_clock(
            MemoryStockStore::new(),
            Duration::from_secs(1),
            Arc::new(clock.clone()),
        );
        let store = Arc::new(store);
        let engine = builder(&clock)
            .stock_store(store.clone() as Arc<dyn StockStore>)
            .build()
            .unwrap();
        let p = sale(&engine, "drop", 1).await;
        assert!(matches!(buy(&engine, 0, &p).await, Outcome::Purchased(_)));
        // Later requests (the cache only refuses requests made after the
        // sell-out it saw).
        clock.advance(Duration::from_millis(1));
        assert!(matches!(buy(&engine, 1, &p).await, Outcome::SoldOut));
        clock.advance(Duration::from_millis(1));
        for user in 2..6 {
            assert!(matches!(buy(&engine, user, &p).await, Outcome::SoldOut));
        }
        assert_eq!(store.hits(), 4);
    });
    assert_eq!(r.counter(m::SOLD_OUT_CACHE_HITS_TOTAL, &[]), 4);
    assert_eq!(r.counter(m::PURCHASES_TOTAL, &outcome("sold_out")), 5);
}

#[test]
fn stock_gauges_follow_snapshots_for_a_bounded_number_of_products() {
    let r = recorded(|| async {
        let engine = builder(&ManualClock::new(T0))
            .stock_gauge_products(2)
            .build()
            .unwrap();
        let a = sale(&engine, "a", 10).await;
        let b = sale(&engine, "b", 5).await;
        let c = sale(&engine, "c", 7).await;
        for user in 0..3 {
            assert!(matches!(
                buy(&engine, user, &a).await,
                Outcome::Purchased(_)
            ));
        }
        for p in [&a, &b, &c, &a] {
            engine.snapshot(p).await.unwrap().unwrap();
        }
        // Unknown products never get a series.
        assert!(engine.snapshot(&product("nope")).await.unwrap().is_none());
    });
    let stock = |p, state| r.gauge(m::STOCK_UNITS, &[("product", p), ("state", state)]);
    assert_eq!(stock("a", "available"), Some(7.0));
    assert_eq!(stock("a", "held"), Some(0.0));
    assert_eq!(stock("a", "sold"), Some(3.0));
    assert_eq!(stock("b", "available"), Some(5.0));
    assert_eq!(stock("c", "available"), None, "past the cap of 2 products");
    let products: BTreeSet<String> = r
        .series(m::STOCK_UNITS)
        .into_iter()
        .flat_map(|labels| labels.into_iter().filter(|(k, _)| k == "product"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(products, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
}

#[test]
fn expired_holds_are_counted() {
    let clock = ManualClock::new(T0);
    let r = recorded(|| async {
        let engine = builder(&clock).build().unwrap();
        let p = product("held-drop");
        engine
            .create_sale(
                &Sale::builder(p.clone(), 10)
                    .per_user_limit(10)
                    .hold(Duration::from_secs(60))
                    .build()
                    .unwrap(),
            )
            .await
            .unwrap();
        for user in 0..2 {
            assert!(matches!(
                buy(&engine, user, &p).await,
                Outcome::Purchased(_)
            ));
        }
        assert_eq!(engine.expire_holds().await.unwrap(), 0);
        clock.advance(Duration::from_secs(61));
        assert_eq!(engine.expire_holds().await.unwrap(), 2);
    });
    assert_eq!(r.counter(m::HOLDS_EXPIRED_TOTAL, &[]), 2);
}

#[test]
fn no_label_carries_a_user_and_every_label_is_documented() {
    let clock = ManualClock::new(T0);
    let r = recorded(|| async {
        let engine = builder(&clock).build().unwrap();
        let p = sale(&engine, "drop", 1).await;
        buy(&engine, 0, &p).await;
        buy(&engine, 1, &p).await;
        engine.snapshot(&p).await.unwrap();
        engine.drain_outbox().await.unwrap();
        engine.expire_holds().await.unwrap();
        engine.readiness().await;
    });
    let allowed = [
        "outcome",
        "port",
        "operation",
        "kind",
        "product",
        "state",
        "stage",
    ];
    for (key, _) in &r.0 {
        assert!(
            m::ENGINE_METRICS.contains(&key.key().name()),
            "{} is not listed in ENGINE_METRICS",
            key.key().name()
        );
        for label in key.key().labels() {
            assert!(allowed.contains(&label.key()), "{key:?}");
            assert!(!label.value().contains("user-"), "{key:?}");
            if label.key() == "port" {
                assert!(m::PORTS.contains(&label.value()), "{key:?}");
            }
        }
    }
    assert_eq!(
        r.series(m::PORT_CALL_DURATION_SECONDS)
            .iter()
            .filter(|l| l.contains(&("operation".into(), "ping".into())))
            .count(),
        3,
        "readiness pings the stock store, the rate limiter and the sink"
    );
}

#[test]
fn names_follow_prometheus_conventions_and_describe_gives_units() {
    for name in m::ENGINE_METRICS.iter().chain(m::HTTP_METRICS) {
        assert!(name.starts_with("flashsale_"), "{name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name}"
        );
    }
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        m::describe();
        // Described metrics show in a snapshot once recorded.
        for name in m::ENGINE_METRICS.iter().chain(m::HTTP_METRICS) {
            if name.ends_with("_total") {
                metrics::counter!(*name).increment(1);
            } else if name.ends_with("_seconds") && !name.contains("lag") {
                metrics::histogram!(*name).record(0.1);
            } else {
                metrics::gauge!(*name).set(1.0);
            }
        }
    });
    let snapshot = snapshotter.snapshot().into_vec();
    assert_eq!(
        snapshot.len(),
        m::ENGINE_METRICS.len() + m::HTTP_METRICS.len()
    );
    for (key, unit, description, _) in snapshot {
        let name = key.key().name();
        assert!(
            description.is_some_and(|d| !d.is_empty()),
            "{name} has no description"
        );
        let unit = unit.unwrap_or_else(|| panic!("{name} has no unit"));
        if name.ends_with("_seconds") {
            assert_eq!(unit, metrics::Unit::Seconds, "{name}");
        } else {
            assert_eq!(unit, metrics::Unit::Count, "{name}");
        }
    }
}

// ---------------------------------------------------------- dashboard

/// Every `flashsale_*` metric name in `expr`, with the `_bucket`, `_sum`
/// and `_count` series of histograms mapped back to the histogram's name.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("flashsale_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|base| base.ends_with("_seconds"))
            .unwrap_or(name);
        names.push(base.to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every string in the dashboard (queries, descriptions, variables), with
/// whether it is a panel query (`expr`).
fn strings(value: &serde_json::Value, is_expr: bool, out: &mut Vec<(bool, String)>) {
    match value {
        serde_json::Value::String(s) => out.push((is_expr, s.clone())),
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                strings(v, k == "expr", out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, false, out)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_uses_only_exported_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana/flashsale.json");
    let text = std::fs::read_to_string(path).expect("docs/grafana/flashsale.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(dashboard["title"].is_string());
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());

    let mut all = Vec::new();
    strings(&dashboard, false, &mut all);
    let exported: Vec<&str> = m::ENGINE_METRICS
        .iter()
        .chain(m::HTTP_METRICS)
        .copied()
        .collect();
    let mut used = BTreeSet::new();
    let mut queries = 0;
    for (is_expr, s) in &all {
        let names = metric_names(s);
        if *is_expr {
            queries += 1;
            assert!(!names.is_empty(), "a query without a flashsale metric: {s}");
            // Quantiles come from the buckets of a histogram.
            if s.contains("histogram_quantile") {
                assert!(s.contains("_seconds_bucket"), "{s}");
                assert!(s.contains("by (le"), "{s}");
            }
        }
        for name in names {
            assert!(
                exported.contains(&name.as_str()),
                "the dashboard names {name}, which nothing exports: {s}"
            );
            if *is_expr {
                used.insert(name);
            }
        }
    }
    assert!(queries >= 8, "{queries} queries");
    // What the issue asks the dashboard to show.
    for name in [
        m::PURCHASES_TOTAL,
        m::PURCHASE_DURATION_SECONDS,
        m::STOCK_UNITS,
        m::RELAY_BACKLOG_EVENTS,
        m::RELAY_LAG_SECONDS,
        m::RELAY_ERRORS_TOTAL,
        m::PORT_CALL_FAILURES_TOTAL,
        m::HTTP_REQUEST_DURATION_SECONDS,
    ] {
        assert!(used.contains(name), "the dashboard does not show {name}");
    }
    // Panels bind to a data source variable, not to one Grafana's uid.
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
    }
}

#[test]
fn metric_names_are_read_from_promql() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(flashsale_purchase_duration_seconds_bucket[5m])))"
        ),
        ["flashsale_purchase_duration_seconds"]
    );
    assert_eq!(
        metric_names(
            "sum(rate(flashsale_purchases_total{outcome=\"sold_out\"}[1m])) / sum(rate(flashsale_relay_delivered_events_total[1m]))"
        ),
        [
            "flashsale_purchases_total",
            "flashsale_relay_delivered_events_total"
        ]
    );
}
