//! Hot-row batching: concurrent [`reserve`](crate::StockStore::reserve)s
//! of one product in one process run as ONE transaction.
//!
//! Each product has a queue. The first request to find it idle spawns a
//! drainer task, which repeatedly takes up to [`MySqlOptions::batch_max`]
//! queued requests (after waiting at most [`MySqlOptions::batch_wait`] for
//! the batch to fill; by default it takes whatever queued while the
//! previous batch ran) and answers them. A request that is alone runs the
//! lone reserve's transaction. A batch runs in three round trips of
//! plain-text statements:
//!
//! 1. `START TRANSACTION`, the reservations standing under the requests'
//!    order ids, those their idempotency keys name (locked), an upsert
//!    that creates and locks every buyer's (product, buyer) row, in one
//!    order, then their counts, and last the sale's terms and stock;
//! 2. after a plan made in arrival order (first come, first served) with
//!    the same checks, in the same order, as a lone reserve: the buyers'
//!    new counts, replay claims, reservations and `placed` events as
//!    multi-row inserts, and last ONE guarded update of the hot stock row
//!    for the whole batch;
//! 3. `COMMIT`.
//!
//! Every request gets exactly the answer it would have had had the
//! batch's requests run one after the other (tests/mysql_batching.rs
//! checks this against a store without batching). Every value is sent as
//! a hex literal with its column's character set, so no value can change
//! a statement; the statements change shape with every batch size, so
//! they are not prepared.
//!
//! The stock level the plan starts from is read without a lock; if another
//! process took units meanwhile, the final guarded update matches no row,
//! and the batch runs again with the stock row locked before the plan. A
//! batch whose transaction fails (deadlock, lock-wait timeout, duplicate
//! key raced by another process) runs again as a whole, at most
//! [`MySqlOptions::max_retries`] times; an error that remains answers every
//! request of the batch, and none of their reserves was applied.
//!
//! [`MySqlOptions::batch_max`]: super::MySqlOptions::batch_max
//! [`MySqlOptions::batch_wait`]: super::MySqlOptions::batch_wait
//! [`MySqlOptions::max_retries`]: super::MySqlOptions::max_retries

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::bad_reply;
use sqlx::pool::PoolConnection;
use sqlx::{Executor, MySql, MySqlConnection, Row};

use super::retry::{Fail, Tx, is_duplicate};
use super::stock::{MySqlStockStore, RES_COLS, SALE_COLS, oid_bytes, reservation, sale_row};
use crate::error::{Error, Result};
use crate::model::{
    IdempotencyKey, OrderEvent, OrderId, ProductId, Reservation, ReservationState, UserId, admit,
};
use crate::{ReserveOutcome, ReserveRequest};

const OP: &str = "reserve";

/// One queued request and where its answer goes.
struct Pending {
    req: ReserveRequest,
    answer: oneshot::Sender<Result<ReserveOutcome>>,
}

/// The queue of one product. Its presence in [`Batcher::queues`] means
/// at least one drainer is running for the product.
struct Queue {
    items: VecDeque<Pending>,
    /// Woken when the queue reaches a full batch.
    full: Arc<Notify>,
    /// Drainers running for the product (at most [`Batcher::lanes`]).
    lanes: usize,
}

/// The per-product queues of one store, and the batch statements.
pub(super) struct Batcher {
    max: usize,
    wait: Duration,
    lanes: usize,
    queues: Mutex<HashMap<ProductId, Queue>>,
    sql: BatchSql,
    batches: AtomicU64,
    requests: AtomicU64,
}

/// How much batching happened: see [`MySqlStockStore::batch_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BatchStats {
    /// Batches run (a batch of one request included).
    pub batches: u64,
    /// Reserve requests answered through batches.
    pub requests: u64,
}

impl BatchStats {
    /// Requests per batch, on average (0 before the first batch).
    pub fn mean_batch(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.requests as f64 / self.batches as f64
        }
    }
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("max", &self.max)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// The table prefix of a batch's statements (see the module docs).
#[derive(Debug)]
struct BatchSql {
    p: String,
}

impl BatchSql {
    fn new(p: &str) -> Self {
        Self { p: p.to_owned() }
    }
}

