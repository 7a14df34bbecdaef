//! Parsing request inputs: path ids, headers and JSON bodies.
//!
//! Every parser answers a [`BadRequest`] that names the offending field, so
//! the client learns exactly what to fix. Nothing here does I/O.

use std::borrow::Cow;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::model::{
    Credentials, IdempotencyKey, InvalidInput, OrderId, ProductId, Quantity, Sale, Timestamp,
};

/// A request the server refuses with `400 invalid_request`: which field,
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// The field, path segment or header at fault (`quantity`, `body`,
    /// `product_id`, `idempotency_key`, or the name of an unknown field).
    pub field: Cow<'static, str>,
    /// A human-readable reason, safe to show to the client.
    pub message: String,
}

impl BadRequest {
    /// A rejection of `field`.
    pub fn new(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<InvalidInput> for BadRequest {
    fn from(e: InvalidInput) -> Self {
        let message = e.to_string();
        Self {
            field: Cow::Borrowed(e.field),
            message,
        }
    }
}

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BadRequest {}

/// Parses the `{productId}` path segment (already percent-decoded).
pub fn product_id(raw: &str) -> Result<ProductId, BadRequest> {
    ProductId::new(raw).map_err(Into::into)
}

/// Parses the `{orderId}` path segment (a UUID).
pub fn order_id(raw: &str) -> Result<OrderId, BadRequest> {
    raw.parse::<OrderId>().map_err(Into::into)
}

/// Turns the `Authorization` header into [`Credentials`].
///
/// `Bearer <token>` (scheme case-insensitive) gives a bearer token; a
/// missing header, or any other scheme, gives no credentials (so the
/// authenticator answers `401` with `WWW-Authenticate: Bearer`). Never
/// fails: a garbled token is the authenticator's to refuse.
pub fn credentials(authorization: Option<&[u8]>) -> Credentials {
    let Some(raw) = authorization else {
        return Credentials::none();
    };
    let raw = String::from_utf8_lossy(raw);
    let raw = raw.trim();
    match raw.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Credentials::bearer(token.trim())
        }
        _ if raw.eq_ignore_ascii_case("bearer") => Credentials::bearer(""),
        _ => Credentials::none(),
    }
}

/// Parses an optional `Idempotency-Key` header.
pub fn idempotency_key(header: Option<&[u8]>) -> Result<Option<IdempotencyKey>, BadRequest> {
    let Some(raw) = header else {
        return Ok(None);
    };
    let raw = std::str::from_utf8(raw).map_err(|_| {
        BadRequest::new(
            "idempotency_key",
            "invalid idempotency_key: only printable ASCII characters are allowed",
        )
    })?;
    IdempotencyKey::new(raw).map(Some).map_err(Into::into)
}

/// Parses the optional `POST /buy` body: empty (or only whitespace) means
/// one unit; otherwise it must be a JSON object whose only field is an
/// integer `quantity` (omitted: one unit).
pub fn buy_quantity(body: &[u8]) -> Result<Quantity, BadRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Quantity::ONE);
    }
    let mut object = json_object(body)?;
    let quantity = match object.remove("quantity") {
        None => Quantity::ONE,
        Some(v) => quantity_value(&v)?,
    };
    reject_unknown(&object, &["quantity"])?;
    Ok(quantity)
}

fn quantity_value(v: &Value) -> Result<Quantity, BadRequest> {
    let whole = || BadRequest::new("quantity", "invalid quantity: must be a whole number");
    let Value::Number(n) = v else {
        return Err(whole());
    };
    if let Some(i) = n.as_i64() {
        return Quantity::new(i).map_err(Into::into);
    }
    if n.as_u64().is_some() {
        // Above i64::MAX: far above the maximum.
        return Quantity::new(i64::MAX).map_err(Into::into);
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() >= 9.0e15 => {
            Quantity::new(if f > 0.0 { i64::MAX } else { i64::MIN }).map_err(Into::into)
        }
        _ => Err(whole()),
    }
}

