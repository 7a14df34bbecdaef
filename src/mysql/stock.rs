//! [`MySqlStockStore`]: sales, stock, reservations and the outbox of order
//! events in MySQL / MariaDB, one transaction per operation.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::batch::{BatchStats, Batcher};
use super::codec::{oid_bytes, parse_oid, reservation, sale_row};
use super::sql::{Sql, pairs};
use super::tx::Db;
use super::{MySqlOptions, backend_err};
use crate::error::Result;
use crate::model::{OrderEvent, OrderId, ProductId, Reservation, Sale, StockLevels, Timestamp};
use crate::{
    CancelOutcome, ConfirmOutcome, ReserveOutcome, ReserveRequest, SaleWrite, StockStore,
    VoidOutcome,
};

/// Lapsed replay claims deleted per sweep, at most.
const REPLAY_PURGE_BATCH: u64 = 1_000;

/// Sales, stock, reservations and the outbox of order events in MySQL or
/// MariaDB, shared by every app instance that uses the same database and
/// table prefix.
///
/// * Every operation is one `READ COMMITTED` transaction (see the
///   [module docs](super)); a purchase is one `reserve` transaction, which
///   also appends the order's `placed` event to the outbox.
/// * Sold-out, over-the-cap and closed-window refusals read the sale's
///   terms without locking and write nothing.
/// * Finished reservations and their idempotency keys are kept for
///   [`MySqlOptions::record_ttl`] (default 24 h) after they finish; then
///   [`expire`](StockStore::expire) deletes them, a bounded batch per call,
///   except one whose events are still in the outbox.
///
/// Call [`migrate`](Self::migrate) once before first use. Cheap to clone;
/// clones share the connection pool.
#[derive(Debug, Clone)]
pub struct MySqlStockStore {
    db: Arc<Db>,
    prefix: Arc<str>,
    /// Hot-row batching of `reserve` (`None`: off).
    batcher: Option<Arc<Batcher>>,
}

impl MySqlStockStore {
    /// Connects to the database at `url` (e.g.
    /// `mysql://root@127.0.0.1:3306/test`), naming every table
    /// `<table_prefix><table>`. Fails if the database does not answer. Does
    /// not create the tables: call [`migrate`](Self::migrate).
    pub async fn connect(url: &str, table_prefix: &str) -> Result<Self> {
        Self::with_options(MySqlOptions::new(url).prefix(table_prefix)).await
    }

    /// Connects with explicit options.
    pub async fn with_options(opts: MySqlOptions) -> Result<Self> {
        opts.validate()?;
        // The stock store keeps the server's SQL mode (the order table sets
        // its own).
        let pool = super::pool::open(&opts, false).await?;
        let db = Db {
            pool,
            sql: Sql::new(&opts.prefix),
            max_retries: opts.max_retries,
            replay_claim_ttl: opts.replay_claim_ttl,
            record_ttl: opts.record_ttl,
        };
        Ok(Self {
            db: Arc::new(db),
            prefix: opts.prefix.as_str().into(),
            batcher: opts.batching.then(|| {
                Arc::new(Batcher::new(
                    &opts.prefix,
                    opts.batch_max,
                    opts.batch_wait,
                    opts.batch_lanes,
                ))
            }),
        })
    }

    /// The table prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether concurrent reserves of one product are batched
    /// ([`MySqlOptions::batching`]).
    pub fn is_batching(&self) -> bool {
        self.batcher.is_some()
    }

    /// How many batches this store (and its clones) ran so far, and how
    /// many requests they answered; `None` if batching is off.
    pub fn batch_stats(&self) -> Option<BatchStats> {
        self.batcher.as_ref().map(|b| b.stats())
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
        super::migrate::run(&self.db.pool, &self.prefix).await
    }
}

#[async_trait]
impl StockStore for MySqlStockStore {
    async fn create_sale(&self, sale: &Sale) -> Result<SaleWrite> {
        self.db
            .retry("create_sale", || self.db.create_sale_once(sale))
            .await
    }

    async fn sale(&self, product: &ProductId) -> Result<Option<Sale>> {
        const OP: &str = "sale";
        let row = sqlx::query(&self.db.sql.sale)
            .bind(product.as_str())
            .fetch_optional(&self.db.pool)
            .await
            .map_err(backend_err(OP))?;
        row.map(|r| sale_row(OP, &r).map(|(s, _)| s)).transpose()
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome> {
        match &self.batcher {
            Some(batcher) => batcher.reserve(&self.db, req).await,
            None => self.db.reserve_alone(req).await,
        }
    }

    async fn confirm(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<ConfirmOutcome> {
        self.db
            .retry("confirm", || self.db.confirm_once(product, order, now))
            .await
    }

    async fn cancel(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<CancelOutcome> {
        self.db
            .retry("cancel", || self.db.cancel_once(product, order, now))
            .await
    }

    async fn void(&self, req: &ReserveRequest, now: Timestamp) -> Result<VoidOutcome> {
        self.db.retry("void", || self.db.void_once(req, now)).await
    }

    async fn reservation(&self, order: &OrderId) -> Result<Option<Reservation>> {
        const OP: &str = "reservation";
        let row = sqlx::query(&self.db.sql.res)
            .bind(oid_bytes(order))
            .fetch_optional(&self.db.pool)
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
        let due: Vec<Vec<u8>> = sqlx::query_scalar(&self.db.sql.res_due)
            .bind(now.as_millis())
            .bind(u64::try_from(max).unwrap_or(u64::MAX))
            .fetch_all(&self.db.pool)
            .await
            .map_err(backend_err(OP))?;
        for raw in due {
            let order = parse_oid(OP, &raw)?;
            if let Some(r) = self
                .db
                .retry(OP, || self.db.expire_once(&order, now))
                .await?
            {
                expired.push(r);
            }
        }
        // Lapsed replay claims, a bounded batch per sweep.
        sqlx::query(&self.db.sql.replay_lapsed)
            .bind(now.as_millis())
            .bind(REPLAY_PURGE_BATCH)
            .execute(&self.db.pool)
            .await
            .map_err(backend_err(OP))?;
        self.db.retry(OP, || self.db.purge_once(now)).await?;
        Ok(expired)
    }

    async fn snapshot(&self, product: &ProductId) -> Result<Option<StockLevels>> {
        const OP: &str = "snapshot";
        let row: Option<(u64, u64, u64, u64)> = sqlx::query_as(&self.db.sql.levels)
            .bind(product.as_str())
            .fetch_optional(&self.db.pool)
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
        self.db
            .retry("claim", || self.db.claim_once(now, max, until))
            .await
    }

    async fn ack(&self, events: &[OrderEvent]) -> Result<()> {
        const OP: &str = "ack";
        // Bounded statements: 500 events per DELETE.
        for chunk in events.chunks(500) {
            let sql = format!("{}{}", self.db.sql.outbox_delete, pairs(chunk.len()));
            self.db
                .retry(OP, || async {
                    let mut query = sqlx::query(&sql);
                    for e in chunk {
                        query = query.bind(oid_bytes(&e.order.order_id)).bind(e.seq);
                    }
                    query.execute(&self.db.pool).await?;
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }

    fn replay_claim_ttl(&self) -> Duration {
        self.db.replay_claim_ttl
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.db.pool)
            .await
            .map(|_| ())
            .map_err(backend_err("ping"))
    }
}
