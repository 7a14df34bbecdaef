//! `GET /products/{id}` from the instance's cache: an `ETag`, `304` for a
//! matching `If-None-Match`, levels up to the staleness old, and a sale
//! written through this instance fresh at once.

use super::*;

/// The 250 ms default staleness of the fixture's engine.
const STALENESS: Duration = Duration::from_millis(250);

pub async fn product_reads_are_cached_with_an_etag<C: Client>(c: &C, f: &Fixture) {
    let path = format!("/products/{WIDGET}");
    let first = c.send(Req::get(&path)).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let tag = first.header("etag").expect("an ETag").to_owned();
    assert!(
        tag.len() == 18 && tag.starts_with('"') && tag.ends_with('"'),
        "{tag}"
    );
    assert_eq!(first.header("cache-control"), Some("max-age=0"));

    for held in [
        tag.clone(),
        format!("W/{tag}"),
        format!("\"x\", {tag}"),
        "*".into(),
    ] {
        let r = c
            .send(Req::get(&path).header("if-none-match", held.clone()))
            .await;
        assert_eq!(r.status, 304, "If-None-Match: {held}");
        assert_eq!(r.body, Value::Null, "no body");
        assert_eq!(r.header("etag"), Some(tag.as_str()));
    }
    let other = c
        .send(Req::get(&path).header("if-none-match", "\"0000000000000000\""))
        .await;
    assert_eq!((other.status, &other.body), (200, &first.body));

    // A purchase: the page may show the old levels for the staleness.
    let bought = c
        .send(
            buy(WIDGET)
                .bearer(&f.token("ann"))
                .json(json!({"quantity": 1})),
        )
        .await;
    assert_eq!(bought.status, 200, "{:?}", bought.body);
    let cached = c.send(Req::get(&path)).await;
    assert_eq!((cached.status, &cached.body), (200, &first.body));
    f.clock.advance(STALENESS);
    let fresh = c
        .send(Req::get(&path).header("if-none-match", tag.clone()))
        .await;
    assert_eq!(fresh.status, 200, "the levels changed: a new tag");
    assert_eq!(
        fresh.body["available"],
        first.body["available"].as_u64().unwrap() - 1
    );
    assert_ne!(fresh.header("etag"), Some(tag.as_str()));

    // A restock through this instance is seen at once.
    let restock = json!({ "stock": 20, "per_user_limit": 3, "per_order_max": 2 });
    let put = c
        .send(
            Req::put(format!("/admin/products/{WIDGET}"))
                .bearer(&f.admin())
                .json(restock),
        )
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let after = c.send(Req::get(&path)).await;
    assert_eq!(after.body["total"], 20);
}
