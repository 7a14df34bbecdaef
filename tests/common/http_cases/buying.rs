//! Purchases that succeed, replay, conflict, are limited, refused or
//! unavailable.

use super::*;

pub async fn buy_succeeds<C: Client>(c: &C, f: &Fixture) {
    let r = c
        .send(
            buy(WIDGET)
                .bearer(&f.token("ann"))
                .json(json!({ "quantity": 2 })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body["product_id"], WIDGET);
    assert_eq!(r.body["quantity"], 2);
    assert_eq!(r.body["status"], "confirmed");
    assert_eq!(r.body["user_id"], "ann");
    assert_eq!(r.body["replayed"], false);
    assert!(
        r.body["order_id"]
            .as_str()
            .unwrap()
            .parse::<OrderId>()
            .is_ok()
    );
    let l = f.levels(WIDGET).await;
    assert_eq!((l.available, l.held, l.committed), (8, 0, 2));
    assert_eq!(f.orders().await, 1);
    assert_eq!(
        f.sink.inner.orders()[0].order_id.to_string(),
        r.body["order_id"].as_str().unwrap()
    );
}

pub async fn body_is_optional<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let r = c.send(buy(WIDGET).bearer(&t)).await;
    assert_eq!((r.status, &r.body["quantity"]), (200, &json!(1)));
    let r = c.send(buy(WIDGET).bearer(&t).json(json!({}))).await;
    assert_eq!((r.status, &r.body["quantity"]), (200, &json!(1)));
    assert_eq!(f.levels(WIDGET).await.committed, 2);
}

pub async fn idempotent_replay_and_conflict<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let req = |q: u32, key: &str| {
        buy(WIDGET)
            .bearer(&t)
            .header("idempotency-key", key)
            .json(json!({ "quantity": q }))
    };
    let first = c.send(req(2, "order-1")).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let again = c.send(req(2, "order-1")).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["order_id"], first.body["order_id"]);
    assert_eq!(again.body["replayed"], true);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["idempotency_key"], "order-1");
    let conflict = c.send(req(1, "order-1")).await;
    assert_eq!(
        (conflict.status, conflict.code()),
        (409, "idempotency_conflict")
    );
    assert_eq!(f.levels(WIDGET).await.committed, 2);
    assert_eq!(f.orders().await, 1);
    // A bad key is a 400 naming the header.
    for key in ["", &"k".repeat(129), "caf\u{e9}"] {
        let r = c
            .send(buy(WIDGET).bearer(&t).header("idempotency-key", key))
            .await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (400, Some("idempotency_key")),
            "{key:?}"
        );
    }
    assert_eq!(f.orders().await, 1);
}

pub async fn rate_limited_is_429_with_retry_after<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("bot");
    let mut limited = None;
    for _ in 0..11 {
        let r = c.send(buy(BULK).bearer(&t)).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = limited.expect("the 11th attempt in a minute is limited");
    assert_eq!(r.code(), "rate_limited");
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=6).contains(&secs), "{secs}");
    assert_eq!(f.levels(BULK).await.committed, 10);
    // Another buyer is not affected.
    let r = c.send(buy(BULK).bearer(&f.token("ann"))).await;
    assert_eq!(r.status, 200);
}

pub async fn sold_out_limit_and_window_are_400<C: Client>(c: &C, f: &Fixture) {
    let mut sold = 0;
    for user in ["a", "b", "c", "d", "e"] {
        let t = f.token(user);
        let r = c
            .send(buy(WIDGET).bearer(&t).json(json!({ "quantity": 2 })))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        sold += 2;
        if user == "a" {
            // Per-buyer cap of 3: 2 + 2 is too many.
            let r = c
                .send(buy(WIDGET).bearer(&t).json(json!({ "quantity": 2 })))
                .await;
            assert_eq!((r.status, r.code()), (400, "limit_exceeded"));
        }
    }
    assert_eq!(sold, 10);
    let r = c.send(buy(WIDGET).bearer(&f.token("f"))).await;
    assert_eq!((r.status, r.code()), (400, "sold_out"));
    let l = f.levels(WIDGET).await;
    assert_eq!((l.available, l.committed), (0, 10));
    let r = c.send(buy(LATER).bearer(&f.token("f"))).await;
    assert_eq!((r.status, r.code()), (400, "sale_not_active"));
    assert_eq!(f.orders().await, 5);
}

