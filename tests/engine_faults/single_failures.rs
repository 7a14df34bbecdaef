//! One port fails, hangs, answers late or lands late, once.

use super::*;

#[tokio::test]
async fn rate_limiter_failure_reserves_nothing_and_submits_nothing() {
    let store = store_with_sale(5).await;
    let mut lim = MockLimiter::new();
    lim.expect_check()
        .withf(|key, cost| key == "u0" && *cost == 1)
        .times(1)
        .returning(|_, _| Err(boom("check")));
    let mut sink = MockSink::new();
    sink.expect_submit().never();
    let engine = Engine::builder()
        .stock_store(store.clone())
        .rate_limiter(Arc::new(lim))
        .order_sink(Arc::new(sink))
        .authenticator(authenticator())
        .hand_off(HandOff::AwaitSink {
            timeout: SINK_TIMEOUT,
        })
        .build()
        .unwrap();
    assert_eq!(engine.purchase(&creds(), buy(1)).await, unavailable());
    assert_eq!(levels(&store).await, full(5));
    assert!(outbox(&engine, &store).await.is_empty());
}

#[tokio::test]
async fn authenticator_failure_and_rejection_touch_no_other_port() {
    let mut store = MockStore::new();
    let sale = Sale::builder(product(), 5).build().unwrap();
    store
        .expect_sale()
        .returning(move |_| Ok(Some(sale.clone())));
    store.expect_reserve().never();
    store.expect_void().never();
    let mut lim = MockLimiter::new();
    lim.expect_check().never();
    let mut a = MockAuth::new();
    let mut calls = 0;
    a.expect_authenticate().times(2).returning(move |_| {
        calls += 1;
        if calls == 1 {
            Err(boom("authenticate"))
        } else {
            Ok(Err(AuthRejection::Expired))
        }
    });
    let engine = Engine::builder()
        .stock_store(Arc::new(store))
        .rate_limiter(Arc::new(lim))
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(Arc::new(a))
        .build()
        .unwrap();
    assert_eq!(engine.purchase(&creds(), buy(1)).await, unavailable());
    assert_eq!(
        engine.purchase(&creds(), buy(1)).await,
        Outcome::Unauthenticated(AuthRejection::Expired)
    );
}

#[tokio::test]
async fn sale_lookup_failure_is_unavailable_and_reserves_nothing() {
    let mut store = MockStore::new();
    store
        .expect_sale()
        .times(1)
        .returning(|_| Err(boom("sale")));
    store.expect_reserve().never();
    store.expect_void().never();
    let engine = Engine::builder()
        .stock_store(Arc::new(store))
        .rate_limiter(limiter())
        .order_sink(Arc::new(MemoryOrderSink::new()))
        .authenticator(authenticator())
        .build()
        .unwrap();
    assert_eq!(engine.purchase(&creds(), buy(1)).await, unavailable());
}

#[tokio::test]
async fn a_failed_reserve_voids_that_very_request_and_never_reaches_the_sink() {
    let mut store = MockStore::new();
    let sale = Sale::builder(product(), 5).build().unwrap();
    store
        .expect_sale()
        .returning(move |_| Ok(Some(sale.clone())));
    let (tx, rx) = std::sync::mpsc::channel::<ReserveRequest>();
    store.expect_reserve().times(1).returning(move |req| {
        tx.send(req.clone()).unwrap();
        Err(boom("reserve"))
    });
    let (vtx, vrx) = std::sync::mpsc::channel::<ReserveRequest>();
    store.expect_void().times(1).returning(move |req, _| {
        vtx.send(req.clone()).unwrap();
        Ok(VoidOutcome::NothingReserved)
    });
    store.expect_ack().never();
    let mut sink = MockSink::new();
    sink.expect_submit().never();
    let engine = Engine::builder()
        .stock_store(Arc::new(store))
        .rate_limiter(limiter())
        .order_sink(Arc::new(sink))
        .authenticator(authenticator())
        .hand_off(HandOff::AwaitSink {
            timeout: SINK_TIMEOUT,
        })
        .build()
        .unwrap();
    let out = engine
        .purchase(&creds(), buy(1).with_idempotency_key(key("k")))
        .await;
    assert_eq!(out, unavailable());
    assert_eq!(ApiResponse::from_outcome(&out).status, 503);
    let reserved = rx.recv().unwrap();
    assert_eq!(
        vrx.recv().unwrap(),
        reserved,
        "voided exactly the request it sent"
    );
    assert_eq!(reserved.idempotency_key, Some(key("k")));
}

