//! An in-process [`OrderSink`]: an append-only event log with subscribers.

use std::collections::VecDeque;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::OrderSink;
use crate::error::Result;
use crate::fast_hash::HashSet;
use crate::model::{EventId, EventType, Order, OrderEvent};

/// Keeps order events in memory, once each (deduplicated by event id, as a
/// consumer of a real sink must). Read them with [`events`](Self::events)
/// or [`orders`](Self::orders), take them with [`drain`](Self::drain), or
/// follow them live with [`subscribe`](Self::subscribe).
///
/// [`new`](Self::new) keeps every event (for tests); a long-running process
/// without a real sink should use [`bounded`](Self::bounded).
#[derive(Debug)]
pub struct MemoryOrderSink {
    log: Mutex<Log>,
    live: broadcast::Sender<OrderEvent>,
}

#[derive(Debug, Default)]
struct Log {
    events: VecDeque<OrderEvent>,
    seen: HashSet<EventId>,
    /// Submissions that carried an event already seen.
    duplicates: u64,
    /// At most this many events are kept (`None`: all).
    capacity: Option<usize>,
    /// Events dropped to stay within `capacity`.
    evicted: u64,
}

impl Default for MemoryOrderSink {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryOrderSink {
    /// An empty sink. Subscribers that fall more than 1,024 events behind
    /// miss the oldest (see [`broadcast`]).
    pub fn new() -> Self {
        Self {
            log: Mutex::new(Log::default()),
            live: broadcast::channel(1_024).0,
        }
    }

    /// A sink that keeps only the newest `capacity` events (at least one):
    /// when a new one arrives at capacity, the oldest is dropped and its id
    /// forgotten, so memory stays bounded (about 300 bytes an event) in a
    /// process that runs for days. A duplicate is still recognised while
    /// its first delivery is kept. Dropped events are counted by
    /// [`evicted`](Self::evicted).
    pub fn bounded(capacity: usize) -> Self {
        let sink = Self::new();
        sink.log.lock().capacity = Some(capacity.max(1));
        sink
    }

    /// Events dropped by a [`bounded`](Self::bounded) sink so far.
    pub fn evicted(&self) -> u64 {
        self.log.lock().evicted
    }

    /// Every distinct event still in the log, in arrival order.
    pub fn events(&self) -> Vec<OrderEvent> {
        self.log.lock().events.iter().cloned().collect()
    }

    /// The orders of the distinct `placed` events still in the log, in
    /// arrival order (whatever happened to them later).
    pub fn orders(&self) -> Vec<Order> {
        self.log
            .lock()
            .events
            .iter()
            .filter(|e| e.event_type == EventType::Placed)
            .map(|e| e.order.clone())
            .collect()
    }

    /// How many distinct events are in the log.
    pub fn len(&self) -> usize {
        self.log.lock().events.len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many submitted events were dropped as already seen (the
    /// at-least-once relay re-delivers after a lost acknowledgement).
    pub fn duplicates(&self) -> u64 {
        self.log.lock().duplicates
    }

    /// Takes every event out of the log, oldest first. Their ids stay
    /// known, so a re-submitted event is still not stored twice.
    pub fn drain(&self) -> Vec<OrderEvent> {
        let mut log = self.log.lock();
        if log.capacity.is_some() {
            // Bounded: the ids go with their events, or they would pile up.
            log.seen.clear();
        }
        std::mem::take(&mut log.events).into()
    }

    /// Receives every new event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<OrderEvent> {
        self.live.subscribe()
    }
}

#[async_trait]
impl OrderSink for MemoryOrderSink {
    async fn submit(&self, events: &[OrderEvent]) -> Result<()> {
        let fresh: Vec<&OrderEvent> = {
            let mut log = self.log.lock();
            let mut fresh = Vec::with_capacity(events.len());
            for e in events {
                if log.seen.insert(e.event_id) {
                    if log.capacity.is_some_and(|c| log.events.len() >= c)
                        && let Some(old) = log.events.pop_front()
                    {
                        log.seen.remove(&old.event_id);
                        log.evicted += 1;
                    }
                    log.events.push_back(e.clone());
                    fresh.push(e);
                } else {
                    log.duplicates += 1;
                }
            }
            fresh
        };
        if self.live.receiver_count() > 0 {
            for e in fresh {
                // A subscriber that went away meanwhile is fine: the log
                // has it.
                let _ = self.live.send(e.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        OrderId, ProductId, Quantity, Reservation, ReservationState, Timestamp, UserId,
    };

    fn reservation(n: u64) -> Reservation {
        let at = Timestamp::from_millis(n);
        Reservation {
            order_id: OrderId::new(at),
            product: ProductId::new("p").unwrap(),
            user: UserId::new("u").unwrap(),
            quantity: Quantity::ONE,
            idempotency_key: None,
            created_at: at,
            expires_at: at,
            awaits_confirmation: false,
            state: ReservationState::Committed,
        }
    }

    #[tokio::test]
    async fn bounded_keeps_the_newest_events_and_their_ids() {
        let sink = MemoryOrderSink::bounded(3);
        let events: Vec<OrderEvent> = (1..=5)
            .map(|n| OrderEvent::placed(&reservation(n)))
            .collect();
        sink.submit(&events).await.unwrap();
        assert_eq!(sink.events(), events[2..].to_vec());
        assert_eq!((sink.len(), sink.evicted()), (3, 2));
        // A duplicate of a kept event is recognised; of a dropped one, not.
        sink.submit(&events[4..]).await.unwrap();
        assert_eq!((sink.duplicates(), sink.len()), (1, 3));
        sink.submit(&events[..1]).await.unwrap();
        assert_eq!(sink.events()[2], events[0]);
        assert_eq!((sink.duplicates(), sink.evicted()), (1, 3));
        assert_eq!(sink.drain().len(), 3);
        assert!(sink.is_empty());
    }

    #[tokio::test]
    async fn keeps_each_event_once_and_drains_without_forgetting_ids() {
        let sink = MemoryOrderSink::new();
        let mut live = sink.subscribe();
        let a = OrderEvent::placed(&reservation(1));
        let r2 = reservation(2);
        let b = OrderEvent::placed(&r2);
        let b_voided = OrderEvent::closing(&r2, EventType::Voided, Timestamp::from_millis(3));
        sink.submit(std::slice::from_ref(&a)).await.unwrap();
        sink.submit(&[a.clone(), b.clone(), b_voided.clone()])
            .await
            .unwrap();
        assert_eq!(sink.events(), vec![a.clone(), b.clone(), b_voided.clone()]);
        assert_eq!(sink.orders(), vec![a.order.clone(), b.order.clone()]);
        assert_eq!(sink.duplicates(), 1);
        assert_eq!(live.recv().await.unwrap(), a);
        assert_eq!(live.recv().await.unwrap(), b);
        assert_eq!(live.recv().await.unwrap(), b_voided);
        assert_eq!(sink.drain().len(), 3);
        assert!(sink.is_empty());
        // A drained event re-submitted is still a duplicate.
        sink.submit(&[a]).await.unwrap();
        assert!(sink.is_empty());
        sink.submit(&[]).await.unwrap();
    }
}