pub async fn failing_ports_are_503_and_reserve_nothing<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let before = f.levels(WIDGET).await;
    // A sink that is down costs nothing: the order is in the store's
    // outbox, and the relay delivers it once the sink is back.
    f.sink_fails.set(true);
    let r = c.send(buy(WIDGET).bearer(&t)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(f.engine.drain_outbox().await.is_err(), "the sink is down");
    assert!(f.sink.inner.is_empty());
    f.sink_fails.set(false);
    assert_eq!(f.orders().await, 1, "delivered after recovery");
    let before = StockLevels {
        available: before.available - 1,
        committed: before.committed + 1,
        ..before
    };

    f.stock_fails.set(true);
    let r = c.send(buy(WIDGET).bearer(&t)).await;
    assert_eq!((r.status, r.code()), (503, "unavailable"));
    assert!(r.header("retry-after").is_some());
    let r = c.send(Req::get(format!("/products/{WIDGET}"))).await;
    assert_eq!((r.status, r.code()), (503, "unavailable"));
    assert!(r.header("retry-after").is_some());
    let r = c.send(Req::get("/readyz")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["checks"]["stock_store"], "failed");
    let r = c.send(Req::get("/healthz")).await;
    assert_eq!(r.status, 200, "liveness does not depend on backends");
    f.stock_fails.set(false);
    unchanged(f, WIDGET, before, 1, "a failed store").await;
    let r = c.send(buy(WIDGET).bearer(&t)).await;
    assert_eq!(r.status, 200, "recovers: {:?}", r.body);
}

pub async fn await_sink_is_202_when_the_sink_is_down<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let r = c.send(buy(WIDGET).bearer(&t)).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!("confirmed")));
    assert_eq!(f.sink.inner.orders().len(), 1, "acked before the 200");
    f.sink_fails.set(true);
    let r = c
        .send(buy(WIDGET).bearer(&t).header("idempotency-key", "k-202"))
        .await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (202, &json!("pending")),
        "{:?}",
        r.body
    );
    let pending = r.body["order_id"].clone();
    // The order stands: units sold, never released for a sink failure.
    assert_eq!(f.levels(WIDGET).await.committed, 2);
    // A replay while the sink is still down is pending too, same order.
    let again = c
        .send(buy(WIDGET).bearer(&t).header("idempotency-key", "k-202"))
        .await;
    assert_eq!((again.status, &again.body["order_id"]), (202, &pending));
    f.sink_fails.set(false);
    assert_eq!(f.orders().await, 2, "the relay delivered the pending order");
    let again = c
        .send(buy(WIDGET).bearer(&t).header("idempotency-key", "k-202"))
        .await;
    assert_eq!((again.status, &again.body["order_id"]), (200, &pending));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(f.levels(WIDGET).await.committed, 2);
}

pub async fn replays_win_after_the_terms_change<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let req = || {
        buy(WIDGET)
            .bearer(&t)
            .header("idempotency-key", "terms")
            .json(json!({ "quantity": 2 }))
    };
    let first = c.send(req()).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    // The admin lowers the per-order maximum to 1 and closes the sale.
    let r = c
        .send(
            Req::put(format!("/admin/products/{WIDGET}"))
                .bearer(&f.admin())
                .json(json!({
                    "stock": 10, "per_user_limit": 2, "per_order_max": 1,
                    "ends_at": T0.to_rfc3339(),
                })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // A new request is refused, but the replay still wins: same order.
    let fresh = c.send(buy(WIDGET).bearer(&f.token("bob"))).await;
    assert_eq!((fresh.status, fresh.code()), (400, "sale_not_active"));
    let again = c.send(req()).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["order_id"], first.body["order_id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(f.orders().await, 1);
}
