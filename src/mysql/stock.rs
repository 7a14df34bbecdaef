//! [`MySqlStockStore`]: sales, stock, reservations and the outbox of order
//! events in MySQL / MariaDB, one transaction per operation.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::{MySql, MySqlConnection, Row, Transaction};

use super::batch::Batcher;
use super::retry::{Fail, Tx, is_duplicate, retried};
use super::{MySqlOptions, backend_err, bad_reply};
use crate::error::{Error, Result};
use crate::model::{
    EventType, IdempotencyKey, OrderEvent, OrderId, ProductId, Quantity, Reservation,
    ReservationState, Sale, StockLevels, Timestamp, UserId, admit,
};
use crate::{
    CancelOutcome, ConfirmOutcome, ReserveOutcome, ReserveRequest, SaleWrite, StockStore,
    VoidOutcome,
};

/// Lapsed replay claims deleted per sweep, at most.
const REPLAY_PURGE_BATCH: u64 = 1_000;
/// The columns every reservation read selects, in [`Sql::reservation`]'s
/// order.
pub(super) const RES_COLS: &str = "order_id, product_id, user_id, quantity, idempotency_key, \
     created_at, expires_at, awaits_confirmation, state, void_waiting";

/// The columns of a sale's terms and levels.
pub(super) const SALE_COLS: &str = "product_id, total, available, held, committed, per_user_limit, \
     per_order_max, starts_at, ends_at, hold_ns";

/// Sales, stock, reservations and the outbox of order events in MySQL or
/// MariaDB, shared by every app instance that uses the same database and
/// table prefix.
///
/// * Every operation is one `READ COMMITTED` transaction (see the
///   [module docs](super)); a purchase is one `reserve` transaction, which
///   also appends the order's `placed` event to the outbox.
/// * Sold-out, over-the-cap and closed-window refusals read the sale's
///   terms without locking and write nothing.
/// * Finished reservations stay in the table (their idempotency keys keep
///   replaying); delete old rows with ordinary SQL if the table must stay
///   small.
///
/// Call [`migrate`](Self::migrate) once before first use. Cheap to clone;
/// clones share the connection pool.
#[derive(Debug, Clone)]
pub struct MySqlStockStore {
    pub(super) pool: MySqlPool,
    pub(super) sql: Arc<Sql>,
    prefix: Arc<str>,
    max_retries: u32,
    /// Hot-row batching of `reserve` (`None`: off).
    pub(super) batcher: Option<Arc<Batcher>>,
    /// How long a replay's claim on an order is kept.
    pub(super) replay_claim_ttl: Duration,
}

/// Every statement, with the table prefix filled in (built once).
#[derive(Debug)]
pub(super) struct Sql {
    pub(super) sale: String,
    sale_lock: String,
    sale_insert: String,
    sale_update: String,
    levels: String,
    pub(super) take_held: String,
    pub(super) take_sold: String,
    give_back_held: String,
    give_back_sold: String,
    held_to_sold: String,
    user_touch: String,
    user_add: String,
    user_sub: String,
    res: String,
    res_lock: String,
    res_of_product_lock: String,
    res_by_key_lock: String,
    res_insert: String,
    res_state: String,
    res_void: String,
    res_void_waiting: String,
    res_due: String,
    replay_add: String,
    replay_remove: String,
    replay_count: String,
    replay_clear: String,
    replay_lapsed: String,
    outbox_insert: String,
    outbox_candidates: String,
    outbox_lock_head: String,
    outbox_lock_tail: String,
    outbox_placed_of: String,
    outbox_lease: String,
    outbox_delete: String,
}

