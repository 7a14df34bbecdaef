//! [`MySqlOrderTable`]: the `orders` projection that the order worker
//! folds order events into, one row per order with its current status.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;

use sqlx::Row;
use sqlx::mysql::{MySqlPool, MySqlRow};

use super::codec::{self, oid_bytes, parse_oid, text};
use super::retry::{Fail, is_duplicate, mysql_code, retried};
use super::sql::list;
use super::{MySqlOptions, backend_err, bad_reply};
use crate::error::{Error, Result};
use crate::model::{
    EventId, EventType, IdempotencyKey, InvalidInput, OrderEvent, OrderId, ProductId, Quantity,
    Timestamp, UserId,
};

/// Server errors that say a value cannot be stored, whatever the state of
/// the server: NULL in a NOT NULL column (1048), no default (1364),
/// out of range (1264, 1690), truncated or wrong value (1265, 1292, 1366,
/// 1367, 1411, 1300), too long (1406), foreign-key and check constraints
/// (1451, 1452, 3819, 4025).
const DATA_ERRORS: [u16; 15] = [
    1048, 1364, 1264, 1690, 1265, 1292, 1366, 1367, 1411, 1300, 1406, 1451, 1452, 3819, 4025,
];

/// Most orders per statement (the row insert binds 11 values each).
const CHUNK: usize = 500;

/// The columns of a row, in [`order_row`]'s order.
const COLS: &str = "order_id, product_id, user_id, quantity, idempotency_key, created_at, \
     hold_expires_at, status, last_seq, last_event_id, updated_at";

/// The `orders` projection in MySQL or MariaDB: one row per order with its
/// current status, which order events only ever move forward.
///
/// The order worker hands it the events it consumed, in batches, with
/// [`apply`](Self::apply); delivery may be at-least-once and out of order
/// (a dead-letter replay, a rebalance): applying an event twice, or an
/// older event after a newer one, changes nothing.
///
/// The table is `<prefix>orders`, created by [`migrate`](Self::migrate)
/// (the same migrations as [`MySqlStockStore::migrate`](super::MySqlStockStore::migrate),
/// so a stock store and an order table may share a database and a
/// prefix). Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct MySqlOrderTable {
    pool: MySqlPool,
    sql: Arc<Sql>,
    prefix: Arc<str>,
    max_retries: u32,
}

/// What one [`MySqlOrderTable::apply`] did: every event of the batch is
/// counted once, as applied or as ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ApplyStats {
    /// Events that changed the table: they created their order's row, or
    /// moved it to a higher `seq` than it had.
    pub applied: usize,
    /// Events that changed nothing: duplicates, and events older than (or
    /// as old as) what their order's row already had, including an older
    /// event that follows a newer one in the same batch.
    pub ignored: usize,
}

/// One row of the `orders` table: an order and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrderRow {
    /// The order.
    pub order_id: OrderId,
    /// The product bought.
    pub product: ProductId,
    /// The buyer.
    pub user: UserId,
    /// Units bought.
    pub quantity: Quantity,
    /// The buyer's idempotency key, if the request had one.
    pub idempotency_key: Option<IdempotencyKey>,
    /// When the purchase was accepted.
    pub created_at: Timestamp,
    /// For sales with holds: when the unconfirmed hold lapses.
    pub hold_expires_at: Option<Timestamp>,
    /// The type of the last event applied: `Placed` while the order is
    /// open (or sold, for a sale without holds), else how it closed.
    pub status: EventType,
    /// The `seq` of the last event applied.
    pub last_seq: u16,
    /// The id of the last event applied.
    pub last_event_id: EventId,
    /// When the last event applied happened (its `at`).
    pub updated_at: Timestamp,
}

impl From<&OrderEvent> for OrderRow {
    /// The row an order has once `event` is the last event applied to it.
    fn from(e: &OrderEvent) -> Self {
        let o = &e.order;
        Self {
            order_id: o.order_id,
            product: o.product_id.clone(),
            user: o.user_id.clone(),
            quantity: o.quantity,
            idempotency_key: o.idempotency_key.clone(),
            created_at: o.created_at,
            hold_expires_at: o.hold_expires_at,
            status: e.event_type,
            last_seq: e.seq,
            last_event_id: e.event_id,
            updated_at: e.at,
        }
    }
}

/// Every statement, with the table prefix filled in (built once).
#[derive(Debug)]
struct Sql {
    get: String,
    lock_head: String,
    insert_head: String,
    upsert_tail: String,
    order_ids: String,
    order_ids_of: String,
    counts: String,
    counts_of: String,
}

