//! The product view and the admin route that writes sales.

use super::*;

pub async fn product_view<C: Client>(c: &C, f: &Fixture) {
    let r = c
        .send(
            buy(TICKETS)
                .bearer(&f.token("ann"))
                .json(json!({"quantity": 2})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c.send(Req::get(format!("/products/{TICKETS}"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let b = &r.body;
    assert_eq!(b["product_id"], TICKETS);
    assert_eq!(
        (&b["total"], &b["available"], &b["held"], &b["sold"]),
        (&json!(5), &json!(3), &json!(2), &json!(0))
    );
    assert_eq!(
        (&b["stock"], &b["per_user_limit"], &b["per_order_max"]),
        (&json!(5), &json!(5), &json!(5))
    );
    assert_eq!(b["hold_seconds"], 60);
    assert_eq!(b["on_sale"], true);
    let r = c.send(Req::get(format!("/products/{LATER}"))).await;
    assert_eq!(r.body["on_sale"], false);
    assert_eq!(r.body["starts_at"], "2026-01-01T01:00:00.000Z");
}

pub async fn admin_route<C: Client>(c: &C, f: &Fixture) {
    let path = "/admin/products/new-drop";
    let body = json!({ "stock": 50, "per_user_limit": 2, "per_order_max": 1,
                       "starts_at": "2026-01-01T00:00:00Z", "hold_seconds": 30 });
    let r = c.send(Req::put(path).json(body.clone())).await;
    assert_eq!(
        (r.status, r.header("www-authenticate")),
        (401, Some("Bearer"))
    );
    for (_, token) in bad_tokens(f).into_iter().skip(1) {
        let r = c
            .send(Req::put(path).bearer(&token.unwrap()).json(body.clone()))
            .await;
        assert_eq!(r.status, 401);
    }
    let r = c
        .send(Req::put(path).bearer(&f.token("ann")).json(body.clone()))
        .await;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = c.send(Req::get("/products/new-drop")).await;
    assert_eq!(r.status, 404, "a refused admin call creates nothing");

    let admin = f.admin();
    let r = c
        .send(Req::put(path).bearer(&admin).json(body.clone()))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        (&r.body["total"], &r.body["hold_seconds"]),
        (&json!(50), &json!(30))
    );
    let r = c
        .send(
            Req::put(path)
                .bearer(&admin)
                .json(json!({ "stock": 80, "per_user_limit": 2, "per_order_max": 1 })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (&r.body["available"], &r.body["hold_seconds"]),
        (&json!(80), &Value::Null)
    );

    for (bad, field) in [
        (json!({ "per_user_limit": 2, "per_order_max": 1 }), "stock"),
        (
            json!({ "stock": -5, "per_user_limit": 2, "per_order_max": 1 }),
            "stock",
        ),
        (
            json!({ "stock": 5, "per_user_limit": 0, "per_order_max": 1 }),
            "per_user_limit",
        ),
        (
            json!({ "stock": 5, "per_user_limit": 1, "per_order_max": 1, "starts_at": "tomorrow" }),
            "starts_at",
        ),
        (
            json!({ "stock": 5, "per_user_limit": 1, "per_order_max": 1,
                 "starts_at": "2026-02-01T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z" }),
            "ends_at",
        ),
        (
            json!({ "stock": 5, "per_user_limit": 1, "per_order_max": 1, "colour": "red" }),
            "colour",
        ),
        (json!([1, 2]), "body"),
    ] {
        let r = c
            .send(Req::put(path).bearer(&admin).json(bad.clone()))
            .await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (400, Some(field)),
            "{bad}"
        );
    }
    assert_eq!(f.levels("new-drop").await.total, 80);
    let r = c
        .send(
            Req::put("/admin/products/bad$id")
                .bearer(&admin)
                .json(body.clone()),
        )
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (400, Some("product_id"))
    );

    // A restock below what is already sold is a conflict.
    let r = c
        .send(
            buy(WIDGET)
                .bearer(&f.token("ann"))
                .json(json!({"quantity": 2})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .send(
            Req::put(format!("/admin/products/{WIDGET}"))
                .bearer(&admin)
                .json(json!({ "stock": 1, "per_user_limit": 3, "per_order_max": 2 })),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "stock_below_sold"));
    assert_eq!(f.levels(WIDGET).await.total, 10);
}
