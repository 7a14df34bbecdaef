//! The mixed workload's order book: every order this run was answered
//! `200` for, what the run did to it and what the server said about it
//! since. Pure bookkeeping (no I/O, no clock reads: callers pass `now`), so
//! the invariant checks it feeds are unit-tested here.
//!
//! Besides counting units per state for the stock checks, it checks on the
//! fly what only the client can see:
//!
//! * a replay (same user, key and body) answers the order it replays;
//! * a fresh key never answers an order this run already has;
//! * no user owns more than the per-user cap, counting only units the
//!   answers prove the user owns at once (held orders with no cancel in
//!   flight and not near their expiry, and confirmed ones);
//! * an order is only ever confirmed or cancelled after this run asked for
//!   it, expires only once its hold is over, and never changes from one
//!   final state to another.

use std::collections::HashMap;

use crate::mix::Op;

/// Clock allowance, in milliseconds, between the server's expiry of a hold
/// and this program's reading of `hold_expires_at` (both on loopback read
/// the same clock; this covers rounding and scheduling).
pub const CLOCK_SLACK_MS: u64 = 2_000;

/// How many findings of one kind are kept in words (all are counted).
const KEEP: usize = 5;

/// An order's state as this run knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Held,
    Confirmed,
    Cancelled,
    Expired,
}

impl State {
    /// The order `status` of the HTTP contract, for the four states an
    /// order this run placed can be in.
    pub fn parse(status: &str) -> Option<State> {
        match status {
            "held" => Some(State::Held),
            "confirmed" => Some(State::Confirmed),
            "cancelled" => Some(State::Cancelled),
            "expired" => Some(State::Expired),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Held => "held",
            State::Confirmed => "confirmed",
            State::Cancelled => "cancelled",
            State::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone)]
struct Order {
    id: u128,
    user: u32,
    /// The `Idempotency-Key` is `<run id>-<key>`.
    key: u64,
    quantity: u32,
    state: State,
    /// `hold_expires_at` in ms since the epoch; 0 for an order sold at once.
    expires_ms: u64,
    /// A confirm or cancel of it is in flight.
    inflight: Option<Op>,
    confirm_sent: bool,
    cancel_sent: bool,
    /// A confirm or cancel of it got an unexpected answer (a 503, a
    /// timeout): whether it took effect is unknown.
    uncertain: bool,
}

/// Findings of one kind: how many, and the first few in words.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    pub count: u64,
    pub first: Vec<String>,
}

impl Findings {
    pub fn add(&mut self, what: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.len() < KEEP {
            self.first.push(what());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The problems as lines: the first few, and how many more.
    pub fn lines(&self) -> Vec<String> {
        let mut out = self.first.clone();
        if self.count > self.first.len() as u64 {
            out.push(format!(
                "... and {} more",
                self.count - self.first.len() as u64
            ));
        }
        out
    }
}

/// A purchase to send again.
#[derive(Debug, Clone, Copy)]
pub struct ReplayTarget {
    index: u32,
    pub order: u128,
    pub user: u32,
    pub key: u64,
}

/// A hold to confirm or cancel.
#[derive(Debug, Clone, Copy)]
pub struct HoldTarget {
    index: u32,
    pub order: u128,
    pub user: u32,
}

/// What a `200` to a purchase said.
#[derive(Debug, Clone, Copy)]
pub struct Placed<'a> {
    pub order: u128,
    pub status: &'a str,
    /// `hold_expires_at`, ms since the epoch.
    pub expires_ms: Option<u64>,
    /// The body's `replayed` flag.
    pub replayed: bool,
}

#[derive(Debug, Clone, Default)]
struct UserBook {
    /// Orders that may still be held (pruned as they end or near expiry).
    live: Vec<u32>,
    /// Units of this user's orders known to be confirmed.
    confirmed: u64,
}

/// Units and orders per state, for the stock checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub orders: u64,
    pub units: u64,
    pub held: u64,
    pub confirmed: u64,
    pub cancelled: u64,
    pub expired: u64,
    /// Units of orders whose fate is unknown (see `Order::uncertain`);
    /// they are also counted in `held`.
    pub uncertain: u64,
    /// Of `expired`: units of holds left open that the run waited out.
    pub expired_waited: u64,
}