impl Sql {
    fn new(p: &str) -> Self {
        let t = format!("{p}orders");
        Self {
            get: format!("SELECT {COLS} FROM {t} WHERE order_id = ?"),
            lock_head: format!("SELECT order_id, last_seq FROM {t} WHERE order_id IN "),
            insert_head: format!("INSERT INTO {t} ({COLS}) VALUES "),
            // `last_seq` last: every assignment before it still compares
            // with the row's old `last_seq`.
            upsert_tail: " ON DUPLICATE KEY UPDATE \
                 status = IF(VALUES(last_seq) > last_seq, VALUES(status), status), \
                 last_event_id = IF(VALUES(last_seq) > last_seq, VALUES(last_event_id), last_event_id), \
                 updated_at = IF(VALUES(last_seq) > last_seq, VALUES(updated_at), updated_at), \
                 last_seq = IF(VALUES(last_seq) > last_seq, VALUES(last_seq), last_seq)"
                .to_owned(),
            order_ids: format!("SELECT order_id FROM {t} ORDER BY order_id"),
            order_ids_of: format!(
                "SELECT order_id FROM {t} WHERE product_id = ? ORDER BY order_id"
            ),
            counts: format!("SELECT status, COUNT(*) FROM {t} GROUP BY status"),
            counts_of: format!(
                "SELECT status, COUNT(*) FROM {t} WHERE product_id = ? GROUP BY status"
            ),
        }
    }
}

/// Maps a driver error of `apply` into the crate's error: a value the
/// table cannot store is the batch's fault ([`Error::Invalid`], permanent);
/// anything else is the infrastructure's ([`Error::Backend`], transient).
fn classify(op: &'static str, e: sqlx::Error) -> Error {
    let data = match &e {
        sqlx::Error::Database(db) => mysql_code(&e)
            .is_some_and(|c| DATA_ERRORS.contains(&c))
            .then(|| db.message()),
        sqlx::Error::Encode(_) => Some("a value cannot be encoded"),
        _ => None,
    };
    match data {
        Some(msg) => Error::Invalid(InvalidInput::new(
            "order_event",
            format!("the orders table cannot store this batch: {msg}"),
        )),
        None => backend_err(op)(e),
    }
}

/// Checks what the table needs of one event before anything is written.
fn check(e: &OrderEvent) -> Result<()> {
    let id = e.event_id;
    if e.schema_version > OrderEvent::SCHEMA_VERSION {
        return Err(InvalidInput::new(
            "schema_version",
            format!(
                "event {id} has schema version {}; this build reads versions up to {}",
                e.schema_version,
                OrderEvent::SCHEMA_VERSION
            ),
        )
        .into());
    }
    if id.order_id() != e.order.order_id || id.seq() != e.seq {
        return Err(InvalidInput::new(
            "event_id",
            format!(
                "event {id} does not name its order {} and seq {}",
                e.order.order_id, e.seq
            ),
        )
        .into());
    }
    let placed = e.event_type == EventType::Placed;
    if placed != (e.seq == 1) || e.seq == 0 {
        return Err(InvalidInput::new(
            "seq",
            format!(
                "event {id} is `{}` with seq {}: `placed` is seq 1, every later event above 1",
                e.event_type.as_str(),
                e.seq
            ),
        )
        .into());
    }
    Ok(())
}

/// `(?, …), (?, …)` for `n` rows of every column.
fn rows(n: usize) -> String {
    let one = list(COLS.split(',').count());
    vec![one; n].join(", ")
}

/// An `orders` row, selected as [`COLS`].
fn order_row(op: &'static str, row: &MySqlRow) -> Result<OrderRow> {
    let get = |e: sqlx::Error| bad_reply(op, e);
    let oid: Vec<u8> = row.try_get(0).map_err(get)?;
    let created_at: u64 = row.try_get(5).map_err(get)?;
    let hold_expires_at: Option<u64> = row.try_get(6).map_err(get)?;
    let last_seq: u16 = row.try_get(8).map_err(get)?;
    let updated_at: u64 = row.try_get(10).map_err(get)?;
    Ok(OrderRow {
        order_id: parse_oid(op, &oid)?,
        product: codec::product(op, row, 1)?,
        user: codec::user(op, row, 2)?,
        quantity: codec::quantity(op, row, 3)?,
        idempotency_key: codec::idempotency_key(op, row, 4)?,
        created_at: Timestamp::from_millis(created_at),
        hold_expires_at: hold_expires_at.map(Timestamp::from_millis),
        status: EventType::from_str(&text(op, row, 7)?).map_err(|e| bad_reply(op, e))?,
        last_seq,
        last_event_id: EventId::from_str(&text(op, row, 9)?).map_err(|e| bad_reply(op, e))?,
        updated_at: Timestamp::from_millis(updated_at),
    })
}

