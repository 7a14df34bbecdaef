//! Replays win over a closed window, changed terms, the cap and a crash.

use super::*;

async fn keyed_purchase(s: &Shop, q: i64, key: &str) -> OrderId {
    let o = s.engine.purchase(&as_("alice"), keyed("p", q, key)).await;
    assert_eq!(o.code(), "purchased", "{o:?}");
    order_of(&o)
}

#[tokio::test]
async fn a_replay_after_the_sale_ended_gets_the_original_answer() {
    let s = shop("100/1s");
    let sale = Sale::builder(pid("p"), 10)
        .ends_at(T0.saturating_add(Duration::from_secs(10)))
        .build()
        .unwrap();
    s.engine.create_sale(&sale).await.unwrap();
    s.clock.advance(Duration::from_secs(9));
    let original = keyed_purchase(&s, 2, "late-answer").await;
    s.clock.advance(Duration::from_secs(5));
    // The answer was lost; the client retries after the end.
    let replay = s
        .engine
        .purchase(&as_("alice"), keyed("p", 2, "late-answer"))
        .await;
    assert_replay_of(&replay, original);
    // A new purchase after the end is refused, key or not.
    assert_eq!(
        s.engine.purchase(&as_("alice"), keyed("p", 2, "new")).await,
        Outcome::NotOnSale
    );
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 2)).await,
        Outcome::NotOnSale
    );
    assert_eq!(levels(&s, "p").await.committed, 2);
    assert_eq!(delivered(&s).await, vec![(EventType::Placed, original)]);
}

#[tokio::test]
async fn a_replay_after_a_restock_lowered_the_per_order_max_gets_the_original_answer() {
    let s = shop("100/1s");
    let sale = Sale::builder(pid("p"), 10)
        .per_order_max(3)
        .build()
        .unwrap();
    s.engine.create_sale(&sale).await.unwrap();
    let original = keyed_purchase(&s, 3, "big-order").await;
    let restock = Sale::builder(pid("p"), 20)
        .per_order_max(1)
        .build()
        .unwrap();
    assert_eq!(
        s.engine.create_sale(&restock).await.unwrap(),
        SaleWrite::Updated
    );
    let replay = s
        .engine
        .purchase(&as_("alice"), keyed("p", 3, "big-order"))
        .await;
    assert_replay_of(&replay, original);
    // A new order of 3 is above the new maximum, key or not.
    for req in [keyed("p", 3, "other"), buy("p", 3)] {
        match s.engine.purchase(&as_("alice"), req).await {
            Outcome::Invalid(e) => assert_eq!(e.field, "quantity"),
            other => panic!("{other:?}"),
        }
    }
    let l = levels(&s, "p").await;
    assert_eq!((l.total, l.committed), (20, 3));
    assert_eq!(delivered(&s).await, vec![(EventType::Placed, original)]);
}

#[tokio::test]
async fn a_replay_when_the_buyer_is_at_the_cap_or_stock_is_gone_gets_the_original_answer() {
    let s = shop("100/1s");
    let sale = Sale::builder(pid("p"), 3)
        .per_user_limit(2)
        .build()
        .unwrap();
    s.engine.create_sale(&sale).await.unwrap();
    let original = keyed_purchase(&s, 2, "at-cap").await;
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 1)).await,
        Outcome::LimitExceeded
    );
    let replay = s
        .engine
        .purchase(&as_("alice"), keyed("p", 2, "at-cap"))
        .await;
    assert_replay_of(&replay, original);
    // Bob takes the last unit: sold out, and the replay still wins.
    assert_eq!(
        s.engine.purchase(&as_("bob"), buy("p", 1)).await.code(),
        "purchased"
    );
    assert_eq!(
        s.engine.purchase(&as_("bob"), buy("p", 1)).await,
        Outcome::SoldOut
    );
    let replay = s
        .engine
        .purchase(&as_("alice"), keyed("p", 2, "at-cap"))
        .await;
    assert_replay_of(&replay, original);
    assert_eq!(levels(&s, "p").await.available, 0);
}