/// Holds this run left open, at the end of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenHolds {
    pub orders: u64,
    pub units: u64,
    pub earliest_ms: u64,
    pub latest_ms: u64,
}

pub struct Book {
    orders: Vec<Order>,
    by_id: HashMap<u128, u32>,
    /// Holds that confirm and cancel may pick (ended or due ones are
    /// dropped when met).
    pool: Vec<u32>,
    users: Vec<UserBook>,
    rng: fastrand::Rng,
    cap: u64,
    expired_waited: u64,
    pub replays_matched: u64,
    /// Replays that answered another order than the one they replay.
    pub replay_mismatch: Findings,
    /// Fresh purchases answered with an order this run already had, or
    /// flagged `replayed`.
    pub doubled: Findings,
    /// Users seen owning more than the cap.
    pub over_cap: Findings,
    /// Impossible state changes.
    pub contradictions: Findings,
    /// The most units one user was seen to own at once.
    pub max_user_units: u64,
}

impl Book {
    /// A book for `users` users of a sale with per-user cap `cap`.
    pub fn new(users: u64, cap: u64, rng: fastrand::Rng) -> Self {
        Book {
            orders: Vec::new(),
            by_id: HashMap::new(),
            pool: Vec::new(),
            users: vec![UserBook::default(); users as usize],
            rng,
            cap,
            expired_waited: 0,
            replays_matched: 0,
            replay_mismatch: Findings::default(),
            doubled: Findings::default(),
            over_cap: Findings::default(),
            contradictions: Findings::default(),
            max_user_units: 0,
        }
    }

