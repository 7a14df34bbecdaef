//! Reduced cases of what `every_2xx_names_an_order_that_stands` found: a
//! replay answered while the original request's void is pending or racing a
//! confirm.

use super::*;

/// The defect `every_2xx_names_an_order_that_stands` finds, reduced: a
/// replay answered while the original request's reserve answer is lost.
/// Request A (key K) is applied by the store but its answer times out; the
/// client retries with K (request B) before A's void lands: the store
/// answers `Duplicate(A)`, B answers 200 Replayed naming A; then A's void
/// undoes A. The buyer holds a 200 for an order that was voided and whose
/// units are back on sale.
#[tokio::test(start_paused = true)]
async fn a_replay_while_the_original_is_being_voided_answers_200_for_a_voided_order() {
    let inner = store_with_sale(5).await;
    let script = Arc::new(Script::default());
    let store = Arc::new(scripted(inner.clone(), script.clone()));
    let engine = engine_over(
        store.clone(),
        Arc::new(MemoryOrderSink::new()),
        HandOff::Outbox,
    );
    script.set("reserve", [Fault::HangAfter]);
    let k = key("double-click");
    let a = {
        let (engine, k) = (engine.clone(), k.clone());
        tokio::spawn(async move {
            engine
                .purchase_to_completion(creds(), buy(1).with_idempotency_key(k))
                .await
        })
    };
    tokio::time::sleep(PORT_TIMEOUT / 2).await;
    let b = engine
        .purchase(&creds(), buy(1).with_idempotency_key(k))
        .await;
    let a = a.await.unwrap();
    assert_eq!(a, unavailable());
    let id = store.hook().reserve_requests()[0].order_id;
    assert!(matches!(b, Outcome::Replayed(_)), "{b:?}");
    assert_eq!(ordered(&b), id);
    let state = inner.reservation(&id).await.unwrap().unwrap().state;
    assert!(
        state.owns_units(),
        "B answered 200 Replayed for {id}, which A's void then undid (now {state:?}, stock {:?})",
        levels(&inner).await
    );
}

/// The realistic form of the same defect: the first attempt already
/// answered 503 (its reserve ran but the answer was lost, and its void
/// failed too, so the engine retries the void in the background). The
/// client retries with its key, as a 503 invites it to: the store still
/// finds the first order under the key and the retry answers 200 Replayed
/// for it. Then the background void lands and undoes that order.
#[tokio::test(start_paused = true)]
async fn a_retry_after_a_503_whose_void_is_still_pending_gets_200_for_an_order_then_voided() {
    let inner = store_with_sale(5).await;
    let script = Arc::new(Script::default());
    let store = Arc::new(scripted(inner.clone(), script.clone()));
    let engine = engine_over(
        store.clone(),
        Arc::new(MemoryOrderSink::new()),
        HandOff::Outbox,
    );
    script.set("reserve", [Fault::FailAfter]);
    script.set("void", [Fault::FailBefore]);
    let k = key("retry-after-503");
    let first = engine
        .purchase(&creds(), buy(1).with_idempotency_key(k.clone()))
        .await;
    assert_eq!(first, unavailable());
    let retry = engine
        .purchase(&creds(), buy(1).with_idempotency_key(k))
        .await;
    tokio::time::sleep(Duration::from_secs(10)).await; // the background void lands
    let id = store.hook().reserve_requests()[0].order_id;
    let state = inner.reservation(&id).await.unwrap().unwrap().state;
    assert!(
        !(retry.purchase().is_some() && state == ReservationState::Voided),
        "the retry answered {} {:?} for {id}, which the pending void then undid \
         (now {state:?}, stock {:?}): the buyer holds a 200 and owns nothing",
        retry.http_status(),
        retry.code(),
        levels(&inner).await
    );
}

/// The same race on a hold sale, where the buyer confirms the replayed
/// order before the original's void lands: a confirmed hold is closed, so
/// the void leaves it alone (`AlreadyClosed`), and the order stands with
/// exactly its `placed` and `confirmed` events (a `voided` one would share
/// the `confirmed` event's id, `<order>.2`, and be dropped as a duplicate).
#[tokio::test(start_paused = true)]
async fn a_replayed_hold_confirmed_before_the_void_lands_stands_with_its_events() {
    let sale = Sale::builder(product(), 5)
        .hold(Duration::from_secs(60))
        .build()
        .unwrap();
    let inner = memory_store(sale).await;
    let script = Arc::new(Script::default());
    let store = Arc::new(scripted(inner.clone(), script.clone()));
    let sink = Arc::new(MemoryOrderSink::new());
    let engine = engine_over(store.clone(), sink.clone(), HandOff::Outbox);
    script.set("reserve", [Fault::HangAfter]);
    let k = key("confirm-me");
    let a = {
        let (engine, k) = (engine.clone(), k.clone());
        tokio::spawn(async move {
            engine
                .purchase_to_completion(creds(), buy(1).with_idempotency_key(k))
                .await
        })
    };
    tokio::time::sleep(PORT_TIMEOUT / 2).await;
    let b = engine
        .purchase(&creds(), buy(1).with_idempotency_key(k))
        .await;
    assert!(matches!(b, Outcome::Replayed(_)), "{b:?}");
    let id = ordered(&b);
    let confirmed = engine.confirm(&creds(), &id).await;
    assert_eq!(
        confirmed.purchase().map(|p| p.status),
        Some(OrderStatus::Confirmed)
    );
    engine.drain_outbox().await.unwrap();
    assert_eq!(a.await.unwrap(), unavailable());
    engine.drain_outbox().await.unwrap();

    let r = inner.reservation(&id).await.unwrap().unwrap();
    assert_eq!(r.state, ReservationState::Committed);
    let l = levels(&inner).await;
    assert_eq!((l.available, l.committed), (4, 1));
    assert_eq!(
        kinds(&sink.events()),
        set([(EventType::Placed, id), (EventType::Confirmed, id)])
    );
    assert_eq!(sink.duplicates(), 0);
}