impl Sql {
    fn new(p: &str) -> Self {
        let q = |s: &str| s.replace("{p}", p);
        Self {
            sale: q(&format!(
                "SELECT {SALE_COLS} FROM {{p}}sales WHERE product_id = ?"
            )),
            sale_lock: q("SELECT held, committed FROM {p}sales WHERE product_id = ? FOR UPDATE"),
            sale_insert: q(
                "INSERT INTO {p}sales (product_id, total, available, held, committed, \
                 per_user_limit, per_order_max, starts_at, ends_at, hold_ns) \
                 VALUES (?, ?, ?, 0, 0, ?, ?, ?, ?, ?)",
            ),
            sale_update: q(
                "UPDATE {p}sales SET total = ?, available = ? - held - committed, \
                 per_user_limit = ?, per_order_max = ?, starts_at = ?, ends_at = ?, hold_ns = ? \
                 WHERE product_id = ?",
            ),
            levels: q(
                "SELECT total, available, held, committed FROM {p}sales WHERE product_id = ?",
            ),
            take_held: q(
                "UPDATE {p}sales SET available = available - ?, held = held + ? \
                 WHERE product_id = ? AND available >= ?",
            ),
            take_sold: q(
                "UPDATE {p}sales SET available = available - ?, committed = committed + ? \
                 WHERE product_id = ? AND available >= ?",
            ),
            give_back_held: q(
                "UPDATE {p}sales SET available = available + ?, held = held - ? \
                 WHERE product_id = ?",
            ),
            give_back_sold: q("UPDATE {p}sales SET available = available + ?, \
                 committed = committed - ? WHERE product_id = ?"),
            held_to_sold: q(
                "UPDATE {p}sales SET held = held - ?, committed = committed + ? \
                 WHERE product_id = ?",
            ),
            user_touch: q(
                "INSERT INTO {p}user_units (product_id, user_id, units) VALUES (?, ?, 0) \
                 ON DUPLICATE KEY UPDATE units = units",
            ),
            user_add: q("UPDATE {p}user_units SET units = units + ? \
                 WHERE product_id = ? AND user_id = ? AND units + ? <= ?"),
            user_sub: q("UPDATE {p}user_units SET units = units - ? \
                 WHERE product_id = ? AND user_id = ? AND units >= ?"),
            res: q(&format!(
                "SELECT {RES_COLS} FROM {{p}}reservations WHERE order_id = ?"
            )),
            res_lock: q(&format!(
                "SELECT {RES_COLS} FROM {{p}}reservations WHERE order_id = ? FOR UPDATE"
            )),
            res_of_product_lock: q(&format!(
                "SELECT {RES_COLS} FROM {{p}}reservations WHERE order_id = ? AND product_id = ? \
                 FOR UPDATE"
            )),
            res_by_key_lock: q(&format!(
                "SELECT {RES_COLS} FROM {{p}}reservations \
                 WHERE product_id = ? AND user_id = ? AND idem_slot = ? FOR UPDATE"
            )),
            res_insert: q(
                "INSERT INTO {p}reservations (order_id, product_id, user_id, quantity, \
                 idempotency_key, idem_slot, created_at, expires_at, awaits_confirmation, state) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            res_state: q("UPDATE {p}reservations SET state = ? WHERE order_id = ?"),
            res_void: q("UPDATE {p}reservations \
                 SET state = 'voided', idem_slot = NULL, void_waiting = FALSE WHERE order_id = ?"),
            res_void_waiting: q(
                "UPDATE {p}reservations SET void_waiting = TRUE WHERE order_id = ?",
            ),
            res_due: q("SELECT order_id FROM {p}reservations \
                 WHERE state = 'held' AND expires_at <= ? ORDER BY expires_at, order_id LIMIT ?"),
            replay_add: q(
                "INSERT INTO {p}replays (order_id, replay_id, lapses_at) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE replay_id = replay_id",
            ),
            // A lapsed claim no longer counts, nor is it dropped by a void.
            replay_remove: q("DELETE FROM {p}replays \
                 WHERE order_id = ? AND replay_id = ? AND lapses_at > ?"),
            replay_count: q("SELECT COUNT(*) FROM {p}replays WHERE order_id = ? AND lapses_at > ?"),
            replay_clear: q("DELETE FROM {p}replays WHERE order_id = ?"),
            replay_lapsed: q("DELETE FROM {p}replays WHERE lapses_at <= ? LIMIT ?"),
            outbox_insert: q(
                "INSERT INTO {p}outbox (order_id, seq, product_id, visible_at, payload) \
                 VALUES (?, ?, ?, 0, ?)",
            ),
            outbox_candidates: q("SELECT o.order_id, o.seq FROM {p}outbox o \
                 WHERE o.visible_at <= ? AND (o.seq = 1 OR NOT EXISTS (\
                   SELECT 1 FROM {p}outbox f \
                   WHERE f.order_id = o.order_id AND f.seq = 1 AND f.visible_at > ?)) \
                 ORDER BY o.order_id, o.seq LIMIT ?"),
            outbox_lock_head: q("SELECT order_id, seq, payload FROM {p}outbox \
                 WHERE (order_id, seq) IN "),
            outbox_lock_tail: " AND visible_at <= ? ORDER BY order_id, seq LIMIT ? \
                 FOR UPDATE SKIP LOCKED"
                .to_owned(),
            outbox_placed_of: q("SELECT order_id FROM {p}outbox WHERE seq = 1 AND order_id IN "),
            outbox_lease: q("UPDATE {p}outbox SET visible_at = ? WHERE (order_id, seq) IN "),
            outbox_delete: q("DELETE FROM {p}outbox WHERE (order_id, seq) IN "),
        }
    }
}

pub(super) fn oid_bytes(order: &OrderId) -> &[u8] {
    order.as_uuid().as_bytes().as_slice()
}

fn state_str(s: ReservationState) -> &'static str {
    s.as_str()
}

fn parse_state(op: &'static str, s: &str) -> Result<ReservationState> {
    Ok(match s {
        "held" => ReservationState::Held,
        "committed" => ReservationState::Committed,
        "cancelled" => ReservationState::Cancelled,
        "expired" => ReservationState::Expired,
        "voided" => ReservationState::Voided,
        other => return Err(bad_reply(op, format!("unknown state {other:?}"))),
    })
}

fn parse_oid(op: &'static str, raw: &[u8]) -> Result<OrderId> {
    uuid::Uuid::from_slice(raw)
        .map(OrderId::from_uuid)
        .map_err(|e| bad_reply(op, e))
}

