//! The [`OrderSink`] conformance cases. Run them all with
//! [`order_sink_conformance!`](crate::order_sink_conformance).
//!
//! The contract under test: `submit` returns `Ok` only once every event of
//! the batch is durable, and submitting events again (the relay's retry
//! after a lost answer or a lapsed lease) is allowed, since consumers
//! dedupe by event id. The cases can only see answers, not the sink's
//! contents; each backend's own tests read back what it stored.

use std::future::Future;
use std::time::Duration;

use crate::OrderSink;
use crate::model::{EventType, OrderEvent, Reservation, ReservationState};

use super::stock::{T0, at, request};
use super::{unique_product, user};

/// Sample events for the cases: a sold order's `placed`, a hold's `placed`
/// and `confirmed`, and a voided order's `placed` and `voided` (five
/// events of three orders, each order's events in `seq` order).
pub fn sample_events() -> Vec<OrderEvent> {
    let p = unique_product("sink");
    let hold = Duration::from_secs(60);
    let sold = request(&p, &user(1), 2, T0).to_reservation(None);
    let held: Reservation = request(&p, &user(2), 1, T0).to_reservation(Some(hold));
    let voided = Reservation {
        state: ReservationState::Voided,
        ..request(&p, &user(3), 1, T0).to_reservation(None)
    };
    let t1 = at(Duration::from_secs(1));
    vec![
        OrderEvent::placed(&sold),
        OrderEvent::placed(&held),
        OrderEvent::closing(&held, EventType::Confirmed, t1),
        OrderEvent::placed(&voided),
        OrderEvent::closing(&voided, EventType::Voided, t1),
    ]
}

/// The `placed` event of one fresh sold order.
pub fn sample_event() -> OrderEvent {
    let r = request(&unique_product("sink"), &user(1), 1, T0).to_reservation(None);
    OrderEvent::placed(&r)
}

/// A batch of events of several orders and types is accepted.
pub async fn submit_batch<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: OrderSink,
{
    let sink = make().await;
    sink.submit(&sample_events()).await.unwrap();
    sink.submit(&[sample_event()]).await.unwrap();
}

/// Submitting the same batch again, or a batch overlapping one already
/// submitted, succeeds (the relay resubmits after a lost answer).
pub async fn resubmit_same_batch<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: OrderSink,
{
    let sink = make().await;
    let events = sample_events();
    sink.submit(&events).await.unwrap();
    sink.submit(&events).await.unwrap();
    let mut overlapping = events[2..].to_vec();
    overlapping.push(sample_event());
    sink.submit(&overlapping).await.unwrap();
}

/// An empty batch is accepted and changes nothing.
pub async fn empty_batch<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: OrderSink,
{
    let sink = make().await;
    sink.submit(&[]).await.unwrap();
    sink.submit(&[sample_event()]).await.unwrap();
    sink.submit(&[]).await.unwrap();
}

/// A working sink answers `ping`, before and after use.
pub async fn ping<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: OrderSink,
{
    let sink = make().await;
    sink.ping().await.unwrap();
    sink.submit(&sample_events()).await.unwrap();
    sink.ping().await.unwrap();
}
