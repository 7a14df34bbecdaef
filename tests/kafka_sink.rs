//! `KafkaOrderSink` against a real Kafka-protocol broker at
//! `FLASHSALE_KAFKA_BROKERS`: the order-sink conformance suite, and the
//! errors a user sees for a missing topic or an unreachable broker. Run
//! through `backends/kafka/with-kafka.sh cargo test --all-features`, which
//! starts a `tansu` broker and creates the topics. What the broker stored
//! (keys, headers, order) is read back by the unit tests in
//! `src/kafka/tests.rs`.

use std::time::Duration;

use flashsale::OrderSink;
use flashsale::kafka::{KafkaOptions, KafkaOrderSink, ensure_topics};

/// The broker from the test kit. Without one the tests are skipped, except
/// under `CI=true`, where a missing broker is a failure.
fn brokers() -> Option<String> {
    match std::env::var("FLASHSALE_KAFKA_BROKERS") {
        Ok(b) if !b.trim().is_empty() => Some(b),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "FLASHSALE_KAFKA_BROKERS is not set under CI=true: run the tests through \
             backends/kafka/with-kafka.sh (scripts/test-all.sh does)"
        ),
        _ => {
            eprintln!(
                "skipped: FLASHSALE_KAFKA_BROKERS is not set (use backends/kafka/with-kafka.sh)"
            );
            None
        }
    }
}

fn options(brokers: &str) -> KafkaOptions {
    let topic =
        std::env::var("FLASHSALE_KAFKA_TOPIC").unwrap_or_else(|_| "flashsale.orders".into());
    KafkaOptions::new(brokers).topic(topic)
}

async fn sink() -> KafkaOrderSink {
    let Some(brokers) = brokers() else {
        // Skipped: the cases below cannot run; fail loudly if one tries.
        panic!("no broker");
    };
    let opts = options(&brokers);
    ensure_topics(&opts, &[opts.topic_name()], 3)
        .await
        .expect("topic exists or is created");
    KafkaOrderSink::new(&opts).expect("producer config is valid")
}

mod conformance {
    use super::*;

    async fn make() -> KafkaOrderSink {
        sink().await
    }

    fn enabled() -> bool {
        brokers().is_some()
    }

    macro_rules! cases {
        ($($case:ident),*) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if !enabled() {
                    return;
                }
                flashsale::testing::sink::$case(&make).await;
            }
        )*};
    }
    cases!(submit_batch, resubmit_same_batch, empty_batch, ping);
}

#[tokio::test]
async fn ping_names_a_missing_topic() {
    let Some(brokers) = brokers() else { return };
    let opts = options(&brokers).topic(format!("fst-missing-{}", uuid::Uuid::now_v7().simple()));
    let sink = KafkaOrderSink::new(&opts).unwrap();
    let err = sink.ping().await.unwrap_err();
    let text = err.to_string();
    assert!(err.is_transient(), "{text}");
    assert!(text.contains("fst-missing-"), "names the topic: {text}");
}

#[tokio::test]
async fn an_unreachable_broker_fails_ping_and_submit_in_time() {
    // A port nothing listens on: connection refused at once, for ever.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = KafkaOptions::new(format!("127.0.0.1:{port}"))
        .delivery_timeout(Duration::from_millis(1_500))
        .request_timeout(Duration::from_millis(500));
    let sink = KafkaOrderSink::new(&opts).unwrap();
    let started = std::time::Instant::now();
    let err = sink.ping().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let err = sink
        .submit(&flashsale::testing::sink::sample_events())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("5 of 5 events not acknowledged"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let err =
        KafkaOrderSink::new(&KafkaOptions::new("127.0.0.1:9").topic("no spaces")).unwrap_err();
    assert!(err.to_string().contains("FLASHSALE_KAFKA_TOPIC"), "{err}");
    let err = KafkaOrderSink::new(&KafkaOptions::new("127.0.0.1:9").set("linger.ms", "lots"))
        .unwrap_err();
    assert!(err.to_string().contains("linger.ms"), "{err}");
}