/// The order of statuses in [`MySqlOrderTable::count_by_status`].
fn status_rank(t: EventType) -> u8 {
    match t {
        EventType::Placed => 0,
        EventType::Confirmed => 1,
        EventType::Cancelled => 2,
        EventType::Expired => 3,
        EventType::Voided => 4,
    }
}

/// Where one order of a batch stands while the batch is folded.
struct Slot<'a> {
    /// The row's `last_seq` so far (`None`: no row).
    seq: Option<u16>,
    /// Whether the row existed before the batch.
    existed: bool,
    /// The batch's event that ends up in the row, if any changed it.
    winner: Option<&'a OrderEvent>,
}

impl MySqlOrderTable {
    /// Connects to the database at `url` (e.g.
    /// `mysql://root@127.0.0.1:3306/test`), using the table
    /// `<table_prefix>orders`. Fails if the database does not answer. Does
    /// not create the table: call [`migrate`](Self::migrate).
    pub async fn connect(url: &str, table_prefix: &str) -> Result<Self> {
        Self::with_options(MySqlOptions::new(url).prefix(table_prefix)).await
    }

    /// Connects with explicit options. Only the connection options matter
    /// here: the URL, [`prefix`](MySqlOptions::prefix),
    /// [`max_connections`](MySqlOptions::max_connections),
    /// [`acquire_timeout`](MySqlOptions::acquire_timeout),
    /// [`lock_wait_timeout`](MySqlOptions::lock_wait_timeout),
    /// [`max_retries`](MySqlOptions::max_retries) and
    /// [`lazy`](MySqlOptions::lazy); the batching options are ignored.
    pub async fn with_options(opts: MySqlOptions) -> Result<Self> {
        opts.validate_connection()?;
        let pool = super::pool::open(&opts, true).await?;
        Ok(Self {
            pool,
            sql: Arc::new(Sql::new(&opts.prefix)),
            prefix: opts.prefix.as_str().into(),
            max_retries: opts.max_retries,
        })
    }

    /// The table prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates or upgrades the tables of this prefix: the same embedded
    /// migrations, recorded in the same `<prefix>schema_migrations`, as
    /// [`MySqlStockStore::migrate`](super::MySqlStockStore::migrate), so
    /// either may run first, or both at once. Idempotent, and safe to call
    /// from several instances at once.
    pub async fn migrate(&self) -> Result<()> {
        super::migrate::run(&self.pool, &self.prefix).await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(backend_err("ping"))
    }

