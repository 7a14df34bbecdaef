//! How the scripts' values read in Rust: reservation records (JSON with
//! one-letter keys, every number a string so that Lua loses no precision),
//! outbox entries, states, and the numbers sent as arguments.

use std::time::Duration;

use serde::Deserialize;

use super::bad_reply;
use crate::error::{Error, Result};
use crate::model::{
    EventType, IdempotencyKey, OrderEvent, ProductId, Quantity, Reservation, ReservationState,
    Timestamp, UserId,
};

/// A reservation as the scripts store it (the one-letter keys keep records
/// small).
#[derive(Deserialize)]
struct Record {
    #[serde(rename = "o")]
    order_id: String,
    #[serde(rename = "u")]
    user: String,
    #[serde(rename = "q")]
    quantity: String,
    #[serde(rename = "k", default)]
    idempotency_key: Option<String>,
    #[serde(rename = "c")]
    created_at: String,
    #[serde(rename = "e")]
    expires_at: String,
    #[serde(rename = "w")]
    awaits_confirmation: String,
    #[serde(rename = "s")]
    state: String,
}

/// A record of `product`, as the scripts store and return it.
pub(super) fn record(
    operation: &'static str,
    product: &ProductId,
    raw: &str,
) -> Result<Reservation> {
    let r: Record = serde_json::from_str(raw).map_err(|e| bad_reply(operation, e))?;
    let num = |s: &str| -> Result<u64> {
        s.parse::<u64>()
            .map_err(|_| bad_reply(operation, format!("{s:?} is not a number")))
    };
    let q = num(&r.quantity)?;
    Ok(Reservation {
        order_id: r.order_id.parse().map_err(|e| bad_reply(operation, e))?,
        product: product.clone(),
        user: UserId::new(r.user).map_err(|e| bad_reply(operation, e))?,
        quantity: Quantity::new(i64::try_from(q).unwrap_or(i64::MAX))
            .map_err(|e| bad_reply(operation, e))?,
        idempotency_key: r
            .idempotency_key
            .map(IdempotencyKey::new)
            .transpose()
            .map_err(|e| bad_reply(operation, e))?,
        created_at: Timestamp::from_millis(num(&r.created_at)?),
        expires_at: Timestamp::from_millis(num(&r.expires_at)?),
        awaits_confirmation: r.awaits_confirmation == "1",
        state: state(operation, Some(&r.state))?,
    })
}

/// An outbox entry, `<type>|<at ms>|<record JSON>`, as an event.
pub(super) fn event(operation: &'static str, product: &ProductId, raw: &str) -> Result<OrderEvent> {
    let mut parts = raw.splitn(3, '|');
    let (Some(kind), Some(at), Some(rec)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad_reply(operation, format!("event {raw:?}")));
    };
    let kind: EventType = kind.parse().map_err(|e| bad_reply(operation, e))?;
    let at = Timestamp::from_millis(
        at.parse()
            .map_err(|_| bad_reply(operation, format!("event time {at:?}")))?,
    );
    let r = record(operation, product, rec)?;
    Ok(match kind {
        EventType::Placed => {
            let mut e = OrderEvent::placed(&r);
            e.at = at;
            e
        }
        closing => OrderEvent::closing(&r, closing, at),
    })
}

/// A state as the scripts name it.
pub(super) fn state(operation: &'static str, s: Option<&String>) -> Result<ReservationState> {
    match s.map(String::as_str) {
        Some("held") => Ok(ReservationState::Held),
        Some("committed") => Ok(ReservationState::Committed),
        Some("cancelled") => Ok(ReservationState::Cancelled),
        Some("expired") => Ok(ReservationState::Expired),
        Some("voided") => Ok(ReservationState::Voided),
        other => Err(bad_reply(operation, format!("state {other:?}"))),
    }
}

/// A script reply of an unexpected shape.
pub(super) fn unexpected(operation: &'static str, reply: &[String]) -> Error {
    bad_reply(operation, format!("{reply:?}"))
}

/// A duration as a script argument, in ms.
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An optional time as a script argument: ms, or empty for none.
pub(super) fn opt_ms(t: Option<Timestamp>) -> String {
    t.map(|t| t.as_millis().to_string()).unwrap_or_default()
}
