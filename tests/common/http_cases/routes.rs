//! Probes, unknown routes and the OpenAPI document against the router.

use super::*;

pub async fn probes_and_unknown_routes<C: Client>(c: &C, _f: &Fixture) {
    let r = c.send(Req::get("/healthz")).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!("ok")));
    let r = c.send(Req::get("/readyz")).await;
    assert_eq!((r.status, &r.body["status"]), (200, &json!("ready")));
    assert_eq!(r.body["checks"]["order_sink"], "ok");
    let r = c.send(Req::get("/nope")).await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = c.send(Req::get(format!("/buy/{WIDGET}"))).await;
    assert_eq!((r.status, r.code()), (405, "method_not_allowed"));
    let r = c.send(Req::post("/healthz")).await;
    assert_eq!(r.status, 405);
}

/// The fixture a case runs on: the `await_sink_*` cases hand orders to the
/// sink before answering ([`HandOff::AwaitSink`]), the others use the
/// default outbox hand-off.
/// `GET /openapi.json` is the crate's document, and every operation it
/// documents is served, answering one of the statuses it documents.
pub async fn openapi_document_matches_the_router<C: Client>(c: &C, f: &Fixture) {
    let r = c.send(Req::get("/openapi.json")).await;
    let doc: Value = serde_json::from_str(flashsale::http::OPENAPI_JSON).unwrap();
    assert_eq!((r.status, &r.body), (200, &doc));
    // A held order of ann's, for confirm and cancel.
    let bought = c
        .send(Req::post(format!("/buy/{TICKETS}")).bearer(&f.token("ann")))
        .await;
    assert_eq!(bought.status, 200, "{:?}", bought.body);
    let order = bought.body["order_id"].as_str().unwrap().to_owned();
    let mut seen = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let url = path
                .replace("{product_id}", WIDGET)
                .replace("{order_id}", &order);
            let mut req = match method.as_str() {
                "get" => Req::get(url),
                "post" => Req::post(url),
                "put" => Req::put(url)
                    .json(json!({"stock": 50, "per_user_limit": 2, "per_order_max": 2})),
                other => panic!("undocumented method {other}"),
            };
            if operation.get("security").is_some() {
                req = req.bearer(&f.admin());
            }
            let r = c.send(req).await;
            let documented = operation["responses"].get(r.status.to_string()).is_some();
            assert!(
                documented && r.code() != "not_found" && r.code() != "method_not_allowed",
                "{method} {path} answered {} {:?}, which is not a documented answer",
                r.status,
                r.body
            );
            seen += 1;
        }
    }
    assert_eq!(seen, flashsale::http::paths::ROUTES.len());
}
