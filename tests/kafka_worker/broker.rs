//! The worker and the dead-letter replay against the real broker and MariaDB.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folds_events_into_the_table_exactly_with_duplicates() {
    let Some(c) = case("fold").await else { return };
    let table = table().await;
    let (events, expected) = orders(60);
    let sink = KafkaOrderSink::new(&c.opts).unwrap();
    sink.submit(&events).await.unwrap();
    // Re-sent: the relay's at-least-once, as consumers see it.
    sink.submit(&events[..40]).await.unwrap();
    sink.submit(&events[events.len() - 10..]).await.unwrap();

    let handler = TestHandler::on(table.clone());
    let w = spawn_worker(&c.opts, worker_options(&c.group), handler.clone());
    wait_for_table(&table, &expected).await;
    wait_until("every message handled", PATIENCE, || async {
        handler.handlings() == events.len() + 50
    })
    .await;
    let live = w.counters.snapshot();
    let stats = w.stop().await;
    assert_eq!(stats.handled, (events.len() + 50) as u64, "{stats:?}");
    assert!(live.handled <= stats.handled);
    assert_eq!(stats.dead_lettered, 0);
    assert!(stats.batches >= 1);
    assert_eq!(handler.handled_events(), events.len());
    assert!(table_is(&table, &expected).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_topic_and_the_worker_moves_on() {
    let Some(c) = case("poison").await else {
        return;
    };
    let table = table().await;
    let (events, expected) = orders(12);
    let (partition, offset) = produce_raw(&c.brokers, &c.topic, "poison-key", b"{not json").await;
    let mut v3 = serde_json::to_value(&events[0]).unwrap();
    v3["schema_version"] = 3.into();
    produce_raw(
        &c.brokers,
        &c.topic,
        "v3-key",
        &serde_json::to_vec(&v3).unwrap(),
    )
    .await;
    submit(&c.opts, &events).await;

    let w = spawn_worker(
        &c.opts,
        worker_options(&c.group),
        TestHandler::on(table.clone()),
    );
    wait_for_table(&table, &expected).await;
    let dead = read_topic(&c.brokers, &format!("{}.dlq", c.topic), 2, PATIENCE).await;
    let stats = w.stop().await;
    assert_eq!(stats.dead_lettered, 2, "{stats:?}");
    assert_eq!(dead.len(), 2);

    let poison = dead
        .iter()
        .find(|m| m.key() == Some(b"poison-key"))
        .expect("the poison");
    assert_eq!(poison.payload(), Some(&b"{not json"[..]));
    assert_eq!(header(poison, dlq::ORIGINAL_TOPIC), Some(c.topic.as_str()));
    assert_eq!(
        header(poison, dlq::ORIGINAL_PARTITION),
        Some(partition.to_string().as_str())
    );
    assert_eq!(
        header(poison, dlq::ORIGINAL_OFFSET),
        Some(offset.to_string().as_str())
    );
    assert_eq!(header(poison, dlq::CONSUMER_GROUP), Some(c.group.as_str()));
    assert_eq!(header(poison, dlq::ATTEMPTS), Some("0"));
    assert_eq!(header(poison, dlq::REASON), Some("undecodable"));
    assert!(header(poison, dlq::ERROR).unwrap().starts_with("not JSON"));

    let v3 = dead
        .iter()
        .find(|m| m.key() == Some(b"v3-key"))
        .expect("the v3 event");
    assert!(
        header(v3, dlq::ERROR).unwrap().contains("schema version 3"),
        "{:?}",
        header(v3, dlq::ERROR)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_nothing_is_dead_lettered() {
    let Some(c) = case("transient").await else {
        return;
    };
    let table = table().await;
    let (events, expected) = orders(20);
    submit(&c.opts, &events).await;
    let handler = TestHandler::on(table.clone());
    // Fewer than the batch's attempts (3) in a row: the batch gets
    // through on a later attempt.
    handler.transient_calls.store(2, Ordering::SeqCst);

    let w = spawn_worker(&c.opts, worker_options(&c.group), handler.clone());
    wait_for_table(&table, &expected).await;
    let stats = w.stop().await;
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    assert!(stats.retries >= 2, "{stats:?}");
    assert_eq!(handler.transient_calls.load(Ordering::SeqCst), 0);
    assert_eq!(handler.handled_events(), events.len());
    let dead = read_topic(
        &c.brokers,
        &format!("{}.dlq", c.topic),
        1,
        Duration::from_secs(2),
    )
    .await;
    assert!(dead.is_empty(), "nothing dead-lettered");
}

/// A rejected event is dead-lettered after one attempt; an event whose
/// handling fails transiently, however long, is not dead-lettered: the
/// worker stalls on it (reading nothing further) until it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_events_are_dead_lettered_at_once_and_lasting_transient_ones_stall() {
    let Some(c) = case("failing").await else {
        return;
    };
    let table = table().await;
    let (events, mut expected) = orders(16);
    let rejected = events[0].order.order_id; // a sold order: one event
    let lasting = events[events.len() - 1].order.order_id; // its voided event...
    let handler = TestHandler::on(table.clone());
    handler.reject.lock().insert(rejected);
    handler.always_transient.lock().insert(lasting);
    expected.remove(&rejected);
    submit(&c.opts, &events).await;

    let w = spawn_worker(&c.opts, worker_options(&c.group), handler.clone());
    wait_until(
        "the worker to stall on the lasting order",
        PATIENCE,
        || async {
            handler
                .single_calls
                .lock()
                .get(&lasting)
                .copied()
                .unwrap_or(0)
                >= 10
        },
    )
    .await;
    assert!(w.counters.stalled_for().is_some(), "stalled, and says so");
    assert!(table.get(&lasting).await.unwrap().is_none());
    // The database is back for that order too.
    handler.always_transient.lock().clear();
    wait_for_table(&table, &expected).await;
    let dead = read_topic(
        &c.brokers,
        &format!("{}.dlq", c.topic),
        2,
        Duration::from_secs(3),
    )
    .await;
    assert!(w.counters.stalled_for().is_none(), "consuming again");
    let stats = w.stop().await;
    assert_eq!(dead.len(), 1, "only the rejected event");
    assert_eq!(stats.dead_lettered, 1, "{stats:?}");
    assert!(stats.stalls >= 1, "{stats:?}");
    let m = &dead[0];
    let event: OrderEvent = serde_json::from_slice(m.payload().unwrap()).unwrap();
    assert_eq!(event.order.order_id, rejected);
    assert_eq!(m.key(), Some(rejected.to_string().as_bytes()));
    assert_eq!(
        header(m, headers::EVENT_ID),
        Some(event.event_id.to_string().as_str())
    );
    assert_eq!(header(m, dlq::CONSUMER_GROUP), Some(c.group.as_str()));
    assert_eq!(header(m, dlq::REASON), Some("rejected"));
    assert_eq!(
        header(m, dlq::ATTEMPTS),
        Some("1"),
        "a permanent error is not retried"
    );
    assert!(
        header(m, dlq::ERROR)
            .unwrap()
            .contains("injected permanent failure")
    );
    assert_eq!(handler.single_calls.lock().get(&rejected), Some(&1));
    assert!(table.get(&rejected).await.unwrap().is_none());
    assert!(table.get(&lasting).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_mid_stream_hands_over_without_loss_or_reapplying() {
    let Some(c) = case("handover").await else {
        return;
    };
    let table = table().await;
    let (events, expected) = orders(400);
    submit(&c.opts, &events).await;
    let handler = TestHandler::on(table.clone());
    *handler.slow.lock() = Duration::from_millis(30);
    let opts = worker_options(&c.group).max_batch(10);

    let first = spawn_worker(&c.opts, opts.clone(), handler.clone());
    wait_until("a part of the stream handled", PATIENCE, || async {
        handler.handled_events() >= 100
    })
    .await;
    let stats = first.stop().await;
    let after_first = handler.handlings();
    assert!(
        after_first < events.len(),
        "stopped mid-stream: {after_first}"
    );
    assert_eq!(stats.handled as usize, after_first, "{stats:?}");

    *handler.slow.lock() = Duration::ZERO;
    let second = spawn_worker(&c.opts, opts, handler.clone());
    wait_for_table(&table, &expected).await;
    wait_until("every event handled", PATIENCE, || async {
        handler.handled_events() == events.len()
    })
    .await;
    let stats2 = second.stop().await;
    // Committed at the stop: the second worker starts where the first
    // stopped, so no event is handled twice.
    let twice: Vec<_> = handler
        .handled
        .lock()
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(twice.is_empty(), "re-applied: {twice:?}");
    assert_eq!(stats2.handled as usize + after_first, events.len());
    assert!(table_is(&table, &expected).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_dead_letters_are_folded_by_the_worker() {
    let Some(c) = case("replay").await else {
        return;
    };
    let table = table().await;
    let (events, expected) = orders(8);
    let broken: Vec<OrderId> = vec![events[0].order.order_id, events[2].order.order_id];
    let handler = TestHandler::on(table.clone());
    handler.reject.lock().extend(broken.iter().copied());
    submit(&c.opts, &events).await;

    let w = spawn_worker(&c.opts, worker_options(&c.group), handler.clone());
    // Order 0 is sold (one event), order 2 held then confirmed (two).
    let dlq_topic = format!("{}.dlq", c.topic);
    let dead = read_topic(&c.brokers, &dlq_topic, 3, PATIENCE).await;
    assert_eq!(dead.len(), 3);
    // A letter of another group's is not this group's to replay.
    let foreign = serde_json::to_vec(&orders(1).0[0]).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &c.brokers)
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(&dlq_topic)
                .key("foreign")
                .payload(&foreign)
                .headers(
                    rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                        key: dlq::CONSUMER_GROUP,
                        value: Some("some-other-group"),
                    }),
                ),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    // The handler is fixed; the letters come back.
    handler.reject.lock().clear();
    let replayed = replay_dead_letters(&c.opts, &c.group, PATIENCE)
        .await
        .unwrap();
    assert_eq!(replayed, 3);
    wait_for_table(&table, &expected).await;
    // Caught up: a second replay finds nothing.
    assert_eq!(
        replay_dead_letters(&c.opts, &c.group, PATIENCE)
            .await
            .unwrap(),
        0
    );
    let stats = w.stop().await;
    assert_eq!(stats.dead_lettered, 3, "{stats:?}");

    // The replayed messages keep the order headers and say where from.
    let all = read_topic(&c.brokers, &c.topic, events.len() + 3, PATIENCE).await;
    let again: Vec<_> = all
        .iter()
        .filter(|m| header(m, dlq::REPLAYED_FROM).is_some())
        .collect();
    assert_eq!(again.len(), 3);
    for m in again {
        assert!(
            header(m, dlq::REPLAYED_FROM)
                .unwrap()
                .starts_with(&format!("{dlq_topic}/"))
        );
        assert!(header(m, headers::EVENT_ID).is_some());
        assert!(
            header(m, dlq::ERROR).is_none(),
            "failure headers are dropped"
        );
        assert!(
            broken
                .iter()
                .any(|o| m.key() == Some(o.to_string().as_bytes()))
        );
    }
}
