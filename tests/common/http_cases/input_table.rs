//! One table of malformed requests, each answered with its documented
//! error and changing nothing.

use super::*;

/// The bad-input table: every row is a request a bot or a broken client
/// might send, with the 4xx and error code it must get. After each row no
/// product's stock has moved and no order (outbox event) was made.
pub async fn bad_input_table<C: Client>(c: &C, f: &Fixture) {
    struct Row {
        name: String,
        req: Req,
        status: u16,
        code: &'static str,
        field: Option<&'static str>,
    }
    let row = |name: &str, req: Req, status, code, field| Row {
        name: name.to_owned(),
        req,
        status,
        code,
        field,
    };
    // A user of its own per row, so no row is throttled by another.
    let n = std::sync::atomic::AtomicUsize::new(0);
    let user = || f.token(&format!("bad-input-{}", n.fetch_add(1, Ordering::Relaxed)));
    let admin = f.admin();
    let unknown_order = "0190b0c4-7a50-7cc3-9e4c-6f1a3e1a2b3c";
    let sale = |v: Value| {
        Req::put(format!("/admin/products/{WIDGET}"))
            .bearer(&admin)
            .json(v)
    };
    let big = format!("{{\"quantity\": 1, \"pad\": \"{}\"}}", "x".repeat(5000));
    let mut utf16 = vec![0xff, 0xfe];
    utf16.extend(
        "{\"quantity\": 1}"
            .encode_utf16()
            .flat_map(u16::to_le_bytes),
    );
    let mut rows = vec![
        // Headers.
        row(
            "empty Idempotency-Key",
            buy(WIDGET).bearer(&user()).header("idempotency-key", ""),
            400,
            "invalid_request",
            Some("idempotency_key"),
        ),
        row(
            "129-byte Idempotency-Key",
            buy(WIDGET)
                .bearer(&user())
                .header("idempotency-key", "k".repeat(129)),
            400,
            "invalid_request",
            Some("idempotency_key"),
        ),
        row(
            "non-ASCII Idempotency-Key",
            buy(WIDGET)
                .bearer(&user())
                .header("idempotency-key", "cl\u{e9}"),
            400,
            "invalid_request",
            Some("idempotency_key"),
        ),
        row(
            "tab in Idempotency-Key",
            buy(WIDGET)
                .bearer(&user())
                .header("idempotency-key", "a\tb"),
            400,
            "invalid_request",
            Some("idempotency_key"),
        ),
        row(
            "Authorization: Basic",
            buy(WIDGET).header("authorization", "Basic YWxpY2U6cHc="),
            401,
            "unauthenticated",
            None,
        ),
        row(
            "Authorization: Bearer without a token",
            buy(WIDGET).header("authorization", "Bearer"),
            401,
            "unauthenticated",
            None,
        ),
        row(
            "Authorization: token with spaces",
            buy(WIDGET).header("authorization", "Bearer a b c"),
            401,
            "unauthenticated",
            None,
        ),
        // Ids.
        row(
            "65-character product id",
            buy(&"p".repeat(65)).bearer(&user()),
            400,
            "invalid_request",
            Some("product_id"),
        ),
        row(
            "space in product id",
            buy("a%20b").bearer(&user()),
            400,
            "invalid_request",
            Some("product_id"),
        ),
        row(
            "slash in product id",
            buy("a%2Fb").bearer(&user()),
            400,
            "invalid_request",
            Some("product_id"),
        ),
        row(
            "non-ASCII product id",
            buy("%C3%A9t%C3%A9").bearer(&user()),
            400,
            "invalid_request",
            Some("product_id"),
        ),
        row(
            "invalid UTF-8 in product id",
            buy("%FF").bearer(&user()),
            400,
            "invalid_request",
            Some("product_id"),
        ),
        row(
            "NUL in product id",
            buy("a%00b").bearer(&user()),
            400,
            "invalid_request",
            Some("product_id"),
        ),
        row(
            "unknown product",
            buy("no-such-product").bearer(&user()),
            404,
            "unknown_product",
            None,
        ),
        row(
            "order id not a UUID",
            Req::post("/orders/not-a-uuid/confirm").bearer(&user()),
            400,
            "invalid_request",
            Some("order_id"),
        ),
        row(
            "unknown order",
            Req::post(format!("/orders/{unknown_order}/cancel")).bearer(&user()),
            404,
            "unknown_order",
            None,
        ),
        // Bodies.
        row(
            "truncated JSON",
            buy(WIDGET).bearer(&user()).body("{\"quantity\": 1"),
            400,
            "invalid_request",
            Some("body"),
        ),
        row(
            "JSON array",
            buy(WIDGET).bearer(&user()).body("[1]"),
            400,
            "invalid_request",
            Some("body"),
        ),
        row(
            "JSON null",
            buy(WIDGET).bearer(&user()).body("null"),
            400,
            "invalid_request",
            Some("body"),
        ),
        row(
            "form-encoded body",
            buy(WIDGET)
                .bearer(&user())
                .header("content-type", "application/x-www-form-urlencoded")
                .body("quantity=1"),
            400,
            "invalid_request",
            Some("body"),
        ),
        row(
            "quantity 0",
            buy(WIDGET).bearer(&user()).json(json!({"quantity": 0})),
            400,
            "invalid_request",
            Some("quantity"),
        ),
        row(
            "negative quantity",
            buy(WIDGET).bearer(&user()).json(json!({"quantity": -5})),
            400,
            "invalid_request",
            Some("quantity"),
        ),
        row(
            "fractional quantity",
            buy(WIDGET).bearer(&user()).json(json!({"quantity": 1.5})),
            400,
            "invalid_request",
            Some("quantity"),
        ),
        row(
            "quantity as a string",
            buy(WIDGET).bearer(&user()).json(json!({"quantity": "1"})),
            400,
            "invalid_request",
            Some("quantity"),
        ),
        row(
            "huge quantity",
            buy(WIDGET).bearer(&user()).body("{\"quantity\": 1e300}"),
            400,
            "invalid_request",
            Some("quantity"),
        ),
        row(
            "quantity over the sale's per-order max",
            buy(WIDGET).bearer(&user()).json(json!({"quantity": 3})),
            400,
            "invalid_request",
            Some("quantity"),
        ),
        row(
            "unknown body field",
            buy(WIDGET)
                .bearer(&user())
                .json(json!({"quantity": 1, "price": 0})),
            400,
            "invalid_request",
            Some("price"),
        ),
        row(
            "oversized body",
            buy(WIDGET).bearer(&user()).body(big.clone()),
            413,
            "payload_too_large",
            None,
        ),
        row(
            "oversized chunked body",
            buy(WIDGET).bearer(&user()).body(big.clone()).chunked(),
            413,
            "payload_too_large",
            None,
        ),
        // Encodings.
        row(
            "invalid UTF-8 body",
            buy(WIDGET).bearer(&user()).body(vec![0xff, 0xfe, 0x00]),
            400,
            "invalid_request",
            Some("body"),
        ),
        row(
            "UTF-8 BOM before the JSON",
            buy(WIDGET)
                .bearer(&user())
                .body("\u{feff}{\"quantity\": 1}"),
            400,
            "invalid_request",
            Some("body"),
        ),
        row(
            "UTF-16 body",
            buy(WIDGET).bearer(&user()).body(utf16),
            400,
            "invalid_request",
            Some("body"),
        ),
        row(
            "gzip body",
            buy(WIDGET)
                .bearer(&user())
                .header("content-encoding", "gzip")
                .body(vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03, 0xab, 0x56]),
            400,
            "invalid_request",
            Some("body"),
        ),
        // The admin route.
        row(
            "admin route with a buyer's token",
            Req::put(format!("/admin/products/{WIDGET}"))
                .bearer(&user())
                .json(json!({"stock": 1, "per_user_limit": 1, "per_order_max": 1})),
            403,
            "forbidden",
            None,
        ),
        row(
            "admin route without a token",
            Req::put(format!("/admin/products/{WIDGET}"))
                .json(json!({"stock": 1, "per_user_limit": 1, "per_order_max": 1})),
            401,
            "unauthenticated",
            None,
        ),
        row(
            "negative stock",
            sale(json!({"stock": -1, "per_user_limit": 1, "per_order_max": 1})),
            400,
            "invalid_request",
            Some("stock"),
        ),
        row(
            "stock over u32",
            sale(json!({"stock": 4_294_967_296_u64, "per_user_limit": 1, "per_order_max": 1})),
            400,
            "invalid_request",
            Some("stock"),
        ),
        row(
            "missing per_user_limit",
            sale(json!({"stock": 10, "per_order_max": 1})),
            400,
            "invalid_request",
            Some("per_user_limit"),
        ),
        row(
            "starts_at not RFC 3339",
            sale(
                json!({"stock": 10, "per_user_limit": 1, "per_order_max": 1, "starts_at": "tomorrow"}),
            ),
            400,
            "invalid_request",
            Some("starts_at"),
        ),
        row(
            "product_id differs from the path",
            sale(
                json!({"stock": 10, "per_user_limit": 1, "per_order_max": 1, "product_id": "other"}),
            ),
            400,
            "invalid_request",
            Some("product_id"),
        ),
        row(
            "read-only field in the admin body",
            sale(json!({"stock": 10, "per_user_limit": 1, "per_order_max": 1, "sold": 0})),
            400,
            "invalid_request",
            Some("sold"),
        ),
        // Methods and paths.
        row(
            "GET on the buy route",
            Req::get(format!("/buy/{WIDGET}")),
            405,
            "method_not_allowed",
            None,
        ),
        row(
            "DELETE on a product",
            Req::new("DELETE", format!("/products/{WIDGET}")),
            405,
            "method_not_allowed",
            None,
        ),
        row(
            "PATCH on the admin route",
            Req::new("PATCH", format!("/admin/products/{WIDGET}")).bearer(&admin),
            405,
            "method_not_allowed",
            None,
        ),
        row(
            "GET on confirm",
            Req::get(format!("/orders/{unknown_order}/confirm")),
            405,
            "method_not_allowed",
            None,
        ),
        row(
            "empty product id",
            Req::post("/buy/").bearer(&user()),
            404,
            "not_found",
            None,
        ),
        row(
            "extra path segment",
            Req::post(format!("/buy/{WIDGET}/now")).bearer(&user()),
            404,
            "not_found",
            None,
        ),
    ];
    // Tokens: every bad token of the token suite, on the buy route.
    for (name, token) in bad_tokens(f) {
        let mut req = buy(WIDGET).json(json!({ "quantity": 1 }));
        if let Some(t) = &token {
            req = req.bearer(t);
        }
        rows.push(row(
            &format!("token: {name}"),
            req,
            401,
            "unauthenticated",
            None,
        ));
    }
    let names: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), rows.len(), "row names are distinct");
    assert!(rows.len() >= 40, "only {} rows", rows.len());

    let products = [WIDGET, TICKETS, LATER, BULK];
    let mut before = Vec::new();
    for p in products {
        before.push(f.levels(p).await);
    }
    let orders = f.orders().await;
    for Row {
        name,
        req,
        status,
        code,
        field,
    } in rows
    {
        let r = c.send(req).await;
        assert_eq!((r.status, r.code()), (status, code), "{name}: {:?}", r.body);
        if let Some(field) = field {
            assert_eq!(r.body["field"], field, "{name}: {:?}", r.body);
        }
        assert!(
            !r.body["message"].as_str().unwrap_or("").is_empty(),
            "{name}: an error says what went wrong"
        );
        for (p, b) in products.iter().zip(&before) {
            unchanged(f, p, *b, orders, &name).await;
        }
    }
}