#[tokio::test(start_paused = true)]
async fn a_store_that_never_answers_times_out() {
    /// Never answers (a ping still does, as the trait's default would).
    struct Hanging;
    #[async_trait]
    impl StockHook for Hanging {
        async fn around<T: Send + 'static>(
            &self,
            call: StockCall<'_>,
            answer: Answer<T>,
        ) -> flashsale::Result<T> {
            match call {
                StockCall::Ping => answer.await,
                _ => std::future::pending().await,
            }
        }
    }
    let engine = engine_over(
        Arc::new(Hooked::new(Arc::new(MemoryStockStore::new()), Hanging)),
        Arc::new(MemoryOrderSink::new()),
        HandOff::Outbox,
    );
    let started = tokio::time::Instant::now();
    assert_eq!(engine.purchase(&creds(), buy(1)).await, unavailable());
    assert_eq!(
        started.elapsed(),
        PORT_TIMEOUT,
        "one timeout: the sale lookup"
    );
    match engine.snapshot(&product()).await {
        Err(Error::Timeout { operation, after }) => {
            assert_eq!(operation, "snapshot");
            assert_eq!(after, PORT_TIMEOUT);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        engine.relay_once().await,
        Err(Error::Timeout {
            operation: "claim",
            ..
        })
    ));
}

/// The store applied the reserve, then its answer was lost (an error on
/// the wire, or a timeout): the engine voids it, the buyer owns nothing,
/// the order is followed by `voided`, and the key is free for a retry,
/// which then makes the one standing order.
#[tokio::test(start_paused = true)]
async fn a_reserve_applied_but_answer_lost_is_voided_and_the_key_retries_cleanly() {
    for lost in [Fault::FailAfter, Fault::HangAfter] {
        let inner = store_with_sale(5).await;
        let script = Arc::new(Script::default());
        let store = Arc::new(scripted(inner.clone(), script.clone()));
        let sink = Arc::new(MemoryOrderSink::new());
        let engine = engine_over(store.clone(), sink.clone(), HandOff::Outbox);
        script.set("reserve", [lost]);
        let k = key("lost-answer");

        let started = tokio::time::Instant::now();
        let out = engine
            .purchase(&creds(), buy(2).with_idempotency_key(k.clone()))
            .await;
        assert_eq!(out, unavailable(), "{lost:?}");
        if lost == Fault::HangAfter {
            assert_eq!(started.elapsed(), PORT_TIMEOUT);
        }
        assert_eq!(
            levels(&inner).await,
            full(5),
            "{lost:?}: the buyer owns nothing"
        );
        let first = store.hook().reserve_requests()[0].clone();
        let r = inner.reservation(&first.order_id).await.unwrap().unwrap();
        assert_eq!(r.state, ReservationState::Voided);

        let retry = engine
            .purchase(&creds(), buy(2).with_idempotency_key(k.clone()))
            .await;
        assert_eq!(
            retry.code(),
            "purchased",
            "{lost:?}: a fresh purchase, not a replay"
        );
        assert_ne!(ordered(&retry), first.order_id);
        assert_eq!(levels(&inner).await.committed, 2);

        engine.drain_outbox().await.unwrap();
        assert_eq!(
            kinds(&sink.events()),
            set([
                (EventType::Placed, first.order_id),
                (EventType::Voided, first.order_id),
                (EventType::Placed, ordered(&retry)),
            ]),
            "{lost:?}"
        );
        assert!(outbox(&engine, &inner).await.is_empty());
    }
}