/// Appends `X'…'`.
fn hex(sql: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    sql.reserve(bytes.len() * 2 + 3);
    sql.push_str("X'");
    for b in bytes {
        sql.push(char::from(DIGITS[usize::from(b >> 4)]));
        sql.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    sql.push('\'');
}

/// An ASCII text literal (product ids, states).
fn ascii(sql: &mut String, s: &str) {
    sql.push_str("_ascii ");
    hex(sql, s.as_bytes());
}

/// A UTF-8 text literal (user ids, keys, payloads).
fn utf8(sql: &mut String, s: &str) {
    sql.push_str("_utf8mb4 ");
    hex(sql, s.as_bytes());
}

/// A number literal.
fn num(sql: &mut String, n: u64) {
    use std::fmt::Write as _;
    let _ = write!(sql, "{n}");
}

/// `items` as a comma-separated list, each written by `one`.
fn each<T>(sql: &mut String, items: &[T], mut one: impl FnMut(&mut String, &T)) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        one(sql, item);
    }
}

impl Batcher {
    pub(super) fn new(prefix: &str, max: usize, wait: Duration, lanes: usize) -> Self {
        Self {
            max: max.max(1),
            wait,
            lanes: lanes.max(1),
            queues: Mutex::new(HashMap::new()),
            sql: BatchSql::new(prefix),
            batches: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<ProductId, Queue>> {
        // The lock guards plain collections that no panic leaves
        // half-changed.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `p`; true if the caller must start a drainer for its
    /// product (none runs, or fewer than [`lanes`](Self::lanes) do).
    fn push(&self, p: Pending) -> bool {
        let mut queues = self.queues();
        match queues.get_mut(&p.req.product) {
            Some(q) => {
                q.items.push_back(p);
                if q.items.len() == self.max {
                    q.full.notify_one();
                }
                if q.lanes < self.lanes {
                    q.lanes += 1;
                    true
                } else {
                    false
                }
            }
            None => {
                let product = p.req.product.clone();
                let mut items = VecDeque::new();
                items.push_back(p);
                let full = Arc::new(Notify::new());
                let lanes = 1;
                queues.insert(product, Queue { items, full, lanes });
                true
            }
        }
    }

    /// Waits, at most [`wait`](Self::wait), for a full batch.
    async fn gather(&self, product: &ProductId) {
        if self.wait.is_zero() {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let full = {
                let queues = self.queues();
                match queues.get(product) {
                    Some(q) if q.items.len() < self.max => q.full.clone(),
                    _ => return,
                }
            };
            // A wake-up left over from an earlier batch only makes this
            // look again.
            if tokio::time::timeout_at(deadline, full.notified())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// The next batch, in arrival order; `None` if nothing is queued (the
    /// calling drainer ends).
    fn take(&self, product: &ProductId) -> Option<Vec<Pending>> {
        let mut queues = self.queues();
        let q = queues.get_mut(product)?;
        if q.items.is_empty() {
            q.lanes -= 1;
            if q.lanes == 0 {
                queues.remove(product);
            }
            return None;
        }
        let n = q.items.len().min(self.max);
        Some(q.items.drain(..n).collect())
    }

    /// A drainer ends abnormally: if it was the product's last, the
    /// queue is dropped and its pending requests get an error.
    fn abandon(&self, product: &ProductId) {
        let mut queues = self.queues();
        let dropped = match queues.get_mut(product) {
            Some(q) if q.lanes > 1 => {
                q.lanes -= 1;
                None
            }
            Some(_) => queues.remove(product),
            None => None,
        };
        drop(queues);
        drop(dropped);
    }
}

/// Ends a drainer that did not finish normally (it panicked, or its
/// runtime shut down): its queue is dropped, so its waiting requests fail
/// at once and the next request starts a new drainer.
struct DrainGuard<'a> {
    batcher: &'a Batcher,
    product: &'a ProductId,
    armed: bool,
}

impl Drop for DrainGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.batcher.abandon(self.product);
        }
    }
}

/// The same failure, for each request of a batch.
fn clone_for_each(e: &Error) -> Error {
    match e {
        Error::Backend {
            backend,
            operation,
            source,
        } => Error::backend(backend, operation, source.to_string()),
        Error::Timeout { operation, after } => Error::Timeout {
            operation,
            after: *after,
        },
        other => Error::backend(crate::mysql::BACKEND, OP, other.to_string()),
    }
}

impl MySqlStockStore {
    /// How many batches this store (and its clones) ran so far, and how
    /// many requests they answered; `None` if batching is off.
    pub fn batch_stats(&self) -> Option<BatchStats> {
        self.batcher.as_ref().map(|b| BatchStats {
            batches: b.batches.load(Ordering::Relaxed),
            requests: b.requests.load(Ordering::Relaxed),
        })
    }

