//! What the order events say: a fold of events (deduplicated by
//! [`EventId`]) into the units each order owns, and a helper that empties a
//! store's outbox the way a relay does (claim, then acknowledge).
//!
//! The conformance cases compare the store's [`StockLevels`] with the
//! ledger: every unit held or sold must belong to an order whose `placed`
//! event was handed out, and every unit that went back on sale must be
//! followed by its `cancelled`, `expired` or `voided` event.
//!
//! [`StockLevels`]: crate::model::StockLevels

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::StockStore;
use crate::model::{EventId, EventType, Order, OrderEvent, OrderId, ProductId, Timestamp, UserId};

/// The lease the helpers claim with (longer than any case needs).
pub const LEASE: Duration = Duration::from_secs(60);

/// How many events the helpers claim per batch.
pub const BATCH: usize = 64;

/// One order as its events describe it.
#[derive(Debug, Clone)]
struct Fold {
    order: Order,
    placed: bool,
    closing: Option<EventType>,
}

impl Fold {
    /// Placed and not given back (a `confirmed` closing keeps the units).
    fn owns_units(&self) -> bool {
        self.placed
            && !matches!(
                self.closing,
                Some(EventType::Cancelled | EventType::Expired | EventType::Voided)
            )
    }
}

/// Order events folded into what each order owns. Every event recorded is
/// checked for internal consistency (`seq` matches `type`, `event_id`
/// matches the order and `seq`, schema version 2, a redelivered event is
/// identical to its first delivery, at most one closing event per order);
/// a violation panics with the offending events.
#[derive(Debug, Default, Clone)]
pub struct EventLedger {
    events: HashMap<EventId, OrderEvent>,
    orders: BTreeMap<OrderId, Fold>,
    arrivals: usize,
}

impl EventLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one delivery of `e`; returns whether its id was new.
    pub fn record(&mut self, e: &OrderEvent) -> bool {
        self.arrivals += 1;
        assert_eq!(
            e.schema_version,
            OrderEvent::SCHEMA_VERSION,
            "schema version: {e:?}"
        );
        assert_eq!(e.seq, e.event_type.seq(), "seq does not match type: {e:?}");
        assert_eq!(
            e.event_id,
            EventId::new(e.order.order_id, e.seq),
            "event id does not name the order and seq: {e:?}"
        );
        if let Some(first) = self.events.get(&e.event_id) {
            assert_eq!(first, e, "a redelivered event changed");
            return false;
        }
        self.events.insert(e.event_id, e.clone());
        let fold = self.orders.entry(e.order.order_id).or_insert_with(|| Fold {
            order: e.order.clone(),
            placed: false,
            closing: None,
        });
        assert_eq!(
            fold.order, e.order,
            "two events of one order carry different orders"
        );
        if e.event_type == EventType::Placed {
            fold.placed = true;
        } else {
            assert!(
                fold.closing.is_none(),
                "order {} has two closing events: {:?} and {:?}",
                e.order.order_id,
                fold.closing,
                e.event_type
            );
            fold.closing = Some(e.event_type);
        }
        true
    }

    /// Records every event of `events`; returns how many ids were new.
    pub fn extend(&mut self, events: &[OrderEvent]) -> usize {
        events.iter().filter(|e| self.record(e)).count()
    }

    /// Distinct events recorded.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Deliveries recorded, duplicates included.
    pub fn arrivals(&self) -> usize {
        self.arrivals
    }

    /// Whether the event with this id was recorded.
    pub fn contains(&self, id: &EventId) -> bool {
        self.events.contains_key(id)
    }

    /// Every distinct event id recorded.
    pub fn event_ids(&self) -> HashSet<EventId> {
        self.events.keys().copied().collect()
    }

    /// Distinct events of type `t`.
    pub fn count(&self, t: EventType) -> usize {
        self.events.values().filter(|e| e.event_type == t).count()
    }

    /// The closing event type of `order`, if one was recorded.
    pub fn closing(&self, order: &OrderId) -> Option<EventType> {
        self.orders.get(order).and_then(|f| f.closing)
    }

    /// Whether `order`'s `placed` event was recorded.
    pub fn placed(&self, order: &OrderId) -> bool {
        self.orders.get(order).is_some_and(|f| f.placed)
    }

    /// Orders of `product` whose `placed` event was recorded and that were
    /// not cancelled, expired or voided since: the orders that own units.
    pub fn live_orders(&self, product: &ProductId) -> HashSet<OrderId> {
        self.orders
            .iter()
            .filter(|(_, f)| &f.order.product_id == product && f.owns_units())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Units of `product` the events say are held or sold right now.
    pub fn live_units(&self, product: &ProductId) -> u64 {
        self.orders
            .values()
            .filter(|f| &f.order.product_id == product && f.owns_units())
            .map(|f| u64::from(f.order.quantity.get()))
            .sum()
    }

    /// Units of `product` the events say `user` holds or owns.
    pub fn user_units(&self, product: &ProductId, user: &UserId) -> u64 {
        self.orders
            .values()
            .filter(|f| &f.order.product_id == product && &f.order.user_id == user)
            .filter(|f| f.owns_units())
            .map(|f| u64::from(f.order.quantity.get()))
            .sum()
    }
}

/// Checks one claimed batch: no event twice, and an order's events in `seq`
/// order.
pub fn check_batch(batch: &[OrderEvent]) {
    let mut seen: HashMap<OrderId, u16> = HashMap::new();
    for e in batch {
        if let Some(prev) = seen.insert(e.order.order_id, e.seq) {
            assert!(
                prev < e.seq,
                "one claim handed out events of order {} out of seq order (or twice): {batch:?}",
                e.order.order_id
            );
        }
    }
}

/// Empties `store`'s outbox as one relay would at `now`: claims batches of
/// [`BATCH`] under a [`LEASE`], checks each with [`check_batch`],
/// acknowledges it, and stops at the first empty claim. Returns every
/// event handed out, in order. Events leased to someone else at `now` are
/// not waited for.
pub async fn drain_outbox(store: &dyn StockStore, now: Timestamp) -> Vec<OrderEvent> {
    let mut all = Vec::new();
    for _ in 0..100_000 {
        let batch = store.claim(now, BATCH, LEASE).await.expect("claim");
        if batch.is_empty() {
            return all;
        }
        assert!(batch.len() <= BATCH, "claim handed out more than asked");
        check_batch(&batch);
        store.ack(&batch).await.expect("ack");
        all.extend(batch);
    }
    panic!("the outbox never emptied: are acknowledged events handed out again?");
}
