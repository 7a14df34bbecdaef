//! Configuration errors the builder reports.

use super::*;

#[test]
fn builder_says_what_is_missing_or_inconsistent() {
    let err = Engine::builder().build().unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("stock store")),
        "{err}"
    );
    let ports = || {
        Engine::builder()
            .stock_store(Arc::new(MemoryStockStore::new()))
            .rate_limiter(Arc::new(MemoryRateLimiter::per_second(1).unwrap()))
            .order_sink(Arc::new(MemoryOrderSink::new()))
            .authenticator(Arc::new(StaticAuthenticator::new()))
    };
    assert!(ports().build().is_ok());
    let relay = RelayConfig {
        batch: 10,
        lease: Duration::from_secs(3),
        submit_timeout: Duration::from_secs(2),
    };
    // The lease must outlast a slow pass: its claim, its submit and its
    // ack (tests/relay_lease.rs has the sink's late deliveries).
    let err = ports()
        .relay(relay)
        .port_timeout(Duration::from_millis(500))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("lease")),
        "{err}"
    );
    assert!(
        ports()
            .relay(relay)
            .port_timeout(Duration::from_millis(499))
            .build()
            .is_ok()
    );
    let err = ports().port_timeout(Duration::ZERO).build().unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("port_timeout")),
        "{err}"
    );
    let err = ports()
        .hand_off(HandOff::AwaitSink {
            timeout: Duration::ZERO,
        })
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("AwaitSink")),
        "{err}"
    );
    let err = ports()
        .relay(RelayConfig {
            batch: 0,
            ..RelayConfig::default()
        })
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("batch")),
        "{err}"
    );
}