/// The reserve's answer was lost and the void failed too: the attempt still
/// answers 503 at once, and the engine keeps voiding in the background
/// until it lands.
#[tokio::test(start_paused = true)]
async fn a_failed_void_is_retried_in_the_background_until_it_lands() {
    let inner = store_with_sale(5).await;
    let script = Arc::new(Script::default());
    let store = Arc::new(scripted(inner.clone(), script.clone()));
    let sink = Arc::new(MemoryOrderSink::new());
    let engine = engine_over(store.clone(), sink.clone(), HandOff::Outbox);
    script.set("reserve", [Fault::HangAfter]);
    script.set(
        "void",
        [
            Fault::FailBefore,
            Fault::Hang,
            Fault::FailBefore,
            Fault::Hang,
        ],
    );
    assert_eq!(engine.purchase(&creds(), buy(3)).await, unavailable());
    // Not voided yet: the units are still taken, by an order with its
    // `placed` event, and the background retry is on its way.
    assert_eq!(levels(&inner).await.committed, 3);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(levels(&inner).await, full(5));
    assert_eq!(
        script.calls("void"),
        5,
        "four failures, then the void that landed"
    );
    let id = store.hook().reserve_requests()[0].order_id;
    engine.drain_outbox().await.unwrap();
    assert_eq!(
        kinds(&sink.events()),
        set([(EventType::Placed, id), (EventType::Voided, id)])
    );
}

/// The reserve was still in flight when the engine gave up and voided it:
/// the void leaves a tombstone, so the reserve that lands afterwards
/// reserves nothing and writes no event.
#[tokio::test(start_paused = true)]
async fn a_reserve_that_lands_after_its_void_reserves_nothing() {
    let inner = store_with_sale(5).await;
    let script = Arc::new(Script::default());
    let store = Arc::new(scripted(inner.clone(), script.clone()));
    let engine = engine_over(
        store.clone(),
        Arc::new(MemoryOrderSink::new()),
        HandOff::Outbox,
    );
    script.set("reserve", [Fault::Late(500)]);
    assert_eq!(
        engine
            .purchase(&creds(), buy(1).with_idempotency_key(key("late")))
            .await,
        unavailable()
    );
    let id = store.hook().reserve_requests()[0].order_id;
    assert_eq!(
        inner.reservation(&id).await.unwrap().map(|r| r.state),
        Some(ReservationState::Voided),
        "a tombstone"
    );
    tokio::time::sleep(Duration::from_secs(1)).await; // the reserve lands
    assert_eq!(levels(&inner).await, full(5));
    assert!(
        outbox(&engine, &inner).await.is_empty(),
        "no event for a reserve that never counted"
    );
    // The key was never taken: a retry buys.
    let retry = engine
        .purchase(&creds(), buy(1).with_idempotency_key(key("late")))
        .await;
    assert_eq!(retry.code(), "purchased");
}

/// How long the slow-but-alive store takes: well past the port timeout.
const SLOW: u64 = 3 * PORT_TIMEOUT.as_millis() as u64;

