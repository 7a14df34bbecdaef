//! Confirming and cancelling holds over HTTP.

use super::*;

pub async fn confirm_and_cancel_holds<C: Client>(c: &C, f: &Fixture) {
    let ann = f.token("ann");
    let held = |q: u32| buy(TICKETS).bearer(&ann).json(json!({ "quantity": q }));
    let r = c.send(held(2)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "held");
    assert_eq!(r.body["hold_expires_at"], "2026-01-01T00:01:00.000Z");
    let first = r.body["order_id"].as_str().unwrap().to_owned();
    assert_eq!(f.levels(TICKETS).await.held, 2);

    // Only the buyer (or an admin) may touch it.
    let r = c
        .send(Req::post(format!("/orders/{first}/confirm")).bearer(&f.token("eve")))
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = c.send(Req::post(format!("/orders/{first}/cancel"))).await;
    assert_eq!(r.status, 401);
    let r = c
        .send(Req::post(format!("/orders/{first}/confirm")).bearer(&ann))
        .await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (200, &json!("confirmed")),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["order_id"], first.as_str());
    let r = c
        .send(Req::post(format!("/orders/{first}/confirm")).bearer(&ann))
        .await;
    assert_eq!(r.status, 200, "confirming twice answers the status again");
    let r = c
        .send(Req::post(format!("/orders/{first}/cancel")).bearer(&ann))
        .await;
    assert_eq!(
        (r.status, r.code(), r.body["status"].as_str()),
        (409, "order_not_held", Some("confirmed"))
    );
    let l = f.levels(TICKETS).await;
    assert_eq!((l.available, l.held, l.committed), (3, 0, 2));

    // Cancel returns the units; an admin may cancel anyone's hold.
    let r = c.send(held(1)).await;
    let second = r.body["order_id"].as_str().unwrap().to_owned();
    let r = c
        .send(Req::post(format!("/orders/{second}/cancel")).bearer(&f.admin()))
        .await;
    assert_eq!(
        (r.status, &r.body["status"]),
        (200, &json!("cancelled")),
        "{:?}",
        r.body
    );
    let r = c
        .send(Req::post(format!("/orders/{second}/confirm")).bearer(&ann))
        .await;
    assert_eq!((r.status, r.code()), (409, "order_not_held"));
    assert_eq!(f.levels(TICKETS).await.available, 3);

    // An unconfirmed hold lapses.
    let r = c.send(held(1)).await;
    let third = r.body["order_id"].as_str().unwrap().to_owned();
    f.clock.advance(Duration::from_secs(61));
    assert_eq!(f.engine.expire_holds().await.unwrap(), 1);
    let ann = f.token("ann");
    let r = c
        .send(Req::post(format!("/orders/{third}/confirm")).bearer(&ann))
        .await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (409, Some("expired"))
    );
    assert_eq!(f.levels(TICKETS).await.available, 3);

    // Unknown and ill-formed order ids.
    let unknown = OrderId::new(T0);
    let r = c
        .send(Req::post(format!("/orders/{unknown}/confirm")).bearer(&ann))
        .await;
    assert_eq!((r.status, r.code()), (404, "unknown_order"));
    let r = c
        .send(Req::post("/orders/not-a-uuid/cancel").bearer(&ann))
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (400, Some("order_id"))
    );
}
