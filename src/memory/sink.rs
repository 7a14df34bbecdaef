//! An in-process [`OrderSink`]: an append-only log with subscribers.

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::error::Result;
use crate::fast_hash::HashSet;
use crate::model::{Order, OrderId, Receipt};
use crate::ports::OrderSink;

/// Keeps accepted orders in memory, once each (deduplicated by order id).
/// Read them with [`orders`](Self::orders), take them with
/// [`drain`](Self::drain), or follow them live with
/// [`subscribe`](Self::subscribe).
#[derive(Debug)]
pub struct MemoryOrderSink {
    log: Mutex<Log>,
    live: broadcast::Sender<Order>,
}

#[derive(Debug, Default)]
struct Log {
    orders: Vec<Order>,
    seen: HashSet<OrderId>,
    /// Offsets handed out so far (drained orders keep theirs).
    next_offset: u64,
}

impl Default for MemoryOrderSink {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryOrderSink {
    /// An empty sink. Subscribers that fall more than 1,024 orders behind
    /// miss the oldest (see [`broadcast`]).
    pub fn new() -> Self {
        Self {
            log: Mutex::new(Log::default()),
            live: broadcast::channel(1_024).0,
        }
    }

    /// Every order still in the log, oldest first.
    pub fn orders(&self) -> Vec<Order> {
        self.log.lock().orders.clone()
    }

    /// How many orders are in the log.
    pub fn len(&self) -> usize {
        self.log.lock().orders.len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes every order out of the log, oldest first. Their ids stay
    /// known, so a re-submitted order is still not stored twice.
    pub fn drain(&self) -> Vec<Order> {
        std::mem::take(&mut self.log.lock().orders)
    }

    /// Receives every order accepted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Order> {
        self.live.subscribe()
    }
}

#[async_trait]
impl OrderSink for MemoryOrderSink {
    async fn submit(&self, order: &Order) -> Result<Receipt> {
        let offset = {
            let mut log = self.log.lock();
            if !log.seen.insert(order.order_id) {
                return Ok(Receipt {
                    order_id: order.order_id,
                    location: "memory/duplicate".into(),
                });
            }
            log.orders.push(order.clone());
            log.next_offset += 1;
            log.next_offset - 1
        };
        if self.live.receiver_count() > 0 {
            // A subscriber that went away meanwhile is fine: the log has it.
            let _ = self.live.send(order.clone());
        }
        Ok(Receipt {
            order_id: order.order_id,
            location: offset_location(offset),
        })
    }
}

/// `memory@<offset>`, without the formatting machinery (this runs once per
/// purchase).
fn offset_location(offset: u64) -> String {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = offset;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut s = String::with_capacity(7 + digits.len() - i);
    s.push_str("memory@");
    s.extend(digits[i..].iter().map(|&d| char::from(d)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Quantity, Timestamp, UserId};

    fn order(n: u64) -> Order {
        let at = Timestamp::from_millis(n);
        Order {
            schema_version: Order::SCHEMA_VERSION,
            order_id: OrderId::new(at),
            product_id: crate::model::ProductId::new("p").unwrap(),
            user_id: UserId::new("u").unwrap(),
            quantity: Quantity::ONE,
            created_at: at,
            idempotency_key: None,
            hold_expires_at: None,
        }
    }

    #[tokio::test]
    async fn keeps_each_order_once_and_drains_without_forgetting_ids() {
        let sink = MemoryOrderSink::new();
        let mut live = sink.subscribe();
        let a = order(1);
        let b = order(2);
        assert_eq!(sink.submit(&a).await.unwrap().location, "memory@0");
        assert_eq!(offset_location(1_234_567), "memory@1234567");
        assert_eq!(offset_location(u64::MAX), format!("memory@{}", u64::MAX));
        sink.submit(&a).await.unwrap();
        sink.submit(&b).await.unwrap();
        assert_eq!(sink.orders(), vec![a.clone(), b.clone()]);
        assert_eq!(live.recv().await.unwrap(), a);
        assert_eq!(live.recv().await.unwrap(), b);
        assert_eq!(sink.drain(), vec![a.clone(), b]);
        assert!(sink.is_empty());
        // A drained order re-submitted is still a duplicate.
        sink.submit(&a).await.unwrap();
        assert!(sink.is_empty());
    }
}
