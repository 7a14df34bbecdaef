//! Framework-neutral responses and the mapping of outcomes and errors onto
//! them.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::Error;
use crate::model::{
    IdempotencyKey, OrderId, OrderStatus, Outcome, ProductId, PurchaseSummary, Quantity, Sale,
    StockLevels, Timestamp, UserId, retry_after_secs,
};

use super::request::BadRequest;

/// An HTTP response any framework can send: a status, a few headers and a
/// JSON body. Both adapters convert it verbatim, so they answer alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// The status code.
    pub status: u16,
    /// Extra headers (`Content-Type` is always `application/json`, and is
    /// not listed here).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// A strong entity tag for `body`: 64 bits of a fixed-seed hash, so every
/// instance tags the same bytes alike (`"` + 16 hex digits + `"`).
pub(super) fn etag(body: &[u8]) -> String {
    use std::hash::BuildHasher;
    let hash = foldhash::fast::FixedState::with_seed(0x666c_6173_6873_616c).hash_one(body);
    format!("\"{hash:016x}\"")
}

/// Whether an `If-None-Match` value (`*`, or a comma-separated list of
/// tags, weak ones included: RFC 9110 compares them weakly) names `tag`.
fn etag_matches(header: &[u8], tag: &str) -> bool {
    let Ok(header) = std::str::from_utf8(header) else {
        return false;
    };
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

/// The `Content-Type` of every response.
pub const CONTENT_TYPE: &str = "application/json";

impl ApiResponse {
    /// A response with `status` and `body` serialized as JSON.
    pub fn json(status: u16, body: &Value) -> Self {
        Self::serialized(status, body)
    }

    /// A response with `status` and `body`, which must serialize to JSON
    /// infallibly (maps with string keys, no non-finite floats).
    fn serialized(status: u16, body: &impl Serialize) -> Self {
        Self {
            status,
            headers: vec![("cache-control", "no-store".to_owned())],
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    /// `200` with `body` (JSON) and its `ETag` (`etag`), and
    /// `Cache-Control: max-age` of `staleness` in whole seconds, rounded
    /// down so no client keeps it longer than the server does (`no-cache`
    /// for zero). `304` with no body instead when `if_none_match` names
    /// that tag (or is `*`).
    pub fn cacheable(
        body: &[u8],
        etag: &str,
        staleness: Duration,
        if_none_match: Option<&[u8]>,
    ) -> Self {
        let control = if staleness.is_zero() {
            "no-cache".to_owned()
        } else {
            format!("max-age={}", staleness.as_secs())
        };
        let matched = if_none_match.is_some_and(|h| etag_matches(h, etag));
        Self {
            status: if matched { 304 } else { 200 },
            headers: vec![("cache-control", control), ("etag", etag.to_owned())],
            body: if matched { Vec::new() } else { body.to_vec() },
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The value of header `name` (lower-case), if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// An error body `{"error": code, "message": message}`.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::json(status, &json!({ "error": code, "message": message.into() }))
    }

    /// `400 invalid_request` naming the field.
    pub fn bad_request(e: &BadRequest) -> Self {
        Self::json(
            400,
            &json!({ "error": "invalid_request", "message": e.message, "field": e.field }),
        )
    }

    /// `413 payload_too_large`.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::error(
            413,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// `404 not_found`, for paths no route serves.
    pub fn not_found() -> Self {
        Self::error(404, "not_found", "no such route")
    }

    /// `405 method_not_allowed`, for a known path with the wrong method.
    pub fn method_not_allowed() -> Self {
        Self::error(
            405,
            "method_not_allowed",
            "this route does not accept that method",
        )
    }

    /// The response for a purchase (or confirm/cancel) [`Outcome`], as
    /// design.md's table says: `200` with the order for successes (`202`
    /// with `"status": "pending"` for [`Outcome::Accepted`]),
    /// otherwise `{"error": code, "message": text}` (plus `"field"` for
    /// invalid input), `Retry-After` (whole seconds, rounded up) on `429`
    /// and `503`, and `WWW-Authenticate: Bearer` on `401`.
    pub fn from_outcome(outcome: &Outcome) -> Self {
        let status = outcome.http_status();
        if let Some(p) = outcome.purchase() {
            let replayed = matches!(outcome, Outcome::Replayed(_));
            let mut body = PurchaseBody::new(p, replayed);
            if matches!(outcome, Outcome::Accepted(_)) {
                // The order stands; only its delivery to the sink is pending.
                body.status = "pending";
            }
            // Straight from the struct: no `Value` tree on the hot path.
            let r = Self::serialized(status, &body);
            return if replayed {
                r.with_header("idempotent-replayed", "true")
            } else {
                r
            };
        }
        let mut body = json!({ "error": outcome.code(), "message": outcome.message() });
        match outcome {
            Outcome::Invalid(e) => body["field"] = json!(e.field),
            Outcome::OrderClosed(s) => body["status"] = json!(s.as_str()),
            Outcome::RateLimited { retry_after } | Outcome::Unavailable { retry_after } => {
                body["retry_after_secs"] = json!(retry_after_secs(*retry_after));
            }
            _ => {}
        }
        let r = Self::json(status, &body);
        match outcome {
            Outcome::RateLimited { retry_after } | Outcome::Unavailable { retry_after } => {
                r.with_header("retry-after", retry_after_secs(*retry_after).to_string())
            }
            Outcome::Unauthenticated(crate::model::AuthRejection::Missing) => {
                r.with_header("www-authenticate", "Bearer")
            }
            // RFC 6750: a token was presented and refused. The reason is
            // logged by the engine, never told to the client.
            Outcome::Unauthenticated(_) => {
                r.with_header("www-authenticate", "Bearer error=\"invalid_token\"")
            }
            _ => r,
        }
    }

    /// The response for an infrastructure [`Error`]: `503 unavailable` with
    /// `Retry-After` for backend failures and timeouts, `400` for invalid
    /// input, `500 internal` otherwise. Details are logged, not sent.
    pub fn from_error(error: &Error) -> Self {
        match error {
            Error::Invalid(e) => Self::bad_request(&BadRequest::from(e.clone())),
            e if e.is_transient() => {
                tracing::warn!(error = %e, "answering 503");
                Self::json(
                    503,
                    &json!({
                        "error": "unavailable",
                        "message": "a backend is unavailable; retry shortly",
                        "retry_after_secs": 1,
                    }),
                )
                .with_header("retry-after", "1")
            }
            e => {
                tracing::error!(error = %e, "answering 500");
                Self::error(500, "internal", "the server failed; see its logs")
            }
        }
    }
}

/// The JSON body of a successful purchase, replay, confirm or cancel:
/// `{"order_id", "product_id", "quantity", "status", "user_id",
/// "created_at", "replayed", "hold_expires_at"?, "idempotency_key"?}`.
pub fn purchase_body(p: &PurchaseSummary, replayed: bool) -> Value {
    serde_json::to_value(PurchaseBody::new(p, replayed)).unwrap_or_default()
}

/// [`purchase_body`] as a struct. Its fields are in alphabetical order, the
/// order a `Value` map writes its keys in, so both give the same bytes.
#[derive(Debug, Serialize)]
struct PurchaseBody<'a> {
    created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_expires_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<&'a IdempotencyKey>,
    order_id: OrderId,
    product_id: &'a ProductId,
    quantity: Quantity,
    replayed: bool,
    status: &'static str,
    user_id: &'a UserId,
}

impl<'a> PurchaseBody<'a> {
    fn new(p: &'a PurchaseSummary, replayed: bool) -> Self {
        let o = &p.order;
        Self {
            created_at: o.created_at,
            hold_expires_at: match p.status {
                OrderStatus::Held { expires_at } => Some(expires_at),
                _ => None,
            },
            idempotency_key: o.idempotency_key.as_ref(),
            order_id: o.order_id,
            product_id: &o.product_id,
            quantity: o.quantity,
            replayed,
            status: p.status.as_str(),
            user_id: &o.user_id,
        }
    }
}

/// The JSON body of `GET /products/{id}`: the live levels
/// `{"product_id", "total", "available", "held", "sold"}` plus the sale's
/// terms (`stock`, `per_user_limit`, `per_order_max`, `starts_at`,
/// `ends_at`, `hold_seconds`; absent optional terms are `null`) and
/// whether it is `on_sale` at `now`.
pub fn product_body(
    product: &ProductId,
    sale: &Sale,
    levels: &StockLevels,
    now: crate::model::Timestamp,
) -> Value {
    json!({
        "product_id": product,
        "total": levels.total,
        "available": levels.available,
        "held": levels.held,
        "sold": levels.committed,
        "stock": sale.stock(),
        "per_user_limit": sale.per_user_limit(),
        "per_order_max": sale.per_order_max(),
        "starts_at": sale.starts_at(),
        "ends_at": sale.ends_at(),
        "hold_seconds": sale.hold().map(|d| d.as_secs()),
        "on_sale": sale.is_open(now),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{AuthRejection, InvalidInput};

    fn body(r: &ApiResponse) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn retry_after_is_rounded_up() {
        let r = ApiResponse::from_outcome(&Outcome::RateLimited {
            retry_after: Duration::from_millis(1_200),
        });
        assert_eq!(r.status, 429);
        assert_eq!(r.header("Retry-After"), Some("2"));
        assert_eq!(body(&r)["error"], "rate_limited");
        let r = ApiResponse::from_outcome(&Outcome::Unavailable {
            retry_after: Duration::from_millis(1),
        });
        assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
    }

    #[test]
    fn unauthenticated_asks_for_a_bearer_token() {
        let r = ApiResponse::from_outcome(&Outcome::Unauthenticated(AuthRejection::Missing));
        assert_eq!(
            (r.status, r.header("www-authenticate")),
            (401, Some("Bearer"))
        );
        let r = ApiResponse::from_outcome(&Outcome::Unauthenticated(AuthRejection::Expired));
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        assert!(!String::from_utf8_lossy(&r.body).contains("expired"));
    }

    #[test]
    fn invalid_names_the_field() {
        let r = ApiResponse::from_outcome(&Outcome::Invalid(InvalidInput::new("quantity", "x")));
        let b = body(&r);
        assert_eq!(
            (r.status, &b["error"], &b["field"]),
            (400, &json!("invalid_request"), &json!("quantity"))
        );
    }

    #[test]
    fn seed_codes() {
        for (o, status, code) in [
            (Outcome::SoldOut, 400, "sold_out"),
            (Outcome::LimitExceeded, 400, "limit_exceeded"),
            (Outcome::NotOnSale, 400, "sale_not_active"),
            (Outcome::UnknownProduct, 404, "unknown_product"),
            (Outcome::IdempotencyConflict, 409, "idempotency_conflict"),
            (Outcome::Forbidden, 403, "forbidden"),
        ] {
            let r = ApiResponse::from_outcome(&o);
            assert_eq!(
                (r.status, body(&r)["error"].as_str().unwrap()),
                (status, code)
            );
        }
    }

    /// The hot path's struct writes exactly what the `Value` form says,
    /// byte for byte, for every shape of answer.
    #[test]
    fn purchase_answers_are_the_documented_body() {
        let at = Timestamp::from_millis(1_764_000_000_123);
        let order = |key: Option<&str>| crate::model::Order {
            order_id: OrderId::new(at),
            product_id: ProductId::new("sneakers").unwrap(),
            user_id: UserId::new("buyer \"1\"").unwrap(),
            quantity: Quantity::new(2).unwrap(),
            created_at: at,
            idempotency_key: key.map(|k| IdempotencyKey::new(k).unwrap()),
            hold_expires_at: None,
        };
        let held = OrderStatus::Held {
            expires_at: Timestamp::from_millis(1_764_000_300_123),
        };
        for (status, key) in [
            (OrderStatus::Confirmed, None),
            (held, Some("key-1")),
            (OrderStatus::Cancelled, Some("k")),
        ] {
            let summary = PurchaseSummary {
                order: order(key),
                status,
            };
            for (outcome, replayed, shown) in [
                (Outcome::Purchased(summary.clone()), false, status.as_str()),
                (Outcome::Replayed(summary.clone()), true, status.as_str()),
                (Outcome::Accepted(summary.clone()), false, "pending"),
                (
                    Outcome::OrderUpdated(summary.clone()),
                    false,
                    status.as_str(),
                ),
            ] {
                let r = ApiResponse::from_outcome(&outcome);
                let mut expected = purchase_body(&summary, replayed);
                expected["status"] = json!(shown);
                assert_eq!(
                    String::from_utf8(r.body.clone()).unwrap(),
                    serde_json::to_string(&expected).unwrap(),
                    "{outcome:?}"
                );
                assert_eq!(body(&r)["hold_expires_at"].is_string(), status == held);
                assert_eq!(body(&r)["idempotency_key"].as_str(), key);
            }
        }
    }

    #[test]
    fn errors_map_to_503_or_500() {
        let r = ApiResponse::from_error(&Error::backend("redis", "reserve", "down"));
        assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
        assert!(!String::from_utf8_lossy(&r.body).contains("down"));
        let r = ApiResponse::from_error(&Error::Config("x".into()));
        assert_eq!(r.status, 500);
    }
}
