//! Identifiers, quantities and timestamps: validated newtypes.
//!
//! The string ids hold an `Arc<str>`: they are cloned into every
//! reservation, order and log line, and a clone is then a counter bump
//! rather than an allocation.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Why a value was rejected: which field, and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidInput {
    /// The field (or path segment, or header) that held the bad value.
    pub field: &'static str,
    /// A human-readable reason, safe to show to the client.
    pub reason: String,
}

impl InvalidInput {
    /// Builds a rejection for `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Serde glue shared by the string newtypes: serialize as the inner string,
/// deserialize through the validating constructor.
macro_rules! string_newtype_serde {
    ($ty:ident) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                $ty::new(raw).map_err(serde::de::Error::custom)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $ty {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, InvalidInput> {
                $ty::new(s)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl $ty {
            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A product (one sale) id: 1–64 characters of `A–Z a–z 0–9 . _ : -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductId(Arc<str>);

impl ProductId {
    /// Longest accepted id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates `raw` as a product id.
    pub fn new(raw: impl Into<String>) -> Result<Self, InvalidInput> {
        let raw = raw.into();
        check_len("product_id", &raw, Self::MAX_LEN)?;
        if let Some(c) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
        {
            return Err(InvalidInput::new(
                "product_id",
                format!("character {c:?} is not allowed (use A-Z a-z 0-9 . _ : -)"),
            ));
        }
        Ok(Self(raw.into()))
    }
}
string_newtype_serde!(ProductId);

/// A buyer's id (the JWT `sub`): 1–128 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

impl UserId {
    /// Longest accepted id, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates `raw` as a user id.
    pub fn new(raw: impl Into<String>) -> Result<Self, InvalidInput> {
        let raw = raw.into();
        check_len("user_id", &raw, Self::MAX_LEN)?;
        if raw.chars().any(char::is_control) {
            return Err(InvalidInput::new(
                "user_id",
                "control characters are not allowed",
            ));
        }
        Ok(Self(raw.into()))
    }
}
string_newtype_serde!(UserId);

/// A client-chosen `Idempotency-Key`: 1–128 printable ASCII characters.
///
/// Keys are scoped to one buyer and one product: the same key sent by two
/// users, or for two products, names two different requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(Arc<str>);

impl IdempotencyKey {
    /// Longest accepted key, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates `raw` as an idempotency key.
    pub fn new(raw: impl Into<String>) -> Result<Self, InvalidInput> {
        let raw = raw.into();
        check_len("idempotency_key", &raw, Self::MAX_LEN)?;
        if !raw.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(InvalidInput::new(
                "idempotency_key",
                "only printable ASCII characters are allowed",
            ));
        }
        Ok(Self(raw.into()))
    }
}
string_newtype_serde!(IdempotencyKey);

fn check_len(field: &'static str, raw: &str, max: usize) -> Result<(), InvalidInput> {
    if raw.is_empty() {
        return Err(InvalidInput::new(field, "must not be empty"));
    }
    if raw.len() > max {
        return Err(InvalidInput::new(
            field,
            format!("is {} bytes long; at most {max} are allowed", raw.len()),
        ));
    }
    Ok(())
}

/// How many units one order asks for: `1..=Quantity::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    /// The largest quantity any single order may ask for, whatever the sale
    /// allows. Keeps every sum of quantities far from overflow.
    pub const MAX: u32 = 1_000_000;
    /// One unit.
    pub const ONE: Quantity = Quantity(1);

    /// Validates `n` as a quantity. Takes `i64` so that negative input from
    /// JSON reaches a precise error rather than a parse failure.
    pub fn new(n: i64) -> Result<Self, InvalidInput> {
        if n < 1 {
            return Err(InvalidInput::new("quantity", "must be at least 1"));
        }
        if n > i64::from(Self::MAX) {
            return Err(InvalidInput::new(
                "quantity",
                format!("must be at most {}", Self::MAX),
            ));
        }
        Ok(Self(n as u32))
    }

    /// The number of units.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        Quantity::new(n).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of an order, and of the reservation that becomes it.
///
/// A UUIDv7: unique, and ordered by creation time. One reservation yields at
/// most one order, so both share this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(Uuid);

impl OrderId {
    /// A fresh id whose time part is `now`.
    pub fn new(now: Timestamp) -> Self {
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            now.as_millis() / 1000,
            ((now.as_millis() % 1000) * 1_000_000) as u32,
        );
        Self(Uuid::new_v7(ts))
    }

    /// Wraps an existing UUID (e.g. one read back from a backend).
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for OrderId {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| InvalidInput::new("order_id", "is not a UUID"))
    }
}

/// A point in time: milliseconds since the Unix epoch, UTC.
///
/// Serialized as an RFC 3339 string (`2026-11-25T10:00:00.000Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From milliseconds since the Unix epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// How long from `earlier` to `self`; zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Parses an RFC 3339 date-time (any offset; converted to UTC).
    pub fn parse_rfc3339(field: &'static str, s: &str) -> Result<Self, InvalidInput> {
        let dt = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| InvalidInput::new(field, format!("is not an RFC 3339 date-time: {e}")))?;
        let ms = dt.unix_timestamp_nanos() / 1_000_000;
        u64::try_from(ms)
            .map(Self)
            .map_err(|_| InvalidInput::new(field, "is before 1970"))
    }

    /// Formats as RFC 3339 in UTC with millisecond precision
    /// (`2026-11-25T10:00:00.000Z`).
    pub fn to_rfc3339(self) -> String {
        let secs = i64::try_from(self.0 / 1000).unwrap_or(i64::MAX);
        let dt = time::OffsetDateTime::from_unix_timestamp(secs)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            self.0 % 1000
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Timestamp::parse_rfc3339("timestamp", &raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_ids_are_checked_for_length_and_characters() {
        assert!(ProductId::new("sku-1.a_b:c").is_ok());
        assert!(ProductId::new("a".repeat(64)).is_ok());
        for bad in ["", "has space", "slash/", "ünï", "semi;colon"] {
            let e = ProductId::new(bad).unwrap_err();
            assert_eq!(e.field, "product_id", "{bad:?}");
        }
        let long = ProductId::new("a".repeat(65)).unwrap_err();
        assert!(long.reason.contains("at most 64"), "{long}");
    }

    #[test]
    fn quantities_are_bounded() {
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
        assert_eq!(Quantity::new(1_000_000).unwrap().get(), 1_000_000);
        for bad in [0, -1, i64::MIN, 1_000_001, i64::MAX] {
            assert_eq!(Quantity::new(bad).unwrap_err().field, "quantity", "{bad}");
        }
        let from_json: Result<Quantity, _> = serde_json::from_str("-5");
        assert!(from_json.unwrap_err().to_string().contains("at least 1"));
    }

    #[test]
    fn idempotency_keys_and_user_ids_reject_unprintable_input() {
        assert!(IdempotencyKey::new("order 42 / retry#1").is_ok());
        assert!(IdempotencyKey::new("tab\there").is_err());
        assert!(IdempotencyKey::new("é").is_err());
        assert!(IdempotencyKey::new("k".repeat(129)).is_err());
        assert!(UserId::new("alice@example.com").is_ok());
        assert!(UserId::new("line\nbreak").is_err());
        assert!(UserId::new("").is_err());
    }

    #[test]
    fn timestamps_round_trip_through_rfc3339() {
        let t = Timestamp::parse_rfc3339("at", "2026-11-25T10:00:00.123Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-25T10:00:00.123Z");
        let offset = Timestamp::parse_rfc3339("at", "2026-11-25T12:00:00+02:00").unwrap();
        assert_eq!(offset.to_rfc3339(), "2026-11-25T10:00:00.000Z");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert_eq!(
            Timestamp::parse_rfc3339("starts_at", "tomorrow")
                .unwrap_err()
                .field,
            "starts_at"
        );
        assert!(Timestamp::parse_rfc3339("at", "1969-12-31T23:59:59Z").is_err());
    }

    #[test]
    fn order_ids_are_time_ordered_and_parse_back() {
        let a = OrderId::new(Timestamp::from_millis(1_000));
        let b = OrderId::new(Timestamp::from_millis(2_000));
        assert!(a < b);
        assert_eq!(a.to_string().parse::<OrderId>().unwrap(), a);
        assert_eq!("nope".parse::<OrderId>().unwrap_err().field, "order_id");
    }
}