    /// `reserve` through the product's batch queue.
    pub(super) async fn reserve_batched(
        &self,
        batcher: &Arc<Batcher>,
        req: &ReserveRequest,
    ) -> Result<ReserveOutcome> {
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            req: req.clone(),
            answer,
        };
        if batcher.push(pending) {
            let store = self.clone();
            let batcher = batcher.clone();
            let product = req.product.clone();
            tokio::spawn(async move { store.drain(&batcher, &product).await });
        }
        answered.await.unwrap_or_else(|_| {
            Err(Error::backend(
                crate::mysql::BACKEND,
                OP,
                "the reserve batch was abandoned (its task ended)",
            ))
        })
    }

    /// Runs the product's batches until its queue is empty.
    async fn drain(&self, batcher: &Batcher, product: &ProductId) {
        let mut guard = DrainGuard {
            batcher,
            product,
            armed: true,
        };
        loop {
            // Let requests that were woken together join this batch.
            tokio::task::yield_now().await;
            batcher.gather(product).await;
            let Some(batch) = batcher.take(product) else {
                guard.armed = false;
                return;
            };
            let (reqs, answers): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|p| (p.req, p.answer)).unzip();
            batcher.batches.fetch_add(1, Ordering::Relaxed);
            batcher
                .requests
                .fetch_add(reqs.len() as u64, Ordering::Relaxed);
            let result = match reqs.as_slice() {
                // Alone: the lone reserve's transaction, on prepared
                // statements.
                [req] => self.reserve_unbatched(req).await.map(|o| vec![o]),
                reqs => self.reserve_batch(batcher, reqs).await,
            };
            match result {
                Ok(outcomes) => {
                    for (answer, outcome) in answers.into_iter().zip(outcomes) {
                        let _ = answer.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    for answer in answers {
                        let _ = answer.send(Err(clone_for_each(&e)));
                    }
                }
            }
        }
    }

    /// Runs `reqs` (one product, arrival order) as one transaction,
    /// retried as a whole.
    async fn reserve_batch(
        &self,
        batcher: &Batcher,
        reqs: &[ReserveRequest],
    ) -> Result<Vec<ReserveOutcome>> {
        let lock_sale = AtomicBool::new(false);
        self.retry(OP, || self.batch_once(&batcher.sql, reqs, &lock_sale))
            .await
    }

    async fn batch_once(
        &self,
        bs: &BatchSql,
        reqs: &[ReserveRequest],
        lock_sale: &AtomicBool,
    ) -> Tx<Vec<ReserveOutcome>> {
        let mut conn = self.pool.acquire().await?;
        let mut open = OpenTx(Some(&mut conn));
        let result = self.batch_tx(open.conn(), bs, reqs, lock_sale).await;
        if result.is_err() {
            // Best effort: a connection that cannot roll back is closed,
            // which rolls back on the server.
            let rolled_back = open.conn().execute("ROLLBACK").await;
            if rolled_back.is_ok() {
                open.0 = None;
            }
        } else {
            open.0 = None;
        }
        result
    }