    #[cfg(test)]
    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// Records a `200` to a purchase by `user` with key `key` for
    /// `quantity` units. `Err` says why the answer is malformed (it is then
    /// not recorded).
    pub fn placed(
        &mut self,
        user: u32,
        key: u64,
        quantity: u32,
        p: Placed<'_>,
        now_ms: u64,
    ) -> Result<(), &'static str> {
        let (state, expires_ms) = match (State::parse(p.status), p.expires_ms) {
            (Some(State::Held), Some(e)) => (State::Held, e),
            (Some(State::Held), None) => return Err("held, no hold_expires_at"),
            (Some(State::Confirmed), _) => (State::Confirmed, 0),
            _ => return Err("new order not held/confirmed"),
        };
        if let Some(&known) = self.by_id.get(&p.order) {
            let k = self.orders[known as usize].key;
            self.doubled.add(|| {
                format!(
                    "a purchase with a fresh key (#{key}) answered order {}, already placed \
                     under key #{k}",
                    uuid_text(p.order)
                )
            });
            return Ok(());
        }
        if p.replayed {
            self.doubled.add(|| {
                format!(
                    "a purchase with a fresh key (#{key}) answered `replayed: true` (order {})",
                    uuid_text(p.order)
                )
            });
        }
        let index = u32::try_from(self.orders.len()).expect("fewer than 2^32 orders");
        self.orders.push(Order {
            id: p.order,
            user,
            key,
            quantity,
            state,
            expires_ms,
            inflight: None,
            confirm_sent: false,
            cancel_sent: false,
            uncertain: false,
        });
        self.by_id.insert(p.order, index);
        let book = &mut self.users[user as usize];
        match state {
            State::Held => {
                self.pool.push(index);
                book.live.push(index);
            }
            _ => book.confirmed += u64::from(quantity),
        }
        self.check_cap(user, now_ms);
        Ok(())
    }

    /// Units `user` provably owns at `now_ms` (see the module docs); prunes
    /// orders that can no longer count.
    fn owned_for_sure(&mut self, user: u32, now_ms: u64) -> u64 {
        let orders = &self.orders;
        let book = &mut self.users[user as usize];
        book.live.retain(|&i| {
            let o = &orders[i as usize];
            o.state == State::Held && o.expires_ms > now_ms + CLOCK_SLACK_MS
        });
        let held: u64 = book
            .live
            .iter()
            .map(|&i| &orders[i as usize])
            .filter(|o| o.inflight != Some(Op::Cancel) && !o.uncertain)
            .map(|o| u64::from(o.quantity))
            .sum();
        held + book.confirmed
    }

    fn check_cap(&mut self, user: u32, now_ms: u64) {
        let owned = self.owned_for_sure(user, now_ms);
        self.max_user_units = self.max_user_units.max(owned);
        if owned > self.cap {
            let cap = self.cap;
            self.over_cap
                .add(|| format!("user #{user} owned {owned} units at once; the cap is {cap}"));
        }
    }

    /// A random order of this run to replay.
    pub fn pick_replay(&mut self) -> Option<ReplayTarget> {
        if self.orders.is_empty() {
            return None;
        }
        let index = self.rng.usize(..self.orders.len());
        let o = &self.orders[index];
        Some(ReplayTarget {
            index: index as u32,
            order: o.id,
            user: o.user,
            key: o.key,
        })
    }

    /// A random hold of this run that is neither over nor being acted on,
    /// marked as in flight for `op` (confirm or cancel).
    pub fn pick_hold(&mut self, op: Op, now_ms: u64) -> Option<HoldTarget> {
        while !self.pool.is_empty() {
            let at = self.rng.usize(..self.pool.len());
            let index = self.pool.swap_remove(at);
            let o = &mut self.orders[index as usize];
            if o.state != State::Held || o.inflight.is_some() || o.uncertain {
                continue;
            }
            if o.expires_ms <= now_ms {
                // Due: the server expires it (or has); the end of the run
                // accounts for it.
                continue;
            }
            o.inflight = Some(op);
            match op {
                Op::Confirm => o.confirm_sent = true,
                _ => o.cancel_sent = true,
            }
            return Some(HoldTarget {
                index,
                order: o.id,
                user: o.user,
            });
        }
        None
    }

    /// Records a `200` to a replay.
    pub fn replayed(&mut self, t: &ReplayTarget, order: u128, status: &str, now_ms: u64) {
        if order != t.order {
            self.replay_mismatch.add(|| {
                format!(
                    "the replay of order {} (user #{}, key #{}) answered order {}",
                    uuid_text(t.order),
                    t.user,
                    t.key,
                    uuid_text(order)
                )
            });
            return;
        }
        self.replays_matched += 1;
        self.observe(t.index, status, now_ms);
    }

    /// Records the answer to a confirm or cancel that carried the order's
    /// status (`200`, or `409 order_not_held`).
    pub fn hold_answered(&mut self, t: &HoldTarget, status: &str, now_ms: u64) {
        self.orders[t.index as usize].inflight = None;
        self.observe(t.index, status, now_ms);
    }

    /// Records an unexpected answer to a confirm or cancel: the order's
    /// fate is unknown from now on.
    pub fn hold_failed(&mut self, t: &HoldTarget) {
        let o = &mut self.orders[t.index as usize];
        o.inflight = None;
        o.uncertain = true;
    }

    /// The server says order `index` is `status`: follow it, and note it if
    /// this run never caused that.
    fn observe(&mut self, index: u32, status: &str, now_ms: u64) {
        let o = &mut self.orders[index as usize];
        let id = o.id;
        let Some(new) = State::parse(status) else {
            self.contradictions.add(|| {
                format!(
                    "order {} was reported with status {status:?}",
                    uuid_text(id)
                )
            });
            return;
        };
        // "held" may be an answer given before a change this run already
        // saw; it never moves a state back.
        if new == State::Held || new == o.state {
            return;
        }
        let old = o.state;
        if old != State::Held {
            self.contradictions.add(|| {
                format!(
                    "order {} was {} and is now reported {}",
                    uuid_text(id),
                    old.name(),
                    new.name()
                )
            });
            return;
        }
        let caused = match new {
            State::Confirmed => o.confirm_sent,
            State::Cancelled => o.cancel_sent,
            State::Expired => o.expires_ms <= now_ms + CLOCK_SLACK_MS,
            State::Held => true,
        };
        if !caused {
            let expires = o.expires_ms;
            self.contradictions.add(|| match new {
                State::Expired => format!(
                    "order {} was reported expired {} ms before its hold ended",
                    uuid_text(id),
                    expires.saturating_sub(now_ms)
                ),
                _ => format!(
                    "order {} was reported {} though this run never asked for it",
                    uuid_text(id),
                    new.name()
                ),
            });
        }
        // Follow the server either way: the stock checks compare with it.
        o.state = new;
        if new == State::Confirmed {
            let (user, q) = (o.user, o.quantity);
            self.users[user as usize].confirmed += u64::from(q);
        }
    }

    /// The holds still open in the book (fate-unknown ones left out).
    pub fn open_holds(&self) -> OpenHolds {
        let mut h = OpenHolds {
            earliest_ms: u64::MAX,
            ..OpenHolds::default()
        };
        for o in self.open() {
            h.orders += 1;
            h.units += u64::from(o.quantity);
            h.earliest_ms = h.earliest_ms.min(o.expires_ms);
            h.latest_ms = h.latest_ms.max(o.expires_ms);
        }
        h
    }

    fn open(&self) -> impl Iterator<Item = &Order> {
        self.orders
            .iter()
            .filter(|o| o.state == State::Held && !o.uncertain)
    }

    /// Open holds due by `by_ms`, marked as being cancelled: the end of the
    /// run asks the server about them with a cancel (`409 order_not_held`
    /// with `expired` for the ones that are over).
    pub fn take_due(&mut self, by_ms: u64) -> Vec<HoldTarget> {
        let mut out = Vec::new();
        for (index, o) in self.orders.iter_mut().enumerate() {
            if o.state == State::Held && !o.uncertain && o.expires_ms <= by_ms {
                o.inflight = Some(Op::Cancel);
                o.cancel_sent = true;
                out.push(HoldTarget {
                    index: index as u32,
                    order: o.id,
                    user: o.user,
                });
            }
        }
        out
    }

    /// After the run waited until every open hold was over: they expired.
    pub fn expire_open(&mut self) {
        let mut units = 0;
        for o in self
            .orders
            .iter_mut()
            .filter(|o| o.state == State::Held && !o.uncertain)
        {
            o.state = State::Expired;
            units += u64::from(o.quantity);
        }
        self.expired_waited += units;
    }

    pub fn tally(&self) -> Tally {
        let mut t = Tally {
            expired_waited: self.expired_waited,
            ..Tally::default()
        };
        for o in &self.orders {
            let q = u64::from(o.quantity);
            t.orders += 1;
            t.units += q;
            match o.state {
                State::Held => t.held += q,
                State::Confirmed => t.confirmed += q,
                State::Cancelled => t.cancelled += q,
                State::Expired => t.expired += q,
            }
            if o.uncertain {
                t.uncertain += q;
            }
        }
        t
    }

    /// The order ids, in the order they were placed.
    pub fn order_ids(&self) -> impl Iterator<Item = String> + '_ {
        self.orders.iter().map(|o| uuid_text(o.id))
    }
}

