//! Purchases: the rate limit, idempotency, validation order and restocks.

use super::*;

#[tokio::test]
async fn burst_then_rate_limited_with_retry_after_then_admitted() {
    let s = shop("2/1m");
    let sale = Sale::builder(pid("p"), 100).build().unwrap();
    s.engine.create_sale(&sale).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            s.engine.purchase(&as_("alice"), buy("p", 1)).await.code(),
            "purchased"
        );
    }
    let limited = s.engine.purchase(&as_("alice"), buy("p", 1)).await;
    assert_eq!(
        limited,
        Outcome::RateLimited {
            retry_after: Duration::from_secs(30)
        }
    );
    let http = ApiResponse::from_outcome(&limited);
    assert_eq!(http.status, 429);
    assert_eq!(http.header("retry-after"), Some("30"));
    // Another buyer is not affected; the limited attempt reserved nothing.
    assert_eq!(
        s.engine.purchase(&as_("bob"), buy("p", 1)).await.code(),
        "purchased"
    );
    assert_eq!(levels(&s, "p").await.committed, 3);
    s.clock.advance(Duration::from_secs(30));
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 1)).await.code(),
        "purchased"
    );
    assert_eq!(
        delivered(&s).await.len(),
        4,
        "one placed event per purchase"
    );
}

#[tokio::test]
async fn idempotent_replay_returns_the_original_and_conflict_is_refused() {
    let s = shop("100/1s");
    s.engine
        .create_sale(&Sale::builder(pid("p"), 10).build().unwrap())
        .await
        .unwrap();
    let first = s
        .engine
        .purchase(&as_("alice"), keyed("p", 2, "checkout-42"))
        .await;
    let Outcome::Purchased(original) = &first else {
        panic!("{first:?}")
    };
    assert_eq!(
        ApiResponse::from_outcome(&first).header("idempotent-replayed"),
        None
    );
    let again = s
        .engine
        .purchase(&as_("alice"), keyed("p", 2, "checkout-42"))
        .await;
    assert_replay_of(&again, original.order.order_id);
    assert_eq!(again.purchase().unwrap().status, OrderStatus::Confirmed);
    assert_eq!(again.purchase().unwrap().order, original.order);
    let conflict = s
        .engine
        .purchase(&as_("alice"), keyed("p", 3, "checkout-42"))
        .await;
    assert_eq!(conflict, Outcome::IdempotencyConflict);
    assert_eq!(conflict.http_status(), 409);
    // Bob's use of the same key is his own request.
    let bobs = s
        .engine
        .purchase(&as_("bob"), keyed("p", 1, "checkout-42"))
        .await;
    assert_eq!(bobs.code(), "purchased");
    assert_eq!(levels(&s, "p").await.committed, 3);
    let events = delivered(&s).await;
    assert_eq!(
        events,
        {
            let mut want = vec![
                (EventType::Placed, original.order.order_id),
                (EventType::Placed, order_of(&bobs)),
            ];
            want.sort_by_key(|(_, id)| *id);
            want
        },
        "one order per key and buyer"
    );
}

#[tokio::test]
async fn validation_happens_after_authentication_before_rate_or_store() {
    let s = shop("1/1h");
    let sale = Sale::builder(pid("p"), 10)
        .per_order_max(2)
        .starts_at(T0.saturating_add(Duration::from_secs(10)))
        .build()
        .unwrap();
    s.engine.create_sale(&sale).await.unwrap();
    // None of these spend alice's only rate-limit token.
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 3)).await.code(),
        "invalid_request"
    );
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 1)).await,
        Outcome::NotOnSale
    );
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("nope", 1)).await,
        Outcome::UnknownProduct
    );
    s.clock.advance(Duration::from_secs(10));
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 2)).await.code(),
        "purchased"
    );
    assert_eq!(
        s.engine
            .purchase(&Credentials::none(), buy("p", 1))
            .await
            .code(),
        "unauthenticated"
    );
}

#[tokio::test]
async fn restock_is_seen_at_once_and_cannot_go_below_sold() {
    let s = shop("100/1s");
    s.engine
        .create_sale(&Sale::builder(pid("p"), 1).build().unwrap())
        .await
        .unwrap();
    assert_eq!(
        s.engine.purchase(&as_("alice"), buy("p", 1)).await.code(),
        "purchased"
    );
    assert_eq!(
        s.engine.purchase(&as_("bob"), buy("p", 1)).await,
        Outcome::SoldOut
    );
    let below = Sale::builder(pid("p"), 0).build().unwrap();
    assert_eq!(
        s.engine.create_sale(&below).await.unwrap(),
        SaleWrite::StockBelowSold {
            held_or_committed: 1
        }
    );
    s.engine
        .create_sale(&Sale::builder(pid("p"), 2).build().unwrap())
        .await
        .unwrap();
    assert_eq!(
        s.engine.purchase(&as_("bob"), buy("p", 1)).await.code(),
        "purchased"
    );
}
