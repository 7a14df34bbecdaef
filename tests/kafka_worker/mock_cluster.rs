//! The worker against librdkafka's in-process mock cluster, with an
//! in-memory handler: no broker needed.

use super::*;

/// A mock cluster with a fresh topic and its `.dlq`, and the options of a
/// client on it. Dropping `cluster` shuts the cluster down.
struct Mock {
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    brokers: String,
    topic: String,
    opts: KafkaOptions,
}

/// A [`Mock`] whose topic is named after `case`.
fn mock(case: &str) -> Mock {
    let topic = unique(case);
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(&topic, PARTITIONS, 1).unwrap();
    cluster
        .create_topic(&format!("{topic}.dlq"), PARTITIONS, 1)
        .unwrap();
    let brokers = cluster.bootstrap_servers();
    let opts = kafka(&brokers, &topic);
    Mock {
        cluster,
        brokers,
        topic,
        opts,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_poison_and_failures_are_dead_lettered_and_the_rest_handled() {
    let Mock {
        cluster: _cluster,
        brokers,
        topic,
        opts,
    } = mock("mock");
    let (events, _) = orders(10);
    let rejected = events[0].order.order_id;
    let handler = Arc::new(TestHandler::default());
    handler.reject.lock().insert(rejected);
    handler.transient_calls.store(1, Ordering::SeqCst);
    submit(&opts, &events).await;
    produce_raw(&brokers, &topic, "poison", b"\x00\x01").await;

    let w = spawn_worker(
        &opts,
        worker_options(&unique("mock-group")),
        handler.clone(),
    );
    wait_until("the good events handled", PATIENCE, || async {
        handler.handled_events() == events.len() - 1
    })
    .await;
    let dead = read_topic(&brokers, &format!("{topic}.dlq"), 2, PATIENCE).await;
    let stats = w.stop().await;
    assert_eq!(dead.len(), 2);
    assert_eq!(stats.dead_lettered, 2, "{stats:?}");
    assert!(stats.retries >= 1);
    let reasons: HashSet<_> = dead.iter().filter_map(|m| header(m, dlq::REASON)).collect();
    assert_eq!(reasons, HashSet::from(["undecodable", "rejected"]));
}

/// A database outage longer than the worker's retries: every call fails
/// transiently for a while (many more calls than `max_attempts`), then
/// the database is back. Healthy events must wait, not be dead-lettered;
/// the poison message and the permanently rejected event still are, at
/// once; and the offsets end committed past everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_a_database_outage_pauses_the_worker_instead_of_dead_lettering() {
    let Mock {
        cluster,
        brokers,
        topic,
        opts,
    } = mock("mock-outage");
    let (events, _) = orders(10);
    let rejected = events[0].order.order_id; // sold: one event
    let handler = Arc::new(TestHandler::default());
    handler.reject.lock().insert(rejected);
    // 40 failing calls, 10 to 100 ms apart: an outage of a few seconds,
    // far more calls than the 3 attempts a batch gets before it is split.
    handler.transient_calls.store(40, Ordering::SeqCst);
    produce_raw(&brokers, &topic, "poison", b"\x00\x01").await;
    submit(&opts, &events).await;

    let group = unique("mock-outage-group");
    let w = spawn_worker(&opts, worker_options(&group), handler.clone());
    wait_until("the worker to report a stall", PATIENCE, || async {
        w.counters.stalled_for().is_some()
    })
    .await;
    wait_until("the outage to end", PATIENCE, || async {
        handler.transient_calls.load(Ordering::SeqCst) == 0
    })
    .await;
    // Every message processed, one way or the other: the healthy events
    // handled and the two bad ones dead-lettered, or (the fault) healthy
    // ones dead-lettered instead.
    let messages = events.len() + 1; // the poison too
    wait_until("every message processed", PATIENCE, || async {
        let dead = w.counters.snapshot().dead_lettered as usize;
        handler.handled_events() + dead >= messages
    })
    .await;
    let dead = read_topic(
        &brokers,
        &format!("{topic}.dlq"),
        messages,
        Duration::from_secs(3),
    )
    .await;
    assert!(w.counters.stalled_for().is_none(), "consuming again");
    let stats = w.stop().await;
    let reasons: Vec<_> = dead.iter().filter_map(|m| header(m, dlq::REASON)).collect();
    assert_eq!(
        dead.len(),
        2,
        "only the poison and the rejected event: {reasons:?}"
    );
    assert_eq!(stats.dead_lettered, 2, "{stats:?}");
    // Each failed call retried, but for the one the batch split replaced.
    assert!(stats.retries >= 39, "{stats:?}");
    let rejected_letter = dead
        .iter()
        .find(|m| header(m, dlq::REASON) == Some("rejected"))
        .expect("the rejected event is dead-lettered");
    assert_eq!(rejected_letter.key(), Some(rejected.to_string().as_bytes()));
    // Tried on its own until the database answered, then rejected at once:
    // the letter counts every call, and none came after the rejection.
    let calls = handler.single_calls.lock().get(&rejected).copied();
    assert_eq!(
        header(rejected_letter, dlq::ATTEMPTS).map(str::to_owned),
        calls.map(|n| n.to_string())
    );
    assert!(
        dead.iter()
            .any(|m| header(m, dlq::REASON) == Some("undecodable"))
    );
    // Every healthy event exactly once: the outage re-delivered nothing.
    assert_eq!(handler.handlings(), events.len() - 1);
    assert!(stats.stalls >= 1, "{stats:?}");

    // Committed past everything: the group's next worker reads only what
    // comes after.
    let again = Arc::new(TestHandler::default());
    let w = spawn_worker(&opts, worker_options(&group), again.clone());
    submit(&opts, &events[1..2]).await;
    wait_until("the new event handled", PATIENCE, || async {
        again.handlings() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = w.stop().await;
    assert_eq!(again.handlings(), 1, "only what came after the commit");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    drop(cluster);
}

/// An outage longer than `max.poll.interval.ms`: the paused worker keeps
/// polling, so it stays in the group; once the database is back, every
/// event is handled exactly once (a worker that had dropped out would have
/// its batch re-delivered: handled twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_an_outage_longer_than_the_poll_interval_keeps_the_worker_in_its_group() {
    let Mock { cluster, opts, .. } = mock("mock-long-outage");
    let (events, _) = orders(12);
    let handler = Arc::new(TestHandler::default());
    handler.down.store(true, Ordering::SeqCst);
    submit(&opts, &events).await;
    // librdkafka's floor for max.poll.interval.ms is session.timeout.ms.
    const POLL_INTERVAL: Duration = Duration::from_secs(6);
    let w_opts = worker_options(&unique("mock-long-outage-group")).set(
        "max.poll.interval.ms",
        POLL_INTERVAL.as_millis().to_string(),
    );
    let w = spawn_worker(&opts, w_opts, handler.clone());
    wait_until("a stall of twice the poll interval", PATIENCE, || async {
        w.counters
            .stalled_for()
            .is_some_and(|d| d > 2 * POLL_INTERVAL)
    })
    .await;
    assert_eq!(handler.handlings(), 0);
    handler.down.store(false, Ordering::SeqCst);
    wait_until("every event handled", PATIENCE, || async {
        handler.handled_events() == events.len()
    })
    .await;
    // Time for a re-delivery to show, had the worker left the group.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = w.stop().await;
    assert_eq!(
        handler.handlings(),
        events.len(),
        "each event handled once: {stats:?}"
    );
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    assert_eq!(stats.stalls, 1, "{stats:?}");
    drop(cluster);
}

/// Stopped while the database is down: the worker returns promptly, and
/// since it committed nothing past the failing batch (and dead-lettered
/// none of it), the group's next worker handles every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_a_worker_stopped_while_stalled_leaves_its_batch_to_the_group() {
    let Mock {
        cluster,
        brokers,
        topic,
        opts,
    } = mock("mock-stalled-stop");
    let (events, _) = orders(8);
    submit(&opts, &events).await;
    let group = unique("mock-stalled-stop-group");
    let down = Arc::new(TestHandler::default());
    down.down.store(true, Ordering::SeqCst);
    let w = spawn_worker(&opts, worker_options(&group), down.clone());
    // Many failed calls, over several commit intervals (200 ms).
    wait_until("a long run of failed calls", PATIENCE, || async {
        down.calls.load(Ordering::SeqCst) >= 25
    })
    .await;
    let stats = w.stop().await;
    assert_eq!((stats.handled, stats.dead_lettered), (0, 0), "{stats:?}");

    let up = Arc::new(TestHandler::default());
    let w = spawn_worker(&opts, worker_options(&group), up.clone());
    wait_until(
        "every event handled by the next worker",
        PATIENCE,
        || async { up.handled_events() == events.len() },
    )
    .await;
    let stats = w.stop().await;
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    let dead = read_topic(&brokers, &format!("{topic}.dlq"), 1, Duration::from_secs(2)).await;
    assert!(dead.is_empty(), "nothing dead-lettered");
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_shutdown_commits_what_was_processed() {
    let Mock { cluster, opts, .. } = mock("mock-commit");
    let (events, _) = orders(30);
    submit(&opts, &events).await;
    let group = unique("mock-commit-group");
    // A long auto-commit interval: only the commit at shutdown counts.
    let w_opts = worker_options(&group).commit_interval(Duration::from_secs(3600));

    let handler = Arc::new(TestHandler::default());
    let w = spawn_worker(&opts, w_opts.clone(), handler.clone());
    wait_until("every event handled", PATIENCE, || async {
        handler.handled_events() == events.len()
    })
    .await;
    w.stop().await;

    let again = Arc::new(TestHandler::default());
    let w = spawn_worker(&opts, w_opts, again.clone());
    submit(&opts, &events[..1]).await;
    wait_until("the new event handled", PATIENCE, || async {
        again.handlings() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.stop().await;
    assert_eq!(again.handlings(), 1, "only what came after the commit");
    drop(cluster);
}