pub fn uuid_text(id: u128) -> String {
    uuid::Uuid::from_u128(id).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;
    const LATER: u64 = NOW + 60_000;

    fn book(cap: u64) -> Book {
        Book::new(4, cap, fastrand::Rng::with_seed(1))
    }

    fn held(order: u128) -> Placed<'static> {
        Placed {
            order,
            status: "held",
            expires_ms: Some(LATER),
            replayed: false,
        }
    }

    #[test]
    fn orders_are_tallied_by_state() {
        let mut b = book(10);
        b.placed(0, 1, 2, held(1), NOW).unwrap();
        b.placed(1, 2, 1, held(2), NOW).unwrap();
        b.placed(2, 3, 1, held(3), NOW).unwrap();
        let mut seen = Vec::new();
        for op in [Op::Confirm, Op::Cancel] {
            let t = b.pick_hold(op, NOW).unwrap();
            b.hold_answered(
                &t,
                if op == Op::Confirm {
                    "confirmed"
                } else {
                    "cancelled"
                },
                NOW,
            );
            seen.push(t.order);
        }
        let t = b.tally();
        assert_eq!((t.orders, t.units), (3, 4));
        assert_eq!(t.held + t.confirmed + t.cancelled + t.expired, 4);
        assert!(b.contradictions.is_empty(), "{:?}", b.contradictions);
        // Each hold is picked once; the third is still open.
        assert_ne!(seen[0], seen[1]);
        assert_eq!(b.open_holds().orders, 1);
        b.expire_open();
        let t = b.tally();
        assert_eq!(t.held, 0);
        assert_eq!(t.expired_waited, t.expired);
    }

    #[test]
    fn a_replay_must_answer_its_own_order() {
        let mut b = book(10);
        b.placed(0, 1, 1, held(7), NOW).unwrap();
        let t = b.pick_replay().unwrap();
        assert_eq!(t.order, 7);
        b.replayed(&t, 7, "held", NOW);
        assert_eq!(b.replays_matched, 1);
        b.replayed(&t, 8, "held", NOW);
        assert_eq!(b.replay_mismatch.count, 1);
        // A fresh key answering a known order is a double.
        b.placed(1, 2, 1, held(7), NOW).unwrap();
        assert_eq!(b.doubled.count, 1);
        assert_eq!(b.tally().orders, 1);
    }

    #[test]
    fn the_cap_counts_only_what_the_user_surely_owns() {
        let mut b = book(2);
        b.placed(0, 1, 1, held(1), NOW).unwrap();
        b.placed(0, 2, 1, held(2), NOW).unwrap();
        assert!(b.over_cap.is_empty());
        // A cancel in flight may already have freed its unit.
        let t = b.pick_hold(Op::Cancel, NOW).unwrap();
        b.placed(0, 3, 1, held(3), NOW).unwrap();
        assert!(b.over_cap.is_empty(), "{:?}", b.over_cap);
        b.hold_answered(&t, "cancelled", NOW);
        // A hold near its end may have expired already.
        let soon = Placed {
            expires_ms: Some(NOW + 1_000),
            ..held(4)
        };
        b.placed(1, 4, 2, soon, NOW).unwrap();
        b.placed(1, 5, 1, held(5), NOW).unwrap();
        assert!(b.over_cap.is_empty(), "{:?}", b.over_cap);
        // Three sure units against a cap of 2.
        b.placed(0, 6, 1, held(6), NOW).unwrap();
        assert_eq!(b.over_cap.count, 1, "{:?}", b.over_cap);
        assert_eq!(b.max_user_units, 3);
    }

    #[test]
    fn state_changes_this_run_did_not_cause_are_contradictions() {
        let mut b = book(10);
        b.placed(0, 1, 1, held(1), NOW).unwrap();
        let t = b.pick_replay().unwrap();
        b.replayed(&t, 1, "cancelled", NOW);
        assert_eq!(b.contradictions.count, 1);
        // Expired before its time.
        b.placed(0, 2, 1, held(2), NOW).unwrap();
        let t2 = ReplayTarget {
            index: 1,
            order: 2,
            user: 0,
            key: 2,
        };
        b.replayed(&t2, 2, "expired", NOW);
        assert_eq!(b.contradictions.count, 2);
        // From one final state to another.
        b.replayed(&t2, 2, "confirmed", LATER);
        assert_eq!(b.contradictions.count, 3);
        // On time is fine.
        b.placed(0, 3, 1, held(3), NOW).unwrap();
        let t3 = ReplayTarget {
            index: 2,
            order: 3,
            user: 0,
            key: 3,
        };
        b.replayed(&t3, 3, "expired", LATER);
        assert_eq!(b.contradictions.count, 3, "{:?}", b.contradictions);
    }

    #[test]
    fn due_holds_are_not_picked_but_settled() {
        let mut b = book(10);
        b.placed(0, 1, 1, held(1), NOW).unwrap();
        assert!(b.pick_hold(Op::Confirm, LATER).is_none());
        let due = b.take_due(LATER);
        assert_eq!(due.len(), 1);
        b.hold_answered(&due[0], "expired", LATER);
        assert_eq!(b.tally().expired, 1);
        assert!(b.contradictions.is_empty());
    }

    #[test]
    fn malformed_purchases_are_refused() {
        let mut b = book(10);
        let no_expiry = Placed {
            expires_ms: None,
            ..held(1)
        };
        assert!(b.placed(0, 1, 1, no_expiry, NOW).is_err());
        let odd = Placed {
            status: "pending",
            ..held(1)
        };
        assert!(b.placed(0, 1, 1, odd, NOW).is_err());
        assert_eq!(b.order_count(), 0);
    }
}