/// A text column. Binary collations make the server flag text columns as
/// binary, so they are read as bytes and checked to be UTF-8.
fn text(row: &MySqlRow, i: usize) -> std::result::Result<String, sqlx::Error> {
    let raw: Vec<u8> = row.try_get(i)?;
    String::from_utf8(raw).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn opt_text(row: &MySqlRow, i: usize) -> std::result::Result<Option<String>, sqlx::Error> {
    let raw: Option<Vec<u8>> = row.try_get(i)?;
    raw.map(|r| String::from_utf8(r).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .transpose()
}

/// A reservation row, and whether its own request's void is waiting for
/// its replays.
pub(super) fn reservation(op: &'static str, row: &MySqlRow) -> Result<(Reservation, bool)> {
    let get = |e: sqlx::Error| bad_reply(op, e);
    let oid: Vec<u8> = row.try_get(0).map_err(get)?;
    let product = text(row, 1).map_err(get)?;
    let user = text(row, 2).map_err(get)?;
    let quantity: u32 = row.try_get(3).map_err(get)?;
    let key = opt_text(row, 4).map_err(get)?;
    let created_at: u64 = row.try_get(5).map_err(get)?;
    let expires_at: u64 = row.try_get(6).map_err(get)?;
    let awaits: bool = row.try_get(7).map_err(get)?;
    let state = text(row, 8).map_err(get)?;
    let void_waiting: bool = row.try_get(9).map_err(get)?;
    let r = Reservation {
        order_id: parse_oid(op, &oid)?,
        product: ProductId::new(product).map_err(|e| bad_reply(op, e))?,
        user: UserId::new(user).map_err(|e| bad_reply(op, e))?,
        quantity: Quantity::new(i64::from(quantity)).map_err(|e| bad_reply(op, e))?,
        idempotency_key: key
            .map(IdempotencyKey::new)
            .transpose()
            .map_err(|e| bad_reply(op, e))?,
        created_at: Timestamp::from_millis(created_at),
        expires_at: Timestamp::from_millis(expires_at),
        awaits_confirmation: awaits,
        state: parse_state(op, &state)?,
    };
    Ok((r, void_waiting))
}

/// A sale's terms and levels.
pub(super) fn sale_row(op: &'static str, row: &MySqlRow) -> Result<(Sale, StockLevels)> {
    let get = |e: sqlx::Error| bad_reply(op, e);
    let product = text(row, 0).map_err(get)?;
    let total: u64 = row.try_get(1).map_err(get)?;
    let available: u64 = row.try_get(2).map_err(get)?;
    let held: u64 = row.try_get(3).map_err(get)?;
    let committed: u64 = row.try_get(4).map_err(get)?;
    let limit: u64 = row.try_get(5).map_err(get)?;
    let omax: u64 = row.try_get(6).map_err(get)?;
    let starts_at: Option<u64> = row.try_get(7).map_err(get)?;
    let ends_at: Option<u64> = row.try_get(8).map_err(get)?;
    let hold_ns: Option<u64> = row.try_get(9).map_err(get)?;
    let n32 = |n: u64| u32::try_from(n).map_err(|e| bad_reply(op, e));
    let product = ProductId::new(product).map_err(|e| bad_reply(op, e))?;
    let mut b = Sale::builder(product, n32(total)?)
        .per_user_limit(n32(limit)?)
        .per_order_max(n32(omax)?);
    if let Some(t) = starts_at {
        b = b.starts_at(Timestamp::from_millis(t));
    }
    if let Some(t) = ends_at {
        b = b.ends_at(Timestamp::from_millis(t));
    }
    if let Some(ns) = hold_ns {
        b = b.hold(Duration::from_nanos(ns));
    }
    let sale = b.build().map_err(|e| bad_reply(op, e))?;
    let levels = StockLevels {
        total,
        available,
        held,
        committed,
    };
    Ok((sale, levels))
}

/// `(?, ?), (?, ?), …` for `n` pairs.
pub(super) fn pairs(n: usize) -> String {
    let mut s = String::with_capacity(n * 8 + 2);
    s.push('(');
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str("(?, ?)");
    }
    s.push(')');
    s
}

/// `(?, ?, …)` for `n` values.
pub(super) fn list(n: usize) -> String {
    let mut s = String::from("(");
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s.push(')');
    s
}

impl MySqlStockStore {
    /// Connects to the database at `url` (e.g.
    /// `mysql://root@127.0.0.1:3306/test`), naming every table
    /// `<table_prefix><table>`. Fails if the database does not answer. Does
    /// not create the tables: call [`migrate`](Self::migrate).
    pub async fn connect(url: &str, table_prefix: &str) -> Result<Self> {
        Self::with_options(MySqlOptions::new(url).table_prefix(table_prefix)).await
    }

    /// Connects with explicit options.
    pub async fn with_options(opts: MySqlOptions) -> Result<Self> {
        opts.validate()?;
        // The stock store keeps the server's SQL mode (the order table sets
        // its own).
        let pool = super::pool::open(&opts, false).await?;
        Ok(Self {
            pool,
            sql: Arc::new(Sql::new(&opts.table_prefix)),
            prefix: opts.table_prefix.as_str().into(),
            max_retries: opts.max_retries,
            batcher: opts.batching.then(|| {
                Arc::new(Batcher::new(
                    &opts.table_prefix,
                    opts.batch_max,
                    opts.batch_wait,
                    opts.batch_lanes,
                ))
            }),
            replay_claim_ttl: opts.replay_claim_ttl,
        })
    }

    /// The table prefix.
    pub fn table_prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether concurrent reserves of one product are batched
    /// ([`MySqlOptions::batching`]).
    pub fn is_batching(&self) -> bool {
        self.batcher.is_some()
    }

    /// One reserve in its own transaction, retried.
    pub(super) async fn reserve_unbatched(&self, req: &ReserveRequest) -> Result<ReserveOutcome> {
        self.retry("reserve", || self.reserve_once(req)).await
    }

    /// Creates or upgrades this store's tables: applies, in order, every
    /// migration of `backends/mysql/migrations/` (embedded in the crate)
    /// that this prefix has not had yet, recording each in
    /// `<prefix>schema_migrations`. Idempotent, and safe to call from
    /// several instances at once (they take turns on a named lock). Also
    /// creates `<prefix>orders`, the table the order worker folds order
    /// events into.
    ///
    /// MySQL commits DDL at once, so a migration that fails halfway is not
    /// rolled back: fix the cause and call this again (every statement is
    /// written to be re-runnable).
    pub async fn migrate(&self) -> Result<()> {
        super::migrate::run(&self.pool, &self.prefix).await
    }

    /// Runs `once` (one transaction) until it succeeds, fails for good, or
    /// has been retried [`MySqlOptions::max_retries`] times.
    pub(super) async fn retry<T, Fut>(
        &self,
        op: &'static str,
        once: impl FnMut() -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = Tx<T>>,
    {
        retried(op, self.max_retries, backend_err(op), once).await
    }

    async fn lock_reservation(
        &self,
        tx: &mut MySqlConnection,
        op: &'static str,
        order: &OrderId,
    ) -> Tx<Option<(Reservation, bool)>> {
        let row = sqlx::query(&self.sql.res_lock)
            .bind(oid_bytes(order))
            .fetch_optional(&mut *tx)
            .await?;
        Ok(row.map(|r| reservation(op, &r)).transpose()?)
    }

    async fn own_reservation(
        &self,
        tx: &mut MySqlConnection,
        op: &'static str,
        order: &OrderId,
    ) -> Tx<Option<Reservation>> {
        let row = sqlx::query(&self.sql.res)
            .bind(oid_bytes(order))
            .fetch_optional(&mut *tx)
            .await?;
        Ok(row
            .map(|r| reservation(op, &r).map(|(r, _)| r))
            .transpose()?)
    }

    async fn append(
        &self,
        tx: &mut MySqlConnection,
        op: &'static str,
        event: &OrderEvent,
    ) -> Tx<()> {
        let payload = serde_json::to_string(event)
            .map_err(|e| Error::backend(crate::mysql::BACKEND, op, e))?;
        sqlx::query(&self.sql.outbox_insert)
            .bind(oid_bytes(&event.order.order_id))
            .bind(event.seq)
            .bind(event.order.product_id.as_str())
            .bind(payload)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Gives a live reservation's units back (the buyer's count first, the
    /// hot stock row last), marks it `state` and appends `event`.
    async fn return_units(
        &self,
        tx: &mut MySqlConnection,
        op: &'static str,
        r: &Reservation,
        state: ReservationState,
        event: EventType,
        at: Timestamp,
    ) -> Tx<Reservation> {
        let q = u64::from(r.quantity.get());
        sqlx::query(&self.sql.user_sub)
            .bind(q)
            .bind(r.product.as_str())
            .bind(r.user.as_str())
            .bind(q)
            .execute(&mut *tx)
            .await?;
        if state == ReservationState::Voided {
            sqlx::query(&self.sql.res_void)
                .bind(oid_bytes(&r.order_id))
                .execute(&mut *tx)
                .await?;
            sqlx::query(&self.sql.replay_clear)
                .bind(oid_bytes(&r.order_id))
                .execute(&mut *tx)
                .await?;
        } else {
            self.set_state(tx, &r.order_id, state).await?;
        }
        let closed = Reservation { state, ..r.clone() };
        self.append(tx, op, &OrderEvent::closing(&closed, event, at))
            .await?;
        let give_back = match r.state {
            ReservationState::Held => &self.sql.give_back_held,
            ReservationState::Committed => &self.sql.give_back_sold,
            other => {
                return Err(bad_reply(op, format!("{other:?} owns no units")).into());
            }
        };
        sqlx::query(give_back)
            .bind(q)
            .bind(q)
            .bind(r.product.as_str())
            .execute(&mut *tx)
            .await?;
        Ok(closed)
    }

    async fn set_state(
        &self,
        tx: &mut MySqlConnection,
        order: &OrderId,
        state: ReservationState,
    ) -> Tx<()> {
        sqlx::query(&self.sql.res_state)
            .bind(state_str(state))
            .bind(oid_bytes(order))
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Rolls back and answers `outcome`, unless the request's own order id
    /// already names a reservation (a retry below the port): then that.
    async fn refuse(
        &self,
        mut tx: Transaction<'static, MySql>,
        req: &ReserveRequest,
        outcome: ReserveOutcome,
    ) -> Tx<ReserveOutcome> {
        let own = self
            .own_reservation(&mut tx, "reserve", &req.order_id)
            .await?;
        tx.rollback().await?;
        Ok(own.map_or(outcome, ReserveOutcome::Reserved))
    }

    async fn reserve_once(&self, req: &ReserveRequest) -> Tx<ReserveOutcome> {
        const OP: &str = "reserve";
        let s = &self.sql;
        let oid = oid_bytes(&req.order_id);
        let mut tx = self.pool.begin().await?;
        // The key first: a replay wins over every other check.
        if let Some(key) = &req.idempotency_key {
            let row = sqlx::query(&s.res_by_key_lock)
                .bind(req.product.as_str())
                .bind(req.user.as_str())
                .bind(key.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = row {
                let (found, _) = reservation(OP, &row)?;
                if found.order_id == req.order_id {
                    tx.commit().await?;
                    return Ok(ReserveOutcome::Reserved(found));
                }
                if let Some(own) = self.own_reservation(&mut tx, OP, &req.order_id).await? {
                    tx.commit().await?;
                    return Ok(ReserveOutcome::Reserved(own));
                }
                if found.state.owns_units() && found.quantity == req.quantity {
                    // This replay will answer 2xx with the order: it must
                    // stand unless this replay's answer is lost too.
                    sqlx::query(&s.replay_add)
                        .bind(oid_bytes(&found.order_id))
                        .bind(oid)
                        .bind(req.now.saturating_add(self.replay_claim_ttl).as_millis())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                return Ok(ReserveOutcome::Duplicate(found));
            }
        }
        let row = sqlx::query(&s.sale)
            .bind(req.product.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return self.refuse(tx, req, ReserveOutcome::UnknownProduct).await;
        };
        let (sale, levels) = sale_row(OP, &row)?;
        // The buyer's units are checked below, under the row's lock.
        if let Err(refusal) = admit(&sale, levels.available, 0, req) {
            return self.refuse(tx, req, refusal).await;
        }
        let q = u64::from(req.quantity.get());
        let limit = u64::from(sale.per_user_limit());
        // The per-user cap: make sure the (product, buyer) row exists (and
        // lock it), then a guarded update.
        sqlx::query(&s.user_touch)
            .bind(req.product.as_str())
            .bind(req.user.as_str())
            .execute(&mut *tx)
            .await?;
        let added = sqlx::query(&s.user_add)
            .bind(q)
            .bind(req.product.as_str())
            .bind(req.user.as_str())
            .bind(q)
            .bind(limit)
            .execute(&mut *tx)
            .await?;
        if added.rows_affected() == 0 {
            return self.refuse(tx, req, ReserveOutcome::LimitExceeded).await;
        }
        let r = req.to_reservation(sale.hold());
        let key = req.idempotency_key.as_ref().map(IdempotencyKey::as_str);
        let inserted = sqlx::query(&s.res_insert)
            .bind(oid)
            .bind(req.product.as_str())
            .bind(req.user.as_str())
            .bind(req.quantity.get())
            .bind(key)
            .bind(key)
            .bind(r.created_at.as_millis())
            .bind(r.expires_at.as_millis())
            .bind(r.awaits_confirmation)
            .bind(state_str(r.state))
            .execute(&mut *tx)
            .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_duplicate(&e) => {
                // This order id already stands (a retry below the port), or
                // a concurrent request took the key: look again.
                tx.rollback().await?;
                let mut conn = self.pool.acquire().await?;
                return match self.own_reservation(&mut conn, OP, &req.order_id).await? {
                    Some(own) => Ok(ReserveOutcome::Reserved(own)),
                    None => Err(Fail::RaceLost),
                };
            }
            Err(e) => return Err(e.into()),
        }
        self.append(&mut tx, OP, &OrderEvent::placed(&r)).await?;
        // The hot row, last.
        let take = if r.state == ReservationState::Held {
            &s.take_held
        } else {
            &s.take_sold
        };
        let taken = sqlx::query(take)
            .bind(q)
            .bind(q)
            .bind(req.product.as_str())
            .bind(q)
            .execute(&mut *tx)
            .await?;
        if taken.rows_affected() == 0 {
            // The insert above proved this order id new: no retry to find.
            tx.rollback().await?;
            return Ok(ReserveOutcome::SoldOut);
        }
        tx.commit().await?;
        Ok(ReserveOutcome::Reserved(r))
    }

    async fn create_sale_once(&self, sale: &Sale) -> Tx<SaleWrite> {
        let s = &self.sql;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&s.sale_lock)
            .bind(sale.product().as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let total = u64::from(sale.stock());
        let starts = sale.starts_at().map(Timestamp::as_millis);
        let ends = sale.ends_at().map(Timestamp::as_millis);
        let hold = sale
            .hold()
            .map(|h| u64::try_from(h.as_nanos()).unwrap_or(u64::MAX));
        let answer = match row {
            None => {
                let r = sqlx::query(&s.sale_insert)
                    .bind(sale.product().as_str())
                    .bind(total)
                    .bind(total)
                    .bind(sale.per_user_limit())
                    .bind(sale.per_order_max())
                    .bind(starts)
                    .bind(ends)
                    .bind(hold)
                    .execute(&mut *tx)
                    .await;
                match r {
                    Ok(_) => SaleWrite::Created,
                    Err(e) if is_duplicate(&e) => return Err(Fail::RaceLost),
                    Err(e) => return Err(e.into()),
                }
            }
            Some(row) => {
                let held: u64 = row.try_get(0)?;
                let committed: u64 = row.try_get(1)?;
                let taken = held + committed;
                if total < taken {
                    tx.rollback().await?;
                    return Ok(SaleWrite::StockBelowSold {
                        held_or_committed: taken,
                    });
                }
                sqlx::query(&s.sale_update)
                    .bind(total)
                    .bind(total)
                    .bind(sale.per_user_limit())
                    .bind(sale.per_order_max())
                    .bind(starts)
                    .bind(ends)
                    .bind(hold)
                    .bind(sale.product().as_str())
                    .execute(&mut *tx)
                    .await?;
                SaleWrite::Updated
            }
        };
        tx.commit().await?;
        Ok(answer)
    }

    async fn confirm_once(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Tx<ConfirmOutcome> {
        const OP: &str = "confirm";
        let mut tx = self.pool.begin().await?;
        let Some((r, _)) = self
            .lock_product_reservation(&mut tx, OP, product, order)
            .await?
        else {
            return Ok(ConfirmOutcome::Unknown);
        };
        let outcome = match r.state {
            ReservationState::Committed => ConfirmOutcome::AlreadyConfirmed,
            ReservationState::Held if now >= r.expires_at => {
                let state = ReservationState::Expired;
                self.return_units(&mut tx, OP, &r, state, EventType::Expired, now)
                    .await?;
                ConfirmOutcome::NotHeld(state)
            }
            ReservationState::Held => {
                let q = u64::from(r.quantity.get());
                let state = ReservationState::Committed;
                self.set_state(&mut tx, order, state).await?;
                let sold = Reservation { state, ..r };
                self.append(
                    &mut tx,
                    OP,
                    &OrderEvent::closing(&sold, EventType::Confirmed, now),
                )
                .await?;
                sqlx::query(&self.sql.held_to_sold)
                    .bind(q)
                    .bind(q)
                    .bind(product.as_str())
                    .execute(&mut *tx)
                    .await?;
                ConfirmOutcome::Confirmed
            }
            s => ConfirmOutcome::NotHeld(s),
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn cancel_once(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Tx<CancelOutcome> {
        const OP: &str = "cancel";
        let mut tx = self.pool.begin().await?;
        let Some((r, _)) = self
            .lock_product_reservation(&mut tx, OP, product, order)
            .await?
        else {
            return Ok(CancelOutcome::Unknown);
        };
        let outcome = match r.state {
            ReservationState::Cancelled => CancelOutcome::AlreadyCancelled,
            ReservationState::Held if now >= r.expires_at => {
                let state = ReservationState::Expired;
                self.return_units(&mut tx, OP, &r, state, EventType::Expired, now)
                    .await?;
                CancelOutcome::NotHeld(state)
            }
            ReservationState::Held => {
                let state = ReservationState::Cancelled;
                self.return_units(&mut tx, OP, &r, state, EventType::Cancelled, now)
                    .await?;
                CancelOutcome::Cancelled
            }
            s => CancelOutcome::NotHeld(s),
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn lock_product_reservation(
        &self,
        tx: &mut MySqlConnection,
        op: &'static str,
        product: &ProductId,
        order: &OrderId,
    ) -> Tx<Option<(Reservation, bool)>> {
        let row = sqlx::query(&self.sql.res_of_product_lock)
            .bind(oid_bytes(order))
            .bind(product.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        Ok(row.map(|r| reservation(op, &r)).transpose()?)
    }

    async fn void_once(&self, req: &ReserveRequest, now: Timestamp) -> Tx<VoidOutcome> {
        const OP: &str = "void";
        let s = &self.sql;
        let mut tx = self.pool.begin().await?;
        let Some((r, _)) = self.lock_reservation(&mut tx, OP, &req.order_id).await? else {
            // The reserve never ran (or not yet), or it was a replay: a
            // tombstone makes a late one find this request voided.
            let sale = sqlx::query(&s.levels)
                .bind(req.product.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if sale.is_none() {
                // No such sale: nothing was, or ever will be, reserved.
                return Ok(VoidOutcome::NothingReserved);
            }
            let t = req.to_tombstone();
            let key = req.idempotency_key.as_ref().map(IdempotencyKey::as_str);
            let inserted = sqlx::query(&s.res_insert)
                .bind(oid_bytes(&req.order_id))
                .bind(req.product.as_str())
                .bind(req.user.as_str())
                .bind(req.quantity.get())
                .bind(key)
                .bind(None::<&str>)
                .bind(t.created_at.as_millis())
                .bind(t.expires_at.as_millis())
                .bind(t.awaits_confirmation)
                .bind(state_str(t.state))
                .execute(&mut *tx)
                .await;
            match inserted {
                Ok(_) => {}
                // The reserve ran meanwhile: look again.
                Err(e) if is_duplicate(&e) => return Err(Fail::RaceLost),
                Err(e) => return Err(e.into()),
            }
            self.replay_failed(&mut tx, req, now).await?;
            tx.commit().await?;
            return Ok(VoidOutcome::NothingReserved);
        };
        let outcome = match r.state {
            ReservationState::Voided => VoidOutcome::AlreadyVoided,
            s @ (ReservationState::Cancelled | ReservationState::Expired) => {
                VoidOutcome::AlreadyClosed(s)
            }
            // A confirmed hold: answered by its buyer's confirm; closed.
            ReservationState::Committed if r.awaits_confirmation => {
                VoidOutcome::AlreadyClosed(ReservationState::Committed)
            }
            ReservationState::Held | ReservationState::Committed => {
                let replays: i64 = sqlx::query_scalar(&s.replay_count)
                    .bind(oid_bytes(&r.order_id))
                    .bind(now.as_millis())
                    .fetch_one(&mut *tx)
                    .await?;
                if replays > 0 {
                    sqlx::query(&s.res_void_waiting)
                        .bind(oid_bytes(&r.order_id))
                        .execute(&mut *tx)
                        .await?;
                    VoidOutcome::Kept
                } else {
                    let state = ReservationState::Voided;
                    self.return_units(&mut tx, OP, &r, state, EventType::Voided, now)
                        .await?;
                    VoidOutcome::Voided
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// `req` was a replay whose answer was lost: it no longer holds the
    /// order its key names, which is undone if nobody else may hold it and
    /// its own request's void is waiting.
    async fn replay_failed(
        &self,
        tx: &mut MySqlConnection,
        req: &ReserveRequest,
        now: Timestamp,
    ) -> Tx<()> {
        const OP: &str = "void";
        let s = &self.sql;
        let Some(key) = &req.idempotency_key else {
            return Ok(());
        };
        let row = sqlx::query(&s.res_by_key_lock)
            .bind(req.product.as_str())
            .bind(req.user.as_str())
            .bind(key.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(());
        };
        let (prior, void_waiting) = reservation(OP, &row)?;
        let removed = sqlx::query(&s.replay_remove)
            .bind(oid_bytes(&prior.order_id))
            .bind(oid_bytes(&req.order_id))
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await?;
        if removed.rows_affected() == 0 || !void_waiting {
            return Ok(());
        }
        let left: i64 = sqlx::query_scalar(&s.replay_count)
            .bind(oid_bytes(&prior.order_id))
            .bind(now.as_millis())
            .fetch_one(&mut *tx)
            .await?;
        // Still this request's to undo: held, or sold by a sale without
        // holds (a confirmed hold was answered by its buyer's confirm).
        let live = prior.state == ReservationState::Held
            || (prior.state == ReservationState::Committed && !prior.awaits_confirmation);
        if left == 0 && live {
            let state = ReservationState::Voided;
            self.return_units(tx, OP, &prior, state, EventType::Voided, now)
                .await?;
        }
        Ok(())
    }

    /// Expires one due hold, if it still is one. `None`: someone else
    /// closed it first.
    async fn expire_once(&self, order: &OrderId, now: Timestamp) -> Tx<Option<Reservation>> {
        const OP: &str = "expire";
        let mut tx = self.pool.begin().await?;
        let Some((r, _)) = self.lock_reservation(&mut tx, OP, order).await? else {
            return Ok(None);
        };
        if r.state != ReservationState::Held || r.expires_at > now {
            return Ok(None);
        }
        let state = ReservationState::Expired;
        let closed = self
            .return_units(&mut tx, OP, &r, state, EventType::Expired, now)
            .await?;
        tx.commit().await?;
        Ok(Some(closed))
    }

    async fn claim_once(
        &self,
        now: Timestamp,
        max: usize,
        until: Timestamp,
    ) -> Tx<Vec<OrderEvent>> {
        const OP: &str = "claim";
        let s = &self.sql;
        let mut tx = self.pool.begin().await?;
        // Candidates first, without locks: due events, except closing
        // events whose `placed` is leased to another relay (they would fill
        // the batch and never be handed out). A few more than `max`, so
        // that relays racing for the same ones still find work.
        let wanted = u64::try_from(max).unwrap_or(u64::MAX);
        let candidates: Vec<(Vec<u8>, u16)> = sqlx::query_as(&s.outbox_candidates)
            .bind(now.as_millis())
            .bind(now.as_millis())
            .bind(wanted.saturating_mul(4))
            .fetch_all(&mut *tx)
            .await?;
        if candidates.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        // Then lock up to `max` of them, skipping those another relay is
        // claiming right now.
        let sql = format!(
            "{}{}{}",
            s.outbox_lock_head,
            pairs(candidates.len()),
            s.outbox_lock_tail
        );
        let mut query = sqlx::query(&sql);
        for (oid, seq) in &candidates {
            query = query.bind(oid.as_slice()).bind(*seq);
        }
        let rows = query
            .bind(now.as_millis())
            .bind(wanted)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let mut batch: Vec<(Vec<u8>, u16, String)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let oid: Vec<u8> = row.try_get(0)?;
            let seq: u16 = row.try_get(1)?;
            let payload = text(row, 2)?;
            batch.push((oid, seq, payload));
        }
        // A closing event whose `placed` is still in the outbox but not in
        // this batch (leased to another relay, or being claimed by one
        // right now) waits for it.
        let lone: Vec<&[u8]> = batch
            .iter()
            .filter(|(oid, seq, _)| *seq > 1 && !batch.iter().any(|(o, s, _)| *s == 1 && o == oid))
            .map(|(oid, _, _)| oid.as_slice())
            .collect();
        if !lone.is_empty() {
            let sql = format!("{}{}", s.outbox_placed_of, list(lone.len()));
            let mut query = sqlx::query_scalar::<_, Vec<u8>>(&sql);
            for oid in &lone {
                query = query.bind(*oid);
            }
            let waiting = query.fetch_all(&mut *tx).await?;
            batch.retain(|(oid, seq, _)| *seq == 1 || !waiting.contains(oid));
        }
        if batch.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let sql = format!("{}{}", s.outbox_lease, pairs(batch.len()));
        let mut query = sqlx::query(&sql).bind(until.as_millis());
        for (oid, seq, _) in &batch {
            query = query.bind(oid.as_slice()).bind(*seq);
        }
        query.execute(&mut *tx).await?;
        tx.commit().await?;
        let mut events = Vec::with_capacity(batch.len());
        for (_, _, payload) in &batch {
            match serde_json::from_str::<OrderEvent>(payload) {
                Ok(e) => events.push(e),
                // A corrupt row must not stall every other event; it stays
                // in the outbox (leased) for an operator to inspect.
                Err(e) => tracing::error!(error = %e, op = OP, "mysql: unreadable outbox event"),
            }
        }
        events.sort_by_key(|e| e.event_id);
        Ok(events)
    }
}

#[async_trait]
impl StockStore for MySqlStockStore {
    async fn create_sale(&self, sale: &Sale) -> Result<SaleWrite> {
        self.retry("create_sale", || self.create_sale_once(sale))
            .await
    }

    async fn sale(&self, product: &ProductId) -> Result<Option<Sale>> {
        const OP: &str = "sale";
        let row = sqlx::query(&self.sql.sale)
            .bind(product.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err(OP))?;
        row.map(|r| sale_row(OP, &r).map(|(s, _)| s)).transpose()
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome> {
        match &self.batcher {
            Some(batcher) => self.reserve_batched(batcher, req).await,
            None => self.reserve_unbatched(req).await,
        }
    }

    async fn confirm(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<ConfirmOutcome> {
        self.retry("confirm", || self.confirm_once(product, order, now))
            .await
    }

    async fn cancel(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<CancelOutcome> {
        self.retry("cancel", || self.cancel_once(product, order, now))
            .await
    }

    async fn void(&self, req: &ReserveRequest, now: Timestamp) -> Result<VoidOutcome> {
        self.retry("void", || self.void_once(req, now)).await
    }

    async fn reservation(&self, order: &OrderId) -> Result<Option<Reservation>> {
        const OP: &str = "reservation";
        let row = sqlx::query(&self.sql.res)
            .bind(oid_bytes(order))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err(OP))?;
        row.map(|r| reservation(OP, &r).map(|(r, _)| r)).transpose()
    }

    async fn expire(&self, now: Timestamp, max: usize) -> Result<Vec<Reservation>> {
        const OP: &str = "expire";
        let mut expired = Vec::new();
        if max == 0 {
            return Ok(expired);
        }
        // Due holds through the (state, expires_at) index, at most `max`;
        // each is then expired in its own short transaction, so the sweep
        // never holds many hot rows at once.
        let due: Vec<Vec<u8>> = sqlx::query_scalar(&self.sql.res_due)
            .bind(now.as_millis())
            .bind(u64::try_from(max).unwrap_or(u64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err(OP))?;
        for raw in due {
            let order = parse_oid(OP, &raw)?;
            if let Some(r) = self.retry(OP, || self.expire_once(&order, now)).await? {
                expired.push(r);
            }
        }
        // Lapsed replay claims, a bounded batch per sweep.
        sqlx::query(&self.sql.replay_lapsed)
            .bind(now.as_millis())
            .bind(REPLAY_PURGE_BATCH)
            .execute(&self.pool)
            .await
            .map_err(backend_err(OP))?;
        Ok(expired)
    }

    async fn snapshot(&self, product: &ProductId) -> Result<Option<StockLevels>> {
        const OP: &str = "snapshot";
        let row: Option<(u64, u64, u64, u64)> = sqlx::query_as(&self.sql.levels)
            .bind(product.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err(OP))?;
        Ok(row.map(|(total, available, held, committed)| StockLevels {
            total,
            available,
            held,
            committed,
        }))
    }

    async fn claim(&self, now: Timestamp, max: usize, lease: Duration) -> Result<Vec<OrderEvent>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let until = now.saturating_add(lease);
        self.retry("claim", || self.claim_once(now, max, until))
            .await
    }

    async fn ack(&self, events: &[OrderEvent]) -> Result<()> {
        const OP: &str = "ack";
        // Bounded statements: 500 events per DELETE.
        for chunk in events.chunks(500) {
            let sql = format!("{}{}", self.sql.outbox_delete, pairs(chunk.len()));
            self.retry(OP, || async {
                let mut query = sqlx::query(&sql);
                for e in chunk {
                    query = query.bind(oid_bytes(&e.order.order_id)).bind(e.seq);
                }
                query.execute(&self.pool).await?;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    fn replay_claim_ttl(&self) -> Duration {
        self.replay_claim_ttl
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(backend_err("ping"))
    }
}
