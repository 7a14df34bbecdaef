//! Decoding order messages, and what makes one undecodable (poison).

use serde::Deserialize;

use crate::model::OrderEvent;

/// The order event in a message's value, or why it cannot be handed to the
/// handler at all (the message is then dead-lettered as undecodable).
pub(crate) fn decode(payload: Option<&[u8]>) -> std::result::Result<OrderEvent, String> {
    #[derive(Deserialize)]
    struct Peek {
        schema_version: Option<serde_json::Value>,
    }
    let bytes = payload.ok_or("the message has no value")?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => "not a JSON object".into(),
                Err(e) => format!("not JSON: {e}"),
            },
        );
    }
    let peek: Peek = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            format!("not JSON: {e}")
        } else {
            format!("not an order event: {e}")
        }
    })?;
    match peek.schema_version {
        None => return Err("no schema_version: not an order event".into()),
        Some(v) if v.as_u64() == Some(u64::from(OrderEvent::SCHEMA_VERSION)) => {}
        Some(v) => {
            return Err(format!(
                "schema version {v} is not supported (this build reads version {})",
                OrderEvent::SCHEMA_VERSION
            ));
        }
    }
    let e: OrderEvent =
        serde_json::from_slice(bytes).map_err(|e| format!("not a version 2 order event: {e}"))?;
    let id = e.event_id;
    if id.order_id() != e.order.order_id || id.seq() != e.seq {
        return Err(format!(
            "event_id {id} does not name its order {} and seq {}",
            e.order.order_id, e.seq
        ));
    }
    if e.seq != e.event_type.seq() {
        return Err(format!(
            "event {id} is `{}` with seq {}",
            e.event_type.as_str(),
            e.seq
        ));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_json() -> serde_json::Value {
        use crate::model::{
            OrderId, ProductId, Quantity, Reservation, ReservationState, Timestamp, UserId,
        };
        let at = Timestamp::from_millis(1_764_000_000_000);
        let r = Reservation {
            order_id: OrderId::new(at),
            product: ProductId::new("p-1").unwrap(),
            user: UserId::new("alice").unwrap(),
            quantity: Quantity::new(2).unwrap(),
            idempotency_key: None,
            created_at: at,
            expires_at: at,
            awaits_confirmation: false,
            state: ReservationState::Committed,
        };
        serde_json::to_value(OrderEvent::placed(&r)).unwrap()
    }

    #[test]
    fn decodes_order_events_and_classifies_poison() {
        let good = event_json();
        let bytes = serde_json::to_vec(&good).unwrap();
        assert_eq!(
            decode(Some(&bytes)).unwrap(),
            serde_json::from_value(good.clone()).unwrap()
        );
        let mut extra = good.clone();
        extra["new_field"] = 1.into();
        extra["order"]["also_new"] = "x".into();
        assert!(decode(Some(&serde_json::to_vec(&extra).unwrap())).is_ok());

        let why = |bytes: &[u8]| decode(Some(bytes)).unwrap_err();
        assert_eq!(decode(None).unwrap_err(), "the message has no value");
        assert!(
            why(b"not json").starts_with("not JSON"),
            "{}",
            why(b"not json")
        );
        assert!(why(b"{\"schema_version\": 2").starts_with("not JSON"));
        assert!(why(b"[1, 2]").starts_with("not a JSON object"));
        assert!(why(b"[2]").starts_with("not a JSON object"));
        assert!(why(b"\"text\"").starts_with("not a JSON object"));
        assert!(why(b"{}").starts_with("no schema_version"));
        for v in [1, 3] {
            let mut other = good.clone();
            other["schema_version"] = v.into();
            let e = why(&serde_json::to_vec(&other).unwrap());
            assert!(
                e.contains(&format!("schema version {v} is not supported")),
                "{e}"
            );
        }
        let mut shape = good.clone();
        shape["order"]["quantity"] = "two".into();
        assert!(
            why(&serde_json::to_vec(&shape).unwrap()).starts_with("not a version 2 order event")
        );
        let mut kind = good.clone();
        kind["type"] = "refunded".into();
        assert!(why(&serde_json::to_vec(&kind).unwrap()).contains("refunded"));
        let mut seq = good.clone();
        seq["seq"] = 2.into();
        assert!(why(&serde_json::to_vec(&seq).unwrap()).contains("does not name"));
        let mut typ = good;
        typ["type"] = "voided".into();
        assert!(why(&serde_json::to_vec(&typ).unwrap()).contains("with seq 1"));
    }
}