/// Parses `body` as a JSON object, naming `body` in the error.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, BadRequest> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(BadRequest::new(
            "body",
            format!(
                "invalid body: expected a JSON object, found {}",
                json_kind(&other)
            ),
        )),
        Err(e) => Err(BadRequest::new(
            "body",
            format!("invalid body: malformed JSON ({e})"),
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Refuses any field left in `rest`, naming the first (in key order).
fn reject_unknown(rest: &Map<String, Value>, allowed: &[&str]) -> Result<(), BadRequest> {
    if let Some(name) = rest.keys().next() {
        let shown: String = name.chars().take(64).collect();
        // A field named "" is named by where it is: the body.
        let field = if shown.is_empty() {
            "body".to_owned()
        } else {
            shown.clone()
        };
        return Err(BadRequest::new(
            field,
            format!(
                "invalid body: unknown field {shown:?}; allowed fields are {}",
                allowed.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The fields of the admin body `PUT /admin/products/{productId}`.
const SALE_FIELDS: &[&str] = &[
    "stock",
    "per_user_limit",
    "per_order_max",
    "starts_at",
    "ends_at",
    "hold_seconds",
    "product_id",
];

/// Parses the admin body of `PUT /admin/products/{productId}` into a
/// [`Sale`] of `product`:
/// `{"stock": n, "per_user_limit": n, "per_order_max": n, "starts_at": RFC 3339?, "ends_at": RFC 3339?, "hold_seconds": n?}`.
///
/// `product_id` may also appear (so the `GET /products` body can be sent
/// back), but must then equal the path's id.
pub fn sale(product: &ProductId, body: &[u8]) -> Result<Sale, BadRequest> {
    let mut o = json_object(body)?;
    let stock = required_u32(&mut o, "stock", 0)?;
    let per_user_limit = required_u32(&mut o, "per_user_limit", 1)?;
    let per_order_max = required_u32(&mut o, "per_order_max", 1)?;
    let starts_at = optional_time(&mut o, "starts_at")?;
    let ends_at = optional_time(&mut o, "ends_at")?;
    let hold_seconds = match o.remove("hold_seconds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            BadRequest::new(
                "hold_seconds",
                "invalid hold_seconds: must be a whole number of seconds",
            )
        })?),
    };
    match o.remove("product_id") {
        None => {}
        Some(Value::String(s)) if s == product.as_str() => {}
        Some(_) => {
            return Err(BadRequest::new(
                "product_id",
                "invalid product_id: must match the id in the path",
            ));
        }
    }
    // Extra read-only fields of the GET body are not accepted: a PUT says
    // exactly what it sets.
    reject_unknown(&o, &SALE_FIELDS[..6])?;
    let mut b = Sale::builder(product.clone(), stock)
        .per_user_limit(per_user_limit)
        .per_order_max(per_order_max);
    if let Some(t) = starts_at {
        b = b.starts_at(t);
    }
    if let Some(t) = ends_at {
        b = b.ends_at(t);
    }
    if let Some(h) = hold_seconds {
        b = b.hold(Duration::from_secs(h));
    }
    b.build().map_err(Into::into)
}

fn required_u32(
    o: &mut Map<String, Value>,
    field: &'static str,
    min: u64,
) -> Result<u32, BadRequest> {
    let v = o
        .remove(field)
        .ok_or_else(|| BadRequest::new(field, format!("invalid {field}: is required")))?;
    let range = || {
        BadRequest::new(
            field,
            format!(
                "invalid {field}: must be a whole number from {min} to {}",
                u32::MAX
            ),
        )
    };
    let n = v.as_u64().ok_or_else(range)?;
    if n < min {
        return Err(range());
    }
    u32::try_from(n).map_err(|_| range())
}

fn optional_time(
    o: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Option<Timestamp>, BadRequest> {
    match o.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Timestamp::parse_rfc3339(field, &s)
            .map(Some)
            .map_err(Into::into),
        Some(_) => Err(BadRequest::new(
            field,
            format!("invalid {field}: must be an RFC 3339 date-time string"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_field_named_nothing_blames_the_body() {
        // Found by fuzz/fuzz_targets/request_parts.rs: `field` was "".
        let e = buy_quantity(br#"{"": 60}"#).unwrap_err();
        assert_eq!(e.field, "body");
        assert!(e.message.contains(r#"unknown field """#), "{}", e.message);
        let e = sale(
            &ProductId::new("p").unwrap(),
            br#"{"stock": 1, "per_user_limit": 1, "per_order_max": 1, "": 0}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "body");
    }

    #[test]
    fn quantity_defaults_to_one() {
        assert_eq!(buy_quantity(b"").unwrap(), Quantity::ONE);
        assert_eq!(buy_quantity(b"  \n").unwrap(), Quantity::ONE);
        assert_eq!(buy_quantity(b"{}").unwrap(), Quantity::ONE);
        assert_eq!(buy_quantity(br#"{"quantity": 3}"#).unwrap().get(), 3);
    }

    #[test]
    fn bad_quantities_name_the_field() {
        for body in [
            r#"{"quantity": 0}"#,
            r#"{"quantity": -1}"#,
            r#"{"quantity": 1.5}"#,
            r#"{"quantity": "2"}"#,
            r#"{"quantity": null}"#,
            r#"{"quantity": 99999999999999999999999}"#,
            r#"{"quantity": 1e30}"#,
            r#"{"quantity": 18446744073709551615}"#,
            r#"{"quantity": 1000001}"#,
        ] {
            let e = buy_quantity(body.as_bytes()).unwrap_err();
            assert_eq!(e.field, "quantity", "{body}");
        }
    }

    #[test]
    fn bad_bodies_name_the_body_or_the_unknown_field() {
        for body in [
            "{",
            "[1]",
            "3",
            "null",
            "\"x\"",
            "{\"quantity\":1,}",
            "\u{1}",
        ] {
            assert_eq!(
                buy_quantity(body.as_bytes()).unwrap_err().field,
                "body",
                "{body}"
            );
        }
        let e = buy_quantity(br#"{"quantity": 1, "price": 0}"#).unwrap_err();
        assert_eq!(e.field, "price");
        assert!(buy_quantity(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn bearer_credentials() {
        assert_eq!(credentials(None), Credentials::none());
        assert_eq!(credentials(Some(b"Bearer abc")), Credentials::bearer("abc"));
        assert_eq!(
            credentials(Some(b"bearer  abc ")),
            Credentials::bearer("abc")
        );
        assert_eq!(credentials(Some(b"Basic abc")), Credentials::none());
        assert_eq!(credentials(Some(b"Bearer")), Credentials::bearer(""));
    }

    #[test]
    fn idempotency_keys() {
        assert_eq!(idempotency_key(None).unwrap(), None);
        assert!(idempotency_key(Some(b"k-1")).unwrap().is_some());
        assert_eq!(
            idempotency_key(Some(b"")).unwrap_err().field,
            "idempotency_key"
        );
        assert_eq!(
            idempotency_key(Some(&[0xff])).unwrap_err().field,
            "idempotency_key"
        );
    }

    #[test]
    fn admin_body() {
        let p = ProductId::new("p").unwrap();
        let s = sale(
            &p,
            br#"{"stock": 10, "per_user_limit": 2, "per_order_max": 1, "hold_seconds": 60,
                 "starts_at": "2030-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(
            (s.stock(), s.per_user_limit(), s.per_order_max()),
            (10, 2, 1)
        );
        assert_eq!(s.hold(), Some(Duration::from_secs(60)));
        assert!(s.starts_at().is_some());
        for (body, field) in [
            (r#"{"per_user_limit": 2, "per_order_max": 1}"#, "stock"),
            (
                r#"{"stock": -1, "per_user_limit": 2, "per_order_max": 1}"#,
                "stock",
            ),
            (
                r#"{"stock": 1, "per_user_limit": 0, "per_order_max": 1}"#,
                "per_user_limit",
            ),
            (
                r#"{"stock": 1, "per_user_limit": 1, "per_order_max": 1, "x": 1}"#,
                "x",
            ),
            (
                r#"{"stock": 1, "per_user_limit": 1, "per_order_max": 1, "ends_at": "soon"}"#,
                "ends_at",
            ),
            (
                r#"{"stock": 1, "per_user_limit": 1, "per_order_max": 1, "hold_seconds": 0}"#,
                "hold_seconds",
            ),
            (
                r#"{"stock": 1, "per_user_limit": 1, "per_order_max": 1, "product_id": "q"}"#,
                "product_id",
            ),
            (r#"[]"#, "body"),
        ] {
            assert_eq!(
                sale(&p, body.as_bytes()).unwrap_err().field,
                field,
                "{body}"
            );
        }
    }
}
