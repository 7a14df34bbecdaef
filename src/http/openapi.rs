//! The OpenAPI 3.1 document of the HTTP contract, served at
//! `GET /openapi.json` by both adapters.
//!
//! Hand-written (`src/http/openapi.json`) rather than generated: the
//! contract lives here, framework-neutral, while generators such as
//! `utoipa` annotate one framework's handlers, and this crate has two. The
//! document is kept true by tests instead: the ones below tie its routes
//! and error codes to [`paths::ROUTES`] and [`Outcome`](crate::Outcome),
//! the shared HTTP suite sends every documented operation to both routers,
//! and `schemathesis` checks every answer of both example servers against
//! it (`tests/openapi_schemathesis.rs`).
//!
//! [`paths::ROUTES`]: super::paths::ROUTES

/// The document, as served.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use serde_json::Value;

    use super::OPENAPI_JSON;
    use crate::http::paths::ROUTES;
    use crate::model::{AuthRejection, InvalidInput, OrderStatus, Outcome};

    fn doc() -> Value {
        serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON")
    }

    #[test]
    fn is_openapi_3_1() {
        let d = doc();
        assert_eq!(d["openapi"], "3.1.0");
        assert_eq!(d["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn documents_exactly_the_routes_served() {
        let documented: BTreeSet<(String, String)> = doc()["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn every_ref_resolves() {
        let d = doc();
        fn walk(v: &Value, d: &Value) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        let ptr = r.strip_prefix('#').expect("local ref");
                        assert!(d.pointer(ptr).is_some(), "dangling $ref {r}");
                    }
                    m.values().for_each(|v| walk(v, d));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, d)),
                _ => {}
            }
        }
        walk(&d, &d);
    }

    #[test]
    fn every_error_code_and_status_is_documented() {
        let d = doc();
        let codes: BTreeSet<&str> =
            d["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
        let wait = Duration::from_secs(1);
        let failures = [
            Outcome::IdempotencyConflict,
            Outcome::RateLimited { retry_after: wait },
            Outcome::SoldOut,
            Outcome::LimitExceeded,
            Outcome::NotOnSale,
            Outcome::Invalid(InvalidInput::new("quantity", "x")),
            Outcome::UnknownProduct,
            Outcome::Unauthenticated(AuthRejection::Missing),
            Outcome::Forbidden,
            Outcome::UnknownOrder,
            Outcome::OrderClosed(OrderStatus::Cancelled),
            Outcome::Unavailable { retry_after: wait },
        ];
        let buy = &d["paths"]["/buy/{product_id}"]["post"]["responses"];
        for o in &failures {
            assert!(codes.contains(o.code()), "{} is not documented", o.code());
            let status = o.http_status().to_string();
            let on_buy = buy.get(&status).is_some();
            let on_orders = d["paths"]["/orders/{order_id}/confirm"]["post"]["responses"]
                .get(&status)
                .is_some();
            assert!(on_buy || on_orders, "status {status} of {o:?}");
        }
        for extra in [
            "payload_too_large",
            "not_found",
            "method_not_allowed",
            "stock_below_sold",
            "internal",
        ] {
            assert!(codes.contains(extra), "{extra}");
        }
    }
}