    /// Folds `events` into the table, in ONE transaction: all of them or,
    /// on error, none. Each order's row only moves forward (an event whose
    /// `seq` is not above the row's `last_seq` changes nothing), so applying
    /// the same events again, in any order, leaves the same table; the
    /// answer counts each event once, as applied or ignored. The full
    /// contract is in `docs/orders.md` ("The order table").
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] (permanent: dead-letter it) for an event the
    /// table can never hold, naming the event where it can; otherwise
    /// [`Error::Backend`] with backend `"mysql"` (transient: retry). Nothing
    /// of the batch was written in either case.
    pub async fn apply(&self, events: &[OrderEvent]) -> Result<ApplyStats> {
        const OP: &str = "apply_orders";
        if events.is_empty() {
            return Ok(ApplyStats::default());
        }
        for e in events {
            check(e)?;
        }
        retried(
            OP,
            self.max_retries,
            |e| classify(OP, e),
            || self.apply_once(events),
        )
        .await
    }

    async fn apply_once(&self, events: &[OrderEvent]) -> std::result::Result<ApplyStats, Fail> {
        const OP: &str = "apply_orders";
        let s = &self.sql;
        let mut ids: Vec<OrderId> = events.iter().map(|e| e.order.order_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tx = self.pool.begin().await?;
        // Lock the rows that exist, in key order (as every batch does).
        let mut current: HashMap<OrderId, u16> = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let sql = format!(
                "{}{} ORDER BY order_id FOR UPDATE",
                s.lock_head,
                list(chunk.len())
            );
            let mut query = sqlx::query_as::<_, (Vec<u8>, u16)>(&sql);
            for id in chunk {
                query = query.bind(oid_bytes(id));
            }
            for (raw, seq) in query.fetch_all(&mut *tx).await? {
                current.insert(parse_oid(OP, &raw)?, seq);
            }
        }
        // Fold the batch, in its order, into what the rows hold.
        let mut stats = ApplyStats::default();
        let mut slots: BTreeMap<OrderId, Slot<'_>> = BTreeMap::new();
        for e in events {
            let slot = slots.entry(e.order.order_id).or_insert_with(|| {
                let seq = current.get(&e.order.order_id).copied();
                Slot {
                    seq,
                    existed: seq.is_some(),
                    winner: None,
                }
            });
            if slot.seq.is_none_or(|seq| e.seq > seq) {
                slot.seq = Some(e.seq);
                slot.winner = Some(e);
                stats.applied += 1;
            } else {
                stats.ignored += 1;
            }
        }
        let mut new = Vec::new();
        let mut moved = Vec::new();
        for slot in slots.values() {
            if let Some(e) = slot.winner {
                if slot.existed { &mut moved } else { &mut new }.push(e);
            }
        }
        // New rows: a plain insert, so a row another transaction created
        // since the read above is a duplicate key, and the batch runs again
        // (with that row locked).
        for chunk in new.chunks(CHUNK) {
            let sql = format!("{}{}", s.insert_head, rows(chunk.len()));
            match bind_rows(sqlx::query(&sql), chunk).execute(&mut *tx).await {
                Ok(_) => {}
                Err(e) if is_duplicate(&e) => {
                    tx.rollback().await?;
                    return Err(Fail::RaceLost);
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Rows that move forward: locked above, so each is an update (2
        // affected rows); anything else means a row vanished meanwhile.
        for chunk in moved.chunks(CHUNK) {
            let sql = format!("{}{}{}", s.insert_head, rows(chunk.len()), s.upsert_tail);
            let done = bind_rows(sqlx::query(&sql), chunk)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() != 2 * chunk.len() as u64 {
                tx.rollback().await?;
                return Err(Fail::RaceLost);
            }
        }
        tx.commit().await?;
        Ok(stats)
    }

    /// The row of `order`, if any event of it was applied.
    pub async fn get(&self, order: &OrderId) -> Result<Option<OrderRow>> {
        const OP: &str = "get_order";
        let row = sqlx::query(&self.sql.get)
            .bind(oid_bytes(order))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err(OP))?;
        row.map(|r| order_row(OP, &r)).transpose()
    }

    /// How many orders (of `product`, or of every product) stand at each
    /// status: only statuses with at least one order, in the order
    /// `placed`, `confirmed`, `cancelled`, `expired`, `voided`.
    pub async fn count_by_status(
        &self,
        product: Option<&ProductId>,
    ) -> Result<Vec<(EventType, u64)>> {
        const OP: &str = "count_orders";
        let query = match product {
            Some(p) => sqlx::query(&self.sql.counts_of).bind(p.as_str()),
            None => sqlx::query(&self.sql.counts),
        };
        let found = query.fetch_all(&self.pool).await.map_err(backend_err(OP))?;
        let mut counts = Vec::with_capacity(found.len());
        for row in &found {
            let status = EventType::from_str(&text(OP, row, 0)?).map_err(|e| bad_reply(OP, e))?;
            let n: i64 = row.try_get(1).map_err(|e| bad_reply(OP, e))?;
            counts.push((status, u64::try_from(n).map_err(|e| bad_reply(OP, e))?));
        }
        counts.sort_by_key(|(status, _)| status_rank(*status));
        Ok(counts)
    }

    /// The ids of every order in the table (of `product`, or of every
    /// product), ascending. Reads them all at once: meant for tests,
    /// reconciliation and modest tables.
    pub async fn order_ids(&self, product: Option<&ProductId>) -> Result<Vec<OrderId>> {
        const OP: &str = "order_ids";
        let query = match product {
            Some(p) => sqlx::query_scalar::<_, Vec<u8>>(&self.sql.order_ids_of).bind(p.as_str()),
            None => sqlx::query_scalar::<_, Vec<u8>>(&self.sql.order_ids),
        };
        let raw = query.fetch_all(&self.pool).await.map_err(backend_err(OP))?;
        raw.iter().map(|r| parse_oid(OP, r)).collect()
    }
}

/// Binds the rows of `events` (each its whole row, as [`COLS`]).
fn bind_rows<'q>(
    mut query: sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>,
    events: &[&'q OrderEvent],
) -> sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments> {
    for e in events {
        let o = &e.order;
        query = query
            .bind(oid_bytes(&o.order_id))
            .bind(o.product_id.as_str())
            .bind(o.user_id.as_str())
            .bind(o.quantity.get())
            .bind(o.idempotency_key.as_ref().map(IdempotencyKey::as_str))
            .bind(o.created_at.as_millis())
            .bind(o.hold_expires_at.map(Timestamp::as_millis))
            .bind(e.event_type.as_str())
            .bind(e.seq)
            .bind(e.event_id.to_string())
            .bind(e.at.as_millis());
    }
    query
}

/// Folds the events into the `orders` table with
/// [`MySqlOrderTable::apply`], one
/// transaction per batch; duplicates and late events change nothing.
#[async_trait::async_trait]
impl crate::EventHandler for MySqlOrderTable {
    async fn handle(&self, events: &[OrderEvent]) -> Result<()> {
        self.apply(events).await.map(|_| ())
    }
}
