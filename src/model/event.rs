//! Order events: what the store's outbox holds and the relay hands to the
//! [`OrderSink`](crate::OrderSink). Their JSON form is the consumer
//! contract of `docs/orders.md` (schema version 2).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{InvalidInput, Order, OrderId, Reservation, Timestamp};

/// What happened to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// The order was accepted (units reserved). Always `seq` 1.
    Placed,
    /// The buyer confirmed a hold: sold for good.
    Confirmed,
    /// The buyer (or an admin) cancelled a hold: units back on sale.
    Cancelled,
    /// The hold lapsed unconfirmed: units back on sale.
    Expired,
    /// The purchase failed before its buyer was told it succeeded (the
    /// answer was 503): units back on sale, the order does not stand.
    Voided,
}

impl EventType {
    /// The stable string of the JSON `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Placed => "placed",
            EventType::Confirmed => "confirmed",
            EventType::Cancelled => "cancelled",
            EventType::Expired => "expired",
            EventType::Voided => "voided",
        }
    }

    /// The event's place in its order's history: `placed` is 1, every
    /// closing event is 2 (an order has at most one).
    pub fn seq(self) -> u16 {
        match self {
            EventType::Placed => 1,
            _ => 2,
        }
    }
}

impl FromStr for EventType {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        Ok(match s {
            "placed" => EventType::Placed,
            "confirmed" => EventType::Confirmed,
            "cancelled" => EventType::Cancelled,
            "expired" => EventType::Expired,
            "voided" => EventType::Voided,
            _ => {
                return Err(InvalidInput::new(
                    "type",
                    format!("unknown event type {s:?}"),
                ));
            }
        })
    }
}

/// The stable id of one order event: the order id and the event's `seq`,
/// written `<order id>.<seq>`. The same event keeps the same id however
/// often it is relayed, so consumers dedupe by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId {
    order_id: OrderId,
    seq: u16,
}

impl EventId {
    /// The id of event `seq` of `order_id`.
    pub fn new(order_id: OrderId, seq: u16) -> Self {
        Self { order_id, seq }
    }

    /// The order the event belongs to.
    pub fn order_id(&self) -> OrderId {
        self.order_id
    }

    /// The event's position in its order's history (1 = `placed`).
    pub fn seq(&self) -> u16 {
        self.seq
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.order_id, self.seq)
    }
}

impl FromStr for EventId {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        let bad = || InvalidInput::new("event_id", "is not `<order id>.<seq>`");
        let (order, seq) = s.rsplit_once('.').ok_or_else(bad)?;
        Ok(Self {
            order_id: order.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One change of one order, as the store's outbox records it and the sink
/// receives it.
///
/// Build them with [`OrderEvent::placed`] and [`OrderEvent::closing`], which
/// keep `event_id`, `type` and `seq` consistent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    /// [`OrderEvent::SCHEMA_VERSION`] for events written by this crate.
    pub schema_version: u16,
    /// Stable id; the consumers' deduplication key.
    pub event_id: EventId,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Position in the order's history: 1 for `placed`, 2 for the event
    /// that closes a hold or voids the order.
    pub seq: u16,
    /// When it happened.
    pub at: Timestamp,
    /// The order as it was placed.
    pub order: Order,
}

impl OrderEvent {
    /// The schema version this crate writes.
    pub const SCHEMA_VERSION: u16 = 2;

    /// The `placed` event of a reservation just made.
    pub fn placed(r: &Reservation) -> Self {
        Self::new(r, EventType::Placed, r.created_at)
    }

    /// The event that closes (or voids) `r` at `at`.
    pub fn closing(r: &Reservation, event_type: EventType, at: Timestamp) -> Self {
        debug_assert_ne!(event_type, EventType::Placed);
        Self::new(r, event_type, at)
    }

    fn new(r: &Reservation, event_type: EventType, at: Timestamp) -> Self {
        let seq = event_type.seq();
        Self {
            schema_version: Self::SCHEMA_VERSION,
            event_id: EventId::new(r.order_id, seq),
            event_type,
            seq,
            at,
            order: r.to_order(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ProductId, Quantity, ReservationState, UserId};

    fn reservation() -> Reservation {
        let at = Timestamp::from_millis(1_764_000_000_000);
        Reservation {
            order_id: OrderId::new(at),
            product: ProductId::new("p-1").unwrap(),
            user: UserId::new("alice").unwrap(),
            quantity: Quantity::new(2).unwrap(),
            idempotency_key: None,
            created_at: at,
            expires_at: at,
            awaits_confirmation: false,
            state: ReservationState::Committed,
        }
    }

    #[test]
    fn event_ids_round_trip_and_order_by_order_then_seq() {
        let r = reservation();
        let placed = OrderEvent::placed(&r);
        let voided = OrderEvent::closing(&r, EventType::Voided, r.created_at);
        assert_eq!((placed.seq, voided.seq), (1, 2));
        assert!(placed.event_id < voided.event_id);
        let text = voided.event_id.to_string();
        assert_eq!(text, format!("{}.2", r.order_id));
        assert_eq!(text.parse::<EventId>().unwrap(), voided.event_id);
        for bad in [
            "",
            "x.1",
            "0193b9a2-6c1e-7d3a-9f1e-2b3c4d5e6f70",
            "0193b9a2-6c1e-7d3a-9f1e-2b3c4d5e6f70.x",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn json_is_the_documented_v2_layout() {
        let r = reservation();
        let e = OrderEvent::closing(
            &r,
            EventType::Voided,
            Timestamp::from_millis(1_764_000_000_500),
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["schema_version"], 2);
        assert_eq!(v["type"], "voided");
        assert_eq!(v["seq"], 2);
        assert_eq!(v["event_id"], format!("{}.2", r.order_id));
        assert_eq!(v["at"], "2025-11-24T16:00:00.500Z");
        assert_eq!(v["order"]["user_id"], "alice");
        assert_eq!(v["order"]["quantity"], 2);
        let back: OrderEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        for t in ["placed", "confirmed", "cancelled", "expired", "voided"] {
            assert_eq!(t.parse::<EventType>().unwrap().as_str(), t);
        }
    }
}
