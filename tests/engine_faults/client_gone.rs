//! A reserve the store ran twice, and callers that go away mid-purchase.

use super::*;

/// A cluster client re-sends a reserve that already ran: the store answers
/// `Reserved` with the request's own order, which is this request's
/// success, not a replay, with or without a key, and its hold can be
/// confirmed.
#[tokio::test]
async fn a_reserve_run_twice_by_the_store_is_the_requests_own_purchase() {
    for (hold, k) in [
        (false, None),
        (false, Some(key("c-1"))),
        (true, Some(key("c-2"))),
    ] {
        let mut sale = Sale::builder(product(), 5);
        if hold {
            sale = sale.hold(Duration::from_secs(60));
        }
        let inner = memory_store(sale.build().unwrap()).await;
        let store = Arc::new(scripted_twice(inner.clone()));
        let sink = Arc::new(MemoryOrderSink::new());
        let engine = engine_over(store.clone(), sink.clone(), HandOff::Outbox);
        let mut req = buy(2);
        if let Some(k) = k.clone() {
            req = req.with_idempotency_key(k);
        }
        let out = engine.purchase(&creds(), req).await;
        assert!(matches!(out, Outcome::Purchased(_)), "{k:?}: {out:?}");
        let http = ApiResponse::from_outcome(&out);
        assert_eq!(http.status, 200);
        assert_eq!(http.header("idempotent-replayed"), None);
        let id = ordered(&out);
        assert_eq!(store.hook().reserve_requests()[0].order_id, id);
        let l = levels(&inner).await;
        assert_eq!(l.held + l.committed, 2, "reserved once");
        assert_eq!(
            kinds(&outbox(&engine, &inner).await),
            set([(EventType::Placed, id)])
        );
        if hold {
            let confirmed = engine.confirm(&creds(), &id).await;
            assert_eq!(
                confirmed.purchase().map(|p| p.status),
                Some(OrderStatus::Confirmed),
                "{confirmed:?}"
            );
        }
    }
}

/// `purchase_to_completion` runs on even when its caller's future is
/// dropped right after the first poll (an HTTP client that went away).
#[tokio::test(start_paused = true)]
async fn purchase_to_completion_finishes_when_the_caller_goes_away() {
    for hand_off in [
        HandOff::Outbox,
        HandOff::AwaitSink {
            timeout: SINK_TIMEOUT,
        },
    ] {
        let inner = store_with_sale(5).await;
        let script = Arc::new(Script::default());
        let store = Arc::new(scripted(inner.clone(), script.clone()));
        let sink = Arc::new(ScriptedSink {
            inner: Arc::new(MemoryOrderSink::new()),
            script: script.clone(),
        });
        let engine = engine_over(store.clone(), sink.clone(), hand_off);
        script.set("sale", [Fault::Slow(20)]);
        script.set("reserve", [Fault::Slow(50)]);
        script.set("submit", [Fault::Slow(30)]);
        {
            let fut =
                engine.purchase_to_completion(creds(), buy(2).with_idempotency_key(key("gone")));
            let mut fut = std::pin::pin!(fut);
            assert!(futures::poll!(fut.as_mut()).is_pending());
        } // the client is gone
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(script.calls("reserve"), 1);
        let id = store.hook().reserve_requests()[0].order_id;
        let r = inner
            .reservation(&id)
            .await
            .unwrap()
            .expect("the purchase completed");
        assert_eq!(r.state, ReservationState::Committed);
        assert_eq!(levels(&inner).await.committed, 2);
        // Stock and outbox agree: the order's `placed` event is in the
        // outbox, or (AwaitSink) already acknowledged by the sink.
        let pending = kinds(&outbox(&engine, &inner).await);
        match hand_off {
            HandOff::Outbox => assert_eq!(pending, set([(EventType::Placed, id)])),
            HandOff::AwaitSink { .. } => {
                assert!(pending.is_empty(), "{pending:?}");
                assert_eq!(kinds(&sink.inner.events()), set([(EventType::Placed, id)]));
            }
        }
        // The buyer retries with the key and learns the original answer.
        let again = engine
            .purchase(&creds(), buy(2).with_idempotency_key(key("gone")))
            .await;
        assert!(matches!(again, Outcome::Replayed(_)), "{again:?}");
        assert_eq!(ordered(&again), id);
    }
}

/// Plain `purchase` (not to completion) dropped mid-reserve: the store is
/// still consistent, either nothing reserved or an order with its event.
#[tokio::test(start_paused = true)]
async fn a_dropped_plain_purchase_leaves_the_store_consistent() {
    let inner = store_with_sale(5).await;
    let script = Arc::new(Script::default());
    let store = Arc::new(scripted(inner.clone(), script.clone()));
    let engine = engine_over(
        store.clone(),
        Arc::new(MemoryOrderSink::new()),
        HandOff::Outbox,
    );
    script.set("reserve", [Fault::Slow(50)]);
    {
        let creds = creds();
        let fut = engine.purchase(&creds, buy(1));
        let mut fut = std::pin::pin!(fut);
        assert!(futures::poll!(fut.as_mut()).is_pending());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let l = levels(&inner).await;
    assert!(l.is_consistent(), "{l:?}");
    let placed = outbox(&engine, &inner).await.len() as u64;
    assert_eq!(l.committed, placed, "units and placed events agree");
}