    /// One attempt of a batch, on `conn`: `START TRANSACTION` and the reads
    /// in one round trip, the plan, then the writes in one round trip and
    /// `COMMIT`. Returns with the transaction ended on success; on error
    /// the caller rolls back.
    fn batch_tx<'a>(
        &'a self,
        conn: &'a mut MySqlConnection,
        bs: &'a BatchSql,
        reqs: &'a [ReserveRequest],
        lock_sale: &'a AtomicBool,
    ) -> BoxFuture<'a, Tx<Vec<ReserveOutcome>>> {
        // Boxed as `Send` here: the driver's futures defeat the compiler's
        // inference of `Send` through the spawned drainer otherwise.
        Box::pin(async move {
            let p = bs.p.as_str();
            let product = &reqs[0].product;
            let locked = lock_sale.load(Ordering::Relaxed);

            // 1. Reads, in this order: reservations already standing under the
            //    requests' order ids (retries below the port, void tombstones);
            //    those the requests' idempotency keys name, locked; every
            //    buyer's row, created if need be and locked (in one order, so
            //    batches never deadlock on them) with its count; and last the
            //    sale, without a lock unless a previous attempt lost the race
            //    for the last units (see the module docs).
            let mut ids: Vec<&OrderId> = reqs.iter().map(|r| &r.order_id).collect();
            ids.sort_unstable();
            ids.dedup();
            let mut keys: Vec<(&UserId, &IdempotencyKey)> = reqs
                .iter()
                .filter_map(|r| r.idempotency_key.as_ref().map(|k| (&r.user, k)))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            let mut users: Vec<&UserId> = reqs.iter().map(|r| &r.user).collect();
            users.sort_unstable();
            users.dedup();

            let mut sql = String::with_capacity(1024 + reqs.len() * 160);
            sql.push_str("START TRANSACTION;\n");
            sql.push_str(&format!(
                "SELECT {RES_COLS}, 1 AS src FROM {p}reservations WHERE order_id IN ("
            ));
            each(&mut sql, &ids, |s, id| hex(s, oid_bytes(id)));
            sql.push_str(");\n");
            if !keys.is_empty() {
                sql.push_str(&format!(
                    "SELECT {RES_COLS}, 2 AS src FROM {p}reservations WHERE product_id = "
                ));
                ascii(&mut sql, product.as_str());
                sql.push_str(" AND (user_id, idem_slot) IN (");
                each(&mut sql, &keys, |s, (u, k)| {
                    s.push('(');
                    utf8(s, u.as_str());
                    s.push_str(", ");
                    utf8(s, k.as_str());
                    s.push(')');
                });
                sql.push_str(") FOR UPDATE;\n");
            }
            sql.push_str(&format!(
                "INSERT INTO {p}user_units (product_id, user_id, units) VALUES "
            ));
            each(&mut sql, &users, |s, u| {
                s.push('(');
                ascii(s, product.as_str());
                s.push_str(", ");
                utf8(s, u.as_str());
                s.push_str(", 0)");
            });
            sql.push_str(" ON DUPLICATE KEY UPDATE units = units;\n");
            sql.push_str(&format!(
                "SELECT user_id, units FROM {p}user_units WHERE product_id = "
            ));
            ascii(&mut sql, product.as_str());
            sql.push_str(" AND user_id IN (");
            each(&mut sql, &users, |s, u| utf8(s, u.as_str()));
            sql.push_str(") FOR UPDATE;\n");
            sql.push_str(&format!(
                "SELECT {SALE_COLS} FROM {p}sales WHERE product_id = "
            ));
            ascii(&mut sql, product.as_str());
            if locked {
                sql.push_str(" FOR UPDATE");
            }

            let mut own: HashMap<OrderId, Reservation> = HashMap::new();
            let mut by_key: HashMap<(UserId, String), Reservation> = HashMap::new();
            let mut units: HashMap<UserId, u64> = HashMap::new();
            let mut sale = None;
            for row in (&mut *conn).fetch_all(sql.as_str()).await? {
                match row.columns().len() {
                    // A reservation, tagged with the statement that found it.
                    11 => {
                        let src: i64 = row.try_get(10)?;
                        let (r, _) = reservation(OP, &row)?;
                        if src == 1 {
                            own.insert(r.order_id, r);
                        } else if let Some(k) = &r.idempotency_key {
                            by_key.insert((r.user.clone(), k.as_str().to_owned()), r);
                        }
                    }
                    2 => {
                        let raw: Vec<u8> = row.try_get(0)?;
                        let n: u64 = row.try_get(1)?;
                        let user = String::from_utf8(raw)
                            .ok()
                            .and_then(|u| UserId::new(u).ok())
                            .ok_or_else(|| bad_reply(OP, "a user id that is not valid"))?;
                        units.insert(user, n);
                    }
                    _ => sale = Some(sale_row(OP, &row)?),
                }
            }

            // 2. The plan, in arrival order, with a lone reserve's checks.
            let mut available = sale.as_ref().map_or(0, |(_, l)| l.available);
            let mut outcomes = Vec::with_capacity(reqs.len());
            let mut new: Vec<Reservation> = Vec::new();
            let mut new_by_id: HashMap<OrderId, usize> = HashMap::new();
            let mut new_by_key: HashMap<(UserId, String), usize> = HashMap::new();
            let mut added: BTreeMap<UserId, u64> = BTreeMap::new();
            let mut replays: Vec<(OrderId, OrderId, crate::model::Timestamp)> = Vec::new();
            for req in reqs {
                if let Some(r) = own.get(&req.order_id) {
                    outcomes.push(ReserveOutcome::Reserved(r.clone()));
                    continue;
                }
                if let Some(&i) = new_by_id.get(&req.order_id) {
                    outcomes.push(ReserveOutcome::Reserved(new[i].clone()));
                    continue;
                }
                if let Some(key) = &req.idempotency_key {
                    let k = (req.user.clone(), key.as_str().to_owned());
                    let found = by_key
                        .get(&k)
                        .or_else(|| new_by_key.get(&k).map(|&i| &new[i]));
                    if let Some(found) = found {
                        if found.state.owns_units() && found.quantity == req.quantity {
                            let lapse = req.now.saturating_add(self.replay_claim_ttl);
                            replays.push((found.order_id, req.order_id, lapse));
                        }
                        outcomes.push(ReserveOutcome::Duplicate(found.clone()));
                        continue;
                    }
                }
                let Some((sale, _)) = &sale else {
                    outcomes.push(ReserveOutcome::UnknownProduct);
                    continue;
                };
                let count = units
                    .get_mut(&req.user)
                    .ok_or_else(|| bad_reply(OP, "a buyer's row was not read"))?;
                if let Err(refusal) = admit(sale, available, *count, req) {
                    outcomes.push(refusal);
                    continue;
                }
                let q = u64::from(req.quantity.get());
                *count += q;
                *added.entry(req.user.clone()).or_default() += q;
                available -= q;
                let r = req.to_reservation(sale.hold());
                new_by_id.insert(r.order_id, new.len());
                if let Some(key) = &req.idempotency_key {
                    new_by_key.insert((req.user.clone(), key.as_str().to_owned()), new.len());
                }
                outcomes.push(ReserveOutcome::Reserved(r.clone()));
                new.push(r);
            }
            if new.is_empty() && replays.is_empty() {
                (&mut *conn).execute("ROLLBACK").await?;
                return Ok(outcomes);
            }

            // 3. The writes, in one round trip: counts, replay claims,
            //    reservations, `placed` events, and last the hot row, whose
            //    rows matched come back as the one row of `ROW_COUNT()`.
            let mut sql = String::with_capacity(1024 + new.len() * 1400);
            if !added.is_empty() {
                let added: Vec<(&UserId, &u64)> = added.iter().collect();
                sql.push_str(&format!(
                    "INSERT INTO {p}user_units (product_id, user_id, units) VALUES "
                ));
                each(&mut sql, &added, |s, (u, n)| {
                    s.push('(');
                    ascii(s, product.as_str());
                    s.push_str(", ");
                    utf8(s, u.as_str());
                    s.push_str(", ");
                    num(s, **n);
                    s.push(')');
                });
                sql.push_str(" ON DUPLICATE KEY UPDATE units = units + VALUES(units);\n");
            }
            if !replays.is_empty() {
                sql.push_str(&format!(
                    "INSERT INTO {p}replays (order_id, replay_id, lapses_at) VALUES "
                ));
                each(&mut sql, &replays, |s, (order, replay, lapse)| {
                    s.push('(');
                    hex(s, oid_bytes(order));
                    s.push_str(", ");
                    hex(s, oid_bytes(replay));
                    s.push_str(", ");
                    num(s, lapse.as_millis());
                    s.push(')');
                });
                sql.push_str(" ON DUPLICATE KEY UPDATE replay_id = replay_id;\n");
            }
            if !new.is_empty() {
                sql.push_str(&format!(
                    "INSERT INTO {p}reservations (order_id, product_id, user_id, quantity, \
                 idempotency_key, idem_slot, created_at, expires_at, awaits_confirmation, \
                 state) VALUES "
                ));
                each(&mut sql, &new, |s, r| {
                    s.push('(');
                    hex(s, oid_bytes(&r.order_id));
                    s.push_str(", ");
                    ascii(s, r.product.as_str());
                    s.push_str(", ");
                    utf8(s, r.user.as_str());
                    s.push_str(", ");
                    num(s, u64::from(r.quantity.get()));
                    for _ in 0..2 {
                        s.push_str(", ");
                        match &r.idempotency_key {
                            Some(k) => utf8(s, k.as_str()),
                            None => s.push_str("NULL"),
                        }
                    }
                    s.push_str(", ");
                    num(s, r.created_at.as_millis());
                    s.push_str(", ");
                    num(s, r.expires_at.as_millis());
                    s.push_str(if r.awaits_confirmation {
                        ", TRUE, "
                    } else {
                        ", FALSE, "
                    });
                    ascii(s, r.state.as_str());
                    s.push(')');
                });
                sql.push_str(";\n");
                let mut events = Vec::with_capacity(new.len());
                for r in &new {
                    let event = OrderEvent::placed(r);
                    let payload = serde_json::to_string(&event)
                        .map_err(|e| Error::backend(crate::mysql::BACKEND, OP, e))?;
                    events.push((r, event.seq, payload));
                }
                sql.push_str(&format!(
                    "INSERT INTO {p}outbox (order_id, seq, product_id, visible_at, payload) VALUES "
                ));
                each(&mut sql, &events, |s, (r, seq, payload)| {
                    s.push('(');
                    hex(s, oid_bytes(&r.order_id));
                    s.push_str(", ");
                    num(s, u64::from(*seq));
                    s.push_str(", ");
                    ascii(s, r.product.as_str());
                    s.push_str(", 0, ");
                    utf8(s, payload);
                    s.push(')');
                });
                sql.push_str(";\n");
                let q: u64 = new.iter().map(|r| u64::from(r.quantity.get())).sum();
                let column = if new[0].state == ReservationState::Held {
                    "held"
                } else {
                    "committed"
                };
                sql.push_str(&format!(
                    "UPDATE {p}sales SET available = available - {q}, {column} = {column} + {q} \
                 WHERE product_id = "
                ));
                ascii(&mut sql, product.as_str());
                sql.push_str(&format!(" AND available >= {q};\nSELECT ROW_COUNT()"));
            }
            let rows = match (&mut *conn).fetch_all(sql.as_str()).await {
                Ok(rows) => rows,
                // Another process took a key or an order id meanwhile (a
                // void's tombstone, a retry): run again, and see it.
                Err(e) if is_duplicate(&e) => return Err(Fail::RaceLost),
                Err(e) => return Err(e.into()),
            };
            if !new.is_empty() {
                let taken: i64 = rows
                    .last()
                    .ok_or_else(|| bad_reply(OP, "no ROW_COUNT()"))?
                    .try_get(0)?;
                if taken == 0 {
                    if locked {
                        return Err(bad_reply(OP, "the locked stock row changed").into());
                    }
                    // Another process took units since the unlocked read.
                    lock_sale.store(true, Ordering::Relaxed);
                    return Err(Fail::RaceLost);
                }
            }
            (&mut *conn).execute("COMMIT").await?;
            Ok(outcomes)
        })
    }
}

/// A boxed, `Send` future.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A pooled connection inside a batch's transaction: if the batch is
/// abandoned mid-way (its task cancelled), the connection is closed rather
/// than returned to the pool with the transaction open; the server then
/// rolls it back.
struct OpenTx<'a>(Option<&'a mut PoolConnection<MySql>>);

impl OpenTx<'_> {
    fn conn(&mut self) -> &mut MySqlConnection {
        self.0
            .as_deref_mut()
            .expect("the connection is held until the end")
    }
}

impl Drop for OpenTx<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            conn.close_on_drop();
        }
    }
}
