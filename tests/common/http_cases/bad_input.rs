//! Bad tokens, quantities, bodies and product ids: a clear 4xx and nothing
//! changed.

use super::*;

pub async fn bad_tokens_are_401_and_change_nothing<C: Client>(c: &C, f: &Fixture) {
    let before = f.levels(WIDGET).await;
    for (name, token) in bad_tokens(f) {
        let mut req = buy(WIDGET).json(json!({ "quantity": 1 }));
        if let Some(t) = &token {
            req = req.bearer(t);
        }
        let r = c.send(req).await;
        assert_eq!(r.status, 401, "{name}: {:?}", r.body);
        assert_eq!(r.code(), "unauthenticated", "{name}");
        assert!(
            r.header("www-authenticate")
                .unwrap_or("")
                .starts_with("Bearer"),
            "{name}: {:?}",
            r.headers
        );
        unchanged(f, WIDGET, before, 0, name).await;
    }
    // Other schemes are not bearer tokens.
    let r = c
        .send(buy(WIDGET).header("authorization", "Basic YWxpY2U6cHc="))
        .await;
    assert_eq!(
        (r.status, r.header("www-authenticate")),
        (401, Some("Bearer"))
    );
    unchanged(f, WIDGET, before, 0, "basic auth").await;
}

pub async fn bad_quantities_are_400_and_change_nothing<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let before = f.levels(WIDGET).await;
    for body in [
        "{\"quantity\": 0}",
        "{\"quantity\": -1}",
        "{\"quantity\": -9223372036854775808}",
        "{\"quantity\": 1.5}",
        "{\"quantity\": \"1\"}",
        "{\"quantity\": true}",
        "{\"quantity\": null}",
        "{\"quantity\": [1]}",
        "{\"quantity\": 1e30}",
        "{\"quantity\": 99999999999999999999999999}",
        "{\"quantity\": 4294967297}",
        "{\"quantity\": 3}", // above widget's per-order max of 2
    ] {
        let r = c
            .send(
                buy(WIDGET)
                    .bearer(&t)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(r.code(), "invalid_request", "{body}");
        assert_eq!(r.body["field"], "quantity", "{body}");
        assert!(r.body["message"].as_str().unwrap().contains("quantity"));
        unchanged(f, WIDGET, before, 0, body).await;
    }
}

pub async fn bad_bodies_are_400_or_413_and_change_nothing<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let before = f.levels(WIDGET).await;
    for (body, field) in [
        ("{", "body"),
        ("{\"quantity\": 1", "body"),
        ("{\"quantity\": 1,}", "body"),
        ("quantity=1", "body"),
        ("[{\"quantity\": 1}]", "body"),
        ("1", "body"),
        ("\"1\"", "body"),
        ("null", "body"),
        ("{\"quantity\": 1, \"price\": 0}", "price"),
        ("{\"qty\": 1}", "qty"),
    ] {
        let r = c.send(buy(WIDGET).bearer(&t).body(body)).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(r.body["field"], field, "{body}");
        unchanged(f, WIDGET, before, 0, body).await;
    }
    let r = c
        .send(buy(WIDGET).bearer(&t).body(vec![0xff, 0xfe, 0x00]))
        .await;
    assert_eq!((r.status, r.body["field"].as_str()), (400, Some("body")));

    // Oversized: 413 whatever the content, before anything else.
    let big = format!("{{\"quantity\": 1, \"pad\": \"{}\"}}", "x".repeat(5000));
    let r = c.send(buy(WIDGET).bearer(&t).body(big.clone())).await;
    assert_eq!(
        (r.status, r.code()),
        (413, "payload_too_large"),
        "{:?}",
        r.body
    );
    let r = c.send(buy(WIDGET).body(vec![b' '; 4097])).await;
    assert_eq!(r.status, 413);
    // The same without a declared size (chunked): 413 too, not 400.
    for body in [big.clone().into_bytes(), vec![b' '; 4097]] {
        let r = c.send(buy(WIDGET).bearer(&t).body(body).chunked()).await;
        assert_eq!(
            (r.status, r.code()),
            (413, "payload_too_large"),
            "chunked: {:?}",
            r.body
        );
    }
    unchanged(f, WIDGET, before, 0, "oversized bodies").await;
    // A small chunked body buys as usual.
    let r = c
        .send(buy(WIDGET).bearer(&t).body("{\"quantity\": 1}").chunked())
        .await;
    assert_eq!(r.status, 200, "chunked: {:?}", r.body);
    // Exactly at the limit is fine (whitespace is an empty body).
    let r = c.send(buy(WIDGET).bearer(&t).body(vec![b' '; 4096])).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let after = f.levels(WIDGET).await;
    assert_eq!(after.committed, before.committed + 2);
}

pub async fn bad_product_ids<C: Client>(c: &C, f: &Fixture) {
    let t = f.token("ann");
    let before = f.levels(WIDGET).await;
    for path in [
        format!("/buy/{}", "p".repeat(65)),
        "/buy/a%20b".into(),
        "/buy/a$b".into(),
        "/buy/%C3%A9t%C3%A9".into(),
        "/buy/a%2Fb".into(),
        "/buy/%FF".into(),
    ] {
        let r = c.send(Req::post(path.clone()).bearer(&t)).await;
        assert_eq!(r.status, 400, "{path}: {:?}", r.body);
        assert_eq!(r.body["field"], "product_id", "{path}");
        let r = c.send(Req::get(path.replace("/buy/", "/products/"))).await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (400, Some("product_id")),
            "{path}"
        );
    }
    let r = c.send(buy("no-such-thing").bearer(&t)).await;
    assert_eq!((r.status, r.code()), (404, "unknown_product"));
    let r = c.send(Req::get("/products/no-such-thing")).await;
    assert_eq!((r.status, r.code()), (404, "unknown_product"));
    // The longest valid id is fine (unknown here).
    let r = c.send(buy(&"p".repeat(64)).bearer(&t)).await;
    assert_eq!(r.status, 404);
    unchanged(f, WIDGET, before, 0, "bad ids").await;
}
