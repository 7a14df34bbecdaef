//! The plan of a batch: each request, in arrival order (first come, first
//! served), gets the answer a lone reserve would give, from what the reads
//! found and what the requests before it took. No I/O.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::OP;
use super::read::Found;
use crate::error::Result;
use crate::model::{OrderId, Reservation, Timestamp, UserId, admit};
use crate::mysql::bad_reply;
use crate::{ReserveOutcome, ReserveRequest};

/// What a batch answers and what it must write.
#[derive(Debug)]
pub(super) struct Plan {
    /// One answer per request, in the requests' order.
    pub(super) outcomes: Vec<ReserveOutcome>,
    /// The reservations to insert, each with its `placed` event.
    pub(super) new: Vec<Reservation>,
    /// Units each buyer takes in this batch.
    pub(super) added: BTreeMap<UserId, u64>,
    /// Replay claims: (order replayed, replaying request, lapse time).
    pub(super) replays: Vec<(OrderId, OrderId, Timestamp)>,
}

impl Plan {
    /// Plans `reqs` (one product, arrival order) over `found`; a replay's
    /// claim lapses `replay_claim_ttl` after its request.
    pub(super) fn make(
        reqs: &[ReserveRequest],
        found: Found,
        replay_claim_ttl: Duration,
    ) -> Result<Self> {
        let Found {
            own,
            by_key,
            mut units,
            sale,
        } = found;
        let mut available = sale.as_ref().map_or(0, |(_, l)| l.available);
        let mut plan = Self {
            outcomes: Vec::with_capacity(reqs.len()),
            new: Vec::new(),
            added: BTreeMap::new(),
            replays: Vec::new(),
        };
        let mut new_by_id: HashMap<OrderId, usize> = HashMap::new();
        let mut new_by_key: HashMap<(UserId, String), usize> = HashMap::new();
        for req in reqs {
            if let Some(r) = own.get(&req.order_id) {
                plan.outcomes.push(ReserveOutcome::Reserved(r.clone()));
                continue;
            }
            if let Some(&i) = new_by_id.get(&req.order_id) {
                plan.outcomes
                    .push(ReserveOutcome::Reserved(plan.new[i].clone()));
                continue;
            }
            if let Some(key) = &req.idempotency_key {
                let k = (req.user.clone(), key.as_str().to_owned());
                let hit = by_key
                    .get(&k)
                    .or_else(|| new_by_key.get(&k).map(|&i| &plan.new[i]));
                if let Some(hit) = hit {
                    if hit.state.owns_units() && hit.quantity == req.quantity {
                        let lapse = req.now.saturating_add(replay_claim_ttl);
                        plan.replays.push((hit.order_id, req.order_id, lapse));
                    }
                    plan.outcomes.push(ReserveOutcome::Duplicate(hit.clone()));
                    continue;
                }
            }
            let Some((sale, _)) = &sale else {
                plan.outcomes.push(ReserveOutcome::UnknownProduct);
                continue;
            };
            let count = units
                .get_mut(&req.user)
                .ok_or_else(|| bad_reply(OP, "a buyer's row was not read"))?;
            if let Err(refusal) = admit(sale, available, *count, req) {
                plan.outcomes.push(refusal);
                continue;
            }
            let q = u64::from(req.quantity.get());
            *count += q;
            *plan.added.entry(req.user.clone()).or_default() += q;
            available -= q;
            let r = req.to_reservation(sale.hold());
            new_by_id.insert(r.order_id, plan.new.len());
            if let Some(key) = &req.idempotency_key {
                new_by_key.insert((req.user.clone(), key.as_str().to_owned()), plan.new.len());
            }
            plan.outcomes.push(ReserveOutcome::Reserved(r.clone()));
            plan.new.push(r);
        }
        Ok(plan)
    }

    /// Whether the plan writes nothing (every request was answered from
    /// what stands, or refused).
    pub(super) fn writes_nothing(&self) -> bool {
        self.new.is_empty() && self.replays.is_empty()
    }
}