/// A store that is slow but alive on reserve: the sale lookup answers at
/// once, the reserve is applied and answered only after the port timeout.
/// The engine times out on the reserve itself, voids it (the void is slow
/// too, or fast and landing first), answers 503, and once everything has
/// landed the buyer owns nothing and the order, if it was ever placed, is
/// followed by `voided`.
#[tokio::test(start_paused = true)]
async fn a_slow_but_alive_store_times_out_on_the_reserve_and_the_buyer_owns_nothing() {
    for void in [Fault::SlowAlive(SLOW), Fault::Pass] {
        let inner = store_with_sale(5).await;
        let script = Arc::new(Script::default());
        let store = Arc::new(scripted(inner.clone(), script.clone()));
        let sink = Arc::new(MemoryOrderSink::new());
        let engine = engine_over(store.clone(), sink.clone(), HandOff::Outbox);
        script.set("reserve", [Fault::SlowAlive(SLOW)]);
        script.set("void", [void]);

        let started = tokio::time::Instant::now();
        let out = engine
            .purchase(&creds(), buy(2).with_idempotency_key(key("slow")))
            .await;
        assert_eq!(out, unavailable(), "{void:?}");
        assert_eq!(script.calls("sale"), 1, "the sale lookup answered");
        assert_eq!(script.calls("reserve"), 1);
        let expected = if void == Fault::Pass {
            PORT_TIMEOUT
        } else {
            PORT_TIMEOUT * 2
        };
        assert_eq!(
            started.elapsed(),
            expected,
            "{void:?}: timed out on the reserve (and the void), not on the lookup"
        );

        // Let the slow calls land, and the background void retries finish.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let l = levels(&inner).await;
        assert!(l.is_consistent(), "{l:?}");
        assert_eq!(l, full(5), "{void:?}: the buyer owns nothing");
        let id = store.hook().reserve_requests()[0].order_id;
        assert_eq!(
            inner.reservation(&id).await.unwrap().map(|r| r.state),
            Some(ReservationState::Voided),
            "{void:?}"
        );
        engine.drain_outbox().await.unwrap();
        let events = kinds(&sink.events());
        assert!(
            events.is_empty() || events == set([(EventType::Placed, id), (EventType::Voided, id)]),
            "{void:?}: {events:?}"
        );
        // The key is free: a retry against a store that is fast again buys.
        let retry = engine
            .purchase(&creds(), buy(2).with_idempotency_key(key("slow")))
            .await;
        assert_eq!(retry.code(), "purchased", "{void:?}");
        assert_eq!(levels(&inner).await.committed, 2);
    }
}

/// A store that is slow but alive on confirm: the engine times out on the
/// confirm itself and answers 503; the confirm lands anyway, so the hold is
/// sold with its `confirmed` event, and confirming again answers the
/// confirmed order. Nothing is held without a live reservation.
#[tokio::test(start_paused = true)]
async fn a_slow_but_alive_store_times_out_on_the_confirm_which_lands_later() {
    let sale = Sale::builder(product(), 5)
        .hold(Duration::from_secs(600))
        .build()
        .unwrap();
    let inner = memory_store(sale).await;
    let script = Arc::new(Script::default());
    let store = Arc::new(scripted(inner.clone(), script.clone()));
    let sink = Arc::new(MemoryOrderSink::new());
    let engine = engine_over(store.clone(), sink.clone(), HandOff::Outbox);
    let bought = engine.purchase(&creds(), buy(1)).await;
    assert_eq!(bought.code(), "purchased");
    let id = ordered(&bought);
    assert_eq!(levels(&inner).await.held, 1);

    script.set("confirm", [Fault::SlowAlive(SLOW)]);
    let started = tokio::time::Instant::now();
    assert_eq!(engine.confirm(&creds(), &id).await, unavailable());
    assert_eq!(started.elapsed(), PORT_TIMEOUT, "timed out on the confirm");
    assert_eq!(script.calls("confirm"), 1);
    // Still held until the slow confirm lands.
    assert_eq!(levels(&inner).await.held, 1);
    tokio::time::sleep(Duration::from_millis(SLOW)).await;
    let l = levels(&inner).await;
    assert_eq!((l.available, l.held, l.committed), (4, 0, 1), "{l:?}");
    let again = engine.confirm(&creds(), &id).await;
    match &again {
        Outcome::OrderUpdated(s) => assert_eq!(s.status, OrderStatus::Confirmed),
        other => panic!("{other:?}"),
    }
    engine.drain_outbox().await.unwrap();
    assert_eq!(
        kinds(&sink.events()),
        set([(EventType::Placed, id), (EventType::Confirmed, id)])
    );
}