#[tokio::test]
async fn a_replay_under_await_sink_is_the_original_and_the_sink_keeps_one_order() {
    let s = shop_with(
        "100/1s",
        HandOff::AwaitSink {
            timeout: Duration::from_millis(200),
        },
    );
    s.engine
        .create_sale(&Sale::builder(pid("p"), 5).build().unwrap())
        .await
        .unwrap();
    let original = keyed_purchase(&s, 1, "k").await;
    // AwaitSink: the sink had the order before the 200.
    assert_eq!(s.sink.orders().len(), 1);
    let replay = s.engine.purchase(&as_("alice"), keyed("p", 1, "k")).await;
    assert_replay_of(&replay, original);
    assert_eq!(delivered(&s).await, vec![(EventType::Placed, original)]);
}

#[tokio::test]
async fn a_replay_of_a_cancelled_hold_answers_the_order_as_it_stands() {
    let s = shop("100/1s");
    hold_sale(&s).await;
    let o = s
        .engine
        .purchase(&as_("alice"), keyed("seat", 1, "seat-1"))
        .await;
    let id = order_of(&o);
    s.engine.cancel(&as_("alice"), &id).await;
    let replay = s
        .engine
        .purchase(&as_("alice"), keyed("seat", 1, "seat-1"))
        .await;
    assert_replay_of(&replay, id);
    assert_eq!(replay.purchase().unwrap().status, OrderStatus::Cancelled);
    assert_eq!(
        levels(&s, "seat").await.available,
        4,
        "the replay reserved nothing"
    );
}

/// A request with a key skips local validation so that a replay can win;
/// without a matching finished purchase the store refuses it the same way.
#[tokio::test]
async fn a_keyed_request_is_validated_by_the_store() {
    let s = shop("3/1h");
    let sale = Sale::builder(pid("p"), 10)
        .per_order_max(2)
        .starts_at(T0.saturating_add(Duration::from_secs(10)))
        .build()
        .unwrap();
    s.engine.create_sale(&sale).await.unwrap();
    assert_eq!(
        s.engine.purchase(&as_("alice"), keyed("p", 1, "a")).await,
        Outcome::NotOnSale
    );
    s.clock.advance(Duration::from_secs(10));
    match s.engine.purchase(&as_("alice"), keyed("p", 3, "b")).await {
        Outcome::Invalid(e) => assert_eq!(e.field, "quantity"),
        other => panic!("{other:?}"),
    }
    assert_eq!(levels(&s, "p").await.available, 10);
    // Both reached the store, so both spent one of alice's three tokens.
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 1)).await.code(),
        "purchased"
    );
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 1)).await.code(),
        "rate_limited"
    );
}

/// A first request reserved under its key, then its server died before
/// answering: the order stands, with its `placed` event in the outbox. The
/// client's retry on another server gets that order back, and the sink
/// gets it exactly once.
#[tokio::test]
async fn a_retry_after_a_crash_replays_the_orphaned_order_once() {
    let s = shop("100/1s");
    s.engine
        .create_sale(&Sale::builder(pid("p"), 5).build().unwrap())
        .await
        .unwrap();
    let key = IdempotencyKey::new("crash-1").unwrap();
    let first = ReserveRequest {
        order_id: OrderId::new(T0),
        product: pid("p"),
        user: UserId::new("alice").unwrap(),
        quantity: Quantity::new(2).unwrap(),
        idempotency_key: Some(key.clone()),
        now: T0,
    };
    let ReserveOutcome::Reserved(orphan) = s.store.reserve(&first).await.unwrap() else {
        panic!()
    };
    let retry = s
        .engine
        .purchase(&as_("alice"), keyed("p", 2, "crash-1"))
        .await;
    assert_replay_of(&retry, orphan.order_id);
    assert_eq!(retry.purchase().unwrap().status, OrderStatus::Confirmed);
    let l = levels(&s, "p").await;
    assert_eq!((l.held, l.committed), (0, 2));
    // And again: a plain replay, still one order.
    let again = s
        .engine
        .purchase(&as_("alice"), keyed("p", 2, "crash-1"))
        .await;
    assert_replay_of(&again, orphan.order_id);
    assert_eq!(
        delivered(&s).await,
        vec![(EventType::Placed, orphan.order_id)]
    );
    assert_eq!(s.sink.orders(), vec![orphan.to_order()]);
}
