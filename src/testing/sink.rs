//! The [`OrderSink`] conformance cases. Run them all with
//! [`order_sink_conformance!`](crate::order_sink_conformance).

use std::future::Future;

use crate::model::{Order, OrderId, Quantity};
use crate::ports::OrderSink;

use super::stock::T0;
use super::{unique_product, user};

/// A sample order for the cases.
pub fn sample_order() -> Order {
    Order {
        schema_version: Order::SCHEMA_VERSION,
        order_id: OrderId::new(T0),
        product_id: unique_product("sink"),
        user_id: user(1),
        quantity: Quantity::new(2).unwrap(),
        created_at: T0,
        idempotency_key: None,
        hold_expires_at: None,
    }
}

/// `submit` answers with a receipt for the same order.
pub async fn submit_returns_receipt<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: OrderSink,
{
    let sink = make().await;
    let order = sample_order();
    let receipt = sink.submit(&order).await.unwrap();
    assert_eq!(receipt.order_id, order.order_id);
    assert!(!receipt.location.is_empty());
    sink.ping().await.unwrap();
}

/// Submitting the same order again succeeds (the engine retries after
/// timeouts).
pub async fn resubmit_is_idempotent<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: OrderSink,
{
    let sink = make().await;
    let order = sample_order();
    let a = sink.submit(&order).await.unwrap();
    let b = sink.submit(&order).await.unwrap();
    assert_eq!(a.order_id, b.order_id);
}
